/*
 * fsio.c - durable file I/O: write everything, fsync and fdatasync retried
 * on EINTR, fsync of a directory (so a new or renamed entry survives a
 * crash).  The journal and the lock rely on these for write-ahead.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
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
