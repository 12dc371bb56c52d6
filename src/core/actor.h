/*
 * actor.h - who ran what, from which file and commit (actor.c).
 */
#ifndef ZDM_CORE_ACTOR_H
#define ZDM_CORE_ACTOR_H

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

#endif
