/*
 * metric_gate - go on only when a metric says so.  Every `interval` the
 * gate sends an instant query to Prometheus (GET /api/v1/query), judges the
 * result with the `success` and `failure` conditions, and keeps a tally
 * that decides the step.  The semantics are those of one metric of an Argo
 * Rollouts AnalysisRun (docs/features/analysis.md; analysis/analysis.go:
 * runMeasurements, assessMetricStatus, assessMetricFailureInconclusiveOrError;
 * utils/evaluate: EvaluateResult): phases, limits and counts mean what they
 * mean there.  Conditions are Lua (`and`, `or`, `~=`), plain strings rather
 * than ${{ }} (which may still interpolate vars into them: "result <
 * ${{ vars.max }}"), and a single series is a number where Argo writes
 * result[0].
 *
 * A measurement is one of four things.
 *   error         the query did not give a value: connection refused, a
 *                 timeout, an HTTP error, Prometheus' own error (bad_data
 *                 for a query that does not parse), a range vector, or a
 *                 condition that raised an error on a real value.
 *   failed        `failure` is true; or only `success` is given and it is
 *                 not true (Argo: failure = !success).
 *   successful    `success` is true (and `failure` is not); or only
 *                 `failure` is given and it is not true.
 *   inconclusive  both are given and neither is true; and, whatever is
 *                 given, a result with no data -- an empty vector or NaN --
 *                 unless a condition is explicitly true for it.
 * No data is never a success by default: conditions see `result = nil` for
 * an empty vector and NaN for NaN (every comparison with NaN is false), and a
 * condition that raises on nil ("attempt to compare nil with number") just
 * does not hold.  To decide no-data yourself say so: `failure: "result == nil
 * or isnan(result)"` fails on it, `success: "result == nil or result < 0.05"`
 * passes it.  `result` is a number for a scalar or a single-series vector,
 * a list of {metric = {labels}, value = number} for several series, a string
 * for a string result; isnan(x) and isinf(x) are there to test numbers.
 *
 * The tally, checked after every measurement (Argo's order):
 *   failed > failure_limit                      -> the step fails
 *   inconclusive > inconclusive_limit           -> the run pauses (exit 4): a person decides
 *   consecutive errors > consecutive_error_limit -> the step fails
 *   consecutive successes >= consecutive_success_limit (if > 0) -> success
 *   count measurements taken (errors do not count, as in Argo)   -> success,
 *     or with consecutive_success_limit > 0: a pause when failure_limit is
 *     in use, a failure when it is -1 (Argo 1.8)
 * count 0 measures until the step's timeout: the gate then succeeds (Argo:
 * a terminated metric is successful), or fails when consecutive_success_limit
 * was still waited for.  With count > 0 a timeout that comes first fails the
 * step.
 *
 * Where zdm differs from Argo, on purpose:
 *   - no data is inconclusive (the rule: never success by default),
 *     where Argo fails a success-only condition on NaN and errs on an empty
 *     vector indexed with result[0];
 *   - a gate never succeeds without one successful measurement: when the
 *     count or the timeout ends a gate whose measurements were all
 *     inconclusive (within inconclusive_limit), the run pauses instead;
 *   - after an error the next query comes after `interval` (Argo retries
 *     errors every 10 s), so consecutive_error_limit bounds time as well;
 *   - `validate` refuses failure_limit >= count: such a gate can never fail.
 * `request_timeout` in `with:` bounds each query (Prometheus is told too); the
 * step's own timeout bounds the whole gate.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/proc.h"
#include "base/util.h"
#include "core/events.h"
#include "core/expr.h"
#include "net/httpc.h"
#include "steps/builtin.h"
#include "steps/httpcheck.h"
#include "zdm/step.h"

#define MG_MAX_BODY	(8u << 20)	/* bytes of a query's response kept */
#define MG_JOURNAL_SERIES 50		/* series of a list result journaled */

