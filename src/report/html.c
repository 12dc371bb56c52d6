/*
 * html.c - a run as one self-contained HTML page (html.h).
 *
 * The C side writes what reads without a script (the header, the decisions,
 * the steps as a table) and the data the page's script draws (html_data:
 * one JSON object made with jansson, embedded as a non-executed
 * <script type="application/json">).  The page's script (html.js) draws
 * the timeline as positioned boxes and each gate's chart with uPlot.
 *
 * What the page holds, from the one fold of the journal (runstate.h):
 *   - the timeline: one row per step the journal names, in that order; a
 *     box per span (an attempt, or a try of its undo: runstate's spans),
 *     from the time of the record that began it to the one that ended it;
 *     a span with no end (under way, or in doubt) is drawn up to the next
 *     record of the run itself (run.paused, run.resumed, ...) or to the end;
 *   - a chart per step that journaled gate.measurement records: x the
 *     records' times, one point each; health_gate: the streak (healthy
 *     rounds in a row up, unhealthy ones down) against healthy_threshold and
 *     -unhealthy_threshold; metric_gate: the value against the bound of its
 *     success and failure conditions when each is one comparison of result
 *     with a number (html_bound); another step type: its value, no line;
 *   - marks: approvals, controls, pauses, resumptions, the rollback's start.
 *
 * Strings are redacted (redact_str, redact_json) and escaped for HTML; the
 * JSON's '<', '>' and '&' are written as \u003c, \u003e and \u0026 so no
 * text in it can end its <script> element.  The Content-Security-Policy
 * allows the two inline scripts by their SHA-256 and nothing from anywhere.
 */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/redact.h"
#include "base/util.h"
#include "core/events.h"
#include "core/journal.h"
#include "core/runstate.h"
#include "report/html.h"

