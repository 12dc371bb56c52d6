/*
 * httpc.h - the one place zdm speaks HTTP: a small interface over libcurl,
 * so step types and the Lua host never see a curl type (curl's tool/lib
 * split).  TLS verification is on unless a request says insecure.
 */
#ifndef ZDM_HTTPC_H
#define ZDM_HTTPC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>


struct http_req {
	const char *method;		/* "GET" when NULL */
	const char *url;
	const json_t *headers;		/* object name -> string, or NULL */
	const char *body;		/* or NULL */
	size_t body_len;
	int64_t timeout_ms;		/* whole request; 0 = 10 s */
	int64_t connect_timeout_ms;	/* 0 = min(timeout, 5 s) */
	int64_t deadline_ms;		/* monotonic; the request never runs past it; 0 = none */
	const char *ca_file;		/* PEM bundle, or NULL for the system's */
	bool insecure;			/* skip TLS verification (warned about by callers) */
	const char *user, *password;	/* basic auth, or NULL */
	const char *bearer;		/* Authorization: Bearer, or NULL */
	const char *unix_socket;	/* talk HTTP over this unix socket, or NULL */
	size_t max_body;		/* bytes of response body kept; 0 = 1 MiB */
	/* background: a request made off the main thread (notify.c's sender):
	 * no zdm_tick (the spinner is the main thread's) and zdm_interrupted
	 * does not abort it (its owner decides, through cancel).  Any request
	 * is aborted within about a second once *cancel is nonzero (borrowed;
	 * NULL = never); a request not in the background also by a signal
	 * (zdm_interrupted). */
	bool background;
	const atomic_int *cancel;
	/* resolve, connect and (https) verify the TLS handshake, then stop:
	 * no request is sent (status stays 0; a --dry-run check) */
	bool connect_only;
};

struct http_resp {
	long status;			/* 0 when no response */
	char *body;			/* NUL-terminated, owned; never NULL after http_do */
	size_t body_len;
	bool body_trunc;
	json_t *headers;		/* object lower-case name -> string, owned */
	int64_t duration_ms;
};

/* 0 when a response arrived (any status); -1 with *err = curl's message
 * (connection refused, timeout, TLS failure ...) otherwise. */
int http_do(const struct http_req *req, struct http_resp *resp, char **err);
/* initialises libcurl (curl_global_init, not thread-safe): call it on the
 * main thread before a thread of zdm's makes requests.  http_do calls it
 * too.  0, or -1 with *err. */
int http_init(char **err);
void http_resp_release(struct http_resp *resp);

/* checks a URL the way the request will (scheme http/https, host); NULL if
 * fine, else a static reason */
const char *http_url_problem(const char *url);

/* percent-encode a query parameter's value (curl_easy_escape); malloc'd */
char *http_escape(const char *s);

#endif
