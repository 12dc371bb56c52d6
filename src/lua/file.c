/*
 * file.c - zdm.file.* for plugins: read, write_atomic, readlink, symlink,
 * remove, exists, type.  Errors come back as nil, message (luaL_fileresult)
 * rather than raised.  write_atomic and symlink replace atomically: a temp
 * file (its data fsync'd) or link made beside the target is renamed over
 * it, then the directory is fsync'd.  The functions that change the file
 * system act (lhx_may_act); the others are allowed anywhere.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "base/util.h"
#include "lua/lib.h"
#include "zdm/step.h"

/* "dir/base" -> dir ("." or "/" as needed) and a temp name beside it with
 * `suffix` appended.  -1 (errno set) when it does not fit or has no base. */
static int
lh_beside(const char *path, char *dir, size_t dn, char *tmp, size_t tn,
    const char *suffix)
{
	const char *slash = strrchr(path, '/'), *base;
	int r;

	if (slash == NULL) {
		snprintf(dir, dn, ".");
		base = path;
	} else {
		size_t len = slash == path ? 1 : (size_t)(slash - path);

		if (len >= dn) {
			errno = ENAMETOOLONG;
			return -1;
		}
		memcpy(dir, path, len);
		dir[len] = '\0';
		base = slash + 1;
	}
	if (base[0] == '\0') {
		errno = EISDIR;
		return -1;
	}
	r = snprintf(tmp, tn, "%s/.%.200s.%s", dir, base, suffix);
	if (r < 0 || (size_t)r >= tn) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

static int
lh_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc, e;

	if (fd == -1)
		return -1;
	rc = fsync(fd);
	e = errno;
	close(fd);
	errno = e;
	/* some file systems cannot sync a directory; nothing to do there */
	return rc == -1 && errno != EINVAL ? -1 : 0;
}

static int
lh_write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w == -1 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* zdm.file.read(path) -> string | nil, msg */
static int
lh_file_read(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	struct lhx_guard *g = lhx_guard(L);
	char buf[65536];

	g->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (g->fd == -1)
		return luaL_fileresult(L, 0, path);
	sb_init(&g->sb);
	g->has_sb = true;
	for (;;) {
		ssize_t r = read(g->fd, buf, sizeof buf);

		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1)
			return luaL_fileresult(L, 0, path);
		if (r == 0)
			break;
		if (g->sb.len + (size_t)r > lhx_mem_limit(L)) {
			errno = EFBIG;
			return luaL_fileresult(L, 0, path);
		}
		sb_add(&g->sb, buf, (size_t)r);
	}
	lua_pushlstring(L, g->sb.buf, g->sb.len);
	return 1;
}

/* zdm.file.write_atomic(path, data [, mode]) -> true | nil, msg
 * mode defaults to the replaced file's, or 0644 */
static int
lh_file_write_atomic(lua_State *L)
{
	const char *path = (lhx_may_act(L, "zdm.file.write_atomic"), luaL_checkstring(L, 1));
	size_t len;
	const char *data = luaL_checklstring(L, 2, &len);
	lua_Integer mode = luaL_optinteger(L, 3, -1);
	char dir[PATH_MAX], tmp[PATH_MAX];
	struct stat st;
	int fd = -1, e;

	luaL_argcheck(L, mode >= -1 && mode <= 07777, 3, "mode out of range");
	if (lh_beside(path, dir, sizeof dir, tmp, sizeof tmp, "zdm-XXXXXX") == -1)
		return luaL_fileresult(L, 0, path);
	if (mode == -1)
		mode = stat(path, &st) == 0 ? (lua_Integer)(st.st_mode & 07777) : 0644;
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd == -1)
		return luaL_fileresult(L, 0, path);
	if (lh_write_all(fd, data, len) == -1 || fchmod(fd, (mode_t)mode) == -1 ||
	    fsync(fd) == -1)
		goto fail;
	e = close(fd);
	fd = -1;
	if (e == -1 || rename(tmp, path) == -1)
		goto fail;
	if (lh_fsync_dir(dir) == -1)
		return luaL_fileresult(L, 0, dir);
	lua_pushboolean(L, 1);
	return 1;
