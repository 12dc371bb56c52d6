/*
 * notify.c - webhooks on a run's turning points (notify.h).
 *
 * Payload (Content-Type: application/json), Slack incoming-webhook
 * compatible: "text" is the one line a channel shows; "zdm" carries the same
 * facts as fields for receivers that parse them:
 *
 *   {"text": "zdm: run 20261121T100000Z-7f3a of 'orders' finished: rolled_back
 *             (exit 1) after step 'shift-10' failed",
 *    "zdm": {"event": "run.finished", "on": "finish", "run": "...",
 *            "runbook": "orders", "status": "rolled_back", "exit_code": 1, ...}}
 *
 * Threads.  The main thread builds each payload (redact_*, expressions,
 * the journal and audit_actor are main-thread only), renders each URL and
 * queues one item per webhook; one sender thread POSTs them in queue order
 * (so in order per webhook) and hands failures back.  The main thread
 * journals them (notify.failed) at its next record and at notify_close.
 * The sender blocks every signal: SIGINT/SIGTERM go to the main thread.
 * Its requests are background ones (httpc.h): a signal does not abort them;
 * notify_close decides, through n->cancel.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/proc.h"
#include "base/redact.h"
#include "base/util.h"
#include "core/actor.h"
#include "core/events.h"
#include "core/store.h"
#include "core/observer.h"
#include "net/httpc.h"
#include "report/notify.h"
#include "zdm/step.h"

static const char *
dstr(const json_t *d, const char *k)
{
	return json_string_value(json_object_get(d, k));
}

/* the NOTIFY_* bit of a journal event, and its word; 0 when not notified */
static unsigned
event_bit(const char *event, const json_t *data, const char **word)
{
	static const struct {
		enum ev event;
		unsigned bit;
		const char *word;
	} map[] = {
		{ EV_RUN_STARTED, NOTIFY_START, "start" },
		{ EV_RUN_RESUMED, NOTIFY_START, "start" },
		{ EV_STEP_FAILED, NOTIFY_FAILURE, "failure" },
		{ EV_UNDO_FAILED, NOTIFY_FAILURE, "failure" },
		{ EV_ROLLBACK_STARTED, NOTIFY_ROLLBACK, "rollback" },
		{ EV_RUN_FINISHED, NOTIFY_FINISH, "finish" },
		{ EV_RUN_PAUSED, NOTIFY_PAUSE, "pause" },
		{ EV_RUN_INTERRUPTED, NOTIFY_PAUSE, "pause" },
	};
	enum ev e = ev_parse(event);

	for (size_t i = 0; e != EV_UNKNOWN && i < sizeof map / sizeof map[0]; i++)
		if (e == map[i].event) {
			/* a failed attempt that will be retried is not a failure yet */
			if (map[i].bit == NOTIFY_FAILURE &&
			    json_is_true(json_object_get(data, "will_retry")))
				return 0;
			*word = map[i].word;
			return map[i].bit;
		}
	return 0;
}

/* the one line a channel shows */
static char *
message(const struct runbook *rb, const char *run_id, const char *event, const char *step,
    int attempt, const json_t *d, const char *who, const char *host)
{
	struct sbuf sb;
	const char *err = dstr(d, "error");

	sb_init(&sb);
	sb_addf(&sb, "zdm: run %s of '%s'", run_id, rb->name);
	switch (ev_parse(event)) {
	case EV_RUN_STARTED:
		sb_addf(&sb, " started by %s on %s (%zu step%s)", who, host, rb->nsteps,
		    rb->nsteps == 1 ? "" : "s");
		break;
	case EV_RUN_RESUMED:
		sb_addf(&sb, " resumed (zdm %s) by %s on %s",
		    dstr(d, "command") ? dstr(d, "command") : "resume", who, host);
		break;
	case EV_STEP_FAILED:
		sb_addf(&sb, ": step '%s' failed", step ? step : "?");
		if (attempt > 1)
			sb_addf(&sb, " (attempt %d)", attempt);
		if (err != NULL)
			sb_addf(&sb, ": %s", err);
		break;
	case EV_UNDO_FAILED:
		sb_addf(&sb, ": the undo of step '%s' failed", step ? step : "?");
		if (err != NULL)
			sb_addf(&sb, ": %s", err);
		break;
	case EV_ROLLBACK_STARTED:
		sb_addf(&sb, ": rolling back");
		if (dstr(d, "reason") != NULL)
			sb_addf(&sb, " (%s)", dstr(d, "reason"));
		break;
	case EV_RUN_FINISHED: {
		char dd[32] = "";

		if (json_is_integer(json_object_get(d, "duration_ms")))
			fmt_duration(json_integer_value(json_object_get(d, "duration_ms")), dd, sizeof dd);
		sb_addf(&sb, " finished: %s (exit %d)", dstr(d, "status") ? dstr(d, "status") : "?",
		    (int)json_integer_value(json_object_get(d, "exit_code")));
		if (*dd != '\0')
			sb_addf(&sb, " in %s", dd);
		if (dstr(d, "failed_step") != NULL)
			sb_addf(&sb, " after step '%s' failed", dstr(d, "failed_step"));
		if (err != NULL)
			sb_addf(&sb, ": %s", err);
		break;
	}
	case EV_RUN_PAUSED:
		sb_addf(&sb, " paused at step '%s'", step ? step : "?");
		if (err != NULL)
			sb_addf(&sb, ": %s", err);
		sb_addf(&sb, "; a person decides: zdm resume %s or zdm rollback %s", run_id, run_id);
		break;
	case EV_RUN_INTERRUPTED:
		sb_addf(&sb, " interrupted by signal %d; zdm resume %s or zdm rollback %s",
		    (int)json_integer_value(json_object_get(d, "signal")), run_id, run_id);
		break;
	default:
		break;
	}
	return sb_detach(&sb);
}

