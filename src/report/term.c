/*
 * term.c - the terminal view of a run (term.h).
 *
 * Every line goes out redacted and flushed as it is made.  On a terminal
 * the running step has a live line (spinner, elapsed time, the step's own
 * progress text) that proc.c and the HTTP and SSH clients keep turning
 * through zdm_tick while they wait; it is wiped before anything else is
 * shown.  Elsewhere (a pipe, a CI log) each step says "running" on a line
 * of its own and each progress text is a line too.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/proc.h"
#include "base/redact.h"
#include "base/util.h"
#include "core/observer.h"
#include "core/runbook.h"
#include "core/runstate.h"
#include "report/term.h"
#include "zdm/step.h"

#define RESET	"\033[0m"
#define BOLD	"\033[1m"
#define DIM	"\033[2m"
#define RED	"\033[31m"
#define GREEN	"\033[32m"
#define YELLOW	"\033[33m"
#define CYAN	"\033[36m"


void
term_view_init(struct term_view *tv, bool json)
{
	tv->json = json;
	tv->tty = !json && isatty(STDOUT_FILENO);
	tv->color = tv->tty && getenv("NO_COLOR") == NULL;
}

static const char *
c(const struct term_view *tv, const char *code)
{
	return tv->color ? code : "";
}

static FILE *
out(const struct term_view *tv)
{
	return tv->json ? stderr : stdout;
}

static void
say(const struct term_view *tv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
say(const struct term_view *tv, const char *fmt, ...)
{
	va_list ap;
	char *m, *red;
	FILE *f = out(tv);

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
show_step(const struct term_view *tv, const struct runbook *rb, size_t i, const char *state,
    const char *color, int64_t ms, const char *detail)
{
	const struct rb_step *s = &rb->steps[i];
	char d[32] = "";

	if (ms >= 0)
		fmt_duration(ms, d, sizeof d);
	say(tv, "[%zu/%zu] %s%-9s%s %s%s%s%s%s%s%s\n", i + 1, rb->nsteps,
	    c(tv, color), state, c(tv, RESET), s->id,
	    s->name ? " — " : "", s->name ? s->name : "",
	    d[0] ? "  " : "", d,
	    detail ? "\n        " : "", detail ? detail : "");
}

/* ---- the running step's line on a terminal: spinner and elapsed time ----- */

static struct {
	const struct term_view *tv;	/* NULL: no live line */
	const struct runbook *rb;
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

	if (live.tv == NULL || now - live.last < 200)
		return;
	live.last = now;
	s = &live.rb->steps[live.i];
	fmt_duration(now - live.t0, d, sizeof d);
	say(live.tv, "\r[%zu/%zu] %s%s running%s %s%s%s  %s%s%s\033[K", live.i + 1, live.rb->nsteps,
	    c(live.tv, YELLOW), spin[live.frame++ % 4], c(live.tv, RESET), s->id,
	    s->name ? " — " : "", s->name ? s->name : "", d, live.text[0] ? "  " : "", live.text);
}

static void
live_start(const struct term_view *tv, const struct runbook *rb, size_t i)
{
	if (!tv->tty)
		return;
	live.tv = tv;
	live.rb = rb;
	live.i = i;
	live.t0 = live.last = zdm_now_ms();
	live.frame = 0;
	live.text[0] = '\0';
	zdm_tick = live_tick;
}

static void
live_stop(void)
{
	if (live.tv != NULL)
		say(live.tv, "\r\033[K");
	live.tv = NULL;
	zdm_tick = NULL;
}

/* a step's progress: on a terminal, beside the spinner; else one line each
 * time the text changes, so CI logs show a gate's measurements too */
static void
progress(const struct term_view *tv, const char *step, const char *text)
{
	if (tv->json)
		return;
	if (tv->tty) {
		snprintf(live.text, sizeof live.text, "%s", text);
		live.last = 0;
		live_tick();
	} else {
		say(tv, "        %s: %s\n", step, text);
	}
}

/* ---- the state database lost and found ------------------------------------ */

