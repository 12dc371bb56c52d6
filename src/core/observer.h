/*
 * observer.h - what a run tells the world.  The runner prints nothing: it
 * journals, and it hands typed events to the observers its caller
 * registered (src/report: the terminal view, the --output json stream, CI
 * annotations, the JUnit report, webhooks), in registration order, each
 * event to every observer, which ignores the kinds it has no use for.
 *
 * An event and everything it points to is borrowed for the call only.
 * Events come from the main thread; an observer may journal (the webhooks
 * record their failures), which sends OBS_RECORD_LINE from within the call.
 */
#ifndef ZDM_CORE_OBSERVER_H
#define ZDM_CORE_OBSERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct store;
struct store_writer;
struct runbook;

enum run_event_kind {
	OBS_RUN_STARTED,	/* .start: a run, dry run, resume, rollback or plan begins */
	OBS_PLAN_STEP,		/* .plan: zdm plan, one step */
	OBS_RECORD_LINE,	/* .line: a journal line on disk, whoever wrote it */
	OBS_RECORD,		/* .record: a record the runner journaled, on disk */
	OBS_STEP_RUNNING,	/* .step (i, attempt): its run() is called now */
	OBS_STEP_RETURNED,	/* .step (i): its run() has returned */
	OBS_PROGRESS,		/* .progress: a step's live state (zdm_progress) */
	OBS_WAITING,		/* .wait: the running step waits for a person's decision
				 * from elsewhere (--wait-for-approval): first when it
				 * starts, then about every second */
	OBS_OUTPUT,		/* .output: a line a step's command printed, or a
				 * plugin's log line (zdm_output), redacted */
	OBS_STEP_ENDED,		/* .step: how an attempt (retry) or the step ended */
	OBS_STEP_RERUN,		/* .step (i): resume runs a step in doubt again */
	OBS_NOTE,		/* .text: a line for people (a --fail-at drill) */
	OBS_FAILURE,		/* .failure: a step failed for good; the run reacts */
	OBS_ROLLBACK_STARTED,	/* .count: steps to undo, newest first */
	OBS_UNDO_ENDED,		/* .step: how an undo (or its attempt) ended */
	OBS_ROLLBACK_STOPPED,	/* .step (i, text): an undo failed on its last
				 * attempt: the rollback stops at this step */
	OBS_RUN_ENDED,		/* .end: the verdict, before run.finished (if any) */
	OBS_ERROR,		/* .text: what went wrong that the journal cannot say */
	OBS_LOCK_WAIT,		/* .text: the run lock is busy; zdm waits for it (the holder) */
	OBS_STATE_LOST,		/* .state: the connection to the state database was lost;
				 * zdm connects again until .until */
	OBS_STATE_RETRY,	/* .state: an attempt to connect again failed (.why) */
	OBS_STATE_BACK,		/* .state: connected again after .ms, the run lock kept */
	OBS_CLOSED,		/* .closed: the command is done with the run; last */
};

/* OBS_RUN_STARTED */
enum run_how { HOW_RUN, HOW_DRY_RUN, HOW_RESUME, HOW_ROLLBACK, HOW_PLAN };

/* OBS_STEP_ENDED */
enum step_end {
	END_OK,
	END_FAILED,
	END_RETRY,		/* this attempt failed; the next in .next_ms */
	END_STOPPED,		/* a signal stopped it part-way */
	END_WAITING,		/* paused: waits for a person (waits_for_person) */
	END_UNDECIDED,		/* paused: it could not decide (a gate) */
	END_PLANNED,		/* dry run: not read-only, only its plan shown */
	END_SKIPPED,
};

/* OBS_UNDO_ENDED */
enum undo_end {
	UNDO_DONE,		/* undone: its undo put back what it changed */
	UNDO_FAILED,
	UNDO_LEFT,		/* left in place: it changed things and nothing
				 * undid them (no undo, or an undo with nothing
				 * to do for these params) */
	UNDO_NOTHING,		/* nothing to undo: read-only, or it changed
				 * nothing that stays */
	UNDO_NOT_DONE,		/* in doubt and nothing recorded: a person checks */
	UNDO_SKIPPED,		/* in doubt, skipped by --in-doubt skip */
};

/* OBS_PLAN_STEP: what undoes the step */
enum plan_undo {
	PLAN_UNDO_STEP,		/* the runbook's own undo: (.undo) */
	PLAN_UNDO_TYPE,		/* the type restores what it recorded */
	PLAN_UNDO_NONE,		/* changes things, nothing undoes them: a
				 * rollback leaves them in place */
	PLAN_UNDO_READ_ONLY,	/* nothing to undo */
};

/* OBS_PLAN_STEP: whether the step will run, by its if: */
enum plan_when {
	PLAN_RUNS,		/* no if:, or one that is true now */
	PLAN_SKIPPED,		/* if: is false with what is known: nothing runs */
	PLAN_UNKNOWN,		/* if: needs outputs of earlier steps or secrets
				 * (or fails: .why): unknown until run */
};

/* OBS_FAILURE: what the run does about a failed step */
enum failure_policy { FAIL_DRY_RUN, FAIL_PAUSE, FAIL_ABORT, FAIL_ROLLBACK };

