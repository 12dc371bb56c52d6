/*
 * runs.c - finding a run's journal: the state dir of a runbook, the newest
 * journal of a runbook name, and RUN_ID | RUNBOOK arguments.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/proc.h"
#include "base/redact.h"
#include "base/util.h"
#include "cli/cli.h"
#include "core/journal.h"
#include "core/lock.h"
#include "core/registry.h"
#include "core/runner.h"
#include "report/ci.h"
#include "steps/builtin.h"
#include "zdm/step.h"

char *
state_dir_for(const struct cli *c, const char *runbook)
{
	const char *env = getenv("ZDM_STATE_DIR");
	char *dir, *abs;

	if (c->state_dir != NULL)
		return path_abs(c->state_dir);
	if (env != NULL && *env != '\0')
		return path_abs(env);
	if (runbook == NULL)
		return path_abs(".zdm");
	dir = path_dirname(runbook);
	abs = strcmp(dir, ".") == 0 ? xstrdup(".zdm") : path_join(dir, ".zdm");
	free(dir);
	dir = path_abs(abs);
	free(abs);
	return dir;
}

bool
is_runbook_path(const char *a)
{
	size_t n = strlen(a);
	struct stat st;

	if (n > 6 && strcmp(a + n - 6, ".jsonl") == 0)
		return false;
	return stat(a, &st) == 0 && S_ISREG(st.st_mode);
}

/* the `name` in the first record of a journal (cheap: first line only);
 * *dry tells whether it was a dry run */
static char *
journal_runbook_name(const char *path, bool *dry)
{
	FILE *f = fopen(path, "rb");
	char *line = NULL, *name = NULL;
	size_t cap = 0;
	json_t *j;

	if (f == NULL)
		return NULL;
	if (getline(&line, &cap, f) > 0) {
		j = json_loads(line, 0, NULL);
		if (j != NULL) {
			const char *n = json_string_value(json_object_get(json_object_get(j, "data"), "name"));

			name = n ? xstrdup(n) : NULL;
			*dry = json_is_true(json_object_get(json_object_get(j, "data"), "dry_run"));
			json_decref(j);
		}
	}
	free(line);
	fclose(f);
	return name;
}

/* newest journal in STATE_DIR/runs (for runbook `name`, or any); dry runs
 * only when with_dry (resume and rollback never want a rehearsal) */
static char *
latest_journal(const char *state_dir, const char *name, bool with_dry)
{
	char *runs = path_join(state_dir, "runs"), *best = NULL;
	DIR *d = opendir(runs);
	struct dirent *e;
	struct timespec bt = { 0, 0 };

	if (d == NULL) {
		free(runs);
		return NULL;
	}
	while ((e = readdir(d)) != NULL) {
		size_t l = strlen(e->d_name);
		char *p, *n;

		if (l < 7 || strcmp(e->d_name + l - 6, ".jsonl") != 0)
			continue;
		{
			/* newest = most recently written: run ids share a second */
			struct stat st;

			p = path_join(runs, e->d_name);
			if (stat(p, &st) != 0 || (best != NULL &&
			    (st.st_mtim.tv_sec < bt.tv_sec || (st.st_mtim.tv_sec == bt.tv_sec &&
			    st.st_mtim.tv_nsec <= bt.tv_nsec)))) {
				free(p);
				continue;
			}
			{
				bool dry = false;

				n = journal_runbook_name(p, &dry);
				if ((name != NULL && (n == NULL || strcmp(n, name) != 0)) ||
				    (dry && !with_dry)) {
					free(n);
					free(p);
					continue;
				}
				free(n);
			}
			free(p);
			bt = st.st_mtim;
		}
		free(best);
		best = xstrdup(e->d_name);
	}
	closedir(d);
	if (best != NULL) {
		char *p = path_join(runs, best);

		free(best);
		best = p;
	}
	free(runs);
	return best;
}

static bool
with_dry(const char *cmd)
{
	return strcmp(cmd, "resume") != 0 && strcmp(cmd, "rollback") != 0;
}

/*
 * [RUN_ID | RUNBOOK | JOURNAL] -> journal path and state dir.  With a
 * runbook, its newest run.  Prints the error and returns NULL when none.
 */
char *
find_journal(const struct cli *c, const char *arg, char **state_dir, const char *cmd)
{
	char *j = NULL;

	if (arg != NULL && strlen(arg) > 6 && strcmp(arg + strlen(arg) - 6, ".jsonl") == 0) {
		char *runs = NULL, *abs = path_abs(arg);

		if (access(abs, R_OK) != 0) {
			fprintf(stderr, "zdm %s: cannot read journal '%s': %s\n", cmd, arg, strerror(errno));
			free(abs);
			return NULL;
		}
		runs = path_dirname(abs);
		*state_dir = path_dirname(runs);
		free(runs);
		return abs;
	}
	if (arg != NULL && is_runbook_path(arg)) {
		struct yerrs e = { 0 };
		struct ynode *root = yparse_file(arg, arg, &e);
		const struct ynode *n = ymap_get(root, "name");

		*state_dir = state_dir_for(c, arg);
		if (n != NULL && n->kind == Y_SCALAR)
			j = latest_journal(*state_dir, n->str, with_dry(cmd));
		else if (e.n > 0)
			print_errors(&e);
		else
			fprintf(stderr, "zdm %s: '%s' is not a runbook (no name:); name a RUN_ID, a runbook or a journal\n",
			    cmd, arg);
		if (j == NULL && n != NULL)
			fprintf(stderr, "zdm %s: no runs of runbook '%s' in %s\n", cmd, n->str, *state_dir);
		ynode_free(root);
		yerrs_release(&e);
		return j;
	}
	*state_dir = state_dir_for(c, NULL);
	if (arg == NULL) {
		j = latest_journal(*state_dir, NULL, with_dry(cmd));
		if (j == NULL)
			fprintf(stderr, "zdm %s: no runs in %s (name a RUN_ID or RUNBOOK, or set --state-dir)\n",
			    cmd, *state_dir);
		return j;
	}
	{
		char *rel = xasprintf("runs/%s.jsonl", arg);

		j = path_join(*state_dir, rel);
		free(rel);
	}
	if (access(j, R_OK) != 0) {
		fprintf(stderr, "zdm %s: no run '%s' in %s (name the runbook, or set --state-dir / ZDM_STATE_DIR)\n",
		    cmd, arg, *state_dir);
		free(j);
		return NULL;
	}
	return j;
}
