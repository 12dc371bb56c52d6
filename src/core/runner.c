/*
 * runner.c - runs the steps of a runbook and writes every move to the
 * journal before and after it happens.
 *
 * Write-ahead rules (DESIGN.md "The journal"):
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
 */
#include <errno.h>
#include <limits.h>
#include <pwd.h>
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
#include "core/runstate.h"
#include "report/ci.h"
#include "report/junit.h"
#include "report/notify.h"
#include "steps/builtin.h"
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
	struct notifier *nf;	/* webhooks (notify.h), from the first record */
	char run_id[64];
	struct stepstate *ss;
	bool tty, color;
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

/* ---- terminal output ----------------------------------------------------- */

static const char *
c(const struct run *r, const char *code)
{
	return r->color ? code : "";
}

static void
say(const struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
say(const struct run *r, const char *fmt, ...)
{
	va_list ap;
	char *m, *red;
	FILE *f = r->o->json ? stderr : stdout;

	va_start(ap, fmt);
	m = xvasprintf(fmt, ap);
	va_end(ap);
	red = redact_str(m);
	fputs(red, f);
	fflush(f);
	free(m);
	free(red);
}

static void
show_step(const struct run *r, size_t i, const char *state, const char *color,
    int64_t ms, const char *detail)
{
	const struct rb_step *s = &r->rb->steps[i];
	char d[32] = "";

	if (ms >= 0)
		fmt_duration(ms, d, sizeof d);
	say(r, "[%zu/%zu] %s%-9s%s %s%s%s%s%s%s%s\n", i + 1, r->rb->nsteps,
	    c(r, color), state, c(r, "\033[0m"), s->id,
	    s->name ? " — " : "", s->name ? s->name : "",
	    d[0] ? "  " : "", d,
	    detail ? "\n        " : "", detail ? detail : "");
}

/* the running step's line on a terminal: spinner and elapsed time */
static struct {
	const struct run *r;
	size_t i;
	int64_t t0, last;
	int frame;
	char text[160];		/* the step's own progress line */
} live;

static void
live_tick(void)
{
	static const char *const spin[] = { "|", "/", "-", "\\" };
	const struct rb_step *s;
	int64_t now = zdm_now_ms();
	char d[32];

	if (live.r == NULL || now - live.last < 200)
		return;
	live.last = now;
	s = &live.r->rb->steps[live.i];
	fmt_duration(now - live.t0, d, sizeof d);
	say(live.r, "\r[%zu/%zu] %s%s running%s %s%s%s  %s%s%s\033[K", live.i + 1, live.r->rb->nsteps,
	    c(live.r, "\033[33m"), spin[live.frame++ % 4], c(live.r, "\033[0m"), s->id,
	    s->name ? " — " : "", s->name ? s->name : "", d, live.text[0] ? "  " : "", live.text);
}

static void
live_start(const struct run *r, size_t i)
{
	if (!r->tty)
		return;
	live.r = r;
	live.i = i;
	live.t0 = live.last = zdm_now_ms();
	live.frame = 0;
	live.text[0] = '\0';
	zdm_tick = live_tick;
}

/* ctx->progress: on a terminal, beside the spinner; else one line each
 * time the text changes, so CI logs show a gate's measurements too */
static void
host_progress(struct zdm_ctx *ctx, const char *text)
{
	const struct run *r = ctx->host;

	if (r == NULL || r->o->json)
		return;
	if (r->tty) {
		snprintf(live.text, sizeof live.text, "%s", text);
		live.last = 0;
		live_tick();
	} else {
		say(r, "        %s: %s\n", ctx->step_id, text);
	}
}

static int jrec(struct run *r, const char *event, const char *step, int attempt, json_t *data);

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

static void
live_stop(void)
{
	if (live.r != NULL)
		say(live.r, "\r\033[K");
	live.r = NULL;
	zdm_tick = NULL;
}

/* ---- journal helpers ----------------------------------------------------- */

/* --output json: each journal record, as it reaches disk, as an event of
 * the documented stream (docs/ci.md) */
static void
echo_record(const char *line, void *arg)
{
	json_t *rec = json_loads(line, 0, NULL);

	(void)arg;
	if (rec != NULL)
		ci_emit(rec);
}

/* how this command leaves the run, for the final "exit" event */
static void
set_status(const struct run *r, const char *status)
{
	if (r->o->status_out != NULL)
		snprintf(r->o->status_out, 32, "%s", status);
}

/* a step's place in the runbook, for annotations */
static void
annotate_step(const struct run *r, const char *level, const char *step, const char *title,
    const char *msg)
{
	const struct rb_step *s = step ? runbook_step(r->rb, step) : NULL;

	ci_annotate(level, r->rb->path, s && s->node ? s->node->line : 0,
	    s && s->node ? s->node->col : 0, title, msg);
}

/* append or die trying: a run that cannot journal must not act.
 * Returns 0, or -1 when the record is not on disk; r->last_seq is its seq. */
static int
jrec(struct run *r, const char *event, const char *step, int attempt, json_t *data)
{
	char *err = NULL;
	long seq;
	json_t *kept = json_incref(data);	/* for the webhooks */

	if (r->j == NULL) {
		json_decref(data);
		json_decref(kept);
		return 0;
	}
	seq = journal_append(r->j, event, step, attempt, data, &err);
	if (seq < 0) {
		fprintf(stderr, "zdm: journal %s: %s\n", journal_path(r->j), err);
		free(err);
		json_decref(kept);
		return -1;
	}
	r->last_seq = seq;
	if (r->o->mode == MODE_RUN) {	/* notify.c: never fails or holds up the run */
		if (r->nf == NULL)
			r->nf = notify_open(r->rb);
		notify_event(r->nf, r->j, r->run_id, event, step, attempt, kept);
	}
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
		char *err = NULL;
		int64_t t0;
		int attempt = ++ss->attempts, rc;

		if (zdm_interrupted)
			return OC_INTERRUPTED;
		params = runbook_params(r->rb, s->node, s->type, s->with, s->with_node, &err);
		if (params == NULL && dry && r->planned > 0 && json_dumps_contains(s->with, "steps")) {
			/* in a rehearsal, outputs of steps that only printed their
			 * plan do not exist: show this step's plan as written */
			show_step(r, i, "planned", "\033[36m", -1, err);
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
			show_step(r, i, "failed", "\033[31m", -1, err);
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

			show_step(r, i, "planned", "\033[36m", -1, plan ? plan : s->uses);
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
				show_step(r, i, "failed", "\033[31m", -1, msg);
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
		if (r->tty)
			say(r, "[%zu/%zu] %srunning%s   %s%s%s\r", i + 1, r->rb->nsteps,
			    c(r, "\033[33m"), c(r, "\033[0m"), s->id, s->name ? " — " : "",
			    s->name ? s->name : "");
		else if (!r->o->json)
			say(r, "[%zu/%zu] running   %s (%s, attempt %d)\n", i + 1,
			    r->rb->nsteps, s->id, s->uses, attempt);
		ctx.prior = ss->snapshot;
		notes = ss->notes != NULL ? json_copy(ss->notes) : NULL;	/* earlier attempts' */
		ctx.notes = notes;
		t0 = zdm_now_ms();
		ctx.deadline_ms = t0 + s->timeout_ms;
		live_start(r, i);
		rc = s->type->run(s->type, &ctx, params, &res);
		live_stop();
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
			show_step(r, i, "stopped", "\033[33m", zdm_now_ms() - t0, res.err);
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
			show_step(r, i, "ok", "\033[32m", ms, NULL);
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
				char dd[32];

				fmt_duration(delay, dd, sizeof dd);
				show_step(r, i, "retry", "\033[33m", ms, msg);
				say(r, "        attempt %d of %d failed; next in %s\n", attempt, max, dd);
				free(msg);
				if (zdm_sleep_ms(delay) != 0)
					return OC_INTERRUPTED;
				continue;
			}
			show_step(r, i, !res.pause ? "failed" : s->type == &zdm_step_approval ? "waiting" :
			    "undecided", res.pause ? "\033[33m" : "\033[31m", ms, msg);
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

/* returns an exit code: 0 when every undo is done */
static int
rollback(struct run *r)
{
	struct undo_item *items = xcalloc(r->rb->nsteps, sizeof *items);
	size_t n = 0;
	bool incomplete = false, need_person = false;
	int rc = ZDM_EXIT_OK;

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
	if (n > 0)
		say(r, "%srolling back%s %zu step%s, newest first\n", c(r, "\033[1m"),
		    c(r, "\033[0m"), n, n == 1 ? "" : "s");
	for (size_t k = 0; k < n && rc == ZDM_EXIT_OK; k++) {
		size_t i = items[k].i;
		struct rb_step *s = &r->rb->steps[i];
		struct stepstate *ss = &r->ss[i];
		const struct zdm_step_type *ut = s->undo ? s->undo->type : s->type;
		bool has_undo = s->undo != NULL || (s->type && s->type->undo != NULL);
		int max = s->retries + 1;
		bool done = false;

		if (zdm_interrupted) {
			rc = ZDM_EXIT_PAUSED;
			break;
		}
		if (!has_undo || (s->type && s->type->read_only && s->undo == NULL)) {
			const char *why = s->type && s->type->read_only ?
			    "read-only: nothing to undo" : "no undo: the type has none and the step sets none";

			if (jrec(r, "undo.skipped", s->id, 0, json_pack("{s:s}", "reason", why))) {
				rc = ZDM_EXIT_NEEDS_PERSON;
				break;
			}
			ss->ust = U_SKIPPED;
			if (!(s->type && s->type->read_only)) {
				show_step(r, i, "no undo", "\033[2m", -1, NULL);
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
				rc = ZDM_EXIT_NEEDS_PERSON;
				break;
			}
			ss->ust = skip ? U_SKIPPED : U_FAILED;
			show_step(r, i, skip ? "skipped" : "not undone", "\033[31m", -1, why);
			if (!skip)
				need_person = true;
			continue;
		}
		if (ss->ust == U_STARTED && !(s->idempotent || r->o->in_doubt == IN_DOUBT_RETRY)) {
			if (r->o->in_doubt == IN_DOUBT_SKIP) {
				if (jrec(r, "undo.skipped", s->id, 0, json_pack("{s:s}", "reason",
				    "undo in doubt, skipped by --in-doubt skip"))) {
					rc = ZDM_EXIT_NEEDS_PERSON;
					break;
				}
				ss->ust = U_SKIPPED;
				continue;
			}
			say(r, "%sin doubt%s: the undo of step '%s' started but its end was not recorded, "
			    "and '%s' is not idempotent.\n  If it did not happen: zdm rollback --in-doubt retry %s\n"
			    "  If it did:             zdm rollback --in-doubt skip %s\n",
			    c(r, "\033[31m"), c(r, "\033[0m"), s->id, ut ? ut->name : "?", r->run_id, r->run_id);
			rc = ZDM_EXIT_IN_DOUBT;
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
					rc = ZDM_EXIT_NEEDS_PERSON;
				show_step(r, i, "undo failed", "\033[31m", -1, err);
				free(err);
				break;
			}
			if (jrec(r, "undo.started", s->id, attempt, json_pack("{s:s}", "uses",
			    ut->name)) != 0) {
				json_decref(params);
				rc = ZDM_EXIT_NEEDS_PERSON;
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
				rc = ZDM_EXIT_PAUSED;
				break;
			}
			if (urc == 0) {
				if (jrec(r, "undo.succeeded", s->id, attempt, json_pack("{s:I}",
				    "duration_ms", (json_int_t)(zdm_now_ms() - t0))) != 0) {
					fprintf(stderr, "zdm: the undo of step '%s' ran but could not be recorded; "
					    "the journal will show it in doubt\n", s->id);
					zdm_result_release(&res);
					rc = ZDM_EXIT_NEEDS_PERSON;
					break;
				}
				ss->ust = U_SUCCEEDED;
				show_step(r, i, "undone", "\033[32m", zdm_now_ms() - t0, NULL);
				done = true;
			} else {
				char *msg = redact_str(res.err);

				if (jrec(r, "undo.failed", s->id, attempt, json_pack("{s:s,s:b}",
				    "error", msg, "will_retry", a + 1 < max)) != 0) {
					free(msg);
					zdm_result_release(&res);
					rc = ZDM_EXIT_NEEDS_PERSON;
					break;
				}
				ss->ust = U_FAILED;
				show_step(r, i, "undo failed", "\033[31m", zdm_now_ms() - t0, msg);
				if (a + 1 >= max)
					annotate_step(r, "error", s->id, "zdm: undo failed", msg);
				free(msg);
				if (a + 1 < max && zdm_sleep_ms(backoff_delay(s, a + 1)) != 0) {
					zdm_result_release(&res);
					rc = ZDM_EXIT_PAUSED;
					break;
				}
			}
			zdm_result_release(&res);
		}
		if (rc == ZDM_EXIT_OK && !done) {
			/* stop here: undoing earlier steps on top of a state we
			 * failed to restore can make things worse */
			incomplete = true;
			rc = ZDM_EXIT_NEEDS_PERSON;
		}
	}
	free(items);
	if (rc == ZDM_EXIT_OK && need_person)
		rc = ZDM_EXIT_NEEDS_PERSON;
	(void)incomplete;
	return rc;
}

/* ---- the main loop --------------------------------------------------------- */

static int
finish(struct run *r, const char *status, int code, json_t *extra)
{
	json_t *d = extra ? extra : json_object();

	json_object_set_new(d, "status", json_string(status));
	json_object_set_new(d, "exit_code", json_integer(code));
	set_status(r, status);
	json_object_set_new(d, "duration_ms", json_integer(zdm_now_ms() - r->t0));
	if (jrec(r, "run.finished", NULL, 0, d) != 0)
		return ZDM_EXIT_NEEDS_PERSON;
	return code;
}

static int
interrupted(struct run *r, const char *step)
{
	json_t *d = json_pack("{s:i}", "signal", (int)zdm_interrupted);

	set_status(r, "interrupted");
	if (step != NULL)
		json_object_set_new(d, "step", json_string(step));
	jrec(r, "run.interrupted", NULL, 0, d);
	if (r->rolling_back)
		say(r, "\n%sinterrupted%s by %s during the rollback; the journal is consistent.\n"
		    "  continue the rollback: zdm rollback %s\n", c(r, "\033[33m"), c(r, "\033[0m"),
		    strsignal(zdm_interrupted), r->run_id);
	else
		say(r, "\n%sinterrupted%s by %s; the journal is consistent.\n  continue: zdm resume %s\n"
		    "  or undo:  zdm rollback %s\n", c(r, "\033[33m"), c(r, "\033[0m"),
		    strsignal(zdm_interrupted), r->run_id, r->run_id);
	return ZDM_EXIT_PAUSED;
}

static int
on_failure(struct run *r, const char *step, const char *why)
{
	int rc;

	if (r->o->mode == MODE_DRY_RUN) {
		annotate_step(r, "error", step, "zdm: dry run: step failed", why);
		say(r, "dry run: step '%s' failed: %s\n", step, why);
		return finish(r, "failed", ZDM_EXIT_ROLLED_BACK,
		    json_pack("{s:s,s:s}", "failed_step", step, "error", why));
	}
	switch (r->rb->on_failure) {
	case ON_FAILURE_PAUSE:
		set_status(r, "paused");
		annotate_step(r, "error", step, "zdm: step failed; run paused", why);
		jrec(r, "run.paused", step, 0, json_pack("{s:s}", "error", why));
		say(r, "%spaused%s after step '%s' failed (on_failure: pause).\n"
		    "  retry it and go on: zdm resume %s\n  or undo:            zdm rollback %s\n",
		    c(r, "\033[33m"), c(r, "\033[0m"), step, r->run_id, r->run_id);
		return ZDM_EXIT_PAUSED;
	case ON_FAILURE_ABORT:
		annotate_step(r, "error", step, "zdm: step failed; run aborted, nothing undone", why);
		say(r, "%saborted%s after step '%s' failed (on_failure: abort): nothing was undone.\n"
		    "  undo by hand or: zdm rollback %s\n", c(r, "\033[31m"), c(r, "\033[0m"),
		    step, r->run_id);
		return finish(r, "aborted", ZDM_EXIT_NEEDS_PERSON,
		    json_pack("{s:s,s:s}", "failed_step", step, "error", why));
	case ON_FAILURE_ROLLBACK:
		break;
	}
	annotate_step(r, "error", step, "zdm: step failed", why);
	if (jrec(r, "rollback.started", step, 0, json_pack("{s:s}", "reason", why)) != 0)
		return ZDM_EXIT_NEEDS_PERSON;
	r->rolling_back = true;
	rc = rollback(r);
	if (rc == ZDM_EXIT_PAUSED)
		return interrupted(r, NULL);
	if (rc == ZDM_EXIT_IN_DOUBT) {
		set_status(r, "in_doubt");
		return rc;
	}
	if (rc == ZDM_EXIT_OK) {
		annotate_step(r, "warning", step, "zdm: rolled back",
		    "every completed step with an undo was undone; the system is back where it started");
		say(r, "%srolled back%s: step '%s' failed (%s); every completed step with an undo was undone%s.\n",
		    c(r, "\033[33m"), c(r, "\033[0m"), step, why,
		    r->no_undo ? " (steps marked 'no undo' above were left as they are)" : "");
		return finish(r, "rolled_back", ZDM_EXIT_ROLLED_BACK,
		    json_pack("{s:s,s:s}", "failed_step", step, "error", why));
	}
	say(r, "%sROLLBACK INCOMPLETE%s: step '%s' failed and not every step could be undone.\n"
	    "  see: zdm log %s\n  retry the rest: zdm rollback %s\n", c(r, "\033[31m"),
	    c(r, "\033[0m"), step, r->run_id, r->run_id);
	return finish(r, "rollback_failed", ZDM_EXIT_NEEDS_PERSON,
	    json_pack("{s:s,s:s}", "failed_step", step, "error", why));
}

static int
execute(struct run *r, size_t from)
{
	for (size_t i = from; i < r->rb->nsteps; i++) {
		struct rb_step *s = &r->rb->steps[i];
		struct stepstate *ss = &r->ss[i];
		char *why = NULL;
		enum outcome oc;
		int rc;

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
				show_step(r, i, "planned", "\033[36m", -1, err);
				if (jrec(r, "step.skipped", s->id, 0, json_pack("{s:s,s:s}", "reason",
				    "dry run: if: needs outputs of steps that did not run", "error", err)) != 0) {
					free(err);
					return ZDM_EXIT_NEEDS_PERSON;
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
				show_step(r, i, "failed", "\033[31m", -1, why);
				jrec(r, "step.failed", s->id, 0, json_pack("{s:s}", "error", why));
				rc = on_failure(r, s->id, why);
				free(why);
				return rc;
			}
			if (!yes) {
				if (jrec(r, "step.skipped", s->id, 0, json_pack("{s:s,s:s}",
				    "reason", "if: condition is false", "if", s->if_expr)) != 0)
					return ZDM_EXIT_NEEDS_PERSON;
				ss->st = S_SKIPPED;
				expr_set_step(r->rb->x, s->id, NULL);
				show_step(r, i, "skipped", "\033[2m", -1, "if: condition is false");
				continue;
			}
		}
		oc = run_step(r, i, &why);
		if (oc == OC_JOURNAL)
			return ZDM_EXIT_NEEDS_PERSON;
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
			/* not a verdict: a person decides (DESIGN: exit 4, resumable) */
			bool appr = s->type == &zdm_step_approval;
			json_t *pd = json_pack("{s:s,s:b}", "error", why, "needs_decision", true);

			if (appr)
				json_object_set_new(pd, "waiting_for", json_string("approval"));
			jrec(r, "run.paused", s->id, 0, pd);
			set_status(r, "paused");
			if (appr) {
				char *m = xasprintf("waiting for approval: zdm approve %s %s, then zdm resume %s",
				    r->run_id, s->id, r->run_id);

				annotate_step(r, "warning", s->id, "zdm: approval needed", m);
				say(r, "%spaused%s: %s\n  to refuse (rolls back): zdm approve --deny %s %s, then zdm resume %s\n",
				    c(r, "\033[33m"), c(r, "\033[0m"), m, r->run_id, s->id, r->run_id);
				free(m);
			} else {
				annotate_step(r, "warning", s->id, "zdm: paused, a person decides", why);
				say(r, "%spaused%s: step '%s' could not decide (%s).\n"
				    "  a person decides: zdm resume %s (measure again) or zdm rollback %s\n",
				    c(r, "\033[33m"), c(r, "\033[0m"), s->id, why, r->run_id, r->run_id);
			}
			free(why);
			return ZDM_EXIT_PAUSED;
		}
		if (r->o->fail_at != NULL && strcmp(r->o->fail_at, s->id) == 0) {
			char *msg = xasprintf("drill: forced failure after step '%s' (--fail-at)", s->id);

			jrec(r, "drill.failure", s->id, 0, json_pack("{s:s}", "error", msg));
			say(r, "%s\n", msg);
			rc = on_failure(r, s->id, msg);
			free(msg);
			return rc;
		}
	}
	if (r->o->mode == MODE_DRY_RUN) {
		say(r, "%sdry run ok%s: read-only steps passed; nothing was changed.\n",
		    c(r, "\033[32m"), c(r, "\033[0m"));
		return finish(r, "succeeded", ZDM_EXIT_OK, NULL);
	}
	{
		char d[32];

		fmt_duration(zdm_now_ms() - r->t0, d, sizeof d);
		say(r, "%ssucceeded%s: run %s, %zu step%s in %s\n", c(r, "\033[32m"),
		    c(r, "\033[0m"), r->run_id, r->rb->nsteps, r->rb->nsteps == 1 ? "" : "s", d);
	}
	return finish(r, "succeeded", ZDM_EXIT_OK, NULL);
}

