/*
 * launch.c - the runner's entry points (runner.h): a new run, a dry run or a
 * plan, resume and rollback from the journal.  The steps run in execute.c,
 * the undos in rollback.c; every move is journaled before and after it happens.
 *
 * Write-ahead rules (docs/design.md, "The journal"):
 *   step.started is on disk before the step touches anything;
 *   step.succeeded, with the step's undo_data, is on disk before the next
 *   step starts.
 * So after a crash the journal alone says which steps finished (skip them,
 * with their recorded outputs), which one was in flight (in doubt: run again
 * only if idempotent, else ask), and what each undo must put back.
 *
 * Rollback undoes the steps that succeeded in reverse order of completion,
 * each from its recorded undo_data (or the runbook's own `undo:` step), and
 * journals every undo the same way, so a rollback cut short by a crash is
 * continued by `zdm rollback` without running any undo twice.
 *
 * It prints nothing: what happens goes to the observers of run_opts
 * (observer.h: the terminal, the JSON stream, annotations, webhooks), and
 * each command returns an outcome that src/cli turns into the exit code.
 */
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/proc.h"
#include "base/redact.h"
#include "base/util.h"
#include "core/actor.h"
#include "core/events.h"
#include "core/execute.h"
#include "core/journal.h"
#include "core/rollback.h"
#include "core/run.h"
#include "core/runner.h"
#include "core/runstate.h"
#include "core/store.h"
#include "zdm/step.h"

/* the store lost its connection, or got it back: tell the observers */
static void
state_news(const struct store_conn *c, void *arg)
{
	struct run_event ev = { .kind = c->kind == STORE_CONN_LOST ? OBS_STATE_LOST :
	    c->kind == STORE_CONN_RETRY ? OBS_STATE_RETRY : OBS_STATE_BACK };

	ev.state.place = c->place;
	ev.state.why = c->why;
	ev.state.timeout_ms = c->timeout_ms;
	ev.state.until = c->until;
	ev.state.ms = c->ms;
	ev.state.attempt = c->attempt;
	ev.state.locked = c->locked;
	run_emit(arg, &ev);
}

static json_t *
actor_json(void)
{
	return audit_actor();	/* audit.c */
}

/* the holder while this zdm waits for the run lock (--lock-timeout) */
static void
lock_waiting(const char *why, void *arg)
{
	const struct run *r = arg;
	struct run_event ev = { .kind = OBS_LOCK_WAIT };
	char d[32], *who = xstrdup(why), *cut = strstr(who, "; wait for");

	if (cut != NULL)
		*cut = '\0';	/* the advice: this zdm is the one waiting */
	fmt_duration(r->o->lock_wait_ms, d, sizeof d);
	ev.text = xasprintf("waiting up to %s for the run lock: %s", d, who);
	run_emit(r, &ev);
	free((char *)ev.text);
	free(who);
}

/* the runbook's run lock into r->lock, waiting up to --lock-timeout while
 * another zdm holds it; 0, or -1 after saying why (RUN_USAGE) */
static int
take_lock(struct run *r)
{
	char *err = NULL;
	int rc = store_lock_wait(r->store, r->rb->name, r->run_id, r->o->lock_wait_ms, lock_waiting, r,
	    &r->lock, &err);

	if (rc == 0)
		return 0;
	if (rc == 1 && r->o->lock_wait_ms > 0 && zdm_interrupted) {
		/* a signal ended the wait, not --lock-timeout */
		run_error(r, "interrupted while waiting for the run lock: %s", err);
	} else if (rc == 1 && r->o->lock_wait_ms > 0) {
		char d[32];

		fmt_duration(r->o->lock_wait_ms, d, sizeof d);
		run_error(r, "still locked after waiting %s (--lock-timeout): %s", d, err);
	} else {
		run_error(r, "%s", err);
	}
	free(err);
	return -1;
}

