/*
 * ci.h - zdm as a CI stage: the --output json event stream (docs/ci.md),
 * GitHub Actions annotations and the --junit report; each of them also as
 * an observer of a run (core/observer.h).
 */
#ifndef ZDM_REPORT_CI_H
#define ZDM_REPORT_CI_H

#include <stdbool.h>

#include <jansson.h>

/* --output json: one event per line on stdout, schema docs/ci.md ("v": 1) */
#define ZDM_EVENT_SCHEMA 1
void ci_emit(json_t *ev);		/* adds "v" and "ts" if missing; stolen */
/* GitHub Actions workflow commands (::error file=..,line=..,col=..::msg)
 * when GITHUB_ACTIONS=true; level "error" | "warning" | "notice"; on stdout,
 * or stderr when stdout carries --output json; line/col 0 = none */
bool ci_github(void);
void ci_annotate(const char *level, const char *file, int line, int col,
    const char *title, const char *msg);
extern bool ci_json_stdout;		/* stdout is the JSON event stream */

struct run_event;
/* --output json: each journal record, as it reaches disk, an event of the
 * stream; self non-NULL (-v): each line a step's command printed too, as an
 * "output" event */
void ci_json_observe(void *self, const struct run_event *ev);
/* GitHub annotations of a run, at the line of the step concerned: a step
 * that failed, an undo that failed for good, a run rolled back, paused for
 * a person, or a step in doubt; self is unused.  Observes before the
 * terminal view, so an annotation comes before the text it goes with. */
void ci_annotations_observe(void *self, const struct run_event *ev);
/* --junit FILE (self: the file name, a const char *): the report of the
 * whole run, from its journal, written when the command is done with it;
 * a report that cannot be written is said on stderr and changes nothing */
void ci_junit_observe(void *self, const struct run_event *ev);

#endif
