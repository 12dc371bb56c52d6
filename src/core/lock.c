/*
 * lock.c - one run at a time per runbook name and state dir:
 * STATE_DIR/locks/NAME.lock held with flock(2), so it goes away with the
 * process; its content names the holder for the error message.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "base/fsio.h"
#include "base/util.h"
#include "core/actor.h"
#include "core/lock.h"

/* the holder's record, or NULL while it is still being written */
static json_t *
lock_holder(int fd)
{
	char buf[4096];
	ssize_t r;

	do
		r = pread(fd, buf, sizeof buf, 0);
	while (r < 0 && errno == EINTR);
	if (r <= 0)
		return NULL;
	return json_loadb(buf, (size_t)r, JSON_DISABLE_EOF_CHECK, NULL);
}

/* fd and path are the same file (the path was not removed or replaced) */
static bool
same_file(int fd, const char *path)
{
	struct stat a, b;

	return fstat(fd, &a) == 0 && lstat(path, &b) == 0 && a.st_dev == b.st_dev &&
	    a.st_ino == b.st_ino;
}

int
lock_still_held(int fd, const char *state_dir, const char *name, char **err)
{
	char *path = xasprintf("%s/locks/%s.lock", state_dir, name);
	int rc = 0;

	if (!same_file(fd, path))
		rc = seterr(err, "the lock file '%s' was removed or replaced while this run held "
		    "it, so another run may have taken the lock", path);
	free(path);
	return rc;
}

int
lock_acquire(const char *state_dir, const char *name, const char *run_id,
    int *fd, char **err)
{
	char *dir, *path;
	char ts[32], host[256];
	json_t *me;
	char *text, *who;
	size_t len;
	int lfd, rc = -1;
	bool retried = false;

	*fd = -1;
	if (*name == '\0' || strchr(name, '/') != NULL ||
	    strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return seterr(err, "runbook name '%s' cannot name a lock file",
		    name);
	dir = path_join(state_dir, "locks");
	path = xasprintf("%s/%s.lock", dir, name);
	if (mkdir_p(dir, 0700) != 0) {
		seterr(err, "cannot create directory '%s': %s", dir,
		    strerror(errno));
		goto out;
	}
	/* a state dir another user can write is one where they can swap the
	 * lock or the journals: refuse it before acting */
	if (dir_private(state_dir, true, err) != 0 || dir_private(dir, false, err) != 0)
		goto out;
	for (int tries = 0;; tries++) {
		/* O_NOFOLLOW: a symlink planted at the lock's path must not
		 * make zdm open (and truncate) whatever it points at */
		lfd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC, 0600);
		if (lfd < 0) {
			seterr(err, "cannot open lock '%s': %s%s", path, strerror(errno),
			    errno == ELOOP ? " (it is a symbolic link: remove it)" : "");
			goto out;
		}
		if (flock(lfd, LOCK_EX | LOCK_NB) == 0) {
			/* locked the file that is at the path now, not one
			 * removed or replaced since we opened it */
			if (same_file(lfd, path))
				break;
			close(lfd);
			if (tries < 5)
				continue;
			seterr(err, "the lock file '%s' keeps being removed or replaced; "
			    "find what does it before running", path);
			goto out;
		}
		if (errno == EINTR) {
			close(lfd);
			continue;
		}
		if (errno == EWOULDBLOCK) {
			json_t *h = NULL;

			/* the holder may be between flock() and its write */
			for (int i = 0; i < 20 && h == NULL; i++) {
				struct timespec ms10 = { 0, 10 * 1000 * 1000 };

				h = lock_holder(lfd);
				if (h == NULL)
					nanosleep(&ms10, NULL);
			}
			/* still nothing said: a holder empties the file just
			 * before it lets go, so it may be free now; try again
			 * once rather than report a holder that has gone */
			if (h == NULL && !retried) {
				retried = true;
				close(lfd);
				continue;
			}
			if (h != NULL && json_is_object(h)) {
				const char *hh, *hr, *hs;

				hh = json_string_value(json_object_get(h, "host"));
				hr = json_string_value(json_object_get(h, "run"));
				hs = json_string_value(json_object_get(h, "since"));
				seterr(err, "runbook '%s' is locked by pid %"
				    JSON_INTEGER_FORMAT " on host '%s' (run %s, "
				    "since %s); wait for that run to finish or "
				    "stop it", name,
				    json_integer_value(json_object_get(h, "pid")),
				    hh != NULL ? hh : "?", hr != NULL ? hr : "?",
				    hs != NULL ? hs : "?");
			} else {
				seterr(err, "runbook '%s' is locked by another "
				    "zdm (no details in '%s'); wait for that "
				    "run to finish or stop it", name, path);
			}
			json_decref(h);
			rc = 1;
		} else {
			seterr(err, "cannot lock '%s': %s", path,
			    strerror(errno));
		}
		close(lfd);
		goto out;
	}

	now_iso8601(ts, sizeof ts);
	if (gethostname(host, sizeof host) != 0)
		snprintf(host, sizeof host, "?");
	host[sizeof host - 1] = '\0';
	me = json_object();
	json_object_set_new(me, "pid", json_integer((json_int_t)getpid()));
	json_object_set_new(me, "host", json_string(host));
	json_object_set_new(me, "run", json_string(run_id != NULL ? run_id : ""));
	json_object_set_new(me, "since", json_string(ts));
	json_object_set_new(me, "actor", json_string(who = audit_who()));
	free(who);
	text = json_dumps(me, JSON_COMPACT);
	json_decref(me);
	if (text == NULL) {
		seterr(err, "cannot write lock '%s': out of memory", path);
		close(lfd);
		goto out;
	}
	len = strlen(text);
	text[len] = '\n';
	if (ftruncate(lfd, 0) != 0 || write_all(lfd, text, len + 1) != 0 ||
	    fullsync(lfd) != 0) {
		seterr(err, "cannot write lock '%s': %s", path, strerror(errno));
		free(text);
		close(lfd);
		goto out;
	}
	free(text);
	*fd = lfd;
	rc = 0;
out:
	free(dir);
	free(path);
	return rc;
}