/* the connection to the state database went, is tried again, came back: a
 * line when it goes and when it comes back; on a terminal, a live line in
 * between that each failed attempt rewrites */
static bool state_live;		/* that line is shown */

static void
state_news(const struct term_view *tv, const struct run_event *ev)
{
	char d[32], t[16];
	time_t until = (time_t)ev->state.until;
	struct tm tm;

	fmt_duration(ev->kind == OBS_STATE_LOST ? ev->state.timeout_ms : ev->state.ms, d, sizeof d);
	if (localtime_r(&until, &tm) == NULL || strftime(t, sizeof t, "%H:%M:%S", &tm) == 0)
		snprintf(t, sizeof t, "?");
	switch (ev->kind) {
	case OBS_STATE_LOST:
		say(tv, "%sstate%s   lost the state database: %s\n"
		    "        connecting again until %s (--state-timeout %s); no step starts meanwhile\n",
		    c(tv, YELLOW), c(tv, RESET), ev->state.why, t, d);
		break;
	case OBS_STATE_RETRY:
		if (tv->tty)
			say(tv, "\r        attempt %d failed (%s), %s since it was lost; trying until %s\033[K",
			    ev->state.attempt, ev->state.why, d, t);
		state_live = tv->tty;
		break;
	default:
		say(tv, "%s%sstate%s   back: connected again to %s after %s%s\n", state_live ? "\r\033[K" : "",
		    c(tv, GREEN), c(tv, RESET), ev->state.place, d,
		    ev->state.locked ? ", the run lock still this zdm's" : "");
		state_live = false;
		break;
	}
}

/* "4m59s", "59s", "1h05m": what is left, in whole seconds, rounded up */
static void
fmt_left(int64_t ms, char *out, size_t n)
{
	long long sec = (long long)((ms + 999) / 1000);

	if (sec < 60)
		snprintf(out, n, "%llds", sec);
	else if (sec < 3600)
		snprintf(out, n, "%lldm%02llds", sec / 60, sec % 60);
	else
		snprintf(out, n, "%lldh%02lldm", sec / 3600, sec % 3600 / 60);
}

/* --wait-for-approval: beside the spinner, counting down; elsewhere (a
 * pipe, a CI log, --output json's stderr) once, when the wait starts */
static void
waiting(const struct term_view *tv, const struct run_event *ev)
{
	char left[32];

	fmt_left(ev->wait.left_ms, left, sizeof left);
	if (tv->tty) {
		snprintf(live.text, sizeof live.text, "waiting for approval of %s (zdm approve %s %s), %s left",
		    ev->wait.step, ev->run_id, ev->wait.step, left);
		live.last = 0;
		live_tick();
	} else if (ev->wait.first) {
		say(tv, "        waiting for approval of %s (zdm approve %s %s), %s left\n", ev->wait.step,
		    ev->run_id, ev->wait.step, left);
	}
}

/* ---- events ---------------------------------------------------------------- */

static void
started(const struct term_view *tv, const struct run_event *ev)
{
	const struct runbook *rb = ev->rb;
	size_t n = rb->nsteps;

	switch (ev->start.how) {
	case HOW_RUN:
	case HOW_DRY_RUN:
		say(tv, "%s%s%s %s: %zu step%s, journal %s\n", c(tv, BOLD),
		    ev->start.how == HOW_DRY_RUN ? "dry run" : "run", c(tv, RESET), ev->run_id,
		    n, n == 1 ? "" : "s", ev->start.journal);
		break;
	case HOW_RESUME:
		say(tv, "%sresume%s %s from step %zu of %zu, journal %s\n", c(tv, BOLD),
		    c(tv, RESET), ev->run_id, ev->start.from + 1, n, ev->start.journal);
		break;
	case HOW_ROLLBACK:
		say(tv, "%srollback%s of run %s, journal %s\n", c(tv, BOLD), c(tv, RESET),
		    ev->run_id, ev->start.journal);
		break;
	case HOW_PLAN:
		say(tv, "plan for %s (%zu steps)%s\n", rb->name, n,
		    rb->on_failure == ON_FAILURE_ROLLBACK ? ", on failure: roll back in reverse order" :
		    rb->on_failure == ON_FAILURE_PAUSE ? ", on failure: pause" : ", on failure: abort");
		break;
	}
}