static void
run_init(struct run *r, struct runbook *rb, const struct run_opts *o)
{
	memset(r, 0, sizeof *r);
	r->rb = rb;
	r->o = o;
	r->lockfd = -1;
	r->ss = xcalloc(rb->nsteps, sizeof *r->ss);
	{
		struct approval_opts ao = { o->interactive, o->approve, o->napprove };

		approval_configure(&ao);
	}
	ci_json_stdout = o->json;
	r->tty = !o->json && isatty(STDOUT_FILENO);
	r->color = r->tty && getenv("NO_COLOR") == NULL;
	r->t0 = zdm_now_ms();
}

static void
run_release(struct run *r)
{
	notify_close(r->nf, r->j);	/* the last webhooks, before the report */
	r->nf = NULL;
	if (r->j != NULL && r->o->junit != NULL) {
		/* the report covers the whole run, from its journal */
		char *err = NULL;

		if (junit_write(r->o->junit, r->rb, journal_path(r->j), &err) != 0) {
			fprintf(stderr, "zdm: --junit %s: %s\n", r->o->junit, err);
			free(err);
		}
	}
	approval_configure(NULL);
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

	expr_set(r->rb->x, "run", run, NULL);
	json_decref(run);
}

static int
plan(struct run *r)
{
	say(r, "plan for %s (%zu steps)%s\n", r->rb->name, r->rb->nsteps,
	    r->rb->on_failure == ON_FAILURE_ROLLBACK ? ", on failure: roll back in reverse order" :
	    r->rb->on_failure == ON_FAILURE_PAUSE ? ", on failure: pause" : ", on failure: abort");
	expr_set_static(r->rb->x, true);
	for (size_t i = 0; i < r->rb->nsteps; i++) {
		struct rb_step *s = &r->rb->steps[i];
		char *err = NULL, *p = NULL;
		json_t *params = runbook_params(r->rb, s->node, s->type, s->with, s->with_node, &err);

		say(r, "%2zu. %s%s%s (%s%s)%s%s\n", i + 1, s->id, s->name ? " — " : "",
		    s->name ? s->name : "", s->uses, s->type->read_only ? ", read-only" : "",
		    s->if_expr ? "  if: " : "", s->if_expr ? s->if_expr : "");
		if (params != NULL)
			p = plan_of(s->type, params);
		say(r, "      do:   %s\n", p ? p : params ? s->uses : err);
		free(p);
		free(err);
		json_decref(params);
		if (s->undo != NULL) {
			err = NULL;
			p = NULL;
			params = runbook_params(r->rb, s->undo->node, s->undo->type, s->undo->with,
			    s->undo->with_node, &err);
			if (params != NULL)
				p = plan_of(s->undo->type, params);
			say(r, "      undo: %s\n", p ? p : params ? s->undo->uses : err);
			free(p);
			free(err);
			json_decref(params);
		} else if (s->type->undo != NULL) {
			say(r, "      undo: %s restores what it recorded\n", s->uses);
		} else if (!s->type->read_only) {
			say(r, "      undo: none\n");
		}
	}
	expr_set_static(r->rb->x, false);
	return ZDM_EXIT_OK;
}

