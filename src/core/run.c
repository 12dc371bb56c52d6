/*
 * run.c - what the runner's parts share (run.h): the journal and the
 * observers, the context a step gets, the end of a run.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/proc.h"
#include "base/redact.h"
#include "base/util.h"
#include "core/events.h"
#include "core/store.h"
#include "core/run.h"
#include "zdm/step.h"

/* ctx->progress: the step's live state, for the observers */
static void
host_progress(struct zdm_ctx *ctx, const char *text)
{
	const struct run *r = ctx->host;
	struct run_event ev = { .kind = OBS_PROGRESS };

	if (r == NULL)
		return;
	ev.progress.step = ctx->step_id;
	ev.progress.text = text;
	run_emit(r, &ev);
}

/* ctx->output: a line of the step's command output or log, for the observers */
static void
host_output(struct zdm_ctx *ctx, const char *stream, const char *line)
{
	const struct run *r = ctx->host;
	struct run_event ev = { .kind = OBS_OUTPUT };

	if (r == NULL)
		return;
	ev.output.step = ctx->step_id;
	ev.output.stream = stream;
	ev.output.text = line;
	run_emit(r, &ev);
}

/* ctx->note: a step's own journal event, on disk before it returns */
/* remember a step's own event for ctx->notes of later attempts and undo */
void
note_keep(struct stepstate *ss, const char *event, int attempt, json_t *data)
{
	if (ss->notes == NULL)
		ss->notes = json_array();
	json_array_append_new(ss->notes, json_pack("{s:s,s:i,s:O}", "event", event,
	    "attempt", attempt, "data", data ? data : json_null()));
}

static void
host_note(struct zdm_ctx *ctx, const char *event, json_t *data)
{
	struct run *r = ctx->host;

	struct rb_step *s;

	if (r == NULL) {
		json_decref(data);
		return;
	}
	s = ctx->step_id != NULL ? runbook_step(r->rb, ctx->step_id) : NULL;
	/* a gate measuring for hours would keep every measurement: only the
	 * steps that read them back (ctx->notes) get them */
	if (s != NULL && !(s->type != NULL && s->type->notes_unread && s->undo == NULL))
		note_keep(&r->ss[s - r->rb->steps], event, ctx->attempt, data);
	jrec(r, event, ctx->step_id, ctx->attempt, data);
}

/* ---- journal helpers ----------------------------------------------------- */

/* tell every observer, in order */
void
run_emit(const struct run *r, struct run_event *ev)
{
	ev->rb = r->rb;
	ev->run_id = r->run_id;
	for (size_t k = 0; k < r->o->nobservers; k++)
		r->o->observers[k].event(r->o->observers[k].self, ev);
}

void
run_echo_record(const char *line, void *arg)
{
	struct run_event ev = { .kind = OBS_RECORD_LINE, .line = line };
	struct run *r = arg;

	/* each record appended through the run's writer, whoever appended it
	 * (the webhooks' notify.failed too), is the next one: run_adopt then
	 * echoes only the other writers' records */
	r->last_seq++;
	run_emit(r, &ev);
}

/* how this command leaves the run, for the final "exit" event */
void
run_set_status(const struct run *r, const char *status)
{
	if (r->o->status_out != NULL)
		snprintf(r->o->status_out, 32, "%s", status);
}

/* what went wrong that the journal cannot say */
void
run_error(const struct run *r, const char *fmt, ...)
{
	struct run_event ev = { .kind = OBS_ERROR };
	va_list ap;
	char *m;

	va_start(ap, fmt);
	m = xvasprintf(fmt, ap);
	va_end(ap);
	ev.text = m;
	run_emit(r, &ev);
	free(m);
}

/* how a step (or its attempt) ended; ms -1: not timed */
void
step_ended(const struct run *r, size_t i, enum step_end end, int64_t ms, const char *text)
{
	struct run_event ev = { .kind = OBS_STEP_ENDED };

	ev.step.i = i;
	ev.step.end = end;
	ev.step.ms = ms;
	ev.step.text = text;
	run_emit(r, &ev);
}

void
undo_ended(const struct run *r, size_t i, enum undo_end end, int64_t ms, const char *text)
{
	struct run_event ev = { .kind = OBS_UNDO_ENDED };

	ev.step.i = i;
	ev.step.undo = end;
	ev.step.ms = ms;
	ev.step.text = text;
	run_emit(r, &ev);
}