static void
plan_step(const struct term_view *tv, const struct run_event *ev)
{
	const struct rb_step *s = &ev->rb->steps[ev->plan.i];

	say(tv, "%2zu. %s%s%s (%s%s)%s%s\n", ev->plan.i + 1, s->id, s->name ? " — " : "",
	    s->name ? s->name : "", s->uses, s->type->read_only ? ", read-only" : "",
	    s->if_expr ? "  if: " : "", s->if_expr ? s->if_expr : "");
	if (ev->plan.when == PLAN_SKIPPED) {
		say(tv, "      skipped: if: is false\n");
		return;
	}
	if (ev->plan.when == PLAN_UNKNOWN)
		say(tv, "      if:   unknown until run%s%s%s\n", ev->plan.why ? " (" : "",
		    ev->plan.why ? ev->plan.why : " (needs outputs of earlier steps or secrets)",
		    ev->plan.why ? ")" : "");
	say(tv, "      do:   %s\n", ev->plan.doing);
	switch (ev->plan.undo) {
	case PLAN_UNDO_STEP:
		say(tv, "      undo: %s\n", ev->plan.undoing);
		break;
	case PLAN_UNDO_TYPE:
		say(tv, "      undo: %s restores what it recorded\n", s->uses);
		break;
	case PLAN_UNDO_NONE:
		say(tv, "      undo: none: a rollback leaves this change in place\n");
		break;
	case PLAN_UNDO_READ_ONLY:
		break;
	}
	if (ev->plan.i + 1 == ev->rb->nsteps) {
		/* what a rollback of this plan would leave behind */
		struct sbuf sb;
		size_t n = 0;

		sb_init(&sb);
		for (size_t i = 0; i < ev->rb->nsteps; i++)
			if (ev->rb->steps[i].undo_kind == RB_NOT_UNDONE)
				sb_addf(&sb, "%s%s", n++ ? ", " : "", ev->rb->steps[i].id);
		if (n > 0)
			say(tv, "%zu step%s that change%s things ha%s no undo: %s (a rollback leaves %s in place)\n",
			    n, n == 1 ? "" : "s", n == 1 ? "s" : "", n == 1 ? "s" : "ve", sb.buf,
			    n == 1 ? "its change" : "their changes");
		sb_release(&sb);
	}
}

static void
running(const struct term_view *tv, const struct run_event *ev)
{
	const struct runbook *rb = ev->rb;
	const struct rb_step *s = &rb->steps[ev->step.i];

	if (tv->tty)
		say(tv, "[%zu/%zu] %srunning%s   %s%s%s\r", ev->step.i + 1, rb->nsteps,
		    c(tv, YELLOW), c(tv, RESET), s->id, s->name ? " — " : "",
		    s->name ? s->name : "");
	else if (!tv->json)
		say(tv, "[%zu/%zu] running   %s (%s, attempt %d)\n", ev->step.i + 1,
		    rb->nsteps, s->id, s->uses, ev->step.attempt);
	live_start(tv, rb, ev->step.i);
}

static void
step_ended(const struct term_view *tv, const struct run_event *ev)
{
	static const struct { const char *word, *color; } w[] = {
		[END_OK] = { "ok", GREEN },
		[END_FAILED] = { "failed", RED },
		[END_RETRY] = { "retry", YELLOW },
		[END_STOPPED] = { "stopped", YELLOW },
		[END_WAITING] = { "waiting", YELLOW },
		[END_UNDECIDED] = { "undecided", YELLOW },
		[END_PLANNED] = { "planned", CYAN },
		[END_SKIPPED] = { "skipped", DIM },
	};
	enum step_end e = ev->step.end;

	show_step(tv, ev->rb, ev->step.i, w[e].word, w[e].color, ev->step.ms, ev->step.text);
	if (e == END_RETRY) {
		char dd[32];

		fmt_duration(ev->step.next_ms, dd, sizeof dd);
		say(tv, "        attempt %d of %d failed; next in %s\n", ev->step.attempt,
		    ev->step.attempts, dd);
	}
}

