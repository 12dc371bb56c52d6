/*
 * execute.c - the steps of a run in order (execute.h).
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "base/proc.h"
#include "base/redact.h"
#include "base/util.h"
#include "core/events.h"
#include "core/execute.h"
#include "core/rollback.h"
#include "core/run.h"
#include "core/store.h"
#include "zdm/step.h"

/* does any string in v mention s (an expression reading steps.*) */
static bool
json_dumps_contains(const json_t *v, const char *s)
{
	char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	bool yes = t != NULL && strstr(t, s) != NULL;

	free(t);
	return yes;
}

enum outcome { OC_OK, OC_FAILED, OC_INTERRUPTED, OC_JOURNAL, OC_PAUSE };

/*
 * Run step i with its retries.  On success records outputs/undo_data.
 */
static enum outcome
run_step(struct run *r, size_t i, char **why)
{
	struct rb_step *s = &r->rb->steps[i];
	struct stepstate *ss = &r->ss[i];
	bool dry = r->o->mode == MODE_DRY_RUN;
	int max = s->retries + 1;

	for (int k = 0; k < max; k++) {
		struct zdm_ctx ctx;
		struct zdm_result res;
		json_t *params, *d, *notes;
		struct run_event ev = { 0 };
		char *err = NULL;
		int64_t t0;
		int attempt = ++ss->attempts, rc;

		if (zdm_interrupted)
			return OC_INTERRUPTED;
		if (k > 0 && r->ctl.abort_by != NULL) {
			/* asked during the backoff: no more attempts */
			*why = control_abort_text(r);
			return OC_FAILED;
		}
		unsigned long deferred = expr_deferred_count(r->rb->x);

		params = runbook_params(r->rb, s->node, s->type, s->with, s->with_node, &err);
		if (dry && params != NULL && expr_deferred_count(r->rb->x) != deferred) {
			/* it reads outputs of a step that was only planned */
			json_decref(params);
			params = NULL;
			err = xstrdup("its params read outputs of steps that only showed their plan");
		}
		if (params == NULL && dry && r->planned > 0 && json_dumps_contains(s->with, "steps")) {
			/* in a rehearsal, outputs of steps that only printed their
			 * plan do not exist: show this step's plan as written */
			char *txt = xasprintf("unknown until run: %s", err);

			step_ended(r, i, END_PLANNED, -1, txt);
			free(txt);
			d = json_pack("{s:s,s:s}", "reason", "dry run: params need outputs of steps that did not run",
			    "error", err);
			free(err);
			ss->st = S_SKIPPED;
			ss->attempts--;
			expr_defer_step(r->rb->x, s->id);
			return jrec(r, ev_name(EV_STEP_SKIPPED), s->id, 0, d) ? OC_JOURNAL : OC_OK;
		}
		if (params == NULL) {
			/* a parameter that does not resolve is a failed attempt that
			 * touched nothing: journal it as such */
			d = json_pack("{s:s,s:b}", "error", err, "will_retry", false);
			step_ended(r, i, END_FAILED, -1, err);
			if (jrec(r, ev_name(EV_STEP_FAILED), s->id, attempt, d) != 0) {
				free(err);
				return OC_JOURNAL;
			}
			*why = err;
			ss->st = S_FAILED;
			return OC_FAILED;
		}
		if (dry && !s->type->read_only) {
			char *plan = plan_of(s->type, params, r->planned_state), *checked = NULL;

			if (s->type->check != NULL) {
				/* what the real run would meet: verified, nothing acts */
				run_ctx_init(r, &ctx, s->id, attempt);
				memset(&res, 0, sizeof res);
				ctx.deadline_ms = zdm_now_ms() + s->timeout_ms;
				t0 = zdm_now_ms();
				rc = s->type->check(s->type, &ctx, params, &res);
				if (rc != 0 && (res.interrupted || zdm_interrupted)) {
					free(plan);
					json_decref(params);
					zdm_result_release(&res);
					ss->attempts--;
					return OC_INTERRUPTED;
				}
				if (rc != 0) {
					char *e = redact_str(res.err[0] ? res.err : "failed");
					char *msg = xasprintf("check failed: %s", e);
					/* what it would have done, then why it would fail */
					char *txt = xasprintf("%s\n        %s", plan ? plan : s->uses, msg);

					free(e);
					json_decref(params);
					zdm_result_release(&res);
					step_ended(r, i, END_FAILED, zdm_now_ms() - t0, txt);
					free(txt);
					d = json_pack("{s:s,s:b,s:s,s:b}", "error", msg, "check", true,
					    "plan", plan ? plan : s->uses, "will_retry", false);
					free(plan);
					if (jrec(r, ev_name(EV_STEP_FAILED), s->id, attempt, d) != 0) {
						free(msg);
						return OC_JOURNAL;
					}
					ss->st = S_FAILED;
					*why = msg;
					return OC_FAILED;
				}
				{
					const char *c = json_string_value(json_object_get(res.outputs, "checked"));

					checked = redact_str(c != NULL ? c : "ok");
				}
				zdm_result_release(&res);
			}
			{
				char *txt = checked != NULL ? xasprintf("%s\n        checked: %s",
				    plan ? plan : s->uses, checked) : NULL;

				step_ended(r, i, END_PLANNED, -1, txt ? txt : plan ? plan : s->uses);
				free(txt);
			}
			r->planned++;
			d = json_pack("{s:s,s:s}", "reason", "dry run: not read-only", "plan",
			    plan ? plan : s->uses);
			if (checked != NULL)
				json_object_set_new(d, "checked", json_string(checked));
			free(checked);
			free(plan);
			json_decref(params);
			ss->st = S_SKIPPED;
			ss->attempts--;
			expr_defer_step(r->rb->x, s->id);
			return jrec(r, ev_name(EV_STEP_SKIPPED), s->id, 0, d) ? OC_JOURNAL : OC_OK;
		}
		run_ctx_init(r, &ctx, s->id, attempt);
		memset(&res, 0, sizeof res);
		d = json_object();	/* {uses, params}: built by hand, json_pack parses a format */
		json_object_set_new(d, "uses", json_string(s->uses));
		json_object_set(d, "params", params);
		if (s->read_only)	/* its type's, or the author's read_only: true */
			json_object_set_new(d, "read_only", json_true());
		if (s->type->snapshot != NULL) {
			/* the state run() will replace, on disk before it acts */
			ctx.deadline_ms = zdm_now_ms() + s->timeout_ms;
			if (s->type->snapshot(s->type, &ctx, params, &res) != 0 &&
			    (res.interrupted || zdm_interrupted)) {
				/* nothing acted yet: an interrupt, not a failure */
				json_decref(d);
				json_decref(params);
				zdm_result_release(&res);
				ss->attempts--;
				return OC_INTERRUPTED;
			}
			if (res.err[0] != '\0') {
				char *msg = xasprintf("reading the state before the change: %s", res.err);

				json_decref(d);
				json_decref(params);
				zdm_result_release(&res);
				step_ended(r, i, END_FAILED, -1, msg);
				if (jrec(r, ev_name(EV_STEP_FAILED), s->id, attempt, json_pack("{s:s,s:b}",
				    "error", msg, "will_retry", false)) != 0) {
					free(msg);
					return OC_JOURNAL;
				}
				ss->st = S_FAILED;
				*why = msg;
				return OC_FAILED;
			}
			json_object_set_new(d, "snapshot", res.undo_data ? res.undo_data : json_null());
			if (ss->snapshot == NULL && res.undo_data != NULL)
				ss->snapshot = json_incref(res.undo_data);
			res.undo_data = NULL;
			zdm_result_release(&res);
			memset(&res, 0, sizeof res);
		}
		if (jrec(r, ev_name(EV_STEP_STARTED), s->id, attempt, d) != 0) {
			json_decref(params);
			return OC_JOURNAL;
		}
		ss->st = S_STARTED;
		ctx.prior = ss->snapshot;
		notes = ss->notes != NULL ? json_copy(ss->notes) : NULL;	/* earlier attempts' */
		ctx.notes = notes;
		t0 = zdm_now_ms();
		ctx.deadline_ms = t0 + s->timeout_ms;
		ev.kind = OBS_STEP_RUNNING;
		ev.step.i = i;
		ev.step.attempt = attempt;
		run_emit(r, &ev);
		r->ctl.cur = (long)i;
		rc = s->type->run(s->type, &ctx, params, &res);
		r->ctl.cur = -1;
		zdm_wake = 0;
		if (zdm_interrupted == ZDM_STOP_ABORT && rc == 0 && !res.interrupted)
			zdm_interrupted = 0;	/* it ended first: kept; asked() rolls back */
		free(r->ctl.promote_by);
		r->ctl.promote_by = NULL;
		ev.kind = OBS_STEP_RETURNED;
		run_emit(r, &ev);
		json_decref(params);
		json_decref(notes);
		if (rc == 0 && zdm_now_ms() > ctx.deadline_ms + 1000 && !s->type->read_only) {
			/* finished, late: keep the result, it did happen */
		}
		if (zdm_interrupted == ZDM_STOP_ABORT && (res.interrupted || rc != 0)) {
			/* zdm abort stopped a step that changes nothing: a
			 * failure like any other, then the rollback */
			char *msg = control_abort_text(r);

			zdm_interrupted = 0;
			d = json_pack("{s:s,s:b,s:b,s:I,s:s}", "error", msg, "will_retry", false,
			    "timed_out", false, "duration_ms", (json_int_t)(zdm_now_ms() - t0),
			    "aborted_by", r->ctl.abort_by);
			step_ended(r, i, END_FAILED, zdm_now_ms() - t0, msg);
			zdm_result_release(&res);
			if (jrec(r, ev_name(EV_STEP_FAILED), s->id, attempt, d) != 0) {
				free(msg);
				return OC_JOURNAL;
			}
			ss->st = S_FAILED;
			*why = msg;
			return OC_FAILED;
		}
		if (res.interrupted || (rc != 0 && zdm_interrupted)) {
			/* zdm stopped the step itself (SIGTERM, then SIGKILL to its
			 * process group) part-way: it may have half-happened, so it
			 * stays in doubt, as after a crash, unless it is idempotent */
			d = json_pack("{s:s,s:i,s:I}", "error", "stopped by a signal while it ran",
			    "signal", (int)zdm_interrupted,
			    "duration_ms", (json_int_t)(zdm_now_ms() - t0));
			if (res.undo_data != NULL)
				json_object_set(d, "undo_data", res.undo_data);
			step_ended(r, i, END_STOPPED, zdm_now_ms() - t0, res.err);
			zdm_result_release(&res);
			if (jrec(r, ev_name(EV_STEP_INTERRUPTED), s->id, attempt, d) != 0)
				return OC_JOURNAL;
			return OC_INTERRUPTED;
		}
		if (rc == 0) {
			int64_t ms = zdm_now_ms() - t0;

			d = json_object();
			json_object_set_new(d, "outputs",
			    res.outputs ? json_incref(res.outputs) : json_object());
			json_object_set_new(d, "undo_data",
			    res.undo_data ? json_incref(res.undo_data) : json_null());
			json_object_set_new(d, "duration_ms", json_integer((json_int_t)ms));
			if (jrec(r, ev_name(EV_STEP_SUCCEEDED), s->id, attempt, d) != 0) {
				zdm_result_release(&res);
				return OC_JOURNAL;
			}
			ss->st = S_SUCCEEDED;
			ss->done_seq = r->last_seq;
			json_decref(ss->outputs);
			json_decref(ss->undo_data);
			ss->outputs = res.outputs ? json_incref(res.outputs) : json_object();
			ss->undo_data = res.undo_data ? json_incref(res.undo_data) : NULL;
			redact_json(ss->outputs);
			expr_set_step(r->rb->x, s->id, ss->outputs);
			zdm_result_release(&res);
			step_ended(r, i, END_OK, ms, NULL);
			return OC_OK;
		}
		{
			int64_t ms = zdm_now_ms() - t0;
			bool retry = k + 1 < max && !res.pause && r->ctl.abort_by == NULL;
			char *msg = redact_str(res.err[0] ? res.err : "failed");

			d = json_pack("{s:s,s:b,s:b,s:I}", "error", msg, "will_retry", retry,
			    "timed_out", res.timed_out, "duration_ms", (json_int_t)ms);
			if (res.pause)
				json_object_set_new(d, "needs_decision", json_true());
			if (res.outputs != NULL)
				json_object_set(d, "outputs", res.outputs);
			if (res.undo_data != NULL)
				json_object_set(d, "undo_data", res.undo_data);
			if (jrec(r, ev_name(EV_STEP_FAILED), s->id, attempt, d) != 0) {
				free(msg);
				zdm_result_release(&res);
				return OC_JOURNAL;
			}
			ss->st = S_FAILED;
			if (res.undo_data != NULL) {
				/* a failed run() that changed something says so */
				json_decref(ss->undo_data);
				ss->undo_data = json_incref(res.undo_data);
				ss->done_seq = LONG_MAX / 2 + (long)i;
			}
			zdm_result_release(&res);
			if (retry) {
				int64_t delay = backoff_delay(s, k + 1);

				ev.kind = OBS_STEP_ENDED;
				ev.step.i = i;
				ev.step.attempt = attempt;
				ev.step.end = END_RETRY;
				ev.step.ms = ms;
				ev.step.text = msg;
				ev.step.attempts = max;
				ev.step.next_ms = delay;
				run_emit(r, &ev);
				free(msg);
				if (zdm_sleep_ms(delay) != 0)
					return OC_INTERRUPTED;
				continue;
			}
			step_ended(r, i, !res.pause ? END_FAILED : s->type->waits_for_person ? END_WAITING :
			    END_UNDECIDED, ms, msg);
			*why = msg;
			return res.pause ? OC_PAUSE : OC_FAILED;
		}
	}
	return OC_FAILED;
}