int
runner_run(struct runbook *rb, const struct run_opts *o)
{
	struct run r;
	char *err = NULL, *path, *rel;
	json_t *d, *secrets;
	int rc;

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
		fprintf(stderr, "zdm: %s\n", err);
		free(err);
		run_release(&r);
		return ZDM_EXIT_USAGE;
	}
	if (o->mode == MODE_RUN &&
	    lock_acquire(o->state_dir, rb->name, r.run_id, &r.lockfd, &err) != 0) {
		fprintf(stderr, "zdm: %s\n", err);
		free(err);
		run_release(&r);
		return ZDM_EXIT_USAGE;
	}
	rel = xasprintf("runs/%s.jsonl", r.run_id);
	path = path_join(o->state_dir, rel);
	free(rel);
	r.j = journal_create(path, r.run_id, &err);
	free(path);
	if (r.j == NULL) {
		fprintf(stderr, "zdm: %s\n", err);
		free(err);
		run_release(&r);
		return ZDM_EXIT_USAGE;
	}
	if (o->json)
		journal_set_echo(r.j, echo_record, NULL);
	secrets = json_array();
	for (size_t i = 0; i < rb->nsecrets; i++)
		json_array_append_new(secrets, json_string(rb->secrets[i].name));
	d = json_pack("{s:s,s:s,s:s,s:O,s:o,s:o,s:s,s:b,s:i}", "runbook", rb->abspath,
	    "name", rb->name, "sha256", rb->sha256, "vars", rb->vars, "secrets", secrets,
	    "actor", actor_json(), "zdm_version", ZDM_VERSION, "dry_run", o->mode == MODE_DRY_RUN,
	    "steps", (int)rb->nsteps);
	if (d == NULL) {
		fprintf(stderr, "zdm: cannot record run.started (is the runbook path %s valid UTF-8?); nothing ran\n",
		    rb->abspath);
		run_release(&r);
		return ZDM_EXIT_USAGE;
	}
	if (o->fail_at != NULL)
		json_object_set_new(d, "fail_at", json_string(o->fail_at));
	audit_provenance(d, rb->abspath);	/* host, git commit */
	if (jrec(&r, "run.started", NULL, 0, d) != 0) {
		run_release(&r);
		return ZDM_EXIT_NEEDS_PERSON;
	}
	say(&r, "%s%s%s %s: %zu step%s, journal %s\n", c(&r, "\033[1m"),
	    o->mode == MODE_DRY_RUN ? "dry run" : "run", c(&r, "\033[0m"), r.run_id,
	    rb->nsteps, rb->nsteps == 1 ? "" : "s", journal_path(r.j));
	rc = execute(&r, 0);
	run_release(&r);
	return rc;
}