static const struct zdm_param mg_params[] = {
	{ "provider", ZDM_T_STRING, true, NULL, "where the metric lives: prometheus" },
	{ "address", ZDM_T_STRING, true, NULL, "the provider's base URL: http://prometheus:9090" },
	{ "query", ZDM_T_STRING, true, NULL, "PromQL, sent as an instant query each measurement" },
	{ "success", ZDM_T_STRING, false, NULL, "condition for a successful measurement, Lua over result: \"result < 0.05\"" },
	{ "failure", ZDM_T_STRING, false, NULL, "condition for a failed measurement: \"result >= 0.1\"" },
	{ "interval", ZDM_T_DURATION, false, "\"30s\"", "time from one measurement's end to the next" },
	{ "count", ZDM_T_INT, false, "0", "measurements to take (errors do not count); 0 = until the step's timeout" },
	{ "initial_delay", ZDM_T_DURATION, false, "0", "wait before the first measurement" },
	{ "failure_limit", ZDM_T_INT, false, "0", "failed measurements tolerated; -1 = any (with consecutive_success_limit)" },
	{ "inconclusive_limit", ZDM_T_INT, false, "0", "inconclusive measurements tolerated; past it the run pauses" },
	{ "consecutive_error_limit", ZDM_T_INT, false, "4", "errors in a row tolerated (query, HTTP, connection)" },
	{ "consecutive_success_limit", ZDM_T_INT, false, "0", "succeed after this many successes in a row; 0 = not used" },
	{ "request_timeout", ZDM_T_DURATION, false, "\"10s\"", "time limit of each query (the step's timeout bounds the gate)" },
	{ "token", ZDM_T_STRING, false, NULL, "bearer token, from secrets: ${{ secrets.prom_token }}" },
	{ "user", ZDM_T_STRING, false, NULL, "basic auth user" },
	{ "password", ZDM_T_STRING, false, NULL, "basic auth password, from secrets" },
	{ "ca_file", ZDM_T_PATH, false, NULL, "PEM bundle that verifies the provider's TLS certificate" },
	{ "insecure", ZDM_T_BOOL, false, "false", "do not verify TLS certificates (warned about)" },
};

/* earlier names, accepted with a warning (docs/zdm-runbook.5 NAMES) */
static const struct zdm_rename mg_renamed[] = {
	{ "timeout", "request_timeout" },
	{ "bearer", "token" },
};

static const char *const providers[] = { "prometheus", NULL };

struct gate {
	const char *address, *query, *success, *failure;
	int64_t interval, initial_delay, query_timeout;
	long count, failure_limit, inconclusive_limit, error_limit, success_limit;
	const char *bearer, *user, *password, *ca_file;
	bool insecure;
};

enum phase { PH_SUCCESSFUL, PH_FAILED, PH_INCONCLUSIVE, PH_ERROR };
static const char *const phase_name[] = { "successful", "failed", "inconclusive", "error" };

/* one measurement */
struct meas {
	enum phase phase;
	json_t *value;		/* as journaled: number, "NaN", null, list, string (owned) */
	json_t *warnings;	/* Prometheus' warnings, or NULL (owned) */
	char shown[96];		/* for people: "0.02", "NaN", "no data (empty result)" */
	char why[1024];		/* what decided it, or the error */
	char by[512];		/* the condition that decided it: "success: result < 0.05" */
	size_t series;		/* series of a list result (value keeps MG_JOURNAL_SERIES) */
	int64_t ms;
};

struct tally {
	long n;			/* measurements, errors included */
	long counted;		/* measurements that count toward `count`: not errors */
	long successful, failed, inconclusive, errors;
	long consecutive_errors, consecutive_successes;
};

enum verdict { V_GOING, V_SUCCEEDED, V_FAILED, V_PAUSE };

static void
gate_from(struct gate *g, const json_t *p)
{
	memset(g, 0, sizeof *g);
	g->address = json_string_value(json_object_get(p, "address"));
	g->query = json_string_value(json_object_get(p, "query"));
	g->success = json_string_value(json_object_get(p, "success"));
	g->failure = json_string_value(json_object_get(p, "failure"));
	g->interval = json_integer_value(json_object_get(p, "interval"));
	g->initial_delay = json_integer_value(json_object_get(p, "initial_delay"));
	g->query_timeout = json_integer_value(json_object_get(p, "request_timeout"));
	g->count = (long)json_integer_value(json_object_get(p, "count"));
	g->failure_limit = (long)json_integer_value(json_object_get(p, "failure_limit"));
	g->inconclusive_limit = (long)json_integer_value(json_object_get(p, "inconclusive_limit"));
	g->error_limit = (long)json_integer_value(json_object_get(p, "consecutive_error_limit"));
	g->success_limit = (long)json_integer_value(json_object_get(p, "consecutive_success_limit"));
	g->bearer = json_string_value(json_object_get(p, "token"));
	g->user = json_string_value(json_object_get(p, "user"));
	g->password = json_string_value(json_object_get(p, "password"));
	g->ca_file = json_string_value(json_object_get(p, "ca_file"));
	g->insecure = json_is_true(json_object_get(p, "insecure"));
}

/* ---- validate and plan --------------------------------------------------- */

/* a string known now (not waiting for ${{ }} to be resolved) */
static const char *
known(const json_t *p, const char *name)
{
	const json_t *v = json_object_get(p, name);

	if (!json_is_string(v) || expr_has_template(json_string_value(v)))
		return NULL;
	return json_string_value(v);
}

/* an int known now, or def */
static bool
known_int(const json_t *p, const char *name, long *out)
{
	const json_t *v = json_object_get(p, name);

	if (!json_is_integer(v))
		return false;
	*out = (long)json_integer_value(v);
	return true;
}

static void
check_limit(struct zdm_diag *d, const json_t *p, const char *name, long min)
{
	long v;

	if (known_int(p, name, &v) && v < min)
		zdm_diag(d, name, "must be %ld or more, not %ld", min, v);
}

