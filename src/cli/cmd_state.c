/*
 * cmd_state.c - zdm state init URL: zdm's schema in a PostgreSQL database;
 * zdm state push DIR URL: the runs of a state dir copied into it
 * (core/store_pg.c, docs/state.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/util.h"
#include "cli/cli.h"
#include "core/store.h"

/* what a push did, for the summary and the exit code */
struct push_tally {
	long copied, records, skipped, refused;
	long broken;		/* refused: a chain that does not verify, or a run that
				 * differs from PostgreSQL's */
	long unusable;		/* refused: a journal that cannot be read or checked */
	long busy;		/* skipped: a live zdm holds its run lock */
	bool stopped;		/* a database error ended the push */
};

/* one journal of the state dir, its ref REF in SRC, into DST */
static void
push_one(struct store *src, struct store *dst, const char *ref, struct push_tally *t)
{
	struct store_import r;
	struct jlog log;
	char *text = NULL, *err = NULL, *holder = NULL;
	const char *run, *name;
	size_t len = 0;
	long pid = 0;
	int why = 0;

	if (store_read_text(src, ref, &text, &len, &log, &err, &why) != 0) {
		fprintf(stderr, "zdm state push: %s: refused, nothing of it copied\n", err);
		t->refused++;
		if (why == 2)
			t->unusable++;
		else
			t->broken++;
		free(err);
		return;
	}
	if (log.n == 0) {
		printf("%s: skipped: no complete record to copy (a run that crashed as its journal "
		    "was made)\n", ref);
		t->skipped++;
		goto out;
	}
	run = json_string_value(json_object_get(log.recs[0], "run"));
	name = json_string_value(json_object_get(json_object_get(log.recs[0], "data"), "name"));
	/* still being written where it is: the rest would come after the copy */
	if (name != NULL && store_locked(src, name, &pid, &holder) &&
	    (holder == NULL || strcmp(holder, run) == 0)) {
		printf("%s: skipped: zdm pid %ld holds the lock of runbook '%s' in %s/locks and is "
		    "writing this run; push again once it ends\n", run, pid, name, store_location(src));
		t->skipped++;
		t->busy++;
		goto out;
	}
	if (store_import(dst, ref, text, log.good_len, &r, &err) != 0) {
		fprintf(stderr, "zdm state push: run %s: %s\n", run, err);
		t->stopped = true;
		goto out;
	}
	if (r.differs > 0) {
		fprintf(stderr, "zdm state push: run %s: refused: its record %ld in %s is not line "
		    "%ld of %s (the run went on differently there, or a record was changed or "
		    "removed); nothing copied, nothing overwritten\n", run, r.differs,
		    store_location(dst), r.differs, ref);
		t->refused++;
		t->broken++;
	} else if (r.busy) {
		printf("%s: skipped: a zdm holds the run lock of runbook '%s' in %s and may be "
		    "writing this run; push again once it ends\n", run, name, store_location(dst));
		t->skipped++;
		t->busy++;
	} else if (r.added > 0) {
		if (r.had > 0)
			printf("%s: appended %ld record%s after the %ld already there%s\n", run, r.added,
			    r.added == 1 ? "" : "s", r.had, log.torn ? " (torn last line left out)" : "");
		else
			printf("%s: copied %ld record%s%s\n", run, r.added, r.added == 1 ? "" : "s",
			    log.torn ? " (torn last line left out)" : "");
		t->copied++;
		t->records += r.added;
	} else if (r.had > (long)log.n) {
		printf("%s: skipped: already there with %ld more record%s (the run went on there)\n",
		    run, r.had - (long)log.n, r.had - (long)log.n == 1 ? "" : "s");
		t->skipped++;
	} else {
		printf("%s: skipped: already there (%zu records)\n", run, log.n);
		t->skipped++;
	}
out:
	free(holder);
	free(err);
	free(text);
	jlog_release(&log);
}

/*
 * zdm state push DIR URL: every DIR/runs/RUN_ID.jsonl, in run-id order, checked
 * and copied run by run.  Exit 0 when every run is there now, 1 when one
 * was refused for its records (a chain that does not verify, a run that
 * differs from PostgreSQL's), else 2 for one that could not be copied (a
 * journal that cannot be read or checked, a run still being written, a
 * database error: the push stops there).
 */
