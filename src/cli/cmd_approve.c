/*
 * cmd_approve.c - zdm approve: a person's decision on an approval step.
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

/*
 * zdm approve RUN_ID STEP [--deny] [--reason TEXT]: a person's decision on
 * an approval step the run is paused on, appended to the run's journal (in
 * the hash chain) under the run's lock.  `zdm resume` then acts on it.
 */
int
cmd_approve(const struct cmd *cmd, struct cli *c)
{
	const char *step = c->argv[1], *name, *run;
	const struct rs_step *s;
	char *jp = NULL, *err = NULL, *actor = NULL;
	struct store *store;
	struct store_writer *w = NULL;
	struct jlog log;
	struct runstate st;
	long seq;
	struct store_lock *lock = NULL;
	int rc = ZDM_EXIT_USAGE;
	json_t *d;

	memset(&log, 0, sizeof log);
	memset(&st, 0, sizeof st);
	store = find_run(c, c->argv[0], cmd->name, &jp);
	if (store == NULL)
		return ZDM_EXIT_USAGE;
	if (store_read(store, jp, &log, &err) != 0 || log.n == 0) {
		fprintf(stderr, "zdm approve: %s\n  (zdm audit verify %s)\n", err ? err : "the journal is empty", jp);
		goto out;
	}
	runstate_fold(&log, &st, NULL);
	name = st.name;
	run = st.run_id;
	s = runstate_step(&st, step);
	if (name == NULL || run == NULL) {
		fprintf(stderr, "zdm approve: %s:1: run.started does not name its run and runbook\n", jp);
		goto out;
	}
	if (st.finished || st.pause.step == NULL || strcmp(st.pause.step, step) != 0 ||
	    st.pause.waiting_for == NULL || s == NULL || s->uses == NULL || strcmp(s->uses, "approval") != 0) {
		fprintf(stderr, "zdm approve: run %s is not waiting for approval of step '%s' (state: %s)%s\n",
		    run, step, runstate_word(&st), st.finished ? "" : "; see zdm status");
		goto out;
	}
	if (st.pause.decision != EV_UNKNOWN) {
		fprintf(stderr, "zdm approve: step '%s' of run %s is already %s by %s; continue: zdm resume %s\n",
		    step, run, st.pause.decision == EV_APPROVAL_GRANTED ? "approved" : "denied",
		    st.pause.decided_by ? st.pause.decided_by : "?", run);
		goto out;
	}
	actor = approval_actor();
	if (!approval_allowed(json_object_get(s->params, "approvers"), actor)) {
		char *who = json_dumps(json_object_get(s->params, "approvers"), JSON_COMPACT);

		fprintf(stderr, "zdm approve: '%s' is not among the approvers of step '%s' (%s); "
		    "one of them must decide (the actor is ZDM_ACTOR, else the login name)\n",
		    actor, step, who ? who : "?");
		free(who);
		goto out;
	}
	if (store_lock(store, name, run, &lock, &err) != 0) {
		fprintf(stderr, "zdm approve: %s\n", err);
		goto out;
	}
	w = store_open_writer(store, jp, run, &log, &err);
	if (w == NULL) {
		fprintf(stderr, "zdm approve: %s\n", err);
		goto out;
	}
	d = json_pack("{s:s,s:s}", "actor", actor, "via", "zdm approve");
	if (c->reason != NULL)
		json_object_set_new(d, "reason", json_string(c->reason));
	seq = store_append(w, ev_name(c->deny ? EV_APPROVAL_DENIED : EV_APPROVAL_GRANTED), step, 0, d, &err);
	if (seq < 0) {
		fprintf(stderr, "zdm approve: journal %s: %s\n", jp, err);
		rc = ZDM_EXIT_NEEDS_PERSON;
		goto out;
	}
	if (c->deny)
		printf("denied: step '%s' of run %s, by %s (journal record %ld).\n"
		    "  zdm resume %s now fails the step and rolls the run back\n", step, run, actor, seq, run);
	else
		printf("approved: step '%s' of run %s, by %s (journal record %ld).\n"
		    "  continue: zdm resume %s\n", step, run, actor, seq, run);
	rc = ZDM_EXIT_OK;
out:
	free(err);
	store_close_writer(w);
	store_unlock(lock);
	free(actor);
	runstate_release(&st);
	jlog_release(&log);
	free(jp);
	store_close(store);
	return rc;
}
