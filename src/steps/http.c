/*
 * http - one HTTP request: call an API that changes something (drain a
 * node, flip a feature flag, start a job), check the answer (status, body
 * text), and capture JSON fields of the response as outputs for later
 * steps (`outputs: {version: .build.version}`).
 *
 * Not read-only: a request may change the world, so in --dry-run it is only
 * planned.  A check that only reads (GET /health) belongs in health_gate,
 * which is read-only and runs in rehearsals.  The step's undo is whatever
 * the runbook gives as `undo:` (another http step, typically).
 *
 * TLS certificates are verified unless `insecure: true` (warned about on
 * stderr at run time); basic auth (user/password) or a bearer token come
 * from secrets, and every secret's value is redacted wherever zdm writes.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/proc.h"
#include "base/util.h"
#include "core/expr.h"
#include "steps/builtin.h"
#include "steps/httpcheck.h"
#include "zdm/step.h"

static const char *const reserved_outputs[] = {
	"status", "body", "body_truncated", "duration_ms", NULL,
};

static const struct zdm_param http_params[] = {
	{ "method", ZDM_T_STRING, false, "\"GET\"", "GET, POST, PUT, PATCH, DELETE, ..." },
	{ "url", ZDM_T_STRING, true, NULL, "http:// or https:// URL" },
	{ "headers", ZDM_T_MAP, false, NULL, "request headers, name: value" },
	{ "body", ZDM_T_ANY, false, NULL, "request body: a string as is, or a mapping/list sent as JSON" },
	{ "expect_status", ZDM_T_LIST, false, "[\"2xx\"]", "statuses that count as success: 200, \"2xx\", \"200-299\"" },
	{ "expect_body_contains", ZDM_T_STRING, false, NULL, "text the response body must contain" },
	{ "outputs", ZDM_T_MAP, false, NULL, "outputs from the JSON response: name: .json.path (.items[0].id)" },
	{ "request_timeout", ZDM_T_DURATION, false, "\"10s\"", "for the request (never past the step's timeout)" },
	{ "ca_file", ZDM_T_PATH, false, NULL, "PEM file of CA certificates to verify the server with" },
	{ "insecure", ZDM_T_BOOL, false, "false", "do not verify TLS certificates (warned about)" },
	{ "user", ZDM_T_STRING, false, NULL, "basic auth user" },
	{ "password", ZDM_T_STRING, false, NULL, "basic auth password (from secrets)" },
	{ "token", ZDM_T_STRING, false, NULL, "bearer token, Authorization: Bearer (from secrets)" },
	{ "output_limit", ZDM_T_INT, false, "65536", "bytes of the response body kept in outputs.body" },
};

/* earlier names, accepted with a warning (docs/zdm-runbook.5 NAMES) */
static const struct zdm_rename http_renamed[] = {
	{ "timeout", "request_timeout" },
	{ "bearer", "token" },
};

static bool
valid_method(const char *m)
{
	if (*m == '\0')
		return false;
	for (; *m != '\0'; m++)
		if (!((*m >= 'A' && *m <= 'Z') || (*m >= 'a' && *m <= 'z')))
			return false;
	return true;
}

static void
http_validate(const struct zdm_step_type *t, const json_t *p, struct zdm_diag *d)
{
	const json_t *m = json_object_get(p, "method"), *o = json_object_get(p, "outputs");
	const json_t *v;
	const char *k;

	hc_check_url(d, "url", json_object_get(p, "url"));
	if (json_is_string(m) && !zdm_is_expr(m) && !valid_method(json_string_value(m)))
		zdm_diag(d, "method", "bad method '%s' (GET, POST, PUT, PATCH, DELETE, ...)",
		    json_string_value(m));
	hc_check_status(d, p);
	hc_check_headers(d, p);
	if (json_is_object(o)) {
		json_object_foreach((json_t *)o, k, v) {
			const char *why;

			for (size_t i = 0; reserved_outputs[i] != NULL; i++)
				if (strcmp(k, reserved_outputs[i]) == 0)
					zdm_diag(d, "outputs", "output name '%s' is taken (status, body, body_truncated, duration_ms)", k);
			if (zdm_is_expr(v))
				continue;
			if (!json_is_string(v)) {
				zdm_diag(d, "outputs", "'%s': give a JSON path like .build.version", k);
				continue;
			}
			why = hc_path_problem(json_string_value(v));
			if (why != NULL)
				zdm_diag(d, "outputs", "'%s': bad JSON path '%s': %s", k,
				    json_string_value(v), why);
		}
	}
	v = json_object_get(p, "output_limit");
	if (json_is_integer(v) && (json_integer_value(v) < 0 || json_integer_value(v) > (64 << 20)))
		zdm_diag(d, "output_limit", "must be from 0 to 67108864 bytes");
	v = json_object_get(p, "request_timeout");
	if (json_is_integer(v) && json_integer_value(v) <= 0)
		zdm_diag(d, "request_timeout", "must be more than 0");
	hc_check_secret(d, p, "password");
	hc_check_secret(d, p, "token");
	if (json_object_get(p, "password") != NULL && json_object_get(p, "user") == NULL)
		zdm_diag(d, "password", "a password needs a user");
	if (json_object_get(p, "user") != NULL && json_object_get(p, "token") != NULL)
		zdm_diag(d, "token", "give either user/password or token, not both");
}