/*
 * The least time a gate needs to decide for success: initial_delay, then a
 * measurement every `interval` (from one's end to the next's start): n
 * measurements take at least initial_delay + (n - 1) x interval, where n
 * is consecutive_success_limit when set, else count, else 1 (count 0
 * measures until the timeout, and a gate never passes without one
 * measurement).  No measurement starts at or past the step's deadline, so
 * when that is not shorter than the step's timeout the gate can never pass.
 */
static void
mg_timing(struct zdm_diag *d, const json_t *p)
{
	const json_t *iv = json_object_get(p, "interval"), *dl = json_object_get(p, "initial_delay");
	const char *from, *at, *what;
	int64_t tmo = zdm_diag_timeout(d, &from), need;
	long count = 0, slimit = 0, n;
	char id[32], dd[32], nd[32];

	if (tmo <= 0 || !json_is_integer(iv) || !json_is_integer(dl) || json_integer_value(iv) <= 0 ||
	    json_integer_value(dl) < 0 || !known_int(p, "count", &count) ||
	    !known_int(p, "consecutive_success_limit", &slimit) || count < 0 || slimit < 0)
		return;
	n = slimit > 0 ? slimit : count > 0 ? count : 1;
	what = slimit > 0 ? "consecutive_success_limit" : count > 0 ? "count" : NULL;
	need = json_integer_value(dl) + (int64_t)(n - 1) * json_integer_value(iv);
	if (need < tmo)
		return;
	fmt_duration(json_integer_value(iv), id, sizeof id);
	fmt_duration(json_integer_value(dl), dd, sizeof dd);
	fmt_duration(need, nd, sizeof nd);
	if (what == NULL) {
		zdm_diag(d, "initial_delay", "the gate can never take a measurement: initial_delay %s "
		    "is not shorter than %s; give the step a timeout: longer than %s, or shorten "
		    "initial_delay", dd, from, dd);
		return;
	}
	at = zdm_diag_written(d, "interval") ? "interval" : zdm_diag_written(d, what) ? what :
	    zdm_diag_written(d, "initial_delay") ? "initial_delay" : "interval";
	zdm_diag(d, at, "the gate can never pass: %s %ld measurements %s apart after initial_delay "
	    "%s take %s + (%ld - 1) x %s = %s, not less than %s; give the step a timeout: longer "
	    "than %s, or lower interval, %s or initial_delay",
	    what, n, id, dd, dd, n, id, nd, from, nd, what);
}

static void
mg_validate(const struct zdm_step_type *t, const json_t *p, struct zdm_diag *d)
{
	const char *s;
	long count = 0, flimit = 0, ilimit = 0, slimit = 0;
	bool have_count, have_flimit, have_slimit;
	const json_t *v;

	s = known(p, "provider");
	if (s != NULL && strcmp(s, "prometheus") != 0) {
		const char *sug = did_you_mean(s, providers);

		if (sug != NULL)
			zdm_diag(d, "provider", "unknown provider '%s' (did you mean '%s'?)", s, sug);
		else
			zdm_diag(d, "provider", "unknown provider '%s' (metric_gate speaks: prometheus)", s);
	}
	s = known(p, "address");
	if (s != NULL) {
		const char *why = http_url_problem(s);

		if (why != NULL)
			zdm_diag(d, "address", "'%s': %s", s, why);
	}
	s = known(p, "query");
	if (s != NULL && s[strspn(s, " \t\n")] == '\0')
		zdm_diag(d, "query", "empty query");
	if (json_object_get(p, "success") == NULL && json_object_get(p, "failure") == NULL)
		zdm_diag(d, NULL, "metric_gate needs a 'success' or a 'failure' condition, or both "
		    "(Lua over result, e.g. success: \"result < 0.05\")");
	for (int i = 0; i < 2; i++) {
		const char *name = i == 0 ? "success" : "failure";
		char *err = NULL;

		s = known(p, name);
		if (s == NULL)
			continue;
		if (s[strspn(s, " \t\n")] == '\0')
			zdm_diag(d, name, "empty condition");
		else if (expr_check_cond(s, &err) != 0)
			zdm_diag(d, name, "%s", err);
		free(err);
	}
	v = json_object_get(p, "interval");
	if (json_is_integer(v) && json_integer_value(v) <= 0)
		zdm_diag(d, "interval", "must be longer than 0 (e.g. 30s)");
	v = json_object_get(p, "request_timeout");
	if (json_is_integer(v) && json_integer_value(v) <= 0)
		zdm_diag(d, "request_timeout", "must be longer than 0 (the time limit of each query: 10s)");
	check_limit(d, p, "count", 0);
	check_limit(d, p, "failure_limit", -1);
	check_limit(d, p, "inconclusive_limit", 0);
	check_limit(d, p, "consecutive_error_limit", 0);
	check_limit(d, p, "consecutive_success_limit", 0);
	have_count = known_int(p, "count", &count);
	have_flimit = known_int(p, "failure_limit", &flimit);
	have_slimit = known_int(p, "consecutive_success_limit", &slimit);
	if (have_flimit && have_slimit && flimit == -1 && slimit == 0)
		zdm_diag(d, "failure_limit", "-1 (never fail on failed measurements) needs "
		    "consecutive_success_limit > 0, or the gate could not decide");
	if (have_count && count > 0 && have_flimit && flimit >= count)
		zdm_diag(d, "failure_limit", "%ld must be less than count (%ld): the gate could never fail",
		    flimit, count);
	if (have_count && count > 0 && known_int(p, "inconclusive_limit", &ilimit) && ilimit > count)
		zdm_diag(d, "inconclusive_limit", "%ld is more than count (%ld)", ilimit, count);
	if (have_count && count > 0 && have_slimit && slimit > count)
		zdm_diag(d, "consecutive_success_limit", "%ld can never be reached in count (%ld) measurements",
		    slimit, count);
	mg_timing(d, p);
	if (json_object_get(p, "token") != NULL && json_object_get(p, "user") != NULL)
		zdm_diag(d, "token", "give either 'token' or 'user' and 'password', not both");
	if ((json_object_get(p, "user") == NULL) != (json_object_get(p, "password") == NULL))
		zdm_diag(d, json_object_get(p, "user") ? "user" : "password",
		    "basic auth needs both 'user' and 'password'");
	hc_check_secret(d, p, "token");
	hc_check_secret(d, p, "password");
}

