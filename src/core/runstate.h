/*
 * runstate.h - what a run's journal means: its records folded, in order,
 * into the state of the run and of each step.  Resume and rollback stand
 * where it says; status, approve, log, the JUnit report and the audit
 * export report it.  One fold, so they cannot disagree.
 *
 * Strings and JSON values in a runstate point into the records of the jlog
 * it was folded from (keep the log until runstate_release); the notes
 * arrays are the runstate's own.
 */
#ifndef ZDM_CORE_RUNSTATE_H
#define ZDM_CORE_RUNSTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "base/strmap.h"
#include "core/events.h"
#include "core/journal.h"

#define RS_NONE ((size_t)-1)	/* no such record */

/* where the run stands, by its last run./rollback. record */
enum rs_outcome {
	RS_RUNNING,		/* started or resumed, no end since: running, or crashed */
	RS_ROLLING_BACK,	/* rolling back, or crashed during the rollback */
	RS_PAUSED,		/* a person decides (run.paused) */
	RS_INTERRUPTED,		/* stopped by a signal (run.interrupted) */
	RS_FINISHED,		/* run.finished: status says how */
};

/* a step, by its last step. record */
enum rs_phase { RS_PENDING, RS_STARTED, RS_SUCCEEDED, RS_FAILED, RS_SKIPPED };
/* its undo, by its last undo. record; RS_UNDO_STARTED is an undo in doubt */
enum rs_undo { RS_UNDO_NONE, RS_UNDO_STARTED, RS_UNDO_SUCCEEDED, RS_UNDO_FAILED, RS_UNDO_SKIPPED };

/* what its rollback did, by its last undo.succeeded or undo.skipped (the
 * "outcome" they record; older journals: by their event and reason) */
enum rs_undone {
	RS_UNDONE_UNKNOWN,	/* no such record */
	RS_UNDONE,		/* "undone": its undo put back what it changed */
	RS_NOTHING_TO_UNDO,	/* "nothing_to_undo": nothing of it stays (read-only,
				 * or it changed nothing) */
	RS_LEFT_IN_PLACE,	/* "left_in_place": it changed things and nothing
				 * undid them */
};
/* the journal's word for u ("undone", ...), or NULL for RS_UNDONE_UNKNOWN */
const char *rs_undone_word(enum rs_undone u);
/* in words for people ("undone", "nothing to undo", "left in place"), or NULL */
const char *rs_undone_text(enum rs_undone u);
/* what an undo.succeeded or undo.skipped record (event e, data) says */
enum rs_undone rs_undone_of(enum ev e, const json_t *data);

/* "rolled back; N steps that changed things have no undo: a, b" for the
 * steps a rollback left in place (ids, n > 0), as every report says it;
 * malloc'd.  left_in_place_text: the same from a JSON array of ids. */
char *left_text(const char *const *ids, size_t n);
char *left_in_place_text(const json_t *ids);

/*
 * A stretch of a step's time: one attempt (step.started to its
 * step.succeeded, step.failed or step.interrupted) or one try of its undo
 * (undo.started to undo.succeeded or undo.failed), by the indexes of those
 * records in the log; a step.skipped or undo.skipped is one of no length
 * (start == end).  end is RS_NONE while no end is recorded: under way, or
 * in doubt.  The run's report draws them (report/html.c).
 */
enum rs_span_kind { RS_SPAN_ATTEMPT, RS_SPAN_UNDO };

struct rs_span {
	enum rs_span_kind kind;
	int attempt;		/* its record's attempt (0: none said) */
	size_t start, end;	/* indexes in the log; end RS_NONE: none yet */
};

