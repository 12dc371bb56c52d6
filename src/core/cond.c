/*
 * cond.c - gate conditions (metric_gate's `success` and `failure`): a Lua
 * expression over `result` with a few safe functions (isnan, isinf, math,
 * string, table), evaluated in an expression sandbox (expr.c) under its
 * instruction limit.  See expr.h.
 */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "base/util.h"
#include "core/expr.h"
#include "lua/luajson.h"

/* JSON has no NaN or infinity: expr_number() tags them, cond_push() untags */
#define COND_TAG "$number"

struct cond_call {
	const char *code;
	const json_t *result;
	bool syntax;		/* the error is a parse error */
	bool unknown;		/* the error is an unknown name */
};

static const char *const cond_names[] = {
	"result", "isnan", "isinf", "tostring", "tonumber", "type", "pairs", "ipairs",
	"select", "next", "error", "assert", "string", "table", "math", NULL,
};

json_t *
expr_number(double d)
{
	if (isnan(d))
		return json_pack("{s:s}", COND_TAG, "NaN");
	if (isinf(d))
		return json_pack("{s:s}", COND_TAG, d > 0 ? "+Inf" : "-Inf");
	return json_real(d);
}

/* __index of a condition's _ENV: a name that is not there is a typo */
static int
l_cond_missing(lua_State *L)
{
	struct cond_call *cc = lua_touserdata(L, lua_upvalueindex(1));
	const char *k = luaL_optstring(L, 2, "?");
	const char *s;

	if (strcmp(k, "result") == 0) {
		lua_pushnil(L);		/* an empty result: nil is a value here */
		return 1;
	}
	s = did_you_mean(k, cond_names);
	cc->unknown = true;
	if (s != NULL)
		return luaL_error(L, "unknown name '%s' (did you mean '%s'?)", k, s);
	return luaL_error(L, "unknown name '%s' (a condition sees result, isnan, isinf, math, string, table)", k);
}

static int
l_isnan(lua_State *L)
{
	bool yes = false;

	if (lua_type(L, 1) == LUA_TNUMBER) {
		lua_Number n = lua_tonumber(L, 1);

		yes = isnan(n);
	}
	lua_pushboolean(L, yes);
	return 1;
}

static int
l_isinf(lua_State *L)
{
	bool yes = false;

	if (lua_type(L, 1) == LUA_TNUMBER) {
		lua_Number n = lua_tonumber(L, 1);

		yes = isinf(n);
	}
	lua_pushboolean(L, yes);
	return 1;
}

/* push v as lj_push does, with tagged NaN / infinities as Lua numbers */
static void
cond_push(lua_State *L, const json_t *v)
{
	const json_t *tag = json_is_object(v) && json_object_size(v) == 1 ?
	    json_object_get(v, COND_TAG) : NULL;

	luaL_checkstack(L, 3, "result nested too deeply");
	if (v == NULL || json_is_null(v)) {
		lua_pushnil(L);
	} else if (json_is_string(tag)) {
		const char *t = json_string_value(tag);

		lua_pushnumber(L, strcmp(t, "NaN") == 0 ? (lua_Number)NAN :
		    t[0] == '-' ? -(lua_Number)HUGE_VAL : (lua_Number)HUGE_VAL);
	} else if (json_is_object(v)) {
		const char *k;
		json_t *e;

		lua_createtable(L, 0, (int)json_object_size(v));
		json_object_foreach((json_t *)v, k, e) {
			cond_push(L, e);
			lua_setfield(L, -2, k);
		}
	} else if (json_is_array(v)) {
		size_t i;
		json_t *e;

		lua_createtable(L, (int)json_array_size(v), 0);
		json_array_foreach(v, i, e) {
			cond_push(L, e);
			lua_rawseti(L, -2, (lua_Integer)i + 1);
		}
	} else {
		lj_push(L, v);
	}
}

