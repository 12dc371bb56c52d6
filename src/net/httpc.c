/*
 * httpc.c - HTTP for zdm over libcurl (httpc.h).  One easy handle per
 * request: gates poll every few seconds at most, so connection reuse buys
 * nothing and a fresh handle can never carry state from one request to the
 * next.
 *
 * What every request gets, whoever asks:
 *   - TLS verification on unless req->insecure (callers warn about it);
 *   - no redirects followed, only http and https spoken;
 *   - a whole-request timeout and a connect timeout, both cut to the
 *     caller's deadline, so a request never outlives its step;
 *   - CURLOPT_NOSIGNAL (zdm owns its signals), and a progress callback that
 *     aborts the transfer when SIGINT/SIGTERM reached zdm and keeps the
 *     terminal's spinner turning (zdm_tick);
 *   - sockets opened close-on-exec (on_opensocket);
 *   - the response body kept up to max_body bytes (the rest is read and
 *     dropped, so the status still arrives), headers lower-cased.
 */
#include <ctype.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <string.h>

#include <curl/curl.h>

#include "base/proc.h"
#include "base/util.h"
#include "net/httpc.h"
#include "zdm/step.h"

#define HTTPC_TIMEOUT_MS	10000
#define HTTPC_CONNECT_MS	5000
#define HTTPC_MAX_BODY		(1024 * 1024)

static bool httpc_ready;

static void
httpc_cleanup(void)
{
	curl_global_cleanup();
}

int
http_init(char **err)
{
	CURLcode rc;

	if (httpc_ready)
		return 0;
	rc = curl_global_init(CURL_GLOBAL_DEFAULT);
	if (rc != CURLE_OK)
		return seterr(err, "cannot initialise libcurl: %s", curl_easy_strerror(rc));
	httpc_ready = true;
	atexit(httpc_cleanup);
	return 0;
}

const char *
http_url_problem(const char *url)
{
	CURLU *u;
	CURLUcode rc;
	char *scheme = NULL, *host = NULL;
	const char *why = NULL;

	if (url == NULL || url[0] == '\0')
		return "empty URL";
	u = curl_url();
	if (u == NULL)
		return "out of memory";
	rc = curl_url_set(u, CURLUPART_URL, url, 0);
	if (rc != CURLUE_OK && strstr(url, "://") == NULL) {
		why = "not an absolute URL (expected http://host[:port]/path or https://...)";
	} else if (rc == CURLUE_BAD_SCHEME || rc == CURLUE_UNSUPPORTED_SCHEME) {
		why = "the scheme must be http or https";
	} else if (rc != CURLUE_OK) {
		why = curl_url_strerror(rc);	/* curl's own words: "No host part in the URL" */
	} else if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
		why = "the scheme must be http or https";
	} else if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    host[0] == '\0') {
		why = "the URL has no host";
	}
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(u);
	return why;
}

/* ---- response collection ------------------------------------------------- */

struct sink {
	struct http_resp *resp;
	struct sbuf body;
	size_t max;
};

static size_t
on_body(char *p, size_t size, size_t n, void *arg)
{
	struct sink *s = arg;
	size_t len = size * n, room = s->max - s->body.len;

	if (len > room) {
		s->resp->body_trunc = true;
		sb_add(&s->body, p, room);
	} else {
		sb_add(&s->body, p, len);
	}
	return len;		/* the rest is read and dropped */
}

/* a header value as a JSON string: bytes that are not UTF-8 become '?' */
static json_t *
header_value(const char *v, size_t n)
{
	json_t *j = json_stringn(v, n);
	char *copy;

	if (j != NULL)
		return j;
	copy = xstrndup(v, n);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)copy[i] >= 0x80 || copy[i] == '\0')
			copy[i] = '?';
	j = json_stringn(copy, n);
	free(copy);
	return j;
}

