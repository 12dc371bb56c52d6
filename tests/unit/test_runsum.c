/*
 * test_runsum.c - unit checks for runstate.c's run summaries (zdm runs):
 * for hand-written journals of every way a run stands, the summary folded
 * from the four marks (struct rs_marks) says what the fold of the whole
 * journal says: the outcome, the status, whether it is open, whether
 * something is in doubt; and the step it stands at.
 *
 * unit_runsum() prints one "ok - ..." / "not ok - ..." line per check and
 * returns the number of failed checks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "core/journal.h"
#include "core/runstate.h"

int unit_runsum(void);

static int failed;

static void
check(bool cond, const char *what, const char *name)
{
	printf("%s - runsum: %s: %s\n", cond ? "ok" : "not ok", name, what);
	if (!cond)
		failed++;
}

static bool
same(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

#define STARTED "{\"event\":\"run.started\",\"ts\":\"2026-11-01T10:00:00.000Z\",\"data\":" \
	"{\"name\":\"deploy\",\"runbook\":\"/rb/deploy.yml\",\"host\":\"h1\"," \
	"\"actor\":{\"who\":\"ann\",\"host\":\"h0\"},\"dry_run\":false}}"
#define S_START(s) "{\"event\":\"step.started\",\"step\":\"" s "\",\"attempt\":1,\"data\":{}}"
#define S_OK(s) "{\"event\":\"step.succeeded\",\"step\":\"" s "\",\"attempt\":1,\"data\":{\"undo_data\":{}}}"
#define S_FAIL(s) "{\"event\":\"step.failed\",\"step\":\"" s "\",\"attempt\":1,\"data\":{\"error\":\"x\"}}"
#define U_START(s) "{\"event\":\"undo.started\",\"step\":\"" s "\",\"attempt\":1,\"data\":{}}"
#define U_OK(s) "{\"event\":\"undo.succeeded\",\"step\":\"" s "\",\"attempt\":1,\"data\":{}}"
#define FINISHED(st, extra) "{\"event\":\"run.finished\",\"data\":{\"status\":\"" st "\"" extra "}}"

/* the journal's records (seq, run and ts added), and the summary of all of
 * them against the full fold */
static void
compare(const char *name, const char *const *recs, const char *state, const char *status_unheld,
    const char *step)
{
	struct jlog log;
	struct runstate st;
	struct rs_marks m = { NULL, NULL, NULL, NULL };
	struct run_summary rs;
	const char *full;

	memset(&log, 0, sizeof log);
	for (size_t i = 0; recs[i] != NULL; i++) {
		json_t *r = json_loads(recs[i], 0, NULL);
		char ts[32];

		if (r == NULL) {
			check(false, "a record parses", name);
			continue;
		}
		snprintf(ts, sizeof ts, "2026-11-01T10:00:%02d.000Z", (int)(i % 60));
		json_object_set_new(r, "seq", json_integer((json_int_t)log.n + 1));
		json_object_set_new(r, "run", json_string("R1"));
		json_object_set_new(r, "ts", json_string(ts));
		log.recs = xrealloc(log.recs, (log.n + 1) * sizeof *log.recs);
		log.recs[log.n++] = r;
		rs_marks_add(&m, r);
	}
	runstate_fold(&log, &st, NULL);
	run_summary_fold(&m, &rs);
	switch (st.outcome) {
	case RS_RUNNING: full = "running"; break;
	case RS_ROLLING_BACK: full = "rolling_back"; break;
	case RS_PAUSED: full = "paused"; break;
	case RS_INTERRUPTED: full = "interrupted"; break;
	default: full = st.status; break;
	}
	check(same(rs.state, full) && same(rs.state, state), "the state is the whole journal's", name);
	check(rs.open == (st.outcome == RS_RUNNING || st.outcome == RS_ROLLING_BACK),
	    "open as the whole journal", name);
	check(rs.in_doubt == (runstate_in_doubt(&st) > 0), "in doubt as the whole journal", name);
	check(same(run_summary_status(&rs, false), status_unheld) &&
	    same(run_summary_status(&rs, true), rs.open ? state : status_unheld),
	    "its status, held or not", name);
	check(same(rs.step, step), "the step it stands at", name);
	check(same(rs.run_id, "R1") && same(rs.name, "deploy") && same(rs.actor, "ann") &&
	    same(rs.host, "h1") && same(rs.started, "2026-11-01T10:00:00.000Z") &&
	    rs.records == (long)log.n && same(rs.updated, json_string_value(json_object_get(
	    log.recs[log.n - 1], "ts"))), "run.started's facts, the last record's", name);
	run_summary_release(&rs);
	runstate_release(&st);
	jlog_release(&log);
}