static void
new_run_id(char *out, size_t n)
{
	time_t t = time(NULL);
	struct tm tm;
	char ts[32];
	unsigned int rnd = 0;
	FILE *f = fopen("/dev/urandom", "rb");

	if (f != NULL) {
		if (fread(&rnd, sizeof rnd, 1, f) != 1)
			rnd = (unsigned int)getpid();
		fclose(f);
	}
	gmtime_r(&t, &tm);
	strftime(ts, sizeof ts, "%Y%m%dT%H%M%SZ", &tm);
	snprintf(out, n, "%s-%04x", ts, rnd & 0xffff);
}

static void
run_init(struct run *r, struct runbook *rb, const struct run_opts *o)
{
	memset(r, 0, sizeof *r);
	r->rb = rb;
	r->o = o;
	r->store = o->store;
	r->ss = xcalloc(rb->nsteps, sizeof *r->ss);
	r->t0 = zdm_now_ms();
	r->ctl.cur = -1;
	if (r->store != NULL)
		store_set_retry(r->store, o->state_timeout_ms, state_news, r);
	if (o->mode != MODE_RUN)
		r->planned_state = json_object();
}

static void
run_release(struct run *r)
{
	struct run_event ev = { .kind = OBS_CLOSED };

	ev.closed.w = r->w;
	ev.closed.store = r->store;
	ev.closed.journal = r->w != NULL ? store_writer_ref(r->w) : NULL;
	run_emit(r, &ev);
	control_stop(r);
	for (size_t i = 0; i < r->rb->nsteps; i++) {
		json_decref(r->ss[i].outputs);
		json_decref(r->ss[i].undo_data);
		json_decref(r->ss[i].snapshot);
		json_decref(r->ss[i].notes);
	}
	free(r->ss);
	json_decref(r->planned_state);
	free(r->finished_status);
	free(r->failed_step);
	free(r->fail_msg);
	store_close_writer(r->w);
	store_unlock(r->lock);
	if (r->store != NULL)
		store_set_retry(r->store, 0, NULL, NULL);	/* r is going */
}

static void
set_run_table(struct run *r)
{
	json_t *run = json_pack("{s:s,s:b}", "id", r->run_id, "dry_run",
	    r->o->mode != MODE_RUN);

	expr_set(r->rb->x, "run", run, NULL);
	json_decref(run);
}

/* zdm plan: each step's plan and undo, in words; nothing runs */
static enum run_outcome
plan(struct run *r)
{
	struct run_event ev = { .kind = OBS_RUN_STARTED };

	ev.start.how = HOW_PLAN;
	run_emit(r, &ev);
	expr_set_static(r->rb->x, true);
	for (size_t i = 0; i < r->rb->nsteps; i++) {
		struct rb_step *s = &r->rb->steps[i];
		char *err = NULL, *p = NULL, *uerr = NULL, *up = NULL;
		json_t *params = runbook_params(r->rb, s->node, s->type, s->with, s->with_node, &err);
		json_t *uparams = NULL, *shown = NULL;

		char *cerr = NULL;

		memset(&ev, 0, sizeof ev);
		ev.kind = OBS_PLAN_STEP;
		ev.plan.i = i;
		ev.plan.when = PLAN_RUNS;
		if (s->if_expr != NULL) {
			bool yes = true;
			int k = runbook_if(r->rb, s, &yes, &cerr);

			if (k != 0) {
				/* needs steps' outputs or secrets, or fails: the run decides */
				ev.plan.when = PLAN_UNKNOWN;
				ev.plan.why = k < 0 ? cerr : NULL;
			} else if (!yes) {
				ev.plan.when = PLAN_SKIPPED;
			}
		}
		if (ev.plan.when == PLAN_SKIPPED) {
			/* nothing runs: no plan, no undo, the planned state as it was */
			run_emit(r, &ev);
			free(cerr);
			json_decref(params);
			free(err);
			continue;
		}
		if (params != NULL) {
			p = plan_of(s->type, params, r->planned_state);
			shown = json_deep_copy(params);
			redact_json(shown);
			ev.plan.params = shown;
		}
		ev.plan.doing = p ? p : params ? s->uses : err;
		if (s->undo != NULL) {
			uparams = runbook_params(r->rb, s->undo->node, s->undo->type, s->undo->with,
			    s->undo->with_node, &uerr);
			if (uparams != NULL)
				up = plan_of(s->undo->type, uparams, NULL);
			ev.plan.undo = PLAN_UNDO_STEP;
			ev.plan.undoing = up ? up : uparams ? s->undo->uses : uerr;
		} else {
			ev.plan.undo = s->undo_kind == RB_READ_ONLY ? PLAN_UNDO_READ_ONLY :
			    s->undo_kind == RB_NOT_UNDONE ? PLAN_UNDO_NONE : PLAN_UNDO_TYPE;
		}
		run_emit(r, &ev);
		json_decref(shown);
		free(cerr);
		free(p);
		free(err);
		json_decref(params);
		free(up);
		free(uerr);
		json_decref(uparams);
	}
	expr_set_static(r->rb->x, false);
	return RUN_OK;
}