static const char *
jstr(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

/* a record's time in ms since the epoch, or -1 */
static int64_t
rec_ms(const struct html_run *r, size_t k)
{
	const char *ts = k < r->log->n ? jstr(r->log->recs[k], "ts") : NULL;
	int64_t ms;

	return ts != NULL && parse_time(ts, &ms) == 0 ? ms : -1;
}

static const char *
rec_event(const struct html_run *r, size_t k)
{
	return jstr(r->log->recs[k], "event");
}

/* the time axis: the first record to the last, or to now while it goes on */
static void
axis(const struct html_run *r, int64_t *t0, int64_t *t1)
{
	int64_t now;

	*t0 = rec_ms(r, 0);
	*t1 = r->log->n > 0 ? rec_ms(r, r->log->n - 1) : -1;
	if (r->live && r->now != NULL && parse_time(r->now, &now) == 0 && now > *t1)
		*t1 = now;
	if (*t0 < 0)
		*t0 = *t1;
	if (*t1 < *t0)
		*t1 = *t0;
}

static json_t *
str_or_null(const char *s)
{
	return s != NULL ? json_string(s) : json_null();
}

/* ---- the bound of a condition ---------------------------------------------- */

static const char *
skip_ws(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* "<", "<=", ">" or ">=" at *p: its length, else 0 */
static size_t
cmp_op(const char *p)
{
	if (*p != '<' && *p != '>')
		return 0;
	return p[1] == '=' ? 2 : 1;
}

/* a number at *p (no sign of its own but '-'): its end, or NULL */
static const char *
number(const char *p, double *v)
{
	char *end;

	if (!(isdigit((unsigned char)*p) || *p == '-' || *p == '.'))
		return NULL;
	*v = strtod(p, &end);
	return end != p && isfinite(*v) ? end : NULL;
}

int
html_bound(const char *cond, double *v)
{
	const char *p;
	size_t n;

	if (cond == NULL)
		return -1;
	p = skip_ws(cond);
	if (strncmp(p, "result", 6) == 0 && !isalnum((unsigned char)p[6]) && p[6] != '_' &&
	    p[6] != '.' && p[6] != '[') {
		/* result OP NUMBER */
		p = skip_ws(p + 6);
		if ((n = cmp_op(p)) == 0 || (p = number(skip_ws(p + n), v)) == NULL)
			return -1;
		return *skip_ws(p) == '\0' ? 0 : -1;
	}
	/* NUMBER OP result */
	if ((p = number(p, v)) == NULL)
		return -1;
	p = skip_ws(p);
	if ((n = cmp_op(p)) == 0)
		return -1;
	p = skip_ws(p + n);
	if (strncmp(p, "result", 6) != 0)
		return -1;
	return *skip_ws(p + 6) == '\0' ? 0 : -1;
}

/* ---- the data ---------------------------------------------------------------- */

/* the first record after K of the run itself (run.*, rollback.started): where
 * a span with no end is drawn to; RS_NONE when none */
static size_t
next_run_record(const struct html_run *r, size_t k)
{
	for (size_t i = k + 1; i < r->log->n; i++) {
		const char *ev = rec_event(r, i);

		if (ev_namespace(ev) == EV_NS_RUN || ev_parse(ev) == EV_ROLLBACK_STARTED)
			return i;
	}
	return RS_NONE;
}

/* how a span ended, in one word the page colours by */
static const char *
span_how(const struct html_run *r, const struct rs_step *s, size_t i)
{
	const struct rs_span *sp = &s->spans[i];
	const json_t *d;

	if (sp->end == RS_NONE) {
		/* the newest span of a live run is under way; any other is in doubt */
		return r->live && i + 1 == s->nspans ? "running" : "in_doubt";
	}
	d = json_object_get(r->log->recs[sp->end], "data");
	switch (ev_parse(rec_event(r, sp->end))) {
	case EV_STEP_SUCCEEDED:
		return "succeeded";
	case EV_STEP_FAILED:
		if (json_is_true(json_object_get(d, "needs_decision")))
			return "waiting";
		return json_is_true(json_object_get(d, "will_retry")) ? "retried" : "failed";
	case EV_STEP_INTERRUPTED:
		return "interrupted";
	case EV_STEP_SKIPPED:
		return "skipped";
	case EV_UNDO_SUCCEEDED:
	case EV_UNDO_SKIPPED: {
		const char *w = rs_undone_word(rs_undone_of(ev_parse(rec_event(r, sp->end)), d));

		return w != NULL ? w : "undone";
	}
	case EV_UNDO_FAILED:
		return "undo_failed";
	default:
		return "ended";
	}
}

static json_t *
spans_json(const struct html_run *r, const struct rs_step *s, int64_t t1)
{
	json_t *a = json_array();

	for (size_t i = 0; i < s->nspans; i++) {
		const struct rs_span *sp = &s->spans[i];
		size_t endk = sp->end != RS_NONE ? sp->end : next_run_record(r, sp->start);
		int64_t start = rec_ms(r, sp->start), end = endk != RS_NONE ? rec_ms(r, endk) : t1;
		const json_t *d = sp->end != RS_NONE ? json_object_get(r->log->recs[sp->end], "data") : NULL;
		const char *msg = jstr(d, "error") != NULL ? jstr(d, "error") : jstr(d, "reason");
		json_t *o = json_pack("{s:s,s:i,s:I,s:I,s:b,s:s}", "kind",
		    sp->kind == RS_SPAN_UNDO ? "undo" : "attempt", "attempt", sp->attempt,
		    "start", (json_int_t)start, "end", (json_int_t)(end < start ? start : end),
		    "open", sp->end == RS_NONE, "how", span_how(r, s, i));

		json_object_set_new(o, "message", str_or_null(msg));
		json_array_append_new(a, o);
	}
	return a;
}

static const char *
phase_word(const struct html_run *r, const struct rs_step *s)
{
	switch (s->phase) {
	case RS_PENDING: return "pending";
	case RS_STARTED: return r->live ? "running" : "in_doubt";
	case RS_SUCCEEDED: return "succeeded";
	case RS_FAILED: return s->needs_decision ? "waiting" : "failed";
	case RS_SKIPPED: return "skipped";
	}
	return "?";
}

static const char *
undo_word(const struct rs_step *s)
{
	switch (s->undo) {
	case RS_UNDO_NONE: return NULL;
	case RS_UNDO_STARTED: return "in_doubt";
	case RS_UNDO_FAILED: return "undo_failed";
	case RS_UNDO_SUCCEEDED:
	case RS_UNDO_SKIPPED:
		return rs_undone_word(s->undone) != NULL ? rs_undone_word(s->undone) : "undone";
	}
	return NULL;
}

static json_t *
steps_json(const struct html_run *r, int64_t t1)
{
	json_t *a = json_array();

	for (size_t i = 0; i < r->st->nsteps; i++) {
		const struct rs_step *s = &r->st->steps[i];
		json_t *o = json_pack("{s:s,s:s,s:i,s:I}", "id", s->id, "state", phase_word(r, s),
		    "attempts", s->starts, "ms", (json_int_t)s->ms);

		json_object_set_new(o, "uses", str_or_null(s->uses));
		json_object_set_new(o, "undo", str_or_null(undo_word(s)));
		json_object_set_new(o, "spans", spans_json(r, s, t1));
		json_array_append_new(a, o);
	}
	return a;
}

/* who did it: a decision's or a control's actor, a resumption's login */
static const char *
who(const json_t *d)
{
	const json_t *a = json_object_get(d, "actor");

	if (json_is_string(a))
		return json_string_value(a);
	if (jstr(a, "who") != NULL)
		return jstr(a, "who");
	return jstr(a, "login");
}

/* the records people read as decisions and turns of the run, in order */
static const char *
mark_what(enum ev e)
{
	switch (e) {
	case EV_APPROVAL_REQUESTED: return "approval requested";
	case EV_APPROVAL_GRANTED: return "approved";
	case EV_APPROVAL_DENIED: return "denied";
	case EV_APPROVAL_WAITING: return "waiting for approval";
	case EV_APPROVAL_WAIT_ENDED: return "stopped waiting for approval";
	case EV_CONTROL_PAUSE: return "pause asked";
	case EV_CONTROL_ABORT: return "abort asked";
	case EV_CONTROL_PROMOTE: return "promote asked";
	case EV_RUN_PAUSED: return "paused";
	case EV_RUN_RESUMED: return "resumed";
	case EV_RUN_INTERRUPTED: return "interrupted";
	case EV_ROLLBACK_STARTED: return "rollback started";
	case EV_DRILL_FAILURE: return "failure forced (--fail-at)";
	default: return NULL;
	}
}

static char *
mark_detail(enum ev e, const json_t *d)
{
	struct sbuf b;
	const json_t *ap = json_object_get(d, "approvers");

	sb_init(&b);
	if (e == EV_APPROVAL_REQUESTED && json_array_size(ap) > 0) {
		sb_adds(&b, "approvers: ");
		for (size_t i = 0; i < json_array_size(ap); i++)
			sb_addf(&b, "%s%s", i ? ", " : "", json_string_value(json_array_get(ap, i)) ?
			    json_string_value(json_array_get(ap, i)) : "?");
	}
	if (jstr(d, "message") != NULL)
		sb_addf(&b, "%s%s", b.len ? "; " : "", jstr(d, "message"));
	if (jstr(d, "reason") != NULL)
		sb_addf(&b, "%s%s", b.len ? "; " : "", jstr(d, "reason"));
	if (e == EV_APPROVAL_WAITING && jstr(d, "until") != NULL)
		sb_addf(&b, "%suntil %s", b.len ? "; " : "", jstr(d, "until"));
	if (e == EV_RUN_RESUMED && jstr(d, "command") != NULL)
		sb_addf(&b, "%szdm %s", b.len ? "; " : "", jstr(d, "command"));
	if (jstr(d, "error") != NULL && e != EV_RUN_PAUSED)
		sb_addf(&b, "%s%s", b.len ? "; " : "", jstr(d, "error"));
	if (e == EV_RUN_PAUSED)
		sb_addf(&b, "%s%s", b.len ? "; " : "", jstr(d, "waiting_for") != NULL ?
		    "waiting for approval" : jstr(d, "error") != NULL ? jstr(d, "error") : "");
	if (jstr(d, "via") != NULL)
		sb_addf(&b, "%s(%s)", b.len ? " " : "", jstr(d, "via"));
	return sb_detach(&b);
}

static json_t *
marks_json(const struct html_run *r)
{
	json_t *a = json_array();

	for (size_t k = 0; k < r->log->n; k++) {
		const json_t *rec = r->log->recs[k], *d = json_object_get(rec, "data");
		enum ev e = ev_parse(rec_event(r, k));
		const char *what = mark_what(e);
		char *detail;
		json_t *o;

		if (what == NULL)
			continue;
		detail = mark_detail(e, d);
		o = json_pack("{s:I,s:s,s:s,s:s}", "t", (json_int_t)rec_ms(r, k), "event", rec_event(r, k),
		    "what", what, "detail", detail);
		json_object_set_new(o, "ts", str_or_null(jstr(rec, "ts")));
		json_object_set_new(o, "step", str_or_null(jstr(rec, "step")));
		json_object_set_new(o, "by", str_or_null(who(d)));
		json_array_append_new(a, o);
		free(detail);
	}
	return a;
}

/* the stretches the run stood still: run.paused or run.interrupted to the
 * next run.resumed (or the end) */
static json_t *
pauses_json(const struct html_run *r, int64_t t1)
{
	json_t *a = json_array();
	int64_t from = -1;

	for (size_t k = 0; k < r->log->n; k++) {
		enum ev e = ev_parse(rec_event(r, k));

		if ((e == EV_RUN_PAUSED || e == EV_RUN_INTERRUPTED) && from < 0)
			from = rec_ms(r, k);
		else if (e == EV_RUN_RESUMED && from >= 0) {
			json_array_append_new(a, json_pack("{s:I,s:I}", "start", (json_int_t)from,
			    "end", (json_int_t)rec_ms(r, k)));
			from = -1;
		}
	}
	if (from >= 0 && !r->st->ended)
		json_array_append_new(a, json_pack("{s:I,s:I}", "start", (json_int_t)from, "end",
		    (json_int_t)t1));
	return a;
}

/* a measured value as a number, or NULL (JSON null: a gap) */
static json_t *
as_number(const json_t *v)
{
	double d;
	char *end;

	if (json_is_integer(v))
		return json_real((double)json_integer_value(v));
	if (json_is_real(v) && isfinite(json_real_value(v)))
		return json_real(json_real_value(v));
	if (json_is_string(v)) {
		d = strtod(json_string_value(v), &end);
		if (end != json_string_value(v) && *end == '\0' && isfinite(d))
			return json_real(d);
	}
	return json_null();
}

static json_int_t
param_int(const json_t *params, const char *k, json_int_t dflt)
{
	const json_t *v = json_object_get(params, k);

	return json_is_integer(v) ? json_integer_value(v) : dflt;
}

/* the thresholds the gate's chart draws */
static json_t *
thresholds(const struct rs_step *s, bool health, bool metric)
{
	json_t *a = json_array();

	if (health) {
		json_int_t h = param_int(s->params, "healthy_threshold", 3),
		    u = param_int(s->params, "unhealthy_threshold", 3);
		char *l1 = xasprintf("healthy_threshold %lld: passes", (long long)h),
		    *l2 = xasprintf("unhealthy_threshold %lld: fails", (long long)u);

		json_array_append_new(a, json_pack("{s:s,s:f,s:s}", "label", l1, "value", (double)h,
		    "kind", "pass"));
		json_array_append_new(a, json_pack("{s:s,s:f,s:s}", "label", l2, "value", -(double)u,
		    "kind", "fail"));
		free(l1);
		free(l2);
	} else if (metric) {
		static const char *const conds[] = { "success", "failure" };

		for (size_t i = 0; i < 2; i++) {
			const char *c = jstr(s->params, conds[i]);
			double v;
			char *l;

			if (html_bound(c, &v) != 0)
				continue;
			l = xasprintf("%s: %s", conds[i], c);
			json_array_append_new(a, json_pack("{s:s,s:f,s:s}", "label", l, "value", v,
			    "kind", i == 0 ? "pass" : "fail"));
			free(l);
		}
	}
	return a;
}

/* what the gate checked, in one line under its chart */
static char *
gate_caption(const struct rs_step *s, bool health, bool metric, size_t ndrawn)
{
	struct sbuf b;
	const json_t *p = s->params;

	sb_init(&b);
	if (health) {
		const json_t *urls = json_object_get(p, "urls");

		if (jstr(p, "url") != NULL)
			sb_addf(&b, "%s", jstr(p, "url"));
		for (size_t i = 0; i < json_array_size(urls); i++)
			sb_addf(&b, "%s%s", b.len ? ", " : "", json_string_value(json_array_get(urls, i)) ?
			    json_string_value(json_array_get(urls, i)) : "?");
		sb_addf(&b, "%sup: healthy rounds in a row; down: unhealthy rounds in a row",
		    b.len ? " — " : "");
	} else if (metric) {
		if (jstr(p, "query") != NULL)
			sb_addf(&b, "%s", jstr(p, "query"));
		if (jstr(p, "success") != NULL)
			sb_addf(&b, "%ssuccess: %s", b.len ? " — " : "", jstr(p, "success"));
		if (jstr(p, "failure") != NULL)
			sb_addf(&b, "%sfailure: %s", b.len ? "; " : "", jstr(p, "failure"));
		if (ndrawn == 0 && (jstr(p, "success") != NULL || jstr(p, "failure") != NULL))
			sb_adds(&b, " (no single bound to draw)");
	}
	return sb_detach(&b);
}

static json_t *
gate_json(const struct html_run *r, const struct rs_step *s, const size_t *recs, size_t n,
    int64_t t1)
{
	bool health = s->uses != NULL && strcmp(s->uses, "health_gate") == 0;
	bool metric = s->uses != NULL && strcmp(s->uses, "metric_gate") == 0;
	int64_t first = rec_ms(r, recs[0]), last = rec_ms(r, recs[n - 1]);
	int64_t from = first, to = last;
	json_t *x = json_array(), *ys = json_array(), *g, *th = thresholds(s, health, metric);
	char *caption;

	/* the x axis spans the gate's attempts, so a threshold is a line even
	 * over a single measurement */
	for (size_t i = 0; i < s->nspans; i++) {
		size_t endk = s->spans[i].end != RS_NONE ? s->spans[i].end :
		    next_run_record(r, s->spans[i].start);
		int64_t a = rec_ms(r, s->spans[i].start), b = endk != RS_NONE ? rec_ms(r, endk) : t1;

		if (s->spans[i].kind != RS_SPAN_ATTEMPT)
			continue;
		if (a >= 0 && a < from)
			from = a;
		if (b > to)
			to = b;
	}
	if (from < first) {
		json_array_append_new(x, json_integer((json_int_t)from));
		json_array_append_new(ys, json_null());
	}
	for (size_t i = 0; i < n; i++) {
		const json_t *d = json_object_get(r->log->recs[recs[i]], "data");

		json_array_append_new(x, json_integer((json_int_t)rec_ms(r, recs[i])));
		if (health) {
			bool ok = json_is_true(json_object_get(d, "healthy"));
			json_int_t v = ok ? param_int(d, "healthy_streak", 0) : -param_int(d, "unhealthy_streak", 0);

			json_array_append_new(ys, json_integer(v));
		} else {
			json_array_append_new(ys, as_number(json_object_get(d, "value")));
		}
	}
	if (to > last) {
		json_array_append_new(x, json_integer((json_int_t)to));
		json_array_append_new(ys, json_null());
	}
	caption = gate_caption(s, health, metric, json_array_size(th));
	g = json_pack("{s:s,s:o,s:[{s:s,s:o}],s:o,s:I,s:s,s:s}", "step", s->id, "x", x, "series",
	    "label", health ? "streak" : "value", "values", ys, "thresholds", th,
	    "points", (json_int_t)n, "state", phase_word(r, s), "caption", caption);
	json_object_set_new(g, "uses", str_or_null(s->uses));
	free(caption);
	return g;
}

static json_t *
gates_json(const struct html_run *r, int64_t t1)
{
	json_t *a = json_array();
	size_t *recs = xcalloc(r->log->n + 1, sizeof *recs);

	/* one chart per step with measurements, in the order of the steps */
	for (size_t i = 0; i < r->st->nsteps; i++) {
		const struct rs_step *s = &r->st->steps[i];
		size_t n = 0;

		for (size_t k = 0; k < r->log->n; k++) {
			const char *step = jstr(r->log->recs[k], "step");

			if (ev_parse(rec_event(r, k)) == EV_GATE_MEASUREMENT && step != NULL &&
			    strcmp(step, s->id) == 0)
				recs[n++] = k;
		}
		if (n > 0)
			json_array_append_new(a, gate_json(r, s, recs, n, t1));
	}
	free(recs);
	return a;
}

json_t *
html_data(const struct html_run *r)
{
	int64_t t0, t1;
	json_t *d;

	axis(r, &t0, &t1);
	d = json_pack("{s:I,s:I,s:b,s:s}", "start", (json_int_t)t0, "end", (json_int_t)t1,
	    "live", r->live, "status", r->status);
	json_object_set_new(d, "run", str_or_null(r->st->run_id));
	json_object_set_new(d, "runbook", str_or_null(r->st->name));
	json_object_set_new(d, "steps", steps_json(r, t1));
	json_object_set_new(d, "marks", marks_json(r));
	json_object_set_new(d, "pauses", pauses_json(r, t1));
	json_object_set_new(d, "gates", gates_json(r, t1));
	redact_json(d);
	return d;
}

/* ---- the page ---------------------------------------------------------------- */

/* S, redacted, as HTML text or attribute value */
static void
esc(struct sbuf *b, const char *s)
{
	char *red = s != NULL ? redact_str(s) : NULL;

	for (const char *p = red; p != NULL && *p != '\0'; p++) {
		switch (*p) {
		case '&': sb_adds(b, "&amp;"); break;
		case '<': sb_adds(b, "&lt;"); break;
		case '>': sb_adds(b, "&gt;"); break;
		case '"': sb_adds(b, "&quot;"); break;
		case '\'': sb_adds(b, "&#39;"); break;
		default: sb_addc(b, *p);
		}
	}
	free(red);
}

/* the outcome in words, and the class it is shown with */
static const char *
outcome_words(const char *status, const char **cls)
{
	static const struct {
		const char *status, *words, *cls;
	} w[] = {
		{ "running", "in progress (running)", "live" },
		{ "rolling_back", "in progress (rolling back)", "live" },
		{ "stale", "stopped: no zdm holds it (zdm resume or zdm rollback goes on)", "warn" },
		{ "in_doubt", "in doubt: a step or an undo may or may not have taken effect", "bad" },
		{ "paused", "paused", "warn" },
		{ "interrupted", "interrupted", "warn" },
		{ "succeeded", "succeeded", "ok" },
		{ "failed", "failed", "bad" },
		{ "aborted", "aborted", "bad" },
		{ "rolled_back", "rolled back", "warn" },
		{ "rollback_failed", "rollback failed: a person must look", "bad" },
	};

	for (size_t i = 0; i < sizeof w / sizeof w[0]; i++)
		if (status != NULL && strcmp(status, w[i].status) == 0) {
			*cls = w[i].cls;
			return w[i].words;
		}
	*cls = "warn";
	return status != NULL ? status : "?";
}

/* one row of the header: <tr><th>NAME</th><td id=ID>TEXT</td></tr> */
static void
row(struct sbuf *b, const char *name, const char *id, const char *text)
{
	sb_addf(b, "<tr><th>%s</th><td id=\"%s\">", name, id);
	esc(b, text != NULL ? text : "?");
	sb_adds(b, "</td></tr>\n");
}

static void
header(struct sbuf *b, const struct html_run *r)
{
	const struct runstate *st = r->st;
	const json_t *d = json_object_get(r->log->recs[0], "data"), *a = json_object_get(d, "actor");
	const char *cls, *words = outcome_words(r->status, &cls), *end;
	const char *host = jstr(d, "host") != NULL ? jstr(d, "host") : jstr(a, "host");
	int64_t t0 = rec_ms(r, 0), t1 = -1;
	char dur[32] = "?", *s;
	const char **left;
	size_t nleft;

	sb_adds(b, "<header>\n<h1>zdm run <span id=\"run-id\">");
	esc(b, st->run_id);
	sb_adds(b, "</span> of <span id=\"runbook-name\">");
	esc(b, st->name);
	sb_adds(b, "</span>");
	if (st->dry_run)
		sb_adds(b, " <span class=\"tag\">dry run</span>");
	sb_adds(b, "</h1>\n");
	if (r->live) {
		sb_adds(b, "<p id=\"live\" class=\"banner live\">in progress");
		if (r->refresh > 0)
			sb_addf(b, ": this page reloads every %d s (written again by zdm report)", r->refresh);
		sb_adds(b, "</p>\n");
	}
	if (r->verified != 0) {
		sb_addf(b, "<p class=\"banner bad\">the journal's hash chain %s: what follows is what "
		    "its records claim, unchecked</p>\n", r->verified == 1 ? "is broken" : "could not be checked");
	}
	sb_adds(b, "<table id=\"run-header\">\n");
	sb_addf(b, "<tr><th>Outcome</th><td id=\"outcome\" class=\"%s\" data-status=\"", cls);
	esc(b, r->status);
	sb_adds(b, "\">");
	esc(b, words);
	sb_adds(b, "</td></tr>\n");
	row(b, "Runbook", "runbook", st->runbook);
	row(b, "Runbook sha256", "sha256", st->sha256);
	row(b, "Actor", "actor", jstr(a, "who") != NULL ? jstr(a, "who") : jstr(a, "login"));
	row(b, "Host", "host", host);
	row(b, "zdm version", "zdm-version", jstr(d, "zdm_version"));
	row(b, "Started (UTC)", "started", st->started);
	if (st->ended && st->ended_at != NULL && parse_time(st->ended_at, &t1) == 0)
		end = "";
	else {
		t1 = r->log->n > 0 ? rec_ms(r, r->log->n - 1) : -1;
		if (r->live && r->now != NULL)
			parse_time(r->now, &t1);
		end = r->live ? " so far" : " until its last record";
	}
	if (t0 >= 0 && t1 >= t0)
		fmt_duration(t1 - t0, dur, sizeof dur);
	s = xasprintf("%s%s", dur, end);
	row(b, "Duration", "duration", s);
	free(s);
	if (st->ended_at != NULL && st->ended)
		row(b, "Ended (UTC)", "ended", st->ended_at);
	{
		/* the failure the run ended on, or the one its rollback answers now */
		const char *fs = st->ended ? st->finished_failed_step :
		    st->rolling_back || st->failure_pending ? st->failed_step : NULL;
		const struct rs_step *f = runstate_step(st, fs);
		const char *why = st->ended && f != NULL && f->error != NULL ? f->error : st->failure;

		if (fs != NULL) {
			s = xasprintf("%s: %s", fs, why != NULL ? why : "failed");
			row(b, "Failed step", "failed-step", s);
			free(s);
		}
	}
	if (st->outcome == RS_PAUSED && st->pause.step != NULL) {
		s = st->pause.waiting_for != NULL ?
		    xasprintf("step '%s' waits for approval: zdm approve %s %s, then zdm resume %s",
			st->pause.step, st->run_id, st->pause.step, st->run_id) :
		    xasprintf("at step '%s': zdm resume %s", st->pause.step, st->run_id);
		row(b, "Paused", "paused", s);
		free(s);
	}
	if ((nleft = runstate_left(st, &left)) > 0) {
		s = left_text(left, nleft);
		row(b, "Left in place", "left-in-place", s);
		free(s);
	}
	free(left);
	sb_addf(b, "<tr><th>Hash chain</th><td id=\"chain\" class=\"%s\" data-verified=\"%s\">",
	    r->verified == 0 ? "ok" : "bad", r->verified == 0 ? "ok" : r->verified == 1 ? "broken" :
	    "unchecked");
	esc(b, r->verdict);
	sb_adds(b, "</td></tr>\n");
	s = xasprintf("%s (%zu records%s)", r->ref, r->log->n, r->log->torn ?
	    "; a torn last line, ignored" : "");
	row(b, "Journal", "journal", s);
	free(s);
	sb_adds(b, "</table>\n</header>\n");
}

/* the decisions and turns of the run, as a table (html.js adds nothing to it) */
static void
decisions(struct sbuf *b, const json_t *marks)
{
	size_t i;
	const json_t *m;

	sb_adds(b, "<section id=\"decisions-section\">\n<h2>Approvals and controls</h2>\n");
	if (json_array_size(marks) == 0) {
		sb_adds(b, "<p class=\"none\">none: no approval, pause, abort, promote, resumption "
		    "or rollback</p>\n</section>\n");
		return;
	}
	sb_adds(b, "<table id=\"decisions\">\n<thead><tr><th>When (UTC)</th><th>What</th><th>Step</th>"
	    "<th>Who</th><th>Detail</th></tr></thead>\n<tbody>\n");
	json_array_foreach(marks, i, m) {
		sb_addf(b, "<tr class=\"mark\" data-event=\"");
		esc(b, jstr(m, "event"));
		sb_adds(b, "\"><td class=\"when\">");
		esc(b, jstr(m, "ts"));
		sb_adds(b, "</td><td class=\"what\">");
		esc(b, jstr(m, "what"));
		sb_adds(b, "</td><td class=\"step\">");
		esc(b, jstr(m, "step"));
		sb_adds(b, "</td><td class=\"who\">");
		esc(b, jstr(m, "by"));
		sb_adds(b, "</td><td class=\"detail\">");
		esc(b, jstr(m, "detail"));
		sb_adds(b, "</td></tr>\n");
	}
	sb_adds(b, "</tbody>\n</table>\n</section>\n");
}

/* a word of the data ("in_doubt", "left_in_place") as people read it */
static void
add_words(struct sbuf *b, const char *w)
{
	for (const char *p = w; p != NULL && *p != '\0'; p++)
		sb_addc(b, *p == '_' ? ' ' : *p);
}

static void
steps_table(struct sbuf *b, const struct html_run *r)
{
	sb_adds(b, "<section id=\"steps-section\">\n<h2>Steps</h2>\n<table id=\"steps\">\n"
	    "<thead><tr><th>Step</th><th>Type</th><th>State</th><th>Attempts</th><th>Time</th>"
	    "<th>Undo</th><th>Message</th></tr></thead>\n<tbody>\n");
	for (size_t i = 0; i < r->st->nsteps; i++) {
		const struct rs_step *s = &r->st->steps[i];
		const char *state = phase_word(r, s), *u = undo_word(s);
		/* why it failed, was skipped, or what its undo said */
		const char *msg = s->phase == RS_FAILED ? s->error : s->phase == RS_SKIPPED ?
		    s->skip_reason : s->undo_msg;
		char dur[32];

		fmt_duration(s->ms, dur, sizeof dur);
		sb_adds(b, "<tr><td class=\"id\">");
		esc(b, s->id);
		sb_adds(b, "</td><td>");
		esc(b, s->uses);
		sb_addf(b, "</td><td class=\"state s-%s\">", state);
		add_words(b, state);
		sb_addf(b, "</td><td>%d</td><td>%s</td><td>", s->starts, dur);
		add_words(b, u);
		sb_adds(b, "</td><td class=\"msg\">");
		esc(b, msg);
		sb_adds(b, "</td></tr>\n");
	}
	sb_adds(b, "</tbody>\n</table>\n</section>\n");
}

/* NEEDLE in HAY, case ignored */
static bool
has_ci(const char *hay, const char *needle)
{
	size_t n = strlen(needle);

	for (const char *p = hay; *p != '\0'; p++)
		if (strncasecmp(p, needle, n) == 0)
			return true;
	return false;
}

/* the data as the text of a <script type="application/json">: no '<', '>'
 * or '&' in it, so nothing can end the element early */
static void
data_script(struct sbuf *b, const json_t *data)
{
	char *t = json_dumps(data, JSON_COMPACT | JSON_REAL_PRECISION(15));

	for (const char *p = t; p != NULL && *p != '\0'; p++) {
		if (*p == '<')
			sb_adds(b, "\\u003c");
		else if (*p == '>')
			sb_adds(b, "\\u003e");
		else if (*p == '&')
			sb_adds(b, "\\u0026");
		else
			sb_addc(b, *p);
	}
	free(t);
}

char *
html_page(const struct html_run *r, const struct html_assets *a, char **err)
{
	struct sbuf b;
	json_t *data;
	char h1[45], h2[45];
	const char *cls, *words = outcome_words(r->status, &cls);

	if (r->log->n == 0) {
		seterr(err, "the journal holds no record");
		return NULL;
	}
	if (a->chart_js == NULL || a->chart_css == NULL || a->page_js == NULL || a->page_css == NULL) {
		seterr(err, "this zdm was built without the report's scripts and styles");
		return NULL;
	}
	if (has_ci(a->chart_js, "</script") || has_ci(a->page_js, "</script") ||
	    has_ci(a->chart_css, "</style") || has_ci(a->page_css, "</style")) {
		seterr(err, "a built-in script or style closes its own element: it cannot be inlined");
		return NULL;
	}
	sha256_base64(a->chart_js, strlen(a->chart_js), h1);
	sha256_base64(a->page_js, strlen(a->page_js), h2);
	data = html_data(r);
	sb_init(&b);
	sb_adds(&b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
	/* nothing from anywhere: the two inline scripts by their hash, inline styles, data: images */
	sb_addf(&b, "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
	    "script-src 'sha256-%s' 'sha256-%s'; style-src 'unsafe-inline'; img-src data:; "
	    "base-uri 'none'; form-action 'none'\">\n", h1, h2);
	if (r->live && r->refresh > 0)
		sb_addf(&b, "<meta http-equiv=\"refresh\" content=\"%d\">\n", r->refresh);
	sb_adds(&b, "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
	sb_addf(&b, "<meta name=\"generator\" content=\"zdm %s\">\n<title>", ZDM_VERSION);
	esc(&b, r->st->name);
	sb_adds(&b, " ");
	esc(&b, r->st->run_id);
	sb_adds(&b, ": ");
	esc(&b, words);
	sb_adds(&b, " — zdm report</title>\n<style>\n");
	sb_adds(&b, a->chart_css);
	sb_adds(&b, "</style>\n<style>\n");
	sb_adds(&b, a->page_css);
	sb_adds(&b, "</style>\n</head>\n<body>\n");
	header(&b, r);
	sb_adds(&b, "<main>\n<section id=\"timeline-section\">\n<h2>Timeline</h2>\n"
	    "<div id=\"timeline\" class=\"timeline\"></div>\n"
	    "<noscript><p>The timeline and the gates' charts are drawn by the page's script; the "
	    "tables below say the same in words.</p></noscript>\n</section>\n"
	    "<section id=\"gates-section\">\n<h2>Gates</h2>\n<div id=\"gates\"></div>\n</section>\n");
	decisions(&b, json_object_get(data, "marks"));
	steps_table(&b, r);
	sb_adds(&b, "</main>\n<footer>\n<p>Written by zdm " ZDM_VERSION " at ");
	esc(&b, r->now);
	sb_adds(&b, " from the journal ");
	esc(&b, r->ref);
	sb_adds(&b, ".  Times are UTC.  This page is whole: it loads nothing when viewed.</p>\n"
	    "<p>Charts: uPlot ");
	esc(&b, a->chart_version);
	sb_adds(&b, " by Leon Sorokin, MIT licence, inlined.</p>\n</footer>\n"
	    "<script type=\"application/json\" id=\"zdm-data\">");
	data_script(&b, data);
	sb_adds(&b, "</script>\n<script>");
	sb_adds(&b, a->chart_js);
	sb_adds(&b, "</script>\n<script>");
	sb_adds(&b, a->page_js);
	sb_adds(&b, "</script>\n</body>\n</html>\n");
	json_decref(data);
	return sb_detach(&b);
}
