/*
 * plugin_path.h - where Lua plugins are found (plugin_path.c).
 */
#ifndef ZDM_CORE_PLUGIN_PATH_H
#define ZDM_CORE_PLUGIN_PATH_H

#include <stdbool.h>

/* plugin search path, absolute dirs, each once, first found wins:
 * --plugin-path, ZDM_PLUGIN_PATH, the plugins/ of the runbook's repository
 * (from the runbook's dir up to a .git or /: the first dir with plugins/;
 * without a runbook, from the current dir), ./plugins,
 * BIN/../share/zdm/plugins, BIN/../plugins, PREFIX/share/zdm/plugins */
char **plugin_path_build(const char *flag, const char *runbook);
/* "DIR, DIR (no such directory), ..." (malloc'd), for messages */
char *plugin_path_describe(const char *const *path);
void plugin_path_free(char **p);
/* plugin names and files, for the registry and for zdm.lib (lua/lib.c):
 * a dotted name of [a-z0-9_-] parts; a library's last part starts with '_';
 * plugin_find: the first <dir>/a/b.lua on path (malloc'd) or NULL */
bool plugin_name_valid(const char *name);
bool plugin_is_lib(const char *name);
char *plugin_find(const char *const *path, const char *name);
/* every plugin file on the path, without running any: for each <dir>/a/b.lua
 * (any depth) whose name "a.b" is valid and not a library, in path order,
 * fn(name, file, arg); a name in several dirs comes once from each */
typedef void (*plugin_scan_fn)(const char *name, const char *file, void *arg);
void plugin_scan(const char *const *path, plugin_scan_fn fn, void *arg);

#endif
