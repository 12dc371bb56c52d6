/*
 * rollback.h - undo the steps of a run that changed things, newest first,
 * each from what it recorded, each undo journaled like a step.
 */
#ifndef ZDM_CORE_ROLLBACK_H
#define ZDM_CORE_ROLLBACK_H

#include "core/run.h"

/* what a rollback must be told before it undoes step I (run_answer) */
enum undo_doubt {
	UD_NONE,	/* nothing: undo it, or there is nothing to undo */
	UD_STEP,	/* it started, its end is unknown and it recorded nothing
			 * to undo it from: did it take effect? */
	UD_UNDO,	/* its undo started and its end is unknown (not idempotent) */
};
enum undo_doubt undo_doubt(const struct run *r, size_t i);

/* RUN_OK when every undo is done; RUN_IN_DOUBT when an item in doubt was
 * not answered (callers ask first: undo_doubt) */
enum run_outcome undo_steps(struct run *r);

/* the ids of the steps the rollback left in place (they changed things and
 * nothing undid them), in runbook order, NULL-terminated in *ids (the caller
 * frees the array, not the ids); returns how many */
size_t left_in_place(const struct run *r, const char ***ids);

/* a rollback that undid all it could: OBS_RUN_ENDED with verdict VD (and
 * the steps left in place), run.finished "rolled_back" with extra (stolen)
 * and "left_in_place"; RUN_LEFT_IN_PLACE when it left any, else
 * RUN_ROLLED_BACK (RUN_OK for VD_UNDONE: zdm rollback) */
enum run_outcome rolled_back(struct run *r, struct run_event *ev, enum verdict vd, json_t *extra);
#endif
