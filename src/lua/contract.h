/*
 * contract.h - the step contract (zdm/step.h) in a plugin's Lua: the
 * values that cross between the runner and the plugin's functions.  Each
 * works on the plugin's Lua stack and may raise a Lua error, so the host
 * calls them inside its protected call.
 */
#ifndef ZDM_LUA_CONTRACT_H
#define ZDM_LUA_CONTRACT_H

#include <stddef.h>

#include <jansson.h>
#include <lua.h>

#include "zdm/step.h"

/* the plugin table's `params` list at t, checked, into *params (malloc'd,
 * *nparams of them; filled so far when it raises); path for messages */
void contract_params(lua_State *L, const char *path, int t, struct zdm_param **params,
    size_t *nparams);
/* push a step's params (an empty table for none) and its ctx table */
void contract_push_params(lua_State *L, const json_t *params);
void contract_push_ctx(lua_State *L, const struct zdm_ctx *ctx);
/* what validate() returned, at r, into d */
void contract_diags(lua_State *L, int r, struct zdm_diag *d);
/* what run() or undo() (fn) returned, at r and r + 1, into res: 0, or -1
 * with the reason in res */
int contract_result(lua_State *L, int r, const char *fn, struct zdm_result *res);
/* the same for snapshot(), whose value is the undo_data */
int contract_undo_data(lua_State *L, int r, const char *fn, struct zdm_result *res);

#endif
