/*
 * audit_key.c - the HMAC key of the journal's chain: taken once at start
 * from ZDM_AUDIT_KEY or ZDM_AUDIT_KEY_FILE, scrubbed from the environment
 * (and from the process's environment block), redacted everywhere
 * (journal.h: journal_init_key, journal_set_audit_key).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/redact.h"
#include "base/util.h"
#include "core/audit_key.h"

static char *audit_key_v;	/* the key, taken by journal_init_key() */

const char *
audit_key(void)
{
	return audit_key_v;
}

void
journal_set_audit_key(const char *key)
{
	free(audit_key_v);
	audit_key_v = key != NULL && *key != '\0' ? xstrdup(key) : NULL;
	if (audit_key_v != NULL)
		redact_add(audit_key_v);
}

/* the key file's bytes, with one trailing newline (and CR) cut; the file
 * must be a regular file owned by this user (or root) that no one else
 * may read or write: a key others can read is no key */
static char *
read_key_file(const char *path, char **err)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	struct stat st;
	char buf[4097];
	ssize_t n;

	if (fd < 0) {
		seterr(err, "ZDM_AUDIT_KEY_FILE '%s': %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		seterr(err, "ZDM_AUDIT_KEY_FILE '%s': not a regular file", path);
		return NULL;
	}
	if ((st.st_uid != geteuid() && st.st_uid != 0) || (st.st_mode & 077) != 0) {
		close(fd);
		seterr(err, "ZDM_AUDIT_KEY_FILE '%s': mode %04o, owner uid %u: it must be "
		    "yours and readable by you alone (chmod 600 '%s')", path,
		    (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid, path);
		return NULL;
	}
	do
		n = read(fd, buf, sizeof buf - 1);
	while (n < 0 && errno == EINTR);
	close(fd);
	if (n < 0) {
		seterr(err, "ZDM_AUDIT_KEY_FILE '%s': %s", path, strerror(errno));
		return NULL;
	}
	if ((size_t)n == sizeof buf - 1) {
		explicit_bzero(buf, sizeof buf);
		seterr(err, "ZDM_AUDIT_KEY_FILE '%s': over 4096 bytes; a key is a line of text", path);
		return NULL;
	}
	buf[n] = '\0';
	if (n > 0 && buf[n - 1] == '\n')
		buf[--n] = '\0';
	if (n > 0 && buf[n - 1] == '\r')
		buf[--n] = '\0';
	if (n == 0 || strlen(buf) != (size_t)n) {
		explicit_bzero(buf, sizeof buf);
		seterr(err, "ZDM_AUDIT_KEY_FILE '%s': %s", path, n == 0 ? "empty" :
		    "holds a NUL byte; a key is a line of text");
		return NULL;
	}
	{
		char *k = xstrdup(buf);

		explicit_bzero(buf, sizeof buf);
		return k;
	}
}

int
journal_init_key(char **err)
{
	char *env = getenv("ZDM_AUDIT_KEY");
	const char *file = getenv("ZDM_AUDIT_KEY_FILE");
	char *key = NULL;
	int rc = 0;

	/*
	 * Taken once, then out of the environment that every step inherits
	 * (a step that can read the key could forge the chain) and onto the
	 * redaction list (an `env` in a step must not print it).  unsetenv()
	 * only drops the pointer: the bytes stay in the process's environment
	 * block, which /proc/PID/environ shows to any process of this user, so
	 * they are overwritten first.
	 */
	if (env != NULL && *env != '\0' && file != NULL && *file != '\0')
		rc = seterr(err, "both ZDM_AUDIT_KEY and ZDM_AUDIT_KEY_FILE are set: set one "
		    "(the file is safer: the key never enters an environment)");
	else if (env != NULL && *env != '\0')
		key = xstrdup(env);
	else if (file != NULL && *file != '\0' && (key = read_key_file(file, err)) == NULL)
		rc = -1;
	if (env != NULL)
		explicit_bzero(env, strlen(env));
	unsetenv("ZDM_AUDIT_KEY");
	unsetenv("ZDM_AUDIT_KEY_FILE");
	if (rc == 0)
		journal_set_audit_key(key);
	if (key != NULL) {
		explicit_bzero(key, strlen(key));
		free(key);
	}
	return rc;
}