void
lock_release(int fd)
{
	if (fd < 0)
		return;
	/* still holding the lock: leave no stale holder for the next reader */
	if (ftruncate(fd, 0) != 0) {
		/* nothing to do: the content is only advice */
	}
	close(fd);
}

bool
lock_held(const char *state_dir, const char *name, long *pid, char **run)
{
	char *rel, *path;
	bool held;
	int fd;

	*pid = 0;
	*run = NULL;
	if (name == NULL || strchr(name, '/') != NULL)
		return false;
	rel = xasprintf("locks/%s.lock", name);
	path = path_join(state_dir, rel);
	free(rel);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	free(path);
	if (fd < 0)
		return false;
	held = flock(fd, LOCK_SH | LOCK_NB) != 0;
	if (held) {
		json_t *h = lock_holder(fd);
		const char *r = json_string_value(json_object_get(h, "run"));

		*pid = (long)json_integer_value(json_object_get(h, "pid"));
		*run = r != NULL ? xstrdup(r) : NULL;
		json_decref(h);
	}
	close(fd);
	return held;
}

int
lock_inspect(const char *state_dir, const char *name, bool *held, json_t **holder)
{
	char *rel, *path;
	int fd;

	*held = false;
	*holder = NULL;
	if (*name == '\0' || strchr(name, '/') != NULL || strcmp(name, ".") == 0 ||
	    strcmp(name, "..") == 0)
		return -1;
	rel = xasprintf("locks/%s.lock", name);
	path = path_join(state_dir, rel);
	free(rel);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	free(path);
	if (fd < 0)
		return 0;
	*held = flock(fd, LOCK_SH | LOCK_NB) != 0;
	*holder = lock_holder(fd);
	if (*holder != NULL && !json_is_object(*holder)) {
		json_decref(*holder);
		*holder = NULL;
	}
	close(fd);
	return 0;
}
