/*
 * cmd_runs.c - zdm runs: the runs of a state, newest first, one line each
 * (store.h store_runs; what a line says is runstate.h's struct
 * run_summary); and zdm lock status NAME: who holds a runbook's run lock.
 *
 * Both print text for people, or with --output json one JSON document on
 * stdout (keys in zdm(1) and docs/state.md), never the event stream.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/util.h"
#include "cli/cli.h"
#include "core/runstate.h"
#include "core/store.h"

/* a journal ts ("2026-11-21T10:00:01.123Z") -> ms since the epoch; -1 */
static int64_t
ts_ms(const char *ts)
{
	int64_t ms;

	return ts != NULL && parse_time(ts, &ms) == 0 ? ms : -1;
}

/* ---- zdm runs ---------------------------------------------------------------- */

/* whether a live zdm holds the lock of each runbook name asked about, and for
 * which run (NULL: it did not say) */
struct holders {
	struct {
		char *name;
		bool held;
		char *run;
	} *v;
	size_t n;
};

/* does a live zdm hold R's run lock now */
static bool
held_now(struct store *s, struct holders *h, const struct run_summary *r)
{
	size_t i;

	if (!r->open || r->name == NULL)
		return false;
	for (i = 0; i < h->n && strcmp(h->v[i].name, r->name) != 0; i++)
		;
	if (i == h->n) {
		long pid;

		h->v = xrealloc(h->v, (h->n + 1) * sizeof *h->v);
		h->v[i].name = xstrdup(r->name);
		h->v[i].held = store_locked(s, r->name, &pid, &h->v[i].run);
		h->n++;
	}
	return h->v[i].held && (h->v[i].run == NULL || strcmp(h->v[i].run, r->run_id) == 0);
}

struct row {
	struct run_summary *r;
	const char *status;
	int64_t ms;		/* duration, or -1 */
};

static int
newest_first(const void *a, const void *b)
{
	const struct run_summary *x = ((const struct row *)a)->r, *y = ((const struct row *)b)->r;
	int c;

	if ((x->started == NULL) != (y->started == NULL))
		return x->started == NULL ? 1 : -1;
	if (x->started != NULL && (c = strcmp(y->started, x->started)) != 0)
		return c;
	return strcmp(y->run_id ? y->run_id : "", x->run_id ? x->run_id : "");
}

static json_t *
jstr_or_null(const char *s)
{
	return s != NULL ? json_string(s) : json_null();
}

static void
print_json(const struct row *rows, size_t n)
{
	json_t *a = json_array();
	char *text;

	for (size_t i = 0; i < n; i++) {
		const struct run_summary *r = rows[i].r;

		json_array_append_new(a, json_pack("{s:o,s:o,s:o,s:s,s:b,s:o,s:o,s:o,s:o,s:o,s:o,s:I}",
		    "run", jstr_or_null(r->run_id), "runbook", jstr_or_null(r->name),
		    "file", jstr_or_null(r->runbook), "status", rows[i].status, "dry_run", r->dry_run,
		    "actor", jstr_or_null(r->actor), "host", jstr_or_null(r->host),
		    "started", jstr_or_null(r->started), "updated", jstr_or_null(r->updated),
		    "duration_ms", rows[i].ms >= 0 ? json_integer(rows[i].ms) : json_null(),
		    "step", jstr_or_null(r->step), "records", (json_int_t)r->records));
	}
	text = json_dumps(a, JSON_INDENT(2) | JSON_ENCODE_ANY);
	printf("%s\n", text != NULL ? text : "[]");
	free(text);
	json_decref(a);
}

enum { C_RUN, C_RUNBOOK, C_STATUS, C_ACTOR, C_HOST, C_STARTED, C_DURATION, C_STEP, NCOLS };

