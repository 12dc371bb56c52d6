/*
 * test_runstate.c - unit checks for src/core/events.c and runstate.c: the
 * event names, and hand-written journals folded into the state of a run
 * (a step in doubt after a crash, an undo in doubt, a run paused for an
 * approval, a finished rollback, journals that cannot be replayed).
 *
 * unit_runstate() prints one "ok - ..." / "not ok - ..." line per check and
 * returns the number of failed checks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "core/events.h"
#include "core/journal.h"
#include "core/runstate.h"

int unit_runstate(void);

static int failed;

static void
check(bool cond, const char *what)
{
	if (cond) {
		printf("ok - runstate: %s\n", what);
		return;
	}
	failed++;
	printf("not ok - runstate: %s\n", what);
}

static bool
same(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

/* a jlog of the records (JSON texts, NULL-terminated); seq counts from 1 */
static void
records(struct jlog *log, const char *const *recs)
{
	memset(log, 0, sizeof *log);
	for (size_t i = 0; recs[i] != NULL; i++) {
		json_error_t e;
		json_t *r = json_loads(recs[i], 0, &e);

		if (r == NULL) {
			printf("not ok - runstate: record %zu does not parse: %s\n", i + 1, e.text);
			failed++;
			continue;
		}
		json_object_set_new(r, "seq", json_integer((json_int_t)log->n + 1));
		json_object_set_new(r, "run", json_string("R1"));
		log->recs = xrealloc(log->recs, (log->n + 1) * sizeof *log->recs);
		log->recs[log->n++] = r;
	}
}

#define STARTED "{\"event\":\"run.started\",\"ts\":\"2026-11-01T10:00:00Z\",\"data\":" \
	"{\"name\":\"deploy\",\"runbook\":\"/rb/deploy.yml\",\"sha256\":\"abc\"," \
	"\"actor\":{\"login\":\"ann\"},\"dry_run\":false,\"steps\":3}}"

static void
events(void)
{
	int bad = 0;

	for (int e = EV_UNKNOWN + 1; e < EV_COUNT; e++)
		if (ev_name((enum ev)e) == NULL || ev_parse(ev_name((enum ev)e)) != (enum ev)e)
			bad++;
	check(bad == 0, "every event's name parses back to it");
	check(ev_parse("backfill.batch") == EV_UNKNOWN && ev_parse(NULL) == EV_UNKNOWN &&
	    ev_name(EV_UNKNOWN) == NULL, "a plugin's note is EV_UNKNOWN");
	check(ev_namespace("undo.whatever") == EV_NS_UNDO && ev_namespace("approval.granted") == EV_NS_NOTE,
	    "namespaces by prefix");
	check(ev_note_allowed("backfill.batch") && !ev_note_allowed("step.done") &&
	    !ev_note_allowed("rollback.x") && !ev_note_allowed("nodot") &&
	    !ev_note_allowed("control.abort") && !ev_note_allowed("approval.granted"),
	    "a step may note area.what outside zdm's namespaces");
}

