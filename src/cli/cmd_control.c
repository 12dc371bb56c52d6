/*
 * cmd_control.c - zdm pause, zdm abort and zdm promote: a person steering a
 * run that a zdm is running now, from anywhere that shares its state.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "cli/cli.h"
#include "core/events.h"
#include "core/journal.h"
#include "core/registry.h"
#include "core/runner.h"
#include "core/runstate.h"
#include "core/store.h"
#include "steps/builtin.h"
#include "zdm/step.h"

/* the step a live run is in the middle of: started, no end recorded */
static const struct rs_step *
under_way(const struct runstate *st)
{
	for (size_t i = st->nsteps; i-- > 0;)
		if (st->steps[i].phase == RS_STARTED)
			return &st->steps[i];
	return NULL;
}

/* what a built-in step type USES is: 1 promotable (a gate), 2 read-only,
 * 0 neither; -1 a plugin (which this command does not load) */
static int
kind_of(const char *uses)
{
	struct registry *reg;
	const struct zdm_step_type *t;
	char *err = NULL;
	int k;

	if (uses == NULL || strchr(uses, '.') != NULL)
		return -1;
	reg = registry_new(NULL);
	t = registry_get(reg, uses, &err);
	k = t == NULL ? 0 : t->promotable ? 1 : t->read_only ? 2 : 0;
	free(err);
	registry_free(reg);
	return k;
}

/*
 * zdm pause RUN_ID | zdm abort RUN_ID | zdm promote RUN_ID [STEP], each
 * with [--reason TEXT]: control.pause, control.abort or control.promote
 * appended to the run beside the zdm running it (which holds its lock), as
 * zdm approve appends beside a zdm waiting for it; that zdm acts on it
 * within about a second (control.c).  Refused (exit 2, nothing written)
 * when no live zdm runs the run: a paused or crashed run is resumed or
 * rolled back instead.
 */