static void
print_table(const struct row *rows, size_t n)
{
	static const char *const head[NCOLS] = {
		"RUN", "RUNBOOK", "STATUS", "ACTOR", "HOST", "STARTED", "DURATION", "STEP",
	};
	char *(*cell)[NCOLS] = xcalloc(n, sizeof *cell);
	size_t w[NCOLS];

	for (int k = 0; k < NCOLS; k++)
		w[k] = strlen(head[k]);
	for (size_t i = 0; i < n; i++) {
		const struct run_summary *r = rows[i].r;
		char d[32] = "-";

		if (rows[i].ms >= 0)
			fmt_duration(rows[i].ms, d, sizeof d);
		cell[i][C_RUN] = xstrdup(r->run_id ? r->run_id : "?");
		cell[i][C_RUNBOOK] = xasprintf("%s%s", r->name ? r->name : "?", r->dry_run ? " (dry run)" : "");
		cell[i][C_STATUS] = xstrdup(rows[i].status);
		cell[i][C_ACTOR] = xstrdup(r->actor ? r->actor : "-");
		cell[i][C_HOST] = xstrdup(r->host ? r->host : "-");
		/* to the second: the journal has the milliseconds */
		cell[i][C_STARTED] = r->started != NULL && strlen(r->started) >= 19 ?
		    xasprintf("%.19sZ", r->started) : xstrdup("-");
		cell[i][C_DURATION] = xstrdup(d);
		cell[i][C_STEP] = xstrdup(r->step ? r->step : "-");
		for (int k = 0; k < NCOLS; k++)
			if (strlen(cell[i][k]) > w[k])
				w[k] = strlen(cell[i][k]);
	}
	for (int k = 0; k < NCOLS; k++)
		printf(k + 1 < NCOLS ? "%-*s  " : "%-*s\n", k + 1 < NCOLS ? (int)w[k] : 0, head[k]);
	for (size_t i = 0; i < n; i++) {
		for (int k = 0; k < NCOLS; k++) {
			printf(k + 1 < NCOLS ? "%-*s  " : "%-*s\n", k + 1 < NCOLS ? (int)w[k] : 0,
			    cell[i][k]);
			free(cell[i][k]);
		}
	}
	free(cell);
}

static bool
known_status(const char *s)
{
	for (size_t i = 0; run_statuses[i] != NULL; i++)
		if (strcmp(run_statuses[i], s) == 0)
			return true;
	return false;
}

int
cmd_runs(const struct cmd *cmd, struct cli *c)
{
	char *err = NULL;
	int64_t since = 0;
	struct store *s;
	struct run_summary *rs;
	struct holders h = { NULL, 0 };
	struct row *rows;
	size_t n, k = 0;
	struct timespec wall;
	int64_t now;

	if (c->runs_status != NULL && !known_status(c->runs_status)) {
		struct sbuf sb;

		sb_init(&sb);
		for (size_t i = 0; run_statuses[i] != NULL; i++)
			sb_addf(&sb, "%s%s", i ? ", " : "", run_statuses[i]);
		fprintf(stderr, "zdm runs: --status '%s': not a status; use one of: %s\n", c->runs_status,
		    sb.buf);
		sb_release(&sb);
		return ZDM_EXIT_USAGE;
	}
	if (c->runs_since != NULL && parse_time(c->runs_since, &since) != 0) {
		fprintf(stderr, "zdm runs: --since '%s': not a date or time; use YYYY-MM-DD (UTC) or "
		    "RFC 3339, e.g. 2026-11-21T10:00:00Z or 2026-11-21T11:00:00+01:00\n", c->runs_since);
		return ZDM_EXIT_USAGE;
	}
	s = state_open(c, NULL, cmd->name);
	if (s == NULL)
		return ZDM_EXIT_USAGE;
	clock_gettime(CLOCK_REALTIME, &wall);
	now = (int64_t)wall.tv_sec * 1000 + wall.tv_nsec / 1000000;
	if (store_runs(s, c->runs_runbook, &rs, &n, &err) != 0) {
		fprintf(stderr, "zdm runs: %s\n", err);
		free(err);
		store_close(s);
		return ZDM_EXIT_USAGE;
	}
	rows = xcalloc(n + 1, sizeof *rows);
	for (size_t i = 0; i < n; i++) {
		struct run_summary *r = &rs[i];
		bool held = held_now(s, &h, r);
		const char *st = run_summary_status(r, held);
		int64_t t0 = ts_ms(r->started), t1 = held ? now : ts_ms(r->updated);

		if (c->runs_since != NULL && (t0 < 0 || t0 < since))
			continue;
		if (c->runs_status != NULL && strcmp(st, c->runs_status) != 0)
			continue;
		rows[k].r = r;
		rows[k].status = st;
		rows[k].ms = t0 >= 0 && t1 >= t0 ? t1 - t0 : -1;
		k++;
	}
	qsort(rows, k, sizeof *rows, newest_first);
	if (c->runs_limit > 0 && (size_t)c->runs_limit < k)
		k = (size_t)c->runs_limit;
	if (c->json_output)
		print_json(rows, k);
	else if (n == 0 && c->runs_runbook != NULL)
		printf("no runs of runbook '%s' in %s\n", c->runs_runbook,
		    store_runs_place(s) ? store_runs_place(s) : store_location(s));
	else if (n == 0)
		printf("no runs in %s\n", store_runs_place(s) ? store_runs_place(s) : store_location(s));
	else if (k == 0)
		printf("no runs match in %s (%zu run%s in all)\n",
		    store_runs_place(s) ? store_runs_place(s) : store_location(s), n, n == 1 ? "" : "s");
	else
		print_table(rows, k);
	free(rows);
	for (size_t i = 0; i < h.n; i++) {
		free(h.v[i].name);
		free(h.v[i].run);
	}
	free(h.v);
	store_runs_free(rs, n);
	store_close(s);
	return ZDM_EXIT_OK;
}