enum run_outcome
runner_run(struct runbook *rb, const struct run_opts *o)
{
	struct run r;
	struct run_event ev = { 0 };
	char *err = NULL;
	json_t *d, *secrets;
	enum run_outcome rc;

	run_init(&r, rb, o);
	new_run_id(r.run_id, sizeof r.run_id);
	if (o->run_id_out != NULL && o->mode != MODE_PLAN)
		snprintf(o->run_id_out, 64, "%s", r.run_id);
	set_run_table(&r);
	if (o->mode == MODE_PLAN) {
		rc = plan(&r);
		run_release(&r);
		return rc;
	}
	if (runbook_resolve_secrets(rb, &err) != 0) {
		run_error(&r, "%s", err);
		free(err);
		run_release(&r);
		return RUN_USAGE;
	}
	if (o->mode == MODE_RUN && take_lock(&r) != 0) {
		run_release(&r);
		return RUN_USAGE;
	}
	r.w = store_create(r.store, r.run_id, &err);
	if (r.w == NULL) {
		run_error(&r, "%s", err);
		free(err);
		run_release(&r);
		return RUN_USAGE;
	}
	store_set_echo(r.w, run_echo_record, &r);
	secrets = json_array();
	for (size_t i = 0; i < rb->nsecrets; i++)
		json_array_append_new(secrets, json_string(rb->secrets[i].name));
	d = json_pack("{s:s,s:s,s:s,s:O,s:o,s:o,s:s,s:b,s:i}", "runbook", rb->abspath,
	    "name", rb->name, "sha256", rb->sha256, "vars", rb->vars, "secrets", secrets,
	    "actor", actor_json(), "zdm_version", ZDM_VERSION, "dry_run", o->mode == MODE_DRY_RUN,
	    "steps", (int)rb->nsteps);
	if (d == NULL) {
		run_error(&r, "cannot record run.started (is the runbook path %s valid UTF-8?); nothing ran",
		    rb->abspath);
		run_release(&r);
		return RUN_USAGE;
	}
	if (o->fail_at != NULL)
		json_object_set_new(d, "fail_at", json_string(o->fail_at));
	audit_provenance(d, rb->abspath);	/* host, git commit */
	if (jrec(&r, ev_name(EV_RUN_STARTED), NULL, 0, d) != 0) {
		run_release(&r);
		return RUN_NEEDS_PERSON;
	}
	ev.kind = OBS_RUN_STARTED;
	ev.start.how = o->mode == MODE_DRY_RUN ? HOW_DRY_RUN : HOW_RUN;
	ev.start.journal = store_writer_ref(r.w);
	run_emit(&r, &ev);
	control_start(&r);
	rc = run_steps(&r, 0);
	if (r.lock_lost)
		rc = RUN_PAUSED;	/* stopped by a fenced append: said */
	run_release(&r);
	return rc;
}

/* ---- resume and rollback from the journal ---------------------------------- */

static enum sstate
phase_of(enum rs_phase p)
{
	switch (p) {
	case RS_STARTED: return S_STARTED;
	case RS_SUCCEEDED: return S_SUCCEEDED;
	case RS_FAILED: return S_FAILED;
	case RS_SKIPPED: return S_SKIPPED;
	case RS_PENDING: break;
	}
	return S_PENDING;
}

