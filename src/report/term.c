/*
 * term.c - the terminal view of a run (term.h).
 *
 * Every line goes out redacted and flushed as it is made.  On a terminal
 * (TERM not "dumb") the running step has a live line (spinner, elapsed
 * time, the step's own progress text) that proc.c and the HTTP and SSH
 * clients keep turning through zdm_tick while they wait.  It is cut to the
 * terminal's width (by display width: a wide character counts two
 * columns) so that redrawing it with a carriage return overwrites it
 * whole, and it is wiped before any other line goes out (a plugin's log,
 * a command's output, an error on stderr) and drawn again after; other
 * lines fold at the width.  Elsewhere (a pipe, a CI log, TERM=dumb) the
 * text is plain: each step says "running" on a line of its own, each
 * progress text is a line too, and while a step runs a heartbeat line
 * says every --heartbeat (30 s) how long it has run and has left, so a
 * long soak is not ten silent minutes.
 */
#include <signal.h>
#include <locale.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>

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

#define NO_UNDO_NOTE " (steps marked 'no undo' above were left as they are)"
#define FOLD_INDENT "        "

bool
term_is_live(int fd)
{
	const char *t = getenv("TERM");

	return isatty(fd) && !(t != NULL && strcmp(t, "dumb") == 0);
}

int
term_cols(int fd)
{
	struct winsize ws;
	const char *e = getenv("COLUMNS");
	long n = e != NULL ? strtol(e, NULL, 10) : 0;

	if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		return ws.ws_col;
	return n > 0 && n < 10000 ? (int)n : 80;
}

size_t
term_fit(const char *s, size_t cols, size_t *width)
{
	static locale_t utf8;
	size_t i = 0, w = 0, n = strlen(s);
	locale_t old = (locale_t)0;
	mbstate_t st;

	/* display widths are UTF-8's whatever the locale zdm runs in */
	if (utf8 == (locale_t)0)
		utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
	if (utf8 != (locale_t)0)
		old = uselocale(utf8);
	memset(&st, 0, sizeof st);
	while (i < n) {
		wchar_t wc;
		size_t len;
		int cw;

		if (s[i] == '\033') {	/* a CSI sequence (colour, erase): no width */
			size_t j = i + 1;

			if (j < n && s[j] == '[') {
				for (j++; j < n && ((unsigned char)s[j] < 0x40 || (unsigned char)s[j] > 0x7e); j++)
					;
				if (j < n)
					j++;
			}
			i = j;
			continue;
		}
		len = mbrtowc(&wc, s + i, n - i, &st);
		if (len == (size_t)-1 || len == (size_t)-2 || len == 0) {
			memset(&st, 0, sizeof st);	/* a stray byte: one column */
			len = 1;
			cw = 1;
		} else if (wc == L'\t') {
			cw = 8;
		} else {
			cw = wcwidth(wc);
			if (cw < 0)
				cw = 0;
		}
		if (w + (size_t)cw > cols)
			break;
		w += (size_t)cw;
		i += len;
	}
	if (old != (locale_t)0)
		uselocale(old);
	if (width != NULL)
		*width = w;
	return i;
}

