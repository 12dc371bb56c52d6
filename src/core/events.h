/*
 * events.h - the names of the journal's events, defined once.
 *
 * zdm's own events live in the namespaces run., step., undo., rollback. and
 * drill.; a step's own events (notes, zdm_note) are any other "area.what":
 * the built-in steps' are listed here, a plugin's are its own business
 * (ev_parse gives EV_UNKNOWN for them).  What a sequence of records means
 * for a run is runstate.h's; nothing else compares event names.
 */
#ifndef ZDM_CORE_EVENTS_H
#define ZDM_CORE_EVENTS_H

#include <stdbool.h>

enum ev {
	EV_UNKNOWN = 0,		/* a plugin's note, or a name zdm does not write */
	/* the run */
	EV_RUN_STARTED,
	EV_RUN_PAUSED,
	EV_RUN_INTERRUPTED,
	EV_RUN_RESUMED,
	EV_RUN_FINISHED,
	/* a step */
	EV_STEP_STARTED,
	EV_STEP_SUCCEEDED,
	EV_STEP_FAILED,
	EV_STEP_INTERRUPTED,
	EV_STEP_SKIPPED,
	/* the rollback and a step's undo */
	EV_ROLLBACK_STARTED,
	EV_UNDO_STARTED,
	EV_UNDO_SUCCEEDED,
	EV_UNDO_FAILED,
	EV_UNDO_SKIPPED,
	/* --fail-at */
	EV_DRILL_FAILURE,
	/* notes of the built-in steps */
	EV_GATE_MEASUREMENT,
	EV_APPROVAL_REQUESTED,
	EV_APPROVAL_GRANTED,
	EV_APPROVAL_DENIED,
	EV_APPROVAL_WAITING,	/* --wait-for-approval: this zdm waits, holding the run */
	EV_APPROVAL_WAIT_ENDED,	/* ... and stopped waiting without a decision */
	EV_SSH_HOST,
	EV_SSH_UNDO,
	/* a webhook that could not be delivered */
	EV_NOTIFY_FAILED,
	/* zdm pause / abort / promote, appended beside the live zdm (control.c) */
	EV_CONTROL_PAUSE,
	EV_CONTROL_ABORT,
	EV_CONTROL_PROMOTE,
	EV_COUNT
};

/* the namespace of a name: zdm's own (by prefix), or a note's */
enum ev_ns {
	EV_NS_NOTE = 0,		/* not zdm's own: a step's note, notify.failed */
	EV_NS_RUN,		/* run. */
	EV_NS_STEP,		/* step. */
	EV_NS_UNDO,		/* undo. */
	EV_NS_ROLLBACK,		/* rollback. */
	EV_NS_DRILL,		/* drill. */
};

/* "step.started" for EV_STEP_STARTED; NULL for EV_UNKNOWN */
const char *ev_name(enum ev e);
/* the event a name is; EV_UNKNOWN for NULL, notes of plugins and others */
enum ev ev_parse(const char *name);
enum ev_ns ev_namespace(const char *name);
/* may a step note this name: "area.what", not in zdm's own namespaces */
bool ev_note_allowed(const char *name);

#endif
