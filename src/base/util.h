/*
 * util.h - allocation that never returns NULL, growable strings, durations,
 * paths and other small helpers every layer uses.
 *
 * Conventions (git/tmux style): functions return 0 on success and -1 on
 * failure, filling `char **err` with a malloc'd message (lowercase, no full
 * stop, subject quoted) that the caller frees.  Only the command line
 * (src/cli) turns errors into exit codes and prints them.
 */
#ifndef ZDM_BASE_UTIL_H
#define ZDM_BASE_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define ZDM_VERSION "0.1.0"

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t m);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap);
/* set *err (if err and *err is NULL: first error wins) and return -1 */
int seterr(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* growable string; buf is never NULL after sb_init */
struct sbuf {
	char *buf;
	size_t len, cap;
};
void sb_init(struct sbuf *sb);
void sb_add(struct sbuf *sb, const void *p, size_t n);
void sb_adds(struct sbuf *sb, const char *s);
void sb_addf(struct sbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_addc(struct sbuf *sb, char c);
char *sb_detach(struct sbuf *sb);	/* caller frees; sb is left empty (buf NULL): sb_init to reuse */
void sb_release(struct sbuf *sb);

/* "500ms" "30s" "5m" "1h" "1h30m" -> ms.  Returns -1 on a bad duration. */
int parse_duration(const char *s, int64_t *ms);
/* a JSON string of n bytes; invalid UTF-8 becomes U+FFFD; never NULL */
json_t *json_text(const char *s, size_t n);
/* 1234 -> "1.2s"; 61000 -> "1m1s"; out >= 32 bytes */
void fmt_duration(int64_t ms, char *out, size_t n);
/* wall clock, "2026-11-21T10:00:01.123Z"; out >= 32 bytes */
void now_iso8601(char *out, size_t n);
/* "2026-11-01" (midnight UTC) or an ISO-8601 / RFC 3339 time (no zone: UTC),
 * as --since takes it and the journal writes it -> ms since the epoch; -1
 * when it is not a date */
int parse_time(const char *s, int64_t *ms);
/* lowercase hex SHA-256 of a file (65 bytes out) */
int sha256_file(const char *path, char out[65], char **err);
/* base64 SHA-256 of n bytes (45 bytes out), as a Content-Security-Policy
 * hash source names an inline script */
void sha256_base64(const void *p, size_t n, char out[45]);
/* Levenshtein-based suggestion among candidates (NULL-terminated); NULL if none close */
const char *did_you_mean(const char *word, const char *const *cands);
/* mkdir -p */
int mkdir_p(const char *path, int mode);
char *path_join(const char *a, const char *b);
char *path_dirname(const char *p);
char *path_abs(const char *p);

#endif
