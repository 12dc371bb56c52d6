/*
 * cmd_status.c - zdm status: where a run stands, from its journal and lock.
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
#include "core/runstate.h"
#include "core/store.h"
#include "report/ci.h"
#include "steps/builtin.h"
#include "zdm/step.h"

int
cmd_status(const struct cmd *cmd, struct cli *c)
{
	char *jp, *err = NULL;
	struct store *s;
	struct jlog log;
	struct runstate st;

	memset(&log, 0, sizeof log);
	s = find_run(c, c->argc ? c->argv[0] : NULL, cmd->name, &jp);
	if (s == NULL)
		return ZDM_EXIT_USAGE;
	if (store_read(s, jp, &log, &err) != 0 || log.n == 0) {
		fprintf(stderr, "zdm status: %s\n", err ? err : "empty journal");
		free(err);
		jlog_release(&log);
		free(jp);
		store_close(s);
		return ZDM_EXIT_USAGE;
	}
	runstate_fold(&log, &st, NULL);	/* what it can tell, replayable or not */
	{
		const char *state = runstate_word(&st);

		printf("run      %s\nrunbook  %s (%s)\nstate    %s", st.run_id, st.name, st.runbook, state);
		if (st.outcome == RS_RUNNING || st.outcome == RS_ROLLING_BACK) {
			long pid;
			char *holder;

			bool held = store_locked(s, st.name, &pid, &holder);

			if (held && st.wait.step != NULL && st.wait.decision == EV_UNKNOWN)
				/* --wait-for-approval: zdm approve lets it go on */
				printf(" — a zdm process holds the lock: waiting (until %s) for approval of "
				    "step '%s': zdm approve %s %s", st.wait.until ? st.wait.until : "?",
				    st.wait.step, st.run_id, st.wait.step);
			else if (held)
				printf(" — a zdm process holds the lock: running");
			else
				printf(" — no zdm process holds the lock: it stopped (crash?); zdm resume %s or "
				    "zdm rollback %s", st.run_id, st.run_id);
			free(holder);
		}
		if (st.outcome == RS_PAUSED && st.pause.waiting_for != NULL && st.pause.step != NULL) {
			/* an approval: who is it waiting for, or what was decided */
			const char *ps = st.pause.step, *by = st.pause.decided_by;

			if (st.pause.decision == EV_UNKNOWN)
				printf(" — waiting for approval of step '%s': zdm approve %s %s, then zdm resume %s",
				    ps, st.run_id, ps, st.run_id);
			else
				printf(" — step '%s' %s by %s: zdm resume %s", ps,
				    st.pause.decision == EV_APPROVAL_GRANTED ? "approved" : "denied",
				    by ? by : "?", st.run_id);
		}
		printf("\njournal  %s (%zu records)\n", jp, log.n);
	}
	/* each step's last event, in the order the journal first names them */
	for (size_t i = 0; i < st.nsteps; i++) {
		const struct rs_step *p = &st.steps[i];

		if (p->last_event == NULL)
			continue;
		printf("  %-24s %s", p->id, p->last_event);
		if (p->undo == RS_UNDO_SUCCEEDED || p->undo == RS_UNDO_SKIPPED)
			printf(" (%s)", rs_undone_text(p->undone) ? rs_undone_text(p->undone) : "?");
		printf("\n");
	}
	left_line(&st);
	runstate_release(&st);
	jlog_release(&log);
	free(jp);
	store_close(s);
	return ZDM_EXIT_OK;
}
