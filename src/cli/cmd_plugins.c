/*
 * cmd_plugins.c - zdm plugins: the step types with their params, and the
 * directories plugins were looked for in.
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
#include "core/registry.h"
#include "core/runner.h"
#include "report/ci.h"
#include "steps/builtin.h"
#include "zdm/step.h"

#define PLUGINS_MAX_DEFAULT 24
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* the third column: required, the default as JSON, or optional */
static const char *
param_default(const struct zdm_param *p)
{
	return p->required ? "required" : p->def ? p->def : "optional";
}

int
cmd_plugins(const struct cmd *cmd, struct cli *c)
{
	char **pp;
	struct registry *reg = new_registry(c, NULL, &pp);
	const struct zdm_step_type **all;
	size_t n = registry_all(reg, &all);

	for (size_t i = 0; i < n; i++) {
		const struct zdm_step_type *t = all[i];

		printf("%s%s%s%s\n  %s\n", t->name, t->read_only ? "  [read-only]" : "",
		    t->idempotent ? "  [idempotent]" : "", t->undo ? "  [undo]" : "",
		    t->description ? t->description : "");
		int wn = 0, wt = 0, wd = (int)strlen("optional");

		/* columns as wide as the type's longest name, type and default,
		 * two spaces between them; a default longer than
		 * PLUGINS_MAX_DEFAULT goes after the doc instead */
		for (size_t k = 0; k < t->nparams; k++) {
			const struct zdm_param *p = &t->params[k];
			int d = (int)strlen(param_default(p));

			wn = MAX(wn, (int)strlen(p->name));
			wt = MAX(wt, (int)strlen(ptype_name(p->type)));
			if (d <= PLUGINS_MAX_DEFAULT)
				wd = MAX(wd, d);
		}
		for (size_t k = 0; k < t->nparams; k++) {
			const struct zdm_param *p = &t->params[k];
			const char *def = param_default(p);
			bool long_def = (int)strlen(def) > PLUGINS_MAX_DEFAULT;

			printf("    %-*s  %-*s  %-*s  %s%s%s%s\n", wn, p->name, wt, ptype_name(p->type),
			    wd, long_def ? "optional" : def, p->doc ? p->doc : "",
			    long_def ? (p->doc ? " (default: " : "(default: ") : "",
			    long_def ? def : "", long_def ? ")" : "");
		}
		for (size_t k = 0; k < t->nrenamed; k++)
			printf("%s%s (now %s)%s", k ? ", " : "    earlier names, still read: ",
			    t->renamed[k].was, t->renamed[k].name, k + 1 == t->nrenamed ? "\n" : "");
	}
	/* where the Lua ones were looked for, so a missing one can be placed */
	printf("\nPlugin search path (first found wins):\n");
	for (size_t i = 0; pp[i] != NULL; i++) {
		struct stat st;

		printf("  %s%s\n", pp[i], stat(pp[i], &st) == 0 && S_ISDIR(st.st_mode) ? "" :
		    "  (no such directory)");
	}
	registry_free(reg);
	plugin_path_free(pp);
	return ZDM_EXIT_OK;
}