static char *
mg_plan(const struct zdm_step_type *t, const json_t *p)
{
	struct gate g;
	struct sbuf sb;
	char iv[32], dl[32];

	gate_from(&g, p);
	fmt_duration(g.interval, iv, sizeof iv);
	fmt_duration(g.initial_delay, dl, sizeof dl);
	sb_init(&sb);
	sb_addf(&sb, "query prometheus at %s: %s; ", g.address ? g.address : "?",
	    g.query ? g.query : "?");
	if (g.count > 0)
		sb_addf(&sb, "%ld measurement%s %s apart", g.count, g.count == 1 ? "" : "s", iv);
	else
		sb_addf(&sb, "every %s until the step's timeout", iv);
	if (g.initial_delay > 0)
		sb_addf(&sb, ", the first after %s", dl);
	if (g.success != NULL)
		sb_addf(&sb, "; success: %s", g.success);
	if (g.failure != NULL)
		sb_addf(&sb, "; failure: %s", g.failure);
	if (g.failure_limit >= 0)
		sb_addf(&sb, "; fails past %ld failed", g.failure_limit);
	sb_addf(&sb, "%s%ld errors in a row; pauses past %ld inconclusive",
	    g.failure_limit >= 0 ? " or " : "; fails past ", g.error_limit, g.inconclusive_limit);
	if (g.success_limit > 0)
		sb_addf(&sb, "; succeeds after %ld successes in a row", g.success_limit);
	return sb_detach(&sb);
}

/* ---- one measurement ----------------------------------------------------- */

static char *
query_url(const struct gate *g)
{
	struct sbuf sb;
	size_t n = strlen(g->address);

	while (n > 0 && g->address[n - 1] == '/')
		n--;
	sb_init(&sb);
	sb_add(&sb, g->address, n);
	sb_adds(&sb, "/api/v1/query?query=");
	{
		char *q = http_escape(g->query);

		sb_adds(&sb, q);
		free(q);
	}
	/* Prometheus stops evaluating when we stop waiting */
	sb_addf(&sb, "&timeout=%.3f", (double)g->query_timeout / 1000.0);
	return sb_detach(&sb);
}

/* a sample's value: Prometheus sends [ts, "0.02"], "NaN", "+Inf", "-Inf" */
static int
sample_value(const json_t *pair, double *out)
{
	const char *s = json_string_value(json_array_get(pair, 1));
	char *end;

	if (s == NULL)
		return -1;
	errno = 0;
	*out = strtod(s, &end);
	return end == s || *end != '\0' ? -1 : 0;
}

/* a number as journaled: JSON has no NaN or infinities, so they are text */
static json_t *
jnum(double d)
{
	if (isnan(d))
		return json_string("NaN");
	if (isinf(d))
		return json_string(d > 0 ? "+Inf" : "-Inf");
	return json_real(d);
}

static void
show_num(char *buf, size_t n, double d)
{
	if (isnan(d))
		snprintf(buf, n, "NaN");
	else if (isinf(d))
		snprintf(buf, n, "%s", d > 0 ? "+Inf" : "-Inf");
	else
		snprintf(buf, n, "%.6g", d);
}

/* one line of a response body for an error message: printable ASCII only,
 * so the message stays valid UTF-8 for the journal whatever came back */
static void
body_excerpt(char *out, size_t n, const char *body, size_t len)
{
	size_t k = 0;

	for (size_t i = 0; i < len && k + 1 < n && k < 160; i++) {
		unsigned char c = (unsigned char)body[i];

		out[k++] = c == '\n' || c == '\r' || c == '\t' ? ' ' : c < 0x20 || c > 0x7e ? '?' : (char)c;
	}
	out[k] = '\0';
	while (k > 0 && out[k - 1] == ' ')
		out[--k] = '\0';
}