fail:
	e = errno;
	if (fd != -1)
		close(fd);
	unlink(tmp);
	errno = e;
	return luaL_fileresult(L, 0, path);
}

/* zdm.file.readlink(path) -> target | nil, msg */
static int
lh_file_readlink(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	char buf[PATH_MAX];
	ssize_t n = readlink(path, buf, sizeof buf);

	if (n == (ssize_t)sizeof buf) {
		errno = ENAMETOOLONG;
		n = -1;
	}
	if (n == -1)
		return luaL_fileresult(L, 0, path);
	lua_pushlstring(L, buf, (size_t)n);
	return 1;
}

/*
 * zdm.file.symlink(target, linkpath) -> true | nil, msg
 * Atomic replace: make the link under a unique name beside linkpath, then
 * rename() it over linkpath (`ln -s` + `mv -T`); readers never see no link.
 */
static int
lh_file_symlink(lua_State *L)
{
	static unsigned counter;
	const char *target = (lhx_may_act(L, "zdm.file.symlink"), luaL_checkstring(L, 1));
	const char *link = luaL_checkstring(L, 2);
	char dir[PATH_MAX], tmp[PATH_MAX], suffix[32];
	int e;

	for (int tries = 0;; tries++) {
		unsigned r = (unsigned)getpid() * 2654435761u ^
		    (unsigned)zdm_now_ms() ^ ++counter * 0x9e3779b9u;

		snprintf(suffix, sizeof suffix, "zdm-%08x", r);
		if (lh_beside(link, dir, sizeof dir, tmp, sizeof tmp, suffix) == -1)
			return luaL_fileresult(L, 0, link);
		if (symlink(target, tmp) == 0)
			break;
		if (errno != EEXIST || tries == 100)
			return luaL_fileresult(L, 0, link);
	}
	if (rename(tmp, link) == -1) {
		e = errno;
		unlink(tmp);
		errno = e;
		return luaL_fileresult(L, 0, link);
	}
	if (lh_fsync_dir(dir) == -1)
		return luaL_fileresult(L, 0, dir);
	lua_pushboolean(L, 1);
	return 1;
}

/* zdm.file.remove(path) -> true | nil, msg (a file, a link, an empty dir) */
static int
lh_file_remove(lua_State *L)
{
	const char *path = (lhx_may_act(L, "zdm.file.remove"), luaL_checkstring(L, 1));

	return luaL_fileresult(L, remove(path) == 0, path);
}

/* zdm.file.exists(path) -> bool; true for anything there, a dangling link too */
static int
lh_file_exists(lua_State *L)
{
	struct stat st;

	lua_pushboolean(L, lstat(luaL_checkstring(L, 1), &st) == 0);
	return 1;
}

/* zdm.file.type(path) -> "file" | "dir" | "link" | "other" | nil, msg */
static int
lh_file_type(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	struct stat st;

	if (lstat(path, &st) == -1)
		return luaL_fileresult(L, 0, path);
	if (S_ISREG(st.st_mode))
		lua_pushliteral(L, "file");
	else if (S_ISDIR(st.st_mode))
		lua_pushliteral(L, "dir");
	else if (S_ISLNK(st.st_mode))
		lua_pushliteral(L, "link");
	else
		lua_pushliteral(L, "other");
	return 1;
}

int
luaopen_zdm_file(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{ "read", lh_file_read },
		{ "write_atomic", lh_file_write_atomic },
		{ "readlink", lh_file_readlink },
		{ "symlink", lh_file_symlink },
		{ "remove", lh_file_remove },
		{ "exists", lh_file_exists },
		{ "type", lh_file_type },
		{ NULL, NULL },
	};

	luaL_newlib(L, funcs);
	lua_setfield(L, -2, "file");
	return 0;
}
