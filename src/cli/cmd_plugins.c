/*
 * cmd_plugins.c - zdm plugins: the step types with their params.
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
	struct registry *reg = new_registry(c, &pp);
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
	registry_free(reg);
	plugin_path_free(pp);
	return ZDM_EXIT_OK;
}
