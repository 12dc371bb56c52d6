/*
 * http.c - zdm.http(req) for plugins: one HTTP request through net/httpc.c
 * (libcurl), bounded by the step's deadline.  GET and HEAD read, so they
 * are allowed in validate() and plan(); any other method acts
 * (lhx_may_act).  What comes back is redacted.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <lauxlib.h>
#include <lua.h>

#include "base/redact.h"
#include "base/util.h"
#include "lua/lib.h"
#include "lua/luajson.h"
#include "net/httpc.h"

/* req.NAME as a string or nil (left on the stack; the pointer lives as long) */
static const char *
lh_http_str(lua_State *L, const char *name)
{
	int ty = lua_getfield(L, 1, name);

	if (ty == LUA_TNIL)
		return NULL;
	if (ty != LUA_TSTRING)
		luaL_error(L, "zdm.http: '%s' must be a string, got %s", name,
		    luaL_typename(L, -1));
	return lua_tostring(L, -1);
}

/* req.headers into g->json: string names, string or number values */
static void
lh_http_headers(lua_State *L, struct lhx_guard *g)
{
	int t;

	if (lua_getfield(L, 1, "headers") == LUA_TNIL) {
		lua_pop(L, 1);
		return;
	}
	if (!lua_istable(L, -1))
		luaL_error(L, "zdm.http: 'headers' must be a table of name = value, got %s",
		    luaL_typename(L, -1));
	t = lua_gettop(L);
	g->json = json_object();
	lua_pushnil(L);
	while (lua_next(L, t) != 0) {
		size_t len;
		const char *v;

		if (lua_type(L, -2) != LUA_TSTRING)
			luaL_error(L, "zdm.http: header names must be strings, got %s",
			    luaL_typename(L, -2));
		if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
			luaL_error(L, "zdm.http: header '%s' must be a string, got %s",
			    lua_tostring(L, -2), luaL_typename(L, -1));
		lua_pushvalue(L, -1);	/* tostring a copy: keep next() sane */
		v = lua_tolstring(L, -1, &len);
		if (json_object_set_new(g->json, lua_tostring(L, -3), json_stringn(v, len)) != 0)
			luaL_error(L, "zdm.http: header '%s' is not valid UTF-8", lua_tostring(L, -3));
		lua_pop(L, 2);
	}
	lua_pop(L, 1);
}

/*
 * zdm.http(req) -> {status=, body=, headers=, duration_ms=} | nil, msg
 * req: url (required), method ("GET"), headers (name = value), body (a
 * string as is, or a table sent as JSON with content-type application/json),
 * timeout (ms; 10 s), ca_file, insecure, unix_socket, bearer, user,
 * password.  Response header names are lower case.  Bounded by the step's
 * deadline (count hooks do not run inside C: the request carries it).
 * Bad arguments raise; a request that got no response (refused, timed out,
 * TLS) returns nil and curl's message.
 */
