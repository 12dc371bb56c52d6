/*
 * cmd_status.c - zdm status: where a run stands, from its journal and lock;
 * as text, as one JSON document (--output json), or followed live until
 * the run ends (--watch), for a run that a zdm elsewhere (another terminal,
 * a CI job) is running.
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
#include "report/term.h"
#include "steps/builtin.h"
#include "zdm/step.h"

void
run_seen_release(struct run_seen *v)
{
	if (v->folded)
		runstate_release(&v->st);
	jlog_release(&v->log);
	free(v->holder);
	memset(v, 0, sizeof *v);
}

void
run_seen_fold(struct store *s, struct run_seen *v)
{
	bool open;

	runstate_fold(&v->log, &v->st, NULL);	/* what it can tell, replayable or not */
	v->folded = true;
	open = v->st.outcome == RS_RUNNING || v->st.outcome == RS_ROLLING_BACK;
	if (open) {
		v->held = store_locked(s, v->st.name, &v->pid, &v->holder);
		if (v->held && v->holder != NULL && v->st.run_id != NULL &&
		    strcmp(v->holder, v->st.run_id) != 0)
			v->held = false;	/* another run of the runbook holds it */
	}
	switch (v->st.outcome) {
	case RS_RUNNING:
	case RS_ROLLING_BACK:
		if (v->held) {
			v->status = v->st.outcome == RS_RUNNING ? "running" : "rolling_back";
		} else {
			v->over = true;
			v->status = runstate_in_doubt(&v->st) > 0 ? "in_doubt" : "stale";
			v->exit = runstate_in_doubt(&v->st) > 0 ? ZDM_EXIT_IN_DOUBT : ZDM_EXIT_PAUSED;
		}
		break;
	case RS_PAUSED:
	case RS_INTERRUPTED:
		v->over = true;
		v->status = v->st.outcome == RS_PAUSED ? "paused" : "interrupted";
		v->exit = ZDM_EXIT_PAUSED;
		break;
	case RS_FINISHED:
		v->over = true;
		v->status = v->st.status != NULL ? v->st.status : "?";
		v->exit = json_is_integer(v->st.exit_code) ? (int)json_integer_value(v->st.exit_code) :
		    strcmp(v->status, "succeeded") == 0 ? ZDM_EXIT_OK : ZDM_EXIT_NEEDS_PERSON;
		break;
	}
}

/* read and fold the journal; -1 after saying why */
static int
look(struct store *s, const char *jp, struct run_seen *v, bool quiet)
{
	char *err = NULL;

	memset(v, 0, sizeof *v);
	if (store_read(s, jp, &v->log, &err) != 0 || v->log.n == 0) {
		if (!quiet)
			fprintf(stderr, "zdm status: %s\n", err ? err : "empty journal");
		free(err);
		jlog_release(&v->log);
		return -1;
	}
	run_seen_fold(s, v);
	return 0;
}

/* the text view: as zdm status always printed it */
static void
text(const struct run_seen *v, const char *jp, struct sbuf *b)
{
	const struct runstate *st = &v->st;
	char *m;

	sb_addf(b, "run      %s\nrunbook  %s (%s)\nstate    %s", st->run_id, st->name, st->runbook,
	    runstate_word(st));
	if (st->outcome == RS_RUNNING || st->outcome == RS_ROLLING_BACK) {
		if (v->held && st->wait.step != NULL && st->wait.decision == EV_UNKNOWN)
			/* --wait-for-approval: zdm approve lets it go on */
			sb_addf(b, " — a zdm process holds the lock: waiting (until %s) for approval of "
			    "step '%s': zdm approve %s %s", st->wait.until ? st->wait.until : "?",
			    st->wait.step, st->run_id, st->wait.step);
		else if (v->held)
			sb_addf(b, " — a zdm process holds the lock: running");
		else
			sb_addf(b, " — no zdm process holds the lock: it stopped (crash?); zdm resume %s or "
			    "zdm rollback %s", st->run_id, st->run_id);
	}
	if (st->outcome == RS_PAUSED && st->pause.waiting_for != NULL && st->pause.step != NULL) {
		/* an approval: who is it waiting for, or what was decided */
		const char *ps = st->pause.step, *by = st->pause.decided_by;

		if (st->pause.decision == EV_UNKNOWN)
			sb_addf(b, " — waiting for approval of step '%s': zdm approve %s %s, then zdm resume %s",
			    ps, st->run_id, ps, st->run_id);
		else
			sb_addf(b, " — step '%s' %s by %s: zdm resume %s", ps,
			    st->pause.decision == EV_APPROVAL_GRANTED ? "approved" : "denied",
			    by ? by : "?", st->run_id);
	}
	sb_addf(b, "\njournal  %s (%zu records)\n", jp, v->log.n);
	/* each step's last event, in the order the journal first names them */
	for (size_t i = 0; i < st->nsteps; i++) {
		const struct rs_step *p = &st->steps[i];

		if (p->last_event == NULL)
			continue;
		sb_addf(b, "  %-24s %s", p->id, p->last_event);
		if (p->undo == RS_UNDO_SUCCEEDED || p->undo == RS_UNDO_SKIPPED)
			sb_addf(b, " (%s)", rs_undone_text(p->undone) ? rs_undone_text(p->undone) : "?");
		sb_addf(b, "\n");
	}
	/* a rollback that left changes in place, as the run's end said it */
	if ((m = left_summary(st)) != NULL)
		sb_addf(b, "%s\n", m);
	free(m);
}

