/*
 * exec.c - zdm.exec(cmd [, opts]) for plugins: a command (an argv table or
 * a shell string) run through base/proc.c, its output kept up to a cap per
 * stream, bounded by the step's deadline and an optional timeout.  It acts,
 * so only in run(), undo() and snapshot() (lhx_may_act).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <lauxlib.h>
#include <lua.h>

#include "base/proc.h"
#include "base/util.h"
#include "lua/lib.h"
#include "zdm/step.h"

#define LH_EXEC_CAP	(1024 * 1024)	/* bytes kept per stream */
#define LH_KILL_GRACE	2000		/* ms from SIGTERM to SIGKILL */

/* opts.NAME as a string or nil (left on the stack; the pointer lives as long) */
static const char *
lh_optfield_str(lua_State *L, int t, const char *name)
{
	int ty = lua_getfield(L, t, name);

	if (ty == LUA_TNIL)
		return NULL;
	if (ty != LUA_TSTRING)
		luaL_error(L, "zdm.exec: option '%s' must be a string, got %s",
		    name, luaL_typename(L, -1));
	return lua_tostring(L, -1);
}

static int64_t
lh_optfield_num(lua_State *L, int t, const char *name)
{
	lua_Number v;

	if (lua_getfield(L, t, name) == LUA_TNIL) {
		lua_pop(L, 1);
		return 0;
	}
	if (lua_type(L, -1) != LUA_TNUMBER)
		luaL_error(L, "zdm.exec: option '%s' must be a number, got %s",
		    name, luaL_typename(L, -1));
	v = lua_tonumber(L, -1);
	if (!(v >= 1 && v <= 1e12))
		luaL_error(L, "zdm.exec: option '%s' must be a positive number", name);
	lua_pop(L, 1);
	return (int64_t)v;
}

/* check opts.env: string keys, string or number values */
static void
lh_check_env(lua_State *L, int t)
{
	lua_pushnil(L);
	while (lua_next(L, t) != 0) {
		if (lua_type(L, -2) != LUA_TSTRING)
			luaL_error(L, "zdm.exec: env names must be strings, got %s",
			    luaL_typename(L, -2));
		if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
			luaL_error(L, "zdm.exec: env '%s' must be a string, got %s",
			    lua_tostring(L, -2), luaL_typename(L, -1));
		lua_pop(L, 1);
	}
}

/*
 * zdm.exec(cmd [, opts]) -> {code=, signal=, stdout=, stderr=, timed_out=}
 * | nil, msg.  cmd: argv table or shell string.  opts: env, cwd, stdin,
 * timeout (ms), cap (bytes).
 */
/* a line the command printed, for zdm run -v (redacted by zdm_output) */
static void
lh_exec_line(void *arg, int stream, const char *line)
{
	zdm_output(arg, stream == 1 ? "stdout" : "stderr", line);
}

