/*
 * html.h - a run as one self-contained HTML page (zdm report RUN --html
 * FILE): its header (runbook, actor, host, outcome, times, the hash
 * chain's verdict), a timeline of its steps' attempts and undos, one chart
 * per gate of the gate's measurements against its threshold, and the
 * decisions taken (approvals, pause, abort, promote) with who and when.
 *
 * Everything the page needs is in it: the chart library's JS and CSS and
 * the page's own (html_assets, built into zdm), the data as JSON.  Its
 * Content-Security-Policy lets it load nothing else, so viewing it fetches
 * nothing.  Every text comes from the run's journal, which is redacted when
 * written; it is redacted again here (as the JUnit report does) and
 * escaped.  The page is returned, never printed: the command line writes it.
 */
#ifndef ZDM_REPORT_HTML_H
#define ZDM_REPORT_HTML_H

#include <stdbool.h>

#include <jansson.h>

#include "core/journal.h"
#include "core/runstate.h"

/* what the page inlines: uPlot's build and the page's own script and style */
struct html_assets {
	const char *chart_js, *chart_css;
	const char *page_js, *page_css;
	const char *chart_version;	/* "1.6.32" */
};

struct html_run {
	const struct jlog *log;		/* the run's records */
	const struct runstate *st;	/* folded from them */
	const char *ref;		/* where they are kept (a journal's path, pg:...) */
	const char *status;		/* where it stands, as zdm status says it: running,
					 * rolling_back, stale, in_doubt, paused, interrupted,
					 * or run.finished's status */
	bool live;			/* a zdm holds it: more records will come */
	int verified;			/* the chain: 0 intact, 1 broken, 2 not checked */
	const char *verdict;		/* in words (zdm audit verify's) */
	int refresh;			/* seconds between reloads while live; 0: none */
	const char *now;		/* when the page is written, UTC ISO-8601 */
};

/* the data the page draws (the JSON it holds): {run, start, end, live,
 * steps: [{id, uses, state, undo, spans: [...]}], marks, pauses, gates:
 * [{step, uses, x, series, thresholds, points}]}; times in ms since the
 * epoch.  New reference. */
json_t *html_data(const struct html_run *r);

/* the page (malloc'd), or NULL and *err when an asset cannot be inlined */
char *html_page(const struct html_run *r, const struct html_assets *a, char **err);

/* "result < 0.05" -> 0.05 (also "<=", ">", ">=", and "0.05 > result"):
 * the bound a metric_gate condition draws as a line; -1 when it is not
 * one comparison of result with a number */
int html_bound(const char *cond, double *v);

#endif
