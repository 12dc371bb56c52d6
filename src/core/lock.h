/*
 * lock.h - one run at a time per runbook name and state dir.
 */
#ifndef ZDM_CORE_LOCK_H
#define ZDM_CORE_LOCK_H

#include <stdbool.h>

#include <jansson.h>

/* Lock per runbook name in STATE_DIR/locks/NAME.lock (flock; released when
 * the process dies); its content is the holder's record, one JSON object:
 * pid, host, actor, run, since.  0 when taken; 1 on contention, with err
 * naming the holder's pid, host and run; -1 and err otherwise. */
int lock_acquire(const char *state_dir, const char *name, const char *run_id,
    int *fd, char **err);
void lock_release(int fd);
/* the lock fd holds is still the file at STATE_DIR/locks/NAME.lock: -1 with
 * *err when the file was removed or replaced (another run may hold the new
 * one); a run checks this before each step */
int lock_still_held(int fd, const char *state_dir, const char *name, char **err);
/* Does a live zdm hold NAME's lock?  When it does, *pid and *run (malloc'd)
 * name the holder if its record says (else 0 and NULL). */
bool lock_held(const char *state_dir, const char *name, long *pid, char **run);
/* zdm lock status: *held when a live zdm holds NAME's lock, and *holder
 * (caller decrefs) the record in the lock file: the holder's, or when not
 * held one a holder that died left (a clean release empties it); NULL when
 * there is none.  -1 for a name that cannot name a lock file. */
int lock_inspect(const char *state_dir, const char *name, bool *held, json_t **holder);

#endif