static int
lh_exec(lua_State *L)
{
	static const char *const known[] = {
		"env", "cwd", "stdin", "timeout", "cap", NULL
	};

	lhx_may_act(L, "zdm.exec");
	struct proc_opts o;
	struct lhx_guard *g;
	char **argv, *err = NULL, ebuf[512];
	int64_t timeout, cap, deadline;
	int env_idx = 0;

	lhx_check(L);
	lua_settop(L, 2);
	memset(&o, 0, sizeof o);
	if (lua_type(L, 1) == LUA_TSTRING) {
		o.shell = lua_tostring(L, 1);
	} else if (lua_type(L, 1) == LUA_TTABLE) {
		lua_Integer n = (lua_Integer)lua_rawlen(L, 1);

		if (n == 0)
			return luaL_argerror(L, 1, "empty argv");
		/* the strings stay alive: the table at 1 holds them */
		argv = lua_newuserdatauv(L, ((size_t)n + 1) * sizeof *argv, 0);
		for (lua_Integer i = 1; i <= n; i++) {
			if (lua_rawgeti(L, 1, i) != LUA_TSTRING)
				return luaL_error(L, "zdm.exec: argv[%d] must be a string, got %s",
				    (int)i, luaL_typename(L, -1));
			argv[i - 1] = (char *)lua_tostring(L, -1);
			lua_pop(L, 1);
		}
		argv[n] = NULL;
		o.argv = argv;
	} else {
		return luaL_typeerror(L, 1, "argv table or command string");
	}

	o.cap = LH_EXEC_CAP;
	o.kill_grace_ms = LH_KILL_GRACE;
	deadline = lhx_deadline_ms(L);
	if (!lua_isnil(L, 2)) {
		luaL_checktype(L, 2, LUA_TTABLE);
		lua_pushnil(L);
		while (lua_next(L, 2) != 0) {
			const char *k = lua_type(L, -2) == LUA_TSTRING ?
			    lua_tostring(L, -2) : NULL;
			size_t i;

			for (i = 0; k != NULL && known[i] != NULL; i++)
				if (strcmp(k, known[i]) == 0)
					break;
			if (k == NULL || known[i] == NULL)
				return luaL_error(L, "zdm.exec: unknown option '%s'",
				    k != NULL ? k : luaL_typename(L, -2));
			lua_pop(L, 1);
		}
		o.cwd = lh_optfield_str(L, 2, "cwd");
		o.stdin_data = lh_optfield_str(L, 2, "stdin");
		timeout = lh_optfield_num(L, 2, "timeout");
		if (timeout != 0 && (deadline == 0 || zdm_now_ms() + timeout < deadline))
			deadline = zdm_now_ms() + timeout;
		cap = lh_optfield_num(L, 2, "cap");
		if (cap != 0)
			o.cap = (size_t)cap;
		if (lua_getfield(L, 2, "env") != LUA_TNIL) {
			luaL_checktype(L, -1, LUA_TTABLE);
			env_idx = lua_gettop(L);
			lh_check_env(L, env_idx);
		}
	}
	o.deadline_ms = deadline;

	g = lhx_guard(L);
	if (env_idx != 0) {
		g->json = json_object();
		lua_pushnil(L);
		while (lua_next(L, env_idx) != 0) {
			size_t len;
			const char *v;

			lua_pushvalue(L, -1);	/* tostring a copy: keep next() sane */
			v = lua_tolstring(L, -1, &len);
			if (json_object_set_new(g->json, lua_tostring(L, -3),
			    json_stringn(v, len)) != 0)
				return luaL_error(L, "zdm.exec: env '%s' is not valid UTF-8",
				    lua_tostring(L, -3));
			lua_pop(L, 2);
		}
		o.env = g->json;
	}
	{
		/* ZDM_STEP_TAG, as the exec step sets it: a resume after zdm
		 * was killed finds this command by it while it still runs */
		struct zdm_ctx *ctx = lhx_ctx(L);

		if (ctx != NULL) {	/* zdm run -v shows each line under the step */
			o.on_line = lh_exec_line;
			o.line_arg = ctx;
		}
		if (ctx != NULL && ctx->run_id != NULL && ctx->step_id != NULL) {
			if (g->json == NULL)
				g->json = json_object();
			json_object_set_new(g->json, "ZDM_STEP_TAG", json_sprintf("%s/%s",
			    ctx->run_id, ctx->step_id));
			o.env = g->json;
		}
	}

	g->has_pr = true;
	if (proc_run(&o, &g->pr, &err) == -1) {
		snprintf(ebuf, sizeof ebuf, "%s", err != NULL ? err : "cannot start");
		free(err);
		lua_pushnil(L);
		lua_pushstring(L, ebuf);
		return 2;
	}
	lhx_check(L);		/* the step's deadline passed or a signal came */

	lua_createtable(L, 0, 5);
	lua_pushinteger(L, g->pr.exit_code);
	lua_setfield(L, -2, "code");
	if (g->pr.term_signal != 0) {
		lua_pushinteger(L, g->pr.term_signal);
		lua_setfield(L, -2, "signal");
	}
	lua_pushlstring(L, g->pr.out != NULL ? g->pr.out : "", g->pr.out_len);
	lua_setfield(L, -2, "stdout");
	lua_pushlstring(L, g->pr.err != NULL ? g->pr.err : "", g->pr.err_len);
	lua_setfield(L, -2, "stderr");
	lua_pushboolean(L, g->pr.timed_out);
	lua_setfield(L, -2, "timed_out");
	return 1;
}

int
luaopen_zdm_exec(lua_State *L)
{
	lua_pushcfunction(L, lh_exec);
	lua_setfield(L, -2, "exec");
	return 0;
}
