/*
 * probe.h - a runbook's probes (probes:, docs/zdm-runbook.5 PROBES): the
 * read-only steps `zdm drill` runs before the first run and after each
 * rollback.  A probe runs outside any run: no journal, no lock, no
 * observers; what it returns is compared, not recorded.
 */
#ifndef ZDM_CORE_PROBE_H
#define ZDM_CORE_PROBE_H

#include <jansson.h>

#include "core/runbook.h"

/*
 * Run probe i of rb (its params resolved, its retries and timeout as a
 * step's) and return what a drill compares: its outputs, only the keys of
 * compare: when it has one (a missing key is null), else every output but
 * duration_ms; secrets redacted.  NULL with *err (redacted) when the probe
 * fails.  Secrets must be resolved first (runbook_resolve_secrets).
 */
json_t *probe_run(struct runbook *rb, size_t i, const char *state_dir, char **err);

#endif
