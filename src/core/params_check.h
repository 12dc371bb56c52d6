/*
 * params_check.h - checking a step's params (params.c), shared with runbook.c:
 * a header of its own, so params.c and runbook.c do not include each other.
 */
#ifndef ZDM_CORE_PARAMS_CHECK_H
#define ZDM_CORE_PARAMS_CHECK_H

#include <stdbool.h>

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
};

/* one error at n's place (line 1 col 1 when n is NULL) into e */
void err_at(struct runbook *rb, struct yerrs *e, const struct ynode *n, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* params checked against t's table: unknown and missing names, types;
 * values converted in place (durations to ms); final = no expression left */
void check_params(struct zdm_diag *d, const struct zdm_step_type *t, json_t *params,
    bool final);
/* validate time: render what needs only vars and env, check, validate();
 * *out (when not NULL) gets those params when all is well */
void static_params(struct runbook *rb, struct yerrs *e, const struct ynode *at,
    const struct zdm_step_type *t, const json_t *with, const struct ynode *with_node,
    const char *what, json_t **out);

#endif
