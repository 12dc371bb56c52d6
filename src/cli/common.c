/*
 * common.c - what several commands share: loading a runbook and reporting
 * its errors (text, --output json events, CI annotations) and the registry.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/proc.h"
#include "base/redact.h"
#include "base/util.h"
#include "cli/cli.h"
#include "core/journal.h"
#include "core/registry.h"
#include "core/runner.h"
#include "core/runstate.h"
#include "report/ci.h"
#include "steps/builtin.h"
#include "zdm/step.h"

/* "FILE:LINE:COL: message" -> its parts (file and message malloc'd) */
/* set while the command's stdout is the --output json event stream */
bool json_stream;
/* the run id and how the command left the run, for the final JSON event */
char out_run_id[64], out_status[32];
json_t *out_left;

static void
split_diag(const char *m, char **file, int *line, int *col, char **msg)
{
	const char *p = m;

	*file = NULL;
	*line = *col = 0;
	*msg = NULL;
	/* the file name may hold ':'; find ":N:N: " */
	for (p = strchr(m, ':'); p != NULL; p = strchr(p + 1, ':')) {
		int l, c, n = 0;

		if (sscanf(p, ":%d:%d: %n", &l, &c, &n) == 2 && n > 0) {
			*file = xstrndup(m, (size_t)(p - m));
			*line = l;
			*col = c;
			*msg = xstrdup(p + n);
			return;
		}
	}
	*msg = xstrdup(m);
}

void
print_errors(struct yerrs *e)
{
	for (size_t i = 0; i < e->n; i++) {
		char *file, *msg;
		int line, col;

		fprintf(stderr, "%s\n", e->v[i].msg);
		split_diag(e->v[i].msg, &file, &line, &col, &msg);
		if (json_stream) {
			json_t *ev = json_pack("{s:s,s:s*,s:i,s:i,s:s}", "event", "validation.error",
			    "file", file, "line", line, "col", col, "message", msg);

			ci_emit(ev);
		}
		ci_annotate("error", file, line, col, "zdm: invalid runbook", msg);
		free(file);
		free(msg);
	}
	fprintf(stderr, "zdm: %zu error%s; nothing ran\n", e->n, e->n == 1 ? "" : "s");
}

/* the runbook's warnings (still valid, but worth a look), on stderr */
static void
print_warnings(struct yerrs *w)
{
	yerrs_sort(w);
	for (size_t i = 0; i < w->n; i++) {
		char *file, *msg;
		int line, col;

		fprintf(stderr, "%s\n", w->v[i].msg);
		split_diag(w->v[i].msg, &file, &line, &col, &msg);
		if (strncmp(msg, "warning: ", 9) == 0)
			memmove(msg, msg + 9, strlen(msg + 9) + 1);
		if (json_stream) {
			json_t *ev = json_pack("{s:s,s:s*,s:i,s:i,s:s}", "event", "validation.warning",
			    "file", file, "line", line, "col", col, "message", msg);

			ci_emit(ev);
		}
		ci_annotate("warning", file, line, col, "zdm: runbook warning", msg);
		free(file);
		free(msg);
	}
}

/* load and check a runbook; NULL after printing the errors; warnings are
 * printed either way */
struct runbook *
load(const struct cli *c, const char *path, struct registry *reg)
{
	struct yerrs w = { 0 };
	struct rb_opts o = { c->vars, c->nvars, c->vars_file, &w };
	struct yerrs e = { 0 };
	struct runbook *rb = runbook_load(path, reg, &o, &e);

	print_warnings(&w);
	yerrs_release(&w);
	if (rb == NULL) {
		print_errors(&e);
		yerrs_release(&e);
	} else {
		rb->warns = NULL;	/* w is gone */
	}
	return rb;
}

struct registry *
new_registry(const struct cli *c, const char *runbook, char ***path)
{
	*path = plugin_path_build(c->plugin_path, runbook);
	return registry_new((const char *const *)*path);
}

/* --non-interactive, implied without a terminal or with CI set */
bool
interactive(const struct cli *c)
{
	const char *ci = getenv("CI");

	return !c->non_interactive && (ci == NULL || *ci == '\0') &&
	    isatty(STDIN_FILENO) && isatty(STDERR_FILENO);
}

bool
run_grew(struct store *store, const char *ref, size_t n)
{
	struct jlog now;
	char *err = NULL;
	bool yes;

	memset(&now, 0, sizeof now);
	yes = store_read(store, ref, &now, &err) == 0 && now.n > n;
	free(err);
	jlog_release(&now);
	return yes;
}

