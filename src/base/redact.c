/*
 * redact.c - every value that came from `secrets:` is replaced by "***"
 * wherever zdm writes text: journal records, log lines, terminal output and a
 * child process's captured stdout/stderr.
 *
 * The list is process-wide (secrets are resolved once per run).  Longer
 * secrets are replaced first so a secret that contains another is not left
 * half visible.
 */
#include <stdlib.h>
#include <string.h>

#include "base/redact.h"
#include "base/util.h"

static char **secrets;
static size_t nsecrets;

static int
bylen(const void *a, const void *b)
{
	size_t la = strlen(*(char *const *)a), lb = strlen(*(char *const *)b);

	return la < lb ? 1 : la > lb ? -1 : 0;
}

void
redact_add(const char *secret)
{
	if (secret == NULL || *secret == '\0')
		return;
	for (size_t i = 0; i < nsecrets; i++)
		if (strcmp(secrets[i], secret) == 0)
			return;
	secrets = xrealloc(secrets, (nsecrets + 1) * sizeof *secrets);
	secrets[nsecrets++] = xstrdup(secret);
	qsort(secrets, nsecrets, sizeof *secrets, bylen);
	/* a secret read from a file usually ends in a newline: redact the
	 * value without it too */
	{
		size_t n = strlen(secret);

		if (n > 1 && secret[n - 1] == '\n') {
			char *t = xstrndup(secret, n - 1);

			redact_add(t);
			free(t);
		}
	}
}

size_t
redact_maxlen(void)
{
	/* sorted longest first */
	return nsecrets ? strlen(secrets[0]) : 0;
}

bool
redact_active(void)
{
	return nsecrets > 0;
}

static bool
contains_any(const char *s)
{
	for (size_t i = 0; i < nsecrets; i++)
		if (strstr(s, secrets[i]) != NULL)
			return true;
	return false;
}

char *
redact_str(const char *s)
{
	struct sbuf sb;
	const char *p = s;

	if (s == NULL)
		return NULL;
	if (!contains_any(s))
		return xstrdup(s);
	sb_init(&sb);
	while (*p != '\0') {
		size_t i;

		for (i = 0; i < nsecrets; i++) {
			size_t n = strlen(secrets[i]);

			if (strncmp(p, secrets[i], n) == 0) {
				sb_adds(&sb, "***");
				p += n;
				break;
			}
		}
		if (i == nsecrets)
			sb_addc(&sb, *p++);
	}
	return sb_detach(&sb);
}

size_t
redact_tail(char *s, size_t len)
{
	/* a cut inside a secret leaves its first bytes at the end: drop them */
	for (size_t i = 0; i < nsecrets; i++) {
		size_t sl = strlen(secrets[i]);

		for (size_t k = sl - 1; k > 0; k--) {
			if (k <= len && memcmp(s + len - k, secrets[i], k) == 0) {
				len -= k;
				s[len] = '\0';
				break;
			}
		}
	}
	return len;
}

void
redact_json(json_t *v)
{
	if (nsecrets == 0 || v == NULL)
		return;
	if (json_is_string(v)) {
		if (contains_any(json_string_value(v))) {
			char *r = redact_str(json_string_value(v));

			json_string_set(v, r);
			free(r);
		}
	} else if (json_is_array(v)) {
		size_t i;
		json_t *e;

		json_array_foreach(v, i, e)
			redact_json(e);
	} else if (json_is_object(v)) {
		const char *k;
		json_t *e;
		void *tmp;

		json_object_foreach_safe(v, tmp, k, e) {
			redact_json(e);
			if (contains_any(k)) {
				char *rk = redact_str(k);

				json_object_set(v, rk, e);
				json_object_del(v, k);
				free(rk);
			}
		}
	}
}

void
redact_reset(void)
{
	for (size_t i = 0; i < nsecrets; i++)
		free(secrets[i]);
	free(secrets);
	secrets = NULL;
	nsecrets = 0;
}
