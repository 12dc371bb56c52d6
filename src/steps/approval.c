/*
 * approval - a person says go (or no) before the run goes on.
 *
 * How a decision is reached, first match wins:
 *   1. a decision already in the journal for this step: approval.granted or
 *      approval.denied, written by `zdm approve RUN_ID STEP [--deny]` (or by
 *      an earlier attempt's prompt) and handed to run() in ctx->notes;
 *   2. the approval's `decision_timeout` has passed since the step FIRST started in
 *      this run (the approval.requested note, so a resume days later still
 *      counts from then): the step fails as timed out and the run rolls back;
 *   3. `--approve STEP` given to run/resume (a pre-approval in CI): granted,
 *      journaled with "via": "--approve" and the actor;
 *   4. --wait-for-approval DURATION (ctx->wait_ms): no prompt; the run
 *      waits, holding its lock, at most DURATION (and no later than the
 *      approval's timeout) for `zdm approve` to record a decision from
 *      anywhere (zdm_await: approval.waiting, then the decision, or
 *      approval.wait_ended), and acts on it at once; none in time: 5 (or,
 *      the approval's timeout reached, the step fails as timed out);
 *   5. interactive (stdin and stderr are terminals, no --non-interactive,
 *      CI unset): the prompt "approve step X? [y/N]" on stderr, waiting at
 *      most until the approval's decision_timeout; y grants, anything else denies;
 *   6. otherwise the run pauses (exit 4) with
 *      "waiting for approval: zdm approve RUN_ID STEP, then zdm resume RUN_ID".
 *
 * The actor is ZDM_ACTOR, else the login name; when `approvers` is a
 * non-empty list the actor must be on it.  A denial is a step failure, so
 * on_failure (rollback by default) applies: exit 1 once rolled back.
 *
 * Read-only and idempotent (it changes nothing; asking again after a crash
 * is right).  In a --dry-run rehearsal it does not ask: it reports that an
 * approval would be needed and succeeds, so the rehearsal goes on.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/proc.h"
#include "base/util.h"
#include "core/actor.h"
#include "core/events.h"
#include "steps/builtin.h"
#include "zdm/step.h"

static const struct zdm_param ap_params[] = {
	{ "message", ZDM_T_STRING, true, NULL, "what the approver is asked to check" },
	{ "approvers", ZDM_T_LIST, false, "[]", "names (ZDM_ACTOR or login) allowed to decide; empty: anyone" },
	{ "decision_timeout", ZDM_T_DURATION, false, "\"4h\"", "from the step's first start, across resumes; no decision by then fails the step" },
};

/* earlier names, accepted with a warning (docs/zdm-runbook.5 NAMES) */
static const struct zdm_rename ap_renamed[] = {
	{ "timeout", "decision_timeout" },
};

char *
approval_actor(void)
{
	/* the same name run.started records as actor.who (audit.c) */
	return audit_who();
}

bool
approval_allowed(const json_t *approvers, const char *name)
{
	size_t i;
	json_t *v;

	if (!json_is_array(approvers) || json_array_size(approvers) == 0)
		return true;
	json_array_foreach(approvers, i, v)
		if (json_is_string(v) && strcmp(json_string_value(v), name) == 0)
			return true;
	return false;
}

/* "ann, bob" or "anyone"; malloc'd */
static char *
approvers_text(const json_t *approvers)
{
	struct sbuf sb;
	size_t i;
	json_t *v;

	if (!json_is_array(approvers) || json_array_size(approvers) == 0)
		return xstrdup("anyone");
	sb_init(&sb);
	json_array_foreach(approvers, i, v)
		sb_addf(&sb, "%s%s", i ? ", " : "", json_is_string(v) ? json_string_value(v) : "?");
	return sb_detach(&sb);
}

static void
ap_validate(const struct zdm_step_type *t, const json_t *p, struct zdm_diag *d)
{
	const json_t *a = json_object_get(p, "approvers"), *to = json_object_get(p, "decision_timeout");
	size_t i;
	json_t *v;

	if (json_is_array(a))
		json_array_foreach(a, i, v)
			if (!zdm_is_expr(v) && (!json_is_string(v) || json_string_length(v) == 0))
				zdm_diag(d, "approvers", "item %zu must be a non-empty name (ZDM_ACTOR or a login)", i + 1);
	if (json_is_integer(to) && json_integer_value(to) <= 0)
		zdm_diag(d, "decision_timeout", "must be more than 0");
}