static enum ustate
undo_of(enum rs_undo u)
{
	switch (u) {
	case RS_UNDO_STARTED: return U_STARTED;
	case RS_UNDO_SUCCEEDED: return U_SUCCEEDED;
	case RS_UNDO_FAILED: return U_FAILED;
	case RS_UNDO_SKIPPED: return U_SKIPPED;
	case RS_UNDO_NONE: break;
	}
	return U_NONE;
}

/* stand where the journal says (runstate.h), on the runbook's steps */
static int
load_state(struct run *r, struct jlog *log)
{
	struct runstate st;
	const struct rs_step *gone = NULL;
	char *err = NULL;
	int rc = runstate_fold(log, &st, &err);

	if (log->n == 0) {
		run_error(r, "%s", err);
		free(err);
		runstate_release(&st);
		return -1;
	}
	snprintf(r->run_id, sizeof r->run_id, "%s", st.run_id ? st.run_id : "?");
	if (r->o->run_id_out != NULL)
		snprintf(r->o->run_id_out, 64, "%s", r->run_id);
	/* the first step the journal names and the runbook no longer has */
	for (size_t i = 0; i < st.nsteps; i++)
		if (st.steps[i].first_rec != RS_NONE && runbook_step(r->rb, st.steps[i].id) == NULL &&
		    (gone == NULL || st.steps[i].first_rec < gone->first_rec))
			gone = &st.steps[i];
	if (gone != NULL && gone->first_rec < st.bad_rec) {
		run_error(r, "the journal names step '%s', which the runbook no longer has", gone->id);
		rc = -1;
	} else if (rc != 0) {
		run_error(r, "%s", err);
	}
	free(err);
	if (rc != 0) {
		runstate_release(&st);
		return -1;
	}
	for (size_t i = 0; i < st.nsteps; i++) {
		const struct rs_step *s = &st.steps[i];
		struct rb_step *rs = runbook_step(r->rb, s->id);
		struct stepstate *ss = rs ? &r->ss[rs - r->rb->steps] : NULL;

		if (ss == NULL)
			continue;
		ss->st = phase_of(s->phase);
		ss->attempts = s->attempt;
		ss->start_seq = s->start_seq;
		ss->done_seq = s->done_seq;
		ss->interrupted = s->interrupted;
		ss->outputs = json_incref((json_t *)s->outputs);
		ss->undo_data = json_incref((json_t *)s->undo_data);
		ss->snapshot = json_incref((json_t *)s->snapshot);
		ss->ust = undo_of(s->undo);
		ss->undone = s->undone;
		ss->undo_attempts = s->undo_attempt;
		/* ctx->notes of its next attempt (host_note: not a gate's) */
		if (!(rs->type != NULL && rs->type->notes_unread && rs->undo == NULL))
			ss->notes = json_incref(s->notes);
	}
	r->rolling_back = st.rolling_back;
	r->failed_step = st.failed_step ? xstrdup(st.failed_step) : NULL;
	r->fail_msg = st.failure ? xstrdup(st.failure) : NULL;
	r->failure_pending = st.failure_pending && st.outcome == RS_RUNNING && st.failed_step != NULL;
	r->paused = st.outcome == RS_PAUSED;
	r->finished = st.finished;
	r->finished_status = st.finished ? xstrdup(st.status ? st.status : "?") : NULL;
	runstate_release(&st);
	return 0;
}

/* a step (or undo) left in doubt whose command is still running, started
 * by a zdm that was killed (its process group survives it): never start it,
 * or undo it, beside itself.  False after telling the observers. */
