/*
 * health_gate - poll one or more URLs until they are healthy enough, in a
 * row, to go on; fail when they are unhealthy enough, in a row, or when the
 * step's timeout runs out first.
 *
 * The semantics are those of AWS target groups (HealthCheckIntervalSeconds,
 * HealthCheckTimeoutSeconds, HealthyThresholdCount, UnhealthyThresholdCount:
 * "the number of consecutive health check successes/failures required")
 * and Kubernetes probes (periodSeconds, timeoutSeconds, successThreshold,
 * failureThreshold):
 *   - a round is taken every `interval` (round k is due at k intervals
 *     after the first; a round slower than that is followed at once);
 *   - each request has `timeout`; no answer, a connection error (reported
 *     with curl's message), an unexpected status, a body without
 *     `expect_body_contains` or a JSON field other than `expect_json` says
 *     is unhealthy;
 *   - a round is healthy only if every URL is;
 *   - `healthy_threshold` healthy rounds in a row pass the gate, and
 *     `unhealthy_threshold` unhealthy ones in a row fail it; either kind of
 *     round resets the other's streak, so a flapping service passes only
 *     once it holds steady;
 *   - the step's timeout bounds the whole gate: when no further round can
 *     start before it, the gate fails ("timed out after N rounds").
 *
 * Read-only and idempotent: it only reads, so it runs for real in --dry-run
 * rehearsals and is run again after a crash.  Every round is journaled as a
 * `gate.measurement` event (status or error, time, verdict per URL) before
 * the next one starts: the evidence behind the gate's decision.
 */
#include <stdlib.h>
#include <string.h>

#include "base/proc.h"
#include "base/util.h"
#include "core/events.h"
#include "steps/builtin.h"
#include "steps/httpcheck.h"
#include "zdm/step.h"

static const struct zdm_param hg_params[] = {
	{ "url", ZDM_T_STRING, false, NULL, "URL to poll (or urls)" },
	{ "urls", ZDM_T_LIST, false, NULL, "URLs to poll; a round is healthy only if all are" },
	{ "interval", ZDM_T_DURATION, false, "\"2s\"", "time between the starts of two rounds" },
	{ "healthy_threshold", ZDM_T_INT, false, "3", "healthy rounds in a row that pass the gate" },
	{ "unhealthy_threshold", ZDM_T_INT, false, "3", "unhealthy rounds in a row that fail the gate" },
	{ "request_timeout", ZDM_T_DURATION, false, "\"2s\"", "for each request; no answer in time is unhealthy" },
	{ "expect_status", ZDM_T_LIST, false, "[\"2xx\"]", "healthy statuses: 200, \"2xx\", \"200-299\"" },
	{ "expect_body_contains", ZDM_T_STRING, false, NULL, "text a healthy body contains" },
	{ "expect_json", ZDM_T_MAP, false, NULL, "JSON fields of a healthy body: .status: up" },
	{ "headers", ZDM_T_MAP, false, NULL, "request headers, name: value" },
	{ "ca_file", ZDM_T_PATH, false, NULL, "PEM file of CA certificates to verify the server with" },
	{ "insecure", ZDM_T_BOOL, false, "false", "do not verify TLS certificates (warned about)" },
};

/* earlier names, accepted with a warning (docs/zdm-runbook.5 NAMES) */
static const struct zdm_rename hg_renamed[] = {
	{ "timeout", "request_timeout" },
};

#define HG_MAX_THRESHOLD 10000

static void
hg_positive(struct zdm_diag *d, const json_t *p, const char *name, const char *what)
{
	const json_t *v = json_object_get(p, name);

	if (json_is_integer(v) && json_integer_value(v) <= 0)
		zdm_diag(d, name, "must be more than 0%s", what);
}

/*
 * Rounds start `interval` apart and the gate passes on the
 * healthy_threshold-th healthy round in a row: that round starts
 * (healthy_threshold - 1) x interval after the first, and no round starts
 * at or past the step's deadline.  When that is not shorter than the step's
 * timeout the gate can never pass.
 */
