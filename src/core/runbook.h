/*
 * runbook.h - a runbook (schema `zdm: 1`) parsed, checked and resolved.
 *
 * runbook_load() reads the YAML, checks everything that can be checked
 * without running (schema, ids, step types, params, durations, expressions)
 * and reports every problem at once as FILE:LINE:COL: message.
 */
#ifndef ZDM_RUNBOOK_H
#define ZDM_RUNBOOK_H

#include "base/strmap.h"
#include "base/ynode.h"
#include "core/expr.h"
#include "zdm/step.h"

enum on_failure { ON_FAILURE_ROLLBACK, ON_FAILURE_PAUSE, ON_FAILURE_ABORT };

struct rb_undo {
	const struct ynode *node;
	char *uses;
	const struct zdm_step_type *type;
	json_t *with;			/* templates; defaults filled */
	const struct ynode *with_node;
	int64_t timeout_ms;
};

/* what a rollback does about a step, known at validate time */
enum rb_undo_kind {
	RB_UNDOABLE,			/* its undo: or its type's undo puts it back */
	RB_READ_ONLY,			/* it changes nothing: nothing to undo */
	RB_NOT_UNDONE,			/* it changes things and nothing undoes them:
					 * a rollback leaves its change in place */
};

struct rb_step {
	const struct ynode *node;
	char *id, *name, *description, *uses;
	const struct zdm_step_type *type;
	json_t *with;			/* templates as written, defaults filled */
	const struct ynode *with_node;
	char *if_expr;			/* NULL = always */
	const struct ynode *if_node;
	int64_t timeout_ms;		/* per attempt */
	int retries;
	int64_t retry_delay_ms;
	bool backoff_fixed;
	bool idempotent;		/* the step's own flag or its type's */
	struct rb_undo *undo;		/* runbook-written undo, or NULL */
	json_t *scope;			/* {"each": item, "inputs": {...}} of a step
					 * copied by for_each: or brought by include:,
					 * or NULL (expr_set_scope) */
	enum rb_undo_kind undo_kind;
	json_t *checked;		/* with: without any expression: its params as
					 * checked at load (runbook_params gives them
					 * again), or NULL */
	/* probes only (docs/zdm-runbook.5 PROBES) */
	bool read_only;			/* its type's, or read_only: true (exec, ssh, http;
					 * steps and probes) */
	json_t *compare;		/* compare: [output, ...], or NULL: every output */
};

struct rb_secret {
	char *name;
	char *env;			/* {env: NAME} */
	char *file;			/* {file: PATH} */
	const struct ynode *node;
};

/* notify: one webhook (docs/zdm-runbook.5 "NOTIFY", notify.c) */
enum {
	NOTIFY_START = 1 << 0,		/* run.started, run.resumed */
	NOTIFY_FAILURE = 1 << 1,	/* a step (or an undo) failed for good */
	NOTIFY_ROLLBACK = 1 << 2,	/* rollback.started */
	NOTIFY_FINISH = 1 << 3,		/* run.finished, whatever the outcome */
	NOTIFY_PAUSE = 1 << 4,		/* run.paused, run.interrupted */
	NOTIFY_ALL = (1 << 5) - 1,
};
#define NOTIFY_DEFAULT_TIMEOUT_MS 5000		/* per request, connect included */
#define NOTIFY_MAX_TIMEOUT_MS 30000

struct rb_notify {
	char *url;			/* as written: may hold ${{ }} (a secret) */
	unsigned on;			/* NOTIFY_* bits; NOTIFY_ALL when on: is absent */
	int64_t timeout_ms;
	const struct ynode *node;	/* the entry, for messages */
};

/* a file brought in by include: (docs/zdm-runbook.5 REUSE) */
struct rb_include {
	char *path;			/* as shown in messages: relative like the runbook's */
	char *abspath;
	struct ynode *root;		/* its steps' nodes point into it */
};
#define RB_MAX_INCLUDE_DEPTH 8		/* files included inside included files */
#define RB_MAX_EACH 1000		/* items of one for_each: */
#define RB_MAX_STEPS 10000		/* steps after for_each: and include: */

struct runbook {
	char *path;			/* as given (used in messages) */
	char *abspath;
	char sha256[65];
	struct ynode *root;
	char *name, *description;
	json_t *vars;			/* resolved: runbook values, then --vars-file, then --var */
	struct rb_secret *secrets;
	size_t nsecrets;
	enum on_failure on_failure;
	struct rb_step *steps;
	size_t nsteps;
	struct strmap step_index;	/* id -> index in steps (runbook_step) */
	size_t scope_at;		/* runbook_scope_of: where the last one was found */
	struct rb_step *probes;		/* probes: (zdm drill), or NULL */
	size_t nprobes;
	struct rb_notify *notify;	/* notify: webhooks, or NULL */
	size_t nnotify;
	struct rb_include *includes;
	size_t nincludes;
	struct registry *reg;		/* borrowed */
	struct expr *x;			/* the run's expression sandbox */
	struct yerrs *warns;		/* borrowed from rb_opts; NULL: warnings dropped */
};

struct rb_opts {
	const char *const *vars;	/* "k=v" strings from --var */
	size_t nvars;
	const char *vars_file;		/* --vars-file */
	struct yerrs *warns;		/* warnings (FILE:LINE:COL: warning: ...), or NULL */
};

/* NULL and errors in *errs (sorted) when anything is wrong */
struct runbook *runbook_load(const char *path, struct registry *reg,
    const struct rb_opts *o, struct yerrs *errs);
void runbook_free(struct runbook *rb);
struct rb_step *runbook_step(struct runbook *rb, const char *id);

/* resolve secrets (env/file) into the expression sandbox and the redaction
 * list.  -1 with err (naming FILE:LINE:COL) when one cannot be read. */
int runbook_resolve_secrets(struct runbook *rb, char **err);

/* the scope (each, inputs) of the step whose with (or undo's with) this is;
 * the search starts where the last one was found (steps run in order) */
const json_t *runbook_scope_of(struct runbook *rb, const json_t *with);
/* the step whose with this is (not an undo's), found as runbook_scope_of
 * finds it, or NULL */
struct rb_step *runbook_step_of_with(struct runbook *rb, const json_t *with);
/* "shift-10, shift-25" when id is the id as written of steps copied by
 * for_each: (malloc'd), or NULL */
char *runbook_copies_of(const struct runbook *rb, const char *id);
/* a step's if: condition, evaluated with its each and inputs, as expr_cond:
 * 0 and *yes, 1 when it reads outputs of steps that only showed their plan,
 * -1 and *err */
int runbook_if(struct runbook *rb, const struct rb_step *s, bool *yes, char **err);

/*
 * Run-time parameters for a step (or its undo): expressions evaluated,
 * types checked and converted (durations to ms), the type's validate() run.
 * NULL with err (FILE:LINE:COL: ...) on failure.
 */
json_t *runbook_params(struct runbook *rb, const struct ynode *where,
    const struct zdm_step_type *t, const json_t *with, const struct ynode *with_node,
    char **err);

const char *ptype_name(enum zdm_ptype t);

#endif
