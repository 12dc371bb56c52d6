/*
 * core.c - the `zdm` module's own small functions for plugins: zdm.log,
 * zdm.sleep, zdm.now, zdm.note, zdm.progress, zdm.is_expr and zdm.signal.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <lauxlib.h>
#include <lua.h>

#include "base/proc.h"
#include "base/redact.h"
#include "core/events.h"
#include "lua/lib.h"
#include "lua/luajson.h"
#include "zdm/step.h"

/* zdm.log(msg) */
static int
lh_log(lua_State *L)
{
	lhx_log(L, luaL_tolstring(L, 1, NULL));
	return 0;
}

/* zdm.sleep(ms): bounded by the step's deadline */
static int
lh_sleep(lua_State *L)
{
	lua_Number ms = luaL_checknumber(L, 1);
	int64_t until, left, deadline = lhx_deadline_ms(L);

	lhx_check(L);
	if (!(ms > 0))
		return 0;
	if (ms > 1e12)
		ms = 1e12;
	until = zdm_now_ms() + (int64_t)ms;
	if (deadline != 0 && until > deadline)
		until = deadline;
	for (;;) {
		left = until - zdm_now_ms();
		if (left <= 0)
			break;
		zdm_sleep_ms(left);
		lhx_check(L);
	}
	lhx_check(L);		/* cut short by the deadline: raises */
	return 0;
}

/* zdm.now(): the monotonic clock in ms, to measure how long something
 * took within one call (not a time of day; not comparable across processes) */
static int
lh_now(lua_State *L)
{
	lua_pushinteger(L, (lua_Integer)zdm_now_ms());
	return 1;
}

/*
 * zdm.note(event, data): journal an event of the step's own now (on disk
 * when it returns), e.g. "backfill.batch"; earlier attempts' notes come back
 * in ctx.notes.  Names with a dot, not in zdm's own namespaces.
 */
static int
lh_note(lua_State *L)
{
	const char *ev = luaL_checkstring(L, 1);
	char *err = NULL, ebuf[512];
	json_t *data;

	lhx_may_act(L, "zdm.note");
	if (!ev_note_allowed(ev))
		return luaL_error(L, "zdm.note: event '%s' must be 'area.what' and not in "
		    "zdm's own step./undo./run./rollback./drill./approval./control./notify. namespaces", ev);
	if (lua_isnoneornil(L, 2)) {
		data = json_null();
	} else {
		data = lj_to_json(L, 2, &err);
		if (data == NULL) {
			snprintf(ebuf, sizeof ebuf, "%s", err != NULL ? err : "?");
			free(err);
			return luaL_error(L, "zdm.note: data: %s", ebuf);
		}
	}
	redact_json(data);
	zdm_note(lhx_ctx(L), ev, data);
	return 0;
}

/* zdm.progress(text): one live line beside the running step on a terminal */
static int
lh_progress(lua_State *L)
{
	const char *t = luaL_checkstring(L, 1);

	lhx_check(L);
	if (lhx_ctx(L) != NULL)
		zdm_progress(lhx_ctx(L), "%s", t);
	return 0;
}

/* zdm.is_expr(v) */
static int
lh_is_expr(lua_State *L)
{
	json_t *j = NULL;
	size_t len;
	const char *s;
	bool r = false;

	if (lua_type(L, 1) == LUA_TSTRING) {
		s = lua_tolstring(L, 1, &len);
		j = json_stringn(s, len);
		r = j != NULL && zdm_is_expr(j);
		json_decref(j);
	}
	lua_pushboolean(L, r);
	return 1;
}

/*
 * zdm.signal(pid_file, name) -> pid | nil, message
 *
 * Send a daemon's master the signal `name` (HUP, USR1, USR2, QUIT or TERM:
 * the reload, reopen, upgrade and stop signals daemons take; anything else
 * raises) with kill(2), no process spawned.  The pid is read from pid_file
 * (at most 63 bytes: optional blanks, decimal digits, optional blanks) and
 * must be > 1 and not zdm's own.  Errors (no file, no pid in it, no such
 * process, not permitted) come back as nil, message; the pid signalled on
 * success.  In run(), undo() and snapshot() only (lhx_may_act).
 */
static int
lh_signal(lua_State *L)
{
	static const struct { const char *name; int sig; } sigs[] = {
		{ "HUP", SIGHUP }, { "USR1", SIGUSR1 }, { "USR2", SIGUSR2 },
		{ "QUIT", SIGQUIT }, { "TERM", SIGTERM },
	};
	const char *path = luaL_checkstring(L, 1), *name = luaL_checkstring(L, 2);
	char buf[64];
	const char *p;
	ssize_t n;
	long long pid = 0;
	size_t i;
	int sig = 0, fd, e;

	for (i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		if (strcmp(name, sigs[i].name) == 0)
			sig = sigs[i].sig;
	if (sig == 0)
		return luaL_error(L, "zdm.signal: signal '%s' is not one of HUP, USR1, USR2, QUIT, TERM",
		    name);
	lhx_may_act(L, "zdm.signal");

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd == -1) {
		lua_pushnil(L);
		lua_pushfstring(L, "%s: %s", path, strerror(errno));
		return 2;
	}
	do
		n = read(fd, buf, sizeof buf);
	while (n == -1 && errno == EINTR);
	e = errno;
	close(fd);
	if (n == -1) {
		lua_pushnil(L);
		lua_pushfstring(L, "%s: %s", path, strerror(e));
		return 2;
	}
	if ((size_t)n == sizeof buf)
		goto nopid;
	buf[n] = '\0';
	p = buf;
	while (isspace((unsigned char)*p))
		p++;
	if (!isdigit((unsigned char)*p))
		goto nopid;
	while (isdigit((unsigned char)*p)) {
		pid = pid * 10 + (*p++ - '0');
		if (pid > INT_MAX)
			goto nopid;
	}
	while (isspace((unsigned char)*p))
		p++;
	if (*p != '\0')
		goto nopid;
	if (pid <= 1 || (pid_t)pid == getpid()) {
		lua_pushnil(L);
		lua_pushfstring(L, "%s: pid %d is not one zdm signals", path, (int)pid);
		return 2;
	}
	if (kill((pid_t)pid, sig) == -1) {
		lua_pushnil(L);
		lua_pushfstring(L, "kill -%s %d (from %s): %s", name, (int)pid, path,
		    errno == ESRCH ? "no such process" : strerror(errno));
		return 2;
	}
	lua_pushinteger(L, (lua_Integer)pid);
	return 1;
nopid:
	lua_pushnil(L);
	lua_pushfstring(L, "%s does not hold a pid", path);
	return 2;
}

int
luaopen_zdm_core(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{ "sleep", lh_sleep },
		{ "now", lh_now },
		{ "log", lh_log },
		{ "is_expr", lh_is_expr },
		{ "note", lh_note },
		{ "progress", lh_progress },
		{ "signal", lh_signal },
		{ NULL, NULL },
	};

	luaL_setfuncs(L, funcs, 0);
	return 0;
}

void
lhx_resource_lib(lua_State *L, const char *name, lua_CFunction gc,
    const char *field, lua_CFunction open)
{
	if (luaL_newmetatable(L, name)) {
		lua_pushcfunction(L, gc);
		lua_setfield(L, -2, "__gc");
		lua_pushcfunction(L, gc);
		lua_setfield(L, -2, "__close");
		lua_pushboolean(L, 0);
		lua_setfield(L, -2, "__metatable");
	}
	lua_pop(L, 1);
	lua_pushcfunction(L, open);
	lua_setfield(L, -2, field);
}
