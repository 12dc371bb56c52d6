/*
 * runner.h - executes a runbook: new runs, dry runs and plans (one code
 * path with a mode, so a rehearsal cannot drift from the real thing),
 * resume and rollback from the journal.
 */
#ifndef ZDM_RUNNER_H
#define ZDM_RUNNER_H

#include <stdint.h>

#include "core/journal.h"
#include "core/observer.h"
#include "core/runbook.h"
#include "core/store.h"

/* How a command left the run; src/cli maps it to the exit code. */
enum run_outcome {
	RUN_OK,			/* done what was asked: every step ran (or the plan
				 * was shown, a dry run passed, zdm rollback undid
				 * every step) */
	RUN_ROLLED_BACK,	/* a step failed and the run was rolled back (a dry
				 * run: a step failed) */
	RUN_USAGE,		/* refused before acting: bad input, a held lock, a
				 * run that cannot go on as asked */
	RUN_NEEDS_PERSON,	/* aborted, a rollback incomplete, a journal that
				 * cannot be written */
	RUN_PAUSED,		/* paused or interrupted: zdm resume or zdm rollback
				 * goes on */
	RUN_IN_DOUBT,		/* a step or an undo in doubt, not answered: nothing
				 * was done; --in-doubt [STEP=]retry|skip */
	RUN_LEFT_IN_PLACE,	/* rolled back (a failed run, or zdm rollback), every
				 * undo done, but steps that changed things have no
				 * undo: their changes stay (run_opts.left_out) */
};

enum run_mode { MODE_RUN, MODE_DRY_RUN, MODE_PLAN };
/* --in-doubt STEP=retry|skip: the answer for one item */
struct in_doubt_answer {
	const char *step;
	enum in_doubt answer;
};

struct run_opts {
	enum run_mode mode;
	const char *fail_at;		/* --fail-at STEP */
	bool force_rollback;		/* zdm drill: a failure rolls back whatever on_failure
					 * says, and fail_at fails even if its step is skipped */
	enum in_doubt in_doubt;		/* --in-doubt retry|skip: for the one item in
					 * doubt (refused, RUN_USAGE, when there are more) */
	const struct in_doubt_answer *answers;	/* --in-doubt STEP=...: one per item; a
						 * STEP not in doubt is refused */
	size_t nanswers;
	bool allow_changed;
	int64_t lock_wait_ms;		/* --lock-timeout: while another zdm holds the run
					 * lock, wait this long for it (0: refuse at once) */
	struct store *store;		/* where runs are kept, locked and found */
	int64_t state_timeout_ms;	/* --state-timeout: a lost connection to the state
					 * is tried again this long (0: not; store_set_retry) */
	const char *state_dir;		/* its location, for a step's ctx->state_dir */
	/* for approvals */
	bool interactive;		/* approvals may prompt (a terminal, no CI, no --non-interactive) */
	const char *const *approve;	/* --approve STEP ids (pre-approved) */
	size_t napprove;
	int64_t wait_approval_ms;	/* --wait-for-approval: wait this long for zdm approve
					 * before pausing; 0: pause at once */
	char *run_id_out;		/* >= 64 bytes or NULL: the run's id, once known */
	char *status_out;		/* >= 32 bytes or NULL: how the command left the run */
	json_t *left_out;		/* an array or NULL: gets the ids of the steps a
					 * rollback left in place (RUN_LEFT_IN_PLACE) */
	/* the exit code an outcome gives (recorded in run.finished); required */
	int (*exit_code)(enum run_outcome oc);
	/* who is told what happens (observer.h), in this order */
	const struct observer *observers;
	size_t nobservers;
};

/* each tells its observers what happens */
enum run_outcome runner_run(struct runbook *rb, const struct run_opts *o);
/* resume and rollback: JOURNAL is the run's ref in o->store, LOG its records */
enum run_outcome runner_resume(struct runbook *rb, const char *journal, struct jlog *log,
    const struct run_opts *o);
enum run_outcome runner_rollback(struct runbook *rb, const char *journal, struct jlog *log,
    const struct run_opts *o);

#endif
