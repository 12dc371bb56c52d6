/*
 * contract.c - the step contract (zdm/step.h) in a plugin's Lua: the
 * plugin's declared params checked and turned into struct zdm_param, the
 * ctx and params a call gets, and what validate(), run(), undo() and
 * snapshot() return turned into diagnostics and a struct zdm_result.  The
 * host (host.c) calls these inside its protected call: they may raise.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <lauxlib.h>
#include <lua.h>

#include "base/util.h"
#include "lua/contract.h"
#include "lua/luajson.h"
#include "zdm/step.h"

static const char *const lh_type_names[] = {
	/* in enum zdm_ptype order */
	"string", "int", "number", "bool", "duration", "list", "map", "any", "path", NULL
};

/* a default that fits its type; NULL or why not.  May replace *j. */
static const char *
lh_default_fits(enum zdm_ptype type, json_t **j)
{
	int64_t ms;

	switch (type) {
	case ZDM_T_PATH:
	case ZDM_T_STRING:
		return json_is_string(*j) ? NULL : "a string";
	case ZDM_T_INT:
		return json_is_integer(*j) ? NULL : "a whole number";
	case ZDM_T_NUMBER:
		return json_is_number(*j) ? NULL : "a number";
	case ZDM_T_BOOL:
		return json_is_boolean(*j) ? NULL : "a boolean";
	case ZDM_T_DURATION:
		if (json_is_integer(*j) && json_integer_value(*j) >= 0)
			return NULL;
		if (json_is_string(*j) && parse_duration(json_string_value(*j), &ms) == 0)
			return NULL;
		return "a duration like \"30s\" (or whole ms)";
	case ZDM_T_LIST:
		if (json_is_object(*j) && json_object_size(*j) == 0) {
			json_decref(*j);	/* {} is also the empty list */
			*j = json_array();
		}
		return json_is_array(*j) ? NULL : "a list";
	case ZDM_T_MAP:
		return json_is_object(*j) ? NULL : "a map";
	case ZDM_T_ANY:
		break;
	}
	return NULL;
}

static void
lh_param(lua_State *L, const char *path, struct zdm_param *params, int i, int e)
{
	static const char *const fields[] = {
		"name", "type", "required", "default", "doc", NULL
	};
	struct zdm_param *prm = &params[i - 1];
	const char *s, *why, *dym;
	char *jerr = NULL, ebuf[300];
	size_t k;
	json_t *j;

	if (!lua_istable(L, e))
		luaL_error(L, "%s: params[%d]: must be a table {name = ..., type = ...}, got %s",
		    path, i, luaL_typename(L, e));
	lua_pushnil(L);
	while (lua_next(L, e) != 0) {
		if (lua_type(L, -2) != LUA_TSTRING)
			luaL_error(L, "%s: params[%d]: field names must be strings",
			    path, i);
		s = lua_tostring(L, -2);
		for (k = 0; fields[k] != NULL; k++)
			if (strcmp(s, fields[k]) == 0)
				break;
		if (fields[k] == NULL) {
			dym = did_you_mean(s, fields);
			luaL_error(L, "%s: params[%d]: unknown field '%s'%s%s%s", path,
			    i, s, dym ? " (did you mean '" : "", dym ? dym : "",
			    dym ? "'?)" : "");
		}
		lua_pop(L, 1);
	}

	if (lua_getfield(L, e, "name") != LUA_TSTRING || lua_rawlen(L, -1) == 0)
		luaL_error(L, "%s: params[%d]: 'name' must be a non-empty string",
		    path, i);
	s = lua_tostring(L, -1);
	for (int m = 0; m < i - 1; m++)
		if (strcmp(params[m].name, s) == 0)
			luaL_error(L, "%s: params[%d]: duplicate name '%s'", path, i, s);
	prm->name = xstrdup(s);
	lua_pop(L, 1);

	if (lua_getfield(L, e, "type") != LUA_TSTRING)
		luaL_error(L, "%s: params[%d]: 'type' must be one of string, int, number, bool, duration, list, map, any, path",
		    path, i);
	s = lua_tostring(L, -1);
	for (k = 0; lh_type_names[k] != NULL; k++)
		if (strcmp(s, lh_type_names[k]) == 0)
			break;
	if (lh_type_names[k] == NULL) {
		dym = did_you_mean(s, lh_type_names);
		luaL_error(L, "%s: params[%d]: unknown type '%s'%s%s%s", path, i, s,
		    dym ? " (did you mean '" : "", dym ? dym : "", dym ? "'?)" : "");
	}
	prm->type = (enum zdm_ptype)k;
	lua_pop(L, 1);

	if (lua_getfield(L, e, "required") != LUA_TNIL && !lua_isboolean(L, -1))
		luaL_error(L, "%s: params[%d]: 'required' must be a boolean", path, i);
	prm->required = lua_toboolean(L, -1);
	lua_pop(L, 1);

	if (lua_getfield(L, e, "doc") != LUA_TNIL && lua_type(L, -1) != LUA_TSTRING)
		luaL_error(L, "%s: params[%d]: 'doc' must be a string", path, i);
	prm->doc = xstrdup(lua_isnil(L, -1) ? "" : lua_tostring(L, -1));
	lua_pop(L, 1);

	if (lua_getfield(L, e, "default") != LUA_TNIL) {
		if (prm->required)
			luaL_error(L, "%s: params[%d]: '%s' is required and has a default",
			    path, i, prm->name);
		/* no Lua calls while j is held */
		j = lj_to_json(L, -1, &jerr);
		if (j == NULL) {
			snprintf(ebuf, sizeof ebuf, "%s", jerr != NULL ? jerr : "?");
			free(jerr);
			luaL_error(L, "%s: params[%d]: default: %s", path, i, ebuf);
		}
		why = lh_default_fits(prm->type, &j);
		if (why == NULL)
			prm->def = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
		json_decref(j);
		if (why != NULL)
			luaL_error(L, "%s: params[%d]: default for '%s' must be %s",
			    path, i, prm->name, why);
	}
	lua_pop(L, 1);
}