/* ---- zdm lock status NAME --------------------------------------------------- */

static json_t *
holder_json(const struct store_lock_info *li)
{
	json_t *o;

	if (!li->known)
		return json_null();
	o = json_pack("{s:I,s:o,s:o,s:o,s:o}", "pid", (json_int_t)li->pid,
	    "host", jstr_or_null(li->host), "actor", jstr_or_null(li->actor),
	    "run", jstr_or_null(li->run_id), "since", jstr_or_null(li->since));
	if (li->epoch >= 0)
		json_object_set_new(o, "epoch", json_integer((json_int_t)li->epoch));
	return o;
}

/* "pid P on host 'H', actor A, run R, since T, epoch E" */
static char *
holder_text(const struct store_lock_info *li)
{
	struct sbuf sb;

	sb_init(&sb);
	sb_addf(&sb, "pid %ld on host '%s'", li->pid, li->host ? li->host : "?");
	if (li->actor != NULL)
		sb_addf(&sb, ", actor %s", li->actor);
	sb_addf(&sb, ", run %s, since %s", li->run_id ? li->run_id : "?", li->since ? li->since : "?");
	if (li->epoch >= 0)
		sb_addf(&sb, ", epoch %lld", li->epoch);
	return sb_detach(&sb);
}

int
cmd_lock(const struct cmd *cmd, struct cli *c)
{
	const char *name = c->argv[1];
	struct store_lock_info li;
	struct store *s;
	char *err = NULL;

	if (strcmp(c->argv[0], "status") != 0) {
		fprintf(stderr, "zdm lock: unknown subcommand '%s' (usage: zdm %s)\n", c->argv[0],
		    cmd->usage);
		return ZDM_EXIT_USAGE;
	}
	s = state_open(c, NULL, "lock status");
	if (s == NULL)
		return ZDM_EXIT_USAGE;
	if (store_lock_info(s, name, &li, &err) != 0) {
		fprintf(stderr, "zdm lock status: %s\n", err);
		free(err);
		store_close(s);
		return ZDM_EXIT_USAGE;
	}
	if (c->json_output) {
		json_t *o = json_pack("{s:s,s:s}", "runbook", name, "lock", li.held ? "held" : "free");
		char *text;

		json_object_set_new(o, "holder", li.held ? holder_json(&li) : json_null());
		if (!li.held)
			json_object_set_new(o, "last_holder", holder_json(&li));
		text = json_dumps(o, JSON_INDENT(2));
		printf("%s\n", text != NULL ? text : "{}");
		free(text);
		json_decref(o);
	} else if (li.held && li.known) {
		char *t = holder_text(&li);

		printf("runbook '%s': held by %s\n", name, t);
		free(t);
	} else if (li.held) {
		printf("runbook '%s': held by another zdm, which has not said who it is yet\n", name);
	} else if (li.known) {
		char *t = holder_text(&li);

		printf("runbook '%s': free (last held by %s)\n", name, t);
		free(t);
	} else {
		printf("runbook '%s': free\n", name);
	}
	store_lock_info_release(&li);
	store_close(s);
	return ZDM_EXIT_OK;
}
