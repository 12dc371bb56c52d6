/*
 * registry.h - one registry for the C built-in step types and the Lua
 * plugins, and the plugin search path.
 */
#ifndef ZDM_CORE_REGISTRY_H
#define ZDM_CORE_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>

#include "core/plugin_path.h"
#include "zdm/step.h"

struct registry;
struct registry *registry_new(const char *const *plugin_path);
/* find a type by name, loading a plugin from the path on first use.
 * NULL with *err when not found or the plugin does not load; for a name
 * not found, *err suggests a built-in or a plugin by its file's name
 * (plugin_scan), without loading any other plugin. */
const struct zdm_step_type *registry_get(struct registry *r, const char *name, char **err);
/* every known name (built-ins and every plugin found on the path), sorted;
 * loads all plugins.  Returns count; names owned by the registry. */
size_t registry_all(struct registry *r, const struct zdm_step_type ***out);
void registry_free(struct registry *r);
#endif
