/* bench/loadgen.c - a small HTTP load generator for the zero-downtime bench.
 *
 *   loadgen -u URL [-c CONNS] [-d MS] [-n COUNT] [-r RATE] [-t MS] [-l LOG] [-s SUMMARY]
 *
 * CONNS keep-alive connections (libcurl multi interface; no HTTP of our own) send GET URL
 * to 127.0.0.1 until MS milliseconds have passed OR COUNT requests were sent OR SIGTERM /
 * SIGINT arrives; requests in flight are then finished (each bounded by -t), and the
 * summary is written.  With -r the total request rate is paced to RATE requests/s
 * (spread over the connections); without it every connection sends its next request as
 * soon as the previous one is answered (closed loop).
 *
 * For every response it records the wall-clock time it completed (CLOCK_REALTIME, ms
 * with 3 decimals, the clock zdm's journal `ts` uses), the HTTP status, which backend
 * answered (the value of the response header `X-Backend`, "-" when absent) and the
 * outcome: `ok`, or the kind of socket error, counted apart from non-2xx:
 *   connect      connection refused / could not connect   (CURLE_COULDNT_CONNECT)
 *   empty        the server closed without a reply         (CURLE_GOT_NOTHING)
 *   reset        send or receive failed (RST, broken pipe) (CURLE_SEND/RECV_ERROR)
 *   timeout      no complete reply within -t ms            (CURLE_OPERATION_TIMEDOUT)
 *   other        any other libcurl error (its name is logged)
 * A socket error has status 0.  Note that libcurl itself re-sends a request once when
 * a *reused* keep-alive connection turns out to be closed before any byte of the reply
 * came (as browsers do); such a request is not an error, but it needed a new
 * connection: the summary's `closed_during_load` counts the keep-alive connections
 * closed while requests were still being sent (the pool holds CONNS connections and
 * never more are in use, so these are connections the server closed, e.g. at an nginx
 * reload), and `connects` every connection opened.
 *
 * LOG (-l): one line per response, tab-separated: ms status backend outcome.
 * SUMMARY (-s, default stdout): JSON (jansson) with the counts, and per backend the
 * count and the first and last response times (ms since the epoch).
 *
 * Exit: 0 when the run happened (whatever the errors: they are the measurement),
 * 2 on a usage error, 1 when libcurl could not be set up or a file not written.
 * Only loopback URLs are accepted (http://127.0.0.1[:port]/... or http://localhost...).
 */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS    256
#define MAX_BACKENDS 8
#define BACKEND_LEN  32

enum outcome { OK, E_CONNECT, E_EMPTY, E_RESET, E_TIMEOUT, E_OTHER, N_OUTCOMES };
static const char *const outcome_name[N_OUTCOMES] = {"ok", "connect", "empty", "reset",
                                                     "timeout", "other"};

struct conn {
	CURL *h;
	int active;
	int64_t next_us; /* earliest start of its next request (CLOCK_MONOTONIC, us) */
	char backend[BACKEND_LEN];
};

struct backend {
	char name[BACKEND_LEN];
	long count;
	double first_ms, last_ms;
};

static volatile sig_atomic_t stop_requested;
static int sending = 1;     /* still starting requests */
static long closed_early;   /* connections closed while sending (not at the end) */
static void on_signal(int sig) { (void)sig; stop_requested = 1; }

static int64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static double wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static size_t discard_body(char *p, size_t size, size_t n, void *ud)
{
	(void)p;
	(void)ud;
	return size * n;
}

/* remembers the X-Backend header of the response */
static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
	struct conn *c = ud;
	size_t len = size * n;
	static const char name[] = "x-backend:";
	if (len > sizeof name - 1 && strncasecmp(p, name, sizeof name - 1) == 0) {
		const char *v = p + sizeof name - 1, *end = p + len;
		while (v < end && (*v == ' ' || *v == '\t'))
			v++;
		while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
			end--;
		size_t vl = (size_t)(end - v);
		if (vl >= BACKEND_LEN)
			vl = BACKEND_LEN - 1;
		memcpy(c->backend, v, vl);
		c->backend[vl] = '\0';
	}
	return len;
}

/* libcurl closes a connection: while the load runs, that is one the server closed
 * (the pool holds CONNS connections, and at most CONNS are ever in use) */
static int on_close(void *ud, curl_socket_t fd)
{
	(void)ud;
	if (sending)
		closed_early++;
	return close(fd);
}

static enum outcome classify(CURLcode rc)
{
	switch (rc) {
	case CURLE_OK: return OK;
	case CURLE_COULDNT_CONNECT: return E_CONNECT;
	case CURLE_GOT_NOTHING: return E_EMPTY;
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR: return E_RESET;
	case CURLE_OPERATION_TIMEDOUT: return E_TIMEOUT;
	default: return E_OTHER;
	}
}

static int parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

static int loopback_url(const char *u)
{
	static const char *const ok[] = {"http://127.0.0.1:", "http://127.0.0.1/",
	                                 "http://localhost:", "http://localhost/"};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
		if (strncmp(u, ok[i], strlen(ok[i])) == 0)
			return 1;
	return 0;
}

