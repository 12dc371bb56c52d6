/*
 * luajson.c - jansson values <-> Lua values, for the Lua host.
 *
 * JSON -> Lua: objects become tables with string keys, arrays become
 * sequences 1..n, null becomes nil (so a null inside a table vanishes: Lua
 * has no other way to say it and plugins test `v == nil` anyway).
 *
 * Lua -> JSON: nil is null; an integer stays an integer and a float becomes
 * a real (NaN and infinities have no JSON form); a table whose keys are
 * exactly 1..n (n >= 1) is an array, any other table an object whose number
 * keys are written as Lua's tostring() would; the empty table is {}.
 * Conversion is raw (no metamethods) and never raises a Lua error, so the
 * caller may hold C memory across it; it fails on functions, userdata,
 * threads, cycles and nesting deeper than LJ_MAXDEPTH, naming where:
 * "a function has no JSON form (at .handler[2])".
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include "base/util.h"
#include "lua/luajson.h"

#define LJ_MAXDEPTH	64

struct lj {
	lua_State *L;
	const void *open[LJ_MAXDEPTH];	/* tables being converted: cycle check */
	int depth;
	char msg[256];			/* what went wrong */
	char where[256];		/* path to it, built while unwinding */
};

static json_t *lj_value(struct lj *c, int idx);

/* ---- JSON -> Lua --------------------------------------------------------- */

void
lj_push(lua_State *L, const json_t *v)
{
	luaL_checkstack(L, 3, "JSON value nested too deeply");
	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		json_t *o = (json_t *)v;	/* jansson's iterators are not const */
		size_t n = json_object_size(v);

		lua_createtable(L, 0, n > INT32_MAX ? INT32_MAX : (int)n);
		for (void *it = json_object_iter(o); it != NULL;
		    it = json_object_iter_next(o, it)) {
			lua_pushlstring(L, json_object_iter_key(it),
			    json_object_iter_key_len(it));
			lj_push(L, json_object_iter_value(it));
			lua_rawset(L, -3);
		}
		break;
	}
	case JSON_ARRAY: {
		size_t n = json_array_size(v);

		lua_createtable(L, n > INT32_MAX ? INT32_MAX : (int)n, 0);
		for (size_t i = 0; i < n; i++) {
			lj_push(L, json_array_get(v, i));
			lua_rawseti(L, -2, (lua_Integer)i + 1);
		}
		break;
	}
	case JSON_STRING:
		lua_pushlstring(L, json_string_value(v), json_string_length(v));
		break;
	case JSON_INTEGER:
		lua_pushinteger(L, (lua_Integer)json_integer_value(v));
		break;
	case JSON_REAL:
		lua_pushnumber(L, (lua_Number)json_real_value(v));
		break;
	case JSON_TRUE:
		lua_pushboolean(L, 1);
		break;
	case JSON_FALSE:
		lua_pushboolean(L, 0);
		break;
	case JSON_NULL:
		lua_pushnil(L);
		break;
	}
}

/* ---- Lua -> JSON --------------------------------------------------------- */

static json_t *
lj_fail(struct lj *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static json_t *
lj_fail(struct lj *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->msg, sizeof c->msg, fmt, ap);
	va_end(ap);
	return NULL;
}

/* put a path segment in front of c->where (we learn the path leaf first) */
static void
lj_where(struct lj *c, const char *seg)
{
	size_t sl = strlen(seg), wl = strlen(c->where);

	if (sl + wl + 1 > sizeof c->where)
		return;
	memmove(c->where + sl, c->where, wl + 1);
	memcpy(c->where, seg, sl);
}

/* Lua's tostring() of a float, without allocating in the Lua state */
static void
lj_numstr(lua_Number d, char *buf, size_t n)
{
	snprintf(buf, n, LUA_NUMBER_FMT, d);
	if (buf[strspn(buf, "-0123456789")] == '\0')
		snprintf(buf + strlen(buf), n - strlen(buf), ".0");
}

