/*
 * registry.c - one table of step types, C built-ins and Lua plugins alike
 * (as redis registers module commands beside native ones).  Plugins are
 * found on the search path by their dotted name (core/plugin_path.c knows
 * the files), loaded on first use.
 */
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "core/registry.h"
#include "lua/host.h"
#include "steps/builtin.h"
#include "zdm/step.h"

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

struct registry *
registry_new(const char *const *plugin_path)
{
	struct registry *r = xcalloc(1, sizeof *r);

	r->path = (char **)plugin_path;
	return r;
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

/* the names a typo in uses: is matched against: the built-ins' and the
 * plugin files' names, without loading (running) any plugin */
struct names {
	char **v;		/* NULL-terminated */
	size_t n, cap;
};

static void
add_name(const char *name, const char *file, void *arg)
{
	struct names *nm = arg;

	if (nm->n + 2 > nm->cap) {
		nm->cap = nm->cap ? nm->cap * 2 : 32;
		nm->v = xrealloc(nm->v, nm->cap * sizeof *nm->v);
	}
	nm->v[nm->n++] = xstrdup(name);
	nm->v[nm->n] = NULL;
}

static int
strp_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
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
		struct names nm = { 0 };
		const char *sug;

		for (size_t i = 0; builtins[i] != NULL; i++)
			add_name(builtins[i]->name, NULL, &nm);
		plugin_scan((const char *const *)r->path, add_name, &nm);
		qsort(nm.v, nm.n, sizeof *nm.v, strp_cmp);
		sug = did_you_mean(name, (const char *const *)nm.v);
		if (sug != NULL)
			seterr(err, "unknown step type '%s' (did you mean '%s'?)", name, sug);
		else if (plugin_name_valid(name)) {
			char *where = plugin_path_describe((const char *const *)r->path), *f = xstrdup(name);

			for (char *q = f; *q != '\0'; q++)
				if (*q == '.')
					*q = '/';
			seterr(err, "unknown step type '%s' (see 'zdm plugins' for the list); no %s.lua in: %s; "
			    "add its directory with --plugin-path or ZDM_PLUGIN_PATH", name, f, where);
			free(where);
			free(f);
		} else
			seterr(err, "unknown step type '%s' (see 'zdm plugins' for the list)", name);
		for (size_t i = 0; i < nm.n; i++)
			free(nm.v[i]);
		free(nm.v);
	}
	return NULL;
}

/* plugin_scan: load each plugin found, unless a plugin of that name is
 * loaded already */
static void
load_found(const char *name, const char *file, void *arg)
{
	struct registry *r = arg;
	char *lerr = NULL;

	if (find_loaded(r, name) == NULL && load_from(r, name, file, &lerr) == NULL)
		fprintf(stderr, "zdm: warning: %s\n", lerr);
	free(lerr);
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

	plugin_scan((const char *const *)r->path, load_found, r);
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
