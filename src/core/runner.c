/*
 * runner.c - runs the steps of a runbook and writes every move to the
 * journal before and after it happens.
 *
 * Write-ahead rules (docs/design.md, "The journal"):
 *   step.started is on disk before the step touches anything;
 *   step.succeeded, with the step's undo_data, is on disk before the next
 *   step starts.
 * So after a crash the journal alone says which steps finished (skip them,
 * with their recorded outputs), which one was in flight (in doubt: run again
 * only if idempotent, else ask), and what each undo must put back.
 *
 * Rollback undoes the steps that succeeded in reverse order of completion,
 * each from its recorded undo_data (or the runbook's own `undo:` step), and
 * journals every undo the same way, so a rollback cut short by a crash is
 * continued by `zdm rollback` without running any undo twice.
 *
 * It prints nothing: what happens goes to the observers of run_opts
 * (observer.h: the terminal, the JSON stream, annotations, webhooks), and
 * each command returns an outcome that src/cli turns into the exit code.
 */
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/proc.h"
#include "base/redact.h"
#include "base/util.h"
#include "core/actor.h"
#include "core/journal.h"
#include "core/lock.h"
#include "core/runner.h"
#include "zdm/step.h"

enum sstate { S_PENDING, S_STARTED, S_SUCCEEDED, S_FAILED, S_SKIPPED };
enum ustate { U_NONE, U_STARTED, U_SUCCEEDED, U_FAILED, U_SKIPPED };

struct stepstate {
	enum sstate st;
	int attempts;
	json_t *outputs;
	json_t *undo_data;
	long done_seq;		/* seq of step.succeeded (order for rollback) */
	long start_seq;
	bool interrupted;	/* in doubt because a signal stopped it */
	enum ustate ust;
	int undo_attempts;
	json_t *snapshot;	/* recorded before the step's first attempt */
	json_t *notes;		/* the step's own events (zdm_note), all attempts */
};

struct run {
	struct runbook *rb;
	const struct run_opts *o;
	struct journal *j;
	char run_id[64];
	struct stepstate *ss;
	int64_t t0;
	int lockfd;
	bool rolling_back;
	bool finished;
	char *finished_status;
	bool paused;
	char *failed_step;	/* the step whose failure started the rollback */
	char *fail_msg;
	long last_seq;
	int no_undo;		/* steps that changed things and have no undo */
	bool rolling_back_cmd;	/* this process is `zdm rollback` */
	int planned;		/* dry run: steps that only printed their plan */
};

static void emit(const struct run *r, struct run_event *ev);
static int jrec(struct run *r, const char *event, const char *step, int attempt, json_t *data);

/* ctx->progress: the step's live state, for the observers */
static void
host_progress(struct zdm_ctx *ctx, const char *text)
{
	const struct run *r = ctx->host;
	struct run_event ev = { .kind = EV_PROGRESS };

	if (r == NULL)
		return;
	ev.progress.step = ctx->step_id;
	ev.progress.text = text;
	emit(r, &ev);
}

/* ctx->note: a step's own journal event, on disk before it returns */
/* remember a step's own event for ctx->notes of later attempts and undo */
static void
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
	if (s != NULL)
		note_keep(&r->ss[s - r->rb->steps], event, ctx->attempt, data);
	jrec(r, event, ctx->step_id, ctx->attempt, data);
}

/* ---- journal helpers ----------------------------------------------------- */

/* tell every observer, in order */
static void
emit(const struct run *r, struct run_event *ev)
{
	ev->rb = r->rb;
	ev->run_id = r->run_id;
	for (size_t k = 0; k < r->o->nobservers; k++)
		r->o->observers[k].event(r->o->observers[k].self, ev);
}

/* the journal's echo: each line as it reaches disk, whoever appended it
 * (the webhooks journal their failures too) */
static void
echo_record(const char *line, void *arg)
{
	struct run_event ev = { .kind = EV_RECORD_LINE, .line = line };

	emit(arg, &ev);
}

/* how this command leaves the run, for the final "exit" event */
static void
set_status(const struct run *r, const char *status)
{
	if (r->o->status_out != NULL)
		snprintf(r->o->status_out, 32, "%s", status);
}

/* what went wrong that the journal cannot say */
static void
run_error(const struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
run_error(const struct run *r, const char *fmt, ...)
{
	struct run_event ev = { .kind = EV_ERROR };
	va_list ap;
	char *m;

	va_start(ap, fmt);
	m = xvasprintf(fmt, ap);
	va_end(ap);
	ev.text = m;
	emit(r, &ev);
	free(m);
}

/* how a step (or its attempt) ended; ms -1: not timed */
static void
step_ended(const struct run *r, size_t i, enum step_end end, int64_t ms, const char *text)
{
	struct run_event ev = { .kind = EV_STEP_ENDED };

	ev.step.i = i;
	ev.step.end = end;
	ev.step.ms = ms;
	ev.step.text = text;
	emit(r, &ev);
}

static void
undo_ended(const struct run *r, size_t i, enum undo_end end, int64_t ms, const char *text)
{
	struct run_event ev = { .kind = EV_UNDO_ENDED };

	ev.step.i = i;
	ev.step.undo = end;
	ev.step.ms = ms;
	ev.step.text = text;
	emit(r, &ev);
}

/* the verdict; end.verdict and what it needs are set by the caller */
static void
run_ended(const struct run *r, struct run_event *ev)
{
	ev->kind = EV_RUN_ENDED;
	emit(r, ev);
}

/* append or die trying: a run that cannot journal must not act.
 * Returns 0, or -1 when the record is not on disk; r->last_seq is its seq. */
static int
jrec(struct run *r, const char *event, const char *step, int attempt, json_t *data)
{
	char *err = NULL;
	long seq;
	json_t *kept = json_incref(data);	/* for the observers */
	struct run_event ev = { .kind = EV_RECORD };

	if (r->j == NULL) {
		json_decref(data);
		json_decref(kept);
		return 0;
	}
	seq = journal_append(r->j, event, step, attempt, data, &err);
	if (seq < 0) {
		run_error(r, "journal %s: %s", journal_path(r->j), err);
		free(err);
		json_decref(kept);
		return -1;
	}
	r->last_seq = seq;
	ev.record.j = r->j;
	ev.record.event = event;
	ev.record.step = step;
	ev.record.attempt = attempt;
	ev.record.data = kept;
	emit(r, &ev);
	json_decref(kept);
	return 0;
}

static json_t *
actor_json(void)
{
	return audit_actor();	/* audit.c */
}

static void
new_run_id(char *out, size_t n)
{
	time_t t = time(NULL);
	struct tm tm;
	char ts[32];
	unsigned int rnd = 0;
	FILE *f = fopen("/dev/urandom", "rb");

	if (f != NULL) {
		if (fread(&rnd, sizeof rnd, 1, f) != 1)
			rnd = (unsigned int)getpid();
		fclose(f);
	}
	gmtime_r(&t, &tm);
	strftime(ts, sizeof ts, "%Y%m%dT%H%M%SZ", &tm);
	snprintf(out, n, "%s-%04x", ts, rnd & 0xffff);
}

/* ---- one step ------------------------------------------------------------- */

/* the context a step's run(), snapshot() or undo() gets from this run */
static void
ctx_init(struct run *r, struct zdm_ctx *ctx, const char *step, int attempt)
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
	ctx->interactive = r->o->interactive;
	ctx->approved = r->o->approve;
	ctx->napproved = r->o->napprove;
}