/*
 * seq and hash of the journal's last record, so a receiver of run.finished
 * holds an anchor that a later cut of the journal's tail cannot match.
 * Nothing is added when it cannot be read.
 */
static void
add_anchor(json_t *z, struct store_writer *w)
{
	long seq;
	char *hash;

	if (store_writer_last(w, &seq, &hash) != 0)
		return;
	json_object_set_new(z, "last_seq", json_integer(seq));
	json_object_set_new(z, "last_hash", json_string(hash));
	free(hash);
}

/* one POST to one webhook; owned by whoever holds it (queue, sender, main) */
struct nitem {
	struct nitem *next;
	char *url;		/* rendered: may hold a secret; for the request only */
	char *body;		/* the payload, already redacted */
	char *event;		/* the journal event it is about */
	const char *word;	/* "failure" (static) */
	int64_t timeout_ms;
	char *error;		/* set by the sender: why it failed (not redacted) */
	bool cut;		/* not delivered: cancelled or never sent */
};

struct notifier {
	struct runbook *rb;	/* borrowed */
	pthread_mutex_t mu;
	pthread_cond_t work;	/* main -> sender: an item, or stop */
	pthread_cond_t idle;	/* sender -> main: an item is done */
	struct nitem *head, **tail;	/* to send, in order */
	struct nitem *fhead, **ftail;	/* failed, for the main thread */
	bool busy;		/* the sender holds an item */
	bool stop;
	bool started;
	pthread_t th;
	atomic_int cancel;	/* aborts the transfer under way (httpc.c) */
	int64_t budget_ms;	/* notify_close's wait: the largest timeout */
};

static void
item_free(struct nitem *it)
{
	free(it->url);
	free(it->body);
	free(it->event);
	free(it->error);
	free(it);
}

/* a webhook failed: say so, journal it, go on (main thread) */
static void
failed(struct store_writer *j, const char *url, const char *event, const char *word,
    const char *why)
{
	char *u = redact_str(url), *w = redact_str(why), *err = NULL;

	fprintf(stderr, "zdm: warning: notify %s (%s) to %s failed: %s; the run goes on\n",
	    word, event, u, w);
	if (store_append(j, ev_name(EV_NOTIFY_FAILED), NULL, 0, json_pack("{s:s,s:s,s:s,s:s}", "url", u,
	    "event", event, "on", word, "error", w), &err) < 0) {
		fprintf(stderr, "zdm: warning: cannot journal the failed notification: %s\n", err);
		free(err);
	}
	free(u);
	free(w);
}

/* the sender: one POST at a time, in queue order */
static void
send_one(struct notifier *n, struct nitem *it)
{
	struct http_req req;
	struct http_resp resp;
	json_t *headers = json_pack("{s:s}", "Content-Type", "application/json");
	char *err = NULL;

	memset(&req, 0, sizeof req);
	memset(&resp, 0, sizeof resp);
	req.method = "POST";
	req.url = it->url;
	req.headers = headers;
	req.body = it->body;
	req.body_len = strlen(it->body);
	req.timeout_ms = it->timeout_ms;
	req.max_body = 1;	/* the body is never shown: a receiver may echo the URL */
	req.background = true;
	req.cancel = &n->cancel;
	if (http_do(&req, &resp, &err) != 0) {
		it->cut = atomic_load(&n->cancel) != 0;
		it->error = err;
	} else if (resp.status < 200 || resp.status > 299) {
		/* the status only: an error page may quote the request's path,
		 * and a webhook's path is often its secret */
		it->error = xasprintf("HTTP %ld", resp.status);
	}
	http_resp_release(&resp);
	json_decref(headers);
}

