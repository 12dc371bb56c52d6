/*
 * plan_json.h - `zdm plan --output json`: the plan as one JSON document on
 * standard output (fields in zdm(1), "zdm plan --output json").
 */
#ifndef ZDM_REPORT_PLAN_JSON_H
#define ZDM_REPORT_PLAN_JSON_H

#include <jansson.h>

struct run_event;

struct plan_json {
	json_t *doc;		/* built as the plan's events come; NULL before */
};

/* an observer of a plan (core/observer.h); self: a struct plan_json,
 * zeroed.  Prints the document on OBS_CLOSED and frees it. */
void plan_json_observe(void *self, const struct run_event *ev);

#endif
