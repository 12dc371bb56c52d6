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
char *redact_str(const char *s);	/* malloc'd copy with every secret -> "***" */
void redact_json(json_t *v);		/* in place: every string (and key) */
void redact_reset(void);

#endif