static void
crashed_step(void)
{
	static const char *const j[] = {
		STARTED,
		"{\"event\":\"step.started\",\"step\":\"a\",\"attempt\":1,\"data\":{\"uses\":\"exec\",\"params\":{}}}",
		"{\"event\":\"step.succeeded\",\"step\":\"a\",\"attempt\":1,\"data\":"
		    "{\"outputs\":{\"v\":1},\"undo_data\":{\"was\":\"x\"},\"duration_ms\":5}}",
		"{\"event\":\"step.started\",\"step\":\"b\",\"attempt\":1,\"data\":"
		    "{\"uses\":\"exec\",\"snapshot\":{\"before\":2}}}",
		"{\"event\":\"backfill.batch\",\"step\":\"b\",\"attempt\":1,\"data\":{\"n\":1}}",
		NULL,
	};
	struct jlog log;
	struct runstate st;
	const struct rs_step *a, *b;
	char *err = NULL;

	records(&log, j);
	check(runstate_fold(&log, &st, &err) == 0 && err == NULL, "crashed run: folds");
	a = runstate_step(&st, "a");
	b = runstate_step(&st, "b");
	check(same(st.run_id, "R1") && same(st.name, "deploy") && same(st.sha256, "abc") &&
	    same(st.started, "2026-11-01T10:00:00Z") && !st.dry_run, "crashed run: run.started's facts");
	check(st.outcome == RS_RUNNING && same(runstate_word(&st), "running or crashed") && !st.ended,
	    "crashed run: running or crashed");
	check(a != NULL && a->phase == RS_SUCCEEDED && a->done_seq == 3 &&
	    json_integer_value(json_object_get(a->outputs, "v")) == 1 &&
	    same(json_string_value(json_object_get(a->undo_data, "was")), "x"),
	    "crashed run: the step before has its outputs and undo_data");
	check(b != NULL && rs_step_in_doubt(b) && b->attempt == 1 && b->start_seq == 4 &&
	    json_integer_value(json_object_get(b->snapshot, "before")) == 2,
	    "crashed run: the step in flight is in doubt, with its snapshot");
	check(b != NULL && json_array_size(b->notes) == 1 && same(b->last_event, "backfill.batch"),
	    "crashed run: its own note is kept");
	check(runstate_in_doubt(&st) == 1, "crashed run: one item in doubt");
	check(a != NULL && a->nspans == 1 && a->spans[0].kind == RS_SPAN_ATTEMPT &&
	    a->spans[0].start == 1 && a->spans[0].end == 2 && b != NULL && b->nspans == 1 &&
	    b->spans[0].start == 3 && b->spans[0].end == RS_NONE,
	    "crashed run: spans: a's attempt ended, b's under way (no end)");
	runstate_release(&st);
	jlog_release(&log);
}

static void
undo_in_doubt(void)
{
	static const char *const j[] = {
		STARTED,
		"{\"event\":\"step.started\",\"step\":\"a\",\"attempt\":1,\"data\":{}}",
		"{\"event\":\"step.succeeded\",\"step\":\"a\",\"attempt\":1,\"data\":{\"undo_data\":{\"k\":1}}}",
		"{\"event\":\"step.started\",\"step\":\"b\",\"attempt\":1,\"data\":{}}",
		"{\"event\":\"step.failed\",\"step\":\"b\",\"attempt\":1,\"data\":"
		    "{\"error\":\"boom\",\"will_retry\":false,\"duration_ms\":7}}",
		"{\"event\":\"rollback.started\",\"step\":\"b\",\"data\":{\"reason\":\"boom\"}}",
		"{\"event\":\"undo.started\",\"step\":\"a\",\"attempt\":1,\"data\":{\"uses\":\"exec\"}}",
		NULL,
	};
	struct jlog log;
	struct runstate st;
	const struct rs_step *a, *b;

	records(&log, j);
	check(runstate_fold(&log, &st, NULL) == 0, "undo in doubt: folds");
	a = runstate_step(&st, "a");
	b = runstate_step(&st, "b");
	check(st.outcome == RS_ROLLING_BACK && st.rolling_back &&
	    same(runstate_word(&st), "rolling back (or crashed during the rollback)"),
	    "undo in doubt: rolling back");
	check(a != NULL && rs_undo_in_doubt(a) && a->undo_attempt == 1 && !rs_step_in_doubt(a),
	    "undo in doubt: the undo started and did not end");
	check(b != NULL && b->phase == RS_FAILED && b->failed && same(b->error, "boom") && b->ms == 7,
	    "undo in doubt: the failed step");
	check(same(st.failed_step, "b") && same(st.failure, "boom"), "undo in doubt: why it rolls back");
	check(a != NULL && same(a->last_event, "undo.started") && b != NULL &&
	    same(b->last_event, "step.failed"), "undo in doubt: rollback.started is not a step's event");
	check(runstate_in_doubt(&st) == 1, "undo in doubt: one item in doubt");
	runstate_release(&st);
	jlog_release(&log);
}