/*
 * Turn Prometheus' data into what the conditions see (*cond) and what is
 * journaled (m->value); *nodata for an empty vector or NaN.  -1 with m->why
 * for results a gate cannot use.
 */
static int
read_result(const json_t *data, struct meas *m, json_t **cond, bool *nodata)
{
	const char *type = json_string_value(json_object_get(data, "resultType"));
	const json_t *result = json_object_get(data, "result");
	double d;

	*nodata = false;
	if (type == NULL || result == NULL) {
		snprintf(m->why, sizeof m->why, "the response has no data.resultType or data.result");
		return -1;
	}
	if (strcmp(type, "scalar") == 0 || (strcmp(type, "vector") == 0 && json_array_size(result) == 1)) {
		const json_t *pair = strcmp(type, "scalar") == 0 ? result :
		    json_object_get(json_array_get(result, 0), "value");

		if (sample_value(pair, &d) != 0) {
			snprintf(m->why, sizeof m->why, "a %s whose value is not a number", type);
			return -1;
		}
		*cond = expr_number(d);
		m->value = jnum(d);
		show_num(m->shown, sizeof m->shown, d);
		*nodata = isnan(d);
		return 0;
	}
	if (strcmp(type, "vector") == 0) {
		size_t i, n = json_array_size(result);
		json_t *s;

		if (n == 0) {
			*cond = json_null();
			m->value = json_null();
			snprintf(m->shown, sizeof m->shown, "no data (empty result)");
			*nodata = true;
			return 0;
		}
		*cond = json_array();
		m->value = json_array();
		json_array_foreach(result, i, s) {
			json_t *metric = json_object_get(s, "metric");

			if (sample_value(json_object_get(s, "value"), &d) != 0) {
				snprintf(m->why, sizeof m->why, "series %zu of the vector has no numeric value", i + 1);
				return -1;
			}
			metric = json_is_object(metric) ? metric : json_object();
			json_array_append_new(*cond, json_pack("{s:O,s:o}", "metric", metric,
			    "value", expr_number(d)));
			if (i < MG_JOURNAL_SERIES)
				json_array_append_new(m->value, json_pack("{s:O,s:o}", "metric", metric,
				    "value", jnum(d)));
			if (!json_is_object(json_object_get(s, "metric")))
				json_decref(metric);
		}
		snprintf(m->shown, sizeof m->shown, "%zu series", n);
		m->series = n;
		return 0;
	}
	if (strcmp(type, "string") == 0) {
		const char *s = json_string_value(json_array_get(result, 1));

		if (s == NULL) {
			snprintf(m->why, sizeof m->why, "a string result without its string");
			return -1;
		}
		*cond = json_string(s);
		m->value = json_string(s);
		snprintf(m->shown, sizeof m->shown, "'%.60s'", s);
		return 0;
	}
	if (strcmp(type, "matrix") == 0) {
		snprintf(m->why, sizeof m->why, "the query gives a range vector (matrix); a gate needs an "
		    "instant value: drop the [range] or wrap it, e.g. avg_over_time(...)");
		return -1;
	}
	snprintf(m->why, sizeof m->why, "unknown resultType '%s'", type);
	return -1;
}

/* send the query; on success *data is Prometheus' data (owned by *doc) */
static int
prom_query(const struct gate *g, const struct zdm_ctx *ctx, struct meas *m, json_t **doc)
{
	struct http_req req;
	struct http_resp resp;
	json_t *headers = json_pack("{s:s}", "Accept", "application/json");
	char *url = query_url(g), *err = NULL;
	const char *st;
	int rc = -1;

	memset(&req, 0, sizeof req);
	memset(&resp, 0, sizeof resp);
	req.method = "GET";
	req.url = url;
	req.headers = headers;
	req.timeout_ms = g->query_timeout;
	req.deadline_ms = ctx->deadline_ms;
	req.ca_file = g->ca_file;
	req.insecure = g->insecure;
	req.bearer = g->bearer;
	req.user = g->user;
	req.password = g->password;
	req.max_body = MG_MAX_BODY;
	*doc = NULL;
	if (http_do(&req, &resp, &err) != 0) {
		snprintf(m->why, sizeof m->why, "prometheus at %s: %s", g->address, err ? err : "no response");
		goto out;
	}
	*doc = json_loadb(resp.body, resp.body_len, 0, NULL);
	if (!json_is_object(*doc)) {
		char ex[200];

		body_excerpt(ex, sizeof ex, resp.body, resp.body_len);
		snprintf(m->why, sizeof m->why, "HTTP %ld from %s, not a Prometheus API response%s%s%s",
		    resp.status, g->address, ex[0] ? " ('" : "", ex, ex[0] ? "')" : "");
		goto out;
	}
	st = json_string_value(json_object_get(*doc, "status"));
	if (st == NULL || strcmp(st, "success") != 0) {
		const char *et = json_string_value(json_object_get(*doc, "errorType"));
		const char *e = json_string_value(json_object_get(*doc, "error"));

		/* bad_data: the query does not parse; execution: it failed; timeout ... */
		snprintf(m->why, sizeof m->why, "prometheus: %s: %s (HTTP %ld)", et ? et : "error",
		    e ? e : "no message", resp.status);
		goto out;
	}
	if (resp.status < 200 || resp.status > 299) {
		snprintf(m->why, sizeof m->why, "HTTP %ld from %s", resp.status, g->address);
		goto out;
	}
	if (resp.body_trunc) {
		snprintf(m->why, sizeof m->why, "the response is larger than %u bytes; narrow the query",
		    MG_MAX_BODY);
		goto out;
	}
	if (json_is_array(json_object_get(*doc, "warnings")))
		m->warnings = json_incref(json_object_get(*doc, "warnings"));
	rc = 0;
out:
	m->ms = resp.duration_ms;
	if (rc != 0) {
		json_decref(*doc);
		*doc = NULL;
	}
	http_resp_release(&resp);
	free(err);
	free(url);
	json_decref(headers);
	return rc;
}

