/*
 * sandbox.c - what a plugin's code can reach: Lua's base, string, table,
 * math and utf8 libraries only (no dofile, loadfile or require; no io, os
 * or debug), print sent to zdm.log, load, xpcall and setmetatable replaced
 * so that no plugin code runs as bytecode or out of the count hook's reach
 * (why, at each function), and the global `zdm` with every zdm library
 * (lib.h; the list of them is here).  docs/plugins.md ("The sandbox") is
 * the plugin author's side.
 */
#include <stdbool.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "lua/lib.h"
#include "lua/sandbox.h"

/* print(...): tab-separated, like the real one, into zdm.log */
static int
lh_print(lua_State *L)
{
	int n = lua_gettop(L);
	luaL_Buffer b;

	luaL_buffinit(L, &b);
	for (int i = 1; i <= n; i++) {
		if (i > 1)
			luaL_addchar(&b, '\t');
		luaL_tolstring(L, i, NULL);
		luaL_addvalue(&b);
	}
	luaL_pushresult(&b);
	lhx_log(L, lua_tostring(L, -1));
	return 0;
}

/* load(chunk [, chunkname [, mode [, env]]]) with mode forced to "t" */
static int
lh_load(lua_State *L)
{
	bool env = lua_gettop(L) >= 4;	/* load() tells a nil env from none */

	lua_settop(L, 4);
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_pushvalue(L, 1);
	lua_pushvalue(L, 2);
	lua_pushliteral(L, "t");
	if (env)
		lua_pushvalue(L, 4);
	lua_call(L, env ? 4 : 3, LUA_MULTRET);
	return lua_gettop(L) - 4;
}

/*
 * xpcall(f, h, ...): Lua calls a message handler from inside the error, and
 * when the error is the hook's kill that is with hooks off: an endless
 * handler would never be stopped.  Here h runs after the unwind, under the
 * hook.  Without the debug library a handler cannot see the stack anyway.
 */
static int
lh_xpcall(lua_State *L)
{
	int n = lua_gettop(L);

	luaL_checktype(L, 2, LUA_TFUNCTION);
	lua_pushvalue(L, 1);
	for (int i = 3; i <= n; i++)
		lua_pushvalue(L, i);
	if (lua_pcall(L, n - 2, LUA_MULTRET, 0) == LUA_OK) {
		lua_pushboolean(L, 1);
		lua_insert(L, n + 1);
		return lua_gettop(L) - n;
	}
	lua_pushvalue(L, 2);
	lua_insert(L, -2);
	lua_pcall(L, 1, 1, 0);		/* h(err), or the error h raised */
	lua_pushboolean(L, 0);
	lua_insert(L, -2);
	return 2;
}

/*
 * setmetatable(t, mt) without __gc: Lua runs finalizers with hooks off, so
 * a plugin's __gc could loop forever out of the deadline's reach.
 */
static int
lh_setmetatable(lua_State *L)
{
	lua_settop(L, 2);
	if (lua_type(L, 2) == LUA_TTABLE) {
		lua_pushliteral(L, "__gc");
		if (lua_rawget(L, 2) != LUA_TNIL)
			return luaL_error(L, "setmetatable: __gc is not allowed in plugins");
		lua_pop(L, 1);
	}
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, 2, 1);
	return 1;
}

/* the libraries a plugin gets (linit.c: "copy me and edit") */
static const luaL_Reg lh_libs[] = {
	{ LUA_GNAME, luaopen_base },
	{ LUA_STRLIBNAME, luaopen_string },
	{ LUA_TABLIBNAME, luaopen_table },
	{ LUA_MATHLIBNAME, luaopen_math },
	{ LUA_UTF8LIBNAME, luaopen_utf8 },
	{ NULL, NULL },
};

/* the zdm libraries, each setting its fields of the `zdm` table (lib.h) */
static const lua_CFunction lh_zdm_libs[] = {
	luaopen_zdm_core,
	luaopen_zdm_lib,
	luaopen_zdm_exec,
	luaopen_zdm_http,
	luaopen_zdm_file,
	luaopen_zdm_json,
	luaopen_zdm_socket,
	luaopen_zdm_secret,
	luaopen_zdm_pg,
	luaopen_zdm_ssh,
	NULL,
};

void
sandbox_open(lua_State *L)
{
	for (const luaL_Reg *l = lh_libs; l->func != NULL; l++) {
		luaL_requiref(L, l->name, l->func, 1);
		lua_pop(L, 1);
	}
	lua_pushnil(L);
	lua_setglobal(L, "dofile");
	lua_pushnil(L);
	lua_setglobal(L, "loadfile");
	lua_pushnil(L);
	lua_setglobal(L, "require");
	lua_getglobal(L, "load");
	lua_pushcclosure(L, lh_load, 1);
	lua_setglobal(L, "load");
	lua_pushcfunction(L, lh_print);
	lua_setglobal(L, "print");
	lua_pushcfunction(L, lh_xpcall);
	lua_setglobal(L, "xpcall");
	lua_getglobal(L, "setmetatable");
	lua_pushcclosure(L, lh_setmetatable, 1);
	lua_setglobal(L, "setmetatable");

	lua_newtable(L);
	for (const lua_CFunction *o = lh_zdm_libs; *o != NULL; o++)
		(*o)(L);	/* zdm.exec, zdm.socket, zdm.pg, ... (lib.h) */
	lua_setglobal(L, "zdm");
}
