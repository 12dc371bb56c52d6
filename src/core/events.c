/*
 * events.c - the journal's event names (events.h).
 */
#include <stddef.h>
#include <string.h>

#include "core/events.h"

static const char *const names[EV_COUNT] = {
	[EV_UNKNOWN] = NULL,
	[EV_RUN_STARTED] = "run.started",
	[EV_RUN_PAUSED] = "run.paused",
	[EV_RUN_INTERRUPTED] = "run.interrupted",
	[EV_RUN_RESUMED] = "run.resumed",
	[EV_RUN_FINISHED] = "run.finished",
	[EV_STEP_STARTED] = "step.started",
	[EV_STEP_SUCCEEDED] = "step.succeeded",
	[EV_STEP_FAILED] = "step.failed",
	[EV_STEP_INTERRUPTED] = "step.interrupted",
	[EV_STEP_SKIPPED] = "step.skipped",
	[EV_ROLLBACK_STARTED] = "rollback.started",
	[EV_UNDO_STARTED] = "undo.started",
	[EV_UNDO_SUCCEEDED] = "undo.succeeded",
	[EV_UNDO_FAILED] = "undo.failed",
	[EV_UNDO_SKIPPED] = "undo.skipped",
	[EV_DRILL_FAILURE] = "drill.failure",
	[EV_GATE_MEASUREMENT] = "gate.measurement",
	[EV_APPROVAL_REQUESTED] = "approval.requested",
	[EV_APPROVAL_GRANTED] = "approval.granted",
	[EV_APPROVAL_DENIED] = "approval.denied",
	[EV_APPROVAL_WAITING] = "approval.waiting",
	[EV_APPROVAL_WAIT_ENDED] = "approval.wait_ended",
	[EV_SSH_HOST] = "ssh.host",
	[EV_SSH_UNDO] = "ssh.undo",
	[EV_NOTIFY_FAILED] = "notify.failed",
	[EV_CONTROL_PAUSE] = "control.pause",
	[EV_CONTROL_ABORT] = "control.abort",
	[EV_CONTROL_PROMOTE] = "control.promote",
};

static const struct {
	const char *prefix;
	size_t len;
	enum ev_ns ns;
} spaces[] = {
	{ "run.", 4, EV_NS_RUN },
	{ "step.", 5, EV_NS_STEP },
	{ "undo.", 5, EV_NS_UNDO },
	{ "rollback.", 9, EV_NS_ROLLBACK },
	{ "drill.", 6, EV_NS_DRILL },
};

const char *
ev_name(enum ev e)
{
	return (unsigned)e < EV_COUNT ? names[e] : NULL;
}

enum ev
ev_parse(const char *name)
{
	if (name == NULL)
		return EV_UNKNOWN;
	for (int e = EV_UNKNOWN + 1; e < EV_COUNT; e++)
		if (strcmp(name, names[e]) == 0)
			return (enum ev)e;
	return EV_UNKNOWN;
}

enum ev_ns
ev_namespace(const char *name)
{
	for (size_t i = 0; name != NULL && i < sizeof spaces / sizeof spaces[0]; i++)
		if (strncmp(name, spaces[i].prefix, spaces[i].len) == 0)
			return spaces[i].ns;
	return EV_NS_NOTE;
}

bool
ev_note_allowed(const char *name)
{
	return name != NULL && strchr(name, '.') != NULL && ev_namespace(name) == EV_NS_NOTE &&
	    strncmp(name, "approval.", 9) != 0 && strncmp(name, "control.", 8) != 0 &&
	    strncmp(name, "notify.", 7) != 0;	/* decisions and controls are people's */
}
