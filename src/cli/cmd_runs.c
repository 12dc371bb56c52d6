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

/* one JSON array, a run an object on a line of its own */
static void
print_json(const struct row *rows, size_t n)
{
	fputs("[", stdout);
	for (size_t i = 0; i < n; i++) {
		const struct run_summary *r = rows[i].r;
		json_t *o = json_object();
		char *text;

		json_object_set_new(o, "run", jstr_or_null(r->run_id));
		json_object_set_new(o, "runbook", jstr_or_null(r->name));
		json_object_set_new(o, "file", jstr_or_null(r->runbook));
		json_object_set_new(o, "status", jstr_or_null(rows[i].status));
		json_object_set_new(o, "dry_run", json_boolean(r->dry_run));
		json_object_set_new(o, "actor", jstr_or_null(r->actor));
		json_object_set_new(o, "host", jstr_or_null(r->host));
		json_object_set_new(o, "started", jstr_or_null(r->started));
		json_object_set_new(o, "updated", jstr_or_null(r->updated));
		json_object_set_new(o, "duration_ms", rows[i].ms >= 0 ? json_integer(rows[i].ms) : json_null());
		json_object_set_new(o, "step", jstr_or_null(r->step));
		json_object_set_new(o, "records", json_integer((json_int_t)r->records));
		text = json_dumps(o, JSON_COMPACT);
		printf("%s\n%s", i ? "," : "", text != NULL ? text : "{}");
		free(text);
		json_decref(o);
	}
	fputs(n > 0 ? "\n]\n" : "]\n", stdout);
}

enum { C_RUN, C_RUNBOOK, C_STATUS, C_ACTOR, C_HOST, C_STARTED, C_DURATION, C_STEP, NCOLS };

static const char *
or_dash(const char *s)
{
	return s != NULL ? s : "-";
}

/* the cells of row R (the runbook's without " (dry run)"; started to the
 * second); dur: >= 32 bytes */
static void
cells(const struct row *r, const char *cell[NCOLS], char *dur)
{
	strcpy(dur, "-");
	if (r->ms >= 0)
		fmt_duration(r->ms, dur, 32);
	cell[C_RUN] = r->r->run_id ? r->r->run_id : "?";
	cell[C_RUNBOOK] = r->r->name ? r->r->name : "?";
	cell[C_STATUS] = r->status;
	cell[C_ACTOR] = or_dash(r->r->actor);
	cell[C_HOST] = or_dash(r->r->host);
	cell[C_STARTED] = r->r->started != NULL && strlen(r->r->started) >= 19 ? r->r->started : "-";
	cell[C_DURATION] = dur;
	cell[C_STEP] = or_dash(r->r->step);
}

static size_t
cell_width(const struct row *r, int k, const char *cell)
{
	if (k == C_RUNBOOK && r->r->dry_run)
		return strlen(cell) + strlen(" (dry run)");
	if (k == C_STARTED && strcmp(cell, "-") != 0)
		return 20;	/* 2026-11-21T10:00:01Z */
	return strlen(cell);
}

static void
print_table(const struct row *rows, size_t n)
{
	static const char *const head[NCOLS] = {
		"RUN", "RUNBOOK", "STATUS", "ACTOR", "HOST", "STARTED", "DURATION", "STEP",
	};
	const char *cell[NCOLS];
	char dur[32];
	size_t w[NCOLS];

	for (int k = 0; k < NCOLS; k++)
		w[k] = strlen(head[k]);
	for (size_t i = 0; i < n; i++) {
		cells(&rows[i], cell, dur);
		for (int k = 0; k < NCOLS; k++)
			if (cell_width(&rows[i], k, cell[k]) > w[k])
				w[k] = cell_width(&rows[i], k, cell[k]);
	}
	for (int k = 0; k < NCOLS; k++)
		printf(k + 1 < NCOLS ? "%-*s  " : "%-*s\n", k + 1 < NCOLS ? (int)w[k] : 0, head[k]);
	for (size_t i = 0; i < n; i++) {
		cells(&rows[i], cell, dur);
		for (int k = 0; k < NCOLS; k++) {
			int pad = (int)(w[k] - cell_width(&rows[i], k, cell[k]));

			if (k == C_RUNBOOK && rows[i].r->dry_run)
				printf("%s (dry run)", cell[k]);
			else if (k == C_STARTED && strcmp(cell[k], "-") != 0)
				printf("%.19sZ", cell[k]);
			else
				fputs(cell[k], stdout);
			if (k + 1 < NCOLS)
				printf("%*s", pad + 2, "");
		}
		putchar('\n');
	}
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
	char *err = NULL, since_ts[40];
	int64_t since = 0;
	struct runs_query q = { NULL, NULL, 0 };
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
	/* thousands of lines: not a write each (nothing was written to stdout yet) */
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	clock_gettime(CLOCK_REALTIME, &wall);
	now = (int64_t)wall.tv_sec * 1000 + wall.tv_nsec / 1000000;
	q.name = c->runs_runbook;
	if (c->runs_since != NULL && since >= 0) {
		time_t t = (time_t)(since / 1000);
		struct tm tm;

		gmtime_r(&t, &tm);
		strftime(since_ts, sizeof since_ts, "%Y-%m-%dT%H:%M:%S", &tm);
		snprintf(since_ts + strlen(since_ts), sizeof since_ts - strlen(since_ts), ".%03dZ",
		    (int)(since % 1000));
		q.since = since_ts;
	}
	/* the status is known only here: with --status every run is looked at */
	if (c->runs_status == NULL && c->runs_limit > 0)
		q.newest = (size_t)c->runs_limit;
	if (store_runs(s, &q, &rs, &n, &err) != 0) {
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
	else if (k > 0)
		print_table(rows, k);
	else if (c->runs_status == NULL && c->runs_since == NULL && c->runs_runbook != NULL)
		printf("no runs of runbook '%s' in %s\n", c->runs_runbook,
		    store_runs_place(s) ? store_runs_place(s) : store_location(s));
	else if (c->runs_status == NULL && c->runs_since == NULL)
		printf("no runs in %s\n", store_runs_place(s) ? store_runs_place(s) : store_location(s));
	else
		printf("no runs match in %s\n", store_runs_place(s) ? store_runs_place(s) :
		    store_location(s));
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