/* ---- the main loop --------------------------------------------------------- */

/* a step failed for good: what the runbook's on_failure says (a drill
 * always rolls back) */
enum run_outcome
run_on_failure(struct run *r, const char *step, const char *why)
{
	struct run_event ev = { .kind = OBS_FAILURE };
	enum run_outcome rc;
	/* zdm abort: the rollback its asker wants, whatever on_failure says */
	enum on_failure policy = r->o->force_rollback || r->ctl.abort_by != NULL ?
	    ON_FAILURE_ROLLBACK : r->rb->on_failure;

	ev.failure.step = step;
	ev.failure.why = why;
	ev.failure.drill = r->drilled;
	ev.failure.aborted_by = r->ctl.abort_by;
	ev.failure.policy = r->o->mode == MODE_DRY_RUN ? FAIL_DRY_RUN :
	    policy == ON_FAILURE_PAUSE ? FAIL_PAUSE :
	    policy == ON_FAILURE_ABORT ? FAIL_ABORT : FAIL_ROLLBACK;
	run_emit(r, &ev);
	memset(&ev, 0, sizeof ev);
	ev.end.step = step;
	ev.end.why = why;
	ev.end.drill = r->drilled;
	ev.end.aborted_by = r->ctl.abort_by;
	if (r->o->mode == MODE_DRY_RUN) {
		ev.end.verdict = VD_DRY_RUN_FAILED;
		run_ended(r, &ev);
		return run_finish(r, "failed", RUN_ROLLED_BACK,
		    json_pack("{s:s,s:s}", "failed_step", step, "error", why));
	}
	switch (policy) {
	case ON_FAILURE_PAUSE:
		run_set_status(r, "paused");
		jrec(r, ev_name(EV_RUN_PAUSED), step, 0, json_pack("{s:s}", "error", why));
		ev.end.verdict = VD_PAUSED;
		run_ended(r, &ev);
		return RUN_PAUSED;
	case ON_FAILURE_ABORT:
		ev.end.verdict = VD_ABORTED;
		run_ended(r, &ev);
		return run_finish(r, "aborted", RUN_NEEDS_PERSON,
		    json_pack("{s:s,s:s}", "failed_step", step, "error", why));
	case ON_FAILURE_ROLLBACK:
		break;
	}
	if (jrec(r, ev_name(EV_ROLLBACK_STARTED), step, 0, json_pack("{s:s}", "reason", why)) != 0)
		return RUN_NEEDS_PERSON;
	r->rolling_back = true;
	rc = undo_steps(r);
	if (rc == RUN_PAUSED)
		return run_interrupted(r, NULL);
	if (rc == RUN_IN_DOUBT) {
		run_set_status(r, "in_doubt");
		return rc;
	}
	if (rc == RUN_OK && r->ctl.abort_by != NULL)
		return rolled_back(r, &ev, VD_ROLLED_BACK, json_pack("{s:s,s:s,s:s}", "aborted_by",
		    r->ctl.abort_by, "step", step, "error", why));
	if (rc == RUN_OK)
		return rolled_back(r, &ev, VD_ROLLED_BACK, json_pack("{s:s,s:s}", "failed_step", step,
		    "error", why));
	ev.end.verdict = VD_ROLLBACK_INCOMPLETE;
	run_ended(r, &ev);
	return run_finish(r, "rollback_failed", RUN_NEEDS_PERSON,
	    json_pack("{s:s,s:s}", "failed_step", step, "error", why));
}