static void *
sender(void *arg)
{
	struct notifier *n = arg;

	pthread_mutex_lock(&n->mu);
	for (;;) {
		struct nitem *it;

		while (n->head == NULL && !n->stop)
			pthread_cond_wait(&n->work, &n->mu);
		if (n->head == NULL || atomic_load(&n->cancel))
			break;
		it = n->head;
		n->head = it->next;
		if (n->head == NULL)
			n->tail = &n->head;
		it->next = NULL;
		n->busy = true;
		pthread_mutex_unlock(&n->mu);
		send_one(n, it);
		pthread_mutex_lock(&n->mu);
		n->busy = false;
		if (it->error != NULL) {
			*n->ftail = it;
			n->ftail = &it->next;
		} else {
			item_free(it);
		}
		pthread_cond_broadcast(&n->idle);
	}
	pthread_mutex_unlock(&n->mu);
	return NULL;
}

struct notifier *
notify_open(struct runbook *rb)
{
	struct notifier *n;
	pthread_condattr_t ca;

	if (rb->nnotify == 0)
		return NULL;
	n = xcalloc(1, sizeof *n);
	n->rb = rb;
	pthread_mutex_init(&n->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&n->work, &ca);
	pthread_cond_init(&n->idle, &ca);
	pthread_condattr_destroy(&ca);
	n->tail = &n->head;
	n->ftail = &n->fhead;
	atomic_init(&n->cancel, 0);
	for (size_t i = 0; i < rb->nnotify; i++)
		if (rb->notify[i].timeout_ms > n->budget_ms)
			n->budget_ms = rb->notify[i].timeout_ms;
	return n;
}

/* the sender runs from the first item on; false when it cannot */
static bool
start_sender(struct notifier *n, char **err)
{
	sigset_t all, old;
	int e;

	if (n->started)
		return true;
	if (http_init(err) != 0)	/* curl_global_init: main thread only */
		return false;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);	/* the sender inherits it */
	e = pthread_create(&n->th, NULL, sender, n);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (e != 0) {
		seterr(err, "cannot start the notification thread: %s", strerror(e));
		return false;
	}
	n->started = true;
	return true;
}

/* the failures the sender reported so far, into the journal (main thread) */
static void
collect(struct notifier *n, struct store_writer *j, const char *cut_why)
{
	struct nitem *list, *it;

	pthread_mutex_lock(&n->mu);
	list = n->fhead;
	n->fhead = NULL;
	n->ftail = &n->fhead;
	pthread_mutex_unlock(&n->mu);
	while ((it = list) != NULL) {
		list = it->next;
		/* cut: the transfer under way when notify_close gave up */
		failed(j, it->url, it->event, it->word,
		    it->cut && cut_why != NULL ? cut_why : it->error);
		item_free(it);
	}
}

