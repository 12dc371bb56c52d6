/*
 * test_html.c - unit checks for src/report/html.c: the bound a metric_gate
 * condition draws as a line, and a page that refuses to inline a script or
 * style that would close its own element.
 *
 * unit_html() prints one "ok - ..." / "not ok - ..." line per check and
 * returns the number of failed checks.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "core/journal.h"
#include "core/runstate.h"
#include "report/html.h"

int unit_html(void);

static int failed;

static void
check(bool cond, const char *what)
{
	if (cond) {
		printf("ok - html: %s\n", what);
		return;
	}
	failed++;
	printf("not ok - html: %s\n", what);
}

static bool
bound(const char *cond, double want)
{
	double v = NAN;

	return html_bound(cond, &v) == 0 && fabs(v - want) < 1e-12;
}

static void
bounds(void)
{
	double v;

	check(bound("result < 0.05", 0.05) && bound("result<=1", 1) && bound("  result >= -2.5  ", -2.5) &&
	    bound("result > 1e3", 1000), "result OP NUMBER: the number");
	check(bound("0.1 <= result", 0.1) && bound("5>result", 5), "NUMBER OP result: the number");
	check(html_bound("result == 1", &v) != 0 && html_bound("result < 0.05 and result > 0", &v) != 0 &&
	    html_bound("result[1] < 2", &v) != 0 && html_bound("results < 2", &v) != 0 &&
	    html_bound("result < x", &v) != 0 && html_bound("result < 1 ", &v) == 0 &&
	    html_bound("", &v) != 0 && html_bound(NULL, &v) != 0 && html_bound("result < nan", &v) != 0,
	    "anything but one comparison of result with a number: no bound");
}

static void
assets(void)
{
	json_error_t e;
	json_t *rec = json_loads("{\"seq\":1,\"run\":\"R1\",\"event\":\"run.started\","
	    "\"ts\":\"2026-11-01T10:00:00.000Z\",\"data\":{\"name\":\"n\",\"actor\":{\"login\":\"a\"}}}", 0, &e);
	struct jlog log = { .recs = &rec, .n = 1 };
	struct runstate st;
	struct html_run r = { .log = &log, .st = &st, .ref = "j", .status = "running", .live = true,
	    .verdict = "ok", .refresh = 5, .now = "2026-11-01T10:00:01.000Z" };
	struct html_assets a = { "var x = 1;", ".u{}", "var y = '</SCRIPT>';", "p{}", "1.6.32" };
	char *err = NULL, *page;

	runstate_fold(&log, &st, NULL);
	page = html_page(&r, &a, &err);
	check(page == NULL && err != NULL && strstr(err, "cannot be inlined") != NULL,
	    "a script holding </script> is refused");
	free(err);
	err = NULL;
	a.page_js = "var y = '<\\/script>';";
	page = html_page(&r, &a, &err);
	check(page != NULL && strstr(page, "<meta http-equiv=\"refresh\" content=\"5\">") != NULL &&
	    strstr(page, "script-src 'sha256-") != NULL && strstr(page, "in progress") != NULL,
	    "a live run's page: the refresh, the scripts' hashes, in progress");
	free(page);
	runstate_release(&st);
	json_decref(rec);
}

int
unit_html(void)
{
	failed = 0;
	bounds();
	assets();
	return failed;
}