static size_t
on_header(char *p, size_t size, size_t n, void *arg)
{
	struct sink *s = arg;
	size_t len = size * n, klen, vlen;
	const char *colon, *v, *end = p + len;
	char *key;
	json_t *old;

	if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
		/* a new response (after a 100 Continue): its headers only */
		json_object_clear(s->resp->headers);
		return len;
	}
	colon = memchr(p, ':', len);
	if (colon == NULL || colon == p)
		return len;
	klen = (size_t)(colon - p);
	v = colon + 1;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' ||
	    end[-1] == '\t'))
		end--;
	vlen = (size_t)(end - v);
	key = xstrndup(p, klen);
	for (char *k = key; *k != '\0'; k++)
		*k = (char)tolower((unsigned char)*k);
	old = json_object_get(s->resp->headers, key);
	if (old != NULL && json_is_string(old)) {
		/* repeated header: one value, comma-joined (RFC 9110 5.3) */
		struct sbuf sb;
		json_t *nv;

		sb_init(&sb);
		sb_add(&sb, json_string_value(old), json_string_length(old));
		sb_adds(&sb, ", ");
		sb_add(&sb, v, vlen);
		nv = header_value(sb.buf, sb.len);
		sb_release(&sb);
		if (nv != NULL)
			json_object_set_new(s->resp->headers, key, nv);
	} else {
		json_t *nv = header_value(v, vlen);

		if (nv != NULL)
			json_object_set_new(s->resp->headers, key, nv);
	}
	free(key);
	return len;
}

static int
on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	const struct http_req *req = arg;

	if (!req->background && zdm_interrupted)
		return 1;	/* CURLE_ABORTED_BY_CALLBACK */
	if (req->cancel != NULL && atomic_load(req->cancel))
		return 1;
	if (!req->background)
		zdm_ticked();
	return 0;
}

/*
 * Every socket close-on-exec (curl does not set it): notify.c's sender
 * talks while the main thread starts a step's processes, which must not
 * inherit a webhook's connection (a daemon a step starts would hold it open).
 */
