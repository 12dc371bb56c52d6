/*
 * registry.c - one table of step types, C built-ins and Lua plugins alike
 * (as redis registers module commands beside native ones).  Plugins are
 * found on the search path by their dotted name: `lb.nginx` is
 * `<dir>/lb/nginx.lua`, loaded on first use.
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/util.h"
#include "core/registry.h"
#include "lua/host.h"
#include "steps/builtin.h"
#include "zdm/step.h"

#ifndef ZDM_PREFIX
#define ZDM_PREFIX "/usr/local"
#endif

static const struct zdm_step_type *const builtins[] = {
	&zdm_step_exec,
	&zdm_step_wait,
	&zdm_step_metric_gate,
	&zdm_step_http, &zdm_step_health_gate,
	&zdm_step_approval,
	&zdm_step_ssh,
	NULL,
};

struct registry {
	char **path;			/* owned by the caller */
	struct zdm_step_type **plugins;	/* loaded plugins, owned */
	size_t nplugins;
	const struct zdm_step_type **all;
};

char **
plugin_path_build(const char *flag)
{
	char **v = xcalloc(64, sizeof *v);
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
			v[n++] = xstrdup(tok);
		free(copy);
	}
	v[n++] = xstrdup("./plugins");
	{
		/* where this binary is installed: BIN/../share/zdm/plugins, so
		 * `make install PREFIX=...` works without a rebuild */
		char exe[4096];
		ssize_t l = readlink("/proc/self/exe", exe, sizeof exe - 1);

		if (l > 0) {
			char *bin, *pre;

			exe[l] = '\0';
			bin = path_dirname(exe);
			pre = path_dirname(bin);
			v[n++] = path_join(pre, "share/zdm/plugins");
			free(bin);
			free(pre);
		}
	}
	v[n++] = xstrdup(ZDM_PREFIX "/share/zdm/plugins");
	v[n] = NULL;
	return v;
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

struct registry *
registry_new(const char *const *plugin_path)
{
	struct registry *r = xcalloc(1, sizeof *r);

	r->path = (char **)plugin_path;
	return r;
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

static const struct zdm_step_type *
find_loaded(struct registry *r, const char *name)
{
	for (size_t i = 0; builtins[i] != NULL; i++)
		if (strcmp(builtins[i]->name, name) == 0)
			return builtins[i];
	for (size_t i = 0; i < r->nplugins; i++)
		if (strcmp(r->plugins[i]->name, name) == 0)
			return r->plugins[i];
	return NULL;
}

static const struct zdm_step_type *
load_from(struct registry *r, const char *name, const char *file, char **err)
{
	struct zdm_step_type *t = luahost_load_from(name, file,
	    (const char *const *)r->path, err);

	if (t == NULL)
		return NULL;
	r->plugins = xrealloc(r->plugins, (r->nplugins + 1) * sizeof *r->plugins);
	r->plugins[r->nplugins++] = t;
	return t;
}

const struct zdm_step_type *
registry_get(struct registry *r, const char *name, char **err)
{
	const struct zdm_step_type *t = find_loaded(r, name);

	if (t != NULL)
		return t;
	if (plugin_name_valid(name) && plugin_is_lib(name)) {
		seterr(err, "'%s' is a plugin library (loaded by plugins with zdm.lib), "
		    "not a step type", name);
		return NULL;
	}
	{
		char *f = plugin_find((const char *const *)r->path, name);

		if (f != NULL) {
			t = load_from(r, name, f, err);
			free(f);
			return t;
		}
	}
	{
		const struct zdm_step_type **all;
		size_t n = registry_all(r, &all);
		const char **names = xcalloc(n + 1, sizeof *names);
		const char *sug;

		for (size_t i = 0; i < n; i++)
			names[i] = all[i]->name;
		sug = did_you_mean(name, names);
		if (sug != NULL)
			seterr(err, "unknown step type '%s' (did you mean '%s'?)", name, sug);
		else
			seterr(err, "unknown step type '%s' (see 'zdm plugins' for the list)", name);
		free(names);
	}
	return NULL;
}

/* walk DIR recursively for .lua files and load each as a.b.c */
static void
scan_dir(struct registry *r, const char *root, const char *rel)
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
			scan_dir(r, root, sub);
		} else if (l > 4 && strcmp(e->d_name + l - 4, ".lua") == 0) {
			char *name = xstrndup(sub, strlen(sub) - 4);
			char *lerr = NULL;

			for (char *s = name; *s != '\0'; s++)
				if (*s == '/')
					*s = '.';
			if (plugin_name_valid(name) && !plugin_is_lib(name) &&
			    find_loaded(r, name) == NULL &&
			    load_from(r, name, full, &lerr) == NULL) {
				fprintf(stderr, "zdm: warning: %s\n", lerr);
			}
			free(lerr);
			free(name);
		}
		free(sub);
		free(full);
	}
	closedir(d);
	free(dir);
}

static int
byname(const void *a, const void *b)
{
	return strcmp((*(const struct zdm_step_type *const *)a)->name,
	    (*(const struct zdm_step_type *const *)b)->name);
}

size_t
registry_all(struct registry *r, const struct zdm_step_type ***out)
{
	size_t n = 0, nb = 0;

	for (size_t i = 0; r->path[i] != NULL; i++)
		scan_dir(r, r->path[i], "");
	while (builtins[nb] != NULL)
		nb++;
	free(r->all);
	r->all = xcalloc(nb + r->nplugins + 1, sizeof *r->all);
	for (size_t i = 0; i < nb; i++)
		r->all[n++] = builtins[i];
	for (size_t i = 0; i < r->nplugins; i++)
		r->all[n++] = r->plugins[i];
	qsort(r->all, n, sizeof *r->all, byname);
	*out = r->all;
	return n;
}

void
registry_free(struct registry *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->nplugins; i++) {
		if (r->plugins[i]->free_impl != NULL)
			r->plugins[i]->free_impl(r->plugins[i]->impl);
		free(r->plugins[i]);
	}
	free(r->plugins);
	free(r->all);
	free(r);
}
