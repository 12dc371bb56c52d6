/*
 * httpcheck.h - what the http step and health_gate share: judging a
 * response (expected status, body text, JSON fields), simple JSON paths,
 * and the request options both take from their params.
 */
#ifndef ZDM_HTTPCHECK_H
#define ZDM_HTTPCHECK_H

#include "net/httpc.h"
#include "zdm/step.h"

/* what makes a response good */
struct hc_expect {
	const json_t *status;		/* list of 200, "2xx", "200-299"; NULL = 2xx */
	const char *body_contains;	/* or NULL */
	const json_t *json;		/* object JSON path -> expected value, or NULL */
};

/* one expect_status entry: NULL if fine, else why not (static) */
const char *hc_status_problem(const json_t *v);
/* "2xx" or "200, 301-302" */
char *hc_status_text(const json_t *list);

/*
 * Simple JSON paths, jq-like: `.` (the whole document), `.build.version`,
 * `.items[0].name`, `.items[-1]`, `.["key with spaces"]`.  Names are
 * letters, digits, '_' and '-'.
 */
const char *hc_path_problem(const char *path);	/* NULL if the syntax is fine */
/* the value at path (borrowed), or NULL with *why ("no key 'x' at .a") */
const json_t *hc_path_get(const json_t *doc, const char *path, char *why, size_t n);

/* 0 when the response meets e; -1 with why ("status 500, expected 2xx") */
int hc_check(const struct hc_expect *e, const struct http_resp *r, char *why, size_t n);


/*
 * Static checks shared by the types: a URL (skipped while it holds an
 * expression), expect_status entries, JSON paths of a map's values
 * (outputs) or keys (expect_json), headers.
 */
void hc_check_url(struct zdm_diag *d, const char *param, const json_t *v);
void hc_check_status(struct zdm_diag *d, const json_t *p);
void hc_check_headers(struct zdm_diag *d, const json_t *p);
/* param `name` (a password, a token) must come from secrets: a literal would
 * be journaled in clear */
void hc_check_secret(struct zdm_diag *d, const json_t *p, const char *name);

/* request options common to both types: headers, timeout, ca_file, insecure */
void hc_req_init(struct http_req *req, const json_t *p);

/* warn on stderr that TLS verification is off for a step */
void hc_warn_insecure(const struct zdm_ctx *ctx, const json_t *p);

#endif
