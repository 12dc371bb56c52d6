/*
 * probe.c - run a runbook's probes outside any run (probe.h).
 */
#include <stdlib.h>
#include <string.h>

#include "base/proc.h"
#include "base/redact.h"
#include "base/util.h"
#include "core/probe.h"
#include "core/run.h"
#include "zdm/step.h"

/* the outputs a drill compares */
static json_t *
view_of(const struct rb_step *p, const json_t *outputs)
{
	json_t *v;
	size_t i;
	json_t *k;

	if (p->compare == NULL) {
		v = outputs != NULL ? json_deep_copy(outputs) : json_object();
		json_object_del(v, "duration_ms");	/* how long, not what */
		return v;
	}
	v = json_object();
	json_array_foreach(p->compare, i, k) {
		const json_t *o = json_object_get(outputs, json_string_value(k));

		json_object_set_new(v, json_string_value(k), o != NULL ? json_deep_copy(o) : json_null());
	}
	return v;
}

json_t *
probe_run(struct runbook *rb, size_t i, const char *state_dir, char **err)
{
	struct rb_step *p = &rb->probes[i];
	int max = p->retries + 1;

	for (int a = 1; a <= max; a++) {
		struct zdm_ctx ctx;
		struct zdm_result res;
		json_t *params, *v;
		char *perr = NULL;
		int rc;

		if (zdm_interrupted) {
			seterr(err, "interrupted");
			return NULL;
		}
		params = runbook_params(rb, p->node, p->type, p->with, p->with_node, &perr);
		if (params == NULL) {
			seterr(err, "%s", perr);
			free(perr);
			return NULL;
		}
		memset(&ctx, 0, sizeof ctx);
		ctx.run_id = "drill";
		ctx.step_id = p->id;
		ctx.attempt = a;
		ctx.state_dir = state_dir;
		ctx.deadline_ms = zdm_now_ms() + p->timeout_ms;
		memset(&res, 0, sizeof res);
		rc = p->type->run(p->type, &ctx, params, &res);
		json_decref(params);
		if (rc == 0) {
			v = view_of(p, res.outputs);
			redact_json(v);
			zdm_result_release(&res);
			return v;
		}
		if (a == max || res.interrupted || zdm_interrupted) {
			char *m = redact_str(res.err[0] != '\0' ? res.err : "failed");

			seterr(err, "%s", m);
			free(m);
			zdm_result_release(&res);
			return NULL;
		}
		zdm_result_release(&res);
		if (zdm_sleep_ms(backoff_delay(p, a)) != 0) {
			seterr(err, "interrupted");
			return NULL;
		}
	}
	seterr(err, "failed");
	return NULL;
}