/* ---- resume and rollback from the journal ---------------------------------- */

static enum sstate
phase_of(enum rs_phase p)
{
	switch (p) {
	case RS_STARTED: return S_STARTED;
	case RS_SUCCEEDED: return S_SUCCEEDED;
	case RS_FAILED: return S_FAILED;
	case RS_SKIPPED: return S_SKIPPED;
	case RS_PENDING: break;
	}
	return S_PENDING;
}

static enum ustate
undo_of(enum rs_undo u)
{
	switch (u) {
	case RS_UNDO_STARTED: return U_STARTED;
	case RS_UNDO_SUCCEEDED: return U_SUCCEEDED;
	case RS_UNDO_FAILED: return U_FAILED;
	case RS_UNDO_SKIPPED: return U_SKIPPED;
	case RS_UNDO_NONE: break;
	}
	return U_NONE;
}

/* stand where the journal says (runstate.h), on the runbook's steps */
static int
load_state(struct run *r, struct jlog *log)
{
	struct runstate st;
	const struct rs_step *gone = NULL;
	char *err = NULL;
	int rc = runstate_fold(log, &st, &err);

	if (log->n == 0) {
		fprintf(stderr, "zdm: %s\n", err);
		free(err);
		runstate_release(&st);
		return -1;
	}
	snprintf(r->run_id, sizeof r->run_id, "%s", st.run_id ? st.run_id : "?");
	if (r->o->run_id_out != NULL)
		snprintf(r->o->run_id_out, 64, "%s", r->run_id);
	/* the first step the journal names and the runbook no longer has */
	for (size_t i = 0; i < st.nsteps; i++)
		if (st.steps[i].first_rec != RS_NONE && runbook_step(r->rb, st.steps[i].id) == NULL &&
		    (gone == NULL || st.steps[i].first_rec < gone->first_rec))
			gone = &st.steps[i];
	if (gone != NULL && gone->first_rec < st.bad_rec) {
		fprintf(stderr, "zdm: the journal names step '%s', which the runbook no longer has\n", gone->id);
		rc = -1;
	} else if (rc != 0) {
		fprintf(stderr, "zdm: %s\n", err);
	}
	free(err);
	if (rc != 0) {
		runstate_release(&st);
		return -1;
	}
	for (size_t i = 0; i < st.nsteps; i++) {
		const struct rs_step *s = &st.steps[i];
		struct rb_step *rs = runbook_step(r->rb, s->id);
		struct stepstate *ss = rs ? &r->ss[rs - r->rb->steps] : NULL;

		if (ss == NULL)
			continue;
		ss->st = phase_of(s->phase);
		ss->attempts = s->attempt;
		ss->start_seq = s->start_seq;
		ss->done_seq = s->done_seq;
		ss->interrupted = s->interrupted;
		ss->outputs = json_incref((json_t *)s->outputs);
		ss->undo_data = json_incref((json_t *)s->undo_data);
		ss->snapshot = json_incref((json_t *)s->snapshot);
		ss->ust = undo_of(s->undo);
		ss->undo_attempts = s->undo_attempt;
		ss->notes = json_incref(s->notes);	/* ctx->notes of its next attempt */
	}
	r->rolling_back = st.rolling_back;
	r->failed_step = st.failed_step ? xstrdup(st.failed_step) : NULL;
	r->fail_msg = st.failure ? xstrdup(st.failure) : NULL;
	r->paused = st.outcome == RS_PAUSED;
	r->finished = st.finished;
	r->finished_status = st.finished ? xstrdup(st.status ? st.status : "?") : NULL;
	runstate_release(&st);
	return 0;
}

