/*
 * wait - pause for a while (a soak time before a gate, a drain period).
 * Read-only and idempotent: it runs in --dry-run rehearsals too.
 */
#include "base/proc.h"
#include "base/util.h"
#include "steps/builtin.h"
#include "zdm/step.h"

static const struct zdm_param wait_params[] = {
	{ "duration", ZDM_T_DURATION, true, NULL, "how long to wait: 500ms, 30s, 5m" },
};

/* a wait as long as the step's timeout can never finish */
static void
wait_validate(const struct zdm_step_type *t, const json_t *p, struct zdm_diag *d)
{
	const json_t *v = json_object_get(p, "duration");
	const char *from;
	int64_t tmo = zdm_diag_timeout(d, &from);
	char dd[32], td[32];

	if (!json_is_integer(v) || tmo <= 0 || json_integer_value(v) < tmo)
		return;
	fmt_duration(json_integer_value(v), dd, sizeof dd);
	fmt_duration(tmo, td, sizeof td);
	zdm_diag(d, "duration", "wait %s can never finish: %s %s %s, so the step always times out; "
	    "give the step a timeout: longer than %s, or wait less",
	    dd, dd, json_integer_value(v) == tmo ? "is not shorter than" : "is longer than", from, dd);
}

static char *
wait_plan(const struct zdm_step_type *t, const json_t *p)
{
	char d[32];

	fmt_duration(json_integer_value(json_object_get(p, "duration")), d, sizeof d);
	return xasprintf("wait %s", d);
}

static int
wait_run(const struct zdm_step_type *t, struct zdm_ctx *ctx, const json_t *p,
    struct zdm_result *res)
{
	int64_t ms = json_integer_value(json_object_get(p, "duration"));
	int64_t left = ctx->deadline_ms ? ctx->deadline_ms - zdm_now_ms() : ms, t0;

	if (left < ms) {
		zdm_sleep_ms(left > 0 ? left : 0);
		res->timed_out = true;
		zdm_fail(res, "timed out: the step's timeout is shorter than its wait");
		return -1;
	}
	t0 = zdm_now_ms();
	if (zdm_sleep_ms(ms) != 0) {
		res->interrupted = true;
		zdm_fail(res, "interrupted");
		return -1;
	}
	if (zdm_promoted(ctx) != NULL) {
		/* zdm promote: the soak ends now, as passed */
		res->outputs = json_pack("{s:s,s:I}", "promoted_by", zdm_promoted(ctx),
		    "waited_ms", (json_int_t)(zdm_now_ms() - t0));
	}
	return 0;
}

const struct zdm_step_type zdm_step_wait = {
	.name = "wait",
	.description = "wait for a duration (soak time)",
	.params = wait_params,
	.nparams = 1,
	.read_only = true, .idempotent = true, .promotable = true,
	.validate = wait_validate, .plan = wait_plan, .run = wait_run,
};