static bool
in_doubt_still_running(struct run *r)
{
	for (size_t i = 0; i < r->rb->nsteps; i++) {
		const struct stepstate *ss = &r->ss[i];
		char *tag;
		pid_t pid;

		if (ss->st != S_STARTED && ss->ust != U_STARTED)
			continue;
		tag = xasprintf("ZDM_STEP_TAG=%s/%s", r->run_id, r->rb->steps[i].id);
		pid = proc_find_env(tag);
		free(tag);
		if (pid > 0) {
			pid_t pg = getpgid(pid);

			run_error(r, "step '%s' is still running: process %ld (process group %ld), "
			    "started by the zdm that stopped, has not ended; wait for it to end, or "
			    "stop it (kill -TERM -- -%ld), then run this command again",
			    r->rb->steps[i].id, (long)pid, (long)(pg > 0 ? pg : pid),
			    (long)(pg > 0 ? pg : pid));
			return false;
		}
	}
	return true;
}

/* the journal on disk is still the one log was read from: read again
 * under the run lock, the same records, the same last hash, the same tail */
static bool
unchanged_since_read(struct store *s, const char *journal, const struct jlog *log)
{
	struct jlog now;
	char *err = NULL;
	bool same;

	if (store_read(s, journal, &now, &err) != 0) {
		free(err);
		return false;
	}
	same = now.n == log->n && now.torn == log->torn && now.good_len == log->good_len &&
	    now.last_hash != NULL && log->last_hash != NULL &&
	    strcmp(now.last_hash, log->last_hash) == 0;
	jlog_release(&now);
	return same;
}

static const char *
answer_word(enum in_doubt a)
{
	return a == IN_DOUBT_RETRY ? "retry" : a == IN_DOUBT_SKIP ? "skip" : "ask";
}

static bool
answered_by_id(const struct run_opts *o, const char *step)
{
	for (size_t k = 0; k < o->nanswers; k++)
		if (strcmp(o->answers[k].step, step) == 0)
			return true;
	return false;
}

/*
 * The items in doubt this command must decide about before it acts (resume:
 * the step it would start with, FROM; rollback: every step and undo in doubt
 * it would meet), and what was said of each.  RUN_OK: each is answered, or
 * there are none.  RUN_IN_DOUBT: some are not; the observers are told of all
 * of them, and nothing is done.  RUN_USAGE: an answer that does not fit: a
 * bare --in-doubt for two or more items (they need not have gone the same
 * way), or STEP=... for a step that is not in doubt.
 */
static enum run_outcome
ask_in_doubt(struct run *r, size_t from)
{
	struct doubt *d = xcalloc(r->rb->nsteps + 1, sizeof *d);
	size_t n = 0, unanswered = 0, by_bare = 0;
	enum run_outcome rc = RUN_OK;
	struct sbuf list;

	sb_init(&list);
	/* a rollback meets them newest first */
	for (size_t k = 0; k < r->rb->nsteps; k++) {
		size_t i = r->rolling_back_cmd ? r->rb->nsteps - 1 - k : k;
		const struct rb_step *s = &r->rb->steps[i];
		const struct stepstate *ss = &r->ss[i];
		const struct zdm_step_type *ut = s->undo ? s->undo->type : s->type;
		bool undo = false;

		if (r->rolling_back_cmd) {
			enum undo_doubt ud = undo_doubt(r, i);

			if (ud == UD_NONE)
				continue;
			undo = ud == UD_UNDO;
		} else if (i != from || ss->st != S_STARTED || s->idempotent) {
			continue;
		}
		d[n].step = s->id;
		d[n].uses = undo ? (ut ? ut->name : "?") : s->uses;
		d[n].undo = undo;
		d[n].interrupted = !undo && ss->interrupted;
		d[n].attempt = undo ? ss->undo_attempts : ss->attempts;
		d[n].answer = run_answer(r, s->id);
		if (d[n].answer == IN_DOUBT_ASK)
			unanswered++;
		else if (d[n].answer == r->o->in_doubt && !answered_by_id(r->o, s->id))
			by_bare++;
		sb_addf(&list, "%s%s '%s'", n ? ", " : "", undo ? "the undo of step" : "step", s->id);
		n++;
	}
	for (size_t k = 0; k < r->o->nanswers; k++) {
		size_t j = 0;

		while (j < n && strcmp(d[j].step, r->o->answers[k].step) != 0)
			j++;
		if (j == n) {
			run_error(r, "--in-doubt %s=%s: step '%s' is not in doubt in run %s%s%s%s; "
			    "nothing was done", r->o->answers[k].step, answer_word(r->o->answers[k].answer),
			    r->o->answers[k].step, r->run_id, n ? " (in doubt: " : " (nothing is)",
			    n ? list.buf : "", n ? ")" : "");
			rc = RUN_USAGE;
			goto out;
		}
	}
	if (by_bare > 1) {
		run_error(r, "--in-doubt %s would answer %zu items in doubt at once (%s), which need not "
		    "have gone the same way; answer each one: --in-doubt STEP=retry|skip; nothing was done",
		    answer_word(r->o->in_doubt), by_bare, list.buf);
		rc = RUN_USAGE;
		goto out;
	}
	if (unanswered > 0) {
		struct run_event ev = { 0 };

		run_set_status(r, "in_doubt");
		ev.end.verdict = VD_IN_DOUBT;
		ev.end.rolling_back = r->rolling_back_cmd;
		ev.end.doubts = d;
		ev.end.ndoubts = n;
		run_ended(r, &ev);
		rc = RUN_IN_DOUBT;
	}
out:
	sb_release(&list);
	free(d);
	return rc;
}

