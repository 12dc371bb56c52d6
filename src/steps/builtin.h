/*
 * builtin.h - the step types written in C (one file each in src/steps).
 */
#ifndef ZDM_STEPS_BUILTIN_H
#define ZDM_STEPS_BUILTIN_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "zdm/step.h"

/* built-in types */
extern const struct zdm_step_type zdm_step_exec;
extern const struct zdm_step_type zdm_step_wait;
extern const struct zdm_step_type zdm_step_metric_gate;
extern const struct zdm_step_type zdm_step_http, zdm_step_health_gate;
extern const struct zdm_step_type zdm_step_ssh;	/* steps/ssh.c */

extern const struct zdm_step_type zdm_step_approval;
char *approval_actor(void);		/* ZDM_ACTOR, else the login name; malloc'd */
/* approvers: JSON array of names; empty or not an array: anyone */
bool approval_allowed(const json_t *approvers, const char *name);

#endif
