/*
 * plan_json.c - `zdm plan --output json` (plan_json.h): each OBS_PLAN_STEP
 * as an element of "steps", printed whole once the plan is done.
 */
#include <stdio.h>

#include "core/observer.h"
#include "core/runbook.h"
#include "report/plan_json.h"

static json_t *
str_or_null(const char *s)
{
	return s != NULL ? json_string(s) : json_null();
}

static void
plan_step(struct plan_json *pj, const struct run_event *ev)
{
	const struct rb_step *s = &ev->rb->steps[ev->plan.i];
	static const char *const when[] = {
		[PLAN_RUNS] = "yes", [PLAN_SKIPPED] = "no", [PLAN_UNKNOWN] = "unknown",
	};
	static const char *const undo[] = {
		[PLAN_UNDO_STEP] = "step", [PLAN_UNDO_TYPE] = "type", [PLAN_UNDO_NONE] = "none",
		[PLAN_UNDO_READ_ONLY] = "read_only",
	};
	json_t *o = json_object(), *u;

	json_object_set_new(o, "index", json_integer((json_int_t)ev->plan.i + 1));
	json_object_set_new(o, "id", json_string(s->id));
	json_object_set_new(o, "name", str_or_null(s->name));
	json_object_set_new(o, "uses", json_string(s->uses));
	json_object_set_new(o, "read_only", json_boolean(s->read_only));
	json_object_set_new(o, "check", json_boolean(s->type->check != NULL));
	json_object_set_new(o, "if", str_or_null(s->if_expr));
	json_object_set_new(o, "will_run", json_string(when[ev->plan.when]));
	if (ev->plan.when == PLAN_UNKNOWN && ev->plan.why != NULL)
		json_object_set_new(o, "if_error", json_string(ev->plan.why));
	if (ev->plan.when == PLAN_SKIPPED) {
		json_object_set_new(o, "params", json_null());
		json_object_set_new(o, "plan", json_null());
		json_object_set_new(o, "undo", json_null());
	} else {
		json_object_set_new(o, "params", ev->plan.params != NULL ?
		    json_deep_copy(ev->plan.params) : json_null());
		json_object_set_new(o, "plan", str_or_null(ev->plan.doing));
		u = json_pack("{s:s}", "kind", undo[ev->plan.undo]);
		if (ev->plan.undo == PLAN_UNDO_STEP) {
			json_object_set_new(u, "uses", json_string(s->undo->uses));
			json_object_set_new(u, "plan", str_or_null(ev->plan.undoing));
		}
		json_object_set_new(o, "undo", u);
	}
	json_array_append_new(json_object_get(pj->doc, "steps"), o);
}

void
plan_json_observe(void *self, const struct run_event *ev)
{
	struct plan_json *pj = self;
	const struct runbook *rb = ev->rb;

	switch (ev->kind) {
	case OBS_RUN_STARTED:
		if (ev->start.how != HOW_PLAN || pj->doc != NULL)
			break;
		pj->doc = json_pack("{s:i,s:s,s:s,s:s,s:I,s:[]}", "v", 1, "runbook", rb->name,
		    "path", rb->path,
		    "on_failure", rb->on_failure == ON_FAILURE_ROLLBACK ? "rollback" :
		    rb->on_failure == ON_FAILURE_PAUSE ? "pause" : "abort",
		    "count", (json_int_t)rb->nsteps, "steps");
		break;
	case OBS_PLAN_STEP:
		if (pj->doc != NULL)
			plan_step(pj, ev);
		break;
	case OBS_CLOSED:
		if (pj->doc != NULL) {
			json_dumpf(pj->doc, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
			fputc('\n', stdout);
			fflush(stdout);
			json_decref(pj->doc);
			pj->doc = NULL;
		}
		break;
	default:
		break;
	}
}
