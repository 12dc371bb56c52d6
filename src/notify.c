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
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "httpc.h"
#include "notify.h"

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
		const char *event;
		unsigned bit;
		const char *word;
	} map[] = {
		{ "run.started", NOTIFY_START, "start" },
		{ "run.resumed", NOTIFY_START, "start" },
		{ "step.failed", NOTIFY_FAILURE, "failure" },
		{ "undo.failed", NOTIFY_FAILURE, "failure" },
		{ "rollback.started", NOTIFY_ROLLBACK, "rollback" },
		{ "run.finished", NOTIFY_FINISH, "finish" },
		{ "run.paused", NOTIFY_PAUSE, "pause" },
		{ "run.interrupted", NOTIFY_PAUSE, "pause" },
	};

	for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
		if (strcmp(event, map[i].event) == 0) {
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
	if (strcmp(event, "run.started") == 0) {
		sb_addf(&sb, " started by %s on %s (%zu step%s)", who, host, rb->nsteps,
		    rb->nsteps == 1 ? "" : "s");
	} else if (strcmp(event, "run.resumed") == 0) {
		sb_addf(&sb, " resumed (zdm %s) by %s on %s",
		    dstr(d, "command") ? dstr(d, "command") : "resume", who, host);
	} else if (strcmp(event, "step.failed") == 0) {
		sb_addf(&sb, ": step '%s' failed", step ? step : "?");
		if (attempt > 1)
			sb_addf(&sb, " (attempt %d)", attempt);
		if (err != NULL)
			sb_addf(&sb, ": %s", err);
	} else if (strcmp(event, "undo.failed") == 0) {
		sb_addf(&sb, ": the undo of step '%s' failed", step ? step : "?");
		if (err != NULL)
			sb_addf(&sb, ": %s", err);
	} else if (strcmp(event, "rollback.started") == 0) {
		sb_addf(&sb, ": rolling back");
		if (dstr(d, "reason") != NULL)
			sb_addf(&sb, " (%s)", dstr(d, "reason"));
	} else if (strcmp(event, "run.finished") == 0) {
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
	} else if (strcmp(event, "run.paused") == 0) {
		sb_addf(&sb, " paused at step '%s'", step ? step : "?");
		if (err != NULL)
			sb_addf(&sb, ": %s", err);
		sb_addf(&sb, "; a person decides: zdm resume %s or zdm rollback %s", run_id, run_id);
	} else if (strcmp(event, "run.interrupted") == 0) {
		sb_addf(&sb, " interrupted by signal %d; zdm resume %s or zdm rollback %s",
		    (int)json_integer_value(json_object_get(d, "signal")), run_id, run_id);
	}
	return sb_detach(&sb);
}

/*
 * seq and hash of the journal's last record (read from its last 64 KiB), so
 * a receiver of run.finished holds an anchor that a later cut of the
 * journal's tail cannot match.  Nothing is added when it cannot be read.
 */
static void
add_anchor(json_t *z, const char *path)
{
	char buf[65536];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	off_t end, from;
	ssize_t n;
	char *nl, *start;
	json_t *rec;

	if (fd < 0)
		return;
	end = lseek(fd, 0, SEEK_END);
	from = end > (off_t)sizeof buf - 1 ? end - (off_t)sizeof buf + 1 : 0;
	n = end > 0 ? pread(fd, buf, (size_t)(end - from), from) : 0;
	close(fd);
	if (n <= 1 || buf[n - 1] != '\n')
		return;
	buf[n - 1] = '\0';
	nl = strrchr(buf, '\n');
	start = nl != NULL ? nl + 1 : buf;
	if (nl == NULL && from > 0)
		return;		/* a line longer than the buffer */
	rec = json_loads(start, 0, NULL);
	if (json_is_string(json_object_get(rec, "hash")) &&
	    json_is_integer(json_object_get(rec, "seq"))) {
		json_object_set(z, "last_seq", json_object_get(rec, "seq"));
		json_object_set(z, "last_hash", json_object_get(rec, "hash"));
	}
	json_decref(rec);
}

/* a webhook failed: say so, journal it, go on */
static void
failed(struct journal *j, const char *url, const char *event, const char *word,
    const char *why)
{
	char *u = redact_str(url), *w = redact_str(why), *err = NULL;

	fprintf(stderr, "zdm: warning: notify %s (%s) to %s failed: %s; the run goes on\n",
	    word, event, u, w);
	if (journal_append(j, "notify.failed", NULL, 0, json_pack("{s:s,s:s,s:s,s:s}", "url", u,
	    "event", event, "on", word, "error", w), &err) < 0) {
		fprintf(stderr, "zdm: warning: cannot journal the failed notification: %s\n", err);
		free(err);
	}
	free(u);
	free(w);
}

void
notify_event(struct runbook *rb, struct journal *j, const char *run_id, const char *event,
    const char *step, int attempt, const json_t *data)
{
	const char *word = NULL;
	unsigned bit;
	bool wanted = false;
	json_t *actor, *payload, *z, *headers;
	const char *who, *host;
	char *text, *body;

	if (rb->nnotify == 0 || event == NULL)
		return;
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
	json_object_set_new(z, "journal", json_string(journal_path(j)));
	if (bit == NOTIFY_FINISH)
		add_anchor(z, journal_path(j));
	payload = json_pack("{s:o,s:o}", "text", json_text(text, strlen(text)), "zdm", z);
	redact_json(payload);	/* the error of a step may quote a secret */
	body = json_dumps(payload, JSON_COMPACT);
	headers = json_pack("{s:s}", "Content-Type", "application/json");

	for (size_t i = 0; body != NULL && i < rb->nnotify; i++) {
		const struct rb_notify *nt = &rb->notify[i];
		struct http_req req;
		struct http_resp resp;
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
		memset(&req, 0, sizeof req);
		memset(&resp, 0, sizeof resp);
		req.method = "POST";
		req.url = json_string_value(url);
		req.headers = headers;
		req.body = body;
		req.body_len = strlen(body);
		req.timeout_ms = nt->timeout_ms;
		req.max_body = 4096;
		if (http_do(&req, &resp, &err) != 0) {
			failed(j, req.url, event, word, err);
			free(err);
		} else if (resp.status < 200 || resp.status > 299) {
			char *why = xasprintf("HTTP %ld%s%.200s", resp.status, resp.body_len ? ": " : "",
			    resp.body);

			failed(j, req.url, event, word, why);
			free(why);
		}
		http_resp_release(&resp);
		json_decref(url);
	}
	json_decref(headers);
	free(body);
	free(text);
	json_decref(payload);
	json_decref(actor);
}
