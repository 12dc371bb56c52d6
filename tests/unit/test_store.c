/*
 * test_store.c - unit checks for src/core/store_file.c: finding, listing,
 * reading and appending to runs in a state dir (in a temporary directory),
 * and the run lock seen through the store.
 *
 * unit_store() prints one "ok - ..." / "not ok - ..." line per check and
 * returns the number of failed checks.
 */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/util.h"
#include "core/events.h"
#include "core/journal.h"
#include "core/runstate.h"
#include "core/store.h"

int unit_store(void);

static int failed;

static void
check(bool cond, const char *what)
{
	if (cond) {
		printf("ok - store: %s\n", what);
		return;
	}
	failed++;
	printf("not ok - store: %s\n", what);
}

static int
rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(p);
}

/* a run of runbook NAME with one record, in DIR/runs, made by the store */
static void
new_run(const char *dir, const char *id, const char *name, bool dry)
{
	struct store *s = store_open_dir(dir);
	struct store_writer *w = store_create(s, id, NULL);

	if (w != NULL)
		store_append(w, ev_name(EV_RUN_STARTED), NULL, 0,
		    json_pack("{s:s,s:b}", "name", name, "dry_run", dry), NULL);
	store_close_writer(w);
	store_close(s);
}

static bool
ends_with(const char *s, const char *tail)
{
	size_t a = s ? strlen(s) : 0, b = strlen(tail);

	return s != NULL && a >= b && strcmp(s + a - b, tail) == 0;
}

int
unit_store(void)
{
	char tmpl[] = "/tmp/zdm-store-XXXXXX";
	char *dir = mkdtemp(tmpl), *ref, *run = NULL, *err = NULL, **refs = NULL;
	struct timespec ms20 = { 0, 20 * 1000 * 1000 };
	struct store *s;
	struct store_writer *w;
	struct jlog log;
	struct runstate st;
	size_t n = 0;
	long pid = 0;
	struct store_lock *lk = NULL;
	char *hash = NULL;
	long seq = 0;

	failed = 0;
	if (dir == NULL) {
		check(false, "a temporary state dir");
		return failed;
	}
	new_run(dir, "20260101T000000Z-0001", "web", false);
	nanosleep(&ms20, NULL);
	new_run(dir, "20260101T000000Z-0002", "db", false);
	nanosleep(&ms20, NULL);
	new_run(dir, "20260101T000000Z-0003", "web", true);
	s = store_open_dir(dir);
	check(strcmp(store_location(s), dir) == 0 && store_runs_place(s) != NULL, "a state dir with runs/");
	ref = store_find(s, "20260101T000000Z-0002");
	check(ends_with(ref, "/runs/20260101T000000Z-0002.jsonl"), "find a run by id");
	free(ref);
	check(store_find(s, "nope") == NULL, "no such run");
	ref = store_latest(s, "web", false);
	check(ends_with(ref, "-0001.jsonl"), "the newest run of a runbook, dry runs aside");
	free(ref);
	ref = store_latest(s, "web", true);
	check(ends_with(ref, "-0003.jsonl"), "the newest run of a runbook, dry runs too");
	free(ref);
	ref = store_latest(s, NULL, true);
	check(ends_with(ref, "-0003.jsonl"), "the newest run of any runbook");
	free(ref);
	check(store_list(s, NULL, &refs, &n, &err) == 0 && n == 3 && ends_with(refs[0], "-0001.jsonl") &&
	    ends_with(refs[2], "-0003.jsonl"), "every run, by run id");
	store_list_free(refs, n);
	check(store_list(s, "web", &refs, &n, &err) == 0 && n == 2, "the runs of one runbook");
	store_list_free(refs, n);

	/* read, append after what was read, read again */
	ref = store_find(s, "20260101T000000Z-0001");
	memset(&log, 0, sizeof log);
	check(ref != NULL && store_read(s, ref, &log, &err) == 0 && log.n == 1, "read a run's records");
	w = ref != NULL ? store_open_writer(s, ref, "20260101T000000Z-0001", &log, &err) : NULL;
	check(w != NULL && store_append(w, ev_name(EV_RUN_FINISHED), NULL, 0,
	    json_pack("{s:s}", "status", "succeeded"), &err) == 2, "append a record after them");
	check(w != NULL && strcmp(store_writer_ref(w), ref) == 0, "the writer's ref is the run's");
	check(w != NULL && store_writer_last(w, &seq, &hash) == 0 && seq == 2 && hash != NULL &&
	    strlen(hash) == 64, "the last record's seq and hash");
	free(hash);
	store_close_writer(w);
	jlog_release(&log);
	{
		FILE *null = fopen("/dev/null", "w");

		check(ref != NULL && null != NULL && store_read(s, ref, &log, &err) == 0 && log.n == 2 &&
		    store_verify(s, ref, null, stderr) == 0, "the chain holds");
		if (null != NULL)
			fclose(null);
	}
	runstate_fold(&log, &st, NULL);
	check(st.ended && strcmp(runstate_word(&st), "succeeded") == 0, "the appended record counts");
	runstate_release(&st);
	jlog_release(&log);
	free(ref);

	/* the lock */
	check(!store_locked(s, "web", &pid, &run) && pid == 0 && run == NULL, "no lock: not held");
	check(store_lock(s, "web", "20260101T000000Z-0001", &lk, &err) == 0 && lk != NULL, "take the lock");
	check(lk != NULL && store_lock_check(lk, &err) == 0, "the lock is still ours");
	check(store_locked(s, "web", &pid, &run) && pid == (long)getpid() && run != NULL &&
	    strcmp(run, "20260101T000000Z-0001") == 0, "held: by whom, for which run");
	free(run);
	run = NULL;
	{
		char *lp = path_join(dir, "locks/web.lock");

		check(lk != NULL && unlink(lp) == 0 && store_lock_check(lk, &err) != 0 && err != NULL &&
		    strstr(err, "removed or replaced") != NULL, "a removed lock file: the lock is lost");
		free(lp);
	}
	store_unlock(lk);
	check(!store_locked(s, "web", &pid, &run), "released: not held");
	free(run);
	free(err);
	store_close(s);
	nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
	return failed;
}
