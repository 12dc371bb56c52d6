/*
 * run.h - a run in progress, as the runner's parts share it: runner.c (a
 * new run, a plan, resume and rollback from the journal), execute.c (the
 * steps in order), rollback.c (the undos, newest first) and run.c (the
 * journal, the observers, a step's context).  For src/core only.
 */
#ifndef ZDM_CORE_RUN_H
#define ZDM_CORE_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/journal.h"
#include "core/observer.h"
#include "core/runbook.h"
#include "core/runner.h"
#include "core/runstate.h"
#include "zdm/step.h"

enum sstate { S_PENDING, S_STARTED, S_SUCCEEDED, S_FAILED, S_SKIPPED };
enum ustate { U_NONE, U_STARTED, U_SUCCEEDED, U_FAILED, U_SKIPPED };

struct stepstate {
	enum sstate st;
	int attempts;
	json_t *outputs;
	json_t *undo_data;
	long done_seq;		/* seq of step.succeeded (order for rollback) */
	long start_seq;
	bool interrupted;	/* in doubt because a signal stopped it */
	enum ustate ust;
	enum rs_undone undone;	/* what its rollback did, once it is decided */
	int undo_attempts;
	json_t *snapshot;	/* recorded before the step's first attempt */
	json_t *notes;		/* the step's own events (zdm_note), all attempts */
};

/* what `zdm pause`, `abort` and `promote` asked of this run while it ran
 * (control.c); the strings are owned */
struct run_control {
	char *pause_by;		/* the actor: pause before the next step */
	char *pause_why;	/* their --reason, or NULL */
	char *abort_by;		/* the actor: stop and roll back */
	char *abort_why;
	char *promote_by;	/* the actor: the running gate passes now */
	long cur;		/* the step whose run() is under way, or -1 */
	int64_t next_look;	/* monotonic ms: the next look at the journal */
	bool looking;		/* control_tick is under way */
	bool closing;		/* the run has said how it ends (run_ended) */
};

struct run {
	struct runbook *rb;
	const struct run_opts *o;
	struct store *store;	/* o->store */
	struct store_writer *w;	/* the run's journal, open for appending; NULL before */
	char run_id[64];
	struct stepstate *ss;
	int64_t t0;
	struct store_lock *lock;	/* the runbook's run lock, while held */
	bool rolling_back;
	bool finished;
	char *finished_status;
	bool paused;
	char *failed_step;	/* the step whose failure started the rollback */
	char *fail_msg;
	bool failure_pending;	/* failed_step failed for good and zdm stopped
				 * before on_failure acted (runstate.h) */
	long last_seq;
	bool rolling_back_cmd;	/* this process is `zdm rollback` */
	int planned;		/* dry run: steps that only printed their plan */
	bool drilled;		/* the failure at hand is --fail-at's, not the step's */
	bool lock_lost;		/* an append was refused: the run lock is gone (said) */
	json_t *planned_state;	/* plan and dry run: what the planned steps leave
				 * (zdm_step_type.plan_from); NULL otherwise */
	struct run_control ctl;
};

/* run.c */
/* go on after LOG, the run REF read again with records of another writer
 * at its end: a new writer continues the chain after them, the observers
 * see them, and control_scan acts on them; -1 when it cannot (said) */
int run_adopt(struct run *r, const char *ref, const struct jlog *log);
/* tell every observer, in order */
void run_emit(const struct run *r, struct run_event *ev);
/* the journal's echo (store_set_echo, arg the run): each line as it reaches
 * disk, whoever appended it (the webhooks journal their failures too) */
void run_echo_record(const char *line, void *arg);
/* append or die trying; 0, or -1 when the record is not on disk (said) */
int jrec(struct run *r, const char *event, const char *step, int attempt, json_t *data);
/* remember a step's own event for ctx->notes of later attempts and undo */
void note_keep(struct stepstate *ss, const char *event, int attempt, json_t *data);
/* how this command leaves the run, for the final "exit" event */
void run_set_status(const struct run *r, const char *status);
/* what went wrong that the journal cannot say */
void run_error(const struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* OBS_STEP_ENDED, OBS_UNDO_ENDED; ms -1: not timed */
void step_ended(const struct run *r, size_t i, enum step_end end, int64_t ms, const char *text);
void undo_ended(const struct run *r, size_t i, enum undo_end end, int64_t ms, const char *text);
/* what the person said of step STEP's item in doubt: its own --in-doubt
 * STEP=..., else the bare --in-doubt, else IN_DOUBT_ASK */
enum in_doubt run_answer(const struct run *r, const char *step);
/* OBS_RUN_ENDED: ev->end is set by the caller */
void run_ended(struct run *r, struct run_event *ev);
/* the context a step's run(), snapshot() or undo() gets from this run */
void run_ctx_init(struct run *r, struct zdm_ctx *ctx, const char *step, int attempt);
/* a type's plan() in words, secrets redacted; NULL without plan().
 * planned: the run's planned state (plan_from), or NULL */
char *plan_of(const struct zdm_step_type *t, const json_t *params, json_t *planned);
/* the delay before attempt + 1 */
int64_t backoff_delay(const struct rb_step *s, int attempt);
/* run.finished with status and the exit code of code; code, or
 * RUN_NEEDS_PERSON when it cannot be journaled */
enum run_outcome run_finish(struct run *r, const char *status, enum run_outcome code, json_t *extra);
/* a signal stopped the run (during step, or NULL): run.interrupted */
enum run_outcome run_interrupted(struct run *r, const char *step);

/* control.c: `zdm pause`, `abort` and `promote` from elsewhere.  They
 * append control.pause, control.abort or control.promote to the run beside
 * this zdm (as zdm approve does beside a zdm waiting for it); this zdm
 * sees them at its next append (which then fails with nothing written:
 * run_adopt, then the append again), and while a step runs every 250 ms or
 * so (zdm_watch: store_behind, then a read). */
/* watch the run from now on (r->w open) */
void control_start(struct run *r);
void control_stop(struct run *r);
/* act on LOG's records after seq AFTER (the caller adopted them) */
void control_scan(struct run *r, const struct jlog *log, long after);
/* look now, whatever the time; -1 when the journal cannot be read or
 * written (said) */
int control_look(struct run *r);
/* "aborted by ann (zdm abort): reason", malloc'd */
char *control_abort_text(const struct run *r);
char *control_pause_text(const struct run *r);
#endif
