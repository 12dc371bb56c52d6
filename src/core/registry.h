/*
 * registry.h - one registry for the C built-in step types and the Lua
 * plugins, and the plugin search path.
 */
#ifndef ZDM_CORE_REGISTRY_H
#define ZDM_CORE_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>

#include "zdm/step.h"

struct registry;
struct registry *registry_new(const char *const *plugin_path);
/* find a type by name, loading a plugin from the path on first use.
 * NULL with *err when not found or the plugin does not load. */
const struct zdm_step_type *registry_get(struct registry *r, const char *name, char **err);
/* every known name (built-ins and every plugin found on the path), sorted;
 * loads all plugins.  Returns count; names owned by the registry. */
size_t registry_all(struct registry *r, const struct zdm_step_type ***out);
void registry_free(struct registry *r);
/* plugin search path: --plugin-path, ZDM_PLUGIN_PATH, ./plugins, PREFIX/share/zdm/plugins */
char **plugin_path_build(const char *flag);
void plugin_path_free(char **p);
/* plugin names and files (registry.c), also for zdm.lib in luahost.c:
 * a dotted name of [a-z0-9_-] parts; a library's last part starts with '_';
 * plugin_find: the first <dir>/a/b.lua on path (malloc'd) or NULL */
bool plugin_name_valid(const char *name);
bool plugin_is_lib(const char *name);
char *plugin_find(const char *const *path, const char *name);

#endif
