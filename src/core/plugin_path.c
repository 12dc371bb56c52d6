/*
 * plugin_path.c - where Lua plugins are found: the search path
 * (--plugin-path, ZDM_PLUGIN_PATH, the runbook's repository, ./plugins,
 * next to the binary, PREFIX)
 * and the file of a dotted name (`lb.nginx` is `<dir>/lb/nginx.lua`).
 * Shared by the registry and by zdm.lib in the Lua host (lua/lib.c); the
 * only place that knows how plugin files are laid out.
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/util.h"
#include "core/plugin_path.h"

#ifndef ZDM_PREFIX
#define ZDM_PREFIX "/usr/local"
#endif

/* add DIR to v (owned) unless it is there already */
static void
add_dir(char **v, size_t *n, char *dir)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp(v[i], dir) == 0) {
			free(dir);
			return;
		}
	v[(*n)++] = dir;
}

static bool
is_dir(const char *p)
{
	struct stat st;

	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/*
 * The plugins/ of the runbook's repository: from the runbook's directory
 * (absolute) up, the first directory with a plugins/ directory in it; the
 * walk stops at the top of a git repository (a .git in it), and before /.
 */
static char *
repo_plugins(const char *rbdir)
{
	char *d = xstrdup(rbdir);

	for (;;) {
		char *p = path_join(d, "plugins"), *git = path_join(d, ".git"), *up;
		bool top = access(git, F_OK) == 0;

		free(git);
		if (strcmp(d, "/") != 0 && is_dir(p)) {	/* not /plugins */
			free(d);
			return p;
		}
		free(p);
		up = path_dirname(d);
		if (top || strcmp(up, d) == 0) {
			free(up);
			free(d);
			return NULL;
		}
		free(d);
		d = up;
	}
}

char **
plugin_path_build(const char *flag, const char *runbook)
{
	char **v = xcalloc(72, sizeof *v);
	size_t n = 0;
	const char *envp = getenv("ZDM_PLUGIN_PATH");
	const char *parts[2] = { flag, envp };

	for (int i = 0; i < 2; i++) {
		char *copy, *save = NULL, *tok;

		if (parts[i] == NULL || *parts[i] == '\0')
			continue;
		copy = xstrdup(parts[i]);
		for (tok = strtok_r(copy, ":", &save); tok != NULL && n < 60;
		    tok = strtok_r(NULL, ":", &save))
			add_dir(v, &n, path_abs(tok));
		free(copy);
	}
	{
		/* the runbook's repository (without a runbook: the current dir's) */
		char *abs = path_abs(runbook != NULL ? runbook : "."),
		    *dir = runbook != NULL ? path_dirname(abs) : xstrdup(abs), *rp = repo_plugins(dir);

		if (rp != NULL)
			add_dir(v, &n, rp);
		free(abs);
		free(dir);
	}
	add_dir(v, &n, path_abs("plugins"));
	{
		/* where this binary is: BIN/../share/zdm/plugins, so `make install
		 * PREFIX=...` works without a rebuild, and BIN/../plugins, so a
		 * binary built in (or unpacked with) its source tree finds them */
		char exe[4096];
		ssize_t l = readlink("/proc/self/exe", exe, sizeof exe - 1);

		if (l > 0) {
			char *bin, *pre;

			exe[l] = '\0';
			bin = path_dirname(exe);
			pre = path_dirname(bin);
			add_dir(v, &n, path_join(pre, "share/zdm/plugins"));
			add_dir(v, &n, path_join(pre, "plugins"));
			free(bin);
			free(pre);
		}
	}
	add_dir(v, &n, xstrdup(ZDM_PREFIX "/share/zdm/plugins"));
	v[n] = NULL;
	return v;
}

char *
plugin_path_describe(const char *const *path)
{
	struct sbuf sb;

	sb_init(&sb);
	for (size_t i = 0; path != NULL && path[i] != NULL; i++)
		sb_addf(&sb, "%s%s%s", i ? ", " : "", path[i], is_dir(path[i]) ? "" : " (no such directory)");
	return sb_detach(&sb);
}

void
plugin_path_free(char **p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; p[i] != NULL; i++)
		free(p[i]);
	free(p);
}

bool
plugin_name_valid(const char *name)
{
	bool dot = false;

	if (name[0] == '\0' || name[0] == '.')
		return false;
	for (const char *p = name; *p != '\0'; p++) {
		if (*p == '.') {
			if (p[1] == '\0' || p[1] == '.')
				return false;
			dot = true;
		} else if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		    *p == '_' || *p == '-')) {
			return false;
		}
	}
	return dot;
}

/* "lb.nginx" -> "<dir>/lb/nginx.lua" */
static char *
plugin_file(const char *dir, const char *name)
{
	char *rel = xasprintf("%s.lua", name), *p;

	for (char *s = rel; *s != '\0' && s < rel + strlen(name); s++)
		if (*s == '.')
			*s = '/';
	p = path_join(dir, rel);
	free(rel);
	return p;
}

/*
 * A plugin library (zdm.lib, docs/plugins.md): the last part of its dotted
 * name starts with '_' ("db._pg" is <dir>/db/_pg.lua).  It is not a step
 * type: `zdm plugins` skips it and `uses:` refuses it.
 */
bool
plugin_is_lib(const char *name)
{
	const char *d = strrchr(name, '.');

	return (d != NULL ? d + 1 : name)[0] == '_';
}

/* the first <dir>/a/b.lua on the search path for a valid name "a.b"
 * (malloc'd), or NULL */
char *
plugin_find(const char *const *path, const char *name)
{
	if (path == NULL || !plugin_name_valid(name))
		return NULL;
	for (size_t i = 0; path[i] != NULL; i++) {
		char *f = plugin_file(path[i], name);
		struct stat st;

		if (stat(f, &st) == 0 && S_ISREG(st.st_mode))
			return f;
		free(f);
	}
	return NULL;
}

/* walk <root>/<rel> recursively for .lua files: each valid a/b.lua that is
 * not a library is fn(name, file, arg) */
static void
scan_dir(const char *root, const char *rel, plugin_scan_fn fn, void *arg)
{
	char *dir = rel[0] ? path_join(root, rel) : xstrdup(root);
	DIR *d = opendir(dir);
	struct dirent *e;

	if (d == NULL) {
		free(dir);
		return;
	}
	while ((e = readdir(d)) != NULL) {
		char *sub, *full;
		struct stat st;
		size_t l = strlen(e->d_name);

		if (e->d_name[0] == '.')
			continue;
		sub = rel[0] ? xasprintf("%s/%s", rel, e->d_name) : xstrdup(e->d_name);
		full = path_join(root, sub);
		if (stat(full, &st) == 0 && S_ISDIR(st.st_mode) && strlen(sub) < 200) {
			scan_dir(root, sub, fn, arg);
		} else if (l > 4 && strcmp(e->d_name + l - 4, ".lua") == 0) {
			char *name = xstrndup(sub, strlen(sub) - 4);

			for (char *s = name; *s != '\0'; s++)
				if (*s == '/')
					*s = '.';
			if (plugin_name_valid(name) && !plugin_is_lib(name))
				fn(name, full, arg);
			free(name);
		}
		free(sub);
		free(full);
	}
	closedir(d);
	free(dir);
}

void
plugin_scan(const char *const *path, plugin_scan_fn fn, void *arg)
{
	for (size_t i = 0; path != NULL && path[i] != NULL; i++)
		scan_dir(path[i], "", fn, arg);
}