/* the run lock is no longer ours (the file backend: its file was removed or
 * replaced; PostgreSQL: another zdm took it, or the state database is lost):
 * stop before acting again, exit 4; journaled as a pause where an append can
 * still go in (a fencing store refuses it) */
static bool
lock_lost(struct run *r, const char *step)
{
	struct run_event ev = { 0 };
	char *err = NULL, *why;

	if (r->lock == NULL || store_lock_check(r->lock, &err) == 0)
		return false;
	why = xasprintf("%s; stopped before step '%s'", err, step);
	run_set_status(r, "paused");
	if (store_fences(r->store))
		r->lock_lost = true;	/* its append would be refused: nothing more */
	else
		jrec(r, ev_name(EV_RUN_PAUSED), step, 0, json_pack("{s:s,s:s}", "error", why,
		    "reason", "lock_lost"));
	ev.end.verdict = VD_LOCK_LOST;
	ev.end.step = step;
	ev.end.why = why;
	run_ended(r, &ev);
	free(err);
	free(why);
	return true;
}

/* what zdm pause or zdm abort asked before step S (NULL: after the last
 * one), read from the journal if something came: true when the run stops
 * here (*rc) */
static bool
asked(struct run *r, const struct rb_step *s, enum run_outcome *rc)
{
	struct run_event ev = { 0 };
	char *why;

	if (r->w != NULL && r->o->mode == MODE_RUN && store_behind(r->w) == 1 &&
	    control_look(r) != 0) {
		*rc = RUN_NEEDS_PERSON;
		return true;
	}
	if (r->ctl.abort_by != NULL) {
		const char *at = s != NULL ? s->id : r->rb->steps[r->rb->nsteps - 1].id;

		if (zdm_interrupted == ZDM_STOP_ABORT)
			zdm_interrupted = 0;	/* the undos must run */
		why = control_abort_text(r);
		*rc = run_on_failure(r, at, why);
		free(why);
		return true;
	}
	if (r->ctl.pause_by == NULL || s == NULL)
		return false;
	why = control_pause_text(r);
	run_set_status(r, "paused");
	if (jrec(r, ev_name(EV_RUN_PAUSED), s->id, 0, json_pack("{s:s,s:s,s:s}", "error", why,
	    "reason", "asked", "paused_by", r->ctl.pause_by)) != 0) {
		free(why);
		*rc = RUN_NEEDS_PERSON;
		return true;
	}
	ev.end.verdict = VD_PAUSE_ASKED;
	ev.end.step = s->id;
	ev.end.why = why;
	run_ended(r, &ev);
	free(why);
	*rc = RUN_PAUSED;
	return true;
}