static void
undo_ended(const struct term_view *tv, const struct run_event *ev)
{
	static const struct { const char *word, *color; } w[] = {
		[UNDO_DONE] = { "undone", GREEN },
		[UNDO_FAILED] = { "undo failed", RED },
		[UNDO_LEFT] = { "left in place", YELLOW },
		[UNDO_NOTHING] = { "nothing to undo", DIM },
		[UNDO_NOT_DONE] = { "not undone", RED },
		[UNDO_SKIPPED] = { "skipped", RED },
	};
	enum undo_end e = ev->step.undo;

	show_step(tv, ev->rb, ev->step.i, w[e].word, w[e].color, ev->step.ms, ev->step.text);
}

/* each item in doubt, what each answer means for it, and the command */
static void
in_doubt(const struct term_view *tv, const struct run_event *ev)
{
	const char *cmd = ev->end.rolling_back ? "rollback" : "resume";
	size_t n = ev->end.ndoubts;
	struct sbuf again;

	sb_init(&again);
	if (n > 1)
		say(tv, "%sin doubt%s: %zu items; nothing was done. Check each by hand, then answer each one:\n",
		    c(tv, RED), c(tv, RESET), n);
	for (size_t k = 0; k < n; k++) {
		const struct doubt *d = &ev->end.doubts[k];
		const char *how = d->interrupted ?
		    "a signal stopped it part-way, so it may have half-happened" :
		    "it started but zdm stopped before recording how it ended";

		if (d->undo)
			say(tv, "%sthe undo of step '%s' is in doubt: %s (attempt %d),\n"
			    "%sand '%s' is not idempotent, so running it again could do it twice.\n",
			    n > 1 ? "  " : "", d->step, how, d->attempt, n > 1 ? "  " : "", d->uses);
		else if (ev->end.rolling_back)
			say(tv, "%sstep '%s' is in doubt: %s (attempt %d),\n"
			    "%sand it recorded nothing to undo it from, so zdm cannot tell whether to undo it.\n",
			    n > 1 ? "  " : "", d->step, how, d->attempt, n > 1 ? "  " : "");
		else
			say(tv, "%sstep '%s' is in doubt: %s (attempt %d),\n"
			    "%sand '%s' is not idempotent, so running it again could do it twice.\n",
			    n > 1 ? "  " : "", d->step, how, d->attempt, n > 1 ? "  " : "", d->uses);
		if (d->answer != IN_DOUBT_ASK) {
			say(tv, "%s  answered: --in-doubt %s=%s\n", n > 1 ? "  " : "", d->step,
			    d->answer == IN_DOUBT_RETRY ? "retry" : "skip");
			sb_addf(&again, " --in-doubt %s=%s", d->step,
			    d->answer == IN_DOUBT_RETRY ? "retry" : "skip");
			continue;
		}
		sb_addf(&again, " --in-doubt %s=retry|skip", d->step);
		if (d->undo || !ev->end.rolling_back)
			say(tv, "%s  If it did NOT take effect (run it again): zdm %s %s --in-doubt %s=retry\n"
			    "%s  If it DID take effect:                     zdm %s %s --in-doubt %s=skip\n",
			    n > 1 ? "  " : "", cmd, ev->run_id, d->step,
			    n > 1 ? "  " : "", cmd, ev->run_id, d->step);
		else
			say(tv, "%s  If it DID take effect (undo it):  zdm rollback %s --in-doubt %s=retry\n"
			    "%s  If it did NOT take effect:        zdm rollback %s --in-doubt %s=skip\n",
			    n > 1 ? "  " : "", ev->run_id, d->step, n > 1 ? "  " : "", ev->run_id, d->step);
	}
	if (n > 1)
		say(tv, "  then: zdm %s %s%s\n", cmd, ev->run_id, again.buf);
	sb_release(&again);
}

