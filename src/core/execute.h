/*
 * execute.h - the steps of a run in order, from a given one on, each with
 * its retries, and what on_failure says when one fails.
 */
#ifndef ZDM_CORE_EXECUTE_H
#define ZDM_CORE_EXECUTE_H

#include <stddef.h>

#include "core/run.h"

enum run_outcome run_steps(struct run *r, size_t from);
/* step STEP failed for good (why): journal and do what on_failure says */
enum run_outcome run_on_failure(struct run *r, const char *step, const char *why);

#endif
