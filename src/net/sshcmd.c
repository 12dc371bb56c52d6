/*
 * sshcmd.c - what an ssh session is about, before any connection: targets
 * (user@host:port, [v6]:port), the remote command line built from argv or
 * a shell string with env (each argument single-quoted for the remote
 * shell), and the local paths and user the defaults come from (sshc.h).
 */
#include <errno.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/redact.h"
#include "base/util.h"
#include "net/sshc.h"

static int
parse_port(const char *s, int *port)
{
	char *end;
	long v;

	if (*s == '\0')
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < 1 || v > 65535)
		return -1;
	*port = (int)v;
	return 0;
}

int
sshc_parse_target(const char *s, const char *def_user, int def_port,
    struct sshc_target *t, char **err)
{
	const char *at = strrchr(s, '@'), *h = at ? at + 1 : s, *colon;
	char *host = NULL;
	int port = def_port;

	memset(t, 0, sizeof t[0]);
	if (at != NULL && at == s)
		return seterr(err, "host '%s': empty user before '@'", s);
	if (*h == '[') {
		const char *close = strchr(h, ']');

		if (close == NULL || close == h + 1)
			return seterr(err, "host '%s': '[' without a matching ']' (write [::1]:22)", s);
		host = xstrndup(h + 1, (size_t)(close - h - 1));
		if (close[1] == ':') {
			if (parse_port(close + 2, &port) != 0) {
				free(host);
				return seterr(err, "host '%s': port must be 1 to 65535", s);
			}
		} else if (close[1] != '\0') {
			free(host);
			return seterr(err, "host '%s': after ']' only ':PORT' may follow", s);
		}
	} else {
		colon = strchr(h, ':');
		if (colon != NULL && strchr(colon + 1, ':') != NULL)
			return seterr(err, "host '%s': an IPv6 address needs brackets: [%s]:22", s, h);
		host = colon ? xstrndup(h, (size_t)(colon - h)) : xstrdup(h);
		if (colon != NULL && parse_port(colon + 1, &port) != 0) {
			free(host);
			return seterr(err, "host '%s': port must be 1 to 65535", s);
		}
	}
	if (host[0] == '\0' || strpbrk(host, " \t/\\@") != NULL) {
		free(host);
		return seterr(err, "host '%s': not a host name or address", s);
	}
	t->label = xstrdup(s);
	t->user = at ? xstrndup(s, (size_t)(at - s)) : xstrdup(def_user ? def_user : "root");
	t->host = host;
	t->port = port;
	return 0;
}

void
sshc_target_release(struct sshc_target *t)
{
	free(t->label);
	free(t->user);
	free(t->host);
	memset(t, 0, sizeof *t);
}

void
sshc_quote(struct sbuf *sb, const char *s)
{
	sb_addc(sb, '\'');
	for (; *s != '\0'; s++) {
		if (*s == '\'')
			sb_adds(sb, "'\\''");
		else
			sb_addc(sb, *s);
	}
	sb_addc(sb, '\'');
}

size_t
sshc_tail_start(const char *s, size_t n)
{
	size_t skip = redact_maxlen() > 0 ? redact_maxlen() - 1 : 0, cut = 0;
	const char *nl = memchr(s, '\n', n);

	if (skip > n)
		skip = n;
	if (nl != NULL)
		cut = (size_t)(nl + 1 - s);
	if (cut < skip) {	/* a line end inside the danger zone: the next one */
		nl = memchr(s + skip, '\n', n - skip);
		cut = nl != NULL ? (size_t)(nl + 1 - s) : skip;
	}
	return cut;
}

char *
sshc_build_command(const json_t *argv, const char *shell, const json_t *env)
{
	struct sbuf sb;
	const char *k;
	json_t *v;
	size_t i;

	sb_init(&sb);
	if (json_object_size(env) > 0) {
		sb_adds(&sb, "env");
		json_object_foreach((json_t *)env, k, v) {
			char *kv;

			if (json_is_string(v)) {
				kv = xasprintf("%s=%s", k, json_string_value(v));
			} else {
				char *t = json_dumps(v, JSON_ENCODE_ANY);

				kv = xasprintf("%s=%s", k, t ? t : "");
				free(t);
			}
			sb_addc(&sb, ' ');
			sshc_quote(&sb, kv);
			free(kv);
		}
		sb_addc(&sb, ' ');
	}
	if (argv != NULL) {
		json_array_foreach(argv, i, v) {
			if (i > 0)
				sb_addc(&sb, ' ');
			if (json_is_string(v)) {
				sshc_quote(&sb, json_string_value(v));
			} else {
				char *t = json_dumps(v, JSON_ENCODE_ANY);

				sshc_quote(&sb, t ? t : "");
				free(t);
			}
		}
	} else {
		if (json_object_size(env) > 0) {
			sb_adds(&sb, "/bin/sh -c ");
			sshc_quote(&sb, shell);
		} else {
			sb_adds(&sb, shell);
		}
	}
	return sb_detach(&sb);
}

char *
sshc_expand_home(const char *path)
{
	const char *home = getenv("HOME");

	if (path[0] == '~' && (path[1] == '/' || path[1] == '\0')) {
		if (home == NULL || *home == '\0') {
			struct passwd *pw = getpwuid(getuid());

			home = pw ? pw->pw_dir : "/";
		}
		return xasprintf("%s%s", home, path + 1);
	}
	return xstrdup(path);
}

char *
sshc_default_user(void)
{
	struct passwd pw, *res = NULL;
	char buf[4096];

	if (getpwuid_r(getuid(), &pw, buf, sizeof buf, &res) == 0 && res != NULL)
		return xstrdup(pw.pw_name);
	return xstrdup(getenv("USER") ? getenv("USER") : "root");
}
