/*
 * host.h - Lua plugins as step types: the sandboxed host that loads them.
 */
#ifndef ZDM_LUA_HOST_H
#define ZDM_LUA_HOST_H

#include "zdm/step.h"

/* Load `plugins/<a>/<b>.lua` for name "a.b" from file `path` into a new step
 * type (malloc'd; free with its free_impl then free()). */
struct zdm_step_type *luahost_load(const char *name, const char *path, char **err);
/* the same, with the plugin search path (NULL-terminated, borrowed for the
 * load only) where the plugin's zdm.lib() looks for libraries */
struct zdm_step_type *luahost_load_from(const char *name, const char *path,
    const char *const *search, char **err);

#endif
