/*
 * notify.h - the runbook's `notify:` webhooks (docs/zdm-runbook.5 NOTIFY,
 * docs/audit.md): a Slack-compatible JSON POST on run start, failure,
 * rollback, pause and finish.
 */
#ifndef ZDM_NOTIFY_H
#define ZDM_NOTIFY_H

#include "core/runbook.h"

struct store_writer;
struct notifier;

/*
 * A run's webhooks.  notify_open: NULL when the runbook has none (every
 * call below accepts NULL).  All three are for the main thread only.
 */
struct notifier *notify_open(struct runbook *rb);

/*
 * Called after each journal record of a real run is on disk
 * (data: the record's data as given, not yet redacted; borrowed).  It never
 * waits on the network: the payload is built and redacted here, and one
 * item per webhook that wants the event is queued for the sender thread,
 * which POSTs them in queue order (so in order per webhook), each cut off
 * after its timeout (default 5 s, at most 30 s), no retries.  A migration
 * step or its rollback is never held up by a webhook.
 * It first journals the failures the sender reported since the last call:
 * a webhook that fails (no connection, timeout, a status other than 2xx --
 * the status only, never the response body, which may echo a secret URL --
 * or a URL expression that does not evaluate) never fails the run: a warning
 * goes to stderr and a `notify.failed` record into the journal j, both with
 * secrets redacted.
 */
void notify_event(struct notifier *n, struct store_writer *j, const char *run_id,
    const char *event, const char *step, int attempt, const json_t *data);

/*
 * At the end of the command (finished, paused, interrupted, or an error):
 * waits for the queue to drain, at most the largest webhook timeout in all
 * (so run.finished, run.paused and run.interrupted still go out; a signal
 * arriving during the wait, zdm_interrupted, cuts it within 100 ms; after a
 * run stopped by a signal, a second signal ends zdm, proc.c), cancels what
 * is left, stops the sender, journals every failure and every item not
 * delivered as notify.failed, and frees n.
 */
void notify_close(struct notifier *n, struct store_writer *j);

/*
 * The webhooks as an observer of a run (core/observer.h), for real runs
 * only (not a dry run): self is a struct notify_sink.  The notifier opens
 * at the first record the runner journals (OBS_RECORD: notify_event) and
 * closes when the command is done with the run (OBS_CLOSED: notify_close).
 */
struct notify_sink {
	struct runbook *rb;
	struct notifier *n;
};
struct run_event;
void notify_observe(void *self, const struct run_event *ev);

#endif
