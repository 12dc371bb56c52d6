/*
 * plugin_path.h - where Lua plugins are found (plugin_path.c).
 */
#ifndef ZDM_CORE_PLUGIN_PATH_H
#define ZDM_CORE_PLUGIN_PATH_H

#include <stdbool.h>

/* plugin search path: --plugin-path, ZDM_PLUGIN_PATH, ./plugins, PREFIX/share/zdm/plugins */
char **plugin_path_build(const char *flag);
void plugin_path_free(char **p);
/* plugin names and files, for the registry and for zdm.lib (lua/host.c):
 * a dotted name of [a-z0-9_-] parts; a library's last part starts with '_';
 * plugin_find: the first <dir>/a/b.lua on path (malloc'd) or NULL */
bool plugin_name_valid(const char *name);
bool plugin_is_lib(const char *name);
char *plugin_find(const char *const *path, const char *name);

#endif
