/*
 * store_file.c - runs kept in a state dir (store.h):
 *
 *   STATE_DIR/runs/RUN_ID.jsonl   a run's journal (journal.c); its ref is the path
 *   STATE_DIR/locks/NAME.lock     one run of runbook NAME at a time (lock.c)
 *
 * Which run is newest is which journal was written to last (run ids share
 * a second).  Listing also takes a runs directory itself for the state dir.
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/util.h"
#include "core/lock.h"
#include "core/store.h"

struct file_store {
	struct store s;
	char *runs;		/* STATE_DIR/runs */
	char *place;		/* that, or STATE_DIR when it is a runs dir; NULL if neither */
};

struct store_writer {
	struct journal *j;
};

static bool
is_journal_name(const char *n)
{
	size_t l = strlen(n);

	return l >= 7 && strcmp(n + l - 6, ".jsonl") == 0;
}

/* the `name` in the first record of a journal (cheap: first line only);
 * *dry tells whether it was a dry run */
static char *
journal_runbook_name(const char *path, bool *dry)
{
	FILE *f = fopen(path, "rb");
	char *line = NULL, *name = NULL;
	size_t cap = 0;
	json_t *j;

	if (f == NULL)
		return NULL;
	if (getline(&line, &cap, f) > 0) {
		j = json_loads(line, 0, NULL);
		if (j != NULL) {
			const char *n = json_string_value(json_object_get(json_object_get(j, "data"), "name"));

			name = n ? xstrdup(n) : NULL;
			*dry = json_is_true(json_object_get(json_object_get(j, "data"), "dry_run"));
			json_decref(j);
		}
	}
	free(line);
	fclose(f);
	return name;
}

/* is the journal at PATH a run of runbook NAME (any when NULL), and a dry
 * run only when with_dry; or one that cannot tell (see below) */
static bool
of_runbook(const char *path, const char *name, bool with_dry)
{
	bool dry = false;
	char *n;
	bool yes;

	if (name == NULL && with_dry)
		return true;
	n = journal_runbook_name(path, &dry);
	/* a journal whose first record cannot be read (empty, torn: a crash as
	 * it was made) may be this runbook's newest run: it counts, so that the
	 * caller reports it instead of acting on the run before it */
	if (n == NULL)
		return true;
	yes = (name == NULL || strcmp(n, name) == 0) && (!dry || with_dry);
	free(n);
	return yes;
}

static char *
fs_find(struct store *s, const char *run_id)
{
	char *rel = xasprintf("runs/%s.jsonl", run_id), *p = path_join(s->location, rel);

	free(rel);
	if (access(p, R_OK) != 0) {
		free(p);
		return NULL;
	}
	return p;
}

static char *
fs_latest(struct store *s, const char *name, bool with_dry)
{
	struct file_store *fs = (struct file_store *)s;
	DIR *d = opendir(fs->runs);
	struct dirent *e;
	struct timespec bt = { 0, 0 };
	char *best = NULL;

	if (d == NULL)
		return NULL;
	while ((e = readdir(d)) != NULL) {
		struct stat st;
		char *p;

		if (!is_journal_name(e->d_name))
			continue;
		/* newest = most recently written: run ids share a second */
		p = path_join(fs->runs, e->d_name);
		if (stat(p, &st) != 0 || (best != NULL &&
		    (st.st_mtim.tv_sec < bt.tv_sec || (st.st_mtim.tv_sec == bt.tv_sec &&
		    st.st_mtim.tv_nsec <= bt.tv_nsec))) || !of_runbook(p, name, with_dry)) {
			free(p);
			continue;
		}
		bt = st.st_mtim;
		free(best);
		best = p;
	}
	closedir(d);
	return best;
}