/* a signal as people know it: "SIGINT" (Ctrl-C), "SIGTERM" (kill) */
static const char *
sig_name(int sig, char *buf, size_t size)
{
	switch (sig) {
	case SIGINT: return "SIGINT";
	case SIGTERM: return "SIGTERM";
	case SIGHUP: return "SIGHUP";
	case SIGQUIT: return "SIGQUIT";
	}
	snprintf(buf, size, "signal %d", sig);
	return buf;
}

/* the last line of a rollback that left changes: which steps, and that
 * the system is not back where it started */
static void
left_in_place(const struct term_view *tv, const struct run_event *ev)
{
	char *m;

	if (ev->end.nleft == 0)
		return;
	m = left_text(ev->end.left, ev->end.nleft);
	say(tv, "%s%s%s (left in place, not back where it started: put %s back by hand or "
	    "accept %s)\n", c(tv, RED), m, c(tv, RESET), ev->end.nleft == 1 ? "it" : "them",
	    ev->end.nleft == 1 ? "it" : "them");
	free(m);
}

static void
ended(const struct term_view *tv, const struct run_event *ev)
{
	const char *id = ev->run_id, *step = ev->end.step, *why = ev->end.why;
	size_t n = ev->rb->nsteps;
	char d[32];

	switch (ev->end.verdict) {
	case VD_SUCCEEDED:
		fmt_duration(ev->end.ms, d, sizeof d);
		say(tv, "%ssucceeded%s: run %s, %zu step%s in %s\n", c(tv, GREEN),
		    c(tv, RESET), id, n, n == 1 ? "" : "s", d);
		break;
	case VD_DRY_RUN_OK:
		say(tv, "%sdry run ok%s: read-only steps passed; nothing was changed.\n",
		    c(tv, GREEN), c(tv, RESET));
		break;
	case VD_DRY_RUN_FAILED:
		say(tv, "dry run: step '%s' failed: %s\n", step, why);
		break;
	case VD_PAUSED:
		if (ev->end.drill) {
			/* the step itself succeeded: there is nothing to retry */
			say(tv, "%spaused%s at the failure forced after step '%s' (--fail-at; on_failure: pause); "
			    "'%s' itself succeeded.\n"
			    "  go on with the next step: zdm resume %s\n  or undo:                  zdm rollback %s\n",
			    c(tv, YELLOW), c(tv, RESET), step, step, id, id);
			break;
		}
		say(tv, "%spaused%s after step '%s' failed (on_failure: pause).\n"
		    "  retry it and go on: zdm resume %s\n  or undo:            zdm rollback %s\n",
		    c(tv, YELLOW), c(tv, RESET), step, id, id);
		break;
	case VD_LOCK_LOST:
		say(tv, "%sstopped%s: %s.\n  nothing more was done; once no other zdm acts on '%s': "
		    "zdm status %s, then zdm resume %s\n", c(tv, RED), c(tv, RESET), ev->end.why,
		    ev->rb->name, id, id);
		break;
	case VD_ABORTED:
		if (ev->end.drill) {
			say(tv, "%saborted%s at the failure forced after step '%s' (--fail-at; on_failure: abort): "
			    "nothing was undone.\n  undo by hand or: zdm rollback %s\n", c(tv, RED), c(tv, RESET),
			    step, id);
			break;
		}
		say(tv, "%saborted%s after step '%s' failed (on_failure: abort): nothing was undone.\n"
		    "  undo by hand or: zdm rollback %s\n", c(tv, RED), c(tv, RESET), step, id);
		break;
	case VD_ROLLED_BACK:
		say(tv, "%srolled back%s: step '%s' failed (%s); every completed step with an undo was undone.\n",
		    c(tv, YELLOW), c(tv, RESET), step, why);
		left_in_place(tv, ev);
		break;
	case VD_ROLLBACK_INCOMPLETE:
		say(tv, "%sROLLBACK INCOMPLETE%s: step '%s' failed and not every step could be undone.\n"
		    "  see: zdm log %s\n  retry the rest: zdm rollback %s\n", c(tv, RED),
		    c(tv, RESET), step, id, id);
		break;
	case VD_UNDONE:
		say(tv, "%srolled back%s: run %s; every completed step with an undo was undone.\n",
		    c(tv, GREEN), c(tv, RESET), id);
		left_in_place(tv, ev);
		break;
	case VD_UNDO_INCOMPLETE:
		say(tv, "%sROLLBACK INCOMPLETE%s: see zdm log %s\n", c(tv, RED), c(tv, RESET), id);
		break;
	case VD_INTERRUPTED:
		if (ev->end.rolling_back)
			say(tv, "\n%sinterrupted%s (%s) during the rollback; the journal is consistent.\n"
			    "  continue the rollback: zdm rollback %s\n", c(tv, YELLOW), c(tv, RESET),
			    sig_name(ev->end.signal, d, sizeof d), id);
		else
			say(tv, "\n%sinterrupted%s (%s); the journal is consistent.\n  continue: zdm resume %s\n"
			    "  or undo:  zdm rollback %s\n", c(tv, YELLOW), c(tv, RESET),
			    sig_name(ev->end.signal, d, sizeof d), id, id);
		break;
	case VD_WAITING_APPROVAL:
		say(tv, "%spaused%s: waiting for approval: zdm approve %s %s, then zdm resume %s\n"
		    "  to refuse (rolls back): zdm approve --deny %s %s, then zdm resume %s\n",
		    c(tv, YELLOW), c(tv, RESET), id, step, id, id, step, id);
		break;
	case VD_UNDECIDED:
		say(tv, "%spaused%s: step '%s' could not decide (%s).\n"
		    "  a person decides: zdm resume %s (measure again) or zdm rollback %s\n",
		    c(tv, YELLOW), c(tv, RESET), step, why, id, id);
		break;
	case VD_IN_DOUBT:
		in_doubt(tv, ev);
		break;
	}
}