struct rs_step {
	const char *id;
	const char *last_event;	/* its last record's event, but for rollback.started,
				 * run.paused and drill.*: NULL when it has none */
	enum rs_phase phase;
	bool interrupted;	/* a signal stopped its last attempt (still in doubt) */
	int attempt;		/* the attempt number of its last step.started */
	int starts;		/* step.started records */
	long start_seq, done_seq;	/* of its last step.started, step.succeeded */
	size_t first_rec;	/* index of its first step. record, or RS_NONE */
	const char *uses;	/* of its last step.started */
	bool read_only;		/* that step.started says it changes nothing */
	const json_t *params;
	const json_t *snapshot;	/* the first recorded before an attempt */
	const json_t *outputs;	/* of its last step.succeeded */
	const json_t *undo_data;	/* what its undo puts back, or NULL */
	int64_t ms;		/* duration_ms of its attempts' ends, summed */
	bool failed;		/* a step.failed that was not retried */
	const char *error;	/* of its last step.failed */
	bool needs_decision, timed_out;	/* of its last step.failed */
	const char *skip_reason;	/* of its last step.skipped */
	enum rs_undo undo;
	int undo_attempt;	/* of its last undo.started */
	bool undo_failed;	/* an undo.failed, whatever came after */
	const char *undo_msg;	/* the last undo.failed error, or undo.skipped or
				 * undo.succeeded reason */
	enum rs_undone undone;
	int64_t undo_ms;
	enum ev approval;	/* its last approval. note: requested, granted, denied */
	const char *approval_by;	/* who decided it */
	const char *granted_by;	/* who granted it last */
	json_t *notes;		/* its own events [{event, attempt, data}], or NULL; owned */
	struct rs_span *spans;	/* its attempts and undos, in the order they began; owned */
	size_t nspans, spans_cap;
};

/* the approval or decision a paused run waits for */
struct rs_pause {
	const char *step;	/* the step of the last run.paused, until resumed; or NULL */
	const char *error;
	bool needs_decision;
	const char *waiting_for;	/* "approval", or NULL */
	enum ev decision;	/* EV_APPROVAL_GRANTED / _DENIED on that step since, or EV_UNKNOWN */
	const char *decided_by;
};

/*
 * The approval a zdm waits for while it holds the run (--wait-for-approval):
 * its approval.waiting, until the step's next step. record, its
 * approval.wait_ended, or a run. or rollback. record.  A decision recorded
 * meanwhile (zdm approve, from anywhere) is the waiting zdm's to act on.
 */
struct rs_wait {
	const char *step;	/* the step waited on, or NULL */
	int64_t wait_ms;	/* how long it said it would wait */
	const char *until;	/* till when (UTC), or NULL */
	long seq;		/* of that approval.waiting */
	enum ev decision;	/* EV_APPROVAL_GRANTED / _DENIED on that step since, or EV_UNKNOWN */
	const char *decided_by;
};

struct runstate {
	size_t nrecs;
	/* run.started */
	const char *run_id, *name, *runbook, *sha256, *started;
	const json_t *actor;
	bool dry_run;
	long planned;		/* the runbook's steps, as run.started says (0: unsaid) */
	/* where it stands */
	enum rs_outcome outcome;
	bool ended;		/* its last run./rollback. record is run.finished */
	const char *ended_at;	/* that run.finished's ts */
	const json_t *exit_code;	/* and exit_code */
	bool finished;		/* a run.finished at all */
	const char *status;	/* of the last run.finished: succeeded, rolled_back, ... */
	const char *finished_failed_step;	/* the last failed_step a run.finished named */
	int64_t finished_ms;	/* duration_ms of its run.finished records */
	bool rolling_back;	/* a rollback.started */
	const char *failed_step;	/* whose failure it answers: of the last step.failed,
				 * then of a rollback.started (may be NULL) */
	const char *failure;	/* its error, or the rollback's reason */
	bool failure_pending;	/* the last step. or drill. record is a failure for
				 * good (a step.failed not retried and not waiting for
				 * a decision, or a drill.failure) and no run. record or
				 * rollback.started came after it: zdm stopped before
				 * on_failure acted (failed_step, failure say which) */
	struct rs_pause pause;
	struct rs_wait wait;
	long undone;		/* undo.succeeded records that undid something
				 * (outcome "undone") */
	struct rs_step *steps;	/* in the order the journal first names them */
	size_t nsteps, cap;
	struct strmap index;	/* step id -> its index in steps */
	size_t bad_rec;		/* the first record the fold could not place, or RS_NONE */
};