/*
 * Judge a value (Argo's EvaluateResult, with no data inconclusive).  A
 * condition that raises on a real value is an error; on no data it just
 * does not hold.
 */
static void
judge(const struct gate *g, struct expr *x, struct meas *m, const json_t *cond, bool nodata)
{
	int s = 0, f = 0;
	char *serr = NULL, *ferr = NULL;
	bool s_err = false, f_err = false;

	if (g->success != NULL && expr_eval_cond(x, g->success, cond, &s, &serr) != 0)
		s_err = true;
	if (g->failure != NULL && expr_eval_cond(x, g->failure, cond, &f, &ferr) != 0)
		f_err = true;
	if (!nodata && (s_err || f_err)) {
		m->phase = PH_ERROR;
		if (json_is_array(cond))
			snprintf(m->why, sizeof m->why, "%s (result is a list of %zu series {metric, value}: "
			    "use result[1].value, or aggregate the query, e.g. max(...))",
			    s_err ? serr : ferr, json_array_size(cond));
		else
			snprintf(m->why, sizeof m->why, "%s", s_err ? serr : ferr);
		snprintf(m->by, sizeof m->by, "%s: %s", s_err ? "success" : "failure",
		    s_err ? g->success : g->failure);
	} else if (f == 1) {
		m->phase = PH_FAILED;
		snprintf(m->why, sizeof m->why, "failure condition '%s' is true", g->failure);
		snprintf(m->by, sizeof m->by, "failure: %s", g->failure);
	} else if (s == 1) {
		m->phase = PH_SUCCESSFUL;
		snprintf(m->why, sizeof m->why, "success condition '%s' is true", g->success);
		snprintf(m->by, sizeof m->by, "success: %s", g->success);
	} else if (nodata) {
		m->phase = PH_INCONCLUSIVE;
		snprintf(m->why, sizeof m->why, "no condition is true for it, and no data is never a success");
		snprintf(m->by, sizeof m->by, "%s%s%s%s%s", g->success ? "success: " : "",
		    g->success ? g->success : "", g->success && g->failure ? ", " : "",
		    g->failure ? "failure: " : "", g->failure ? g->failure : "");
	} else if (g->failure == NULL) {
		m->phase = PH_FAILED;
		snprintf(m->why, sizeof m->why, "success condition '%s' is not true", g->success);
		snprintf(m->by, sizeof m->by, "success: %s", g->success);
	} else if (g->success == NULL) {
		m->phase = PH_SUCCESSFUL;
		snprintf(m->why, sizeof m->why, "failure condition '%s' is not true", g->failure);
		snprintf(m->by, sizeof m->by, "failure: %s", g->failure);
	} else {
		m->phase = PH_INCONCLUSIVE;
		snprintf(m->why, sizeof m->why, "neither success '%s' nor failure '%s' is true",
		    g->success, g->failure);
		snprintf(m->by, sizeof m->by, "success: %s, failure: %s", g->success, g->failure);
	}
	free(serr);
	free(ferr);
}

static void
measure(const struct gate *g, const struct zdm_ctx *ctx, struct expr *x, struct meas *m)
{
	json_t *doc = NULL, *cond = NULL;
	bool nodata = false;

	memset(m, 0, sizeof *m);
	if (prom_query(g, ctx, m, &doc) != 0 ||
	    read_result(json_object_get(doc, "data"), m, &cond, &nodata) != 0) {
		m->phase = PH_ERROR;
		json_decref(m->value);
		m->value = NULL;
		snprintf(m->shown, sizeof m->shown, "error");
	} else {
		judge(g, x, m, cond, nodata);
	}
	json_decref(cond);
	json_decref(doc);
}