static void usage(void)
{
	fputs("usage: loadgen -u URL [-c CONNS] [-d MS] [-n COUNT] [-r RATE] [-t MS] [-l LOG] "
	      "[-s SUMMARY]\n"
	      "  -u URL      loopback URL to GET (http://127.0.0.1:PORT/...)\n"
	      "  -c CONNS    keep-alive connections, 1..256 (default 8)\n"
	      "  -d MS       stop sending after MS milliseconds (default 10000, max 600000)\n"
	      "  -n COUNT    stop after COUNT requests (default 1000000)\n"
	      "  -r RATE     total requests per second, paced (default 0: closed loop)\n"
	      "  -t MS       per-request timeout (default 5000)\n"
	      "  -l LOG      per-response log: ms<TAB>status<TAB>backend<TAB>outcome\n"
	      "  -s SUMMARY  summary JSON file (default: stdout)\n",
	      stderr);
}

int main(int argc, char **argv)
{
	const char *url = NULL, *log_path = NULL, *sum_path = NULL;
	long conns = 8, dur_ms = 10000, max_req = 1000000, rate = 0, timeout_ms = 5000;
	int opt;
	while ((opt = getopt(argc, argv, "u:c:d:n:r:t:l:s:h")) != -1) {
		int bad = 0;
		switch (opt) {
		case 'u': url = optarg; break;
		case 'c': bad = parse_long(optarg, 1, MAX_CONNS, &conns); break;
		case 'd': bad = parse_long(optarg, 1, 600000, &dur_ms); break;
		case 'n': bad = parse_long(optarg, 1, 100000000, &max_req); break;
		case 'r': bad = parse_long(optarg, 0, 1000000, &rate); break;
		case 't': bad = parse_long(optarg, 1, 600000, &timeout_ms); break;
		case 'l': log_path = optarg; break;
		case 's': sum_path = optarg; break;
		default: usage(); return 2;
		}
		if (bad) {
			fprintf(stderr, "loadgen: -%c: '%s' is not a number in range (see -h)\n", opt,
			        optarg);
			return 2;
		}
	}
	if (!url || optind != argc) {
		usage();
		return 2;
	}
	if (!loopback_url(url)) {
		fprintf(stderr, "loadgen: -u: '%s' is not a loopback URL (http://127.0.0.1:PORT/...)\n",
		        url);
		return 2;
	}

	FILE *log = NULL;
	if (log_path) {
		log = fopen(log_path, "w");
		if (!log) {
			fprintf(stderr, "loadgen: -l: %s: %s\n", log_path, strerror(errno));
			return 1;
		}
		setvbuf(log, NULL, _IOFBF, 1 << 16);
	}

	struct sigaction sa = {0};
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fputs("loadgen: curl_global_init failed\n", stderr);
		return 1;
	}
	CURLM *m = curl_multi_init();
	struct conn *cs = calloc((size_t)conns, sizeof *cs);
	if (!m || !cs) {
		fputs("loadgen: out of memory\n", stderr);
		return 1;
	}
	curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, conns);
	curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, conns);
	for (long i = 0; i < conns; i++) {
		CURL *h = curl_easy_init();
		if (!h) {
			fputs("loadgen: curl_easy_init failed\n", stderr);
			return 1;
		}
		curl_easy_setopt(h, CURLOPT_URL, url);
		curl_easy_setopt(h, CURLOPT_PROXY, "");          /* never an env proxy */
		curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard_body);
		curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
		curl_easy_setopt(h, CURLOPT_HEADERDATA, &cs[i]);
		curl_easy_setopt(h, CURLOPT_PRIVATE, &cs[i]);
		curl_easy_setopt(h, CURLOPT_CLOSESOCKETFUNCTION, on_close);
		cs[i].h = h;
	}

	/* per-connection pacing interval: CONNS / RATE seconds */
	int64_t interval_us = rate > 0 ? (int64_t)conns * 1000000 / rate : 0;
	int64_t t0 = mono_us(), end_us = t0 + dur_ms * 1000;
	for (long i = 0; i < conns; i++) /* stagger the first requests over one interval */
		cs[i].next_us = t0 + (interval_us * i) / conns;

	long sent = 0, responses = 0, s2xx = 0, non2xx = 0, connects = 0;
	long outcomes[N_OUTCOMES] = {0};
	struct backend bk[MAX_BACKENDS];
	int nbk = 0;
	long other_backends = 0; /* responses from more distinct backends than MAX_BACKENDS */
	int active = 0;

	for (;;) {
		int64_t now = mono_us();
		sending = !stop_requested && now < end_us && sent < max_req;
		int64_t wake = now + 100000;
		for (long i = 0; i < conns && sending; i++) {
			struct conn *c = &cs[i];
			if (c->active)
				continue;
			if (now >= c->next_us && sent < max_req) {
				c->backend[0] = '\0';
				if (curl_multi_add_handle(m, c->h) != CURLM_OK) {
					fputs("loadgen: curl_multi_add_handle failed\n", stderr);
					return 1;
				}
				c->active = 1;
				active++;
				sent++;
				c->next_us = (interval_us ? c->next_us + interval_us : now);
				if (c->next_us < now) /* behind: no burst to catch up */
					c->next_us = now;
			} else if (c->next_us < wake) {
				wake = c->next_us;
			}
		}
		if (!sending && active == 0)
			break;

		int running = 0;
		curl_multi_perform(m, &running);
		CURLMsg *msg;
		int left;
		while ((msg = curl_multi_info_read(m, &left))) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			CURL *h = msg->easy_handle;
			CURLcode rc = msg->data.result;
			double t = wall_ms();
			struct conn *c = NULL;
			curl_easy_getinfo(h, CURLINFO_PRIVATE, (char **)&c);
			long status = 0, nconn = 0;
			curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &nconn);
			connects += nconn;
			enum outcome o = classify(rc);
			if (o == OK)
				curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
			outcomes[o]++;
			responses++;
			if (o == OK) {
				if (status >= 200 && status < 300)
					s2xx++;
				else
					non2xx++;
			}
			const char *b = c->backend[0] ? c->backend : "-";
			if (o == OK) {
				int k;
				for (k = 0; k < nbk && strcmp(bk[k].name, b) != 0; k++)
					;
				if (k == nbk && nbk < MAX_BACKENDS) {
					snprintf(bk[k].name, sizeof bk[k].name, "%s", b);
					bk[k].count = 0;
					bk[k].first_ms = t;
					nbk++;
				}
				if (k < nbk) {
					bk[k].count++;
					bk[k].last_ms = t;
				} else {
					other_backends++;
				}
			}
			if (log && o == E_OTHER)
				fprintf(log, "%.3f\t0\t-\tother:%d\n", t, (int)rc);
			else if (log)
				fprintf(log, "%.3f\t%ld\t%s\t%s\n", t, status, o == OK ? b : "-",
				        outcome_name[o]);
			curl_multi_remove_handle(m, h);
			c->active = 0;
			active--;
		}
		/* wait for socket activity or the next paced start, at most 100 ms (a
		 * connection whose request completed just now is due too) */
		for (long i = 0; i < conns && sending; i++)
			if (!cs[i].active && cs[i].next_us < wake)
				wake = cs[i].next_us;
		now = mono_us();
		int64_t wait_ms = (wake - now + 999) / 1000;
		if (wait_ms < 0)
			wait_ms = 0;
		if (wait_ms > 100)
			wait_ms = 100;
		curl_multi_poll(m, NULL, 0, (int)wait_ms, NULL);
	}
	double elapsed_ms = (double)(mono_us() - t0) / 1000.0;

	for (long i = 0; i < conns; i++)
		curl_easy_cleanup(cs[i].h);
	curl_multi_cleanup(m);
	curl_global_cleanup();
	free(cs);

	int rcode = 0;
	if (log && fclose(log) != 0) {
		fprintf(stderr, "loadgen: -l: %s: %s\n", log_path, strerror(errno));
		rcode = 1;
	}

	long sock_err = responses - outcomes[OK];
	json_t *j = json_object();
	json_object_set_new(j, "url", json_string(url));
	json_object_set_new(j, "connections", json_integer(conns));
	json_object_set_new(j, "duration_ms", json_real(elapsed_ms));
	json_object_set_new(j, "requests", json_integer(responses));
	json_object_set_new(j, "status_2xx", json_integer(s2xx));
	json_object_set_new(j, "non_2xx", json_integer(non2xx));
	json_object_set_new(j, "socket_errors", json_integer(sock_err));
	json_t *ek = json_object();
	for (int o = 1; o < N_OUTCOMES; o++)
		json_object_set_new(ek, outcome_name[o], json_integer(outcomes[o]));
	json_object_set_new(j, "socket_errors_by_kind", ek);
	json_object_set_new(j, "error_rate",
	                    json_real(responses ? (double)(non2xx + sock_err) / (double)responses : 0));
	json_object_set_new(j, "connects", json_integer(connects));
	json_object_set_new(j, "closed_during_load", json_integer(closed_early));
	json_t *bj = json_object();
	for (int k = 0; k < nbk; k++) {
		json_t *e = json_object();
		json_object_set_new(e, "count", json_integer(bk[k].count));
		json_object_set_new(e, "first_ms", json_real(bk[k].first_ms));
		json_object_set_new(e, "last_ms", json_real(bk[k].last_ms));
		json_object_set_new(bj, bk[k].name, e);
	}
	json_object_set_new(j, "backends", bj);
	json_object_set_new(j, "uncounted_backends", json_integer(other_backends));
	if (sum_path) {
		if (json_dump_file(j, sum_path, JSON_INDENT(2) | JSON_REAL_PRECISION(15)) != 0) {
			fprintf(stderr, "loadgen: -s: cannot write %s\n", sum_path);
			rcode = 1;
		}
	} else {
		json_dumpf(j, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(15));
		putchar('\n');
	}
	json_decref(j);
	return rcode;
}