void
no_such_step(const char *cmd, const char *flag, const char *id, const struct runbook *rb)
{
	char *copies = runbook_copies_of(rb, id);
	const char **ids, *s;

	if (copies != NULL) {	/* a step under for_each: is its copies */
		fprintf(stderr, "zdm %s: %s: for_each made it the steps %s: name one\n", cmd, flag,
		    copies);
		free(copies);
		return;
	}
	ids = xcalloc(rb->nsteps + 1, sizeof *ids);
	for (size_t i = 0; i < rb->nsteps; i++)
		ids[i] = rb->steps[i].id;
	s = did_you_mean(id, ids);
	fprintf(stderr, "zdm %s: %s: no such step in %s%s%s%s\n", cmd, flag, rb->path,
	    s ? " (did you mean '" : "", s ? s : "", s ? "'?)" : "");
	free(ids);
}

/* --approve STEP must name an approval step of the runbook */
int
check_approve(const char *cmd, const struct cli *c, struct runbook *rb)
{
	for (size_t i = 0; i < c->napprove; i++) {
		struct rb_step *s = runbook_step(rb, c->approve[i]);

		if (s == NULL) {
			char *flag = xasprintf("--approve '%s'", c->approve[i]);

			no_such_step(cmd, flag, c->approve[i], rb);
			free(flag);
			return -1;
		}
		if (s->type != &zdm_step_approval) {
			fprintf(stderr, "zdm %s: --approve '%s': step is not an approval in %s; name a step "
			    "that uses: approval\n", cmd, c->approve[i], rb->path);
			return -1;
		}
	}
	return 0;
}

/* each --in-doubt STEP=... names a step of RB; -1 after saying which not */
int
check_in_doubt(const char *cmd, const struct cli *c, struct runbook *rb)
{
	for (size_t k = 0; k < c->nanswers; k++) {
		char *flag;

		if (runbook_step(rb, c->answers[k].step) != NULL)
			continue;
		flag = xasprintf("--in-doubt %s=%s", c->answers[k].step,
		    c->answers[k].answer == IN_DOUBT_RETRY ? "retry" : "skip");
		no_such_step(cmd, flag, c->answers[k].step, rb);
		free(flag);
		return -1;
	}
	return 0;
}

/* the CI options of run, resume and rollback */
int64_t
state_timeout(const struct cli *c)
{
	return c->state_timeout_ms >= 0 ? c->state_timeout_ms : 30 * 1000;
}

void
ci_opts(struct run_opts *o, const struct cli *c)
{
	o->interactive = interactive(c);
	o->approve = c->approve;
	o->napprove = c->napprove;
	o->wait_approval_ms = c->wait_approval_ms;
	o->run_id_out = out_run_id;
	o->status_out = out_status;
	if (out_left == NULL)
		out_left = json_array();
	o->left_out = out_left;
	o->lock_wait_ms = c->lock_wait_ms;
}

/*
 * Fault injection for the tests (like journal.c's ZDM_TEST_CRASH_AFTER_RECORD):
 * with ZDM_TEST_PAUSE_AFTER_READ=PATH, resume and rollback stop after reading
 * the journal, and zdm approve once its writer is open, before it appends;
 * each creates PATH.waiting and goes on once PATH exists (30 s at most), so
 * a test can run another zdm in between.
 */
void
test_pause_after_read(void)
{
	const char *p = getenv("ZDM_TEST_PAUSE_AFTER_READ");
	char *w;
	FILE *f;

	if (p == NULL || *p == '\0')
		return;
	w = xasprintf("%s.waiting", p);
	if ((f = fopen(w, "w")) != NULL)
		fclose(f);
	for (int i = 0; i < 300 && access(p, F_OK) != 0; i++)
		zdm_sleep_ms(100);
	free(w);
}

/* a rollback that left changes in place, as the run's end said it
 * (malloc'd), or NULL when it left none */
char *
left_summary(const struct runstate *st)
{
	const char **ids;
	size_t n = runstate_left(st, &ids);
	char *m = n > 0 ? left_text(ids, n) : NULL;

	free(ids);
	return m;
}

void
left_line(const struct runstate *st)
{
	char *m = left_summary(st);

	if (m != NULL)
		printf("%s\n", m);
	free(m);
}
