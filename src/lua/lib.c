/*
 * lib.c - zdm.lib(name) for plugins: a plugin library, "db._pg" -> the
 * first <dir>/db/_pg.lua on the plugin search path (core/plugin_path.c's
 * plugin_find, the plugins' own order).  Text only, run once in this
 * plugin's state (same globals, hook and memory cap), its value cached in
 * LUA_REGISTRYINDEX[LH_LIBS] (true for a library that returns nothing).
 * Only while the plugin file loads, so a missing or broken library is a
 * load error, reported at validate.
 */
#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>

#include "core/plugin_path.h"
#include "lua/lib.h"

#define LH_LIBS		"zdm.libs"	/* registry: zdm.lib name -> its value */

/* in the cache while a library runs: zdm.lib of it again is a cycle */
static char lh_lib_loading;

static int
lh_lib(lua_State *L)
{
	const char *name = luaL_checkstring(L, 1);
	const char *const *search = lhx_search_path(L);
	char *file;
	int libs;

	if (!lhx_loading(L))
		return luaL_error(L, "zdm.lib('%s'): only while the plugin loads (at the top "
		    "level of its file, e.g. `local pg = zdm.lib(\"db._pg\")`), not in "
		    "validate(), plan(), run() or undo()", name);
	if (!plugin_name_valid(name) || !plugin_is_lib(name))
		return luaL_error(L, "zdm.lib('%s'): not a library name: a dotted name whose "
		    "last part starts with '_' (\"db._pg\" is <dir>/db/_pg.lua)", name);
	lua_settop(L, 1);
	lua_getfield(L, LUA_REGISTRYINDEX, LH_LIBS);
	libs = lua_gettop(L);
	switch (lua_getfield(L, libs, name)) {
	case LUA_TNIL:
		break;
	case LUA_TLIGHTUSERDATA:	/* the mark of a library still loading */
		return luaL_error(L, "zdm.lib('%s'): the library needs itself "
		    "(a cycle of zdm.lib calls)", name);
	default:
		return 1;
	}
	lua_pop(L, 1);

	file = plugin_find(search, name);
	if (file == NULL) {
		const char *rel = luaL_gsub(L, name, ".", "/");
		luaL_Buffer b;

		luaL_buffinit(L, &b);
		for (size_t i = 0; search != NULL && search[i] != NULL; i++) {
			if (i > 0)
				luaL_addchar(&b, ':');
			luaL_addstring(&b, search[i]);
		}
		luaL_pushresult(&b);
		return luaL_error(L, "zdm.lib('%s'): library not found: no %s.lua "
		    "on the plugin path (%s)", name, rel, lua_tostring(L, -1));
	}
	lua_pushstring(L, file);	/* may raise: file is freed first below */
	free(file);
	if (luaL_loadfilex(L, lua_tostring(L, -1), "t") != LUA_OK)
		goto fail;	/* "<file>:<line>: <syntax error>" */
	lua_pushlightuserdata(L, &lh_lib_loading);
	lua_setfield(L, libs, name);
	lua_pushvalue(L, 1);
	if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
		lua_pushnil(L);
		lua_setfield(L, libs, name);
		goto fail;
	}
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		lua_pushboolean(L, 1);
	}
	lua_pushvalue(L, -1);
	lua_setfield(L, libs, name);
	return 1;
fail:
	/* "<plugin>:<line>: zdm.lib('db._pg'): <library>:<line>: ..." */
	if (lhx_killed(L))
		return lua_error(L);
	if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER) {
		const char *tn = luaL_typename(L, -1);

		lua_pushfstring(L, "(error object is a %s value)", tn);
		lua_remove(L, -2);
	}
	luaL_where(L, 1);
	lua_pushfstring(L, "zdm.lib('%s'): ", name);
	lua_rotate(L, -3, 2);
	lua_concat(L, 3);
	return lua_error(L);
}

int
luaopen_zdm_lib(lua_State *L)
{
	lua_newtable(L);
	lua_setfield(L, LUA_REGISTRYINDEX, LH_LIBS);
	lua_pushcfunction(L, lh_lib);
	lua_setfield(L, -2, "lib");
	return 0;
}