static char *
method_of(const json_t *p)
{
	const char *m = json_string_value(json_object_get(p, "method"));
	char *u = xstrdup(m != NULL ? m : "GET");

	for (char *s = u; *s != '\0'; s++)
		if (*s >= 'a' && *s <= 'z')
			*s = (char)(*s - 'a' + 'A');
	return u;
}

static char *
http_plan(const struct zdm_step_type *t, const json_t *p)
{
	const json_t *body = json_object_get(p, "body");
	const char *contains = json_string_value(json_object_get(p, "expect_body_contains"));
	char *m = method_of(p), *st = hc_status_text(json_object_get(p, "expect_status"));
	struct sbuf sb;

	sb_init(&sb);
	sb_addf(&sb, "%s %s", m, json_string_value(json_object_get(p, "url")));
	if (json_is_string(body))
		sb_addf(&sb, " with a %zu-byte body", json_string_length(body));
	else if (body != NULL)
		sb_adds(&sb, " with a JSON body");
	sb_addf(&sb, ", expecting %s", st);
	if (contains != NULL)
		sb_addf(&sb, " and a body containing '%s'", contains);
	if (json_object_size(json_object_get(p, "outputs")) > 0)
		sb_addf(&sb, "; captures %zu field%s", json_object_size(json_object_get(p, "outputs")),
		    json_object_size(json_object_get(p, "outputs")) == 1 ? "" : "s");
	if (json_is_true(json_object_get(p, "insecure")))
		sb_adds(&sb, " (TLS not verified)");
	free(m);
	free(st);
	return sb_detach(&sb);
}

static bool
has_header(const json_t *h, const char *name)
{
	const char *k;
	json_t *v;

	json_object_foreach((json_t *)h, k, v)
		if (strcasecmp(k, name) == 0)
			return true;
	return false;
}

/* the first line of a body, for a message */
static void
body_excerpt(const struct http_resp *r, char *out, size_t n)
{
	size_t len = 0;

	json_t *t;

	while (len < r->body_len && len < 200 && r->body[len] != '\n' && r->body[len] != '\r')
		len++;
	t = json_text(r->body, len);	/* messages go into JSON: UTF-8 only */
	snprintf(out, n, "%s", json_string_value(t));
	json_decref(t);
}

static void
capture(const json_t *outs, const struct http_resp *r, json_t *into, struct zdm_result *res)
{
	json_t *doc, *v;
	json_error_t je;
	const char *k;

	if (json_object_size(outs) == 0)
		return;
	doc = json_loadb(r->body, r->body_len, JSON_DECODE_ANY, &je);
	if (doc == NULL) {
		zdm_fail(res, "outputs: the response is not JSON (line %d, column %d: %s)%s",
		    je.line, je.column, je.text, r->body_trunc ? "; it was cut at the read limit" : "");
		return;
	}
	json_object_foreach((json_t *)outs, k, v) {
		char why[256];
		const json_t *got = hc_path_get(doc, json_string_value(v), why, sizeof why);

		if (got == NULL) {
			zdm_fail(res, "outputs: '%s': %s is not in the response: %s", k,
			    json_string_value(v), why);
			break;
		}
		json_object_set_new(into, k, json_deep_copy(got));
	}
	json_decref(doc);
}

/* --dry-run: the host resolves, accepts a connection and (https) passes
 * TLS verification; no request is sent, so nothing can change */
static int
http_check(const struct zdm_step_type *t, struct zdm_ctx *ctx, const json_t *p,
    struct zdm_result *res)
{
	struct http_req req;
	struct http_resp r;
	char *err = NULL;
	int rc = 0;

