/*
 * notify.h - the runbook's `notify:` webhooks (docs/zdm-runbook.5 NOTIFY,
 * docs/audit.md): a Slack-compatible JSON POST on run start, failure,
 * rollback, pause and finish.
 */
#ifndef ZDM_NOTIFY_H
#define ZDM_NOTIFY_H

#include "runbook.h"

/*
 * Called by the runner after each journal record of a real run is on disk
 * (data: the record's data as given, not yet redacted; borrowed).  Events
 * that no webhook wants return at once.  Each webhook that wants it gets one
 * POST, in runbook order, each cut off after its timeout (default 5 s), no
 * retries: so an event holds the run up at most the sum of those timeouts.
 * A webhook that fails (no connection, timeout, a status other than 2xx, a
 * URL expression that does not evaluate) never fails the run: a warning
 * goes to stderr and a `notify.failed` record into the journal j, both with
 * secrets redacted.  Text and payload pass through redact_str/redact_json.
 */
void notify_event(struct runbook *rb, struct journal *j, const char *run_id,
    const char *event, const char *step, int attempt, const json_t *data);

#endif