/* common part of resume and rollback: lock, journal re-open, run.resumed */
static int
reopen(struct run *r, const char *journal, struct jlog *log)
{
	char *err = NULL;
	json_t *first = log->recs[0], *fd = json_object_get(first, "data");
	const char *sha = json_string_value(json_object_get(fd, "sha256"));
	json_t *d;

	if (json_is_true(json_object_get(fd, "dry_run"))) {
		run_error(r, "run %s was a dry run; there is nothing to %s", r->run_id,
		    r->rolling_back_cmd ? "roll back" : "resume");
		return RUN_USAGE;
	}
	if (sha != NULL && strcmp(sha, r->rb->sha256) != 0 && !r->o->allow_changed) {
		run_error(r, "%s changed since run %s started (sha256 %.12s… then, %.12s… now);\n"
		    "  refusing to continue with a different runbook. If the change is intended: --allow-changed",
		    r->rb->path, r->run_id, sha, r->rb->sha256);
		return RUN_USAGE;
	}
	if (runbook_resolve_secrets(r->rb, &err) != 0) {
		run_error(r, "%s", err);
		free(err);
		return RUN_USAGE;
	}
	{
		/* vars the journal holds redacted are taken from the runbook or
		 * --var; they must redact to what the run recorded */
		const char *k;
		json_t *v;

		json_object_foreach(json_object_get(fd, "vars"), k, v) {
			json_t *now = json_object_get(r->rb->vars, k), *red;
			bool same;

			if (now == NULL)
				continue;
			{
				char *t = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
				bool redacted = t != NULL && strstr(t, "***") != NULL;

				free(t);
				if (!redacted)
					continue;	/* recorded in clear: --var may change it */
			}
			red = json_deep_copy(now);
			redact_json(red);
			same = json_equal(red, v);
			json_decref(red);
			if (!same) {
				run_error(r, "var '%s' is not what run %s used (the journal holds it redacted, "
				    "so zdm cannot take it from there); pass the run's value with --var %s=...",
				    k, r->run_id, k);
				return RUN_USAGE;
			}
		}
	}
	if (r->lock == NULL && take_lock(r) != 0)
		return RUN_USAGE;
	if (!unchanged_since_read(r->store, journal, log)) {
		/* decided on a journal another zdm has written since: acting on
		 * it could repeat its steps or truncate its records */
		run_error(r, "the journal of run %s changed after this command read it: another zdm "
		    "resumed or rolled back the run meanwhile; nothing was done (zdm status %s, then "
		    "run the command again)", r->run_id, r->run_id);
		return RUN_USAGE;
	}
	if (log->torn)
		run_error(r, "warning: %s: the last line was torn (a crash mid-write); it is ignored and cut off",
		    journal);
	r->w = store_open_writer(r->store, journal, r->run_id, log, &err);
	if (r->w == NULL) {
		run_error(r, "%s", err);
		free(err);
		return RUN_USAGE;
	}
	/* what is there already: another writer's records come after it */
	r->last_seq = log->n > 0 ? (long)json_integer_value(json_object_get(log->recs[log->n - 1],
	    "seq")) : 0;
	store_set_echo(r->w, run_echo_record, r);
	d = json_pack("{s:s,s:o,s:b,s:s,s:s}", "command", r->rolling_back_cmd ? "rollback" : "resume",
	    "actor", actor_json(), "allow_changed",
	    r->o->allow_changed, "sha256", r->rb->sha256, "in_doubt", answer_word(r->o->in_doubt));
	if (r->o->nanswers > 0) {
		json_t *a = json_object();

		for (size_t k = 0; k < r->o->nanswers; k++)
			json_object_set_new(a, r->o->answers[k].step,
			    json_string(answer_word(r->o->answers[k].answer)));
		json_object_set_new(d, "in_doubt_answers", a);
	}
	if (jrec(r, ev_name(EV_RUN_RESUMED), NULL, 0, d) != 0)
		return r->lock_lost ? RUN_PAUSED : RUN_NEEDS_PERSON;
	if (!r->rolling_back_cmd)
		control_start(r);
	return RUN_OK;
}