static char *
ap_plan(const struct zdm_step_type *t, const json_t *p)
{
	char d[32], *who = approvers_text(json_object_get(p, "approvers")), *s;

	fmt_duration(json_integer_value(json_object_get(p, "decision_timeout")), d, sizeof d);
	s = xasprintf("ask %s to approve: %s (within %s)", who,
	    json_string_value(json_object_get(p, "message")), d);
	free(who);
	return s;
}

static int64_t
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --approve STEP on the command line */
static bool
pre_approved(const struct zdm_ctx *ctx)
{
	for (size_t i = 0; i < ctx->napproved; i++)
		if (strcmp(ctx->approved[i], ctx->step_id) == 0)
			return true;
	return false;
}

static json_t *
decision(const char *actor, const char *via, const char *reason)
{
	json_t *d = json_pack("{s:s,s:s}", "actor", actor, "via", via);

	if (reason != NULL)
		json_object_set_new(d, "reason", json_string(reason));
	return d;
}

/*
 * The prompt: 1 granted, 0 denied, -1 no answer in time, -2 interrupted,
 * -3 stdin closed.  Reads one line of at most 255 bytes.
 */
static int
ask(const char *step, const char *msg, const char *who, int64_t wait_ms)
{
	char line[256];
	size_t n = 0;
	int64_t end = zdm_now_ms() + wait_ms;
	char d[32];

	fmt_duration(wait_ms, d, sizeof d);
	zdm_warnf("\napproval needed: %s\n  approvers: %s; answer within %s\napprove step %s? [y/N] ",
	    msg, who, d, step);
	fflush(stderr);
	for (;;) {
		struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };
		int64_t left = end - zdm_now_ms();
		ssize_t k;
		int pr;

		if (zdm_interrupted)
			return -2;
		if (left <= 0)
			return -1;
		pr = poll(&pfd, 1, left > 200 ? 200 : (int)left);
		if (pr < 0 && errno != EINTR)
			return -3;
		if (pr <= 0)
			continue;
		k = read(STDIN_FILENO, line + n, 1);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -3;
		if (line[n] == '\n' || n + 1 >= sizeof line - 1) {
			line[n] = '\0';
			break;
		}
		n++;
	}
	return strcmp(line, "y") == 0 || strcmp(line, "Y") == 0 || strcasecmp(line, "yes") == 0;
}

/* act on a recorded decision (approval.granted / approval.denied, DATA) */
static int
decided(enum ev ev, const json_t *data, struct zdm_result *res)
{
	const char *by = json_string_value(json_object_get(data, "actor"));
	const char *why = json_string_value(json_object_get(data, "reason"));

	if (ev == EV_APPROVAL_GRANTED) {
		res->outputs = json_pack("{s:b,s:s}", "approved", 1, "approved_by", by ? by : "?");
		return 0;
	}
	zdm_fail(res, "approval denied by %s%s%s", by ? by : "?", why ? ": " : "", why ? why : "");
	return -1;
}

/* the approval's timeout passed, counted from REQUESTED (ms since the epoch) */
static int
timed_out(int64_t requested, const char *d, struct zdm_result *res)
{
	char ts[32];
	time_t s = (time_t)(requested / 1000);
	struct tm tm;

	gmtime_r(&s, &tm);
	strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
	res->timed_out = true;
	zdm_fail(res, "approval timed out: no decision within %s of the request at %s", d, ts);
	return -1;
}

static int
ap_run(const struct zdm_step_type *t, struct zdm_ctx *ctx, const json_t *p,
    struct zdm_result *res)
{
	const char *msg = json_string_value(json_object_get(p, "message"));
	const json_t *approvers = json_object_get(p, "approvers");
	int64_t timeout = json_integer_value(json_object_get(p, "decision_timeout"));
	int64_t requested = -1, now = wall_ms();
	const json_t *dec = NULL;
	enum ev dec_ev = EV_UNKNOWN;
	char *actor, *who, d[32];
	size_t i;
	json_t *n;
	int rc = -1;