static curl_socket_t
on_opensocket(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
	(void)arg;
	(void)purpose;
	return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/* ---- the request --------------------------------------------------------- */

static bool
has_crlf(const char *s)
{
	return strpbrk(s, "\r\n") != NULL;
}

/* "Name: value" lines for curl; -1 on a name or value that cannot be sent */
static int
add_headers(const json_t *h, struct curl_slist **list, char **err)
{
	const char *k;
	json_t *v;

	if (h == NULL)
		return 0;
	if (!json_is_object(h))
		return seterr(err, "headers must be a map of name: value");
	json_object_foreach((json_t *)h, k, v) {
		struct curl_slist *n;
		char *line, *num = NULL;
		const char *val;

		if (json_is_string(v)) {
			val = json_string_value(v);
		} else if (json_is_number(v) || json_is_boolean(v)) {
			num = json_dumps(v, JSON_ENCODE_ANY);
			val = num;
		} else {
			return seterr(err, "header '%s' must be a string", k);
		}
		if (k[0] == '\0' || strpbrk(k, ": \t\r\n") != NULL || has_crlf(val)) {
			free(num);
			return seterr(err, "header '%s' has a name or value that cannot be sent (no ':', spaces or line breaks in names; no line breaks in values)", k);
		}
		/* "Name;" is how curl sends a header with an empty value */
		line = val[0] == '\0' ? xasprintf("%s;", k) : xasprintf("%s: %s", k, val);
		free(num);
		n = curl_slist_append(*list, line);
		free(line);
		if (n == NULL)
			return seterr(err, "out of memory");
		*list = n;
	}
	return 0;
}

int
http_do(const struct http_req *req, struct http_resp *resp, char **err)
{
	const char *method = req->method != NULL ? req->method : "GET";
	int64_t timeout = req->timeout_ms > 0 ? req->timeout_ms : HTTPC_TIMEOUT_MS;
	int64_t connect, t0;
	char ebuf[CURL_ERROR_SIZE];
	struct curl_slist *hl = NULL;
	struct sink sink;
	CURL *h = NULL;
	CURLcode rc;
	int ret = -1;

	memset(resp, 0, sizeof *resp);
	resp->headers = json_object();
	sb_init(&sink.body);
	sink.resp = resp;
	sink.max = req->max_body > 0 ? req->max_body : HTTPC_MAX_BODY;
	t0 = zdm_now_ms();

	if (http_init(err) != 0)
		goto out;
	if (req->url == NULL || http_url_problem(req->url) != NULL) {
		seterr(err, "'%s': %s", req->url ? req->url : "", req->url ?
		    http_url_problem(req->url) : "no URL");
		goto out;
	}
	if (method[0] == '\0' || strpbrk(method, " \t\r\n") != NULL) {
		seterr(err, "bad method '%s'", method);
		goto out;
	}
	if (req->deadline_ms != 0) {
		int64_t left = req->deadline_ms - t0;

		if (left <= 0) {
			seterr(err, "no time left before the step's deadline");
			goto out;
		}
		if (timeout > left)
			timeout = left;
	}
	connect = req->connect_timeout_ms > 0 ? req->connect_timeout_ms : HTTPC_CONNECT_MS;
	if (connect > timeout)
		connect = timeout;

	h = curl_easy_init();
	if (h == NULL) {
		seterr(err, "cannot create a curl handle");
		goto out;
	}
	ebuf[0] = '\0';
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, ebuf);
	curl_easy_setopt(h, CURLOPT_URL, req->url);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)connect);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "zdm/" ZDM_VERSION);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, &sink);
	curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, on_opensocket);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, (void *)req);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	if (req->insecure) {
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (req->ca_file != NULL)
		curl_easy_setopt(h, CURLOPT_CAINFO, req->ca_file);
	if (req->unix_socket != NULL)
		curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, req->unix_socket);
	if (req->user != NULL) {
		curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		curl_easy_setopt(h, CURLOPT_USERNAME, req->user);
		curl_easy_setopt(h, CURLOPT_PASSWORD, req->password != NULL ? req->password : "");
	} else if (req->bearer != NULL) {
		curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BEARER);
		curl_easy_setopt(h, CURLOPT_XOAUTH2_BEARER, req->bearer);
	}

	if (strcmp(method, "HEAD") == 0) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else if (req->body != NULL || strcmp(method, "POST") == 0) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
		    (curl_off_t)(req->body != NULL ? req->body_len : 0));
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body != NULL ? req->body : "");
		if (strcmp(method, "POST") != 0)
			curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
		/* no 100-continue round trip: the body goes with the request */
		hl = curl_slist_append(hl, "Expect:");
	} else if (strcmp(method, "GET") != 0) {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	}
	if (add_headers(req->headers, &hl, err) != 0)
		goto out;
	if (hl != NULL)
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);

	if (req->connect_only)
		curl_easy_setopt(h, CURLOPT_CONNECT_ONLY, 1L);
	rc = curl_easy_perform(h);
	resp->duration_ms = zdm_now_ms() - t0;
	if (rc != CURLE_OK) {
		if (rc == CURLE_ABORTED_BY_CALLBACK && !req->background && zdm_interrupted)
			seterr(err, "interrupted by signal %d", (int)zdm_interrupted);
		else if (rc == CURLE_ABORTED_BY_CALLBACK && req->cancel != NULL)
			seterr(err, "cancelled");
		else
			seterr(err, "%s", ebuf[0] != '\0' ? ebuf : curl_easy_strerror(rc));
		if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR) {
			/* curl says "Couldn't connect to server"; the system says why */
			long oserr = 0;

			curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &oserr);
			if (oserr != 0 && strstr(*err, strerror((int)oserr)) == NULL) {
				char *m = xasprintf("%s (%s)", *err, strerror((int)oserr));

				free(*err);
				*err = m;
			}
		}
		goto out;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
	ret = 0;
out:
	if (ret != 0) {
		resp->status = 0;
		json_object_clear(resp->headers);
		sink.body.len = 0;
		sink.body.buf[0] = '\0';
		resp->body_trunc = false;
	}
	if (resp->duration_ms == 0)
		resp->duration_ms = zdm_now_ms() - t0;
	resp->body_len = sink.body.len;
	resp->body = sb_detach(&sink.body);
	curl_slist_free_all(hl);
	if (h != NULL)
		curl_easy_cleanup(h);
	return ret;
}

void
http_resp_release(struct http_resp *resp)
{
	free(resp->body);
	json_decref(resp->headers);
	resp->body = NULL;
	resp->headers = NULL;
	resp->body_len = 0;
}

char *
http_escape(const char *s)
{
	char *e = curl_easy_escape(NULL, s, 0), *r;

	if (e == NULL) {
		fputs("zdm: out of memory\n", stderr);
		abort();
	}
	r = xstrdup(e);
	curl_free(e);
	return r;
}
