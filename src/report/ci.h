/*
 * ci.h - zdm as a CI stage: the --output json event stream (docs/ci.md)
 * and GitHub Actions annotations.
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

#endif