/* OBS_RUN_ENDED */
enum verdict {
	VD_SUCCEEDED,		/* .ms: the whole run */
	VD_DRY_RUN_OK,
	VD_DRY_RUN_FAILED,	/* .step, .why */
	VD_PAUSED,		/* .step failed, on_failure: pause */
	VD_ABORTED,		/* .step failed, on_failure: abort */
	VD_ROLLED_BACK,		/* .step failed (.why), every undo done; .left */
	VD_ROLLBACK_INCOMPLETE,	/* .step failed, not every undo done */
	VD_UNDONE,		/* zdm rollback: every undo done; .left */
	VD_UNDO_INCOMPLETE,	/* zdm rollback: not every undo done */
	VD_INTERRUPTED,		/* .signal; .rolling_back */
	VD_WAITING_APPROVAL,	/* .step waits for a person */
	VD_UNDECIDED,		/* .step could not decide (.why) */
	VD_IN_DOUBT,		/* nothing done: .doubts (.ndoubts) need an answer;
				 * .rolling_back: asked by zdm rollback */
	VD_LOCK_LOST,		/* the run lock was taken from under the run: stopped before .step (.why) */
	VD_PAUSE_ASKED,		/* zdm pause: paused before .step (.why: by whom) */
};

/*
 * What a person says of an item in doubt.  retry: resume runs the step
 * again; rollback runs its undo (again).  skip: resume takes the step as
 * done; rollback takes it as having nothing to undo (the step never took
 * effect), or its undo as done.
 */
enum in_doubt { IN_DOUBT_ASK, IN_DOUBT_RETRY, IN_DOUBT_SKIP };

/* an item in doubt: a step or an undo that started and whose end the
 * journal does not hold, so it may or may not have taken effect */
struct doubt {
	const char *step;	/* its id: --in-doubt STEP=retry|skip */
	const char *uses;	/* the type of the step, or of its undo */
	bool undo;		/* its undo is in doubt (else the step itself) */
	bool interrupted;	/* a signal stopped it part-way (else zdm died) */
	int attempt;		/* of the step, or of its undo */
	enum in_doubt answer;	/* what was said of it (IN_DOUBT_ASK: nothing) */
};

struct run_event {
	enum run_event_kind kind;
	const struct runbook *rb;
	const char *run_id;		/* "" before it is known */
	union {
		struct {
			enum run_how how;
			const char *journal;	/* NULL for a plan */
			size_t from;		/* resume: the first step to run */
		} start;
		struct {
			size_t i;
			enum plan_when when;
			const char *why;	/* PLAN_UNKNOWN: the if:'s error, or NULL */
			const json_t *params;	/* resolved as far as known, redacted; NULL
						 * when they do not resolve or PLAN_SKIPPED */
			const char *doing;	/* its plan, its type, or why neither;
						 * NULL when PLAN_SKIPPED */
			enum plan_undo undo;
			const char *undoing;	/* PLAN_UNDO_STEP: the undo's plan */
		} plan;
		const char *line;		/* OBS_RECORD_LINE, without its newline */
		struct {
			struct store_writer *w;	/* the run's, to append notes of its own */
			const char *event, *step;	/* step may be NULL */
			int attempt;
			const json_t *data;	/* as given, not redacted */
		} record;
		struct {
			size_t i;
			int attempt, attempts;	/* END_RETRY: this one of how many */
			int64_t ms;		/* how long it took; -1 = not timed */
			int64_t next_ms;	/* END_RETRY: the delay before the next */
			bool idempotent;	/* OBS_STEP_RERUN: why it runs again */
			union {
				enum step_end end;
				enum undo_end undo;
			};
			const char *text;	/* the error or the plan; may be NULL */
		} step;
		struct {
			const char *step;
			const char *text;
		} progress;
		struct {
			const char *step;
			int64_t left_ms;	/* till it pauses (or its timeout) */
			int64_t wait_ms;	/* how long it waits in all */
			bool first;		/* the first of this wait */
		} wait;
		struct {
			const char *step;
			const char *stream;	/* "stdout", "stderr" or "log" */
			const char *text;	/* one line, no newline */
		} output;
		struct {
			const char *step;
			const char *why;
			enum failure_policy policy;
			bool drill;		/* forced after .step (--fail-at), which succeeded */
			const char *aborted_by;	/* zdm abort: who; .step did not fail */
		} failure;
		size_t count;			/* OBS_ROLLBACK_STARTED */
		struct {
			enum verdict verdict;
			const char *step;	/* the step it is about, or NULL */
			const char *why;
			const struct doubt *doubts;	/* VD_IN_DOUBT */
			size_t ndoubts;
			int64_t ms;
			/* the steps a rollback left in place (changed things,
			 * nothing undid them), in runbook order */
			const char *const *left;
			size_t nleft;
			int signal;
			int attempt;
			bool rolling_back;
			bool drill;		/* .step succeeded: the failure after it
						 * was forced (--fail-at) */
			const char *aborted_by;	/* zdm abort: who (.why says it all);
						 * NULL: a step failed */
		} end;
		const char *text;		/* OBS_NOTE, OBS_ERROR: one line, no newline */
		struct {
			const char *place;	/* the state, user@host:port/db (schema S) */
			const char *why;	/* LOST, RETRY: the last error */
			int64_t timeout_ms;	/* --state-timeout */
			int64_t until;		/* wall clock, seconds since the epoch */
			int64_t ms;		/* RETRY, BACK: since it was lost */
			int attempt;		/* RETRY, BACK: attempts so far */
			bool locked;		/* BACK: the run lock was taken back */
		} state;			/* OBS_STATE_* */
		struct {
			struct store_writer *w;	/* still open; NULL if none was */
			struct store *store;	/* where the run is */
			const char *journal;	/* its ref there */
		} closed;
	};
};

struct observer {
	void (*event)(void *self, const struct run_event *ev);
	void *self;
};

#endif
