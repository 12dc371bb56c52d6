/*
 * rollback.h - undo the steps of a run that changed things, newest first,
 * each from what it recorded, each undo journaled like a step.
 */
#ifndef ZDM_CORE_ROLLBACK_H
#define ZDM_CORE_ROLLBACK_H

#include "core/run.h"

/* RUN_OK when every undo is done */
enum run_outcome undo_steps(struct run *r);

#endif
