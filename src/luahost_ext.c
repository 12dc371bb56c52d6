/* luahost_ext.c - the host module's parts beyond luahost.c (luahost_ext.h) */
#include "luahost_ext.h"
#include "zdm.h"

const lua_CFunction lhx_openers[] = {
	lua_pg_open,	/* zdm.pg: src/lua_pg.c */
	NULL,
};