int
cmd_control(const struct cmd *cmd, struct cli *c)
{
	const char *what = cmd->name, *step = c->argc > 1 ? c->argv[1] : NULL;
	enum ev ev = strcmp(what, "pause") == 0 ? EV_CONTROL_PAUSE :
	    strcmp(what, "abort") == 0 ? EV_CONTROL_ABORT : EV_CONTROL_PROMOTE;
	char *jp = NULL, *err = NULL, *holder = NULL, *actor = NULL;
	const struct rs_step *s = NULL;
	struct store *store;
	struct store_writer *w = NULL;
	struct jlog log;
	struct runstate st;
	long seq = -1, pid = 0;
	int rc = ZDM_EXIT_USAGE;

	memset(&log, 0, sizeof log);
	memset(&st, 0, sizeof st);
	store = find_run(c, c->argv[0], what, &jp);
	if (store == NULL)
		return ZDM_EXIT_USAGE;
	actor = approval_actor();
	for (int tries = 0;; tries++) {
		json_t *d;

		runstate_release(&st);
		jlog_release(&log);
		memset(&st, 0, sizeof st);
		store_close_writer(w);
		w = NULL;
		if (store_read(store, jp, &log, &err) != 0 || log.n == 0) {
			fprintf(stderr, "zdm %s: %s\n  (zdm audit verify %s)\n", what,
			    err ? err : "the journal is empty", jp);
			goto out;
		}
		runstate_fold(&log, &st, NULL);
		if (st.name == NULL || st.run_id == NULL) {
			fprintf(stderr, "zdm %s: %s:1: run.started does not name its run and runbook\n", what, jp);
			goto out;
		}
		free(holder);
		holder = NULL;
		if (st.ended || st.dry_run || !store_locked(store, st.name, &pid, &holder) ||
		    holder == NULL || strcmp(holder, st.run_id) != 0) {
			fprintf(stderr, "zdm %s: run %s is not running now (state: %s): zdm %s acts on a "
			    "run a live zdm is running%s%s\n", what, st.run_id, runstate_word(&st), what,
			    st.ended ? "" : "; see zdm status ", st.ended ? "" : st.run_id);
			if (!st.ended && ev != EV_CONTROL_PROMOTE)
				fprintf(stderr, "  a paused or stopped run goes on with zdm resume %s, or is "
				    "undone with zdm rollback %s\n", st.run_id, st.run_id);
			goto out;
		}
		if (st.rolling_back) {
			fprintf(stderr, "zdm %s: run %s is rolling back already (zdm status %s)\n", what,
			    st.run_id, st.run_id);
			goto out;
		}
		s = under_way(&st);
		if (ev == EV_CONTROL_PROMOTE) {
			if (s == NULL || (step != NULL && strcmp(step, s->id) != 0)) {
				fprintf(stderr, "zdm promote: %s%s%s is running now in run %s; promote ends "
				    "the wait of the gate under way\n", step ? "step '" : "no step",
				    step ? step : "", step ? "' is not what" : "", st.run_id);
				if (s != NULL)
					fprintf(stderr, "  under way: step '%s' (uses: %s)\n", s->id,
					    s->uses ? s->uses : "?");
				goto out;
			}
			if (kind_of(s->uses) != 1) {
				fprintf(stderr, "zdm promote: step '%s' (uses: %s) is not a gate zdm promote "
				    "can end: only wait, health_gate and metric_gate%s\n", s->id,
				    s->uses ? s->uses : "?", s->uses && strcmp(s->uses, "approval") == 0 ?
				    "; an approval is decided with zdm approve" : "");
				goto out;
			}
		} else if (step != NULL) {
			fprintf(stderr, "zdm %s: takes a run only (RUN_ID), not a step\n", what);
			goto out;
		} else if (ev == EV_CONTROL_PAUSE && s != NULL && st.planned > 0 &&
		    (long)st.nsteps == st.planned && s == &st.steps[st.nsteps - 1]) {
			fprintf(stderr, "zdm pause: step '%s' under way is the last of run %s: the run ends "
			    "after it, so there is nothing to pause before (zdm abort rolls it back)\n",
			    s->id, st.run_id);
			goto out;
		}
		w = store_open_writer(store, jp, st.run_id, &log, &err);
		if (w == NULL) {
			if (tries < 3 && run_grew(store, jp, log.n)) {
				free(err);
				err = NULL;
				continue;	/* the running zdm wrote since: look again */
			}
			fprintf(stderr, "zdm %s: %s\n", what, err);
			goto out;
		}
		store_set_notify(w);	/* wakes the running zdm (PostgreSQL) */
		d = json_pack("{s:s,s:s}", "actor", actor, "via", ev == EV_CONTROL_PAUSE ? "zdm pause" :
		    ev == EV_CONTROL_ABORT ? "zdm abort" : "zdm promote");
		if (c->reason != NULL)
			json_object_set_new(d, "reason", json_string(c->reason));
		seq = store_append(w, ev_name(ev), ev == EV_CONTROL_PROMOTE ? s->id : NULL, 0, d, &err);
		if (seq >= 0)
			break;
		if (tries < 3 && run_grew(store, jp, log.n)) {
			free(err);
			err = NULL;
			continue;
		}
		fprintf(stderr, "zdm %s: journal %s: %s\n", what, jp, err);
		rc = ZDM_EXIT_NEEDS_PERSON;
		goto out;
	}
	if (ev == EV_CONTROL_PAUSE)
		printf("pause asked: run %s pauses %s%s%s (by %s, journal record %ld)\n", st.run_id,
		    s ? "once step '" : "before its next step", s ? s->id : "", s ? "' ends" : "", actor, seq);
	else if (ev == EV_CONTROL_ABORT && s != NULL && (s->read_only || kind_of(s->uses) > 0))
		printf("abort asked: run %s stops step '%s' (it changes nothing) and rolls back (by %s, "
		    "journal record %ld)\n", st.run_id, s->id, actor, seq);
	else if (ev == EV_CONTROL_ABORT && s != NULL)
		printf("abort asked: run %s rolls back once step '%s' ends (a step that may change things "
		    "finishes first) (by %s, journal record %ld)\n", st.run_id, s->id, actor, seq);
	else if (ev == EV_CONTROL_ABORT)
		printf("abort asked: run %s rolls back before its next step (by %s, journal record %ld)\n",
		    st.run_id, actor, seq);
	else
		printf("promote asked: step '%s' of run %s passes now (by %s, journal record %ld)\n",
		    s->id, st.run_id, actor, seq);
	printf("  the zdm running it (pid %ld) acts within a second: zdm status %s --watch\n", pid,
	    st.run_id);
	rc = ZDM_EXIT_OK;
out:
	free(err);
	free(holder);
	free(actor);
	store_close_writer(w);
	runstate_release(&st);
	jlog_release(&log);
	free(jp);
	store_close(store);
	return rc;
}
