/*
 * junit.h - a JUnit XML report of a run, from its journal.
 */
#ifndef ZDM_REPORT_JUNIT_H
#define ZDM_REPORT_JUNIT_H

#include <stdbool.h>

#include "base/util.h"

/* --junit FILE from the journal of the run REF in store S (written
 * atomically: FILE.tmp, rename) */
struct runbook;
struct store;
int junit_write(const char *out, const struct runbook *rb, struct store *s, const char *ref,
    char **err);
/* XML 1.0 escaping of UTF-8 text into sb; characters XML cannot hold
 * (C0 controls but TAB LF CR, U+FFFE, U+FFFF) become U+FFFD */
void xml_escape(struct sbuf *sb, const char *s, bool attr);

#endif
