/* luahost_ext.c - the host module's parts beyond luahost.c (luahost_ext.h) */
#include "lua/lib.h"

int lhx_open_socket(lua_State *L);	/* zdm.socket: lua_socket.c */
int lhx_open_secret(lua_State *L);	/* zdm.is_secret: lua_secret.c */

int lua_ssh_open(lua_State *L);	/* lua_ssh.c: zdm.ssh */

const lua_CFunction lhx_openers[] = {
	lhx_open_socket,
	lhx_open_secret,
	lua_pg_open,	/* zdm.pg: src/lua_pg.c */
	lua_ssh_open,
	NULL,
};
