/*
 * control.c - `zdm pause`, `zdm abort` and `zdm promote` reaching the zdm
 * that runs the run (run.h).
 *
 * Those commands append control.pause, control.abort or control.promote
 * (with the actor and a reason) to the run while this zdm holds its lock,
 * as zdm approve appends beside a zdm waiting for it: one chain, whoever
 * writes the next record first wins (store.h).  This zdm sees the record
 * at its next append, which fails with nothing written (jrec reads the run
 * again, adopts the record and appends after it), and while a step runs
 * at its waits (zdm_watch, every 250 ms or so: store_behind, then a read).
 *
 * What each asks, as Argo Rollouts' pause, abort and promote do for a
 * rollout:
 *   pause    the run stops before its next step: run.paused, exit 4;
 *            zdm resume goes on from there.
 *   abort    the run rolls back now.  A read-only step under way (a gate,
 *            a wait, a check) is stopped at once; a step that changes
 *            things is let finish, so that its undo knows what it did.
 *   promote  the running gate (wait, health_gate, metric_gate) ends its
 *            wait as passed; its outputs say who promoted it.
 * Records from before this zdm took the run (a resume) are history: only
 * those appended while it runs are acted on.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "base/proc.h"
#include "base/util.h"
#include "core/events.h"
#include "core/run.h"
#include "core/store.h"
#include "zdm/step.h"

static struct run *watched;

static void
say(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
say(struct run *r, const char *fmt, ...)
{
	struct run_event ev = { .kind = OBS_NOTE };
	va_list ap;
	char *m;

	va_start(ap, fmt);
	m = xvasprintf(fmt, ap);
	va_end(ap);
	ev.text = m;
	run_emit(r, &ev);
	free(m);
}

static char *
by_text(const char *verb, const char *by, const char *cmd, const char *why)
{
	return xasprintf("%s by %s (zdm %s)%s%s", verb, by, cmd, why ? ": " : "", why ? why : "");
}

char *
control_abort_text(const struct run *r)
{
	return by_text("aborted", r->ctl.abort_by, "abort", r->ctl.abort_why);
}

char *
control_pause_text(const struct run *r)
{
	return by_text("paused", r->ctl.pause_by, "pause", r->ctl.pause_why);
}

static const struct rb_step *
running(const struct run *r)
{
	return r->ctl.cur >= 0 && (size_t)r->ctl.cur < r->rb->nsteps ? &r->rb->steps[r->ctl.cur] : NULL;
}

void
control_scan(struct run *r, const struct jlog *log, long after)
{
	for (size_t k = 0; k < log->n; k++) {
		const json_t *rec = log->recs[k], *d = json_object_get(rec, "data");
		enum ev e = ev_parse(json_string_value(json_object_get(rec, "event")));
		const char *by = json_string_value(json_object_get(d, "actor"));
		const char *why = json_string_value(json_object_get(d, "reason"));
		const char *step = json_string_value(json_object_get(rec, "step"));
		const struct rb_step *s = running(r);

		if ((long)json_integer_value(json_object_get(rec, "seq")) <= after)
			continue;
		if (by == NULL)
			by = "?";
		if ((e == EV_CONTROL_PAUSE || e == EV_CONTROL_ABORT || e == EV_CONTROL_PROMOTE) &&
		    (r->ctl.closing || (e != EV_CONTROL_PROMOTE && r->rolling_back))) {
			/* the run has ended, or is rolling back already: nothing to do */
			say(r, "%s asked by %s (zdm %s) came too late: the run %s; nothing done", e ==
			    EV_CONTROL_PAUSE ? "pause" : e == EV_CONTROL_ABORT ? "abort" : "promote", by,
			    e == EV_CONTROL_PAUSE ? "pause" : e == EV_CONTROL_ABORT ? "abort" : "promote",
			    r->ctl.closing ? "had ended" : "is rolling back already");
			continue;
		}
		if (e == EV_CONTROL_PAUSE && s != NULL && (size_t)r->ctl.cur + 1 == r->rb->nsteps) {
			say(r, "pause asked by %s (zdm pause) came during the last step, '%s': the run "
			    "finishes after it; nothing paused", by, s->id);
		} else if (e == EV_CONTROL_PAUSE && r->ctl.pause_by == NULL && r->ctl.abort_by == NULL) {
			r->ctl.pause_by = xstrdup(by);
			r->ctl.pause_why = why ? xstrdup(why) : NULL;
			if (s != NULL)
				say(r, "pause asked by %s (zdm pause): the run pauses once step '%s' ends", by,
				    s->id);
			else
				say(r, "pause asked by %s (zdm pause): the run pauses before its next step", by);
		} else if (e == EV_CONTROL_ABORT && r->ctl.abort_by == NULL) {
			r->ctl.abort_by = xstrdup(by);
			r->ctl.abort_why = why ? xstrdup(why) : NULL;
			if (s != NULL && s->read_only) {
				say(r, "abort asked by %s (zdm abort): stopping step '%s' (it changes nothing) "
				    "and rolling back", by, s->id);
				if (!zdm_interrupted)
					zdm_interrupted = ZDM_STOP_ABORT;
			} else if (s != NULL) {
				say(r, "abort asked by %s (zdm abort): step '%s' changes things, so it finishes "
				    "first; then the run rolls back", by, s->id);
			} else {
				say(r, "abort asked by %s (zdm abort): rolling back", by);
			}
		} else if (e == EV_CONTROL_PROMOTE) {
			if (s != NULL && step != NULL && strcmp(s->id, step) == 0 && s->type->promotable &&
			    r->ctl.promote_by == NULL) {
				r->ctl.promote_by = xstrdup(by);
				zdm_wake = 1;
				say(r, "promoted by %s (zdm promote): step '%s' passes now", by, s->id);
			} else {
				say(r, "promote of step '%s' by %s ignored: it is not the gate running now",
				    step ? step : "?", by);
			}
		}
	}
}

