/*
 * cmd_complete.c - the candidates the shell completions (zdm completion)
 * ask zdm for, so that they come from the binary and never drift from it:
 * the step ids of a runbook and the run ids of a state.  Errors go to
 * stderr, which the scripts discard; candidates, one a line, to stdout.
 * Commands and their flags come from main.c's command table.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/ynode.h"
#include "cli/cli.h"
#include "cli/embedded.h"
#include "core/plugin_path.h"
#include "core/registry.h"
#include "core/runbook.h"
#include "core/runstate.h"
#include "core/store.h"
#include "zdm/step.h"

/* the ids of RUNBOOK's steps, in order (for_each copies under their own ids) */
static int
complete_steps(const struct cli *c, const char *path)
{
	char **pp;
	struct registry *reg = new_registry(c, path, &pp);
	struct rb_opts o = { c->vars, c->nvars, c->vars_file, NULL };
	struct yerrs e = { 0 };
	struct runbook *rb = runbook_load(path, reg, &o, &e);
	int rc = ZDM_EXIT_USAGE;

	if (rb != NULL) {
		for (size_t i = 0; i < rb->nsteps; i++)
			printf("%s\n", rb->steps[i].id);
		rc = ZDM_EXIT_OK;
	}
	yerrs_release(&e);
	runbook_free(rb);
	registry_free(reg);
	plugin_path_free(pp);
	return rc;
}

/* the run ids of the state (--state-dir, --state, ZDM_STATE_DIR, ...) */
static int
complete_runs(const struct cli *c)
{
	struct store *s = state_open(c, NULL, "__complete");
	struct runs_query q = { 0 };
	struct run_summary *rs = NULL;
	size_t n = 0;
	char *err = NULL;

	if (s == NULL)
		return ZDM_EXIT_USAGE;
	if (store_runs(s, &q, &rs, &n, &err) != 0) {
		fprintf(stderr, "zdm __complete: %s\n", err);
		free(err);
		store_close(s);
		return ZDM_EXIT_USAGE;
	}
	for (size_t i = 0; i < n; i++)
		if (rs[i].run_id != NULL)
			printf("%s\n", rs[i].run_id);
	store_runs_free(rs, n);
	store_close(s);
	return ZDM_EXIT_OK;
}

/* the step types, built-in and Lua (as zdm plugins lists them) */
static int
complete_types(const struct cli *c)
{
	char **pp;
	struct registry *reg = new_registry(c, NULL, &pp);
	const struct zdm_step_type **all;
	size_t n = registry_all(reg, &all);

	for (size_t i = 0; i < n; i++)
		printf("%s\n", all[i]->name);
	registry_free(reg);
	plugin_path_free(pp);
	return ZDM_EXIT_OK;
}

int
complete_more(const struct cli *c)
{
	const char *what = c->argv[0];

	if (strcmp(what, "steps") == 0 && c->argc == 2)
		return complete_steps(c, c->argv[1]);
	if (strcmp(what, "runs") == 0 && c->argc == 1)
		return complete_runs(c);
	if (strcmp(what, "types") == 0 && c->argc == 1)
		return complete_types(c);
	if (strcmp(what, "templates") == 0 && c->argc == 1) {
		init_template_names(stdout);
		return ZDM_EXIT_OK;
	}
	fprintf(stderr, "zdm __complete: '%s': use commands, flags COMMAND, valued, steps RUNBOOK, "
	    "runs, types or templates\n", what);
	return ZDM_EXIT_USAGE;
}
