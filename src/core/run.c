/*
 * run.c - what the runner's parts share (run.h): the journal and the
 * observers, the context a step gets, the end of a run.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

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
	if (s != NULL)
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
run_ended(const struct run *r, struct run_event *ev)
{
	ev->kind = OBS_RUN_ENDED;
	run_emit(r, ev);
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
	if (r->lock_lost) {
		/* fenced: nothing more from this zdm */
		json_decref(data);
		json_decref(kept);
		return -1;
	}
	seq = store_append(r->w, event, step, attempt, data, &err);
	if (seq < 0 && r->lock != NULL && store_fences(r->store)) {
		char *why = NULL;

		if (store_lock_check(r->lock, &why) != 0) {
			r->lock_lost = true;
			run_error(r, "lost the run lock: %s; %s was not written, and this zdm stops here: "
			    "it appends nothing more and starts no other step (zdm status %s)", why, event,
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
}

/*
 * A type's plan() in words, given params with every secret already "***":
 * a plan may quote or encode a value (a shell-quoted argv, a URL-encoded
 * password), after which redacting its text would no longer find the
 * secret.  NULL when the type has no plan().
 */
char *
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