/* common part of resume and rollback: lock, journal re-open, run.resumed */
static int
reopen(struct run *r, const char *journal, struct jlog *log)
{
	char *err = NULL;
	json_t *first = log->recs[0], *fd = json_object_get(first, "data");
	const char *sha = json_string_value(json_object_get(fd, "sha256"));
	json_t *d;

	if (json_is_true(json_object_get(fd, "dry_run"))) {
		fprintf(stderr, "zdm: run %s was a dry run; there is nothing to %s\n", r->run_id,
		    r->rolling_back_cmd ? "roll back" : "resume");
		return ZDM_EXIT_USAGE;
	}
	if (sha != NULL && strcmp(sha, r->rb->sha256) != 0 && !r->o->allow_changed) {
		fprintf(stderr, "zdm: %s changed since run %s started (sha256 %.12s… then, %.12s… now);\n"
		    "  refusing to continue with a different runbook. If the change is intended: --allow-changed\n",
		    r->rb->path, r->run_id, sha, r->rb->sha256);
		return ZDM_EXIT_USAGE;
	}
	if (runbook_resolve_secrets(r->rb, &err) != 0) {
		fprintf(stderr, "zdm: %s\n", err);
		free(err);
		return ZDM_EXIT_USAGE;
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
				return ZDM_EXIT_USAGE;
			}
		}
	}
	if (r->lockfd < 0 &&
	    lock_acquire(r->o->state_dir, r->rb->name, r->run_id, &r->lockfd, &err) != 0) {
		fprintf(stderr, "zdm: %s\n", err);
		free(err);
		return ZDM_EXIT_USAGE;
	}
	if (log->torn)
		fprintf(stderr, "zdm: warning: %s: the last line was torn (a crash mid-write); it is ignored and cut off\n",
		    journal);
	r->j = journal_reopen(journal, r->run_id, log, &err);
	if (r->j == NULL) {
		fprintf(stderr, "zdm: %s\n", err);
		free(err);
		return ZDM_EXIT_USAGE;
	}
	if (r->o->json)
		journal_set_echo(r->j, echo_record, NULL);
	d = json_pack("{s:s,s:o,s:b,s:s,s:s}", "command", r->rolling_back_cmd ? "rollback" : "resume",
	    "actor", actor_json(), "allow_changed",
	    r->o->allow_changed, "sha256", r->rb->sha256, "in_doubt",
	    r->o->in_doubt == IN_DOUBT_RETRY ? "retry" : r->o->in_doubt == IN_DOUBT_SKIP ? "skip" : "ask");
	if (jrec(r, ev_name(EV_RUN_RESUMED), NULL, 0, d) != 0)
		return ZDM_EXIT_NEEDS_PERSON;
	return ZDM_EXIT_OK;
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