static const char *
phase_word(const struct rs_step *s)
{
	switch (s->phase) {
	case RS_PENDING: return "pending";
	case RS_STARTED: return "started";
	case RS_SUCCEEDED: return "succeeded";
	case RS_FAILED: return "failed";
	case RS_SKIPPED: return "skipped";
	}
	return "?";
}

static const char *
undo_word(enum rs_undo u)
{
	switch (u) {
	case RS_UNDO_NONE: return NULL;
	case RS_UNDO_STARTED: return "started";
	case RS_UNDO_SUCCEEDED: return "succeeded";
	case RS_UNDO_FAILED: return "failed";
	case RS_UNDO_SKIPPED: return "skipped";
	}
	return NULL;
}

static json_t *
jstr_or_null(const char *s)
{
	return s != NULL ? json_string(s) : json_null();
}

/* --output json: one document (zdm(1) "zdm status --output json") */
static json_t *
doc(const struct run_seen *v, const char *jp)
{
	const struct runstate *st = &v->st;
	json_t *d = json_object(), *steps = json_array(), *lock = json_null();

	json_object_set_new(d, "run", jstr_or_null(st->run_id));
	json_object_set_new(d, "runbook", jstr_or_null(st->name));
	json_object_set_new(d, "file", jstr_or_null(st->runbook));
	json_object_set_new(d, "status", json_string(v->status));
	json_object_set_new(d, "dry_run", json_boolean(st->dry_run));
	json_object_set_new(d, "started", jstr_or_null(st->started));
	json_object_set_new(d, "ended", jstr_or_null(st->ended_at));
	json_object_set_new(d, "exit_code", v->over ? json_integer(v->exit) : json_null());
	if (v->held) {
		lock = json_object();
		json_object_set_new(lock, "pid", json_integer(v->pid));
	}
	json_object_set_new(d, "lock", lock);
	json_object_set_new(d, "failed_step", jstr_or_null(st->failed_step));
	json_object_set_new(d, "error", jstr_or_null(st->failure));
	if (st->outcome == RS_PAUSED && st->pause.step != NULL) {
		json_t *p = json_pack("{s:s}", "step", st->pause.step);

		json_object_set_new(p, "waiting_for", jstr_or_null(st->pause.waiting_for));
		json_object_set_new(p, "error", jstr_or_null(st->pause.error));
		json_object_set_new(d, "paused", p);
	} else {
		json_object_set_new(d, "paused", json_null());
	}
	json_object_set_new(d, "journal", json_string(jp));
	json_object_set_new(d, "records", json_integer((json_int_t)v->log.n));
	for (size_t i = 0; i < st->nsteps; i++) {
		const struct rs_step *s = &st->steps[i];
		json_t *o = json_pack("{s:s,s:s,s:I,s:b}", "id", s->id, "phase", phase_word(s),
		    "attempt", (json_int_t)s->attempt, "in_doubt", rs_step_in_doubt(s));

		json_object_set_new(o, "last_event", jstr_or_null(s->last_event));
		json_object_set_new(o, "duration_ms", json_integer(s->ms));
		json_object_set_new(o, "error", jstr_or_null(s->error));
		json_object_set_new(o, "undo", jstr_or_null(undo_word(s->undo)));
		json_array_append_new(steps, o);
	}
	json_object_set_new(d, "steps", steps);
	return d;
}

