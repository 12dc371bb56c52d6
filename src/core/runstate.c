/*
 * runstate.c - a run's journal folded into the state of the run (runstate.h).
 *
 * The write-ahead rules of runner.c make the fold simple: step.started is
 * on disk before a step acts and its end (succeeded, failed, skipped) after,
 * so a step whose last record is step.started is in doubt; the same holds
 * for undo.started and an undo.  The run's own records (run., rollback.)
 * say where it stands; the last one wins.
 */
#include <stdlib.h>
#include <string.h>

#include "base/strmap.h"
#include "base/util.h"
#include "core/runstate.h"

static const char *
jstr(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static struct rs_step *
step_of(struct runstate *st, const char *id)
{
	size_t i;

	if (strmap_get(&st->index, id, &i))
		return &st->steps[i];
	if (st->nsteps == st->cap) {
		st->cap = st->cap == 0 ? 16 : st->cap * 2;
		st->steps = xrealloc(st->steps, st->cap * sizeof *st->steps);
	}
	strmap_put(&st->index, id, st->nsteps, NULL);
	memset(&st->steps[st->nsteps], 0, sizeof st->steps[0]);
	st->steps[st->nsteps].id = id;
	st->steps[st->nsteps].first_rec = RS_NONE;
	return &st->steps[st->nsteps++];
}

/* a non-null value of data, or NULL */
static const json_t *
value(const json_t *data, const char *k)
{
	const json_t *v = json_object_get(data, k);

	return v != NULL && !json_is_null(v) ? v : NULL;
}

static const char *const undone_words[] = {
	[RS_UNDONE] = "undone",
	[RS_NOTHING_TO_UNDO] = "nothing_to_undo",
	[RS_LEFT_IN_PLACE] = "left_in_place",
};

const char *
rs_undone_word(enum rs_undone u)
{
	return u == RS_UNDONE_UNKNOWN ? NULL : undone_words[u];
}

const char *
rs_undone_text(enum rs_undone u)
{
	static const char *const text[] = {
		[RS_UNDONE] = "undone",
		[RS_NOTHING_TO_UNDO] = "nothing to undo",
		[RS_LEFT_IN_PLACE] = "left in place",
	};

	return u == RS_UNDONE_UNKNOWN ? NULL : text[u];
}

size_t
runstate_left(const struct runstate *st, const char ***ids)
{
	size_t n = 0;

	*ids = xcalloc(st->nsteps + 1, sizeof **ids);
	for (size_t i = 0; i < st->nsteps; i++)
		if (st->steps[i].undone == RS_LEFT_IN_PLACE)
			(*ids)[n++] = st->steps[i].id;
	return n;
}

/* what an undo.succeeded or undo.skipped says the rollback did */
enum rs_undone
rs_undone_of(enum ev e, const json_t *data)
{
	const char *w = jstr(data, "outcome"), *why = jstr(data, "reason");

	for (size_t i = 1; w != NULL && i < sizeof undone_words / sizeof undone_words[0]; i++)
		if (strcmp(w, undone_words[i]) == 0)
			return (enum rs_undone)i;
	/* journals from before "outcome" */
	if (e == EV_UNDO_SUCCEEDED)
		return RS_UNDONE;
	if (why != NULL && strncmp(why, "undo in doubt", 13) == 0)
		return RS_UNDONE;	/* taken as done by --in-doubt skip */
	if (why != NULL && (strncmp(why, "read-only", 9) == 0 || strstr(why, "nothing to undo") != NULL))
		return RS_NOTHING_TO_UNDO;
	return RS_LEFT_IN_PLACE;
}

char *
left_text(const char *const *ids, size_t n)
{
	struct sbuf sb;

	sb_init(&sb);
	sb_addf(&sb, "rolled back; %zu step%s that changed things ha%s no undo: ", n,
	    n == 1 ? "" : "s", n == 1 ? "s" : "ve");
	for (size_t i = 0; i < n; i++)
		sb_addf(&sb, "%s%s", i ? ", " : "", ids[i]);
	return sb_detach(&sb);
}

char *
left_in_place_text(const json_t *ids)
{
	size_t n = json_array_size(ids);
	const char **v = xcalloc(n + 1, sizeof *v);
	char *m;

	for (size_t i = 0; i < n; i++)
		v[i] = json_string_value(json_array_get(ids, i));
	m = left_text(v, n);
	free(v);
	return m;
}

/* a new span of S beginning at record K */
static void
span_open(struct rs_step *s, enum rs_span_kind kind, int attempt, size_t k, size_t end)
{
	if (s->nspans == s->spans_cap) {
		s->spans_cap = s->spans_cap == 0 ? 4 : s->spans_cap * 2;
		s->spans = xrealloc(s->spans, s->spans_cap * sizeof *s->spans);
	}
	s->spans[s->nspans].kind = kind;
	s->spans[s->nspans].attempt = attempt;
	s->spans[s->nspans].start = k;
	s->spans[s->nspans++].end = end;
}

/* record K ends S's last span of KIND under way (an end without its start,
 * as a journal cut at its head would have: a span of its own) */
static void
span_close(struct rs_step *s, enum rs_span_kind kind, int attempt, size_t k)
{
	for (size_t i = s->nspans; i-- > 0;)
		if (s->spans[i].kind == kind && s->spans[i].end == RS_NONE) {
			s->spans[i].end = k;
			return;
		}
	span_open(s, kind, attempt, k, k);
}

static void
fold_step(struct runstate *st, struct rs_step *s, const char *name, enum ev e,
    const json_t *rec, const json_t *data, size_t k)
{
	enum ev_ns ns = ev_namespace(name);
	int attempt = (int)json_integer_value(json_object_get(rec, "attempt"));
	long seq = (long)json_integer_value(json_object_get(rec, "seq"));

	if (e != EV_ROLLBACK_STARTED && e != EV_RUN_PAUSED && ns != EV_NS_DRILL)
		s->last_event = name;
	if (ns == EV_NS_STEP && s->first_rec == RS_NONE)
		s->first_rec = k;
	if (ns == EV_NS_STEP && st->wait.step != NULL && strcmp(st->wait.step, s->id) == 0)
		memset(&st->wait, 0, sizeof st->wait);	/* the waiting attempt ended */
	if (ns == EV_NS_UNDO && json_is_integer(json_object_get(data, "duration_ms")))
		s->undo_ms += json_integer_value(json_object_get(data, "duration_ms"));
	if (ns != EV_NS_STEP && ns != EV_NS_UNDO && ns != EV_NS_RUN &&
	    e != EV_ROLLBACK_STARTED && e != EV_DRILL_FAILURE) {
		/* the step's own event: ctx->notes of its next attempt and undo */
		if (s->notes == NULL)
			s->notes = json_array();
		json_array_append_new(s->notes, json_pack("{s:s,s:i,s:O}", "event", name,
		    "attempt", attempt, "data", data != NULL ? (json_t *)data : json_null()));
	}
	switch (e) {
	case EV_STEP_STARTED:
		span_open(s, RS_SPAN_ATTEMPT, attempt, k, RS_NONE);
		st->failure_pending = false;
		s->phase = RS_STARTED;
		s->attempt = attempt;
		s->starts++;
		s->start_seq = seq;
		s->interrupted = false;
		s->uses = jstr(data, "uses");
		s->read_only = json_is_true(json_object_get(data, "read_only"));
		s->params = json_object_get(data, "params");
		if (s->snapshot == NULL)
			s->snapshot = value(data, "snapshot");
		break;
	case EV_STEP_SUCCEEDED:
		span_close(s, RS_SPAN_ATTEMPT, attempt, k);
		s->phase = RS_SUCCEEDED;
		s->done_seq = seq;
		s->ms += json_integer_value(json_object_get(data, "duration_ms"));
		s->outputs = json_object_get(data, "outputs");
		s->undo_data = value(data, "undo_data");
		break;
	case EV_STEP_FAILED:
		span_close(s, RS_SPAN_ATTEMPT, attempt, k);
		s->phase = RS_FAILED;
		s->ms += json_integer_value(json_object_get(data, "duration_ms"));
		if (value(data, "undo_data") != NULL)
			s->undo_data = value(data, "undo_data");	/* it changed something */
		if (!json_is_true(json_object_get(data, "will_retry")))
			s->failed = true;
		s->error = jstr(data, "error");
		s->needs_decision = json_is_true(json_object_get(data, "needs_decision"));
		s->timed_out = json_is_true(json_object_get(data, "timed_out"));
		st->failed_step = s->id;
		st->failure = s->error != NULL ? s->error : "failed";
		st->failure_pending = s->failed && !s->needs_decision &&
		    !json_is_true(json_object_get(data, "will_retry"));
		break;
	case EV_DRILL_FAILURE:
		/* --fail-at: on_failure follows, as for a step that failed */
		st->failed_step = s->id;
		st->failure = jstr(data, "error") != NULL ? jstr(data, "error") : "drill";
		st->failure_pending = true;
		break;
	case EV_STEP_INTERRUPTED:
		/* still started and not ended: in doubt (its span ends here) */
		span_close(s, RS_SPAN_ATTEMPT, attempt, k);
		s->interrupted = true;
		if (value(data, "undo_data") != NULL)
			s->undo_data = value(data, "undo_data");
		break;
	case EV_STEP_SKIPPED:
		span_open(s, RS_SPAN_ATTEMPT, attempt, k, k);
		s->phase = RS_SKIPPED;
		s->skip_reason = jstr(data, "reason");
		break;
	case EV_UNDO_STARTED:
		span_open(s, RS_SPAN_UNDO, attempt, k, RS_NONE);
		s->undo = RS_UNDO_STARTED;
		s->undo_attempt = attempt;
		break;
	case EV_UNDO_SUCCEEDED:
		span_close(s, RS_SPAN_UNDO, attempt, k);
		s->undo = RS_UNDO_SUCCEEDED;
		s->undone = rs_undone_of(e, data);
		if (jstr(data, "reason") != NULL)
			s->undo_msg = jstr(data, "reason");
		break;
	case EV_UNDO_FAILED:
		span_close(s, RS_SPAN_UNDO, attempt, k);
		s->undo = RS_UNDO_FAILED;
		s->undo_failed = true;
		s->undo_msg = jstr(data, "error");
		break;
	case EV_UNDO_SKIPPED:
		span_open(s, RS_SPAN_UNDO, attempt, k, k);
		s->undo = RS_UNDO_SKIPPED;
		s->undo_msg = jstr(data, "reason");
		s->undone = rs_undone_of(e, data);
		break;
	case EV_APPROVAL_REQUESTED:
		s->approval = e;
		s->approval_by = NULL;
		break;
	case EV_APPROVAL_GRANTED:
	case EV_APPROVAL_DENIED:
		s->approval = e;
		s->approval_by = jstr(data, "actor");
		if (e == EV_APPROVAL_GRANTED)
			s->granted_by = s->approval_by;
		if (st->pause.step != NULL && strcmp(st->pause.step, s->id) == 0) {
			st->pause.decision = e;
			st->pause.decided_by = s->approval_by;
		}
		if (st->wait.step != NULL && strcmp(st->wait.step, s->id) == 0) {
			st->wait.decision = e;
			st->wait.decided_by = s->approval_by;
		}
		break;
	case EV_APPROVAL_WAITING:
		memset(&st->wait, 0, sizeof st->wait);
		st->wait.step = s->id;
		st->wait.wait_ms = json_integer_value(json_object_get(data, "wait_ms"));
		st->wait.until = jstr(data, "until");
		st->wait.seq = seq;
		break;
	case EV_APPROVAL_WAIT_ENDED:
		if (st->wait.step != NULL && strcmp(st->wait.step, s->id) == 0)
			memset(&st->wait, 0, sizeof st->wait);
		break;
	default:
		break;
	}
}

/* a record of the run's own: where it stands */
static void
fold_run(struct runstate *st, const char *name, enum ev e, const json_t *rec,
    const json_t *data)
{
	const char *sid = jstr(rec, "step");

	if (ev_namespace(name) == EV_NS_RUN || e == EV_ROLLBACK_STARTED) {
		st->failure_pending = false;	/* answered (or a new start) */
		st->ended = e == EV_RUN_FINISHED;
		st->ended_at = NULL;
		st->exit_code = NULL;
		memset(&st->wait, 0, sizeof st->wait);	/* no zdm waits past these */
	}
	switch (e) {
	case EV_RUN_STARTED:
	case EV_RUN_RESUMED:
		st->outcome = RS_RUNNING;
		memset(&st->pause, 0, sizeof st->pause);
		break;
	case EV_RUN_PAUSED:
		st->outcome = RS_PAUSED;
		memset(&st->pause, 0, sizeof st->pause);
		st->pause.step = sid;
		st->pause.error = jstr(data, "error");
		st->pause.needs_decision = json_is_true(json_object_get(data, "needs_decision"));
		st->pause.waiting_for = jstr(data, "waiting_for");
		break;
	case EV_RUN_INTERRUPTED:
		st->outcome = RS_INTERRUPTED;
		break;
	case EV_ROLLBACK_STARTED:
		st->outcome = RS_ROLLING_BACK;
		st->rolling_back = true;
		st->failed_step = sid;
		st->failure = jstr(data, "reason") != NULL ? jstr(data, "reason") : "rollback";
		memset(&st->pause, 0, sizeof st->pause);
		break;
	case EV_RUN_FINISHED:
		st->outcome = RS_FINISHED;
		st->finished = true;
		st->status = jstr(data, "status");
		st->ended_at = jstr(rec, "ts");
		st->exit_code = json_object_get(data, "exit_code");
		if (jstr(data, "failed_step") != NULL)
			st->finished_failed_step = jstr(data, "failed_step");
		if (json_is_integer(json_object_get(data, "duration_ms")))
			st->finished_ms += json_integer_value(json_object_get(data, "duration_ms"));
		break;
	case EV_UNDO_SUCCEEDED:
		if (rs_undone_of(e, data) == RS_UNDONE)
			st->undone++;
		break;
	default:
		break;
	}
}

int
runstate_fold(const struct jlog *log, struct runstate *st, char **err)
{
	const json_t *first = log->n > 0 ? log->recs[0] : NULL;
	const json_t *fd = json_object_get(first, "data");

	memset(st, 0, sizeof *st);
	st->bad_rec = RS_NONE;
	st->nrecs = log->n;
	st->outcome = RS_RUNNING;
	st->run_id = jstr(first, "run");
	st->started = jstr(first, "ts");
	st->name = jstr(fd, "name");
	st->runbook = jstr(fd, "runbook");
	st->sha256 = jstr(fd, "sha256");
	st->actor = json_object_get(fd, "actor");
	st->dry_run = json_is_true(json_object_get(fd, "dry_run"));
	st->planned = (long)json_integer_value(json_object_get(fd, "steps"));
	for (size_t k = 0; k < log->n; k++) {
		const json_t *rec = log->recs[k], *data = json_object_get(rec, "data");
		const char *name = jstr(rec, "event"), *sid = jstr(rec, "step");
		enum ev e = ev_parse(name);
		enum ev_ns ns = ev_namespace(name);

		if (name == NULL)
			continue;
		fold_run(st, name, e, rec, data);
		if (sid != NULL)
			fold_step(st, step_of(st, sid), name, e, rec, data, k);
		else if ((ns == EV_NS_STEP || ns == EV_NS_UNDO) && st->bad_rec == RS_NONE)
			st->bad_rec = k;
	}
	if (log->n == 0)
		return seterr(err, "the journal is empty: the run never started");
	if (st->bad_rec != RS_NONE)
		return seterr(err, "journal line %zu: %s without a step", st->bad_rec + 1,
		    jstr(log->recs[st->bad_rec], "event"));
	return 0;
}

void
runstate_release(struct runstate *st)
{
	for (size_t i = 0; i < st->nsteps; i++) {
		json_decref(st->steps[i].notes);
		free(st->steps[i].spans);
	}
	free(st->steps);
	strmap_release(&st->index);
	memset(st, 0, sizeof *st);
}

const struct rs_step *
runstate_step(const struct runstate *st, const char *id)
{
	size_t i;

	return id != NULL && strmap_get(&st->index, id, &i) ? &st->steps[i] : NULL;
}

bool
rs_step_in_doubt(const struct rs_step *s)
{
	return s->phase == RS_STARTED;
}

bool
rs_undo_in_doubt(const struct rs_step *s)
{
	return s->undo == RS_UNDO_STARTED;
}

size_t
runstate_in_doubt(const struct runstate *st)
{
	size_t n = 0;

	for (size_t i = 0; i < st->nsteps; i++)
		n += rs_step_in_doubt(&st->steps[i]) + rs_undo_in_doubt(&st->steps[i]);
	return n;
}

const char *
runstate_word(const struct runstate *st)
{
	switch (st->outcome) {
	case RS_RUNNING:
		return "running or crashed";
	case RS_ROLLING_BACK:
		return "rolling back (or crashed during the rollback)";
	case RS_PAUSED:
		return "paused";
	case RS_INTERRUPTED:
		return "interrupted";
	case RS_FINISHED:
		break;
	}
	return st->status != NULL ? st->status : "?";
}

/* ---- a run in one line (zdm runs) ------------------------------------------ */

const char *const run_statuses[] = {
	"running", "rolling_back", "stale", "in_doubt", "paused", "interrupted",
	"succeeded", "failed", "aborted", "rolled_back", "rollback_failed", "unreadable", NULL,
};

/* the records of fold_run's cases that set st->outcome */
bool
runstate_places(const json_t *rec)
{
	switch (ev_parse(jstr(rec, "event"))) {
	case EV_RUN_STARTED:
	case EV_RUN_RESUMED:
	case EV_RUN_PAUSED:
	case EV_RUN_INTERRUPTED:
	case EV_RUN_FINISHED:
	case EV_ROLLBACK_STARTED:
		return true;
	default:
		return false;
	}
}

/* the step. and undo. records that move a step's phase or its undo's
 * (fold_step); step.interrupted leaves the step started (in doubt) */
bool
runstate_acts(const json_t *rec)
{
	if (jstr(rec, "step") == NULL)
		return false;
	switch (ev_parse(jstr(rec, "event"))) {
	case EV_STEP_STARTED:
	case EV_STEP_SUCCEEDED:
	case EV_STEP_FAILED:
	case EV_STEP_SKIPPED:
	case EV_UNDO_STARTED:
	case EV_UNDO_SUCCEEDED:
	case EV_UNDO_FAILED:
	case EV_UNDO_SKIPPED:
		return true;
	default:
		return false;
	}
}

void
rs_marks_add(struct rs_marks *m, const json_t *rec)
{
	if (m->first == NULL)
		m->first = rec;
	if (runstate_places(rec))
		m->place = rec;
	if (runstate_acts(rec))
		m->act = rec;
	m->last = rec;
}

static json_int_t
seq_of(const json_t *rec)
{
	return json_integer_value(json_object_get(rec, "seq"));
}

void
run_summary_fold(const struct rs_marks *m, struct run_summary *out)
{
	const json_t *cand[4] = { m->first, m->place, m->act, m->last };
	json_t *recs[4];
	struct jlog log;
	struct runstate st;
	const json_t *fd;
	const char *host, *step = NULL, *state = "?";

	memset(out, 0, sizeof *out);
	memset(&log, 0, sizeof log);
	log.recs = recs;
	/* the marks in journal order, each once */
	for (size_t i = 0; i < 4; i++) {
		size_t k;

		if (cand[i] == NULL)
			continue;
		for (k = 0; k < log.n && seq_of(recs[k]) < seq_of(cand[i]); k++)
			;
		if (k < log.n && recs[k] == cand[i])
			continue;
		memmove(recs + k + 1, recs + k, (log.n - k) * sizeof *recs);
		recs[k] = (json_t *)cand[i];
		log.n++;
	}
	runstate_fold(&log, &st, NULL);
	fd = json_object_get(m->first, "data");
	host = jstr(fd, "host");
	if (host == NULL)
		host = jstr(json_object_get(fd, "actor"), "host");
	switch (st.outcome) {
	case RS_RUNNING:
		state = "running";
		break;
	case RS_ROLLING_BACK:
		state = "rolling_back";
		break;
	case RS_PAUSED:
		state = "paused";
		step = st.pause.step;
		break;
	case RS_INTERRUPTED:
		state = "interrupted";
		break;
	case RS_FINISHED:
		state = st.status != NULL ? st.status : "?";
		step = jstr(json_object_get(m->place, "data"), "failed_step");
		break;
	}
	if (step == NULL)
		step = jstr(m->act, "step");
	{
		const char *const v[9] = { st.run_id, st.name, st.runbook, jstr(st.actor, "who"), host,
			st.started, jstr(m->last, "ts"), step, state };

		run_summary_strings(out, v);
	}
	out->open = st.outcome == RS_RUNNING || st.outcome == RS_ROLLING_BACK;
	out->in_doubt = runstate_in_doubt(&st) > 0;
	out->dry_run = st.dry_run;
	out->records = (long)seq_of(m->last);
	runstate_release(&st);
}

void
run_summary_strings(struct run_summary *s, const char *const v[9])
{
	char **f[9] = { &s->run_id, &s->name, &s->runbook, &s->actor, &s->host, &s->started,
		&s->updated, &s->step, &s->state };
	size_t len = 0;
	char *p;

	for (int i = 0; i < 9; i++)
		len += v[i] != NULL ? strlen(v[i]) + 1 : 0;
	free(s->mem);
	p = s->mem = xmalloc(len + 1);
	for (int i = 0; i < 9; i++) {
		*f[i] = NULL;
		if (v[i] != NULL) {
			size_t n = strlen(v[i]) + 1;

			memcpy(p, v[i], n);
			*f[i] = p;
			p += n;
		}
	}
}

void
run_summary_release(struct run_summary *s)
{
	free(s->mem);
	memset(s, 0, sizeof *s);
}

const char *
run_summary_status(const struct run_summary *s, bool held)
{
	if (!s->open)
		return s->state;
	if (held)
		return s->state;
	return s->in_doubt ? "in_doubt" : "stale";
}
