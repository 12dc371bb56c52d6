/*
 * cmd_run.c - zdm validate, plan, run, resume and rollback: one code path
 * (the runner) with a mode, so a rehearsal cannot drift from the real run.
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
#include "core/store.h"
#include "report/ci.h"
#include "report/notify.h"
#include "report/term.h"
#include "steps/builtin.h"
#include "zdm/step.h"

/* the exit code of each outcome (zdm(1) EXIT STATUS) */
static int
exit_code(enum run_outcome oc)
{
	switch (oc) {
	case RUN_OK: return ZDM_EXIT_OK;
	case RUN_ROLLED_BACK: return ZDM_EXIT_ROLLED_BACK;
	case RUN_USAGE: return ZDM_EXIT_USAGE;
	case RUN_NEEDS_PERSON: return ZDM_EXIT_NEEDS_PERSON;
	case RUN_PAUSED: return ZDM_EXIT_PAUSED;
	case RUN_IN_DOUBT: return ZDM_EXIT_IN_DOUBT;
	}
	return ZDM_EXIT_NEEDS_PERSON;
}

/* who hears what a run does, as the options ask (observer.h) */
struct sinks {
	struct observer list[5];
	struct term_view term;
	struct notify_sink notify;
};

static void
sinks_init(struct sinks *k, const struct cli *c, struct runbook *rb, struct run_opts *o)
{
	size_t n = 0;

	memset(k, 0, sizeof *k);
	/* an annotation comes before the text it goes with */
	if (ci_github())
		k->list[n++] = (struct observer){ ci_annotations_observe, NULL };
	term_view_init(&k->term, c->json_output);
	k->term.level = c->level < 0 ? TERM_QUIET : c->level > 0 ? TERM_VERBOSE : TERM_NORMAL;
	k->term.timestamps = c->timestamps;
	k->term.heartbeat_ms = c->heartbeat_ms >= 0 ? c->heartbeat_ms : c->level < 0 ? 0 : 30000;
	k->list[n++] = (struct observer){ term_view_observe, &k->term };
	if (c->json_output)
		k->list[n++] = (struct observer){ ci_json_observe, NULL };
	if (o->mode == MODE_RUN && rb->nnotify > 0) {	/* not in a rehearsal */
		k->notify.rb = rb;
		k->list[n++] = (struct observer){ notify_observe, &k->notify };
	}
	if (c->junit != NULL)
		k->list[n++] = (struct observer){ ci_junit_observe, (void *)c->junit };
	o->observers = k->list;
	o->nobservers = n;
}

int
cmd_validate(const struct cmd *cmd, struct cli *c)
{
	char **pp;
	struct registry *reg = new_registry(c, &pp);
	struct runbook *rb = load(c, c->argv[0], reg);
	int rc = ZDM_EXIT_USAGE;

	if (rb != NULL) {
		printf("%s: ok (runbook '%s', %zu step%s)\n", c->argv[0], rb->name, rb->nsteps,
		    rb->nsteps == 1 ? "" : "s");
		rc = ZDM_EXIT_OK;
	}
	runbook_free(rb);
	registry_free(reg);
	plugin_path_free(pp);
	return rc;
}

int
cmd_run(const struct cmd *cmd, struct cli *c)
{
	char **pp;
	struct registry *reg = new_registry(c, &pp);
	struct runbook *rb = load(c, c->argv[0], reg);
	struct run_opts o;
	struct sinks sinks;
	struct store *s = NULL;
	int rc = ZDM_EXIT_USAGE;

	if (rb == NULL)
		goto out;
	memset(&o, 0, sizeof o);
	o.mode = strcmp(cmd->name, "plan") == 0 ? MODE_PLAN : c->dry_run ? MODE_DRY_RUN : MODE_RUN;
	o.fail_at = c->fail_at;
	o.exit_code = exit_code;
	ci_opts(&o, c);
	if (check_approve(cmd->name, c, rb) != 0)
		goto out;
	if (c->fail_at != NULL && runbook_step(rb, c->fail_at) == NULL) {
		const char **ids = xcalloc(rb->nsteps + 1, sizeof *ids);
		const char *s;

		for (size_t i = 0; i < rb->nsteps; i++)
			ids[i] = rb->steps[i].id;
		s = did_you_mean(c->fail_at, ids);
		fprintf(stderr, "zdm run: --fail-at '%s': no such step in %s%s%s%s\n", c->fail_at,
		    c->argv[0], s ? " (did you mean '" : "", s ? s : "", s ? "'?)" : "");
		free(ids);
		goto out;
	}
	s = state_open(c, c->argv[0], cmd->name);
	if (s == NULL)
		goto out;
	o.store = s;
	o.state_dir = s->dir;
	sinks_init(&sinks, c, rb, &o);
	rc = exit_code(runner_run(rb, &o));
out:
	store_close(s);
	runbook_free(rb);
	registry_free(reg);
	plugin_path_free(pp);
	return rc;
}