/*
 * A type's plan() in words, given params with every secret already "***":
 * a plan may quote or encode a value (a shell-quoted argv, a URL-encoded
 * password), after which redacting its text would no longer find the
 * secret.  NULL when the type has no plan().
 */
static char *
plan_of(const struct zdm_step_type *t, const json_t *params)
{
	json_t *shown;
	char *p, *r;

	if (t->plan == NULL)
		return NULL;
	shown = json_deep_copy(params);
	redact_json(shown);
	p = t->plan(t, shown);
	json_decref(shown);
	if (p == NULL)
		return NULL;
	r = redact_str(p);	/* and whatever it read from elsewhere */
	free(p);
	return r;
}

/* does any string in v mention s (an expression reading steps.*) */
static bool
json_dumps_contains(const json_t *v, const char *s)
{
	char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	bool yes = t != NULL && strstr(t, s) != NULL;

	free(t);
	return yes;
}

static int64_t
backoff_delay(const struct rb_step *s, int attempt)
{
	int64_t d = s->retry_delay_ms;

	if (!s->backoff_fixed)
		for (int i = 1; i < attempt && d < 3600000; i++)
			d *= 2;
	return d;
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
		params = runbook_params(r->rb, s->node, s->type, s->with, s->with_node, &err);
		if (params == NULL && dry && r->planned > 0 && json_dumps_contains(s->with, "steps")) {
			/* in a rehearsal, outputs of steps that only printed their
			 * plan do not exist: show this step's plan as written */
			step_ended(r, i, END_PLANNED, -1, err);
			d = json_pack("{s:s,s:s}", "reason", "dry run: params need outputs of steps that did not run",
			    "error", err);
			free(err);
			ss->st = S_SKIPPED;
			ss->attempts--;
			expr_set_step(r->rb->x, s->id, NULL);
			return jrec(r, "step.skipped", s->id, 0, d) ? OC_JOURNAL : OC_OK;
		}
		if (params == NULL) {
			/* a parameter that does not resolve is a failed attempt that
			 * touched nothing: journal it as such */
			d = json_pack("{s:s,s:b}", "error", err, "will_retry", false);
			step_ended(r, i, END_FAILED, -1, err);
			if (jrec(r, "step.failed", s->id, attempt, d) != 0) {
				free(err);
				return OC_JOURNAL;
			}
			*why = err;
			ss->st = S_FAILED;
			return OC_FAILED;
		}
		if (dry && !s->type->read_only) {
			char *plan = plan_of(s->type, params);

			step_ended(r, i, END_PLANNED, -1, plan ? plan : s->uses);
			r->planned++;
			d = json_pack("{s:s,s:s}", "reason", "dry run: not read-only", "plan",
			    plan ? plan : s->uses);
			free(plan);
			json_decref(params);
			ss->st = S_SKIPPED;
			ss->attempts--;
			expr_set_step(r->rb->x, s->id, NULL);
			return jrec(r, "step.skipped", s->id, 0, d) ? OC_JOURNAL : OC_OK;
		}
		ctx_init(r, &ctx, s->id, attempt);
		memset(&res, 0, sizeof res);
		d = json_pack("{s:s,s:O}", "uses", s->uses, "params", params);
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
				if (jrec(r, "step.failed", s->id, attempt, json_pack("{s:s,s:b}",
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
		if (jrec(r, "step.started", s->id, attempt, d) != 0) {
			json_decref(params);
			return OC_JOURNAL;
		}
		ss->st = S_STARTED;
		ctx.prior = ss->snapshot;
		notes = ss->notes != NULL ? json_copy(ss->notes) : NULL;	/* earlier attempts' */
		ctx.notes = notes;
		t0 = zdm_now_ms();
		ctx.deadline_ms = t0 + s->timeout_ms;
		ev.kind = EV_STEP_RUNNING;
		ev.step.i = i;
		ev.step.attempt = attempt;
		emit(r, &ev);
		rc = s->type->run(s->type, &ctx, params, &res);
		ev.kind = EV_STEP_RETURNED;
		emit(r, &ev);
		json_decref(params);
		json_decref(notes);
		if (rc == 0 && zdm_now_ms() > ctx.deadline_ms + 1000 && !s->type->read_only) {
			/* finished, late: keep the result, it did happen */
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
			if (jrec(r, "step.interrupted", s->id, attempt, d) != 0)
				return OC_JOURNAL;
			return OC_INTERRUPTED;
		}
		if (rc == 0) {
			int64_t ms = zdm_now_ms() - t0;

			d = json_pack("{s:o,s:o,s:I}", "outputs",
			    res.outputs ? json_incref(res.outputs) : json_object(),
			    "undo_data", res.undo_data ? json_incref(res.undo_data) : json_null(),
			    "duration_ms", (json_int_t)ms);
			if (jrec(r, "step.succeeded", s->id, attempt, d) != 0) {
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
			bool retry = k + 1 < max && !res.pause;
			char *msg = redact_str(res.err[0] ? res.err : "failed");

			d = json_pack("{s:s,s:b,s:b,s:I}", "error", msg, "will_retry", retry,
			    "timed_out", res.timed_out, "duration_ms", (json_int_t)ms);
			if (res.pause)
				json_object_set_new(d, "needs_decision", json_true());
			if (res.outputs != NULL)
				json_object_set(d, "outputs", res.outputs);
			if (res.undo_data != NULL)
				json_object_set(d, "undo_data", res.undo_data);
			if (jrec(r, "step.failed", s->id, attempt, d) != 0) {
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

				ev.kind = EV_STEP_ENDED;
				ev.step.i = i;
				ev.step.attempt = attempt;
				ev.step.end = END_RETRY;
				ev.step.ms = ms;
				ev.step.text = msg;
				ev.step.attempts = max;
				ev.step.next_ms = delay;
				emit(r, &ev);
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

/* ---- rollback ------------------------------------------------------------- */

struct undo_item {
	size_t i;
	long seq;
};

static int
by_seq_desc(const void *a, const void *b)
{
	const struct undo_item *x = a, *y = b;

	return x->seq < y->seq ? 1 : x->seq > y->seq ? -1 : 0;
}

/* RUN_OK when every undo is done */
static enum run_outcome
rollback(struct run *r)
{
	struct undo_item *items = xcalloc(r->rb->nsteps, sizeof *items);
	size_t n = 0;
	bool incomplete = false, need_person = false;
	enum run_outcome rc = RUN_OK;
	struct run_event ev = { 0 };

	for (size_t i = 0; i < r->rb->nsteps; i++) {
		struct stepstate *ss = &r->ss[i];
		const struct rb_step *rs = &r->rb->steps[i];

		if (ss->ust == U_SUCCEEDED || ss->ust == U_SKIPPED)
			continue;
		/* a failed step is undone only from what its type recorded (undo_data
		 * returned with the failure, or the snapshot from before it acted):
		 * a runbook's own undo: is written for a step that completed */
		if (ss->st == S_SUCCEEDED || ss->st == S_STARTED ||
		    (ss->st == S_FAILED && (ss->undo_data != NULL ||
		    (ss->snapshot != NULL && rs->undo == NULL && rs->type && rs->type->undo)))) {
			items[n].i = i;
			items[n].seq = ss->st == S_STARTED ? ss->start_seq :
			    ss->st == S_FAILED ? LONG_MAX - (long)(r->rb->nsteps - i) : ss->done_seq;
			n++;
		}
	}
	qsort(items, n, sizeof *items, by_seq_desc);
	ev.kind = EV_ROLLBACK_STARTED;
	ev.count = n;
	emit(r, &ev);
	for (size_t k = 0; k < n && rc == RUN_OK; k++) {
		size_t i = items[k].i;
		struct rb_step *s = &r->rb->steps[i];
		struct stepstate *ss = &r->ss[i];
		const struct zdm_step_type *ut = s->undo ? s->undo->type : s->type;
		bool has_undo = s->undo != NULL || (s->type && s->type->undo != NULL);
		int max = s->retries + 1;
		bool done = false;

		if (zdm_interrupted) {
			rc = RUN_PAUSED;
			break;
		}
		if (!has_undo || (s->type && s->type->read_only && s->undo == NULL)) {
			const char *why = s->type && s->type->read_only ?
			    "read-only: nothing to undo" : "no undo: the type has none and the step sets none";

			if (jrec(r, "undo.skipped", s->id, 0, json_pack("{s:s}", "reason", why))) {
				rc = RUN_NEEDS_PERSON;
				break;
			}
			ss->ust = U_SKIPPED;
			if (!(s->type && s->type->read_only)) {
				undo_ended(r, i, UNDO_NONE, -1, NULL);
				r->no_undo++;
			}
			continue;
		}
		/* a step whose type recorded a snapshot before acting can be put
		 * back exactly even if it never recorded its end: restoring the
		 * state from before is right whether or not it took effect */
		const json_t *udata = ss->undo_data ? ss->undo_data :
		    (s->undo == NULL && s->type && s->type->undo ? ss->snapshot : NULL);
		bool exact = ss->st == S_STARTED && udata != NULL;

		if (ss->st == S_STARTED && !exact && r->o->in_doubt != IN_DOUBT_RETRY) {
			bool skip = r->o->in_doubt == IN_DOUBT_SKIP;
			const char *why = skip ? "in doubt, skipped by --in-doubt skip" : ss->interrupted ?
			    "in doubt: a signal stopped it part-way and it recorded no undo_data; "
			    "check it by hand, then zdm rollback --in-doubt retry (run its undo) or skip" :
			    "in doubt: it started but its end was not recorded, so there is no undo_data; "
			    "check it by hand, then zdm rollback --in-doubt retry (run its undo) or skip";

			/* not undone and not decided: undo.failed, so the next
			 * `zdm rollback` asks again instead of calling it done */
			if (jrec(r, skip ? "undo.skipped" : "undo.failed", s->id, 0,
			    json_pack("{s:s,s:b}", skip ? "reason" : "error", why, "in_doubt", true))) {
				rc = RUN_NEEDS_PERSON;
				break;
			}
			ss->ust = skip ? U_SKIPPED : U_FAILED;
			undo_ended(r, i, skip ? UNDO_SKIPPED : UNDO_NOT_DONE, -1, why);
			if (!skip)
				need_person = true;
			continue;
		}
		if (ss->ust == U_STARTED && !(s->idempotent || r->o->in_doubt == IN_DOUBT_RETRY)) {
			if (r->o->in_doubt == IN_DOUBT_SKIP) {
				if (jrec(r, "undo.skipped", s->id, 0, json_pack("{s:s}", "reason",
				    "undo in doubt, skipped by --in-doubt skip"))) {
					rc = RUN_NEEDS_PERSON;
					break;
				}
				ss->ust = U_SKIPPED;
				continue;
			}
			memset(&ev, 0, sizeof ev);
			ev.end.verdict = V_UNDO_IN_DOUBT;
			ev.end.step = s->id;
			ev.end.uses = ut ? ut->name : "?";
			run_ended(r, &ev);
			rc = RUN_IN_DOUBT;
			break;
		}
		for (int a = 0; a < max && !done; a++) {
			struct zdm_ctx ctx;
			struct zdm_result res;
			json_t *params, *notes;
			char *err = NULL;
			int64_t t0 = zdm_now_ms(), tmo;
			int attempt = ++ss->undo_attempts, urc;

			/* the undo sees its own step's outputs */
			params = s->undo ?
			    runbook_params(r->rb, s->undo->node, s->undo->type, s->undo->with,
			    s->undo->with_node, &err) :
			    runbook_params(r->rb, s->node, s->type, s->with, s->with_node, &err);
			if (params == NULL) {
				if (jrec(r, "undo.failed", s->id, attempt, json_pack("{s:s}", "error", err)) != 0)
					rc = RUN_NEEDS_PERSON;
				undo_ended(r, i, UNDO_FAILED, -1, err);
				free(err);
				break;
			}
			if (jrec(r, "undo.started", s->id, attempt, json_pack("{s:s}", "uses",
			    ut->name)) != 0) {
				json_decref(params);
				rc = RUN_NEEDS_PERSON;
				break;
			}
			ss->ust = U_STARTED;
			ctx_init(r, &ctx, s->id, attempt);
			ctx.undoing = true;
			memset(&res, 0, sizeof res);
			tmo = s->undo && s->undo->timeout_ms ? s->undo->timeout_ms : s->timeout_ms;
			ctx.deadline_ms = t0 + tmo;
			notes = ss->notes != NULL ? json_copy(ss->notes) : NULL;
			ctx.notes = notes;
			if (s->undo != NULL)
				urc = ut->run(ut, &ctx, params, &res);
			else
				urc = ut->undo(ut, &ctx, params, udata, &res);
			json_decref(params);
			json_decref(notes);
			if (res.interrupted) {
				zdm_result_release(&res);
				rc = RUN_PAUSED;
				break;
			}
			if (urc == 0) {
				if (jrec(r, "undo.succeeded", s->id, attempt, json_pack("{s:I}",
				    "duration_ms", (json_int_t)(zdm_now_ms() - t0))) != 0) {
					run_error(r, "the undo of step '%s' ran but could not be recorded; "
					    "the journal will show it in doubt", s->id);
					zdm_result_release(&res);
					rc = RUN_NEEDS_PERSON;
					break;
				}
				ss->ust = U_SUCCEEDED;
				undo_ended(r, i, UNDO_DONE, zdm_now_ms() - t0, NULL);
				done = true;
			} else {
				char *msg = redact_str(res.err);

				if (jrec(r, "undo.failed", s->id, attempt, json_pack("{s:s,s:b}",
				    "error", msg, "will_retry", a + 1 < max)) != 0) {
					free(msg);
					zdm_result_release(&res);
					rc = RUN_NEEDS_PERSON;
					break;
				}
				ss->ust = U_FAILED;
				undo_ended(r, i, UNDO_FAILED, zdm_now_ms() - t0, msg);
				if (a + 1 >= max) {
					memset(&ev, 0, sizeof ev);
					ev.kind = EV_ROLLBACK_STOPPED;
					ev.step.i = i;
					ev.step.text = msg;
					emit(r, &ev);
				}
				free(msg);
				if (a + 1 < max && zdm_sleep_ms(backoff_delay(s, a + 1)) != 0) {
					zdm_result_release(&res);
					rc = RUN_PAUSED;
					break;
				}
			}
			zdm_result_release(&res);
		}
		if (rc == RUN_OK && !done) {
			/* stop here: undoing earlier steps on top of a state we
			 * failed to restore can make things worse */
			incomplete = true;
			rc = RUN_NEEDS_PERSON;
		}
	}
	free(items);
	if (rc == RUN_OK && need_person)
		rc = RUN_NEEDS_PERSON;
	(void)incomplete;
	return rc;
}

/* ---- the main loop --------------------------------------------------------- */

static enum run_outcome
finish(struct run *r, const char *status, enum run_outcome code, json_t *extra)
{
	json_t *d = extra ? extra : json_object();

	json_object_set_new(d, "status", json_string(status));
	json_object_set_new(d, "exit_code", json_integer(r->o->exit_code(code)));
	set_status(r, status);
	json_object_set_new(d, "duration_ms", json_integer(zdm_now_ms() - r->t0));
	if (jrec(r, "run.finished", NULL, 0, d) != 0)
		return RUN_NEEDS_PERSON;
	return code;
}

static enum run_outcome
interrupted(struct run *r, const char *step)
{
	json_t *d = json_pack("{s:i}", "signal", (int)zdm_interrupted);
	struct run_event ev = { 0 };

	set_status(r, "interrupted");
	if (step != NULL)
		json_object_set_new(d, "step", json_string(step));
	jrec(r, "run.interrupted", NULL, 0, d);
	ev.end.verdict = V_INTERRUPTED;
	ev.end.signal = (int)zdm_interrupted;
	ev.end.rolling_back = r->rolling_back;
	run_ended(r, &ev);
	return RUN_PAUSED;
}

/* a step failed for good: what the runbook's on_failure says */
static enum run_outcome
on_failure(struct run *r, const char *step, const char *why)
{
	struct run_event ev = { .kind = EV_FAILURE };
	enum run_outcome rc;

	ev.failure.step = step;
	ev.failure.why = why;
	ev.failure.policy = r->o->mode == MODE_DRY_RUN ? FAIL_DRY_RUN :
	    r->rb->on_failure == ON_FAILURE_PAUSE ? FAIL_PAUSE :
	    r->rb->on_failure == ON_FAILURE_ABORT ? FAIL_ABORT : FAIL_ROLLBACK;
	emit(r, &ev);
	memset(&ev, 0, sizeof ev);
	ev.end.step = step;
	ev.end.why = why;
	if (r->o->mode == MODE_DRY_RUN) {
		ev.end.verdict = V_DRY_RUN_FAILED;
		run_ended(r, &ev);
		return finish(r, "failed", RUN_ROLLED_BACK,
		    json_pack("{s:s,s:s}", "failed_step", step, "error", why));
	}
	switch (r->rb->on_failure) {
	case ON_FAILURE_PAUSE:
		set_status(r, "paused");
		jrec(r, "run.paused", step, 0, json_pack("{s:s}", "error", why));
		ev.end.verdict = V_PAUSED;
		run_ended(r, &ev);
		return RUN_PAUSED;
	case ON_FAILURE_ABORT:
		ev.end.verdict = V_ABORTED;
		run_ended(r, &ev);
		return finish(r, "aborted", RUN_NEEDS_PERSON,
		    json_pack("{s:s,s:s}", "failed_step", step, "error", why));
	case ON_FAILURE_ROLLBACK:
		break;
	}
	if (jrec(r, "rollback.started", step, 0, json_pack("{s:s}", "reason", why)) != 0)
		return RUN_NEEDS_PERSON;
	r->rolling_back = true;
	rc = rollback(r);
	if (rc == RUN_PAUSED)
		return interrupted(r, NULL);
	if (rc == RUN_IN_DOUBT) {
		set_status(r, "in_doubt");
		return rc;
	}
	if (rc == RUN_OK) {
		ev.end.verdict = V_ROLLED_BACK;
		ev.end.no_undo = r->no_undo;
		run_ended(r, &ev);
		return finish(r, "rolled_back", RUN_ROLLED_BACK,
		    json_pack("{s:s,s:s}", "failed_step", step, "error", why));
	}
	ev.end.verdict = V_ROLLBACK_INCOMPLETE;
	run_ended(r, &ev);
	return finish(r, "rollback_failed", RUN_NEEDS_PERSON,
	    json_pack("{s:s,s:s}", "failed_step", step, "error", why));
}

static enum run_outcome
execute(struct run *r, size_t from)
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
			return interrupted(r, NULL);
		if (s->if_expr != NULL) {
			bool yes = true;
			char *err = NULL;

			if (expr_truthy(r->rb->x, s->if_expr, &yes, &err) != 0 &&
			    r->o->mode == MODE_DRY_RUN && r->planned > 0 && strstr(s->if_expr, "steps") != NULL) {
				/* it reads outputs of a step that only printed its plan */
				step_ended(r, i, END_PLANNED, -1, err);
				if (jrec(r, "step.skipped", s->id, 0, json_pack("{s:s,s:s}", "reason",
				    "dry run: if: needs outputs of steps that did not run", "error", err)) != 0) {
					free(err);
					return RUN_NEEDS_PERSON;
				}
				free(err);
				ss->st = S_SKIPPED;
				expr_set_step(r->rb->x, s->id, NULL);
				continue;
			}
			if (err != NULL) {
				why = xasprintf("%s:%d:%d: if: %s", r->rb->path, s->if_node->line,
				    s->if_node->col, err);
				free(err);
				step_ended(r, i, END_FAILED, -1, why);
				jrec(r, "step.failed", s->id, 0, json_pack("{s:s}", "error", why));
				rc = on_failure(r, s->id, why);
				free(why);
				return rc;
			}
			if (!yes) {
				if (jrec(r, "step.skipped", s->id, 0, json_pack("{s:s,s:s}",
				    "reason", "if: condition is false", "if", s->if_expr)) != 0)
					return RUN_NEEDS_PERSON;
				ss->st = S_SKIPPED;
				expr_set_step(r->rb->x, s->id, NULL);
				step_ended(r, i, END_SKIPPED, -1, "if: condition is false");
				continue;
			}
		}
		oc = run_step(r, i, &why);
		if (oc == OC_JOURNAL)
			return RUN_NEEDS_PERSON;
		if (oc == OC_INTERRUPTED)
			return interrupted(r, s->id);
		if (oc == OC_FAILED) {
			rc = on_failure(r, s->id, why);
			free(why);
			return rc;
		}
		if (oc == OC_PAUSE && r->o->mode == MODE_DRY_RUN) {
			/* nothing to resume in a rehearsal: report it as found */
			rc = on_failure(r, s->id, why);
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
			jrec(r, "run.paused", s->id, 0, pd);
			set_status(r, "paused");
			ev.end.verdict = appr ? V_WAITING_APPROVAL : V_UNDECIDED;
			ev.end.step = s->id;
			ev.end.why = why;
			run_ended(r, &ev);
			free(why);
			return RUN_PAUSED;
		}
		if (r->o->fail_at != NULL && strcmp(r->o->fail_at, s->id) == 0) {
			char *msg = xasprintf("drill: forced failure after step '%s' (--fail-at)", s->id);
			struct run_event ev = { .kind = EV_NOTE };

			jrec(r, "drill.failure", s->id, 0, json_pack("{s:s}", "error", msg));
			ev.text = msg;
			emit(r, &ev);
			rc = on_failure(r, s->id, msg);
			free(msg);
			return rc;
		}
	}
	{
		struct run_event ev = { 0 };

		ev.end.verdict = r->o->mode == MODE_DRY_RUN ? V_DRY_RUN_OK : V_SUCCEEDED;
		ev.end.ms = zdm_now_ms() - r->t0;
		run_ended(r, &ev);
	}
	return finish(r, "succeeded", RUN_OK, NULL);
}

static void
run_init(struct run *r, struct runbook *rb, const struct run_opts *o)
{
	memset(r, 0, sizeof *r);
	r->rb = rb;
	r->o = o;
	r->lockfd = -1;
	r->ss = xcalloc(rb->nsteps, sizeof *r->ss);
	r->t0 = zdm_now_ms();
}

static void
run_release(struct run *r)
{
	struct run_event ev = { .kind = EV_CLOSED };

	ev.closed.j = r->j;
	ev.closed.journal = r->j != NULL ? journal_path(r->j) : NULL;
	emit(r, &ev);
	for (size_t i = 0; i < r->rb->nsteps; i++) {
		json_decref(r->ss[i].outputs);
		json_decref(r->ss[i].undo_data);
		json_decref(r->ss[i].snapshot);
		json_decref(r->ss[i].notes);
	}
	free(r->ss);
	free(r->finished_status);
	free(r->failed_step);
	free(r->fail_msg);
	if (r->j != NULL)
		journal_close(r->j);
	if (r->lockfd >= 0)
		lock_release(r->lockfd);
}

static void
set_run_table(struct run *r)
{
	json_t *run = json_pack("{s:s,s:b}", "id", r->run_id, "dry_run",
	    r->o->mode != MODE_RUN);

	expr_set(r->rb->x, "run", run);
	json_decref(run);
}

/* zdm plan: each step's plan and undo, in words; nothing runs */
static enum run_outcome
plan(struct run *r)
{
	struct run_event ev = { .kind = EV_RUN_STARTED };

	ev.start.how = HOW_PLAN;
	emit(r, &ev);
	expr_set_static(r->rb->x, true);
	for (size_t i = 0; i < r->rb->nsteps; i++) {
		struct rb_step *s = &r->rb->steps[i];
		char *err = NULL, *p = NULL, *uerr = NULL, *up = NULL;
		json_t *params = runbook_params(r->rb, s->node, s->type, s->with, s->with_node, &err);
		json_t *uparams = NULL;

		memset(&ev, 0, sizeof ev);
		ev.kind = EV_PLAN_STEP;
		ev.plan.i = i;
		if (params != NULL)
			p = plan_of(s->type, params);
		ev.plan.doing = p ? p : params ? s->uses : err;
		if (s->undo != NULL) {
			uparams = runbook_params(r->rb, s->undo->node, s->undo->type, s->undo->with,
			    s->undo->with_node, &uerr);
			if (uparams != NULL)
				up = plan_of(s->undo->type, uparams);
			ev.plan.undo = PLAN_UNDO_STEP;
			ev.plan.undoing = up ? up : uparams ? s->undo->uses : uerr;
		} else {
			ev.plan.undo = s->type->undo != NULL ? PLAN_UNDO_TYPE :
			    !s->type->read_only ? PLAN_UNDO_NONE : PLAN_UNDO_READ_ONLY;
		}
		emit(r, &ev);
		free(p);
		free(err);
		json_decref(params);
		free(up);
		free(uerr);
		json_decref(uparams);
	}
	expr_set_static(r->rb->x, false);
	return RUN_OK;
}

enum run_outcome
runner_run(struct runbook *rb, const struct run_opts *o)
{
	struct run r;
	struct run_event ev = { 0 };
	char *err = NULL, *path, *rel;
	json_t *d, *secrets;
	enum run_outcome rc;

	run_init(&r, rb, o);
	new_run_id(r.run_id, sizeof r.run_id);
	if (o->run_id_out != NULL && o->mode != MODE_PLAN)
		snprintf(o->run_id_out, 64, "%s", r.run_id);
	set_run_table(&r);
	if (o->mode == MODE_PLAN) {
		rc = plan(&r);
		run_release(&r);
		return rc;
	}
	if (runbook_resolve_secrets(rb, &err) != 0) {
		run_error(&r, "%s", err);
		free(err);
		run_release(&r);
		return RUN_USAGE;
	}
	if (o->mode == MODE_RUN &&
	    lock_acquire(o->state_dir, rb->name, r.run_id, &r.lockfd, &err) != 0) {
		run_error(&r, "%s", err);
		free(err);
		run_release(&r);
		return RUN_USAGE;
	}
	rel = xasprintf("runs/%s.jsonl", r.run_id);
	path = path_join(o->state_dir, rel);
	free(rel);
	r.j = journal_create(path, r.run_id, &err);
	free(path);
	if (r.j == NULL) {
		run_error(&r, "%s", err);
		free(err);
		run_release(&r);
		return RUN_USAGE;
	}
	journal_set_echo(r.j, echo_record, &r);
	secrets = json_array();
	for (size_t i = 0; i < rb->nsecrets; i++)
		json_array_append_new(secrets, json_string(rb->secrets[i].name));
	d = json_pack("{s:s,s:s,s:s,s:O,s:o,s:o,s:s,s:b,s:i}", "runbook", rb->abspath,
	    "name", rb->name, "sha256", rb->sha256, "vars", rb->vars, "secrets", secrets,
	    "actor", actor_json(), "zdm_version", ZDM_VERSION, "dry_run", o->mode == MODE_DRY_RUN,
	    "steps", (int)rb->nsteps);
	if (d == NULL) {
		run_error(&r, "cannot record run.started (is the runbook path %s valid UTF-8?); nothing ran",
		    rb->abspath);
		run_release(&r);
		return RUN_USAGE;
	}
	if (o->fail_at != NULL)
		json_object_set_new(d, "fail_at", json_string(o->fail_at));
	audit_provenance(d, rb->abspath);	/* host, git commit */
	if (jrec(&r, "run.started", NULL, 0, d) != 0) {
		run_release(&r);
		return RUN_NEEDS_PERSON;
	}
	ev.kind = EV_RUN_STARTED;
	ev.start.how = o->mode == MODE_DRY_RUN ? HOW_DRY_RUN : HOW_RUN;
	ev.start.journal = journal_path(r.j);
	emit(&r, &ev);
	rc = execute(&r, 0);
	run_release(&r);
	return rc;
}

/* ---- resume and rollback from the journal ---------------------------------- */

static int
load_state(struct run *r, struct jlog *log)
{
	json_t *first = log->n ? log->recs[0] : NULL;
	const char *id;

	if (first == NULL) {
		fprintf(stderr, "zdm: the journal is empty: the run never started\n");
		return -1;
	}
	id = json_string_value(json_object_get(first, "run"));
	snprintf(r->run_id, sizeof r->run_id, "%s", id ? id : "?");
	if (r->o->run_id_out != NULL)
		snprintf(r->o->run_id_out, 64, "%s", r->run_id);
	for (size_t k = 0; k < log->n; k++) {
		json_t *rec = log->recs[k], *data = json_object_get(rec, "data");
		const char *ev = json_string_value(json_object_get(rec, "event"));
		const char *sid = json_string_value(json_object_get(rec, "step"));
		long seq = (long)json_integer_value(json_object_get(rec, "seq"));
		struct rb_step *s = sid ? runbook_step(r->rb, sid) : NULL;
		struct stepstate *ss = s ? &r->ss[s - r->rb->steps] : NULL;
		int attempt = (int)json_integer_value(json_object_get(rec, "attempt"));

		if (ev == NULL)
			continue;
		if ((strncmp(ev, "step.", 5) == 0 || strncmp(ev, "undo.", 5) == 0) && sid == NULL) {
			fprintf(stderr, "zdm: journal line %zu: %s without a step\n", k + 1, ev);
			return -1;
		}
		if (sid != NULL && s == NULL && strncmp(ev, "step.", 5) == 0) {
			fprintf(stderr, "zdm: the journal names step '%s', which the runbook no longer has\n", sid);
			return -1;
		}
		if (ss != NULL && strncmp(ev, "step.", 5) != 0 && strncmp(ev, "undo.", 5) != 0 &&
		    strncmp(ev, "run.", 4) != 0 && strcmp(ev, "rollback.started") != 0 &&
		    strcmp(ev, "drill.failure") != 0) {
			/* the step's own event (zdm_note): ctx->notes of its next attempt */
			note_keep(ss, ev, attempt, data);
			continue;
		}
		if (strcmp(ev, "step.started") == 0) {
			json_t *snap = json_object_get(data, "snapshot");

			ss->st = S_STARTED;
			ss->attempts = attempt;
			ss->start_seq = seq;
			ss->interrupted = false;
			if (ss->snapshot == NULL && snap != NULL && !json_is_null(snap))
				ss->snapshot = json_incref(snap);
		} else if (strcmp(ev, "step.succeeded") == 0) {
			json_t *u = json_object_get(data, "undo_data");

			ss->st = S_SUCCEEDED;
			ss->done_seq = seq;
			json_decref(ss->outputs);
			json_decref(ss->undo_data);
			ss->outputs = json_incref(json_object_get(data, "outputs"));
			ss->undo_data = u && !json_is_null(u) ? json_incref(u) : NULL;
		} else if (strcmp(ev, "step.failed") == 0) {
			json_t *u = json_object_get(data, "undo_data");

			ss->st = S_FAILED;
			if (u != NULL && !json_is_null(u)) {
				json_decref(ss->undo_data);
				ss->undo_data = json_incref(u);
			}
			free(r->failed_step);
			r->failed_step = xstrdup(sid);
			free(r->fail_msg);
			r->fail_msg = xstrdup(json_string_value(json_object_get(data, "error")) ?
			    json_string_value(json_object_get(data, "error")) : "failed");
		} else if (strcmp(ev, "step.interrupted") == 0) {
			/* still started-not-ended: in doubt */
			ss->interrupted = true;
			if (json_object_get(data, "undo_data") != NULL &&
			    !json_is_null(json_object_get(data, "undo_data"))) {
				json_decref(ss->undo_data);
				ss->undo_data = json_incref(json_object_get(data, "undo_data"));
			}
		} else if (strcmp(ev, "step.skipped") == 0) {
			ss->st = S_SKIPPED;
		} else if (strcmp(ev, "undo.started") == 0) {
			ss->ust = U_STARTED;
			ss->undo_attempts = attempt;
		} else if (strcmp(ev, "undo.succeeded") == 0) {
			ss->ust = U_SUCCEEDED;
		} else if (strcmp(ev, "undo.failed") == 0) {
			ss->ust = U_FAILED;
		} else if (strcmp(ev, "undo.skipped") == 0) {
			ss->ust = U_SKIPPED;
		} else if (strcmp(ev, "rollback.started") == 0) {
			r->rolling_back = true;
			free(r->failed_step);
			r->failed_step = sid ? xstrdup(sid) : NULL;
			free(r->fail_msg);
			r->fail_msg = xstrdup(json_string_value(json_object_get(data, "reason")) ?
			    json_string_value(json_object_get(data, "reason")) : "rollback");
		} else if (strcmp(ev, "run.paused") == 0) {
			r->paused = true;
		} else if (strcmp(ev, "run.resumed") == 0) {
			r->paused = false;
		} else if (strcmp(ev, "run.finished") == 0) {
			r->finished = true;
			free(r->finished_status);
			r->finished_status = xstrdup(json_string_value(json_object_get(data, "status")) ?
			    json_string_value(json_object_get(data, "status")) : "?");
		}
	}
	return 0;
}

const char *
run_state_word(const struct jlog *log)
{
	const char *st = "running or crashed";

	for (size_t k = 0; k < log->n; k++) {
		json_t *rec = log->recs[k];
		const char *ev = json_string_value(json_object_get(rec, "event"));

		if (ev == NULL)
			continue;
		if (strcmp(ev, "run.finished") == 0)
			st = json_string_value(json_object_get(json_object_get(rec, "data"), "status"));
		else if (strcmp(ev, "run.paused") == 0)
			st = "paused";
		else if (strcmp(ev, "run.interrupted") == 0)
			st = "interrupted";
		else if (strcmp(ev, "rollback.started") == 0)
			st = "rolling back (or crashed during the rollback)";
		else if (strcmp(ev, "run.resumed") == 0 || strcmp(ev, "run.started") == 0)
			st = "running or crashed";
	}
	return st ? st : "?";
}

/* common part of resume and rollback: lock, journal re-open, run.resumed */
static int
reopen(struct run *r, const char *journal, struct jlog *log, const char *event)
{
	char *err = NULL;
	json_t *first = log->recs[0], *fd = json_object_get(first, "data");
	const char *sha = json_string_value(json_object_get(fd, "sha256"));
	json_t *d;

	if (json_is_true(json_object_get(fd, "dry_run"))) {
		fprintf(stderr, "zdm: run %s was a dry run; there is nothing to %s\n", r->run_id,
		    r->rolling_back_cmd ? "roll back" : "resume");
		return RUN_USAGE;
	}
	if (sha != NULL && strcmp(sha, r->rb->sha256) != 0 && !r->o->allow_changed) {
		fprintf(stderr, "zdm: %s changed since run %s started (sha256 %.12s… then, %.12s… now);\n"
		    "  refusing to continue with a different runbook. If the change is intended: --allow-changed\n",
		    r->rb->path, r->run_id, sha, r->rb->sha256);
		return RUN_USAGE;
	}
	if (runbook_resolve_secrets(r->rb, &err) != 0) {
		fprintf(stderr, "zdm: %s\n", err);
		free(err);
		return RUN_USAGE;
	}
	{
		/* vars the journal holds redacted are taken from the runbook or
		 * --var; they must redact to what the run recorded */
		const char *k;
		json_t *v;

		json_object_foreach(json_object_get(fd, "vars"), k, v) {
			json_t *now = json_object_get(r->rb->vars, k), *red;
			bool same;

			if (now == NULL)
				continue;
			{
				char *t = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
				bool redacted = t != NULL && strstr(t, "***") != NULL;

				free(t);
				if (!redacted)
					continue;	/* recorded in clear: --var may change it */
			}
			red = json_deep_copy(now);
			redact_json(red);
			same = json_equal(red, v);
			json_decref(red);
			if (!same) {
				fprintf(stderr, "zdm: var '%s' is not what run %s used (the journal holds it redacted, "
				    "so zdm cannot take it from there); pass the run's value with --var %s=...\n",
				    k, r->run_id, k);
				return RUN_USAGE;
			}
		}
	}
	if (r->lockfd < 0 &&
	    lock_acquire(r->o->state_dir, r->rb->name, r->run_id, &r->lockfd, &err) != 0) {
		fprintf(stderr, "zdm: %s\n", err);
		free(err);
		return RUN_USAGE;
	}
	if (log->torn)
		fprintf(stderr, "zdm: warning: %s: the last line was torn (a crash mid-write); it is ignored and cut off\n",
		    journal);
	r->j = journal_reopen(journal, r->run_id, log, &err);
	if (r->j == NULL) {
		fprintf(stderr, "zdm: %s\n", err);
		free(err);
		return RUN_USAGE;
	}
	journal_set_echo(r->j, echo_record, r);
	d = json_pack("{s:s,s:o,s:b,s:s,s:s}", "command",
	    strcmp(event, "run.resumed") == 0 && r->rolling_back_cmd ? "rollback" : "resume",
	    "actor", actor_json(), "allow_changed",
	    r->o->allow_changed, "sha256", r->rb->sha256, "in_doubt",
	    r->o->in_doubt == IN_DOUBT_RETRY ? "retry" : r->o->in_doubt == IN_DOUBT_SKIP ? "skip" : "ask");
	if (jrec(r, event, NULL, 0, d) != 0)
		return RUN_NEEDS_PERSON;
	return RUN_OK;
}

/* a run object standing where the journal says; -1 (released) if unusable */
static int
run_from_journal(struct run *r, struct runbook *rb, struct jlog *log,
    const struct run_opts *o)
{
	run_init(r, rb, o);
	if (load_state(r, log) != 0) {
		run_release(r);
		return -1;
	}
	set_run_table(r);
	return 0;
}

enum run_outcome
runner_resume(struct runbook *rb, const char *journal, struct jlog *log,
    const struct run_opts *o)
{
	struct run r;
	struct run_event ev = { 0 };
	size_t from = rb->nsteps;
	enum run_outcome rc;

	if (run_from_journal(&r, rb, log, o) != 0)
		return RUN_USAGE;
	if (r.finished) {
		run_error(&r, "run %s already finished (%s); nothing to resume", r.run_id,
		    r.finished_status);
		run_release(&r);
		return RUN_USAGE;
	}
	if (r.rolling_back) {
		run_error(&r, "run %s was rolling back when it stopped; continue the rollback with: zdm rollback %s",
		    r.run_id, r.run_id);
		run_release(&r);
		return RUN_USAGE;
	}
	{
		char *err = NULL;

		/* a run still going is not in doubt: its holder says so */
		if (lock_acquire(o->state_dir, rb->name, r.run_id, &r.lockfd, &err) != 0) {
			run_error(&r, "%s", err);
			free(err);
			run_release(&r);
			return RUN_USAGE;
		}
	}
	/* the first step not done, and what the steps before it produced */
	for (size_t i = 0; i < rb->nsteps; i++) {
		struct stepstate *ss = &r.ss[i];

		if (ss->st == S_SUCCEEDED) {
			expr_set_step(rb->x, rb->steps[i].id, ss->outputs);
		} else if (ss->st == S_SKIPPED) {
			expr_set_step(rb->x, rb->steps[i].id, NULL);
		} else if (from == rb->nsteps) {
			from = i;
		}
	}
	if (from < rb->nsteps && r.ss[from].st == S_STARTED) {
		struct rb_step *s = &rb->steps[from];

		if (!s->idempotent && o->in_doubt == IN_DOUBT_ASK) {
			set_status(&r, "in_doubt");
			ev.end.verdict = V_STEP_IN_DOUBT;
			ev.end.step = s->id;
			ev.end.uses = s->uses;
			ev.end.interrupted = r.ss[from].interrupted;
			ev.end.attempt = r.ss[from].attempts;
			run_ended(&r, &ev);
			run_release(&r);
			return RUN_IN_DOUBT;
		}
	}
	rc = reopen(&r, journal, log, "run.resumed");
	if (rc != RUN_OK) {
		run_release(&r);
		return rc;
	}
	ev.kind = EV_RUN_STARTED;
	ev.start.how = HOW_RESUME;
	ev.start.journal = journal;
	ev.start.from = from;
	emit(&r, &ev);
	if (from < rb->nsteps && r.ss[from].st == S_STARTED) {
		struct rb_step *s = &rb->steps[from];

		if (o->in_doubt == IN_DOUBT_SKIP && !s->idempotent) {
			/* the person says it took effect; with no undo_data recorded */
			if (jrec(&r, "step.skipped", s->id, 0, json_pack("{s:s}", "reason",
			    "in doubt; taken as done by --in-doubt skip")) != 0) {
				run_release(&r);
				return RUN_NEEDS_PERSON;
			}
			r.ss[from].st = S_SKIPPED;
			expr_set_step(rb->x, s->id, NULL);
			step_ended(&r, from, END_SKIPPED, -1, "in doubt: taken as done (--in-doubt skip)");
		} else {
			memset(&ev, 0, sizeof ev);
			ev.kind = EV_STEP_RERUN;
			ev.step.i = from;
			ev.step.idempotent = s->idempotent;
			emit(&r, &ev);
		}
	}
	rc = execute(&r, from);
	run_release(&r);
	return rc;
}

enum run_outcome
runner_rollback(struct runbook *rb, const char *journal, struct jlog *log,
    const struct run_opts *o)
{
	struct run r;
	struct run_event ev = { 0 };
	enum run_outcome rc;

	if (run_from_journal(&r, rb, log, o) != 0)
		return RUN_USAGE;
	if (r.finished && strcmp(r.finished_status, "rolled_back") == 0) {
		run_error(&r, "run %s is already rolled back; nothing to undo", r.run_id);
		run_release(&r);
		return RUN_USAGE;
	}
	for (size_t i = 0; i < rb->nsteps; i++)
		if (r.ss[i].st == S_SUCCEEDED)
			expr_set_step(rb->x, rb->steps[i].id, r.ss[i].outputs);
	r.rolling_back_cmd = true;
	rc = reopen(&r, journal, log, "run.resumed");
	if (rc != RUN_OK) {
		run_release(&r);
		return rc;
	}
	if (!r.rolling_back &&
	    jrec(&r, "rollback.started", NULL, 0, json_pack("{s:s}", "reason", "zdm rollback")) != 0) {
		run_release(&r);
		return RUN_NEEDS_PERSON;
	}
	r.rolling_back = true;
	ev.kind = EV_RUN_STARTED;
	ev.start.how = HOW_ROLLBACK;
	ev.start.journal = journal;
	emit(&r, &ev);
	rc = rollback(&r);
	memset(&ev, 0, sizeof ev);
	if (rc == RUN_PAUSED) {
		rc = interrupted(&r, NULL);
	} else if (rc == RUN_OK) {
		ev.end.verdict = V_UNDONE;
		ev.end.no_undo = r.no_undo;
		run_ended(&r, &ev);
		rc = finish(&r, "rolled_back", RUN_OK, r.failed_step ?
		    json_pack("{s:s,s:s}", "failed_step", r.failed_step, "error", r.fail_msg ? r.fail_msg : "") :
		    NULL);
	} else if (rc == RUN_NEEDS_PERSON) {
		ev.end.verdict = V_UNDO_INCOMPLETE;
		run_ended(&r, &ev);
		rc = finish(&r, "rollback_failed", RUN_NEEDS_PERSON, NULL);
	}
	run_release(&r);
	return rc;
}