/* a journal record as one line of the followed run (not a terminal) */
static void
record_line(const json_t *rec, bool stamps, struct sbuf *b)
{
	const char *ev = json_string_value(json_object_get(rec, "event"));
	const char *step = json_string_value(json_object_get(rec, "step"));
	const char *ts = json_string_value(json_object_get(rec, "ts"));
	const json_t *data = json_object_get(rec, "data");
	const char *why = json_string_value(json_object_get(data, "error"));
	const char *status = json_string_value(json_object_get(data, "status"));

	if (stamps && ts != NULL)
		sb_addf(b, "%s ", ts);
	sb_addf(b, "%s%s%s%s%s%s%s\n", ev ? ev : "?", step ? " " : "", step ? step : "",
	    status ? " " : "", status ? status : "", why ? ": " : "", why ? why : "");
}

/* --watch: the journal, looked at again every 250 ms, until the run is over */
static int
watch(const struct cli *c, struct store *s, const char *jp)
{
	static const char *const spin[] = { "|", "/", "-", "\\" };
	bool live = term_is_live(STDOUT_FILENO);
	size_t shown = 0, drawn = 0;
	int frame = 0;

	for (;;) {
		struct run_seen v;
		struct sbuf b;

		if (look(s, jp, &v, false) != 0)
			return ZDM_EXIT_USAGE;
		sb_init(&b);
		if (live) {
			size_t cols = (size_t)term_cols(STDOUT_FILENO), n = 0;
			const char *p;

			text(&v, jp, &b);
			if (!v.over)
				sb_addf(&b, "%s watching: %s\n", spin[frame++ % 4], v.status);
			/* back to the top of the last drawing, then each line over
			 * its old self, cut to the width so none wraps */
			if (drawn > 0)
				printf("\r\033[%zuA", drawn);
			for (p = b.buf; *p != '\0'; n++) {
				const char *nl = strchr(p, '\n');
				char *line = xstrndup(p, nl ? (size_t)(nl - p) : strlen(p));
				size_t cut = term_fit(line, cols > 1 ? cols - 1 : 1, NULL);

				fwrite(line, 1, cut, stdout);
				fputs("\033[K\n", stdout);
				free(line);
				p = nl ? nl + 1 : p + strlen(p);
			}
			fputs("\033[J", stdout);
			drawn = n;
		} else {
			for (; shown < v.log.n; shown++)
				record_line(v.log.recs[shown], c->timestamps, &b);
			fputs(b.buf, stdout);
		}
		fflush(stdout);
		sb_release(&b);
		if (v.over) {
			int rc = v.exit;
			char ts[40] = "";

			if (c->timestamps)
				term_stamp(ts, sizeof ts);
			printf("%srun %s: %s (exit %d)\n", ts, v.st.run_id, v.status, rc);
			run_seen_release(&v);
			return rc;
		}
		run_seen_release(&v);
		if (zdm_sleep_ms(250) != 0)
			return 128 + (int)zdm_interrupted;
	}
}

int
cmd_status(const struct cmd *cmd, struct cli *c)
{
	char *jp;
	struct store *s;
	struct run_seen v;
	int rc = ZDM_EXIT_OK;

	if (c->watch && c->json_output) {
		fprintf(stderr, "zdm status: --watch and --output json: give one (--output json is "
		    "the state now, once)\n");
		return ZDM_EXIT_USAGE;
	}
	if (c->timestamps && !c->watch) {
		fprintf(stderr, "zdm status: --timestamps goes with --watch\n");
		return ZDM_EXIT_USAGE;
	}
	s = find_run(c, c->argc ? c->argv[0] : NULL, cmd->name, &jp);
	if (s == NULL)
		return ZDM_EXIT_USAGE;
	if (c->watch) {
		rc = watch(c, s, jp);
	} else if (look(s, jp, &v, false) != 0) {
		rc = ZDM_EXIT_USAGE;
	} else {
		if (c->json_output) {
			json_t *d = doc(&v, jp);
			char *t = json_dumps(d, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
			char *r = redact_str(t);

			printf("%s\n", r);
			free(r);
			free(t);
			json_decref(d);
		} else {
			struct sbuf b;

			sb_init(&b);
			text(&v, jp, &b);
			fputs(b.buf, stdout);
			sb_release(&b);
		}
		run_seen_release(&v);
	}
	free(jp);
	store_close(s);
	return rc;
}
