/* luahost_ext.c - the host module's parts beyond luahost.c (luahost_ext.h) */
#include "luahost_ext.h"

int lua_ssh_open(lua_State *L);	/* lua_ssh.c: zdm.ssh */

const lua_CFunction lhx_openers[] = {
	lua_ssh_open,
	NULL,
};
