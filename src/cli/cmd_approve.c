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
#include "core/lock.h"
#include "core/registry.h"
#include "core/runner.h"
#include "core/runstate.h"
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
	const char *step = c->argv[1], *name, *run, *uses = NULL, *decided = NULL, *by = NULL;
	const json_t *params = NULL;
	char *sd = NULL, *jp, *err = NULL, *actor = NULL;
	struct journal *j = NULL;
	struct jlog log;
	long paused = -1, seq;
	bool finished = false;
	int rc = ZDM_EXIT_USAGE, lockfd = -1;
	json_t *d;

	memset(&log, 0, sizeof log);
	jp = find_journal(c, c->argv[0], &sd, cmd->name);
	if (jp == NULL)
		goto out;
	if (journal_read(jp, &log, &err) != 0 || log.n == 0) {
		fprintf(stderr, "zdm approve: %s\n  (zdm audit verify %s)\n", err ? err : "the journal is empty", jp);
		goto out;
	}
	name = json_string_value(json_object_get(json_object_get(log.recs[0], "data"), "name"));
	run = json_string_value(json_object_get(log.recs[0], "run"));
	for (size_t k = 0; k < log.n; k++) {
		json_t *r = log.recs[k], *rd = json_object_get(r, "data");
		const char *ev = json_string_value(json_object_get(r, "event"));
		const char *sid = json_string_value(json_object_get(r, "step"));
		bool mine = sid != NULL && strcmp(sid, step) == 0;

		if (ev == NULL)
			continue;
		if (strcmp(ev, "run.finished") == 0)
			finished = true;
		else if (strcmp(ev, "run.paused") == 0)
			paused = mine && json_is_string(json_object_get(rd, "waiting_for")) ? (long)k : -1;
		else if (strcmp(ev, "run.resumed") == 0 || strcmp(ev, "rollback.started") == 0)
			paused = -1, decided = NULL;
		else if (mine && strcmp(ev, "step.started") == 0) {
			params = json_object_get(rd, "params");
			uses = json_string_value(json_object_get(rd, "uses"));
		} else if (mine && paused >= 0 && (strcmp(ev, "approval.granted") == 0 ||
		    strcmp(ev, "approval.denied") == 0)) {
			decided = ev;
			by = json_string_value(json_object_get(rd, "actor"));
		}
	}
	if (name == NULL || run == NULL) {
		fprintf(stderr, "zdm approve: %s:1: run.started does not name its run and runbook\n", jp);
		goto out;
	}
	if (finished || paused < 0 || uses == NULL || strcmp(uses, "approval") != 0) {
		fprintf(stderr, "zdm approve: run %s is not waiting for approval of step '%s' (state: %s)%s\n",
		    run, step, run_state_word(&log), finished ? "" : "; see zdm status");
		goto out;
	}
	if (decided != NULL) {
		fprintf(stderr, "zdm approve: step '%s' of run %s is already %s by %s; continue: zdm resume %s\n",
		    step, run, strcmp(decided, "approval.granted") == 0 ? "approved" : "denied",
		    by ? by : "?", run);
		goto out;
	}
	actor = approval_actor();
	if (!approval_allowed(json_object_get(params, "approvers"), actor)) {
		char *who = json_dumps(json_object_get(params, "approvers"), JSON_COMPACT);

		fprintf(stderr, "zdm approve: '%s' is not among the approvers of step '%s' (%s); "
		    "one of them must decide (the actor is ZDM_ACTOR, else the login name)\n",
		    actor, step, who ? who : "?");
		free(who);
		goto out;
	}
	if (lock_acquire(sd, name, run, &lockfd, &err) != 0) {
		fprintf(stderr, "zdm approve: %s\n", err);
		goto out;
	}
	j = journal_reopen(jp, run, &log, &err);
	if (j == NULL) {
		fprintf(stderr, "zdm approve: %s\n", err);
		goto out;
	}
	d = json_pack("{s:s,s:s}", "actor", actor, "via", "zdm approve");
	if (c->reason != NULL)
		json_object_set_new(d, "reason", json_string(c->reason));
	seq = journal_append(j, c->deny ? "approval.denied" : "approval.granted", step, 0, d, &err);
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
	if (j != NULL)
		journal_close(j);
	if (lockfd >= 0)
		lock_release(lockfd);
	free(actor);
	jlog_release(&log);
	free(jp);
	free(sd);
	return rc;
}