/* the condition's _ENV: result, the safe functions, a guard for the rest */
static void
cond_env(lua_State *L, struct cond_call *cc)
{
	static const char *const fns[] = {
		"tostring", "tonumber", "type", "pairs", "ipairs", "select", "next",
		"error", "assert", LUA_STRLIBNAME, LUA_TABLIBNAME, LUA_MATHLIBNAME, NULL,
	};

	lua_newtable(L);
	expr_env_copy(L, fns);
	lua_pushcfunction(L, l_isnan);
	lua_setfield(L, -2, "isnan");
	lua_pushcfunction(L, l_isinf);
	lua_setfield(L, -2, "isinf");
	cond_push(L, cc->result);
	lua_setfield(L, -2, "result");
	lua_newtable(L);
	lua_pushlightuserdata(L, cc);
	lua_pushcclosure(L, l_cond_missing, 1);
	lua_setfield(L, -2, "__index");
	lua_setmetatable(L, -2);
}

/* runs protected: everything that may raise (memory, result too deep) */
static int
cond_main(lua_State *L)
{
	struct cond_call *cc = lua_touserdata(L, 1);
	const char *chunk = lua_pushfstring(L, "return %s", cc->code);

	if (luaL_loadbufferx(L, chunk, strlen(chunk), "=cond", "t") != LUA_OK) {
		cc->syntax = true;
		return lua_error(L);
	}
	cond_env(L, cc);
	lua_setupvalue(L, -2, 1);
	lua_call(L, 0, 1);
	return 1;
}

static int
cond_run(struct expr *x, struct cond_call *cc, int *out, char **err)
{
	lua_State *L = expr_lua(x);
	int top = lua_gettop(L), rc;

	cc->syntax = cc->unknown = false;
	lua_pushcfunction(L, cond_main);
	lua_pushlightuserdata(L, cc);
	rc = expr_pcall(x, 1);
	if (rc != LUA_OK) {
		const char *m = lua_tostring(L, -1);

		if (m != NULL && strncmp(m, "cond:", 5) == 0) {
			const char *c = strchr(m + 5, ':');

			m = c ? c + 1 + (c[1] == ' ') : m;
		}
		if (cc->syntax) {
			const char *eof = m ? strstr(m, "near <eof>") : NULL;
			char *hint = expr_habit(cc->code);

			if (hint != NULL)
				seterr(err, "condition '%s' does not parse: %s", cc->code, hint);
			else if (eof != NULL)
				seterr(err, "condition '%s' does not parse: %.*sat the end of the condition",
				    cc->code, (int)(eof - m), m);
			else
				seterr(err, "condition '%s' does not parse: %s", cc->code, m ? m : "?");
			free(hint);
		} else {
			seterr(err, "condition '%s': %s", cc->code, m ? m : "error");
		}
		lua_settop(L, top);
		return -1;
	}
	rc = 0;
	if (lua_isnil(L, -1))
		*out = -1;
	else if (lua_isboolean(L, -1))
		*out = lua_toboolean(L, -1) ? 1 : 0;
	else
		rc = seterr(err, "condition '%s' gives a %s, not true or false", cc->code,
		    luaL_typename(L, -1));
	lua_settop(L, top);
	return rc;
}

int
expr_eval_cond(struct expr *x, const char *code, const json_t *result, int *out,
    char **err)
{
	struct cond_call cc = { code, result, false, false };

	return cond_run(x, &cc, out, err);
}

int
expr_check_cond(const char *code, char **err)
{
	struct expr *x = expr_new();
	json_t *samples = json_pack("[n,f,o,[{s:{},s:f}],s]", 0.5, expr_number(NAN),
	    "metric", "value", 0.5, "");
	size_t i;
	json_t *v;
	int rc = 0;

	/* a name that is not there fails whatever the result; other errors
	 * (comparing nil with a number) depend on what the query returns */
	json_array_foreach(samples, i, v) {
		struct cond_call cc = { code, json_is_null(v) ? NULL : v, false, false };
		char *e = NULL;
		int out;

		if (cond_run(x, &cc, &out, &e) != 0 && (cc.syntax || cc.unknown)) {
			seterr(err, "%s", e);
			free(e);
			rc = -1;
			break;
		}
		free(e);
	}
	json_decref(samples);
	expr_free(x);
	return rc;
}
