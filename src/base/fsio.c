/*
 * fsio.c - durable file I/O: write everything, fsync and fdatasync retried
 * on EINTR, fsync of a directory (so a new or renamed entry survives a
 * crash).  The journal and the lock rely on these for write-ahead.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fsio.h"
#include "base/util.h"

int
write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int
datasync(int fd)
{
	int rc;

	do
		rc = fdatasync(fd);
	while (rc != 0 && errno == EINTR);
	return rc;
}

int
fullsync(int fd)
{
	int rc;

	do
		rc = fsync(fd);
	while (rc != 0 && errno == EINTR);
	return rc;
}

int
sync_dir(const char *dir, char **err)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return seterr(err, "cannot open directory '%s': %s", dir,
		    strerror(errno));
	if (fullsync(fd) != 0) {
		int e = errno;

		close(fd);
		return seterr(err, "cannot fsync directory '%s': %s", dir,
		    strerror(e));
	}
	close(fd);
	return 0;
}

int
dir_private(const char *path, bool follow, char **err)
{
	struct stat st;

	if ((follow ? stat(path, &st) : lstat(path, &st)) != 0)
		return seterr(err, "'%s': %s", path, strerror(errno));
	if (S_ISLNK(st.st_mode))
		return seterr(err, "'%s' is a symbolic link: zdm keeps its journals and locks "
		    "only in a real directory", path);
	if (!S_ISDIR(st.st_mode))
		return seterr(err, "'%s' is not a directory", path);
	if (st.st_uid != geteuid())
		return seterr(err, "'%s' belongs to uid %u, not to you (uid %u): another user "
		    "could change its journals or locks; use a state dir of your own", path,
		    (unsigned)st.st_uid, (unsigned)geteuid());
	if ((st.st_mode & 022) != 0)
		return seterr(err, "'%s' is writable by %s (mode %04o): another user could "
		    "replace its journals or locks; chmod go-w '%s'", path,
		    (st.st_mode & 002) ? "others" : "its group", (unsigned)(st.st_mode & 07777), path);
	return 0;
}
