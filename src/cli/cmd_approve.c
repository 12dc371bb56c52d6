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
 * an approval step, appended to the run's journal (in the hash chain):
 *
 * - the run is paused on it: under the run's lock; `zdm resume` then acts
 *   on it;
 * - a zdm waits for it (--wait-for-approval: approval.waiting, and that
 *   zdm holds the run's lock): without the lock, beside the waiting zdm,
 *   which reads it at once (PostgreSQL: the append notifies it) and goes
 *   on.  Both writers keep one chain (store.h): when the waiting zdm wrote
 *   first (its wait ended, or a webhook's record), this append fails with
 *   nothing written, and zdm approve reads the run again and decides anew
 *   (at most 3 times);
 * - a zdm waited for it and died: under the lock, as for a paused run.
 */
int
cmd_approve(const struct cmd *cmd, struct cli *c)
{
	const char *step = c->argv[1], *name, *run;
	const struct rs_step *s;
	char *jp = NULL, *err = NULL, *actor = NULL, *holder = NULL;
	struct store *store;
	struct store_writer *w = NULL;
	struct jlog log;
	struct runstate st;
	long seq = -1, pid = 0;
	struct store_lock *lock = NULL;
	bool waiting = false, beside = false;
	int rc = ZDM_EXIT_USAGE;
	json_t *d;

	memset(&log, 0, sizeof log);
	memset(&st, 0, sizeof st);
	store = find_run(c, c->argv[0], cmd->name, &jp);
	if (store == NULL)
		return ZDM_EXIT_USAGE;
	for (int tries = 0;; tries++) {
		enum ev decision;
		const char *decided_by;

		runstate_release(&st);
		jlog_release(&log);
		store_close_writer(w);
		w = NULL;
		if (store_read(store, jp, &log, &err) != 0 || log.n == 0) {
			fprintf(stderr, "zdm approve: %s\n  (zdm audit verify %s)\n",
			    err ? err : "the journal is empty", jp);
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
		waiting = !st.finished && st.wait.step != NULL && strcmp(st.wait.step, step) == 0;
		if (s == NULL || s->uses == NULL || strcmp(s->uses, "approval") != 0 || (!waiting &&
		    (st.finished || st.pause.step == NULL || strcmp(st.pause.step, step) != 0 ||
		    st.pause.waiting_for == NULL))) {
			fprintf(stderr, "zdm approve: run %s is not waiting for approval of step '%s' (state: %s)%s\n",
			    run, step, runstate_word(&st), st.finished ? "" : "; see zdm status");
			goto out;
		}
		decision = waiting ? st.wait.decision : st.pause.decision;
		decided_by = waiting ? st.wait.decided_by : st.pause.decided_by;
		if (decision != EV_UNKNOWN) {
			fprintf(stderr, "zdm approve: step '%s' of run %s is already %s by %s; %s%s\n",
			    step, run, decision == EV_APPROVAL_GRANTED ? "approved" : "denied",
			    decided_by ? decided_by : "?", waiting ? "the zdm waiting for it goes on" :
			    "continue: zdm resume ", waiting ? "" : run);
			goto out;
		}
		if (actor == NULL)
			actor = approval_actor();
		if (!approval_allowed(json_object_get(s->params, "approvers"), actor)) {
			char *who = json_dumps(json_object_get(s->params, "approvers"), JSON_COMPACT);

			fprintf(stderr, "zdm approve: '%s' is not among the approvers of step '%s' (%s); "
			    "one of them must decide (the actor is ZDM_ACTOR, else the login name)\n",
			    actor, step, who ? who : "?");
			free(who);
			goto out;
		}
		if (lock == NULL && store_lock(store, name, run, &lock, &err) != 0) {
			/* held: by the zdm that waits for this decision, or refused */
			free(holder);
			holder = NULL;
			if (!waiting || !store_locked(store, name, &pid, &holder) || holder == NULL ||
			    strcmp(holder, run) != 0) {
				fprintf(stderr, "zdm approve: %s\n", err);
				goto out;
			}
			free(err);
			err = NULL;
			beside = true;
		} else {
			beside = false;
		}
		w = store_open_writer(store, jp, run, &log, &err);
		if (w == NULL) {
			if (beside && tries < 3 && run_grew(store, jp, log.n)) {
				free(err);
				err = NULL;
				continue;	/* the waiting zdm wrote since: look again */
			}
			fprintf(stderr, "zdm approve: %s\n", err);
			goto out;
		}
		store_set_notify(w);	/* wakes a zdm waiting for it */
		if (tries == 0)
			test_pause_after_read();
		d = json_pack("{s:s,s:s}", "actor", actor, "via", "zdm approve");
		if (c->reason != NULL)
			json_object_set_new(d, "reason", json_string(c->reason));
		seq = store_append(w, ev_name(c->deny ? EV_APPROVAL_DENIED : EV_APPROVAL_GRANTED), step, 0, d, &err);
		if (seq >= 0)
			break;
		if (beside && tries < 3 && run_grew(store, jp, log.n)) {
			free(err);
			err = NULL;
			continue;
		}
		fprintf(stderr, "zdm approve: journal %s: %s\n", jp, err);
		rc = ZDM_EXIT_NEEDS_PERSON;
		goto out;
	}
	printf("%s: step '%s' of run %s, by %s (journal record %ld).\n", c->deny ? "denied" : "approved",
	    step, st.run_id, actor, seq);
	if (beside && c->deny)
		printf("  the zdm waiting for it (pid %ld) now fails the step (on_failure: rollback by default)\n",
		    pid);
	else if (beside)
		printf("  the zdm waiting for it (pid %ld) goes on now\n", pid);
	else if (c->deny)
		printf("  zdm resume %s now fails the step and rolls the run back\n", st.run_id);
	else
		printf("  continue: zdm resume %s\n", st.run_id);
	rc = ZDM_EXIT_OK;
out:
	free(err);
	free(holder);
	store_close_writer(w);
	store_unlock(lock);
	free(actor);
	runstate_release(&st);
	jlog_release(&log);
	free(jp);
	store_close(store);
	return rc;
}
