/*
 * redact.h - secrets never leave zdm in clear: every registered secret
 * value is replaced by "***" in what zdm journals, prints or sends.
 */
#ifndef ZDM_BASE_REDACT_H
#define ZDM_BASE_REDACT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

void redact_add(const char *secret);	/* copies; empty strings ignored */
bool redact_active(void);
size_t redact_maxlen(void);		/* length of the longest secret */
/* cut a trailing piece that begins a secret (text cut short); new length */
size_t redact_tail(char *s, size_t len);
/* a malloc'd copy with every secret -> "***" */
char *redact_str(const char *s);
/* the same over n bytes that may hold NULs (a NUL never hides what follows
 * it); *outlen (if not NULL) gets the result's length; NUL-terminated too */
char *redact_strn(const char *s, size_t n, size_t *outlen);
/* in place: every string (by its length) and key, and every number equal
 * to a secret, which becomes the string "***" (inside an array or object;
 * a bare number at the top is left as it is) */
void redact_json(json_t *v);
void redact_reset(void);

#endif