static int
push(const char *dir, const char *url, const char *schema)
{
	struct push_tally t;
	struct store *src, *dst;
	struct stat st;
	char *runs = path_join(dir, "runs"), *err = NULL, **refs = NULL;
	size_t n = 0;
	int rc;

	memset(&t, 0, sizeof t);
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "zdm state push: no state dir '%s' (DIR is where the runs were kept: "
		    "its runs/*.jsonl are copied)\n", dir);
		free(runs);
		return ZDM_EXIT_USAGE;
	}
	if (stat(runs, &st) != 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "zdm state push: '%s' is not a state dir (no runs/ in it)\n", dir);
		free(runs);
		return ZDM_EXIT_USAGE;
	}
	free(runs);
	if (!store_is_pg(url)) {
		fprintf(stderr, "zdm state push: URL must be a PostgreSQL connection string "
		    "(postgresql://USER@HOST:PORT/DB or key=value conninfo), made with zdm state init\n");
		return ZDM_EXIT_USAGE;
	}
	dst = store_open_pg(url, schema, &err);
	if (dst == NULL) {
		fprintf(stderr, "zdm state push: %s\n", err);
		free(err);
		return ZDM_EXIT_USAGE;
	}
	src = store_open_dir(dir);
	if (store_list(src, NULL, &refs, &n, &err) != 0) {
		fprintf(stderr, "zdm state push: %s\n", err);
		free(err);
		store_close(src);
		store_close(dst);
		return ZDM_EXIT_USAGE;
	}
	for (size_t i = 0; i < n && !t.stopped; i++)
		push_one(src, dst, refs[i], &t);
	if (t.stopped)
		fprintf(stderr, "zdm state push: stopped: the runs before are copied whole, nothing of "
		    "this one; push again to copy it and the rest\n");
	printf("pushed %s to %s: copied %ld run%s / %ld record%s, skipped %ld, refused %ld\n",
	    store_location(src), store_location(dst), t.copied, t.copied == 1 ? "" : "s", t.records,
	    t.records == 1 ? "" : "s", t.skipped, t.refused);
	if (t.copied == 0 && t.refused == 0 && t.busy == 0 && !t.stopped)
		printf("nothing to copy: %s\n", n == 0 ? "no runs in the state dir" :
		    "every run of the state dir is there already");
	store_list_free(refs, n);
	store_close(src);
	store_close(dst);
	if (t.broken > 0)
		rc = ZDM_EXIT_ROLLED_BACK;	/* 1: a run was refused for its records */
	else if (t.unusable > 0 || t.busy > 0 || t.stopped)
		rc = ZDM_EXIT_USAGE;
	else
		rc = ZDM_EXIT_OK;
	return rc;
}

int
cmd_state(const struct cmd *cmd, struct cli *c)
{
	const char *sub = c->argv[0], *schema = c->schema;
	bool init = strcmp(sub, "init") == 0;
	char *out = NULL, *err = NULL;

	if (!init && strcmp(sub, "push") != 0) {
		fprintf(stderr, "zdm state: unknown subcommand '%s' (usage: zdm %s)\n", sub, cmd->usage);
		return ZDM_EXIT_USAGE;
	}
	if (c->argc != (init ? 2 : 3)) {
		fprintf(stderr, "zdm state %s: %s (usage: zdm %s)\n", sub,
		    c->argc > (init ? 2 : 3) ? "too many arguments" :
		    init ? "name the database: zdm state init URL" :
		    "name the state dir and the database: zdm state push DIR URL", cmd->usage);
		return ZDM_EXIT_USAGE;
	}
	if (c->state != NULL || c->state_dir != NULL) {
		fprintf(stderr, "zdm state %s: name the database as URL%s, not with --state or "
		    "--state-dir\n", sub, init ? "" : " and the state dir as DIR");
		return ZDM_EXIT_USAGE;
	}
	if (schema == NULL)
		schema = getenv("ZDM_STATE_SCHEMA") && *getenv("ZDM_STATE_SCHEMA") ?
		    getenv("ZDM_STATE_SCHEMA") : NULL;
	if (!init)
		return push(c->argv[1], c->argv[2], schema);
	if (!store_is_pg(c->argv[1])) {
		fprintf(stderr, "zdm state init: URL must be a PostgreSQL connection string "
		    "(postgresql://USER@HOST:PORT/DB or key=value conninfo); a state dir needs no init\n");
		return ZDM_EXIT_USAGE;
	}
	if (store_init_pg(c->argv[1], schema, &out, &err) != 0) {
		fprintf(stderr, "zdm state init: %s\n", err);
		free(err);
		return ZDM_EXIT_USAGE;
	}
	printf("%s\n", out);
	free(out);
	return ZDM_EXIT_OK;
}
