/*
 * cmd_report.c - zdm report [RUN_ID | RUNBOOK | JOURNAL] --html FILE
 * [--refresh N]: the run as one self-contained HTML page (report/html.c).
 *
 * The run is found as zdm status and zdm log find it (find_run, --state,
 * --state-dir); its records are read as zdm audit verify reads them
 * (audit_read: the chain checked, its verdict in the page) and folded as
 * zdm status folds them (run_seen_fold: where it stands, whether a zdm
 * still holds it).  The page goes to a temporary file beside FILE, which is
 * then renamed over FILE: FILE is the whole page, or what it was before.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fsio.h"
#include "base/util.h"
#include "cli/cli.h"
#include "cli/embedded.h"
#include "core/store.h"
#include "report/html.h"

/* TEXT to PATH through a temporary file in its directory, renamed over it;
 * -1 and *err, nothing left behind */
static int
write_replace(const char *path, const char *text, char **err)
{
	const char *base = strrchr(path, '/');
	char *dir = path_dirname(path), *tmp;
	mode_t mask = umask(0);
	int fd;

	umask(mask);
	base = base != NULL ? base + 1 : path;
	tmp = xasprintf("%s/.%s.zdm-XXXXXX", dir, base);
	free(dir);
	if ((fd = mkstemp(tmp)) < 0) {
		seterr(err, "cannot write '%s': %s", path, strerror(errno));
		free(tmp);
		return -1;
	}
	/* as a file made by open(2) would be: 0666 less the umask */
	if (fchmod(fd, 0666 & ~mask) != 0 || write_all(fd, text, strlen(text)) != 0 ||
	    fullsync(fd) != 0) {
		seterr(err, "cannot write '%s': %s", path, strerror(errno));
		close(fd);
		unlink(tmp);
		free(tmp);
		return -1;
	}
	if (close(fd) != 0 || rename(tmp, path) != 0) {
		seterr(err, "cannot write '%s': %s", path, strerror(errno));
		unlink(tmp);
		free(tmp);
		return -1;
	}
	free(tmp);
	return 0;
}

/* a built-in file's text less its last newline (malloc'd), or NULL */
static char *
builtin_line(const char *path)
{
	const char *t = embedded_text(path);
	size_t n = t != NULL ? strcspn(t, "\n") : 0;

	return t != NULL ? xstrndup(t, n) : NULL;
}

int
cmd_report(const struct cmd *cmd, struct cli *c)
{
	struct run_seen v;
	struct html_assets a;
	struct html_run hr;
	struct store *s;
	char *ref = NULL, *verdict = NULL, *page, *err = NULL, now[40];
	int verified, rc = ZDM_EXIT_USAGE;

	if (c->html == NULL) {
		fprintf(stderr, "zdm report: --html FILE is needed: the page to write (zdm report --help)\n");
		return ZDM_EXIT_USAGE;
	}
	s = find_run(c, c->argc ? c->argv[0] : NULL, cmd->name, &ref);
	if (s == NULL)
		return ZDM_EXIT_USAGE;
	memset(&v, 0, sizeof v);
	verified = audit_read(s, ref, &v.log, &verdict);
	if (v.log.n == 0) {
		fprintf(stderr, "zdm report: %s: no record to report%s%s\n", ref,
		    verified != 0 ? ": " : "", verified != 0 ? verdict : "");
		goto out;
	}
	run_seen_fold(s, &v);
	if (verified != 0)
		fprintf(stderr, "zdm report: warning: %s: the hash chain %s: %s; the report shows what "
		    "its records claim, and says so\n", ref, verified == 1 ? "is broken" :
		    "cannot be checked", verdict);
	now_iso8601(now, sizeof now);
	memset(&hr, 0, sizeof hr);
	hr.log = &v.log;
	hr.st = &v.st;
	hr.ref = ref;
	hr.status = v.status;
	hr.live = !v.over;
	hr.verified = verified;
	hr.verdict = verdict;
	hr.refresh = c->refresh;
	hr.now = now;
	a.chart_js = embedded_text("vendor/uplot/uPlot.iife.min.js");
	a.chart_css = embedded_text("vendor/uplot/uPlot.min.css");
	a.page_js = embedded_text("src/report/html.js");
	a.page_css = embedded_text("src/report/html.css");
	a.chart_version = builtin_line("vendor/uplot/VERSION");
	page = html_page(&hr, &a, &err);
	free((char *)a.chart_version);
	if (page == NULL || write_replace(c->html, page, &err) != 0) {
		fprintf(stderr, "zdm report: %s\n", err);
		free(err);
		free(page);
		goto out;
	}
	free(page);
	printf("wrote %s: run %s, %s\n", c->html, v.st.run_id ? v.st.run_id : "?", v.status);
	if (hr.live && c->refresh > 0)
		printf("  in progress: the page reloads every %d s; run this again to bring it up to "
		    "date (a loop, watch -n %d)\n", c->refresh, c->refresh);
	rc = ZDM_EXIT_OK;
out:
	run_seen_release(&v);
	free(verdict);
	free(ref);
	store_close(s);
	return rc;
}