/* --fail-at STEP: the forced failure once STEP is done (or skipped) */
static enum run_outcome
forced_failure(struct run *r, const struct rb_step *s)
{
	char *msg = xasprintf("drill: forced failure after step '%s' (--fail-at)", s->id);
	struct run_event ev = { .kind = OBS_NOTE };
	enum run_outcome rc;

	jrec(r, ev_name(EV_DRILL_FAILURE), s->id, 0, json_pack("{s:s}", "error", msg));
	ev.text = msg;
	run_emit(r, &ev);
	r->drilled = true;
	rc = run_on_failure(r, s->id, msg);
	r->drilled = false;
	free(msg);
	return rc;
}

static bool
is_fail_at(const struct run *r, const struct rb_step *s)
{
	return r->o->fail_at != NULL && strcmp(r->o->fail_at, s->id) == 0;
}

enum run_outcome
run_steps(struct run *r, size_t from)
{
	for (size_t i = from; i < r->rb->nsteps; i++) {
		struct rb_step *s = &r->rb->steps[i];
		struct stepstate *ss = &r->ss[i];
		char *why = NULL;
		enum outcome oc;
		enum run_outcome rc;

		if (ss->st == S_SUCCEEDED || ss->st == S_SKIPPED)
			continue;
		if (zdm_interrupted)
			return run_interrupted(r, NULL);
		if (lock_lost(r, s->id))
			return RUN_PAUSED;
		if (asked(r, s, &rc))
			return rc;
		if (s->if_expr != NULL) {
			bool yes = true;
			char *err = NULL;
			int k = runbook_if(r->rb, s, &yes, &err);

			if (k == 1 && err == NULL)
				err = xstrdup("if: reads outputs of steps that only showed their plan");
			if (k == 1 || (k != 0 && r->o->mode == MODE_DRY_RUN && r->planned > 0 &&
			    strstr(s->if_expr, "steps") != NULL)) {
				/* it reads outputs of a step that only printed its plan */
				char *txt = xasprintf("unknown until run: %s", err);

				step_ended(r, i, END_PLANNED, -1, txt);
				free(txt);
				if (jrec(r, ev_name(EV_STEP_SKIPPED), s->id, 0, json_pack("{s:s,s:s}", "reason",
				    "dry run: if: needs outputs of steps that did not run", "error", err)) != 0) {
					free(err);
					return RUN_NEEDS_PERSON;
				}
				free(err);
				ss->st = S_SKIPPED;
				expr_defer_step(r->rb->x, s->id);
				continue;
			}
			if (err != NULL) {
				why = xasprintf("%s:%d:%d: if: %s", s->if_node->file != NULL ?
				    s->if_node->file : r->rb->path, s->if_node->line,
				    s->if_node->col, err);
				free(err);
				step_ended(r, i, END_FAILED, -1, why);
				jrec(r, ev_name(EV_STEP_FAILED), s->id, 0, json_pack("{s:s}", "error", why));
				rc = run_on_failure(r, s->id, why);
				free(why);
				return rc;
			}
			if (!yes) {
				if (jrec(r, ev_name(EV_STEP_SKIPPED), s->id, 0, json_pack("{s:s,s:s}",
				    "reason", "if: condition is false", "if", s->if_expr)) != 0)
					return RUN_NEEDS_PERSON;
				ss->st = S_SKIPPED;
				expr_set_step(r->rb->x, s->id, NULL);
				step_ended(r, i, END_SKIPPED, -1, "if: condition is false");
				/* a drill fails there all the same: it must never
				 * run past its failure point */
				if (is_fail_at(r, s) && r->o->force_rollback)
					return forced_failure(r, s);
				continue;
			}
		}
		oc = run_step(r, i, &why);
		if (oc == OC_JOURNAL)
			return RUN_NEEDS_PERSON;
		if (oc == OC_INTERRUPTED)
			return run_interrupted(r, s->id);
		if (oc == OC_FAILED) {
			rc = run_on_failure(r, s->id, why);
			free(why);
			return rc;
		}
		if (oc == OC_PAUSE && r->o->mode == MODE_DRY_RUN) {
			/* nothing to resume in a rehearsal: report it as found */
			rc = run_on_failure(r, s->id, why);
			free(why);
			return rc;
		}
		if (oc == OC_PAUSE) {
			/* not a verdict: a person decides (exit 4, resumable) */
			bool appr = s->type->waits_for_person;
			json_t *pd = json_pack("{s:s,s:b}", "error", why, "needs_decision", true);
			struct run_event ev = { 0 };

			if (appr)
				json_object_set_new(pd, "waiting_for", json_string("approval"));
			jrec(r, ev_name(EV_RUN_PAUSED), s->id, 0, pd);
			run_set_status(r, "paused");
			ev.end.verdict = appr ? VD_WAITING_APPROVAL : VD_UNDECIDED;
			ev.end.step = s->id;
			ev.end.why = why;
			run_ended(r, &ev);
			free(why);
			return RUN_PAUSED;
		}
		if (is_fail_at(r, s))
			return forced_failure(r, s);
	}
	if (r->o->mode == MODE_RUN && r->rb->nsteps > 0) {
		/* an abort asked while the last step ran (it changed things) */
		enum run_outcome rc;

		if (asked(r, NULL, &rc))
			return rc;
	}
	{
		struct run_event ev = { 0 };

		ev.end.verdict = r->o->mode == MODE_DRY_RUN ? VD_DRY_RUN_OK : VD_SUCCEEDED;
		ev.end.ms = zdm_now_ms() - r->t0;
		run_ended(r, &ev);
	}
	return run_finish(r, "succeeded", RUN_OK, NULL);
}