void
term_stamp(char *buf, size_t n)
{
	struct timespec ts;
	struct tm tm;
	char d[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(d, sizeof d, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, n, "%s.%03ldZ ", d, ts.tv_nsec / 1000000);
}

void
term_view_init(struct term_view *tv, bool json)
{
	const char *nc = getenv("NO_COLOR");

	tv->json = json;
	tv->tty = !json && term_is_live(STDOUT_FILENO);
	tv->color = tv->tty && (nc == NULL || nc[0] == '\0');
	tv->level = TERM_NORMAL;
	tv->timestamps = false;
	tv->heartbeat_ms = 30000;
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

/* ---- the running step's line on a terminal: spinner and elapsed time ----- */

static struct {
	const struct term_view *tv;	/* NULL: no step running */
	const struct runbook *rb;
	size_t i;
	int64_t t0, last, hb_last;
	int frame;
	bool shown;		/* drawn, and the cursor is on it */
	char text[160];		/* the step's own progress line */
} live;

static void
live_hide(void)
{
	if (!live.shown)
		return;
	fputs("\r\033[K", stdout);
	fflush(stdout);
	live.shown = false;
}

static void
live_draw(void)
{
	static const char *const spin[] = { "|", "/", "-", "\\" };
	const struct term_view *tv = live.tv;
	const struct rb_step *s;
	char d[32], ts[40] = "";
	char *m, *red;
	size_t cols, cut;

	if (tv == NULL || !tv->tty || tv->level == TERM_QUIET)
		return;
	s = &live.rb->steps[live.i];
	fmt_duration(zdm_now_ms() - live.t0, d, sizeof d);
	if (tv->timestamps)
		term_stamp(ts, sizeof ts);
	/* what must show (the step, its elapsed time, its progress) before
	 * its name: the name is shortened first, with an ellipsis */
	cols = (size_t)term_cols(STDOUT_FILENO);
	{
		char *head = xasprintf("%s[%zu/%zu] %s%s running%s %s", ts, live.i + 1,
		    live.rb->nsteps, c(tv, YELLOW), spin[live.frame++ % 4], c(tv, RESET), s->id);
		char *tail = xasprintf("  %s%s%s", d, live.text[0] ? "  " : "", live.text);
		char *name = s->name ? xasprintf(" — %s", s->name) : xstrdup("");
		size_t hw, tw, nw, room = cols > 1 ? cols - 1 : 1, nc;

		char *r;

		/* redacted before any cut: a cut secret would no longer be found */
		r = redact_str(tail);
		free(tail);
		tail = r;
		r = redact_str(name);
		free(name);
		name = r;
		term_fit(head, SIZE_MAX, &hw);
		term_fit(tail, SIZE_MAX, &tw);
		nc = term_fit(name, SIZE_MAX, &nw);
		if (hw + tw + nw > room) {
			size_t left = room > hw + tw ? room - hw - tw : 0;

			nc = left > 4 ? term_fit(name, left - 1, NULL) : 0;
		}
		m = xasprintf("%s%.*s%s%s", head, (int)nc, name, name[nc] != '\0' && nc > 0 ? "…" : "",
		    tail);
		free(head);
		free(tail);
		free(name);
	}
	red = redact_str(m);
	/* one column short of the width: the cursor never wraps, so the
	 * carriage return of the next draw is on this same row */
	cut = term_fit(red, cols > 1 ? cols - 1 : 1, NULL);
	fputc('\r', stdout);
	fwrite(red, 1, cut, stdout);
	fputs(red[cut] != '\0' ? c(tv, RESET) : "", stdout);
	fputs("\033[K", stdout);
	fflush(stdout);
	live.shown = true;
	free(m);
	free(red);
}

static void say_line(const struct term_view *tv, FILE *f, bool stamp, const char *line);

/* not on a terminal: how long the running step has run and has left */
static void
heartbeat(int64_t now)
{
	const struct term_view *tv = live.tv;
	const struct rb_step *s = &live.rb->steps[live.i];
	int64_t ran = now - live.t0, of = 0;
	const char *what = NULL;
	json_t *dur = s->with != NULL ? json_object_get(s->with, "duration") : NULL;
	char d[32], l[32] = "", o[32] = "", *m;

	/* a step that lasts a set time (a soak: wait) says so; else its timeout */
	if (json_is_integer(dur) && json_integer_value(dur) > 0) {
		of = json_integer_value(dur);
		what = "duration";
	} else if (json_is_string(dur) && parse_duration(json_string_value(dur), &of) == 0 && of > 0) {
		what = "duration";
	} else if (s->timeout_ms > 0) {
		of = s->timeout_ms;
		what = "timeout";
	}
	fmt_duration(ran, d, sizeof d);
	if (what != NULL) {
		fmt_duration(of > ran ? of - ran : 0, l, sizeof l);
		fmt_duration(of, o, sizeof o);
	}
	m = xasprintf("[%zu/%zu] still running %s: %s elapsed%s%s%s%s%s%s%s", live.i + 1,
	    live.rb->nsteps, s->id, d, what ? ", " : "", l, what ? " left of its " : "", o,
	    what ? " " : "", what ? what : "", live.text[0] ? "; last: " : "");
	if (live.text[0] != '\0') {
		char *t = xasprintf("%s%s", m, live.text);

		free(m);
		m = t;
	}
	say_line(tv, out(tv), true, m);
	free(m);
}

static void
live_tick(void)
{
	const struct term_view *tv = live.tv;
	int64_t now = zdm_now_ms();

	if (tv == NULL)
		return;
	if (tv->tty) {
		if (now - live.last < 200)
			return;
		live.last = now;
		live_draw();
	} else if (tv->heartbeat_ms > 0 && now - live.hb_last >= tv->heartbeat_ms) {
		live.hb_last = now;
		heartbeat(now);
	}
}

static void
live_start(const struct term_view *tv, const struct runbook *rb, size_t i)
{
	live.tv = tv;
	live.rb = rb;
	live.i = i;
	live.t0 = live.last = live.hb_last = zdm_now_ms();
	live.frame = 0;
	live.text[0] = '\0';
	if ((tv->tty && tv->level != TERM_QUIET) || (!tv->tty && tv->heartbeat_ms > 0))
		zdm_tick = live_tick;
	zdm_live_hide = live_hide;	/* a step's own warning or prompt goes above it */
	live_draw();
}

static void
live_stop(void)
{
	live_hide();
	live.tv = NULL;
	zdm_tick = NULL;
	zdm_live_hide = NULL;
}

/* ---- lines -------------------------------------------------------------- */

/* one line (no newline), redacted, with the time in front if asked (or
 * stamp: a heartbeat); on a terminal folded at its width, with the live
 * line wiped before and drawn again after */
static void
say_line(const struct term_view *tv, FILE *f, bool stamp, const char *line)
{
	char ts[40] = "";
	char *red = redact_str(line);
	const char *p = red;

	if (tv->timestamps || stamp)
		term_stamp(ts, sizeof ts);
	live_hide();
	if (!tv->tty) {
		fprintf(f, "%s%s\n", ts, red);
	} else {
		size_t cols = (size_t)term_cols(STDOUT_FILENO), tw, lead = 0;
		const char *indent = cols > 24 ? FOLD_INDENT : "";
		bool first = true;

		term_fit(ts, SIZE_MAX, &tw);
		fputs(ts, f);
		lead = tw;
		for (;;) {
			size_t room = cols > lead ? cols - lead : 1, cut = term_fit(p, room, NULL);

			if (p[cut] == '\0') {
				fprintf(f, "%s\n", p);
				break;
			}
			if (cut == 0) {	/* a character wider than the room: it alone, whole */
				for (cut = 1; ((unsigned char)p[cut] & 0xc0) == 0x80; cut++)
					;
			} else if (p[cut] != ' ') {	/* at a space if one is in the last third */
				size_t k = cut;

				while (k > cut * 2 / 3 && p[k - 1] != ' ')
					k--;
				if (k > cut * 2 / 3)
					cut = k;
			}
			fwrite(p, 1, cut, f);
			fprintf(f, "%s\n%s", c(tv, RESET), indent);
			p += cut;
			if (first) {
				term_fit(indent, SIZE_MAX, &tw);
				lead = tw;
				first = false;
			}
		}
	}
	fflush(f);
	free(red);
	if (live.tv != NULL)
		live_draw();
}

/* text of one or more lines, each ending in a newline */
static void
say_to(const struct term_view *tv, FILE *f, const char *text)
{
	const char *p = text;

	while (*p != '\0') {
		const char *nl = strchr(p, '\n');
		char *line = nl ? xstrndup(p, (size_t)(nl - p)) : xstrdup(p);

		say_line(tv, f, false, line);
		free(line);
		if (nl == NULL)
			break;
		p = nl + 1;
	}
}

static void
say(const struct term_view *tv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
say(const struct term_view *tv, const char *fmt, ...)
{
	va_list ap;
	char *m;

	va_start(ap, fmt);
	m = xvasprintf(fmt, ap);
	va_end(ap);
	say_to(tv, out(tv), m);
	free(m);
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

/* a command's line as a terminal would leave it: what follows its last
 * carriage return, tabs as spaces, no control or escape sequences */
static char *
clean_line(const char *s)
{
	const char *cr = strrchr(s, '\r');
	struct sbuf b;
	size_t col = 0;

	sb_init(&b);
	for (s = cr ? cr + 1 : s; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '\033') {
			if (s[1] == '[') {
				for (s += 2; *s != '\0' && ((unsigned char)*s < 0x40 || (unsigned char)*s > 0x7e); s++)
					;
				if (*s == '\0')
					break;
			}
			continue;
		}
		if (ch == '\t') {
			do
				sb_add(&b, " ", 1);
			while (++col % 8 != 0);
			continue;
		}
		if (ch < 0x20 || ch == 0x7f)
			continue;
		sb_add(&b, s, 1);
		if ((ch & 0xc0) != 0x80)
			col++;
	}
	return sb_detach(&b);
}

/* a line a step's command printed (-v) or a plugin logged, under the step */
static void
output(const struct term_view *tv, const struct run_event *ev)
{
	bool log = strcmp(ev->output.stream, "log") == 0;
	char *t, *m;

	if (log ? tv->level == TERM_QUIET : tv->level != TERM_VERBOSE)
		return;
	t = clean_line(ev->output.text);
	if (log) {
		m = xasprintf("  | %s: %s", ev->output.step ? ev->output.step : "?", t);
		say_line(tv, stderr, false, m);
	} else {
		m = xasprintf("        %s: %s", strcmp(ev->output.stream, "stderr") == 0 ? "err" : "out", t);
		say_line(tv, out(tv), false, m);
	}
	free(m);
	free(t);
}

/* a step's progress: on a terminal, beside the spinner; else one line each
 * time the text changes, so CI logs show a gate's measurements too */
static void
progress(const struct term_view *tv, const char *step, const char *text)
{
	if (tv->json || tv->level == TERM_QUIET)
		return;
	if (tv->tty) {
		char *t = clean_line(text);

		snprintf(live.text, sizeof live.text, "%s", t);
		free(t);
		if (live.tv != NULL) {
			live.last = zdm_now_ms();
			live_draw();
		}
	} else {
		snprintf(live.text, sizeof live.text, "%s", text);
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

/* the steps of this plan shown as skipped (if: false): a rollback has
 * nothing of theirs to leave; freed with the last step's line, or at the
 * end of a plan that stopped before it */
static bool *plan_skipped;

/* after the plan's last step: what a rollback of this plan would leave */
static void
plan_summary(const struct term_view *tv, const struct run_event *ev)
{
	struct sbuf sb;
	size_t n = 0;

	if (ev->plan.i + 1 != ev->rb->nsteps)
		return;
	sb_init(&sb);
	for (size_t i = 0; i < ev->rb->nsteps; i++)
		if (ev->rb->steps[i].undo_kind == RB_NOT_UNDONE &&
		    !(plan_skipped != NULL && plan_skipped[i]))
			sb_addf(&sb, "%s%s", n++ ? ", " : "", ev->rb->steps[i].id);
	if (n > 0)
		say(tv, "%zu step%s that change%s things ha%s no undo: %s (a rollback leaves %s in place)\n",
		    n, n == 1 ? "" : "s", n == 1 ? "s" : "", n == 1 ? "s" : "ve", sb.buf,
		    n == 1 ? "its change" : "their changes");
	sb_release(&sb);
	free(plan_skipped);
	plan_skipped = NULL;
}

static void
plan_step(const struct term_view *tv, const struct run_event *ev)
{
	const struct rb_step *s = &ev->rb->steps[ev->plan.i];

	say(tv, "%2zu. %s%s%s (%s%s)%s%s\n", ev->plan.i + 1, s->id, s->name ? " — " : "",
	    s->name ? s->name : "", s->uses, s->read_only ? ", read-only" : "",
	    s->if_expr ? "  if: " : "", s->if_expr ? s->if_expr : "");
	if (ev->plan.when == PLAN_SKIPPED) {
		say(tv, "      skipped: if: is false\n");
		if (plan_skipped == NULL)
			plan_skipped = xcalloc(ev->rb->nsteps, sizeof *plan_skipped);
		plan_skipped[ev->plan.i] = true;
		plan_summary(tv, ev);
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
	plan_summary(tv, ev);
}

static void
running(const struct term_view *tv, const struct run_event *ev)
{
	const struct runbook *rb = ev->rb;
	const struct rb_step *s = &rb->steps[ev->step.i];

	if (!tv->tty && !tv->json && tv->level != TERM_QUIET)
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

	if (tv->level == TERM_QUIET && (e == END_OK || e == END_PLANNED || e == END_SKIPPED))
		return;
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

	if (tv->level == TERM_QUIET && e == UNDO_DONE)	/* "no undo": left changed, the verdict names them */
		return;
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
	case VD_PAUSE_ASKED:
		say(tv, "%spaused%s before step '%s': %s.\n"
		    "  go on:   zdm resume %s\n  or undo: zdm rollback %s\n",
		    c(tv, YELLOW), c(tv, RESET), step, why, id, id);
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
		if (ev->end.aborted_by != NULL)
			say(tv, "%srolled back%s: %s; every completed step with an undo was undone.\n",
			    c(tv, YELLOW), c(tv, RESET), why);
		else if (ev->end.drill)
			say(tv, "%srolled back%s at the failure forced after step '%s' (--fail-at; '%s' itself "
			    "succeeded); every completed step with an undo was undone.\n", c(tv, YELLOW),
			    c(tv, RESET), step, step);
		else
			say(tv, "%srolled back%s: step '%s' failed (%s); every completed step with an undo "
			    "was undone.\n", c(tv, YELLOW), c(tv, RESET), step, why);
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
	bool quiet = tv->level == TERM_QUIET;

	switch (ev->kind) {
	case OBS_RUN_STARTED:
		if (!quiet || ev->start.how == HOW_PLAN)
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
	case OBS_OUTPUT:
		output(tv, ev);
		break;
	case OBS_STEP_ENDED:
		step_ended(tv, ev);
		break;
	case OBS_STEP_RERUN:
		if (!quiet)
			say(tv, "[%zu/%zu] step '%s' was in doubt; running it again (%s)\n", ev->step.i + 1,
			    ev->rb->nsteps, ev->rb->steps[ev->step.i].id,
			    ev->step.idempotent ? "idempotent" : "--in-doubt retry");
		break;
	case OBS_NOTE:
		if (!quiet)
			say(tv, "%s\n", ev->text);
		break;
	case OBS_ROLLBACK_STARTED:
		if (ev->count > 0 && !quiet)
			say(tv, "%srolling back%s %zu step%s, newest first\n", c(tv, BOLD),
			    c(tv, RESET), ev->count, ev->count == 1 ? "" : "s");
		break;
	case OBS_UNDO_ENDED:
		undo_ended(tv, ev);
		break;
	case OBS_RUN_ENDED:
		live_stop();
		free(plan_skipped);
		plan_skipped = NULL;
		ended(tv, ev);
		break;
	case OBS_ERROR:
	case OBS_LOCK_WAIT: {
		char *m = xasprintf("zdm: %s", ev->text);

		if (state_live)
			say(tv, "\r\033[K");	/* the state's live line */
		state_live = false;
		say_line(tv, stderr, false, m);
		free(m);
		break;
	}
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
