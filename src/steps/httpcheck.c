/*
 * httpcheck.c - judging HTTP responses for the http step and health_gate
 * (httpcheck.h).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/redact.h"
#include "base/proc.h"
#include "base/util.h"
#include "core/expr.h"
#include "steps/httpcheck.h"
#include "zdm/step.h"

/* ---- expected status ----------------------------------------------------- */

/* parse one entry into [lo, hi]; NULL or why not */
static const char *
status_range(const json_t *v, long *lo, long *hi)
{
	const char *s, *dash;
	char *end;
	long a, b;

	if (json_is_integer(v)) {
		a = (long)json_integer_value(v);
		if (a < 100 || a > 599)
			return "a status is from 100 to 599";
		*lo = *hi = a;
		return NULL;
	}
	if (!json_is_string(v))
		return "entries are statuses (200), classes (\"2xx\") or ranges (\"200-299\")";
	s = json_string_value(v);
	if (strlen(s) == 3 && s[0] >= '1' && s[0] <= '5' &&
	    (s[1] == 'x' || s[1] == 'X') && (s[2] == 'x' || s[2] == 'X')) {
		*lo = (s[0] - '0') * 100;
		*hi = *lo + 99;
		return NULL;
	}
	errno = 0;
	a = strtol(s, &end, 10);
	if (end == s || errno != 0)
		return "entries are statuses (200), classes (\"2xx\") or ranges (\"200-299\")";
	dash = end;
	if (*dash == '\0') {
		b = a;
	} else if (*dash == '-') {
		b = strtol(dash + 1, &end, 10);
		if (end == dash + 1 || *end != '\0' || errno != 0)
			return "entries are statuses (200), classes (\"2xx\") or ranges (\"200-299\")";
	} else {
		return "entries are statuses (200), classes (\"2xx\") or ranges (\"200-299\")";
	}
	if (a < 100 || a > 599 || b < 100 || b > 599)
		return "a status is from 100 to 599";
	if (b < a)
		return "a range goes from low to high (\"200-299\")";
	*lo = a;
	*hi = b;
	return NULL;
}

const char *
hc_status_problem(const json_t *v)
{
	long lo, hi;

	return status_range(v, &lo, &hi);
}

static bool
status_ok(const json_t *list, long status)
{
	json_t *v;
	size_t i;
	long lo, hi;

	if (list == NULL)
		return status >= 200 && status <= 299;
	json_array_foreach(list, i, v)
		if (status_range(v, &lo, &hi) == NULL && status >= lo && status <= hi)
			return true;
	return false;
}

char *
hc_status_text(const json_t *list)
{
	struct sbuf sb;
	json_t *v;
	size_t i;

	if (list == NULL || json_array_size(list) == 0)
		return xstrdup(list == NULL ? "2xx" : "(none)");
	sb_init(&sb);
	json_array_foreach(list, i, v) {
		if (i > 0)
			sb_adds(&sb, ", ");
		if (json_is_string(v))
			sb_adds(&sb, json_string_value(v));
		else
			sb_addf(&sb, "%lld", (long long)json_integer_value(v));
	}
	return sb_detach(&sb);
}

/* ---- JSON paths ---------------------------------------------------------- */

static bool
namechar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* a "quoted" name at *p (on the quote); \" and \\ escape.  Malloc'd, or NULL */
static char *
quoted(const char **p)
{
	struct sbuf sb;
	const char *s = *p + 1;

	sb_init(&sb);
	while (*s != '\0' && *s != '"') {
		if (*s == '\\' && (s[1] == '"' || s[1] == '\\'))
			s++;
		sb_addc(&sb, *s++);
	}
	if (*s != '"') {
		sb_release(&sb);
		return NULL;
	}
	*p = s + 1;
	return sb_detach(&sb);
}

/*
 * Walk path over doc (NULL: syntax only).  0 with *out, -1 on a syntax
 * error, 1 when the document has no such value; why says which.
 */