enum in_doubt
run_answer(const struct run *r, const char *step)
{
	for (size_t k = 0; k < r->o->nanswers; k++)
		if (strcmp(r->o->answers[k].step, step) == 0)
			return r->o->answers[k].answer;
	return r->o->in_doubt;
}

/* the verdict; end.verdict and what it needs are set by the caller */
void
run_ended(struct run *r, struct run_event *ev)
{
	r->ctl.closing = true;	/* what zdm pause or abort asks now comes too late */
	ev->kind = OBS_RUN_ENDED;
	run_emit(r, ev);
}

static long
rec_seq(const json_t *rec)
{
	return (long)json_integer_value(json_object_get(rec, "seq"));
}

/* append or die trying: a run that cannot journal must not act.
 * Returns 0, or -1 when the record is not on disk; r->last_seq is its seq. */
int
jrec(struct run *r, const char *event, const char *step, int attempt, json_t *data)
{
	char *err = NULL;
	long seq;
	json_t *kept = json_incref(data);	/* for the observers */
	struct run_event ev = { .kind = OBS_RECORD };

	if (r->w == NULL) {
		json_decref(data);
		json_decref(kept);
		return 0;
	}
	switch (ev_parse(event)) {
	case EV_RUN_FINISHED:
	case EV_RUN_PAUSED:
	case EV_RUN_INTERRUPTED:
		r->ctl.closing = true;	/* a control that comes now is too late */
		break;
	default:
		break;
	}
	if (r->lock_lost) {
		/* fenced: nothing more from this zdm */
		json_decref(data);
		json_decref(kept);
		return -1;
	}
	for (int tries = 0;; tries++) {
		struct jlog log;
		char *ref, *rerr = NULL;
		bool grew;

		memset(&log, 0, sizeof log);
		seq = store_append(r->w, event, step, attempt, json_incref(data), &err);
		if (seq >= 0 || tries == 3 || r->lock == NULL)
			break;
		/* another writer's record first (zdm approve, pause, abort,
		 * promote), while the run is still ours: nothing of ours was
		 * written; go on after it */
		if (store_lock_check(r->lock, &rerr) != 0) {
			free(rerr);
			break;
		}
		/* only a chain conflict: never after a write that failed part-way
		 * (the record may be on disk: a run that cannot journal stops) */
		if (store_behind(r->w) != 1)
			break;
		ref = xstrdup(store_writer_ref(r->w));
		grew = store_read(r->store, ref, &log, &rerr) == 0 && log.n > 0 &&
		    rec_seq(log.recs[log.n - 1]) > r->last_seq;
		if (grew && run_adopt(r, ref, &log) == 0) {
			jlog_release(&log);
			free(ref);
			free(err);
			err = NULL;
			continue;
		}
		jlog_release(&log);
		free(rerr);
		free(ref);
		break;
	}
	json_decref(data);
	if (seq < 0 && r->lock != NULL && store_fences(r->store)) {
		char *why = NULL;

		if (store_lock_check(r->lock, &why) != 0) {
			r->lock_lost = true;
			/* why says what was lost: the run lock, or the state
			 * database (the record may then have committed or not:
			 * whoever carries on reads which) */
			run_error(r, "%s; %s may not have been written, and this zdm stops here: it "
			    "appends nothing more and starts no other step (zdm status %s)", why, event,
			    r->run_id);
			free(why);
			free(err);
			json_decref(kept);
			return -1;
		}
		free(why);
	}
	if (seq < 0) {
		run_error(r, "journal %s: %s", store_writer_ref(r->w), err);
		free(err);
		json_decref(kept);
		return -1;
	}
	r->last_seq = seq;
	ev.record.w = r->w;
	ev.record.event = event;
	ev.record.step = step;
	ev.record.attempt = attempt;
	ev.record.data = kept;
	run_emit(r, &ev);
	json_decref(kept);
	return 0;
}

/* ---- waiting for a decision from elsewhere (--wait-for-approval) ---------- */

/*
 * The run waits, holding its lock, for `zdm approve` (from any machine
 * sharing the state) to append approval.granted or approval.denied for the
 * step.  approval.waiting says so in the journal first: zdm approve appends
 * to a run whose lock a live zdm holds only while it says that.  Both append
 * to one chain (store.h): whichever writes the next record first wins, and
 * the other's append fails with nothing written.  So the run never takes an
 * approve's append for a failure: it reads the run again, and goes on after
 * the decision with a new writer (adopt), or ends the wait with its own
 * approval.wait_ended, after which zdm approve no longer appends.
 */