int
control_look(struct run *r)
{
	struct jlog log;
	char *ref, *err = NULL;
	int rc = 0;

	if (r->w == NULL || r->lock_lost)
		return 0;
	memset(&log, 0, sizeof log);
	ref = xstrdup(store_writer_ref(r->w));
	if (store_read(r->store, ref, &log, &err) == 0) {
		if (log.n > 0 && (long)json_integer_value(json_object_get(log.recs[log.n - 1], "seq")) >
		    r->last_seq)
			rc = run_adopt(r, ref, &log);
	}
	/* unreadable now: the next look, or the next append, tries again */
	free(err);
	jlog_release(&log);
	free(ref);
	return rc;
}

/* zdm_watch: a cheap look every 250 ms, a read only when something came */
static void
control_tick(void)
{
	struct run *r = watched;
	int64_t now;

	if (r == NULL || r->ctl.looking || r->w == NULL || r->lock_lost || r->rolling_back ||
	    store_busy(r->store))
		return;
	now = zdm_now_ms();
	if (now < r->ctl.next_look)
		return;
	r->ctl.next_look = now + 250;
	r->ctl.looking = true;
	if (store_behind(r->w) == 1)
		control_look(r);
	r->ctl.looking = false;
}

void
control_start(struct run *r)
{
	r->ctl.cur = -1;
	if (r->w == NULL || r->o->mode != MODE_RUN)
		return;
	watched = r;
	zdm_watch = control_tick;
	store_behind(r->w);	/* PostgreSQL: it listens from now on */
}

void
control_stop(struct run *r)
{
	if (watched == r) {
		watched = NULL;
		zdm_watch = NULL;
	}
	zdm_wake = 0;
	free(r->ctl.pause_by);
	free(r->ctl.pause_why);
	free(r->ctl.abort_by);
	free(r->ctl.abort_why);
	free(r->ctl.promote_by);
	memset(&r->ctl, 0, sizeof r->ctl);
	r->ctl.cur = -1;
}