/* a recorded value that a secret was cut out of: never a value to use */
static bool
has_redacted(const json_t *v)
{
	char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
	bool yes = s != NULL && strstr(s, "***") != NULL;

	free(s);
	return yes;
}

/* resume and rollback: find the journal, load its runbook, hand over */
/*
 * Fault injection for the tests (like journal.c's ZDM_TEST_CRASH_AFTER_RECORD):
 * with ZDM_TEST_PAUSE_AFTER_READ=PATH, resume and rollback stop after reading
 * the journal, create PATH.waiting, and go on once PATH exists (30 s at most),
 * so a test can run another zdm in between.
 */
static void
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

int
cmd_continue(const struct cmd *cmd, struct cli *c)
{
	char *jp = NULL, *err = NULL, **pp = NULL;
	struct store *s;
	struct jlog log;
	struct registry *reg = NULL;
	struct runbook *rb = NULL;
	const char *rbpath;
	struct run_opts o;
	struct sinks sinks;
	int rc = ZDM_EXIT_USAGE;

	memset(&log, 0, sizeof log);
	s = find_run(c, c->argc ? c->argv[0] : NULL, cmd->name, &jp);
	if (s == NULL)
		return ZDM_EXIT_USAGE;
	if (store_read(s, jp, &log, &err) != 0) {
		fprintf(stderr, "zdm %s: the journal is damaged, so zdm cannot tell what ran: %s\n"
		    "  check it with: zdm audit verify %s\n", cmd->name, err, jp);
		free(err);
		goto out;
	}
	if (log.n == 0) {
		fprintf(stderr, "zdm %s: %s is empty: the run never started\n", cmd->name, jp);
		goto out;
	}
	test_pause_after_read();
	rbpath = json_string_value(json_object_get(json_object_get(log.recs[0], "data"), "runbook"));
	if (rbpath == NULL) {
		fprintf(stderr, "zdm %s: %s:1: run.started does not name its runbook\n", cmd->name, jp);
		goto out;
	}
	if (c->argc && is_runbook_path(c->argv[0]))
		rbpath = c->argv[0];
	reg = new_registry(c, &pp);
	/* the run's vars as it recorded them, unless overridden again */
	rb = load(c, rbpath, reg);
	if (rb == NULL)
		goto out;
	{
		json_t *vars = json_object_get(json_object_get(log.recs[0], "data"), "vars");
		const char *k;
		json_t *v;

		json_object_foreach(vars, k, v)
			if (json_object_get(rb->vars, k) != NULL && !has_redacted(v)) {
				bool flagged = false;

				for (size_t i = 0; i < c->nvars; i++)
					if (strncmp(c->vars[i], k, strlen(k)) == 0 && c->vars[i][strlen(k)] == '=')
						flagged = true;
				if (!flagged)
					json_object_set(rb->vars, k, v);
			}
		if (expr_set(rb->x, "vars", rb->vars, &err) != 0) {
			fprintf(stderr, "zdm %s: %s: %s\n", cmd->name, rbpath, err);
			free(err);
			goto out;
		}
	}
	memset(&o, 0, sizeof o);
	o.mode = MODE_RUN;
	o.in_doubt = c->in_doubt;
	o.answers = c->answers;
	o.nanswers = c->nanswers;
	o.allow_changed = c->allow_changed;
	o.exit_code = exit_code;
	o.store = s;
	o.state_dir = s->dir;
	ci_opts(&o, c);
	if (check_approve(cmd->name, c, rb) != 0 || check_in_doubt(cmd->name, c, rb) != 0)
		goto out;
	sinks_init(&sinks, c, rb, &o);
	if (strcmp(cmd->name, "resume") == 0)
		rc = exit_code(runner_resume(rb, jp, &log, &o));
	else
		rc = exit_code(runner_rollback(rb, jp, &log, &o));
out:
	jlog_release(&log);
	runbook_free(rb);
	registry_free(reg);
	plugin_path_free(pp);
	free(jp);
	store_close(s);
	return rc;
}