/*
 * Fold LOG into ST (which the caller releases whatever the result).
 * Returns 0, or -1 with *err (malloc'd) when the journal cannot be replayed:
 * it is empty, or a step./undo. record names no step (st->bad_rec).  ST
 * holds what the records say either way, for reports.
 */
int runstate_fold(const struct jlog *log, struct runstate *st, char **err);
void runstate_release(struct runstate *st);

/* the steps the rollback left in place, in the order the journal first
 * names them, into *ids (NULL-terminated; the caller frees the array) */
size_t runstate_left(const struct runstate *st, const char ***ids);

/* the step named ID, or NULL */
const struct rs_step *runstate_step(const struct runstate *st, const char *id);
/* started and no end recorded: it may or may not have taken effect */
bool rs_step_in_doubt(const struct rs_step *s);
bool rs_undo_in_doubt(const struct rs_step *s);
/* the steps and undos in doubt */
size_t runstate_in_doubt(const struct runstate *st);

/* in words, as zdm status says it: "running or crashed", "paused",
 * "rolled_back", ... */
const char *runstate_word(const struct runstate *st);

/*
 * A run in one line (zdm runs), folded from a few of its records only: its
 * first, the last one that says where it stands (a record that moves
 * runstate.outcome: run.started, .resumed, .paused, .interrupted, .finished,
 * rollback.started), its last step. or undo. record, and its last.  These
 * four folded together say what the whole journal says of the outcome, the
 * status, the step in doubt and the step it stands at (the write-ahead rules:
 * only the last step. or undo. record can leave something in doubt), so a
 * backend keeps or finds just them: the file backend reads a journal's
 * first line and its tail, the PostgreSQL one keeps each run's summary
 * beside the journal as it appends.
 */
struct rs_marks {
	const json_t *first, *place, *act, *last;	/* borrowed; NULL: none yet */
};

/* REC, the run's next record, into M (which then points to it) */
void rs_marks_add(struct rs_marks *m, const json_t *rec);
/* does REC move where the run stands (struct rs_marks' place)? */
bool runstate_places(const json_t *rec);
/* is REC a step. or undo. record that moves its step's phase or undo
 * (struct rs_marks' act; not step.interrupted, which leaves it started)? */
bool runstate_acts(const json_t *rec);

/* what zdm runs shows of a run; its strings (NULL when the journal does not
 * say) are in one block it owns (run_summary_strings) */
struct run_summary {
	char *run_id;
	char *name;		/* the runbook's name */
	char *runbook;		/* its file, as run.started recorded it */
	char *actor;		/* who started it (actor.who) */
	char *host;		/* where */
	char *started;		/* run.started's ts: UTC ISO-8601, "2026-11-21T10:00:01.123Z" */
	char *updated;		/* its last record's ts */
	char *step;		/* the step it stands at: the one that failed (a failed or
				 * rolled-back run), the paused one, else the step of its
				 * last step. or undo. record */
	char *state;		/* as journaled: running, rolling_back, paused, interrupted,
				 * or run.finished's status (succeeded, rolled_back, ...) */
	bool open;		/* running or rolling back: going while a zdm holds its
				 * lock, else it stopped (a crash, a kill) */
	bool in_doubt;		/* a step or an undo started and never ended */
	bool dry_run;
	long records;		/* its last seq */
	char *mem;		/* the strings' block */
};

/* copies of V as S's strings, in this order: run_id, name, runbook, actor,
 * host, started, updated, step, state (each may be NULL) */
void run_summary_strings(struct run_summary *s, const char *const v[9]);

/* the summary of the run whose marks are M (M.first set) */
void run_summary_fold(const struct rs_marks *m, struct run_summary *out);
void run_summary_release(struct run_summary *s);
/* its status now, HELD telling whether a live zdm holds its run lock:
 * running or rolling_back while held; when an open run is not held, stale
 * (a crash between steps: zdm resume or zdm rollback goes on) or in_doubt
 * (a crash during a step or an undo); else its state */
const char *run_summary_status(const struct run_summary *s, bool held);
/* every status zdm runs shows, NULL-terminated (--status): run_summary_status's,
 * and "unreadable" (a journal whose first record cannot be read) */
extern const char *const run_statuses[];

#endif