static int
walk(const char *path, const json_t *doc, const json_t **out, char *why, size_t n)
{
	const char *p = path;
	const json_t *cur = doc;
	struct sbuf at;
	int rc = 0;

	if (*p != '.') {
		snprintf(why, n, "a path starts with '.' (.status, .items[0].name)");
		return -1;
	}
	sb_init(&at);
	p++;
	if (*p != '\0' && *p != '[' && *p != '"' && !namechar(*p)) {
		snprintf(why, n, "unexpected '%c' at offset %d", *p, (int)(p - path));
		rc = -1;
		goto out;
	}
	while (*p != '\0') {
		char *key = NULL;
		long long idx = 0;
		bool is_idx = false;

		if (*p == '.') {
			p++;
			if (*p != '"' && !namechar(*p)) {
				snprintf(why, n, "expected a name after '.' at offset %d", (int)(p - path));
				rc = -1;
				goto out;
			}
			continue;
		}
		if (*p == '"') {
			key = quoted(&p);
			if (key == NULL) {
				snprintf(why, n, "unterminated quoted name");
				rc = -1;
				goto out;
			}
		} else if (namechar(*p)) {
			const char *s = p;

			while (namechar(*p))
				p++;
			key = xstrndup(s, (size_t)(p - s));
		} else if (*p == '[') {
			p++;
			if (*p == '"') {
				key = quoted(&p);
				if (key == NULL) {
					snprintf(why, n, "unterminated quoted name");
					rc = -1;
					goto out;
				}
			} else {
				char *end;

				errno = 0;
				idx = strtoll(p, &end, 10);
				if (end == p || errno != 0) {
					snprintf(why, n, "expected an index or a \"name\" after '[' at offset %d",
					    (int)(p - path));
					rc = -1;
					goto out;
				}
				p = end;
				is_idx = true;
			}
			if (*p != ']') {
				free(key);
				snprintf(why, n, "expected ']' at offset %d", (int)(p - path));
				rc = -1;
				goto out;
			}
			p++;
		} else {
			snprintf(why, n, "unexpected '%c' at offset %d", *p, (int)(p - path));
			rc = -1;
			goto out;
		}
		if (*p != '\0' && *p != '.' && *p != '[') {
			free(key);
			snprintf(why, n, "unexpected '%c' at offset %d", *p, (int)(p - path));
			rc = -1;
			goto out;
		}
		if (doc != NULL && rc == 0) {
			const char *where = at.len ? at.buf : ".";

			if (is_idx) {
				size_t len = json_array_size(cur);
				long long k = idx < 0 ? (long long)len + idx : idx;

				if (!json_is_array(cur)) {
					snprintf(why, n, "%s is not a list", where);
					rc = 1;
				} else if (k < 0 || k >= (long long)len) {
					snprintf(why, n, "%s has no item [%lld] (%zu items)", where, idx, len);
					rc = 1;
				} else {
					cur = json_array_get(cur, (size_t)k);
				}
				sb_addf(&at, "[%lld]", idx);
			} else {
				const json_t *next = json_is_object(cur) ?
				    json_object_get(cur, key) : NULL;

				if (!json_is_object(cur)) {
					snprintf(why, n, "%s is not an object", where);
					rc = 1;
				} else if (next == NULL) {
					snprintf(why, n, "%s has no '%s'", where, key);
					rc = 1;
				}
				cur = next;
				sb_addf(&at, ".%s", key);
			}
		}
		free(key);
	}
	if (rc == 0 && out != NULL)
		*out = cur;
out:
	sb_release(&at);
	return rc;
}

const char *
hc_path_problem(const char *path)
{
	static char why[256];

	return walk(path, NULL, NULL, why, sizeof why) < 0 ? why : NULL;
}

const json_t *
hc_path_get(const json_t *doc, const char *path, char *why, size_t n)
{
	const json_t *v = NULL;

	if (walk(path, doc, &v, why, n) != 0)
		return NULL;
	return v;
}

/* ---- judging a response --------------------------------------------------- */

/* YAML wrote the expected value; JSON sent the actual one: 200 == 200.0,
 * and a string expectation matches a scalar's text ("2" == 2) */
static bool
json_matches(const json_t *got, const json_t *want)
{
	if (json_is_number(got) && json_is_number(want))
		return json_number_value(got) == json_number_value(want);
	if (json_is_string(want) && (json_is_number(got) || json_is_boolean(got))) {
		char *t = json_dumps(got, JSON_ENCODE_ANY);
		bool eq = t != NULL && strcmp(t, json_string_value(want)) == 0;

		free(t);
		return eq;
	}
	return json_equal((json_t *)got, (json_t *)want);
}

static char *
short_json(const json_t *v)
{
	char *t = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
	char *r;

	if (t == NULL)
		return xstrdup("?");
	if (strlen(t) <= 80)
		return t;
	r = xasprintf("%.77s...", t);
	free(t);
	return r;
}

