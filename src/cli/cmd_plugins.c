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
		for (size_t k = 0; k < t->nparams; k++) {
			const struct zdm_param *p = &t->params[k];

			printf("    %-14s %-9s %-22s %s\n", p->name, ptype_name(p->type),
			    p->required ? "required" : p->def ? p->def : "optional",
			    p->doc ? p->doc : "");
		}
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