/* ---- the tally ------------------------------------------------------------ */

static void
count_in(struct tally *t, enum phase ph)
{
	t->n++;
	if (ph != PH_ERROR) {
		t->counted++;
		t->consecutive_errors = 0;
	}
	t->consecutive_successes = ph == PH_SUCCESSFUL ? t->consecutive_successes + 1 : 0;
	switch (ph) {
	case PH_SUCCESSFUL: t->successful++; break;
	case PH_FAILED: t->failed++; break;
	case PH_INCONCLUSIVE: t->inconclusive++; break;
	case PH_ERROR: t->errors++; t->consecutive_errors++; break;
	}
}

/* Argo's assessMetricStatus, after each measurement */
static enum verdict
assess(const struct gate *g, const struct tally *t, char *why, size_t n)
{
	enum verdict v = V_GOING;

	/* later checks win, as in assessMetricFailureInconclusiveOrError */
	if (g->failure_limit >= 0 && t->failed > g->failure_limit) {
		v = V_FAILED;
		snprintf(why, n, "failed (%ld) > failure_limit (%ld)", t->failed, g->failure_limit);
	}
	if (t->inconclusive > g->inconclusive_limit) {
		v = V_PAUSE;
		snprintf(why, n, "inconclusive (%ld) > inconclusive_limit (%ld)", t->inconclusive,
		    g->inconclusive_limit);
	}
	if (t->consecutive_errors > g->error_limit) {
		v = V_FAILED;
		snprintf(why, n, "consecutive errors (%ld) > consecutive_error_limit (%ld)",
		    t->consecutive_errors, g->error_limit);
	}
	if (v != V_GOING)
		return v;
	if (g->success_limit > 0 && t->consecutive_successes >= g->success_limit) {
		snprintf(why, n, "consecutive successes (%ld) reached consecutive_success_limit",
		    t->consecutive_successes);
		return V_SUCCEEDED;
	}
	if (g->count > 0 && t->counted >= g->count) {
		if (g->success_limit > 0 && g->failure_limit >= 0) {
			snprintf(why, n, "count (%ld) reached with fewer than consecutive_success_limit (%ld) "
			    "successes in a row and failure_limit (%ld) not exceeded", g->count,
			    g->success_limit, g->failure_limit);
			return V_PAUSE;
		}
		if (g->success_limit > 0) {
			snprintf(why, n, "count (%ld) reached with fewer than consecutive_success_limit (%ld) "
			    "successes in a row", g->count, g->success_limit);
			return V_FAILED;
		}
		if (t->successful == 0) {
			snprintf(why, n, "count (%ld) reached without one successful measurement", g->count);
			return V_PAUSE;
		}
		snprintf(why, n, "count (%ld) reached", g->count);
		return V_SUCCEEDED;
	}
	return V_GOING;
}

/* no time left for another measurement */
static enum verdict
out_of_time(const struct gate *g, const struct tally *t, char *why, size_t n, bool *timed_out)
{
	*timed_out = false;
	if (g->count == 0 && g->success_limit == 0) {
		if (t->successful == 0) {
			snprintf(why, n, "the step's timeout ended the measurements without one successful measurement");
			return V_PAUSE;
		}
		snprintf(why, n, "the step's timeout ended the measurements; no limit was exceeded");
		return V_SUCCEEDED;
	}
	*timed_out = true;
	if (g->count > 0)
		snprintf(why, n, "timed out: %ld of %ld measurements taken before the step's timeout",
		    t->counted, g->count);
	else
		snprintf(why, n, "timed out before %ld successes in a row (consecutive_success_limit)",
		    g->success_limit);
	return V_FAILED;
}

static json_t *
tally_json(const struct tally *t)
{
	return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "successful", (json_int_t)t->successful,
	    "failed", (json_int_t)t->failed, "inconclusive", (json_int_t)t->inconclusive,
	    "errors", (json_int_t)t->errors, "consecutive_errors", (json_int_t)t->consecutive_errors,
	    "consecutive_successes", (json_int_t)t->consecutive_successes);
}

static void
record(struct zdm_ctx *ctx, const struct gate *g, const struct tally *t, const struct meas *m)
{
	json_t *d = json_pack("{s:I,s:s,s:O,s:s,s:I,s:o}", "n", (json_int_t)t->n,
	    "phase", phase_name[m->phase], "value", m->value ? m->value : json_null(),
	    "message", m->why, "duration_ms", (json_int_t)m->ms, "tally", tally_json(t));
	char of[32] = "";

	if (m->warnings != NULL)
		json_object_set(d, "warnings", m->warnings);
	if (m->series > 0)
		json_object_set_new(d, "series", json_integer((json_int_t)m->series));
	zdm_note(ctx, ev_name(EV_GATE_MEASUREMENT), d);
	if (g->count > 0)
		snprintf(of, sizeof of, "/%ld", g->count);
	if (m->phase == PH_ERROR)
		zdm_progress(ctx, "query failed (%ld in a row): %s", t->consecutive_errors, m->why);
	else
		zdm_progress(ctx, "measurement %ld%s: %s %s (%s)", t->counted, of, m->shown,
		    phase_name[m->phase], m->by);
}

