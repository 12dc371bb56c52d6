/*
 * term.h - the terminal view of a run, an observer (core/observer.h): a
 * line per step as it ends, the running step's spinner and live state on
 * a terminal, colours unless NO_COLOR, the verdict and what to do next.
 * Text for people goes to stdout, or to stderr while stdout carries the
 * --output json stream; errors always to stderr.
 *
 * On a terminal (and TERM is not "dumb") every line fits its width: the
 * live line is cut, other lines fold.  Elsewhere the text is plain: no
 * colour, no control sequences, no spinner; a heartbeat line instead.
 */
#ifndef ZDM_REPORT_TERM_H
#define ZDM_REPORT_TERM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum term_level { TERM_QUIET = -1, TERM_NORMAL = 0, TERM_VERBOSE = 1 };

struct term_view {
	bool json;	/* stdout is the --output json stream */
	bool tty;	/* stdout is a terminal, TERM not dumb: the live line */
	bool color;	/* ... and NO_COLOR is not set (or empty) */
	enum term_level level;	/* -q: failures and the result; -v: command output too */
	bool timestamps;	/* --timestamps: each line starts with the UTC time */
	int64_t heartbeat_ms;	/* not on a terminal: a line this often while a
				 * step runs; 0 = none */
};

struct run_event;
/* heartbeat_ms < 0: the default (30 s, none with -q) */
void term_view_init(struct term_view *tv, bool json);
/* self: a struct term_view */
void term_view_observe(void *self, const struct run_event *ev);

/* for other views of a run (zdm status --watch): whether stdout gets the
 * live treatment, its width in columns, the display width of s (UTF-8,
 * escape sequences count 0) and the bytes of s that fit in cols columns */
bool term_is_live(int fd);
int term_cols(int fd);
size_t term_fit(const char *s, size_t cols, size_t *width);
/* "2026-12-05T03:04:05.678Z " into buf (at least 32 bytes) */
void term_stamp(char *buf, size_t n);

#endif