static bool
lj_alpha(char ch)
{
	return ch == '_' || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

/* a key that can follow a dot in an error path */
static bool
lj_ident(const char *s, size_t len)
{
	if (len == 0 || len > 40 || !lj_alpha(s[0]))
		return false;
	for (size_t i = 1; i < len; i++)
		if (!lj_alpha(s[i]) && !(s[i] >= '0' && s[i] <= '9'))
			return false;
	return true;
}

static json_t *
lj_number(struct lj *c, int idx)
{
	lua_Number d;
	char buf[64];

	if (lua_isinteger(c->L, idx))
		return json_integer((json_int_t)lua_tointeger(c->L, idx));
	d = lua_tonumber(c->L, idx);
	if (!isfinite(d)) {
		lj_numstr(d, buf, sizeof buf);
		return lj_fail(c, "the number %s has no JSON form", buf);
	}
	return json_real(d);
}

static json_t *
lj_array(struct lj *c, int idx, lua_Integer n)
{
	json_t *a = json_array();
	char seg[32];

	for (lua_Integer i = 1; i <= n; i++) {
		json_t *e;

		lua_rawgeti(c->L, idx, i);
		e = lj_value(c, lua_gettop(c->L));
		lua_pop(c->L, 1);
		if (e == NULL) {
			snprintf(seg, sizeof seg, "[%lld]", (long long)i);
			lj_where(c, seg);
			json_decref(a);
			return NULL;
		}
		json_array_append_new(a, e);
	}
	return a;
}

static json_t *
lj_object(struct lj *c, int idx)
{
	lua_State *L = c->L;
	json_t *o = json_object();
	int top = lua_gettop(L);
	char num[64], seg[64];

	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		const char *k;
		size_t klen;
		json_t *e;

		switch (lua_type(L, -2)) {
		case LUA_TSTRING:
			k = lua_tolstring(L, -2, &klen);
			break;
		case LUA_TNUMBER:
			if (lua_isinteger(L, -2))
				snprintf(num, sizeof num, LUA_INTEGER_FMT, lua_tointeger(L, -2));
			else
				lj_numstr(lua_tonumber(L, -2), num, sizeof num);
			k = num;
			klen = strlen(num);
			break;
		default:
			lj_fail(c, "a table key of type %s has no JSON form",
			    luaL_typename(L, -2));
			goto fail;
		}
		e = lj_value(c, lua_gettop(L));
		if (e == NULL) {
			if (lj_ident(k, klen))
				snprintf(seg, sizeof seg, ".%.*s", (int)klen, k);
			else
				snprintf(seg, sizeof seg, "[\"%.*s\"]",
				    klen > 40 ? 40 : (int)klen, k);
			lj_where(c, seg);
			goto fail;
		}
		if (json_object_setn_new(o, k, klen, e) != 0) {
			lj_fail(c, "a table key is not valid UTF-8");
			goto fail;
		}
		lua_pop(L, 1);
	}
	return o;
fail:
	lua_settop(L, top);
	json_decref(o);
	return NULL;
}

static json_t *
lj_table(struct lj *c, int idx)
{
	lua_State *L = c->L;
	const void *self = lua_topointer(L, idx);
	lua_Integer n = 0, max = 0;
	bool seq = true;
	json_t *r;

	for (int i = 0; i < c->depth; i++)
		if (c->open[i] == self)
			return lj_fail(c, "a table that contains itself has no JSON form");
	if (c->depth == LJ_MAXDEPTH)
		return lj_fail(c, "tables nested more than %d deep", LJ_MAXDEPTH);
	if (!lua_checkstack(L, 4))
		return lj_fail(c, "out of Lua stack space");

	/* an array when the keys are exactly 1..n */
	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		n++;
		if (seq && lua_isinteger(L, -2) && lua_tointeger(L, -2) >= 1) {
			if (lua_tointeger(L, -2) > max)
				max = lua_tointeger(L, -2);
		} else {
			seq = false;
		}
		lua_pop(L, 1);
	}

	c->open[c->depth++] = self;
	if (n > 0 && seq && max == n)
		r = lj_array(c, idx, n);
	else
		r = lj_object(c, idx);
	c->depth--;
	return r;
}

static json_t *
lj_value(struct lj *c, int idx)
{
	lua_State *L = c->L;
	const char *s;
	size_t len;
	json_t *j;

	switch (lua_type(L, idx)) {
	case LUA_TNONE:
	case LUA_TNIL:
		return json_null();
	case LUA_TBOOLEAN:
		return json_boolean(lua_toboolean(L, idx));
	case LUA_TNUMBER:
		return lj_number(c, idx);
	case LUA_TSTRING:
		s = lua_tolstring(L, idx, &len);
		j = json_stringn(s, len);
		if (j == NULL)
			return lj_fail(c, "a string that is not valid UTF-8 has no JSON form");
		return j;
	case LUA_TTABLE:
		return lj_table(c, idx);
	default:
		return lj_fail(c, "a %s has no JSON form", luaL_typename(L, idx));
	}
}

json_t *
lj_to_json(lua_State *L, int idx, char **err)
{
	struct lj c;
	json_t *j;

	memset(&c, 0, sizeof c);
	c.L = L;
	j = lj_value(&c, lua_absindex(L, idx));
	if (j == NULL) {
		if (c.where[0] != '\0')
			seterr(err, "%s (at %s)", c.msg, c.where);
		else
			seterr(err, "%s", c.msg);
	}
	return j;
}