static int
lh_http(lua_State *L)
{
	static const char *const known[] = {
		"method", "url", "headers", "body", "timeout", "ca_file", "insecure",
		"unix_socket", "bearer", "user", "password", NULL
	};
	struct http_req req;
	struct http_resp resp;
	struct lhx_guard *gq, *gr;
	char *err = NULL, ebuf[1024];
	const char *why;
	int ty, rc;

	lhx_check(L);
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	luaL_checkstack(L, 40, "zdm.http");
	lua_pushnil(L);
	while (lua_next(L, 1) != 0) {
		const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
		size_t i;

		for (i = 0; k != NULL && known[i] != NULL; i++)
			if (strcmp(k, known[i]) == 0)
				break;
		if (k == NULL || known[i] == NULL) {
			const char *dym = k != NULL ? did_you_mean(k, known) : NULL;

			return luaL_error(L, "zdm.http: unknown option '%s'%s%s%s",
			    k != NULL ? k : luaL_typename(L, -2), dym ? " (did you mean '" : "",
			    dym ? dym : "", dym ? "'?)" : "");
		}
		lua_pop(L, 1);
	}

	memset(&req, 0, sizeof req);
	req.url = lh_http_str(L, "url");
	if (req.url == NULL)
		return luaL_error(L, "zdm.http: 'url' is required");
	why = http_url_problem(req.url);
	if (why != NULL)
		return luaL_error(L, "zdm.http: malformed URL '%s': %s", req.url, why);
	req.method = lh_http_str(L, "method");
	if (req.method != NULL && strcasecmp(req.method, "GET") != 0 &&
	    strcasecmp(req.method, "HEAD") != 0)
		lhx_may_act(L, "zdm.http with a method other than GET or HEAD");
	req.ca_file = lh_http_str(L, "ca_file");
	req.unix_socket = lh_http_str(L, "unix_socket");
	req.bearer = lh_http_str(L, "bearer");
	req.user = lh_http_str(L, "user");
	req.password = lh_http_str(L, "password");
	ty = lua_getfield(L, 1, "insecure");
	if (ty != LUA_TNIL && ty != LUA_TBOOLEAN)
		return luaL_error(L, "zdm.http: 'insecure' must be a boolean, got %s",
		    luaL_typename(L, -1));
	req.insecure = lua_toboolean(L, -1);
	ty = lua_getfield(L, 1, "timeout");
	if (ty != LUA_TNIL) {
		lua_Number ms = lua_tonumber(L, -1);

		if (ty != LUA_TNUMBER || !(ms >= 1 && ms <= 1e12))
			return luaL_error(L, "zdm.http: 'timeout' must be a positive number of ms");
		req.timeout_ms = (int64_t)ms;
	}
	req.deadline_ms = lhx_deadline_ms(L);

	gq = lhx_guard(L);
	lh_http_headers(L, gq);
	ty = lua_getfield(L, 1, "body");
	if (ty == LUA_TSTRING) {
		req.body = lua_tolstring(L, -1, &req.body_len);
	} else if (ty == LUA_TTABLE) {
		json_t *j = lj_to_json(L, lua_gettop(L), &err);
		bool has_ct = false;
		const char *k;
		json_t *v;

		if (j == NULL) {
			snprintf(ebuf, sizeof ebuf, "%s", err != NULL ? err : "?");
			free(err);
			return luaL_error(L, "zdm.http: body: %s", ebuf);
		}
		gq->str = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
		json_decref(j);
		if (gq->str == NULL)
			return luaL_error(L, "zdm.http: body: cannot encode as JSON");
		req.body = gq->str;
		req.body_len = strlen(gq->str);
		if (gq->json == NULL)
			gq->json = json_object();
		json_object_foreach(gq->json, k, v)
			if (strcasecmp(k, "content-type") == 0)
				has_ct = true;
		if (!has_ct)
			json_object_set_new(gq->json, "Content-Type", json_string("application/json"));
	} else if (ty != LUA_TNIL) {
		return luaL_error(L, "zdm.http: 'body' must be a string or a table, got %s",
		    luaL_typename(L, -1));
	}
	req.headers = gq->json;
	if (req.insecure)
		lhx_log(L, "warning: zdm.http with insecure = true: TLS certificates are not verified");

	gr = lhx_guard(L);
	rc = http_do(&req, &resp, &err);
	gr->str = resp.body;		/* the guard frees them, whatever happens next */
	gr->json = resp.headers;
	if (rc != 0) {
		snprintf(ebuf, sizeof ebuf, "%s", err != NULL ? err : "request failed");
		free(err);
		lhx_check(L);		/* the step's deadline passed or a signal came */
		lua_pushnil(L);
		lua_pushstring(L, ebuf);
		return 2;
	}
	lhx_check(L);

	/* what a plugin gets back is redacted like zdm.exec's output */
	if (redact_active()) {
		char *red = redact_str(gr->str);

		free(gr->str);
		gr->str = red;
		resp.body = red;
		resp.body_len = strlen(red);
		if (resp.body_trunc)	/* a secret cut by the limit */
			resp.body_len = redact_tail(red, resp.body_len);
		redact_json(gr->json);
	}
	lua_createtable(L, 0, 4);
	lua_pushinteger(L, (lua_Integer)resp.status);
	lua_setfield(L, -2, "status");
	lua_pushlstring(L, gr->str, resp.body_len);
	lua_setfield(L, -2, "body");
	lj_push(L, gr->json);
	lua_setfield(L, -2, "headers");
	lua_pushinteger(L, (lua_Integer)resp.duration_ms);
	lua_setfield(L, -2, "duration_ms");
	if (resp.body_trunc) {
		lua_pushboolean(L, 1);
		lua_setfield(L, -2, "body_truncated");
	}
	return 1;
}

int
luaopen_zdm_http(lua_State *L)
{
	lua_pushcfunction(L, lh_http);
	lua_setfield(L, -2, "http");
	return 0;
}