static void
paused_approval(void)
{
	static const char *const j[] = {
		STARTED,
		"{\"event\":\"step.started\",\"step\":\"go\",\"attempt\":1,\"data\":"
		    "{\"uses\":\"approval\",\"params\":{\"approvers\":[\"bob\"]}}}",
		"{\"event\":\"approval.requested\",\"step\":\"go\",\"attempt\":1,\"data\":{\"at_ms\":1}}",
		"{\"event\":\"step.failed\",\"step\":\"go\",\"attempt\":1,\"data\":"
		    "{\"error\":\"waiting for approval\",\"needs_decision\":true}}",
		"{\"event\":\"run.paused\",\"step\":\"go\",\"data\":{\"error\":\"waiting\","
		    "\"needs_decision\":true,\"waiting_for\":\"approval\"}}",
		NULL,
		"{\"event\":\"approval.granted\",\"step\":\"go\",\"data\":{\"actor\":\"bob\"}}",
		"{\"event\":\"run.resumed\",\"data\":{\"command\":\"resume\"}}",
		NULL,
	};
	struct jlog log;
	struct runstate st;
	const struct rs_step *s;

	records(&log, j);
	check(runstate_fold(&log, &st, NULL) == 0, "paused approval: folds");
	s = runstate_step(&st, "go");
	check(st.outcome == RS_PAUSED && same(runstate_word(&st), "paused"), "paused approval: paused");
	check(same(st.pause.step, "go") && same(st.pause.waiting_for, "approval") &&
	    st.pause.needs_decision && st.pause.decision == EV_UNKNOWN,
	    "paused approval: waits for an approval of the step");
	check(s != NULL && same(s->uses, "approval") && json_is_array(json_object_get(s->params, "approvers")) &&
	    s->approval == EV_APPROVAL_REQUESTED && s->needs_decision && !rs_step_in_doubt(s),
	    "paused approval: the step asked and ended undecided");
	check(runstate_in_doubt(&st) == 0, "paused approval: nothing in doubt");
	runstate_release(&st);
	/* decided, then resumed */
	log.recs = xrealloc(log.recs, (log.n + 2) * sizeof *log.recs);
	log.recs[log.n] = json_loads(j[6], 0, NULL);
	json_object_set_new(log.recs[log.n++], "run", json_string("R1"));
	runstate_fold(&log, &st, NULL);
	s = runstate_step(&st, "go");
	check(st.outcome == RS_PAUSED && st.pause.decision == EV_APPROVAL_GRANTED &&
	    same(st.pause.decided_by, "bob") && s != NULL && same(s->granted_by, "bob") &&
	    json_array_size(s->notes) == 2, "paused approval: granted by bob, a note of the step");
	runstate_release(&st);
	log.recs[log.n] = json_loads(j[7], 0, NULL);
	json_object_set_new(log.recs[log.n++], "run", json_string("R1"));
	runstate_fold(&log, &st, NULL);
	check(st.outcome == RS_RUNNING && st.pause.step == NULL, "paused approval: resumed, no longer paused");
	runstate_release(&st);
	jlog_release(&log);
}

