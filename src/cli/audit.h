/*
 * audit.h - the commands that read a state dir as an audit trail
 * (docs/audit.md):
 *
 *   zdm audit verify [JOURNAL... | STATE_DIR...]   check every hash chain
 *   zdm audit export [--state-dir D] [--since DATE] [--format json|csv]
 */
#ifndef ZDM_AUDIT_H
#define ZDM_AUDIT_H

#include <stdio.h>

#include <jansson.h>

/* `zdm log`: the provenance lines of a run.started record (CI identity,
 * git commit) printed under the header; prints nothing it does not have */
void audit_print_started(const json_t *data, FILE *out);

/* the command table's usage and help for `zdm audit` (main.c) */
extern const char audit_usage[], audit_help[];

/*
 * `zdm audit ...` with argv[0] the subcommand; parses its own options.
 * Exit codes (docs/audit.md): verify 0 every chain intact (incomplete runs
 * are listed, not failed), 1 a chain is broken, 2 usage or a journal that
 * cannot be read or checked (no key); export 0 (a broken chain is a row
 * with verified "broken", not a failure of the export), 2 usage.
 */
int audit_main(int argc, char **argv);

#endif