	if (ctx->dry_run) {
		res->outputs = json_pack("{s:b,s:s}", "approved", 0, "approved_by", "");
		zdm_progress(ctx, "dry run: would ask for approval");
		return 0;
	}
	json_array_foreach(ctx->notes, i, n) {
		enum ev ev = ev_parse(json_string_value(json_object_get(n, "event")));
		const json_t *nd = json_object_get(n, "data");

		if (ev == EV_APPROVAL_REQUESTED && requested < 0 &&
		    json_is_integer(json_object_get(nd, "at_ms")))
			requested = json_integer_value(json_object_get(nd, "at_ms"));
		else if (ev == EV_APPROVAL_GRANTED || ev == EV_APPROVAL_DENIED) {
			dec = nd;
			dec_ev = ev;
		}
	}
	fmt_duration(timeout, d, sizeof d);
	if (requested < 0) {
		char ts[32];

		now_iso8601(ts, sizeof ts);
		requested = now;
		zdm_note(ctx, ev_name(EV_APPROVAL_REQUESTED), json_pack("{s:s,s:O,s:I,s:s,s:I}", "message", msg,
		    "approvers", approvers, "timeout_ms", (json_int_t)timeout, "at", ts,
		    "at_ms", (json_int_t)now));
	}
	if (dec != NULL)
		return decided(dec_ev, dec, res);
	if (now - requested >= timeout)
		return timed_out(requested, d, res);
	actor = approval_actor();
	who = approvers_text(approvers);
	if (pre_approved(ctx)) {
		if (approval_allowed(approvers, actor)) {
			zdm_note(ctx, ev_name(EV_APPROVAL_GRANTED), decision(actor, "--approve", NULL));
			res->outputs = json_pack("{s:b,s:s}", "approved", 1, "approved_by", actor);
			rc = 0;
			goto out;
		}
		zdm_warnf("zdm: --approve %s: '%s' is not among the approvers (%s); not pre-approved\n",
		    ctx->step_id, actor, who);
	}
	if (ctx->wait_ms > 0) {
		/* --wait-for-approval: zdm approve from anywhere, no prompt */
		int64_t left = timeout - (now - requested);
		json_t *got = NULL;
		int a = zdm_await(ctx, ctx->wait_ms < left ? ctx->wait_ms : left, &got);

		if (a == 1) {
			rc = decided(ev_parse(json_string_value(json_object_get(got, "event"))),
			    json_object_get(got, "data"), res);
			json_decref(got);
			goto out;
		}
		if (a == -1) {
			res->interrupted = true;
			zdm_fail(res, "interrupted while waiting for approval");
			goto out;
		}
		if (a == -2) {
			/* not a failure to roll back: this zdm stops (said) */
			res->pause = true;
			zdm_fail(res, "stopped waiting for approval: this zdm cannot go on with run %s",
			    ctx->run_id);
			goto out;
		}
		if (wall_ms() - requested >= timeout) {
			rc = timed_out(requested, d, res);
			goto out;
		}
		/* no decision in time: pause as without the flag */
	} else if (ctx->interactive && !approval_allowed(approvers, actor))
		zdm_warnf("zdm: step %s: '%s' is not among the approvers (%s), so zdm does not ask; "
		    "one of them decides with zdm approve\n", ctx->step_id, actor, who);
	if (ctx->wait_ms == 0 && ctx->interactive && approval_allowed(approvers, actor)) {
		int a = ask(ctx->step_id, msg, who, timeout - (now - requested));

		if (a == 1 || a == 0) {
			zdm_note(ctx, ev_name(a ? EV_APPROVAL_GRANTED : EV_APPROVAL_DENIED),
			    decision(actor, "prompt", NULL));
			if (a) {
				res->outputs = json_pack("{s:b,s:s}", "approved", 1, "approved_by", actor);
				rc = 0;
			} else {
				zdm_fail(res, "approval denied by %s at the prompt", actor);
			}
			goto out;
		}
		if (a == -1) {
			res->timed_out = true;
			zdm_fail(res, "approval timed out: no answer at the prompt within %s", d);
			goto out;
		}
		if (a == -2) {
			res->interrupted = true;
			zdm_fail(res, "interrupted while waiting for approval");
			goto out;
		}
		/* stdin closed: fall through to waiting */
	}
	res->pause = true;
	zdm_fail(res, "waiting for approval: zdm approve %s %s, then zdm resume %s (approvers: %s; %s)",
	    ctx->run_id, ctx->step_id, ctx->run_id, who, msg);
out:
	free(actor);
	free(who);
	return rc;
}

const struct zdm_step_type zdm_step_approval = {
	.name = "approval",
	.description = "wait for a person to approve (prompt, zdm approve, or --approve STEP)",
	ZDM_PARAMS(ap_params),
	ZDM_RENAMED(ap_renamed),
	.read_only = true, .idempotent = true, .waits_for_person = true,
	.validate = ap_validate, .plan = ap_plan, .run = ap_run,
};