static void
finished_rollback(void)
{
	static const char *const j[] = {
		STARTED,
		"{\"event\":\"step.started\",\"step\":\"a\",\"attempt\":1,\"data\":{}}",
		"{\"event\":\"step.succeeded\",\"step\":\"a\",\"attempt\":1,\"data\":{\"undo_data\":{\"k\":1}}}",
		"{\"event\":\"step.started\",\"step\":\"b\",\"attempt\":1,\"data\":{}}",
		"{\"event\":\"step.failed\",\"step\":\"b\",\"attempt\":1,\"data\":{\"error\":\"e1\",\"will_retry\":true}}",
		"{\"event\":\"step.started\",\"step\":\"b\",\"attempt\":2,\"data\":{}}",
		"{\"event\":\"step.failed\",\"step\":\"b\",\"attempt\":2,\"data\":{\"error\":\"e2\",\"will_retry\":false}}",
		"{\"event\":\"rollback.started\",\"step\":\"b\",\"data\":{\"reason\":\"e2\"}}",
		"{\"event\":\"undo.started\",\"step\":\"a\",\"attempt\":1,\"data\":{}}",
		"{\"event\":\"undo.succeeded\",\"step\":\"a\",\"attempt\":1,\"data\":{\"duration_ms\":3}}",
		"{\"event\":\"run.finished\",\"ts\":\"2026-11-01T10:01:00Z\",\"data\":{\"status\":\"rolled_back\","
		    "\"exit_code\":1,\"failed_step\":\"b\",\"duration_ms\":60000}}",
		NULL,
	};
	struct jlog log;
	struct runstate st;
	const struct rs_step *a, *b;

	records(&log, j);
	check(runstate_fold(&log, &st, NULL) == 0, "finished rollback: folds");
	a = runstate_step(&st, "a");
	b = runstate_step(&st, "b");
	check(st.outcome == RS_FINISHED && st.finished && st.ended && same(runstate_word(&st), "rolled_back"),
	    "finished rollback: rolled_back");
	check(same(st.ended_at, "2026-11-01T10:01:00Z") && json_integer_value(st.exit_code) == 1 &&
	    same(st.finished_failed_step, "b") && st.finished_ms == 60000, "finished rollback: its end");
	check(st.undone == 1 && a != NULL && a->undo == RS_UNDO_SUCCEEDED && a->undo_ms == 3,
	    "finished rollback: the undo succeeded");
	check(b != NULL && b->starts == 2 && b->attempt == 2 && b->failed && same(b->error, "e2"),
	    "finished rollback: the retried step failed for good");
	check(runstate_in_doubt(&st) == 0, "finished rollback: nothing in doubt");
	check(b != NULL && b->nspans == 2 && b->spans[0].attempt == 1 && b->spans[0].start == 3 &&
	    b->spans[0].end == 4 && b->spans[1].attempt == 2 && b->spans[1].start == 5 &&
	    b->spans[1].end == 6, "finished rollback: spans: one per attempt of the retried step");
	check(a != NULL && a->nspans == 2 && a->spans[0].kind == RS_SPAN_ATTEMPT &&
	    a->spans[1].kind == RS_SPAN_UNDO && a->spans[1].start == 8 && a->spans[1].end == 9,
	    "finished rollback: spans: the attempt, then the undo");
	runstate_release(&st);
	jlog_release(&log);
}

static void
unusable(void)
{
	static const char *const j[] = {
		STARTED,
		"{\"event\":\"step.started\",\"attempt\":1,\"data\":{}}",
		NULL,
	};
	struct jlog log;
	struct runstate st;
	char *err = NULL;

	memset(&log, 0, sizeof log);
	check(runstate_fold(&log, &st, &err) == -1 && same(err, "the journal is empty: the run never started") &&
	    same(runstate_word(&st), "running or crashed"), "an empty journal cannot be replayed");
	free(err);
	err = NULL;
	runstate_release(&st);
	records(&log, j);
	check(runstate_fold(&log, &st, &err) == -1 && st.bad_rec == 1 &&
	    same(err, "journal line 2: step.started without a step"), "a step record without a step");
	free(err);
	runstate_release(&st);
	jlog_release(&log);
}

/* what each undo did: "outcome" as recorded, and inferred for journals
 * written before it was */