/* a run object standing where the journal says; -1 (released) if unusable */
static int
run_from_journal(struct run *r, struct runbook *rb, struct jlog *log,
    const struct run_opts *o)
{
	run_init(r, rb, o);
	if (load_state(r, log) != 0) {
		run_release(r);
		return -1;
	}
	set_run_table(r);
	return 0;
}

enum run_outcome
runner_resume(struct runbook *rb, const char *journal, struct jlog *log,
    const struct run_opts *o)
{
	struct run r;
	struct run_event ev = { 0 };
	size_t from = rb->nsteps;
	enum run_outcome rc;

	if (run_from_journal(&r, rb, log, o) != 0)
		return RUN_USAGE;
	if (r.finished) {
		run_error(&r, "run %s already finished (%s); nothing to resume", r.run_id,
		    r.finished_status);
		run_release(&r);
		return RUN_USAGE;
	}
	if (r.rolling_back) {
		run_error(&r, "run %s was rolling back when it stopped; continue the rollback with: zdm rollback %s",
		    r.run_id, r.run_id);
		run_release(&r);
		return RUN_USAGE;
	}
	/* a run still going is not in doubt: its holder says so */
	if (take_lock(&r) != 0) {
		run_release(&r);
		return RUN_USAGE;
	}
	/* the first step not done, and what the steps before it produced */
	for (size_t i = 0; i < rb->nsteps; i++) {
		struct stepstate *ss = &r.ss[i];

		if (ss->st == S_SUCCEEDED) {
			expr_set_step(rb->x, rb->steps[i].id, ss->outputs);
		} else if (ss->st == S_SKIPPED) {
			expr_set_step(rb->x, rb->steps[i].id, NULL);
		} else if (from == rb->nsteps) {
			from = i;
		}
	}
	/* a command still running is not a question for a person yet */
	rc = in_doubt_still_running(&r) ? ask_in_doubt(&r, from) : RUN_USAGE;
	if (rc != RUN_OK) {
		run_release(&r);
		return rc;
	}
	rc = reopen(&r, journal, log);
	if (rc != RUN_OK) {
		run_release(&r);
		return rc;
	}
	ev.kind = OBS_RUN_STARTED;
	ev.start.how = HOW_RESUME;
	ev.start.journal = journal;
	ev.start.from = from;
	run_emit(&r, &ev);
	if (from < rb->nsteps && r.ss[from].st == S_STARTED) {
		struct rb_step *s = &rb->steps[from];

		if (run_answer(&r, s->id) == IN_DOUBT_SKIP && !s->idempotent) {
			/* the person says it took effect: it succeeded (with no
			 * outputs or undo_data recorded), so a later rollback
			 * undoes it like any completed step */
			if (jrec(&r, ev_name(EV_STEP_SUCCEEDED), s->id, r.ss[from].attempts,
			    json_pack("{s:{},s:s}", "outputs", "in_doubt",
			    "taken as done by --in-doubt skip")) != 0) {
				run_release(&r);
				return RUN_NEEDS_PERSON;
			}
			r.ss[from].st = S_SUCCEEDED;
			r.ss[from].done_seq = r.last_seq;
			expr_set_step(rb->x, s->id, NULL);
			step_ended(&r, from, END_SKIPPED, -1, "in doubt: taken as done (--in-doubt skip)");
		} else {
			memset(&ev, 0, sizeof ev);
			ev.kind = OBS_STEP_RERUN;
			ev.step.i = from;
			ev.step.idempotent = s->idempotent;
			run_emit(&r, &ev);
		}
	}
	if (r.failure_pending) {
		/* the killed zdm journaled a failure for good and stopped before
		 * acting on it: act as it would have (roll back, pause or abort),
		 * never run the failed step again */
		rc = run_on_failure(&r, r.failed_step, r.fail_msg ? r.fail_msg : "failed");
		if (r.lock_lost)
			rc = RUN_PAUSED;	/* stopped by a fenced append: said */
		run_release(&r);
		return rc;
	}
	rc = run_steps(&r, from);
	if (r.lock_lost)
		rc = RUN_PAUSED;	/* stopped by a fenced append: said */
	run_release(&r);
	return rc;
}