void
notify_event(struct notifier *n, struct store_writer *j, const char *run_id, const char *event,
    const char *step, int attempt, const json_t *data)
{
	struct runbook *rb;
	const char *word = NULL;
	unsigned bit;
	bool wanted = false;
	json_t *actor, *payload, *z;
	const char *who, *host;
	char *text, *body;

	if (n == NULL || event == NULL)
		return;
	collect(n, j, NULL);
	rb = n->rb;
	bit = event_bit(event, data, &word);
	for (size_t i = 0; bit != 0 && i < rb->nnotify; i++)
		if (rb->notify[i].on & bit)
			wanted = true;
	if (!wanted)
		return;

	actor = audit_actor();
	who = dstr(actor, "who") ? dstr(actor, "who") : "?";
	host = dstr(actor, "host") ? dstr(actor, "host") : "?";
	text = message(rb, run_id, event, step, attempt, data, who, host);
	z = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "event", event, "on", word, "run", run_id,
	    "runbook", rb->name, "who", who, "host", host);
	if (step != NULL)
		json_object_set_new(z, "step", json_string(step));
	if (attempt > 0)
		json_object_set_new(z, "attempt", json_integer(attempt));
	{
		const char *keys[] = { "status", "exit_code", "error", "reason", "failed_step",
		    "duration_ms", "command", "signal", NULL };

		for (size_t i = 0; keys[i] != NULL; i++)
			if (json_object_get(data, keys[i]) != NULL)
				json_object_set(z, keys[i], json_object_get(data, keys[i]));
	}
	if (json_object_get(actor, "ci_url") != NULL)
		json_object_set(z, "ci_url", json_object_get(actor, "ci_url"));
	json_object_set_new(z, "journal", json_string(store_writer_ref(j)));
	if (bit == NOTIFY_FINISH)
		add_anchor(z, j);
	payload = json_pack("{s:o,s:o}", "text", json_text(text, strlen(text)), "zdm", z);
	redact_json(payload);	/* the error of a step may quote a secret */
	body = json_dumps(payload, JSON_COMPACT);

	for (size_t i = 0; body != NULL && i < rb->nnotify; i++) {
		const struct rb_notify *nt = &rb->notify[i];
		struct nitem *it;
		json_t *tmpl, *url;
		char *err = NULL;

		if ((nt->on & bit) == 0 || nt->url == NULL)
			continue;
		tmpl = json_string(nt->url);
		url = expr_render(rb->x, tmpl, &err);
		json_decref(tmpl);
		if (!json_is_string(url)) {
			char *why = xasprintf("url does not evaluate to a string: %s",
			    err ? err : "not a string");

			failed(j, nt->url, event, word, why);
			free(why);
			free(err);
			json_decref(url);
			continue;
		}
		if (!start_sender(n, &err)) {
			failed(j, json_string_value(url), event, word, err);
			free(err);
			json_decref(url);
			continue;
		}
		it = xcalloc(1, sizeof *it);
		it->url = xstrdup(json_string_value(url));
		it->body = xstrdup(body);
		it->event = xstrdup(event);
		it->word = word;
		it->timeout_ms = nt->timeout_ms;
		json_decref(url);
		pthread_mutex_lock(&n->mu);
		*n->tail = it;
		n->tail = &it->next;
		pthread_cond_signal(&n->work);
		pthread_mutex_unlock(&n->mu);
	}
	free(body);
	free(text);
	json_decref(payload);
	json_decref(actor);
}

void
notify_close(struct notifier *n, struct store_writer *j)
{
	int64_t deadline, now;
	char *cut_why = NULL;
	struct nitem *left = NULL, *it;

	if (n == NULL)
		return;
	if (n->started) {
		/* a run that a signal stopped still tells its webhooks (the
		 * run.interrupted notice matters most then); a second signal
		 * ends zdm (proc.c).  A signal during the wait ends the wait. */
		bool sig0 = zdm_interrupted != 0;

		deadline = zdm_now_ms() + n->budget_ms;
		pthread_mutex_lock(&n->mu);
		/* wait for the queue to drain, at most budget_ms in all (a
		 * signal is looked for every 100 ms) */
		while ((n->head != NULL || n->busy) && (sig0 || !zdm_interrupted) &&
		    (now = zdm_now_ms()) < deadline) {
			int64_t step = deadline - now < 100 ? deadline - now : 100;
			struct timespec ts;

			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_nsec += (long)(step % 1000) * 1000000L;
			ts.tv_sec += (time_t)(step / 1000) + ts.tv_nsec / 1000000000L;
			ts.tv_nsec %= 1000000000L;
			pthread_cond_timedwait(&n->idle, &n->mu, &ts);
		}
		if (n->head != NULL || n->busy) {
			cut_why = zdm_interrupted && !sig0 ?
			    xasprintf("not delivered: zdm was interrupted by signal %d", (int)zdm_interrupted) :
			    xasprintf("not delivered: zdm waits at most %lld ms (the largest notify "
				"timeout) for the webhooks after the run", (long long)n->budget_ms);
			atomic_store(&n->cancel, 1);
		}
		n->stop = true;
		pthread_cond_signal(&n->work);
		pthread_mutex_unlock(&n->mu);
		pthread_join(n->th, NULL);
		left = n->head;		/* never sent; the sender is gone */
		n->head = NULL;
	}
	collect(n, j, cut_why);
	while ((it = left) != NULL) {
		left = it->next;
		failed(j, it->url, it->event, it->word, cut_why ? cut_why : "not delivered");
		item_free(it);
	}
	free(cut_why);
	pthread_cond_destroy(&n->work);
	pthread_cond_destroy(&n->idle);
	pthread_mutex_destroy(&n->mu);
	free(n);
}

void
notify_observe(void *self, const struct run_event *ev)
{
	struct notify_sink *s = self;

	if (ev->kind == OBS_RECORD) {
		if (s->n == NULL)
			s->n = notify_open(s->rb);
		notify_event(s->n, ev->record.w, ev->run_id, ev->record.event, ev->record.step,
		    ev->record.attempt, ev->record.data);
	} else if (ev->kind == OBS_CLOSED) {
		notify_close(s->n, ev->closed.w);	/* the last webhooks, before the report */
		s->n = NULL;
	}
}
