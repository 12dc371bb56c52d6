/*
 * cmd_drill.c - zdm drill: rehearse the rollback after every step that
 * changes something.  The probes (probes:) are read once before the first
 * run; then, for each failure point in order, the runbook runs for real
 * with a failure forced right after that step (as zdm run --fail-at does),
 * rolls back whatever on_failure says, and the probes are read again and
 * compared with the first reading.  Each run is a run of its own, with its
 * journal and the runbook's lock.  A rollback that does not complete stops
 * the drill at once: the target is no longer in a known state.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/proc.h"
#include "base/redact.h"
#include "base/util.h"
#include "cli/cli.h"
#include "core/expr.h"
#include "core/probe.h"
#include "core/registry.h"
#include "core/runner.h"
#include "zdm/step.h"

#define SHOW_MAX 120	/* characters of a value shown in a difference */

/* the exit code of each outcome of one run (zdm(1) EXIT STATUS) */
static int
run_exit_code(enum run_outcome oc)
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

/* what one run told its observer, kept for the drill's own lines */
struct heard {
	char *failed_step, *failed_why;	/* the first failure (OBS_FAILURE) */
	char **lines;			/* what else a person should read, in order */
	size_t nlines;
	int undone, no_undo;
};

static void
heard_add(struct heard *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
heard_add(struct heard *h, const char *fmt, ...)
{
	va_list ap;
	char *m;

	va_start(ap, fmt);
	m = xvasprintf(fmt, ap);
	va_end(ap);
	h->lines = xrealloc(h->lines, (h->nlines + 1) * sizeof *h->lines);
	h->lines[h->nlines++] = redact_str(m);
	free(m);
}

static void
heard_release(struct heard *h)
{
	free(h->failed_step);
	free(h->failed_why);
	for (size_t i = 0; i < h->nlines; i++)
		free(h->lines[i]);
	free(h->lines);
	memset(h, 0, sizeof *h);
}

static void
hear(void *self, const struct run_event *ev)
{
	struct heard *h = self;
	const char *id;
	char d[32];

	switch (ev->kind) {
	case OBS_FAILURE:
		if (h->failed_step == NULL) {
			h->failed_step = xstrdup(ev->failure.step);
			h->failed_why = redact_str(ev->failure.why ? ev->failure.why : "failed");
		}
		break;
	case OBS_UNDO_ENDED:
		id = ev->rb->steps[ev->step.i].id;
		if (ev->step.undo == UNDO_DONE)
			h->undone++;
		else if (ev->step.undo == UNDO_LEFT) {
			h->no_undo++;
			heard_add(h, "left in place: step '%s' changed things and has no undo; "
			    "the rollback left its change in place", id);
		} else if (ev->step.undo == UNDO_FAILED)
			heard_add(h, "undo of step '%s' failed: %s", id, ev->step.text ? ev->step.text : "failed");
		else if (ev->step.undo == UNDO_NOT_DONE)
			heard_add(h, "undo of step '%s' not done: %s", id, ev->step.text ? ev->step.text : "in doubt");
		break;
	case OBS_ROLLBACK_STOPPED:
		heard_add(h, "the rollback stopped at step '%s'", ev->rb->steps[ev->step.i].id);
		break;
	case OBS_ERROR:
		heard_add(h, "%s", ev->text);
		break;
	case OBS_LOCK_WAIT:
		fprintf(stderr, "zdm drill: %s\n", ev->text);
		break;
	case OBS_STATE_LOST:
		/* said now, not in the summary: the drill waits meanwhile */
		fmt_duration(ev->state.timeout_ms, d, sizeof d);
		fprintf(stderr, "zdm drill: lost the state database: %s; connecting again for up to "
		    "%s (--state-timeout)\n", ev->state.why, d);
		break;
	case OBS_STATE_BACK:
		fprintf(stderr, "zdm drill: connected again to the state database %s\n", ev->state.place);
		break;
	case OBS_RUN_ENDED:
		switch (ev->end.verdict) {
		case VD_WAITING_APPROVAL:
			heard_add(h, "paused: step '%s' waits for an approval (zdm drill --approve %s)",
			    ev->end.step, ev->end.step);
			break;
		case VD_UNDECIDED:
			heard_add(h, "paused: step '%s' could not decide: %s", ev->end.step,
			    ev->end.why ? ev->end.why : "?");
			break;
		case VD_IN_DOUBT:
			for (size_t k = 0; k < ev->end.ndoubts; k++)
				heard_add(h, "%s '%s' (%s) is in doubt", ev->end.doubts[k].undo ?
				    "the undo of step" : "step", ev->end.doubts[k].step, ev->end.doubts[k].uses);
			break;
		case VD_INTERRUPTED:
			heard_add(h, "interrupted by signal %d", ev->end.signal);
			break;
		case VD_LOCK_LOST:
			heard_add(h, "stopped: %s", ev->end.why ? ev->end.why : "the run lock was lost");
			break;
		case VD_PAUSE_ASKED:
			heard_add(h, "%s", ev->end.why ? ev->end.why : "paused (zdm pause)");
			break;
		default:
			break;
		}
		break;
	default:
		break;
	}
}

/* one failure point: the run and what the probes said after it */
struct point {
	size_t step;			/* index in rb->steps */
	char run_id[64];
	char status[32];
	enum run_outcome oc;
	bool ran;			/* the run was made (it may have stopped) */
	bool probed;
	bool elsewhere;			/* the run failed before its failure point */
	char *why_elsewhere;
	json_t **after;			/* per probe, NULL when it failed */
	char **err;			/* per probe */
	bool *same;
};

/* a value for a person: compact JSON, cut to SHOW_MAX characters */
static char *
show(const json_t *v)
{
	char *s, *r;

	if (v == NULL)
		return xstrdup("(none)");
	s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
	if (s == NULL)
		return xstrdup("?");
	r = redact_str(s);
	free(s);
	if (strlen(r) > SHOW_MAX)
		strcpy(r + SHOW_MAX - 3, "...");
	return r;
}

static void
print_diff(FILE *f, const json_t *before, const json_t *after)
{
	const char *k;
	json_t *v;

	json_object_foreach((json_t *)before, k, v) {
		const json_t *w = json_object_get(after, k);

		if (w == NULL || !json_equal(v, w)) {
			char *a = show(v), *b = show(w);

			fprintf(f, "      %s: %s -> %s\n", k, a, b);
			free(a);
			free(b);
		}
	}
	json_object_foreach((json_t *)after, k, v)
		if (json_object_get(before, k) == NULL) {
			char *b = show(v);

			fprintf(f, "      %s: (none) -> %s\n", k, b);
			free(b);
		}
}

static const char *
cell(const struct point *p, size_t j)
{
	if (!p->probed)
		return "-";
	if (p->after[j] == NULL)
		return "failed";
	return p->same[j] ? "same" : "differs";
}

static void
print_matrix(FILE *f, struct runbook *rb, struct point *pts, size_t n)
{
	int w0 = (int)strlen("fail after"), *w = xcalloc(rb->nprobes, sizeof *w);

	for (size_t k = 0; k < n; k++)
		if ((int)strlen(rb->steps[pts[k].step].id) > w0)
			w0 = (int)strlen(rb->steps[pts[k].step].id);
	fprintf(f, "%-*s", w0 + 2, "fail after");
	for (size_t j = 0; j < rb->nprobes; j++) {
		w[j] = (int)strlen(rb->probes[j].id);
		if (w[j] < (int)strlen("differs"))
			w[j] = (int)strlen("differs");
		fprintf(f, "%-*s", j + 1 < rb->nprobes ? w[j] + 2 : 0, rb->probes[j].id);
	}
	fputc('\n', f);
	for (size_t k = 0; k < n; k++) {
		fprintf(f, "%-*s", w0 + 2, rb->steps[pts[k].step].id);
		for (size_t j = 0; j < rb->nprobes; j++)
			fprintf(f, "%-*s", j + 1 < rb->nprobes ? w[j] + 2 : 0, cell(&pts[k], j));
		fputc('\n', f);
	}
	free(w);
}

/* --only STEP: a step of the runbook that changes something */
static int
pick_points(struct runbook *rb, const struct cli *c, struct point **out, size_t *n)
{
	struct point *pts = xcalloc(rb->nsteps, sizeof *pts);
	size_t k = 0;

	for (size_t i = 0; i < c->nonly; i++) {
		struct rb_step *s = runbook_step(rb, c->only[i]);

		if (s == NULL) {
			char *flag = xasprintf("--only '%s'", c->only[i]);

			no_such_step("drill", flag, c->only[i], rb);
			free(flag);
			free(pts);
			return -1;
		}
		if (s->read_only) {
			fprintf(stderr, "zdm drill: --only '%s': the step is read-only (%s): a failure "
			    "after it has nothing of its own to undo; name a step that changes something\n",
			    c->only[i], s->uses);
			free(pts);
			return -1;
		}
	}
	for (size_t i = 0; i < rb->nsteps; i++) {
		bool want = c->nonly == 0;

		if (rb->steps[i].read_only)
			continue;
		for (size_t j = 0; j < c->nonly; j++)
			if (strcmp(c->only[j], rb->steps[i].id) == 0)
				want = true;
		if (want)
			pts[k++].step = i;
	}
	if (k == 0) {
		fprintf(stderr, "zdm drill: %s: every step is read-only; there is no rollback to drill\n",
		    rb->path);
		free(pts);
		return -1;
	}
	*out = pts;
	*n = k;
	return 0;
}

static json_t *
json_report(struct runbook *rb, struct point *pts, size_t n, json_t **base, const char *result,
    int rc)
{
	json_t *o = json_pack("{s:s,s:[],s:[],s:s,s:i}", "runbook", rb->name, "probes",
	    "points", "result", result, "exit_code", rc);
	json_t *pr = json_object_get(o, "probes"), *pa = json_object_get(o, "points");

	for (size_t j = 0; j < rb->nprobes; j++)
		json_array_append_new(pr, json_pack("{s:s,s:O}", "id", rb->probes[j].id, "baseline",
		    base[j]));
	for (size_t k = 0; k < n; k++) {
		struct point *p = &pts[k];
		json_t *e, *cells;

		if (!p->ran)
			break;
		e = json_pack("{s:s,s:s,s:s}", "fail_after", rb->steps[p->step].id, "run", p->run_id,
		    "status", p->status[0] ? p->status : "?");
		if (p->elsewhere)
			json_object_set_new(e, "failed_before_point", json_string(p->why_elsewhere));
		cells = json_object();
		for (size_t j = 0; p->probed && j < rb->nprobes; j++) {
			json_t *c = json_pack("{s:s}", "result", cell(p, j));

			if (p->after[j] == NULL)
				json_object_set_new(c, "error", json_string(p->err[j]));
			else if (!p->same[j])
				json_object_set(c, "after", p->after[j]);
			json_object_set_new(cells, rb->probes[j].id, c);
		}
		json_object_set_new(e, "probes", cells);
		json_array_append_new(pa, e);
	}
	return o;
}

int
cmd_drill(const struct cmd *cmd, struct cli *c)
{
	char **pp, *sd = NULL, *err = NULL;
	struct store *store = NULL;
	struct registry *reg = new_registry(c, c->argv[0], &pp);
	struct runbook *rb = load(c, c->argv[0], reg);
	struct point *pts = NULL;
	json_t **base = NULL;
	size_t npts = 0, done = 0, ndiff = 0, nelse = 0;
	int rc = ZDM_EXIT_USAGE;
	bool stopped = false;
	FILE *out = c->json ? stderr : stdout;

	if (rb == NULL)
		goto out;
	if (rb->nprobes == 0) {
		fprintf(stderr, "zdm drill: %s has no probes: a drill reads them before the first run "
		    "and after each rollback and compares; add a probes: list of read-only checks "
		    "(zdm-runbook(5), PROBES); nothing ran\n", c->argv[0]);
		goto out;
	}
	if (check_approve(cmd->name, c, rb) != 0 || pick_points(rb, c, &pts, &npts) != 0)
		goto out;
	store = state_open(c, c->argv[0], cmd->name);
	if (store == NULL)
		goto out;
	sd = store->dir != NULL ? xstrdup(store->dir) : NULL;
	if (runbook_resolve_secrets(rb, &err) != 0) {
		fprintf(stderr, "zdm drill: %s; nothing ran\n", err);
		free(err);
		goto out;
	}
	fprintf(out, "drill: %s, %zu failure point%s x %zu probe%s\n", rb->name, npts,
	    npts == 1 ? "" : "s", rb->nprobes, rb->nprobes == 1 ? "" : "s");
	base = xcalloc(rb->nprobes, sizeof *base);
	for (size_t j = 0; j < rb->nprobes; j++) {
		base[j] = probe_run(rb, j, sd, &err);
		if (base[j] == NULL) {
			fprintf(stderr, "zdm drill: probe '%s' failed before anything ran: %s; nothing ran "
			    "(a drill compares with what the probes read first)\n", rb->probes[j].id, err);
			free(err);
			goto out;
		}
	}
	fprintf(out, "probes read before the first run: %zu\n", rb->nprobes);
	for (size_t k = 0; k < npts; k++) {
		struct point *p = &pts[k];
		const struct rb_step *s = &rb->steps[p->step];
		struct heard h = { 0 };
		struct observer obs = { hear, &h };
		struct run_opts o;
		size_t nd = 0;

		if (zdm_interrupted) {
			fprintf(stderr, "zdm drill: interrupted; every run so far was rolled back\n");
			rc = ZDM_EXIT_PAUSED;
			stopped = true;
			break;
		}
		/* a run sees only its own steps' outputs */
		for (size_t i = 0; i < rb->nsteps; i++)
			expr_set_step(rb->x, rb->steps[i].id, NULL);
		memset(&o, 0, sizeof o);
		o.mode = MODE_RUN;
		o.fail_at = s->id;
		o.force_rollback = true;
		o.store = store;
		o.state_dir = sd;
		o.state_timeout_ms = state_timeout(c);
		o.interactive = interactive(c);
		o.approve = c->approve;
		o.napprove = c->napprove;
		o.run_id_out = p->run_id;
		o.status_out = p->status;
		o.lock_wait_ms = c->lock_wait_ms;
		o.exit_code = run_exit_code;
		o.observers = &obs;
		o.nobservers = 1;
		fprintf(out, "[%zu/%zu] fail after %s: running\n", k + 1, npts, s->id);
		fflush(out);
		p->oc = runner_run(rb, &o);
		p->ran = true;
		done = k + 1;
		if (p->oc != RUN_ROLLED_BACK && p->oc != RUN_LEFT_IN_PLACE) {
			if (p->run_id[0] != '\0' && p->oc != RUN_USAGE)
				fprintf(out, "[%zu/%zu] fail after %s: %s (run %s)\n", k + 1, npts, s->id,
				    p->status[0] ? p->status : "stopped", p->run_id);
			else
				fprintf(out, "[%zu/%zu] fail after %s: nothing ran\n", k + 1, npts, s->id);
			for (size_t i = 0; i < h.nlines; i++)
				fprintf(out, "      %s\n", h.lines[i]);
			rc = p->oc == RUN_USAGE ? ZDM_EXIT_USAGE : p->oc == RUN_PAUSED ? ZDM_EXIT_PAUSED :
			    p->oc == RUN_IN_DOUBT ? ZDM_EXIT_IN_DOUBT : ZDM_EXIT_NEEDS_PERSON;
			if (p->oc == RUN_OK)
				fprintf(stderr, "zdm drill: run %s finished without the forced failure; "
				    "the runbook's changes are in place\n", p->run_id);
			else if (p->oc != RUN_USAGE)
				fprintf(stderr, "zdm drill: the run failed after step '%s' but did not end "
				    "rolled back (%s): the target is not in a known state; stopped here.\n"
				    "  zdm status %s shows where it stands; zdm rollback %s goes on once "
				    "a person has looked\n", s->id, p->status[0] ? p->status : "stopped",
				    p->run_id, p->run_id);
			stopped = true;
			heard_release(&h);
			break;
		}
		if (h.failed_step != NULL && strcmp(h.failed_step, s->id) != 0) {
			p->elsewhere = true;
			p->why_elsewhere = xasprintf("step '%s' failed: %s", h.failed_step, h.failed_why);
			nelse++;
		}
		p->after = xcalloc(rb->nprobes, sizeof *p->after);
		p->err = xcalloc(rb->nprobes, sizeof *p->err);
		p->same = xcalloc(rb->nprobes, sizeof *p->same);
		for (size_t j = 0; j < rb->nprobes; j++) {
			p->after[j] = probe_run(rb, j, sd, &p->err[j]);
			p->same[j] = p->after[j] != NULL && json_equal(base[j], p->after[j]);
			if (!p->same[j])
				nd++;
		}
		p->probed = true;
		if (nd > 0)
			ndiff++;
		fprintf(out, "[%zu/%zu] fail after %s: rolled back (run %s), %d undone; probes: %s\n",
		    k + 1, npts, s->id, p->run_id, h.undone, nd == 0 ? "all same" : "DIFFER");
		if (p->elsewhere)
			fprintf(out, "      the run failed before its failure point: %s\n", p->why_elsewhere);
		for (size_t i = 0; i < h.nlines; i++)
			fprintf(out, "      %s\n", h.lines[i]);
		heard_release(&h);
	}
	fputc('\n', out);
	print_matrix(out, rb, pts, done);
	if (ndiff > 0) {
		fprintf(out, "\nwhat differed after the rollback (before -> after):\n");
		for (size_t k = 0; k < done; k++)
			for (size_t j = 0; pts[k].probed && j < rb->nprobes; j++) {
				if (pts[k].same[j])
					continue;
				fprintf(out, "  fail after %s, probe %s:\n", rb->steps[pts[k].step].id,
				    rb->probes[j].id);
				if (pts[k].after[j] == NULL)
					fprintf(out, "      the probe failed: %s\n", pts[k].err[j]);
				else
					print_diff(out, base[j], pts[k].after[j]);
			}
	}
	if (stopped && done == 0) {
		fprintf(out, "drill: stopped before the first run\n");
	} else if (stopped) {
		fprintf(out, "drill: stopped at failure point %zu of %zu (fail after %s)\n", done, npts,
		    rb->steps[pts[done - 1].step].id);
	} else if (ndiff > 0) {
		rc = ZDM_EXIT_ROLLED_BACK;
		fprintf(out, "drill: %zu of %zu rollbacks left a difference the probes see\n", ndiff, npts);
	} else if (nelse > 0) {
		rc = ZDM_EXIT_ROLLED_BACK;
		fprintf(out, "drill: %zu of %zu runs failed before their failure point, so those "
		    "points were not drilled\n", nelse, npts);
	} else {
		rc = ZDM_EXIT_OK;
		fprintf(out, "drill: every rollback put the probes back where they were (%zu failure "
		    "point%s)\n", npts, npts == 1 ? "" : "s");
	}
	if (c->json) {
		json_t *o = json_report(rb, pts, npts, base, stopped ? "stopped" : ndiff > 0 ?
		    "differs" : nelse > 0 ? "not_drilled" : "same", rc);
		char *s = json_dumps(o, JSON_COMPACT);

		printf("%s\n", s);
		free(s);
		json_decref(o);
	}
out:
	for (size_t k = 0; pts != NULL && k < npts; k++) {
		for (size_t j = 0; pts[k].after != NULL && j < rb->nprobes; j++) {
			json_decref(pts[k].after[j]);
			free(pts[k].err[j]);
		}
		free(pts[k].after);
		free(pts[k].err);
		free(pts[k].same);
		free(pts[k].why_elsewhere);
	}
	free(pts);
	for (size_t j = 0; base != NULL && j < rb->nprobes; j++)
		json_decref(base[j]);
	free(base);
	state_remember(store);
	store_close(store);
	free(sd);
	runbook_free(rb);
	registry_free(reg);
	plugin_path_free(pp);
	return rc;
}