static const char *
fs_runs_place(struct store *s)
{
	return ((struct file_store *)s)->place;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* every .jsonl file, sorted by name (= by run id: time, then a random part) */
static int
fs_list(struct store *s, const char *name, char ***refs, size_t *n, char **err)
{
	struct file_store *fs = (struct file_store *)s;
	DIR *d = fs->place != NULL ? opendir(fs->place) : NULL;
	struct dirent *e;
	size_t cap = 0;

	*refs = NULL;
	*n = 0;
	if (d == NULL)
		return seterr(err, "cannot read '%s': %s", fs->place ? fs->place : fs->runs,
		    fs->place ? strerror(errno) : strerror(ENOENT));
	while ((e = readdir(d)) != NULL) {
		char *p;

		if (!is_journal_name(e->d_name))
			continue;
		p = path_join(fs->place, e->d_name);
		if (name != NULL && !of_runbook(p, name, true)) {
			free(p);
			continue;
		}
		if (*n == cap) {
			cap = cap ? cap * 2 : 16;
			*refs = xrealloc(*refs, cap * sizeof **refs);
		}
		(*refs)[(*n)++] = p;
	}
	closedir(d);
	if (*n > 0)
		qsort(*refs, *n, sizeof **refs, cmp_str);
	return 0;
}

static int
fs_read(struct store *s, const char *ref, struct jlog *log, char **err)
{
	return journal_read(ref, log, err);
}

static void
fs_read_unchecked(struct store *s, const char *ref, struct jlog *log)
{
	FILE *f = fopen(ref, "rb");
	char *line = NULL;
	size_t cap = 0, lcap = 0;
	ssize_t len;

	memset(log, 0, sizeof *log);
	if (f == NULL)
		return;
	while ((len = getline(&line, &cap, f)) > 0) {
		json_t *r = json_loadb(line, (size_t)len, 0, NULL);

		if (!json_is_object(r)) {
			json_decref(r);
			continue;
		}
		if (log->n == lcap) {
			lcap = lcap ? lcap * 2 : 16;
			log->recs = xrealloc(log->recs, lcap * sizeof *log->recs);
		}
		log->recs[log->n++] = r;
	}
	free(line);
	fclose(f);
}

static int
fs_verify(struct store *s, const char *ref, FILE *out, FILE *errout)
{
	return journal_verify(ref, out, errout);
}

static struct store_writer *
fs_open_writer(struct store *s, const char *ref, const char *run_id,
    const struct jlog *log, char **err)
{
	struct journal *j = journal_reopen(ref, run_id, log, err);
	struct store_writer *w;

	if (j == NULL)
		return NULL;
	w = xcalloc(1, sizeof *w);
	w->j = j;
	return w;
}

static long
fs_append(struct store_writer *w, const char *event, const char *step, int attempt,
    json_t *data, char **err)
{
	return journal_append(w->j, event, step, attempt, data, err);
}

static void
fs_close_writer(struct store_writer *w)
{
	journal_close(w->j);
	free(w);
}

static int
fs_lock(struct store *s, const char *name, const char *run_id, int *lk, char **err)
{
	return lock_acquire(s->location, name, run_id, lk, err);
}

static void
fs_unlock(struct store *s, int lk)
{
	lock_release(lk);
}

static bool
fs_locked(struct store *s, const char *name, long *pid, char **run)
{
	return lock_held(s->location, name, pid, run);
}

static void
fs_free(struct store *s)
{
	struct file_store *fs = (struct file_store *)s;

	free(fs->runs);
	free(fs->place);
	free(s->location);
	free(fs);
}

static const struct store_ops file_ops = {
	.find = fs_find,
	.latest = fs_latest,
	.runs_place = fs_runs_place,
	.list = fs_list,
	.read = fs_read,
	.read_unchecked = fs_read_unchecked,
	.verify = fs_verify,
	.open_writer = fs_open_writer,
	.append = fs_append,
	.close_writer = fs_close_writer,
	.lock = fs_lock,
	.unlock = fs_unlock,
	.locked = fs_locked,
	.free = fs_free,
};

struct store *
store_open_dir(const char *state_dir)
{
	struct file_store *fs = xcalloc(1, sizeof *fs);
	const char *b = strrchr(state_dir, '/');
	struct stat st;

	fs->s.ops = &file_ops;
	fs->s.location = xstrdup(state_dir);
	fs->runs = path_join(state_dir, "runs");
	b = b != NULL ? b + 1 : state_dir;
	if (stat(fs->runs, &st) == 0 && S_ISDIR(st.st_mode))
		fs->place = xstrdup(fs->runs);
	else if (strcmp(b, "runs") == 0 && stat(state_dir, &st) == 0 && S_ISDIR(st.st_mode))
		fs->place = xstrdup(state_dir);
	return &fs->s;
}

char *
store_dir_of_journal(const char *path)
{
	char *runs = path_dirname(path), *dir = path_dirname(runs);

	free(runs);
	return dir;
}