static int
finish(struct zdm_result *res, enum verdict v, const char *why, const struct tally *t,
    const struct meas *last)
{
	res->outputs = json_pack("{s:I,s:I,s:I,s:I,s:I,s:s}", "measurements", (json_int_t)t->n,
	    "successful", (json_int_t)t->successful, "failed", (json_int_t)t->failed,
	    "inconclusive", (json_int_t)t->inconclusive, "errors", (json_int_t)t->errors,
	    "verdict", why);
	if (last != NULL && last->value != NULL)
		json_object_set(res->outputs, "value", last->value);
	if (v == V_SUCCEEDED)
		return 0;
	res->pause = v == V_PAUSE;
	if (last != NULL && t->n > 0)
		zdm_fail(res, "%s; last measurement (%ld): %s%s%s", why, t->n,
		    last->phase == PH_ERROR ? "" : last->shown, last->phase == PH_ERROR ? "" : ": ",
		    last->why);
	else
		zdm_fail(res, "%s", why);
	return -1;
}

/* zdm promote ended the wait: passed, saying by whom */
static int
promoted(struct zdm_ctx *ctx, struct zdm_result *res, const struct tally *t, const struct meas *m)
{
	char why[300];
	int rc;

	snprintf(why, sizeof why, "promoted by %s (zdm promote)", zdm_promoted(ctx));
	rc = finish(res, V_SUCCEEDED, why, t, m);
	json_object_set_new(res->outputs, "promoted_by", json_string(zdm_promoted(ctx)));
	return rc;
}

static int
interrupted(struct zdm_result *res)
{
	res->interrupted = true;
	zdm_fail(res, "interrupted");
	return -1;
}

static int
mg_run(const struct zdm_step_type *t, struct zdm_ctx *ctx, const json_t *p,
    struct zdm_result *res)
{
	struct gate g;
	struct tally tl;
	struct meas m;
	struct expr *x;
	char why[512];
	enum verdict v = V_GOING;
	int rc = -1;

	gate_from(&g, p);
	memset(&tl, 0, sizeof tl);
	memset(&m, 0, sizeof m);
	if (g.insecure) {
		/* step.started already records insecure: true among the params */
		zdm_warnf("zdm: warning: step '%s': insecure: true: the TLS certificate of %s "
		    "is not verified\n", ctx->step_id, g.address);
	}
	if (g.initial_delay > 0) {
		if (ctx->deadline_ms && zdm_now_ms() + g.initial_delay >= ctx->deadline_ms) {
			res->timed_out = true;
			zdm_fail(res, "timed out: initial_delay is not shorter than the step's timeout");
			return -1;
		}
		zdm_progress(ctx, "initial delay");
		if (zdm_sleep_ms(g.initial_delay) != 0)
			return interrupted(res);
		if (zdm_promoted(ctx) != NULL)
			return promoted(ctx, res, &tl, NULL);
	}
	x = expr_new();
	for (;;) {
		int64_t next;

		if (zdm_interrupted) {
			rc = interrupted(res);
			break;
		}
		json_decref(m.value);
		json_decref(m.warnings);
		measure(&g, ctx, x, &m);
		if (zdm_interrupted) {
			/* the query was cut short by the signal: not a measurement */
			rc = interrupted(res);
			break;
		}
		count_in(&tl, m.phase);
		record(ctx, &g, &tl, &m);
		v = assess(&g, &tl, why, sizeof why);
		if (v != V_GOING) {
			rc = finish(res, v, why, &tl, &m);
			break;
		}
		/* Argo: the next measurement is due `interval` after this one ended */
		next = zdm_now_ms() + g.interval;
		if (ctx->deadline_ms && next >= ctx->deadline_ms) {
			v = out_of_time(&g, &tl, why, sizeof why, &res->timed_out);
			rc = finish(res, v, why, &tl, &m);
			break;
		}
		if (zdm_sleep_ms(next - zdm_now_ms()) != 0) {
			rc = interrupted(res);
			break;
		}
		if (zdm_promoted(ctx) != NULL) {
			rc = promoted(ctx, res, &tl, &m);
			break;
		}
	}
	json_decref(m.value);
	json_decref(m.warnings);
	expr_free(x);
	return rc;
}

const struct zdm_step_type zdm_step_metric_gate = {
	.name = "metric_gate",
	.description = "query Prometheus every interval and judge each result; "
	    "Argo Rollouts AnalysisRun semantics (failure_limit, inconclusive_limit, ...)",
	ZDM_PARAMS(mg_params),
	ZDM_RENAMED(mg_renamed),
	.read_only = true, .idempotent = true, .promotable = true, .notes_unread = true,
	.validate = mg_validate, .plan = mg_plan, .run = mg_run,
};
