/*
 * zdm/step.h - the step-type contract shared by C built-ins and Lua plugins.
 *
 * A step type is one `struct zdm_step_type` in the registry (src/registry.c).
 * C built-ins fill it statically; the Lua host (src/lua/host.c) fills one per
 * plugin file with callbacks that call into the plugin's table.  The runner
 * only ever sees this struct, so built-ins and plugins cannot drift apart.
 *
 * Values are jansson `json_t`.  Ownership: callbacks never take ownership of
 * `params` or `undo_data`; what they put into `struct zdm_result` (outputs,
 * undo_data) is owned by the result and released by zdm_result_release().
 *
 * Units: every time is in milliseconds (int64_t).  Deadlines are on the
 * monotonic clock (zdm_now_ms()).
 */
#ifndef ZDM_STEP_H
#define ZDM_STEP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Parameter types, as written in `zdm plugins` and in plugin `params`. */
enum zdm_ptype {
	ZDM_T_STRING,	/* "string" */
	ZDM_T_INT,	/* "int": a whole number */
	ZDM_T_NUMBER,	/* "number": int or real */
	ZDM_T_BOOL,	/* "bool" */
	ZDM_T_DURATION,	/* "duration": "500ms", "30s", "5m", "1h", "1m30s"; passed to run() as int ms */
	ZDM_T_LIST,	/* "list" */
	ZDM_T_MAP,	/* "map" */
	ZDM_T_ANY,	/* "any" */
	ZDM_T_PATH,	/* "path": a string; a relative one is resolved from the
			 * runbook's directory ("", /abs and ~/... are left as
			 * they are) before validate() and run() see it */
};

struct zdm_param {
	const char *name;
	enum zdm_ptype type;
	bool required;
	const char *def;	/* default as JSON text ("5000", "\"GET\"", "[0]"), or NULL */
	const char *doc;	/* one line for `zdm plugins` */
};

/* Per-call context handed to run() and undo().  Owned by the runner. */
struct zdm_ctx {
	const char *run_id;
	const char *step_id;
	int attempt;		/* 1-based */
	bool dry_run;
	bool undoing;		/* true inside undo() */
	int64_t deadline_ms;	/* monotonic ms when this attempt times out; 0 = none */
	const char *state_dir;
	/* run(): what snapshot() recorded before the FIRST attempt of this step
	 * in this run (from the journal after a crash), or NULL.  An idempotent
	 * step run again after a crash must undo to this state, not to its own
	 * half-done change. */
	const json_t *prior;
	/* The step's own events (zdm_note) journaled by earlier attempts in
	 * this run, before a crash too, oldest first: an array of
	 * {"event": name, "attempt": n, "data": ...}, or NULL.  A step that
	 * works in parts (hosts, batches) notes each part done and skips it
	 * when run again; undo() gets them as well. */
	const json_t *notes;
	/* Write an event of the step's own into the journal now (on disk when
	 * it returns), e.g. "gate.measurement" for each sample a gate takes:
	 * evidence that survives a crash.  data is stolen.  May be NULL
	 * (plan mode); call through zdm_note(). */
	void (*note)(struct zdm_ctx *ctx, const char *event, json_t *data);
	/* One line of live state for the terminal ("measurement 3/10: 0.02 <
	 * 0.05"); redacted and shown beside the running step.  May be NULL. */
	void (*progress)(struct zdm_ctx *ctx, const char *text);
	/* One line that a command the step runs printed (stream "stdout" or
	 * "stderr"), or a plugin's log line ("log"), without its newline;
	 * redacted on the way (zdm_output).  zdm run -v shows command output
	 * under the running step.  May be NULL. */
	void (*output)(struct zdm_ctx *ctx, const char *stream, const char *line);
	void *host;		/* the runner's, for note/progress */
	/* For a step that asks a person (approval): whether it may ask on this
	 * terminal (stdin and stderr are terminals, CI unset, no
	 * --non-interactive), and the step ids the command line approved in
	 * advance (--approve STEP). */
	bool interactive;
	const char *const *approved;
	size_t napproved;
	/*
	 * --wait-for-approval DURATION: how long such a step may wait, holding
	 * the run, for a decision recorded by someone else (zdm approve, from
	 * any machine sharing the state) before it pauses; 0: it does not wait
	 * (nor does it in plan mode or without a host).  await() is that wait,
	 * at most ms: 1 a decision came, *decision its record
	 * {"event": "approval.granted" | "approval.denied", "data": {...}}
	 * (the caller's); 0 none came in time (journaled); -1 a signal came;
	 * -2 this zdm must stop (the run lock was lost, or the journal cannot
	 * be written; said).  Call through zdm_await().
	 */
	int64_t wait_ms;
	int (*await)(struct zdm_ctx *ctx, int64_t ms, json_t **decision);
	/* zdm_promoted(); NULL: never promoted */
	const char *(*promoted)(struct zdm_ctx *ctx);
};

