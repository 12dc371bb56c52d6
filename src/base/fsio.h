/*
 * fsio.h - durable file I/O (fsio.c).  Each returns 0, or -1 with errno set
 * (sync_dir: with *err set).
 */
#ifndef ZDM_BASE_FSIO_H
#define ZDM_BASE_FSIO_H

#include <stdbool.h>
#include <stddef.h>

/* write all n bytes, retrying short writes and EINTR */
int write_all(int fd, const char *p, size_t n);
/* fdatasync / fsync, retried on EINTR */
int datasync(int fd);
int fullsync(int fd);
/* fsync the directory itself, so the entries made in it are durable */
int sync_dir(const char *dir, char **err);

/* path is a directory (through a symlink only when follow) owned by this
 * user and writable by no one else: -1 with *err naming what is wrong */
int dir_private(const char *path, bool follow, char **err);

#endif