int
unit_runsum(void)
{
	static const char *const ok[] = { STARTED, S_START("a"), S_OK("a"), S_START("b"), S_OK("b"),
		FINISHED("succeeded", ""), NULL };
	static const char *const rolled[] = { STARTED, S_START("a"), S_OK("a"), S_START("b"), S_FAIL("b"),
		"{\"event\":\"rollback.started\",\"step\":\"b\",\"data\":{\"reason\":\"x\"}}",
		U_START("a"), U_OK("a"), FINISHED("rolled_back", ",\"failed_step\":\"b\""), NULL };
	static const char *const between[] = { STARTED, S_START("a"), S_OK("a"), NULL };
	static const char *const during[] = { STARTED, S_START("a"), S_OK("a"), S_START("b"),
		"{\"event\":\"gate.measurement\",\"step\":\"b\",\"data\":{}}", NULL };
	static const char *const undoing[] = { STARTED, S_START("a"), S_OK("a"), S_START("b"), S_FAIL("b"),
		"{\"event\":\"rollback.started\",\"step\":\"b\",\"data\":{\"reason\":\"x\"}}", U_START("a"), NULL };
	static const char *const paused[] = { STARTED, S_START("a"), S_OK("a"),
		"{\"event\":\"approval.requested\",\"step\":\"ok\",\"data\":{}}",
		"{\"event\":\"run.paused\",\"step\":\"ok\",\"data\":{\"waiting_for\":\"approval\"}}",
		"{\"event\":\"approval.granted\",\"step\":\"ok\",\"data\":{\"actor\":\"bob\"}}", NULL };
	static const char *const resumed[] = { STARTED, S_START("a"), S_OK("a"),
		"{\"event\":\"run.paused\",\"step\":\"ok\",\"data\":{\"waiting_for\":\"approval\"}}",
		"{\"event\":\"run.resumed\",\"data\":{}}", S_START("ok"), NULL };
	static const char *const interrupted[] = { STARTED, S_START("a"),
		"{\"event\":\"step.interrupted\",\"step\":\"a\",\"attempt\":1,\"data\":{}}",
		"{\"event\":\"run.interrupted\",\"data\":{\"signal\":15}}", NULL };
	static const char *const killed_interrupting[] = { STARTED, S_START("a"),
		"{\"event\":\"step.interrupted\",\"step\":\"a\",\"attempt\":1,\"data\":{}}", NULL };
	static const char *const only_started[] = { STARTED, NULL };

	compare("succeeded", ok, "succeeded", "succeeded", "b");
	compare("rolled back", rolled, "rolled_back", "rolled_back", "b");
	compare("killed between steps", between, "running", "stale", "a");
	compare("killed during a step", during, "running", "in_doubt", "b");
	compare("killed during an undo", undoing, "rolling_back", "in_doubt", "a");
	compare("paused for an approval, then granted", paused, "paused", "paused", "ok");
	compare("resumed, then killed during the step", resumed, "running", "in_doubt", "ok");
	compare("interrupted during a step", interrupted, "interrupted", "interrupted", "a");
	compare("killed after step.interrupted", killed_interrupting, "running", "in_doubt", "a");
	compare("killed after run.started", only_started, "running", "stale", NULL);
	return failed;
}