	(void)t;
	hc_req_init(&req, p);
	req.headers = NULL;
	req.url = json_string_value(json_object_get(p, "url"));
	req.deadline_ms = ctx->deadline_ms;
	req.connect_only = true;
	if (http_do(&req, &r, &err) != 0) {
		if (zdm_interrupted)
			res->interrupted = true;
		zdm_fail(res, "connecting for %s: %s", req.url, err);
		free(err);
		rc = -1;
	} else {
		bool tls = strncmp(req.url, "https:", 6) == 0;

		res->outputs = json_pack("{s:s}", "checked", tls ?
		    "the host resolves, accepts a connection and passes TLS verification (no request sent)" :
		    "the host resolves and accepts a connection (no request sent)");
	}
	http_resp_release(&r);
	return rc;
}

static int
http_run(const struct zdm_step_type *t, struct zdm_ctx *ctx, const json_t *p,
    struct zdm_result *res)
{
	const json_t *body = json_object_get(p, "body"), *h = json_object_get(p, "headers");
	struct hc_expect e = {
		.status = json_object_get(p, "expect_status"),
		.body_contains = json_string_value(json_object_get(p, "expect_body_contains")),
	};
	struct http_req req;
	struct http_resp r;
	json_t *hdrs = NULL;
	char *m = method_of(p), *jbody = NULL, *err = NULL, why[1024];
	size_t keep = (size_t)json_integer_value(json_object_get(p, "output_limit"));
	int rc = -1;

	hc_req_init(&req, p);
	req.method = m;
	req.url = json_string_value(json_object_get(p, "url"));
	req.deadline_ms = ctx->deadline_ms;
	req.user = json_string_value(json_object_get(p, "user"));
	req.password = json_string_value(json_object_get(p, "password"));
	req.bearer = json_string_value(json_object_get(p, "token"));
	/* read as much as outputs may keep (at least httpc's 1 MiB) */
	req.max_body = keep > ((size_t)1 << 20) ? keep : (size_t)1 << 20;
	if (json_is_string(body)) {
		req.body = json_string_value(body);
		req.body_len = json_string_length(body);
	} else if (body != NULL && !json_is_null(body)) {
		jbody = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
		req.body = jbody;
		req.body_len = strlen(jbody);
		if (!json_is_object(h) || !has_header(h, "content-type")) {
			hdrs = json_is_object(h) ? json_copy((json_t *)h) : json_object();
			json_object_set_new(hdrs, "Content-Type", json_string("application/json"));
			req.headers = hdrs;
		}
	}
	hc_warn_insecure(ctx, p);
	zdm_progress(ctx, "%s %s", m, req.url);
	if (http_do(&req, &r, &err) != 0) {
		if (zdm_interrupted) {
			res->interrupted = true;
		} else if (ctx->deadline_ms != 0 && zdm_now_ms() >= ctx->deadline_ms) {
			res->timed_out = true;
		}
		zdm_fail(res, "%s %s: %s", m, req.url, err);
		free(err);
		http_resp_release(&r);
		goto out;
	}
	res->outputs = json_object();
	json_object_set_new(res->outputs, "status", json_integer(r.status));
	json_object_set_new(res->outputs, "body", json_text(r.body, r.body_len < keep ? r.body_len : keep));
	if (r.body_len > keep || r.body_trunc)
		json_object_set_new(res->outputs, "body_truncated", json_true());
	json_object_set_new(res->outputs, "duration_ms", json_integer(r.duration_ms));
	if (hc_check(&e, &r, why, sizeof why) != 0) {
		char ex[1024];

		body_excerpt(&r, ex, sizeof ex);
		if (ex[0] != '\0' && strncmp(why, "status", 6) == 0 && strstr(why, " but ") == NULL)
			zdm_fail(res, "%s %s: %s: %s", m, req.url, why, ex);
		else
			zdm_fail(res, "%s %s: %s", m, req.url, why);
	} else {
		capture(json_object_get(p, "outputs"), &r, res->outputs, res);
		rc = res->err[0] == '\0' ? 0 : -1;
	}
	http_resp_release(&r);
out:
	json_decref(hdrs);
	free(jbody);
	free(m);
	return rc;
}

const struct zdm_step_type zdm_step_http = {
	.name = "http",
	.description = "send an HTTP request, check its answer, capture JSON fields (dry runs only plan it: checks belong in health_gate)",
	ZDM_PARAMS(http_params),
	ZDM_RENAMED(http_renamed),
	.validate = http_validate, .plan = http_plan, .run = http_run,
	.check = http_check,
};