void
contract_params(lua_State *L, const char *path, int t, struct zdm_param **params,
    size_t *nparams)
{
	lua_Integer n = (lua_Integer)lua_rawlen(L, t), count = 0;

	lua_pushnil(L);
	while (lua_next(L, t) != 0) {
		count++;
		if (!lua_isinteger(L, -2) || lua_tointeger(L, -2) < 1 ||
		    lua_tointeger(L, -2) > n)
			luaL_error(L, "%s: 'params' must be a list of {name = ..., type = ...}",
			    path);
		lua_pop(L, 1);
	}
	if (count != n)
		luaL_error(L, "%s: 'params' must be a list without holes", path);
	if (n > 1000)
		luaL_error(L, "%s: 'params' has more than 1000 entries", path);
	*params = xcalloc((size_t)n + 1, sizeof **params);
	for (lua_Integer i = 1; i <= n; i++) {
		*nparams = (size_t)i;	/* so a failure frees what is filled */
		lua_rawgeti(L, t, i);
		lh_param(L, path, *params, (int)i, lua_gettop(L));
		lua_pop(L, 1);
	}
}

void
contract_push_params(lua_State *L, const json_t *params)
{
	if (params != NULL && !json_is_null(params))
		lj_push(L, params);
	else
		lua_newtable(L);
}

void
contract_push_ctx(lua_State *L, const struct zdm_ctx *ctx)
{
	lua_createtable(L, 0, 9);
	if (ctx == NULL)
		return;
	lua_pushstring(L, ctx->run_id != NULL ? ctx->run_id : "");
	lua_setfield(L, -2, "run_id");
	lua_pushstring(L, ctx->step_id != NULL ? ctx->step_id : "");
	lua_setfield(L, -2, "step_id");
	lua_pushinteger(L, ctx->attempt);
	lua_setfield(L, -2, "attempt");
	lua_pushboolean(L, ctx->dry_run);
	lua_setfield(L, -2, "dry_run");
	lua_pushboolean(L, ctx->undoing);
	lua_setfield(L, -2, "undoing");
	lua_pushstring(L, ctx->state_dir != NULL ? ctx->state_dir : "");
	lua_setfield(L, -2, "state_dir");
	if (ctx->deadline_ms != 0) {
		/* on zdm.now()'s clock: how long the call may still take */
		lua_pushinteger(L, (lua_Integer)ctx->deadline_ms);
		lua_setfield(L, -2, "deadline");
	}
	if (ctx->prior != NULL && !json_is_null(ctx->prior)) {
		lj_push(L, ctx->prior);
		lua_setfield(L, -2, "prior");
	}
	if (ctx->notes != NULL && json_array_size(ctx->notes) > 0) {
		lj_push(L, ctx->notes);
		lua_setfield(L, -2, "notes");
	}
}