/* the UTC time MS from now, as the journal writes times */
static void
iso_in(int64_t ms, char *out, size_t n)
{
	struct timespec ts;
	struct tm tm;
	char buf[24];
	int64_t t;
	time_t sec;

	clock_gettime(CLOCK_REALTIME, &ts);
	t = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + ms;
	sec = (time_t)(t / 1000);
	gmtime_r(&sec, &tm);
	strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, n, "%.19s.%03dZ", buf, (int)(t % 1000));
}

/* the first decision on STEP among LOG's records after seq AFTER, or NULL */
static const json_t *
decision_in(const struct jlog *log, const char *step, long after)
{
	for (size_t k = 0; k < log->n; k++) {
		const json_t *rec = log->recs[k];
		const char *sid = json_string_value(json_object_get(rec, "step"));
		enum ev e = ev_parse(json_string_value(json_object_get(rec, "event")));

		if (rec_seq(rec) > after && sid != NULL && strcmp(sid, step) == 0 &&
		    (e == EV_APPROVAL_GRANTED || e == EV_APPROVAL_DENIED))
			return rec;
	}
	return NULL;
}

int
run_adopt(struct run *r, const char *ref, const struct jlog *log)
{
	char *err = NULL;
	struct store_writer *w = store_open_writer(r->store, ref, r->run_id, log, &err);
	long last = r->last_seq;

	if (w == NULL) {
		run_error(r, "journal %s: %s", ref, err);
		free(err);
		return -1;
	}
	store_close_writer(r->w);
	r->w = w;
	store_set_echo(w, run_echo_record, r);
	for (size_t k = 0; k < log->n; k++) {
		char *line;

		if (rec_seq(log->recs[k]) <= last)
			continue;
		line = json_dumps(log->recs[k], JSON_COMPACT | JSON_SORT_KEYS);
		if (line != NULL)
			run_echo_record(line, r);
		free(line);
		r->last_seq = rec_seq(log->recs[k]);
	}
	control_scan(r, log, last);
	return 0;
}

/* the run lock is gone while waiting: nothing more from this zdm (exit 4) */
static int
wait_lock_lost(struct run *r, const char *step, char *why)
{
	r->lock_lost = true;
	run_error(r, "lost the run lock: %s; this zdm stops waiting for approval of step '%s' "
	    "here: it appends nothing more and starts no other step (zdm status %s)", why, step,
	    r->run_id);
	free(why);
	return -2;
}

/* a decision REC read while waiting: the caller's copy, kept as a note */
static json_t *
take_decision(struct run *r, struct zdm_ctx *ctx, const json_t *rec)
{
	const char *event = json_string_value(json_object_get(rec, "event"));
	json_t *data = json_object_get(rec, "data");
	struct rb_step *s = runbook_step(r->rb, ctx->step_id);

	if (s != NULL)
		note_keep(&r->ss[s - r->rb->steps], event,
		    (int)json_integer_value(json_object_get(rec, "attempt")), data);
	return json_pack("{s:s,s:O}", "event", event, "data", data);
}

/*
 * End the wait without a decision: approval.wait_ended (WHY), unless a
 * decision won the race for the next record (then 1 and *decision, as
 * host_await).  0 ended, -2 the run must stop (said).
 */
static int
end_wait(struct run *r, struct zdm_ctx *ctx, const char *ref, long from, int64_t waited,
    const char *why, json_t **decision)
{
	for (int tries = 0; tries < 3; tries++) {
		char *err = NULL, *lerr = NULL;
		json_t *d = json_pack("{s:I,s:s}", "waited_ms", (json_int_t)waited, "reason", why);
		json_t *kept = json_incref(d);
		struct run_event ev = { .kind = OBS_RECORD };
		struct jlog log;
		const json_t *rec;
		long seq;

		if (r->lock_lost) {
			json_decref(d);
			json_decref(kept);
			return -2;
		}
		seq = store_append(r->w, ev_name(EV_APPROVAL_WAIT_ENDED), ctx->step_id, ctx->attempt, d, &err);
		if (seq >= 0) {
			struct rb_step *s = runbook_step(r->rb, ctx->step_id);

			r->last_seq = seq;
			if (s != NULL)
				note_keep(&r->ss[s - r->rb->steps], ev_name(EV_APPROVAL_WAIT_ENDED),
				    ctx->attempt, kept);
			ev.record.w = r->w;
			ev.record.event = ev_name(EV_APPROVAL_WAIT_ENDED);
			ev.record.step = ctx->step_id;
			ev.record.attempt = ctx->attempt;
			ev.record.data = kept;
			run_emit(r, &ev);
			json_decref(kept);
			return 0;
		}
		json_decref(kept);
		/* another writer's record first?  (zdm approve, the decision) */
		if (store_read(r->store, ref, &log, &lerr) == 0 && log.n > 0 &&
		    rec_seq(log.recs[log.n - 1]) > r->last_seq) {
			free(err);
			rec = decision_in(&log, ctx->step_id, from);
			if (run_adopt(r, ref, &log) != 0) {
				jlog_release(&log);
				return -2;
			}
			if (rec != NULL) {
				*decision = take_decision(r, ctx, rec);
				jlog_release(&log);
				return 1;
			}
			jlog_release(&log);
			continue;	/* something else: append after it */
		}
		jlog_release(&log);
		free(lerr);
		lerr = NULL;
		if (r->lock != NULL && store_lock_check(r->lock, &lerr) != 0) {
			free(err);
			return wait_lock_lost(r, ctx->step_id, lerr);
		}
		free(lerr);
		run_error(r, "journal %s: %s", ref, err);
		free(err);
		return -2;
	}
	run_error(r, "journal %s: other writers keep appending to run %s; this zdm stops", ref, r->run_id);
	return -2;
}

