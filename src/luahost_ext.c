/* luahost_ext.c - the host module's parts beyond luahost.c (luahost_ext.h) */
#include "luahost_ext.h"

const lua_CFunction lhx_openers[] = {
	NULL,
};