/* one validate() answer: a message or {param=, message=}; false if neither */
static bool
lh_diag_one(lua_State *L, struct zdm_diag *d, int idx)
{
	const char *param = NULL;

	if (lua_type(L, idx) == LUA_TSTRING) {
		zdm_diag(d, NULL, "%s", lua_tostring(L, idx));
		return true;
	}
	if (!lua_istable(L, idx))
		return false;
	if (lua_getfield(L, idx, "message") != LUA_TSTRING) {
		lua_pop(L, 1);
		return false;
	}
	if (lua_getfield(L, idx, "param") == LUA_TSTRING)
		param = lua_tostring(L, -1);
	zdm_diag(d, param, "%s", lua_tostring(L, -2));
	lua_pop(L, 2);
	return true;
}

/* what validate() returned, at r: nil, a message or a list of messages */
void
contract_diags(lua_State *L, int r, struct zdm_diag *d)
{
	if (lua_isnil(L, r) || lh_diag_one(L, d, r))
		return;
	if (!lua_istable(L, r)) {
		zdm_diag(d, NULL, "validate() returned a %s (expected nil, a message or a list of {param = ..., message = ...})",
		    luaL_typename(L, r));
		return;
	}
	for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, r); i++) {
		lua_rawgeti(L, r, i);
		if (!lh_diag_one(L, d, lua_gettop(L)))
			zdm_diag(d, NULL, "validate() returned a list with a %s in it",
			    luaL_typename(L, -1));
		lua_pop(L, 1);
	}
}

/*
 * What run() or undo() returned, at r and r + 1: nil | {outputs=, undo_data=}
 * for success, or nil, message | false for failure.  undo() may say instead
 * that it put nothing back: {left_in_place = "why"} (the change stays) or
 * {nothing_to_undo = "why"} (nothing of the step's stays).  run() may say
 * that it could not decide: {inconclusive = "why"} (with outputs, if it
 * likes) is neither a success nor a failure to roll back: res->pause, the
 * run pauses for a person (exit 4), as metric_gate does.
 */