static void
hg_timing(struct zdm_diag *d, const json_t *p)
{
	const json_t *iv = json_object_get(p, "interval"), *th = json_object_get(p, "healthy_threshold");
	const char *from, *at;
	int64_t tmo = zdm_diag_timeout(d, &from), need;
	char id[32], nd[32];
	long long n;

	if (tmo <= 0 || !json_is_integer(iv) || !json_is_integer(th) || json_integer_value(iv) <= 0 ||
	    json_integer_value(th) < 1 || json_integer_value(th) > HG_MAX_THRESHOLD)
		return;
	n = json_integer_value(th);
	need = (n - 1) * json_integer_value(iv);
	if (need < tmo)
		return;
	fmt_duration(json_integer_value(iv), id, sizeof id);
	fmt_duration(need, nd, sizeof nd);
	/* the place: the param the runbook wrote that asks for the time */
	at = zdm_diag_written(d, "interval") ? "interval" :
	    zdm_diag_written(d, "healthy_threshold") ? "healthy_threshold" : "interval";
	zdm_diag(d, at, "the gate can never pass: healthy_threshold %lld rounds %s apart take "
	    "(%lld - 1) x %s = %s from the first round to the last, not less than %s; "
	    "give the step a timeout: longer than %s, or lower interval or healthy_threshold",
	    n, id, n, id, nd, from, nd);
}

static void
hg_validate(const struct zdm_step_type *t, const json_t *p, struct zdm_diag *d)
{
	const json_t *url = json_object_get(p, "url"), *urls = json_object_get(p, "urls");
	const json_t *v, *ej = json_object_get(p, "expect_json");
	const char *k, *th[] = { "healthy_threshold", "unhealthy_threshold" };
	size_t i;

	if ((url == NULL) == (urls == NULL)) {
		zdm_diag(d, NULL, "health_gate needs exactly one of 'url' or 'urls' (a list)");
	} else if (url != NULL) {
		hc_check_url(d, "url", url);
	} else if (json_is_array(urls)) {
		if (json_array_size(urls) == 0)
			zdm_diag(d, "urls", "empty list: give at least one URL");
		json_array_foreach(urls, i, v)
			hc_check_url(d, "urls", v);
	}
	hg_positive(d, p, "interval", " (the time between rounds: 500ms, 2s)");
	hg_positive(d, p, "request_timeout", " (for each request: 500ms, 2s)");
	for (i = 0; i < 2; i++) {
		v = json_object_get(p, th[i]);
		if (json_is_integer(v) && (json_integer_value(v) < 1 ||
		    json_integer_value(v) > HG_MAX_THRESHOLD))
			zdm_diag(d, th[i], "must be from 1 to %d rounds in a row", HG_MAX_THRESHOLD);
	}
	hg_timing(d, p);
	hc_check_status(d, p);
	hc_check_headers(d, p);
	if (json_is_object(ej)) {
		json_object_foreach((json_t *)ej, k, v) {
			const char *why = hc_path_problem(k);

			if (why != NULL)
				zdm_diag(d, "expect_json", "bad JSON path '%s': %s", k, why);
		}
	}
}

