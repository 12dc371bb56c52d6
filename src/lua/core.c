/*
 * core.c - the `zdm` module's own small functions for plugins: zdm.log,
 * zdm.sleep, zdm.note, zdm.progress and zdm.is_expr.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int
luaopen_zdm_core(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{ "sleep", lh_sleep },
		{ "log", lh_log },
		{ "is_expr", lh_is_expr },
		{ "note", lh_note },
		{ "progress", lh_progress },
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