/* ctx->await: see zdm/step.h */
static int
host_await(struct zdm_ctx *ctx, int64_t ms, json_t **decision)
{
	struct run *r = ctx->host;
	struct run_event ev = { .kind = OBS_WAITING };
	struct rb_step *s;
	char until[32], *ref, *err = NULL;
	int64_t t0 = zdm_now_ms(), end = t0 + ms, next_check = 0, next_read = 0, next_say = 0;
	long from;
	bool look = true;
	int rc;
	json_t *d;

	*decision = NULL;
	if (r == NULL || r->w == NULL || ms <= 0)
		return 0;
	ref = xstrdup(store_writer_ref(r->w));
	iso_in(ms, until, sizeof until);
	d = json_pack("{s:I,s:s}", "wait_ms", (json_int_t)ms, "until", until);
	s = runbook_step(r->rb, ctx->step_id);
	if (s != NULL)
		note_keep(&r->ss[s - r->rb->steps], ev_name(EV_APPROVAL_WAITING), ctx->attempt, d);
	if (jrec(r, ev_name(EV_APPROVAL_WAITING), ctx->step_id, ctx->attempt, d) != 0) {
		free(ref);
		return -2;
	}
	from = r->last_seq;
	if (store_watch(r->store, ref, true, &err) != 0) {
		/* no notifications: it reads the run every few seconds all the same */
		run_error(r, "warning: %s", err);
		free(err);
		err = NULL;
	}
	ev.wait.step = ctx->step_id;
	ev.wait.wait_ms = ms;
	ev.wait.first = true;
	for (;;) {
		int64_t now = zdm_now_ms(), until_next;
		int w;

		if (zdm_interrupted) {
			rc = end_wait(r, ctx, ref, from, now - t0, "interrupted", decision);
			if (rc == 0)
				rc = -1;
			break;
		}
		if (now >= next_check) {
			/* as before each step: never wait on without the lock */
			next_check = now + 2000;
			if (r->lock != NULL && store_lock_check(r->lock, &err) != 0) {
				rc = wait_lock_lost(r, ctx->step_id, err);
				break;
			}
		}
		if (look || now >= next_read) {
			/* a notification only says "look": the journal says what */
			struct jlog log;
			const json_t *rec;

			look = false;
			next_read = now + 5000;
			memset(&log, 0, sizeof log);
			if (store_read(r->store, ref, &log, &err) == 0 &&
			    (rec = decision_in(&log, ctx->step_id, from)) != NULL) {
				rc = run_adopt(r, ref, &log) == 0 ? 1 : -2;
				if (rc == 1)
					*decision = take_decision(r, ctx, rec);
				jlog_release(&log);
				break;
			}
			/* something else came (zdm abort, pause): take it in now;
			 * an abort ends the wait as a signal would */
			if (err == NULL && log.n > 0 && rec_seq(log.recs[log.n - 1]) > r->last_seq &&
			    run_adopt(r, ref, &log) != 0) {
				jlog_release(&log);
				rc = -2;
				break;
			}
			jlog_release(&log);
			free(err);	/* unreadable now: again at the next look */
			err = NULL;
		}
		if (now >= end) {
			rc = end_wait(r, ctx, ref, from, now - t0, "no decision", decision);
			break;
		}
		if (now >= next_say) {
			ev.wait.left_ms = end - now;
			run_emit(r, &ev);
			ev.wait.first = false;
			next_say = now + 1000;
		}
		until_next = end;
		if (next_say < until_next)
			until_next = next_say;
		if (next_check < until_next)
			until_next = next_check;
		if (next_read < until_next)
			until_next = next_read;
		w = store_wait(r->store, ref, until_next > now ? until_next - now : 1, &err);
		if (w > 0)
			look = true;
		if (w < 0) {
			/* the store cannot be reached: is the lock still ours? */
			free(err);
			err = NULL;
			next_check = 0;
			zdm_sleep_ms(250);
		}
	}
	store_watch(r->store, ref, false, NULL);
	free(ref);
	return rc;
}

