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
#include "core/runstate.h"
#include "core/store.h"
#include "report/ci.h"
#include "report/notify.h"
#include "report/plan_json.h"
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
	case RUN_LEFT_IN_PLACE: return ZDM_EXIT_LEFT_IN_PLACE;
	}
	return ZDM_EXIT_NEEDS_PERSON;
}

/* who hears what a run does, as the options ask (observer.h) */
struct sinks {
	struct observer list[5];
	struct term_view term;
	struct notify_sink notify;
	struct plan_json plan;
};

static void
sinks_init(struct sinks *k, const struct cli *c, struct runbook *rb, struct run_opts *o)
{
	size_t n = 0;

	memset(k, 0, sizeof *k);
	if (o->mode == MODE_PLAN && c->json_output) {
		/* zdm plan --output json: one document, no text */
		k->list[n++] = (struct observer){ plan_json_observe, &k->plan };
		o->observers = k->list;
		o->nobservers = n;
		return;
	}
	/* an annotation comes before the text it goes with */
	if (ci_github())
		k->list[n++] = (struct observer){ ci_annotations_observe, NULL };
	term_view_init(&k->term, c->json_output);
	k->term.level = c->level < 0 ? TERM_QUIET : c->level > 0 ? TERM_VERBOSE : TERM_NORMAL;
	k->term.timestamps = c->timestamps;
	k->term.heartbeat_ms = c->heartbeat_ms >= 0 ? c->heartbeat_ms : c->level < 0 ? 0 : 30000;
	k->list[n++] = (struct observer){ term_view_observe, &k->term };
	if (c->json_output)
		k->list[n++] = (struct observer){ ci_json_observe, c->level > 0 ? (void *)k : NULL };
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
	struct registry *reg = new_registry(c, c->argv[0], &pp);
	struct runbook *rb = load(c, c->argv[0], reg);
	int rc = ZDM_EXIT_USAGE;

	if (rb != NULL) {
		/* not an error: a step may change things nobody can undo, but
		 * whoever runs it should know before a rollback leaves it */
		for (size_t i = 0; i < rb->nsteps; i++) {
			const struct rb_step *s = &rb->steps[i];

			if (s->undo_kind == RB_NOT_UNDONE)
				fprintf(stderr, "%s:%d:%d: warning: step '%s' changes things and has no undo: "
				    "a rollback leaves its change in place (add undo:, or accept that)\n",
				    rb->path, s->node->line, s->node->col, s->id);
		}
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
	struct registry *reg = new_registry(c, c->argv[0], &pp);
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
		char *copies = runbook_copies_of(rb, c->fail_at);

		for (size_t i = 0; i < rb->nsteps; i++)
			ids[i] = rb->steps[i].id;
		s = did_you_mean(c->fail_at, ids);
		if (copies != NULL)	/* a step under for_each: is its copies */
			fprintf(stderr, "zdm run: --fail-at '%s': for_each made it the steps %s: "
			    "name one\n", c->fail_at, copies);
		else
			fprintf(stderr, "zdm run: --fail-at '%s': no such step in %s%s%s%s\n",
			    c->fail_at, c->argv[0], s ? " (did you mean '" : "", s ? s : "",
			    s ? "'?)" : "");
		free(copies);
		free(ids);
		goto out;
	}
	s = state_open(c, c->argv[0], cmd->name);
	if (s == NULL)
		goto out;
	o.store = s;
	o.state_dir = s->dir;
	o.state_timeout_ms = state_timeout(c);
	sinks_init(&sinks, c, rb, &o);
	rc = exit_code(runner_run(rb, &o));
	if (o.mode != MODE_PLAN)
		state_remember(s);
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
 * A bare `zdm rollback` takes the newest run: when that run succeeded, undo
 * it only with --yes, or when the person at the terminal says y.  0: go on;
 * -1 after saying why not.
 */
static int
confirm_bare_rollback(const struct cli *c, const struct jlog *log)
{
	struct runstate st;
	char line[64];
	int rc = 0;

	runstate_fold(log, &st, NULL);
	if (c->yes || st.outcome != RS_FINISHED || !st.ended || st.status == NULL ||
	    strcmp(st.status, "succeeded") != 0) {
		runstate_release(&st);
		return 0;
	}
	if (!interactive(c)) {
		fprintf(stderr, "zdm rollback: the newest run, %s of runbook '%s', succeeded%s%s; "
		    "to undo it, say so: zdm rollback --yes, or name the run: zdm rollback %s; nothing done\n",
		    st.run_id ? st.run_id : "?", st.name ? st.name : "?", st.ended_at ? " at " : "",
		    st.ended_at ? st.ended_at : "", st.run_id ? st.run_id : "RUN_ID");
		runstate_release(&st);
		return -1;
	}
	fprintf(stderr, "zdm rollback: the newest run, %s of runbook '%s', succeeded%s%s.\n"
	    "Undo its steps? [y/N] ", st.run_id ? st.run_id : "?", st.name ? st.name : "?",
	    st.ended_at ? " at " : "", st.ended_at ? st.ended_at : "");
	fflush(stderr);
	if (fgets(line, sizeof line, stdin) == NULL ||
	    (strcmp(line, "y\n") != 0 && strcmp(line, "yes\n") != 0 &&
	    strcmp(line, "Y\n") != 0 && strcmp(line, "y") != 0)) {
		fprintf(stderr, "zdm rollback: not rolled back; nothing done\n");
		rc = -1;
	}
	runstate_release(&st);
	return rc;
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
	if (strcmp(cmd->name, "rollback") == 0 && c->argc == 0 && confirm_bare_rollback(c, &log) != 0)
		goto out;
	test_pause_after_read();
	rbpath = json_string_value(json_object_get(json_object_get(log.recs[0], "data"), "runbook"));
	if (rbpath == NULL) {
		fprintf(stderr, "zdm %s: %s:1: run.started does not name its runbook\n", cmd->name, jp);
		goto out;
	}
	if (c->argc && is_runbook_path(c->argv[0]))
		rbpath = c->argv[0];
	reg = new_registry(c, rbpath, &pp);
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
	o.state_timeout_ms = state_timeout(c);
	ci_opts(&o, c);
	if (check_approve(cmd->name, c, rb) != 0 || check_in_doubt(cmd->name, c, rb) != 0)
		goto out;
	sinks_init(&sinks, c, rb, &o);
	if (strcmp(cmd->name, "resume") == 0)
		rc = exit_code(runner_resume(rb, jp, &log, &o));
	else
		rc = exit_code(runner_rollback(rb, jp, &log, &o));
	state_remember(s);
out:
	jlog_release(&log);
	runbook_free(rb);
	registry_free(reg);
	plugin_path_free(pp);
	free(jp);
	store_close(s);
	return rc;
}
