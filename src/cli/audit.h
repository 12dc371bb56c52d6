/*
 * audit.h - who ran what, from which file and commit, and the commands that
 * read a state dir as an audit trail (docs/audit.md):
 *
 *   zdm audit verify [JOURNAL... | STATE_DIR...]   check every hash chain
 *   zdm audit export [--state-dir D] [--since DATE] [--format json|csv]
 */
#ifndef ZDM_AUDIT_H
#define ZDM_AUDIT_H

#include <stdio.h>

#include <jansson.h>

/*
 * The actor of a run (run.started, run.resumed): a new object (caller owns)
 * with login and uid (from the password database), host, pid, "who" (the
 * best single name: ZDM_ACTOR, else the CI's user, else SUDO_USER, else
 * login), "ci" (the CI system's name when one is recognised) and every
 * variable of audit_env_vars that is set and non-empty, under its own name.
 */
json_t *audit_actor(void);

/* that "who" alone, malloc'd: the one name approvals and zdm approve use */
char *audit_who(void);

/* the environment variables audit_actor records, NULL-terminated (the list
 * is documented in docs/audit.md and zdm(1)) */
extern const char *const audit_env_vars[];

/*
 * Provenance of a runbook file, added to run.started's data `d`:
 *   "host": this machine's name,
 *   "git": {"commit": HEAD (40 hex), "runbook": "clean" | "modified" |
 *           "untracked", "root": the work tree} when the file is inside a git
 *   work tree and git can be run (each git call is cut off after 5 s);
 *   nothing when it is not (no git, not a repository).
 */
void audit_provenance(json_t *d, const char *abspath);

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