/* What run() and undo() report.  `err` holds the first error (first wins). */
struct zdm_result {
	json_t *outputs;	/* object, owned; NULL = {} */
	json_t *undo_data;	/* any JSON, owned; NULL = nothing recorded */
	bool timed_out;		/* the attempt ran past ctx->deadline_ms */
	bool interrupted;	/* SIGINT/SIGTERM reached zdm while the step ran */
	bool pause;		/* with -1: not a failure to roll back but a
				 * question for a person (an inconclusive gate):
				 * the run pauses, exit 4, whatever on_failure says */
	/* undo() only, with 0: it put nothing back, and why.  ZDM_UNDO_DONE
	 * (the default): it restored what run() changed. */
	enum zdm_undo_said {
		ZDM_UNDO_DONE,
		ZDM_UNDO_NOTHING,	/* there was nothing to put back: the
					 * step changed nothing that stays */
		ZDM_UNDO_LEFT,		/* the change stays: this step's
					 * params give its undo nothing to do */
	} undo_said;
	char undo_why[512];
	char err[2048];
};

/* A param's earlier name: still accepted in `with:`, with a warning that
 * names the new one (docs/zdm-runbook.5 NAMES); the value moves to `name`
 * before any check, so run() sees only the new name. */
struct zdm_rename {
	const char *was;
	const char *name;
};

/* Static-check sink: a validate() reports each problem against a parameter
 * name (NULL = the step as a whole); the runbook layer turns the name into
 * FILE:LINE:COL.  Implemented in src/core/params.c. */
