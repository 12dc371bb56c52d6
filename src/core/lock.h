/*
 * lock.h - one run at a time per runbook name and state dir.
 */
#ifndef ZDM_CORE_LOCK_H
#define ZDM_CORE_LOCK_H

/* Lock per runbook name in STATE_DIR/locks/NAME.lock (flock; released when
 * the process dies).  On contention err names holder pid, host and run. */
int lock_acquire(const char *state_dir, const char *name, const char *run_id,
    int *fd, char **err);
void lock_release(int fd);

#endif