void
term_view_observe(void *self, const struct run_event *ev)
{
	const struct term_view *tv = self;

	switch (ev->kind) {
	case OBS_RUN_STARTED:
		started(tv, ev);
		break;
	case OBS_PLAN_STEP:
		plan_step(tv, ev);
		break;
	case OBS_STEP_RUNNING:
		running(tv, ev);
		break;
	case OBS_STEP_RETURNED:
		live_stop();
		break;
	case OBS_PROGRESS:
		progress(tv, ev->progress.step, ev->progress.text);
		break;
	case OBS_WAITING:
		waiting(tv, ev);
		break;
	case OBS_STEP_ENDED:
		step_ended(tv, ev);
		break;
	case OBS_STEP_RERUN:
		say(tv, "[%zu/%zu] step '%s' was in doubt; running it again (%s)\n", ev->step.i + 1,
		    ev->rb->nsteps, ev->rb->steps[ev->step.i].id,
		    ev->step.idempotent ? "idempotent" : "--in-doubt retry");
		break;
	case OBS_NOTE:
		say(tv, "%s\n", ev->text);
		break;
	case OBS_ROLLBACK_STARTED:
		if (ev->count > 0)
			say(tv, "%srolling back%s %zu step%s, newest first\n", c(tv, BOLD),
			    c(tv, RESET), ev->count, ev->count == 1 ? "" : "s");
		break;
	case OBS_UNDO_ENDED:
		undo_ended(tv, ev);
		break;
	case OBS_RUN_ENDED:
		ended(tv, ev);
		break;
	case OBS_ERROR:
	case OBS_LOCK_WAIT:
		if (state_live)
			say(tv, "\r\033[K");	/* the state's live line */
		state_live = false;
		fprintf(stderr, "zdm: %s\n", ev->text);
		break;
	case OBS_STATE_LOST:
	case OBS_STATE_RETRY:
	case OBS_STATE_BACK:
		state_news(tv, ev);
		break;
	case OBS_RECORD_LINE:
	case OBS_RECORD:
	case OBS_FAILURE:
	case OBS_ROLLBACK_STOPPED:
	case OBS_CLOSED:
		break;
	}
}