struct zdm_diag;
void zdm_diag(struct zdm_diag *d, const char *param, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* In a validate(): the step's own timeout per attempt (ms) as the runbook
 * sets it (the step's timeout:, defaults: timeout, or zdm's default), and
 * in *from where it comes from, in words ("the step's timeout: 5s at line
 * 8"); 0 when it is not known (at run time), so timing that can never fit
 * is refused by `zdm validate`. */
int64_t zdm_diag_timeout(const struct zdm_diag *d, const char **from);

/* In a validate(): whether the runbook wrote the param (not a default) */
bool zdm_diag_written(const struct zdm_diag *d, const char *param);

/* a C type's param table, for its struct zdm_step_type initializer:
 * `ZDM_PARAMS(exec_params),` sets .params and .nparams */
#define ZDM_PARAMS(table) .params = (table), .nparams = sizeof(table) / sizeof((table)[0])
/* likewise `ZDM_RENAMED(http_renamed),` sets .renamed and .nrenamed */
#define ZDM_RENAMED(table) .renamed = (table), .nrenamed = sizeof(table) / sizeof((table)[0])

struct zdm_step_type {
	const char *name;		/* `uses:` name; dotted for plugins: "release.symlink" */
	const char *description;	/* one line */
	const struct zdm_param *params;
	size_t nparams;
	const struct zdm_rename *renamed;	/* earlier names of params, or NULL */
	size_t nrenamed;
	bool read_only;			/* changes nothing: runs for real in --dry-run */
	bool idempotent;		/* safe to run again when a crash left it in doubt */
	bool waits_for_person;		/* its pause (res->pause) waits for a person to
					 * decide (zdm approve), not for a better
					 * measurement */
	bool promotable;		/* a gate whose wait `zdm promote` may end as
					 * passed: run() asks zdm_promoted() whenever
					 * a sleep or poll returns (they return early
					 * then) and passes if it says who */
	bool notes_unread;		/* run() never reads ctx->notes: its own
					 * events (a gate's measurements) are
					 * journaled but not kept in memory for
					 * later attempts (an undo: step of its own
					 * still gets them) */

	/*
	 * Static checks beyond the schema (types, required, unknown names are
	 * checked by the caller).  `params` has defaults filled in; a value the
	 * caller could not resolve yet is still the "${{ ... }}" string: test
	 * with zdm_is_expr() and skip it.  Called at `zdm validate`, before any
	 * run, and again at run time with every value resolved.  May be NULL.
	 */
	void (*validate)(const struct zdm_step_type *t, const json_t *params,
	    struct zdm_diag *d);

	/* What run() would do, in words; malloc'd, caller frees.  NULL = generic. */
	char *(*plan)(const struct zdm_step_type *t, const json_t *params);

	/*
	 * Optional; when set, `zdm plan` and --dry-run call it instead of
	 * plan().  `planned` is the state the earlier planned steps of this
	 * run leave (an object shared by every step of the plan, keyed as the
	 * types choose, e.g. "lb.nginx FILE UPSTREAM"): a step describes what
	 * it replaces ("now: ...") from it when it holds the thing, from the
	 * live state otherwise, and puts there what run() would leave.  May
	 * be NULL (a plan of an undo step): then it behaves as plan().
	 */
	char *(*plan_from)(const struct zdm_step_type *t, const json_t *params,
	    json_t *planned);

	/*
	 * Optional.  Verifies, changing nothing, that run() could do its work
	 * now: the target is reachable, the credentials and the host key are
	 * accepted, the objects exist, the new configuration passes the
	 * target's own test (against a copy).  It may touch the target to read
	 * or to test, never to change what serves.  --dry-run calls it for each
	 * step that is not read-only, in place of run(); a failure (-1 with
	 * res->err) fails the rehearsal at that step.
	 */
	int (*check)(const struct zdm_step_type *t, struct zdm_ctx *ctx,
	    const json_t *params, struct zdm_result *res);

	/*
	 * Optional.  Reads, changing nothing, the state run() is about to
	 * replace, and puts it in res->undo_data in the shape undo() takes.
	 * Called before step.started is written and recorded in it, so a step
	 * left in doubt by a crash can still be undone exactly, and a rerun
	 * sees the first attempt's snapshot in ctx->prior.  Returns 0 or -1.
	 */
	int (*snapshot)(const struct zdm_step_type *t, struct zdm_ctx *ctx,
	    const json_t *params, struct zdm_result *res);

	/*
	 * Optional, for a type with undo(): whether undo() puts back what
	 * run() changes with these params (postgres_sql without undo_sql
	 * does not).  Called at `zdm validate` with params as for validate()
	 * (an unresolved expression counts as given).  NULL = it always does.
	 */
	bool (*can_undo)(const struct zdm_step_type *t, const json_t *params);

	/* Does it.  Returns 0 on success, -1 on failure with res->err set. */
	int (*run)(const struct zdm_step_type *t, struct zdm_ctx *ctx,
	    const json_t *params, struct zdm_result *res);

	/* Puts back what run() changed, from the recorded undo_data.
	 * NULL = the type has nothing to undo.  Returns 0 or -1 (res->err);
	 * with 0, res->undo_said tells a no-op from a restore. */
	int (*undo)(const struct zdm_step_type *t, struct zdm_ctx *ctx,
	    const json_t *params, const json_t *undo_data,
	    struct zdm_result *res);

	void *impl;			/* the type's own state (Lua plugin) */
	void (*free_impl)(void *impl);
};

/* true when v is a string that is exactly one unresolved ${{ ... }} */
bool zdm_is_expr(const json_t *v);

/* journal an event of the step's own (data stolen); no-op without a host */
void zdm_note(struct zdm_ctx *ctx, const char *event, json_t *data);
/* ctx->await, or 0 (nothing came) without a host that waits */
int zdm_await(struct zdm_ctx *ctx, int64_t ms, json_t **decision);
/* a promotable step's run(): who ended its wait as passed (`zdm promote`),
 * or NULL; the step's outputs should say so (promoted_by) */
const char *zdm_promoted(struct zdm_ctx *ctx);
/* show live state for the running step; no-op without a terminal */
void zdm_progress(struct zdm_ctx *ctx, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* hand one line of a command's output ("stdout", "stderr") or of a log
 * ("log") to the runner, redacted; false when nobody takes it (no host) */
bool zdm_output(struct zdm_ctx *ctx, const char *stream, const char *line);

/* first error wins: formats into res->err only while it is empty */
void zdm_fail(struct zdm_result *res, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

void zdm_result_release(struct zdm_result *res);

/* monotonic clock, ms */
int64_t zdm_now_ms(void);

#endif