static void
undo_outcomes(void)
{
	const char *j[] = {
		STARTED,
		"{\"event\":\"step.started\",\"step\":\"a\",\"attempt\":1,\"data\":{}}",
		"{\"event\":\"step.succeeded\",\"step\":\"a\",\"attempt\":1,\"data\":{\"undo_data\":null}}",
		"{\"event\":\"step.started\",\"step\":\"b\",\"attempt\":1,\"data\":{}}",
		"{\"event\":\"step.succeeded\",\"step\":\"b\",\"attempt\":1,\"data\":{\"undo_data\":null}}",
		"{\"event\":\"step.started\",\"step\":\"c\",\"attempt\":1,\"data\":{}}",
		"{\"event\":\"step.succeeded\",\"step\":\"c\",\"attempt\":1,\"data\":{\"undo_data\":null}}",
		"{\"event\":\"step.started\",\"step\":\"d\",\"attempt\":1,\"data\":{}}",
		"{\"event\":\"step.succeeded\",\"step\":\"d\",\"attempt\":1,\"data\":{\"undo_data\":null}}",
		"{\"event\":\"step.started\",\"step\":\"e\",\"attempt\":1,\"data\":{}}",
		"{\"event\":\"step.succeeded\",\"step\":\"e\",\"attempt\":1,\"data\":{\"undo_data\":null}}",
		"{\"event\":\"rollback.started\",\"data\":{\"reason\":\"zdm rollback\"}}",
		"{\"event\":\"undo.started\",\"step\":\"e\",\"attempt\":1,\"data\":{\"uses\":\"t\"}}",
		"{\"event\":\"undo.succeeded\",\"step\":\"e\",\"attempt\":1,\"data\":{\"duration_ms\":1,"
		    "\"outcome\":\"left_in_place\",\"reason\":\"no undo_sql\"}}",
		"{\"event\":\"undo.skipped\",\"step\":\"d\",\"data\":{\"reason\":\"read-only: nothing to undo\"}}",
		"{\"event\":\"undo.skipped\",\"step\":\"c\",\"data\":{\"reason\":\"no undo: the type has none and the step sets none\"}}",
		"{\"event\":\"undo.started\",\"step\":\"b\",\"attempt\":1,\"data\":{\"uses\":\"t\"}}",
		"{\"event\":\"undo.succeeded\",\"step\":\"b\",\"attempt\":1,\"data\":{\"duration_ms\":1}}",
		"{\"event\":\"undo.skipped\",\"step\":\"a\",\"data\":{\"reason\":\"x\",\"outcome\":\"nothing_to_undo\"}}",
		NULL,
	};
	struct jlog log;
	struct runstate st;
	const char **left;
	size_t n;

	records(&log, j);
	check(runstate_fold(&log, &st, NULL) == 0, "undo outcomes: folds");
	check(runstate_step(&st, "e")->undone == RS_LEFT_IN_PLACE &&
	    same(runstate_step(&st, "e")->undo_msg, "no undo_sql"), "undo outcomes: recorded left_in_place, why");
	check(runstate_step(&st, "d")->undone == RS_NOTHING_TO_UNDO, "undo outcomes: an older read-only skip");
	check(runstate_step(&st, "c")->undone == RS_LEFT_IN_PLACE, "undo outcomes: an older no-undo skip");
	check(runstate_step(&st, "b")->undone == RS_UNDONE, "undo outcomes: an older undo.succeeded");
	check(runstate_step(&st, "a")->undone == RS_NOTHING_TO_UNDO, "undo outcomes: recorded nothing_to_undo");
	check(runstate_step(&st, "d")->nspans == 2 && runstate_step(&st, "d")->spans[1].kind == RS_SPAN_UNDO &&
	    runstate_step(&st, "d")->spans[1].start == 14 && runstate_step(&st, "d")->spans[1].end == 14,
	    "undo outcomes: spans: an undo.skipped is an undo span of no length");
	n = runstate_left(&st, &left);
	check(n == 2 && same(left[0], "c") && same(left[1], "e") && left[2] == NULL,
	    "undo outcomes: the steps left in place, in journal order");
	{
		char *m = left_text(left, n);

		check(same(m, "rolled back; 2 steps that changed things have no undo: c, e"),
		    "undo outcomes: in words");
		free(m);
	}
	free(left);
	runstate_release(&st);
	jlog_release(&log);
}

int
unit_runstate(void)
{
	failed = 0;
	events();
	crashed_step();
	undo_in_doubt();
	paused_approval();
	finished_rollback();
	undo_outcomes();
	unusable();
	return failed;
}