enum run_outcome
runner_rollback(struct runbook *rb, const char *journal, struct jlog *log,
    const struct run_opts *o)
{
	struct run r;
	struct run_event ev = { 0 };
	enum run_outcome rc;

	if (run_from_journal(&r, rb, log, o) != 0)
		return RUN_USAGE;
	if (r.finished && strcmp(r.finished_status, "rolled_back") == 0) {
		run_error(&r, "run %s is already rolled back; nothing to undo", r.run_id);
		run_release(&r);
		return RUN_USAGE;
	}
	for (size_t i = 0; i < rb->nsteps; i++)
		if (r.ss[i].st == S_SUCCEEDED)
			expr_set_step(rb->x, rb->steps[i].id, r.ss[i].outputs);
	r.rolling_back_cmd = true;
	/* as resume: a rollback still going is not in doubt */
	if (take_lock(&r) != 0) {
		run_release(&r);
		return RUN_USAGE;
	}
	rc = in_doubt_still_running(&r) ? ask_in_doubt(&r, rb->nsteps) : RUN_USAGE;
	if (rc == RUN_OK)
		rc = reopen(&r, journal, log);
	if (rc != RUN_OK) {
		run_release(&r);
		return rc;
	}
	if (!r.rolling_back &&
	    jrec(&r, ev_name(EV_ROLLBACK_STARTED), NULL, 0, json_pack("{s:s}", "reason", "zdm rollback")) != 0) {
		run_release(&r);
		return RUN_NEEDS_PERSON;
	}
	r.rolling_back = true;
	ev.kind = OBS_RUN_STARTED;
	ev.start.how = HOW_ROLLBACK;
	ev.start.journal = journal;
	run_emit(&r, &ev);
	rc = undo_steps(&r);
	memset(&ev, 0, sizeof ev);
	if (rc == RUN_PAUSED) {
		rc = run_interrupted(&r, NULL);
	} else if (rc == RUN_OK) {
		rc = rolled_back(&r, &ev, VD_UNDONE, r.failed_step ?
		    json_pack("{s:s,s:s}", "failed_step", r.failed_step, "error", r.fail_msg ? r.fail_msg : "") :
		    json_object());
	} else if (rc == RUN_NEEDS_PERSON) {
		ev.end.verdict = VD_UNDO_INCOMPLETE;
		run_ended(&r, &ev);
		rc = run_finish(&r, "rollback_failed", RUN_NEEDS_PERSON, NULL);
	}
	if (r.lock_lost)
		rc = RUN_PAUSED;	/* stopped by a fenced append: said */
	run_release(&r);
	return rc;
}