int
hc_check(const struct hc_expect *e, const struct http_resp *r, char *why, size_t n)
{
	json_t *doc;
	json_error_t je;
	const char *k;
	json_t *want;

	if (!status_ok(e->status, r->status)) {
		char *exp = hc_status_text(e->status);

		snprintf(why, n, "status %ld, expected %s", r->status, exp);
		free(exp);
		return -1;
	}
	if (e->body_contains != NULL && memmem(r->body, r->body_len, e->body_contains,
	    strlen(e->body_contains)) == NULL) {
		snprintf(why, n, "status %ld but the body does not contain '%s'%s", r->status,
		    e->body_contains, r->body_trunc ? " (in its first bytes kept)" : "");
		return -1;
	}
	if (e->json == NULL || json_object_size(e->json) == 0)
		return 0;
	doc = json_loadb(r->body, r->body_len, JSON_DECODE_ANY, &je);
	if (doc == NULL) {
		snprintf(why, n, "status %ld but the body is not JSON (line %d, column %d: %s)",
		    r->status, je.line, je.column, je.text);
		return -1;
	}
	json_object_foreach((json_t *)e->json, k, want) {
		char w[256];
		const json_t *got = hc_path_get(doc, k, w, sizeof w);

		if (got == NULL) {
			snprintf(why, n, "status %ld but %s: %s", r->status, k, w);
			json_decref(doc);
			return -1;
		}
		if (!json_matches(got, want)) {
			char *g = short_json(got), *x = short_json(want);

			snprintf(why, n, "status %ld but %s is %s, expected %s", r->status, k, g, x);
			free(g);
			free(x);
			json_decref(doc);
			return -1;
		}
	}
	json_decref(doc);
	return 0;
}

/* ---- static checks --------------------------------------------------------- */

void
hc_check_url(struct zdm_diag *d, const char *param, const json_t *v)
{
	const char *why;

	if (v == NULL || zdm_is_expr(v))
		return;
	if (!json_is_string(v)) {
		zdm_diag(d, param, "a URL is a string");
		return;
	}
	if (expr_has_template(json_string_value(v)))
		return;		/* resolved at run time, and checked again then */
	why = http_url_problem(json_string_value(v));
	if (why != NULL)
		zdm_diag(d, param, "malformed URL '%s': %s", json_string_value(v), why);
}

void
hc_check_status(struct zdm_diag *d, const json_t *p)
{
	const json_t *l = json_object_get(p, "expect_status"), *v;
	size_t i;

	if (!json_is_array(l))
		return;
	if (json_array_size(l) == 0)
		zdm_diag(d, "expect_status", "empty list: no status would pass");
	json_array_foreach(l, i, v) {
		const char *why;

		if (zdm_is_expr(v) || (json_is_string(v) && expr_has_template(json_string_value(v))))
			continue;
		why = hc_status_problem(v);
		if (why != NULL) {
			char *t = json_dumps(v, JSON_ENCODE_ANY);

			zdm_diag(d, "expect_status", "bad entry %s: %s", t ? t : "?", why);
			free(t);
		}
	}
}

void
hc_check_headers(struct zdm_diag *d, const json_t *p)
{
	const json_t *h = json_object_get(p, "headers"), *v;
	const char *k;

	if (!json_is_object(h))
		return;
	json_object_foreach((json_t *)h, k, v) {
		if (k[0] == '\0' || strpbrk(k, ": \t\r\n") != NULL)
			zdm_diag(d, "headers", "bad header name '%s'", k);
		else if (!json_is_string(v) && !json_is_number(v) && !json_is_boolean(v))
			zdm_diag(d, "headers", "header '%s' must be a string", k);
		else if (json_is_string(v) && strpbrk(json_string_value(v), "\r\n") != NULL)
			zdm_diag(d, "headers", "header '%s' has a line break in its value", k);
	}
}

void
hc_req_init(struct http_req *req, const json_t *p)
{
	const json_t *h = json_object_get(p, "headers");

	memset(req, 0, sizeof *req);
	req->headers = json_is_object(h) ? h : NULL;
	req->timeout_ms = json_integer_value(json_object_get(p, "request_timeout"));
	req->ca_file = json_string_value(json_object_get(p, "ca_file"));
	req->insecure = json_is_true(json_object_get(p, "insecure"));
}

void
hc_warn_insecure(const struct zdm_ctx *ctx, const json_t *p)
{
	if (!json_is_true(json_object_get(p, "insecure")))
		return;
	zdm_warnf("zdm: warning: step '%s': insecure: true, so TLS certificates are not verified\n",
	    ctx->step_id != NULL ? ctx->step_id : "?");
}

/* bearer and password must come from secrets: a literal would be journaled */
void
hc_check_secret(struct zdm_diag *d, const json_t *p, const char *name)
{
	const json_t *v = json_object_get(p, name);
	const char *s = json_string_value(v);
	char *r;

	if (s == NULL || expr_has_template(s))
		return;		/* ${{ secrets.x }}: checked when it is resolved */
	r = redact_str(s);
	if (!redact_active() || strcmp(r, "***") != 0)
		zdm_diag(d, name, "must come from secrets (%s: ${{ secrets.NAME }}): zdm writes params "
		    "to the journal and only secrets are kept out of it", name);
	free(r);
}