/* ctx->promoted: the promote this run took for the step under way */
static const char *
host_promoted(struct zdm_ctx *ctx)
{
	struct run *r = ctx->host;
	struct rb_step *s = runbook_step(r->rb, ctx->step_id);

	if (r->ctl.promote_by == NULL || s == NULL || r->ctl.cur != (long)(s - r->rb->steps))
		return NULL;
	return r->ctl.promote_by;
}

/* ---- one step ------------------------------------------------------------- */

/* the context a step's run(), snapshot() or undo() gets from this run */
void
run_ctx_init(struct run *r, struct zdm_ctx *ctx, const char *step, int attempt)
{
	memset(ctx, 0, sizeof *ctx);
	ctx->run_id = r->run_id;
	ctx->step_id = step;
	ctx->attempt = attempt;
	ctx->dry_run = r->o->mode == MODE_DRY_RUN;
	ctx->state_dir = r->o->state_dir;
	ctx->host = r;
	ctx->note = host_note;
	ctx->progress = host_progress;
	ctx->output = host_output;
	ctx->interactive = r->o->interactive;
	ctx->approved = r->o->approve;
	ctx->napproved = r->o->napprove;
	ctx->promoted = host_promoted;
	if (r->o->mode == MODE_RUN && r->o->wait_approval_ms > 0) {
		ctx->wait_ms = r->o->wait_approval_ms;
		ctx->await = host_await;
	}
}

/*
 * A type's plan() in words, given params with every secret already "***":
 * a plan may quote or encode a value (a shell-quoted argv, a URL-encoded
 * password), after which redacting its text would no longer find the
 * secret.  NULL when the type has no plan().
 */
char *
plan_of(const struct zdm_step_type *t, const json_t *params, json_t *planned)
{
	json_t *shown;
	char *p, *r;

	if (t->plan == NULL && (t->plan_from == NULL || planned == NULL))
		return NULL;
	shown = json_deep_copy(params);
	redact_json(shown);
	p = t->plan_from != NULL && planned != NULL ? t->plan_from(t, shown, planned) :
	    t->plan(t, shown);
	json_decref(shown);
	if (p == NULL)
		return NULL;
	r = redact_str(p);	/* and whatever it read from elsewhere */
	free(p);
	return r;
}

int64_t
backoff_delay(const struct rb_step *s, int attempt)
{
	int64_t d = s->retry_delay_ms;

	if (!s->backoff_fixed)
		for (int i = 1; i < attempt && d < 3600000; i++)
			d *= 2;
	return d;
}

enum run_outcome
run_finish(struct run *r, const char *status, enum run_outcome code, json_t *extra)
{
	json_t *d = extra ? extra : json_object();

	json_object_set_new(d, "status", json_string(status));
	json_object_set_new(d, "exit_code", json_integer(r->o->exit_code(code)));
	run_set_status(r, status);
	json_object_set_new(d, "duration_ms", json_integer(zdm_now_ms() - r->t0));
	if (jrec(r, ev_name(EV_RUN_FINISHED), NULL, 0, d) != 0)
		return RUN_NEEDS_PERSON;
	return code;
}

enum run_outcome
run_interrupted(struct run *r, const char *step)
{
	json_t *d = json_pack("{s:i}", "signal", (int)zdm_interrupted);
	struct run_event ev = { 0 };

	run_set_status(r, "interrupted");
	if (step != NULL)
		json_object_set_new(d, "step", json_string(step));
	jrec(r, ev_name(EV_RUN_INTERRUPTED), NULL, 0, d);
	ev.end.verdict = VD_INTERRUPTED;
	ev.end.signal = (int)zdm_interrupted;
	ev.end.rolling_back = r->rolling_back;
	run_ended(r, &ev);
	return RUN_PAUSED;
}
