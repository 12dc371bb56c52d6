/*
 * json.c - zdm.json.encode(v) and zdm.json.decode(s) for plugins, through
 * jansson and the JSON <-> Lua conversion of luajson.c (which the
 * expression engine, core/expr.c, uses too).  Encoding sorts object keys.
 */
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>
#include <lauxlib.h>
#include <lua.h>

#include "lua/lib.h"
#include "lua/luajson.h"

/* zdm.json.encode(v) -> string; raises on a value with no JSON form */
static int
lh_json_encode(lua_State *L)
{
	struct lhx_guard *g;
	char *err = NULL, ebuf[512];

	luaL_checkany(L, 1);
	lua_settop(L, 1);
	g = lhx_guard(L);
	g->json = lj_to_json(L, 1, &err);
	if (g->json == NULL) {
		snprintf(ebuf, sizeof ebuf, "%s", err != NULL ? err : "?");
		free(err);
		return luaL_error(L, "zdm.json.encode: %s", ebuf);
	}
	g->str = json_dumps(g->json, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
	if (g->str == NULL)
		return luaL_error(L, "zdm.json.encode: cannot encode");
	lua_pushstring(L, g->str);
	return 1;
}

/* zdm.json.decode(s) -> value | nil, msg */
static int
lh_json_decode(lua_State *L)
{
	size_t len;
	const char *s = luaL_checklstring(L, 1, &len);
	struct lhx_guard *g = lhx_guard(L);
	json_error_t je;

	g->json = json_loadb(s, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
	if (g->json == NULL) {
		lua_pushnil(L);
		lua_pushfstring(L, "invalid JSON at line %d, column %d: %s",
		    je.line, je.column, je.text);
		return 2;
	}
	lj_push(L, g->json);
	return 1;
}

int
luaopen_zdm_json(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{ "encode", lh_json_encode },
		{ "decode", lh_json_decode },
		{ NULL, NULL },
	};

	luaL_newlib(L, funcs);
	lua_setfield(L, -2, "json");
	return 0;
}
