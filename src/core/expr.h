/*
 * expr.h - `${{ ... }}` expressions: Lua 5.4 expressions evaluated in a
 * sandbox over vars, secrets, env, steps.<id>.outputs and run, and in a
 * step under for_each: or from an include, each and inputs.
 *
 * A string that is exactly one `${{ e }}` takes e's value and type; anywhere
 * else the value is interpolated as text.  Step ids may contain '-' (as in
 * `steps.green-healthy.outputs.code`): references to known step ids are
 * rewritten to `steps["green-healthy"]` before Lua sees them.
 */
#ifndef ZDM_EXPR_H
#define ZDM_EXPR_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

struct expr;

struct expr *expr_new(void);
void expr_free(struct expr *x);

/* the step ids of the runbook, in order (for '-' rewriting and checks) */
void expr_set_step_ids(struct expr *x, const char *const *ids, size_t n);
/* set a top-level table: "vars", "secrets", "run" (object; borrowed).
 * -1 (and the table empty) when the values do not fit the sandbox's memory */
int expr_set(struct expr *x, const char *name, const json_t *obj, char **err);
/* steps[id] = {outputs = outputs} (borrowed) */
void expr_set_step(struct expr *x, const char *id, const json_t *outputs);
/*
 * The names one step sees besides vars, secrets, env, steps and run: `each`
 * (its for_each item, any JSON scalar) and `inputs` (the with: of the include
 * that brought it in, an object).  scope is {"each": v, "inputs": {...}},
 * either member optional, or NULL: a name not given is unknown, as any other.
 */
void expr_set_scope(struct expr *x, const json_t *scope);
/* static mode: `steps` and `secrets` are not known yet; expressions that
 * touch them stay unresolved instead of failing */
void expr_set_static(struct expr *x, bool on);

/* make `name` (e.g. "run") unknown until set: expressions using it stay unresolved */
void expr_defer(struct expr *x, const char *name);

bool expr_has_template(const char *s);

/*
 * Deep copy of tmpl with every ${{ }} evaluated.  NULL with *err on failure.
 * In static mode an expression that needs steps or secrets leaves its string
 * as it is.
 */
json_t *expr_render(struct expr *x, const json_t *tmpl, char **err);

/*
 * The env vars the expressions in s read that are not set in this process's
 * environment, except those given a default (`env.X or "..."`): a
 * NULL-terminated malloc'd list of malloc'd names, or NULL when none.  At
 * run time a value that is nil because of such a variable is an error that
 * names it (an `if:` condition excepted: there nil is false).
 */
char **expr_env_unset(const char *s);

/* evaluate an `if:` condition: truthy per Lua (nil and false are false) */
int expr_truthy(struct expr *x, const char *tmpl, bool *out, char **err);
/* the same, and in static mode 1 (and *out untouched) when the condition
 * needs steps or secrets: not known before the run */
int expr_cond(struct expr *x, const char *tmpl, bool *out, char **err);
/* steps[id].outputs is not known yet (a dry run only planned the step):
 * an expression reading it is deferred, as in static mode */
void expr_defer_step(struct expr *x, const char *id);
/* how many evaluations so far met something deferred */
unsigned long expr_deferred_count(const struct expr *x);

/*
 * Static checks of every expression in s: Lua syntax, and references to
 * vars / secrets / steps that exist.  `known_*` are NULL-terminated lists;
 * steps_before are the ids that run before the expression's step (NULL for
 * expressions outside steps).  Each problem is appended to *errs (malloc'd
 * strings, NULL-terminated array grown by the callee).
 */
void expr_check(struct expr *x, const char *s, const char *const *known_vars,
    const char *const *known_secrets, const char *const *steps_before,
    const char *const *all_steps, char ***errs);

/*
 * GitHub Actions habits in Lua code (outside string literals): '!=', '&&',
 * '||', '!x', and the status functions success(), failure(), always(),
 * cancelled().  A malloc'd hint saying what zdm writes instead, or NULL.
 */
char *expr_habit(const char *code);

/*
 * Gate conditions (metric_gate's `success` / `failure`): a Lua expression
 * over `result`, compiled as `return CODE` in an environment of its own that
 * sees only result, isnan, isinf and the sandbox's safe functions (tostring,
 * tonumber, type, pairs, ipairs, select, next, error, assert, string, table,
 * math); any other name is an error, with a did-you-mean.  Same limits as
 * ${{ }}: text chunks only, the memory cap, the instruction-count hook.
 *
 * `result` is given as JSON: null is nil, objects and arrays become tables
 * (as lj_push does).  JSON has no NaN or infinity: make such numbers with
 * expr_number(), which the evaluator turns back into Lua's NaN / +-inf.
 */
json_t *expr_number(double d);

/*
 * Static check of a condition: it parses, and it names nothing unknown (it
 * is tried against a few sample results and only an unknown-name error is
 * reported: type errors depend on the real result).  0, or -1 with *err.
 */
int expr_check_cond(const char *code, char **err);

/*
 * Evaluate a condition with `result` bound to result (NULL = nil) in x's
 * state (the gate's own sandbox: expr_new()).  *out = 1 true, 0 false,
 * -1 nil.  Returns 0, or -1 with *err: a parse error, a runtime error
 * ("attempt to compare nil with number"), or a value that is not a boolean.
 */
int expr_eval_cond(struct expr *x, const char *code, const json_t *result, int *out,
    char **err);

/*
 * For cond.c, which evaluates in the same sandbox: x's Lua state, and a
 * lua_pcall of the function below nargs arguments under the instruction
 * limit (one result; returns lua_pcall's code).
 */
struct lua_State;
struct lua_State *expr_lua(struct expr *x);
int expr_pcall(struct expr *x, int nargs);
/* copy the globals names (NULL-terminated) into the table on top of L */
void expr_env_copy(struct lua_State *L, const char *const *names);

#endif