static char *
hg_plan(const struct zdm_step_type *t, const json_t *p)
{
	const json_t *url = json_object_get(p, "url"), *urls = json_object_get(p, "urls"), *v;
	const char *contains = json_string_value(json_object_get(p, "expect_body_contains"));
	char *st = hc_status_text(json_object_get(p, "expect_status")), d[32];
	struct sbuf sb;
	size_t i;

	sb_init(&sb);
	sb_adds(&sb, "poll ");
	if (url != NULL) {
		sb_adds(&sb, json_string_value(url));
	} else {
		json_array_foreach(urls, i, v)
			sb_addf(&sb, "%s%s", i ? ", " : "", json_string_value(v));
	}
	fmt_duration(json_integer_value(json_object_get(p, "interval")), d, sizeof d);
	sb_addf(&sb, " every %s until %lld healthy in a row (fail after %lld unhealthy); healthy: %s",
	    d, (long long)json_integer_value(json_object_get(p, "healthy_threshold")),
	    (long long)json_integer_value(json_object_get(p, "unhealthy_threshold")), st);
	if (contains != NULL)
		sb_addf(&sb, ", body contains '%s'", contains);
	if (json_object_size(json_object_get(p, "expect_json")) > 0) {
		char *j = json_dumps(json_object_get(p, "expect_json"), JSON_COMPACT);

		sb_addf(&sb, ", JSON %s", j ? j : "?");
		free(j);
	}
	if (json_is_true(json_object_get(p, "insecure")))
		sb_adds(&sb, " (TLS not verified)");
	free(st);
	return sb_detach(&sb);
}

/* the URLs to poll, borrowed from params */
static size_t
hg_urls(const json_t *p, const char ***out)
{
	const json_t *url = json_object_get(p, "url"), *urls = json_object_get(p, "urls"), *v;
	size_t n = url != NULL ? 1 : json_array_size(urls), i;
	const char **u = xcalloc(n + 1, sizeof *u);

	if (url != NULL) {
		u[0] = json_string_value(url);
	} else {
		json_array_foreach(urls, i, v)
			u[i] = json_string_value(v);
	}
	*out = u;
	return n;
}

static int
hg_run(const struct zdm_step_type *t, struct zdm_ctx *ctx, const json_t *p,
    struct zdm_result *res)
{
	struct hc_expect e = {
		.status = json_object_get(p, "expect_status"),
		.body_contains = json_string_value(json_object_get(p, "expect_body_contains")),
		.json = json_object_get(p, "expect_json"),
	};
	int64_t interval = json_integer_value(json_object_get(p, "interval"));
	long hth = (long)json_integer_value(json_object_get(p, "healthy_threshold"));
	long uth = (long)json_integer_value(json_object_get(p, "unhealthy_threshold"));
	json_t *statuses = json_object();
	struct sbuf last, show;
	struct http_req req;
	const char **urls;
	size_t nurls = hg_urls(p, &urls);
	long round = 0, hs = 0, us = 0;
	int64_t due = zdm_now_ms();	/* when the next round should start */
	int rc = -1;

