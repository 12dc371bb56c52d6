/*
 * term.h - the terminal view of a run, an observer (core/observer.h): a
 * line per step as it ends, the running step's spinner and live state on
 * a terminal, colours unless NO_COLOR, the verdict and what to do next.
 * Text for people goes to stdout, or to stderr while stdout carries the
 * --output json stream; errors always to stderr.
 */
#ifndef ZDM_REPORT_TERM_H
#define ZDM_REPORT_TERM_H

#include <stdbool.h>

struct term_view {
	bool json;	/* stdout is the --output json stream */
	bool tty;	/* stdout is a terminal: the spinner */
	bool color;	/* ... and NO_COLOR is not set */
};

struct run_event;
void term_view_init(struct term_view *tv, bool json);
/* self: a struct term_view */
void term_view_observe(void *self, const struct run_event *ev);

#endif