int
runner_resume(struct runbook *rb, const char *journal, struct jlog *log,
    const struct run_opts *o)
{
	struct run r;
	size_t from = rb->nsteps;
	int rc;

	if (run_from_journal(&r, rb, log, o) != 0)
		return ZDM_EXIT_USAGE;
	if (r.finished) {
		fprintf(stderr, "zdm: run %s already finished (%s); nothing to resume\n", r.run_id,
		    r.finished_status);
		run_release(&r);
		return ZDM_EXIT_USAGE;
	}
	if (r.rolling_back) {
		fprintf(stderr, "zdm: run %s was rolling back when it stopped; continue the rollback with: zdm rollback %s\n",
		    r.run_id, r.run_id);
		run_release(&r);
		return ZDM_EXIT_USAGE;
	}
	{
		char *err = NULL;

		/* a run still going is not in doubt: its holder says so */
		if (lock_acquire(o->state_dir, rb->name, r.run_id, &r.lockfd, &err) != 0) {
			fprintf(stderr, "zdm: %s\n", err);
			free(err);
			run_release(&r);
			return ZDM_EXIT_USAGE;
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
			annotate_step(&r, "error", s->id, "zdm: step in doubt", "it started but its end was not "
			    "recorded and it is not idempotent: zdm resume --in-doubt retry|skip");
			fprintf(o->json ? stderr : stdout, "step '%s' is in doubt: %s (attempt %d),\nand '%s' is not idempotent, "
			    "so running it again could do it twice.\n"
			    "  If it did NOT take effect: zdm resume %s --in-doubt retry\n"
			    "  If it DID take effect:     zdm resume %s --in-doubt skip\n",
			    s->id, r.ss[from].interrupted ?
			    "a signal stopped it part-way, so it may have half-happened" :
			    "it started but zdm stopped before recording how it ended",
			    r.ss[from].attempts, s->uses, r.run_id, r.run_id);
			run_release(&r);
			return ZDM_EXIT_IN_DOUBT;
		}
	}
	rc = reopen(&r, journal, log);
	if (rc != ZDM_EXIT_OK) {
		run_release(&r);
		return rc;
	}
	say(&r, "%sresume%s %s from step %zu of %zu, journal %s\n", c(&r, "\033[1m"),
	    c(&r, "\033[0m"), r.run_id, from + 1, rb->nsteps, journal);
	if (from < rb->nsteps && r.ss[from].st == S_STARTED) {
		struct rb_step *s = &rb->steps[from];

		if (o->in_doubt == IN_DOUBT_SKIP && !s->idempotent) {
			/* the person says it took effect; with no undo_data recorded */
			if (jrec(&r, "step.skipped", s->id, 0, json_pack("{s:s}", "reason",
			    "in doubt; taken as done by --in-doubt skip")) != 0) {
				run_release(&r);
				return ZDM_EXIT_NEEDS_PERSON;
			}
			r.ss[from].st = S_SKIPPED;
			expr_set_step(rb->x, s->id, NULL);
			show_step(&r, from, "skipped", "\033[2m", -1, "in doubt: taken as done (--in-doubt skip)");
		} else {
			say(&r, "[%zu/%zu] step '%s' was in doubt; running it again (%s)\n", from + 1,
			    rb->nsteps, s->id, s->idempotent ? "idempotent" : "--in-doubt retry");
		}
	}
	rc = execute(&r, from);
	run_release(&r);
	return rc;
}