int
contract_result(lua_State *L, int r, const char *fn, struct zdm_result *res)
{
	static const char *const fields[] = { "outputs", "undo_data", "inconclusive", NULL };
	static const char *const undo_fields[] = { "outputs", "undo_data", "left_in_place", "nothing_to_undo", NULL };
	bool undoing = strcmp(fn, "undo") == 0;
	json_t *out = NULL, *undo = NULL;
	char *err = NULL;
	const char *dym;
	int oi, ui;

	if (lua_isnil(L, r) || (lua_isboolean(L, r) && !lua_toboolean(L, r))) {
		if (!lua_isnil(L, r + 1))
			zdm_fail(res, "%s", luaL_tolstring(L, r + 1, NULL));
		else if (lua_isboolean(L, r))
			zdm_fail(res, "%s() returned false", fn);
		else
			return 0;
		return -1;
	}
	if (!lua_istable(L, r)) {
		zdm_fail(res, "%s() returned a %s (expected %s)", fn, luaL_typename(L, r), undoing ?
		    "nil, {outputs = ...}, {left_in_place = WHY} or {nothing_to_undo = WHY}" :
		    "nil or {outputs = ..., undo_data = ...}");
		return -1;
	}
	lua_pushnil(L);
	while (lua_next(L, r) != 0) {
		const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
		const char *const *known = undoing ? undo_fields : fields;
		bool ok = false;

		for (size_t i = 0; k != NULL && known[i] != NULL; i++)
			ok = ok || strcmp(k, known[i]) == 0;
		if (!ok) {
			dym = k != NULL ? did_you_mean(k, known) : NULL;
			zdm_fail(res, "%s() returned an unknown field '%s'%s%s%s", fn,
			    k != NULL ? k : luaL_typename(L, -2),
			    dym ? " (did you mean '" : undoing ?
			    " (expected outputs, left_in_place, nothing_to_undo" :
			    " (expected outputs, undo_data, inconclusive",
			    dym ? dym : "", dym ? "'?)" : ")");
			return -1;
		}
		lua_pop(L, 1);
	}
	if (undoing) {
		int left = lua_getfield(L, r, "left_in_place");
		int none = lua_getfield(L, r, "nothing_to_undo");

		if ((left != LUA_TNIL && left != LUA_TSTRING) || (none != LUA_TNIL && none != LUA_TSTRING) ||
		    (left != LUA_TNIL && none != LUA_TNIL)) {
			zdm_fail(res, "undo(): left_in_place or nothing_to_undo: one of them, "
			    "a string that says why");
			return -1;
		}
		if (left != LUA_TNIL || none != LUA_TNIL) {
			res->undo_said = left != LUA_TNIL ? ZDM_UNDO_LEFT : ZDM_UNDO_NOTHING;
			snprintf(res->undo_why, sizeof res->undo_why, "%s",
			    lua_tostring(L, left != LUA_TNIL ? -2 : -1));
		}
		lua_pop(L, 2);
	} else {
		int und = lua_getfield(L, r, "inconclusive");

		if (und != LUA_TNIL && und != LUA_TSTRING) {
			zdm_fail(res, "%s(): inconclusive must be a string that says why, got %s",
			    fn, luaL_typename(L, -1));
			return -1;
		}
		if (und == LUA_TSTRING) {
			zdm_fail(res, "%s", lua_tostring(L, -1));
			res->pause = true;
		}
		lua_pop(L, 1);
	}
	lua_getfield(L, r, "outputs");
	oi = lua_gettop(L);
	lua_getfield(L, r, "undo_data");
	ui = lua_gettop(L);
	if (!lua_isnil(L, oi) && !lua_istable(L, oi)) {
		zdm_fail(res, "%s(): outputs must be a table, got %s", fn,
		    luaL_typename(L, oi));
		return -1;
	}

	/* no Lua calls from here on: C memory is held */
	if (lua_istable(L, oi)) {
		out = lj_to_json(L, oi, &err);
		if (out == NULL) {
			zdm_fail(res, "%s(): outputs: %s", fn, err);
			free(err);
			return -1;
		}
		if (!json_is_object(out)) {
			json_decref(out);
			zdm_fail(res, "%s(): outputs must be a table of name = value, got a list",
			    fn);
			return -1;
		}
	}
	if (!lua_isnil(L, ui)) {
		undo = lj_to_json(L, ui, &err);
		if (undo == NULL) {
			json_decref(out);
			zdm_fail(res, "%s(): undo_data: %s", fn, err);
			free(err);
			return -1;
		}
	}
	json_decref(res->outputs);
	json_decref(res->undo_data);
	res->outputs = out;
	res->undo_data = undo;
	return res->pause ? -1 : 0;
}

/*
 * What snapshot() returned, at r and r + 1: the value is the undo_data
 * (nil for none), or nil, message for a failure.
 */
int
contract_undo_data(lua_State *L, int r, const char *fn, struct zdm_result *res)
{
	char *err = NULL;
	json_t *v = NULL;

	if (lua_isnil(L, r) && !lua_isnil(L, r + 1)) {
		/* `return nil, "why"`: a failure, as in run() */
		zdm_fail(res, "%s", luaL_tolstring(L, r + 1, NULL));
		return -1;
	}
	if (!lua_isnil(L, r)) {
		v = lj_to_json(L, r, &err);
		if (v == NULL) {
			zdm_fail(res, "%s(): %s", fn, err);
			free(err);
			return -1;
		}
	}
	json_decref(res->undo_data);
	res->undo_data = v;
	return 0;
}
