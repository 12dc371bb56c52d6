/*
 * luajson.h - JSON values (jansson) to and from Lua values.
 */
#ifndef ZDM_LUA_LUAJSON_H
#define ZDM_LUA_LUAJSON_H

#include <stdbool.h>

#include <jansson.h>

struct lua_State;
void lj_push(struct lua_State *L, const json_t *v);
/* converts the value at idx; tables with 1..n keys become arrays; an empty
 * table becomes {} (object) unless empty_as_array.  Returns NULL and sets
 * *err on a value that has no JSON form (function, userdata, cycle). */
json_t *lj_to_json(struct lua_State *L, int idx, char **err);

#endif