int
runner_rollback(struct runbook *rb, const char *journal, struct jlog *log,
    const struct run_opts *o)
{
	struct run r;
	int rc;

	if (run_from_journal(&r, rb, log, o) != 0)
		return ZDM_EXIT_USAGE;
	if (r.finished && strcmp(r.finished_status, "rolled_back") == 0) {
		fprintf(stderr, "zdm: run %s is already rolled back; nothing to undo\n", r.run_id);
		run_release(&r);
		return ZDM_EXIT_USAGE;
	}
	for (size_t i = 0; i < rb->nsteps; i++)
		if (r.ss[i].st == S_SUCCEEDED)
			expr_set_step(rb->x, rb->steps[i].id, r.ss[i].outputs);
	r.rolling_back_cmd = true;
	rc = reopen(&r, journal, log);
	if (rc != ZDM_EXIT_OK) {
		run_release(&r);
		return rc;
	}
	if (!r.rolling_back &&
	    jrec(&r, "rollback.started", NULL, 0, json_pack("{s:s}", "reason", "zdm rollback")) != 0) {
		run_release(&r);
		return ZDM_EXIT_NEEDS_PERSON;
	}
	r.rolling_back = true;
	say(&r, "%srollback%s of run %s, journal %s\n", c(&r, "\033[1m"), c(&r, "\033[0m"),
	    r.run_id, journal);
	rc = rollback(&r);
	if (rc == ZDM_EXIT_PAUSED) {
		rc = interrupted(&r, NULL);
	} else if (rc == ZDM_EXIT_OK) {
		say(&r, "%srolled back%s: run %s; every completed step with an undo was undone%s.\n",
		    c(&r, "\033[32m"), c(&r, "\033[0m"), r.run_id,
		    r.no_undo ? " (steps marked 'no undo' above were left as they are)" : "");
		rc = finish(&r, "rolled_back", ZDM_EXIT_OK, r.failed_step ?
		    json_pack("{s:s,s:s}", "failed_step", r.failed_step, "error", r.fail_msg ? r.fail_msg : "") :
		    NULL);
	} else if (rc == ZDM_EXIT_NEEDS_PERSON) {
		say(&r, "%sROLLBACK INCOMPLETE%s: see zdm log %s\n", c(&r, "\033[31m"),
		    c(&r, "\033[0m"), r.run_id);
		rc = finish(&r, "rollback_failed", ZDM_EXIT_NEEDS_PERSON, NULL);
	}
	run_release(&r);
	return rc;
}
