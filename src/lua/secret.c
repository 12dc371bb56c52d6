/*
 * secret.c - zdm.is_secret(v): true when v is a string that is exactly
 * the value of one of the run's `secrets:` (what zdm writes as "***"), so a
 * plugin's validate() can insist that a credential comes from secrets, as
 * the C built-ins do (httpcheck.c hc_check_secret): zdm journals every step's
 * parameters, and only secrets are kept out of the journal.
 *
 * In the static validate() calls a secret is still "${{ secrets.NAME }}"
 * (zdm.is_expr is true); in the run-time call it is the value, and
 * zdm.is_secret tells it from a literal.  Without any secrets in the run it
 * is always false.  It reads nothing and changes nothing: allowed anywhere.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "base/redact.h"
#include "core/expr.h"
#include "lua/lib.h"

static int
lua_zdm_is_secret(lua_State *L)
{
	size_t len;
	const char *s;
	char *r;
	bool yes;

	if (lua_type(L, 1) != LUA_TSTRING) {
		lua_pushboolean(L, 0);
		return 1;
	}
	s = lua_tolstring(L, 1, &len);
	if (len == 0 || strlen(s) != len || !redact_active()) {
		lua_pushboolean(L, 0);
		return 1;
	}
	r = redact_str(s);	/* malloc'd; nothing below raises before the free */
	yes = strcmp(r, "***") == 0;
	free(r);
	lua_pushboolean(L, yes);
	return 1;
}

/*
 * zdm.from_secrets(v): the rule the C built-ins apply to a credential
 * (httpcheck.c hc_check_secret), for a plugin's validate(): true when v is
 * nil or "", still a "${{ ... }}" template (checked again when resolved), or
 * exactly a secret's value; false for a literal or any other value, which
 * would be written to the journal with the step's params.
 */
static int
lua_zdm_from_secrets(lua_State *L)
{
	const char *s;
	size_t len;

	if (lua_isnoneornil(L, 1)) {
		lua_pushboolean(L, 1);
		return 1;
	}
	if (lua_type(L, 1) != LUA_TSTRING) {
		lua_pushboolean(L, 0);
		return 1;
	}
	s = lua_tolstring(L, 1, &len);
	if (len == 0 || (strlen(s) == len && expr_has_template(s))) {
		lua_pushboolean(L, 1);
		return 1;
	}
	return lua_zdm_is_secret(L);
}

int
luaopen_zdm_secret(lua_State *L)
{
	lua_pushcfunction(L, lua_zdm_is_secret);
	lua_setfield(L, -2, "is_secret");
	lua_pushcfunction(L, lua_zdm_from_secrets);
	lua_setfield(L, -2, "from_secrets");
	return 0;
}
