/*
 * runner.h - executes a runbook: new runs, dry runs and plans (one code
 * path with a mode, so a rehearsal cannot drift from the real thing),
 * resume and rollback from the journal.
 */
#ifndef ZDM_RUNNER_H
#define ZDM_RUNNER_H

#include "core/journal.h"
#include "core/runbook.h"

/* Exit codes (zdm(1) EXIT STATUS): the runner returns them, src/cli exits with them. */
enum {
	ZDM_EXIT_OK = 0,
	ZDM_EXIT_ROLLED_BACK = 1,
	ZDM_EXIT_USAGE = 2,
	ZDM_EXIT_NEEDS_PERSON = 3,
	ZDM_EXIT_PAUSED = 4,
	ZDM_EXIT_IN_DOUBT = 5,
};

enum run_mode { MODE_RUN, MODE_DRY_RUN, MODE_PLAN };
enum in_doubt { IN_DOUBT_ASK, IN_DOUBT_RETRY, IN_DOUBT_SKIP };

struct run_opts {
	enum run_mode mode;
	const char *fail_at;		/* --fail-at STEP */
	enum in_doubt in_doubt;
	bool allow_changed;
	bool json;			/* --output json: records on stdout */
	const char *state_dir;
	/* issue 7A: CI stage */
	const char *junit;		/* --junit FILE: written when the command ends, or NULL */
	bool interactive;		/* approvals may prompt (a terminal, no CI, no --non-interactive) */
	const char *const *approve;	/* --approve STEP ids (pre-approved) */
	size_t napprove;
	char *run_id_out;		/* >= 64 bytes or NULL: the run's id, once known */
	char *status_out;		/* >= 32 bytes or NULL: how the command left the run */
};

/* each returns an exit code (ZDM_EXIT_*) and prints what happened */
int runner_run(struct runbook *rb, const struct run_opts *o);
int runner_resume(struct runbook *rb, const char *journal, struct jlog *log,
    const struct run_opts *o);
int runner_rollback(struct runbook *rb, const char *journal, struct jlog *log,
    const struct run_opts *o);

#endif