	hc_req_init(&req, p);
	req.deadline_ms = ctx->deadline_ms;
	hc_warn_insecure(ctx, p);
	sb_init(&last);
	sb_init(&show);
	for (;;) {
		int64_t now;
		json_t *results = json_array();
		bool healthy = true, stop = false;

		round++;
		last.len = show.len = 0;
		last.buf[0] = show.buf[0] = '\0';
		for (size_t i = 0; i < nurls; i++) {
			struct http_resp r;
			char *err = NULL, why[1024];
			json_t *one;

			req.url = urls[i];
			if (http_do(&req, &r, &err) != 0) {
				if (zdm_interrupted) {
					free(err);
					http_resp_release(&r);
					stop = true;
					break;
				}
				one = json_pack("{s:s,s:s,s:I,s:b}", "url", urls[i], "error", err,
				    "duration_ms", (json_int_t)r.duration_ms, "healthy", 0);
				json_object_set_new(statuses, urls[i], json_null());
				sb_addf(&last, "%s%s: %s", i ? "; " : "", urls[i], err);
				sb_addf(&show, "%s%s", i ? ", " : "", err);
				healthy = false;
				free(err);
			} else {
				bool ok = hc_check(&e, &r, why, sizeof why) == 0;

				one = json_pack("{s:s,s:i,s:I,s:b}", "url", urls[i], "status", (int)r.status,
				    "duration_ms", (json_int_t)r.duration_ms, "healthy", ok);
				if (!ok) {
					json_object_set_new(one, "reason", json_string(why));
					sb_addf(&last, "%s%s: %s", i ? "; " : "", urls[i], why);
					healthy = false;
				} else {
					sb_addf(&last, "%s%s: %ld in %lldms", i ? "; " : "", urls[i],
					    r.status, (long long)r.duration_ms);
				}
				sb_addf(&show, "%s%ld in %lldms", i ? ", " : "", r.status,
				    (long long)r.duration_ms);
				json_object_set_new(statuses, urls[i], json_integer(r.status));
			}
			if (one != NULL)
				json_array_append_new(results, one);
			http_resp_release(&r);
		}
		if (stop) {
			json_decref(results);
			res->interrupted = true;
			zdm_fail(res, "interrupted in round %ld", round);
			break;
		}
		if (healthy) {
			hs++;
			us = 0;
		} else {
			us++;
			hs = 0;
		}
		zdm_note(ctx, ev_name(EV_GATE_MEASUREMENT), json_pack("{s:I,s:b,s:I,s:I,s:o}",
		    "round", (json_int_t)round, "healthy", healthy,
		    "healthy_streak", (json_int_t)hs, "unhealthy_streak", (json_int_t)us,
		    "results", results));
		if (healthy)
			zdm_progress(ctx, "round %ld: %ld/%ld healthy in a row (%s)", round, hs, hth, show.buf);
		else
			zdm_progress(ctx, "round %ld: %ld/%ld unhealthy in a row (%s)", round, us, uth, show.buf);
		if (hs >= hth) {
			rc = 0;
			break;
		}
		/* rounds keep to their schedule (a late wake-up does not push
		 * the next ones back); a round slower than the interval is
		 * followed at once, without a burst to catch up */
		now = zdm_now_ms();
		due += interval;
		if (due < now)
			due = now;
		if (ctx->deadline_ms != 0 && (now >= ctx->deadline_ms || due >= ctx->deadline_ms)) {
			/* no time for another round: the step's timeout decides */
			res->timed_out = true;
			zdm_fail(res, "timed out after %ld round%s: last: %s (%s %ld/%ld in a row)",
			    round, round == 1 ? "" : "s", last.buf, healthy ? "healthy" : "unhealthy",
			    healthy ? hs : us, healthy ? hth : uth);
			break;
		}
		if (us >= uth) {
			char all[48] = "";

			if (round > us)
				snprintf(all, sizeof all, "; %ld rounds in all", round);
			zdm_fail(res, "unhealthy %ld round%s in a row (unhealthy_threshold %ld%s): last: %s",
			    us, us == 1 ? "" : "s", uth, all, last.buf);
			break;
		}
		if (due > now && zdm_sleep_ms(due - now) != 0) {
			res->interrupted = true;
			zdm_fail(res, "interrupted after %ld round%s", round, round == 1 ? "" : "s");
			break;
		}
		if (zdm_promoted(ctx) != NULL) {
			/* zdm promote: a person took it as healthy */
			rc = 0;
			break;
		}
	}
	res->outputs = json_pack("{s:I,s:I,s:o}", "rounds", (json_int_t)round,
	    "healthy_streak", (json_int_t)hs, "statuses", statuses);
	if (rc == 0 && zdm_promoted(ctx) != NULL)
		json_object_set_new(res->outputs, "promoted_by", json_string(zdm_promoted(ctx)));
	sb_release(&last);
	sb_release(&show);
	free(urls);
	return rc;
}

const struct zdm_step_type zdm_step_health_gate = {
	.name = "health_gate",
	.description = "poll URLs until healthy N times in a row; fail after M unhealthy in a row",
	ZDM_PARAMS(hg_params),
	ZDM_RENAMED(hg_renamed),
	.read_only = true, .idempotent = true, .promotable = true, .notes_unread = true,
	.validate = hg_validate, .plan = hg_plan, .run = hg_run,
};
