/*
 * params_check.h - checking a step's params (params.c), shared with runbook.c:
 * a header of its own, so params.c and runbook.c do not include each other.
 */
#ifndef ZDM_CORE_PARAMS_CHECK_H
#define ZDM_CORE_PARAMS_CHECK_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "base/ynode.h"
#include "zdm/step.h"

struct runbook;

/* where zdm_diag() reports a step type's complaint */
struct zdm_diag {
	struct runbook *rb;
	const struct ynode *at;		/* fallback location */
	const struct ynode *with;	/* the with: mapping, or NULL */
	struct yerrs *errs;
	const char *what;		/* "step 'x'" or "undo of step 'x'" */
	int64_t timeout_ms;		/* the step's timeout per attempt; 0 = not known */
	const char *timeout_from;	/* where it is set, in words */
	const struct zdm_step_type *t;	/* the type: its renamed params, for places */
};

/* one error at n's place (line 1 col 1 when n is NULL) into e */
void err_at(struct runbook *rb, struct yerrs *e, const struct ynode *n, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* one warning at n's place into rb->warns (dropped when it is NULL) */
void warn_at(struct runbook *rb, const struct ynode *n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* params checked against t's table: unknown and missing names, types;
 * values converted in place (durations to ms); final = no expression left */
void check_params(struct zdm_diag *d, const struct zdm_step_type *t, json_t *params,
    bool final);
/* validate time: render what needs only vars and env, check, validate();
 * *out (when not NULL) gets those params when all is well */
void static_params(struct runbook *rb, struct yerrs *e, const struct ynode *at,
    const struct zdm_step_type *t, const json_t *with, const struct ynode *with_node,
    const char *what, int64_t timeout_ms, const char *timeout_from, json_t **out);

#endif
