/*
 * audit_key.h - the journal chain's HMAC key, once journal_init_key() took
 * it (audit_key.c).
 */
#ifndef ZDM_CORE_AUDIT_KEY_H
#define ZDM_CORE_AUDIT_KEY_H

/* the key, or NULL when the chain is plain sha256 */
const char *audit_key(void);

/* Take the HMAC key from ZDM_AUDIT_KEY or ZDM_AUDIT_KEY_FILE (a file of
 * mode 0600 owned by this user) out of the environment, scrubbed from the
 * process's environment block, and onto the redaction list; call before
 * anything is spawned.  -1 with *err when both are set or the file is
 * unusable (the caller exits 2). */
int journal_init_key(char **err);
/* set (or with NULL clear) the HMAC key directly: tests */
void journal_set_audit_key(const char *key);

#endif
