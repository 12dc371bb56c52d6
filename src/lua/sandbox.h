/*
 * sandbox.h - what a plugin's code can reach (sandbox.c).
 */
#ifndef ZDM_LUA_SANDBOX_H
#define ZDM_LUA_SANDBOX_H

#include <lua.h>

/* give the fresh state L Lua's base, string, table, math and utf8
 * libraries, without dofile, loadfile and require, with print, load,
 * xpcall and setmetatable replaced, and the global `zdm` with every zdm
 * library (lib.h).  May raise (memory). */
void sandbox_open(lua_State *L);

#endif
