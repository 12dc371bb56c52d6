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
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/proc.h"
#include "base/util.h"
#include "core/lock.h"
#include "core/store.h"
#include "zdm/step.h"

struct file_store {
	struct store s;
	char *runs;		/* STATE_DIR/runs */
	char *place;		/* that, or STATE_DIR when it is a runs dir; NULL if neither */
	off_t watched;		/* store_watch: the size of the watched journal last seen */
};

struct file_writer {
	struct store_writer w;
	struct journal *j;
};

struct file_lock {
	struct store_lock l;
	int fd;			/* flock'd STATE_DIR/locks/NAME.lock */
	char *name;
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

/* the file's bytes, then journal_read_text over them: one read, so what
 * was checked is what the caller gets */
static int
fs_read_text(struct store *s, const char *ref, char **text, size_t *len, struct jlog *log,
    char **err, int *why)
{
	int fd = open(ref, O_RDONLY | O_CLOEXEC);
	struct sbuf sb;
	char buf[65536];
	ssize_t r;

	memset(log, 0, sizeof *log);
	*text = NULL;
	*len = 0;
	*why = 2;
	if (fd < 0)
		return seterr(err, "cannot read journal '%s': %s", ref, strerror(errno));
	sb_init(&sb);
	while ((r = read(fd, buf, sizeof buf)) != 0) {
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;

			close(fd);
			sb_release(&sb);
			return seterr(err, "cannot read journal '%s': %s", ref, strerror(e));
		}
		sb_add(&sb, buf, (size_t)r);
	}
	close(fd);
	*len = sb.len;
	*text = sb_detach(&sb);
	if (journal_read_text(ref, *text, *len, log, err, why) != 0) {
		free(*text);
		*text = NULL;
		*len = 0;
		return -1;
	}
	return 0;
}

static int
fs_verify(struct store *s, const char *ref, FILE *out, FILE *errout)
{
	return journal_verify(ref, out, errout);
}

static struct store_writer *
fs_writer(struct store *s, struct journal *j)
{
	struct file_writer *fw;

	if (j == NULL)
		return NULL;
	fw = xcalloc(1, sizeof *fw);
	fw->w.store = s;
	fw->j = j;
	return &fw->w;
}

static struct store_writer *
fs_create(struct store *s, const char *run_id, char **err)
{
	char *rel = xasprintf("runs/%s.jsonl", run_id), *path = path_join(s->location, rel);
	struct journal *j = journal_create(path, run_id, err);

	free(rel);
	free(path);
	return fs_writer(s, j);
}

static struct store_writer *
fs_open_writer(struct store *s, const char *ref, const char *run_id,
    const struct jlog *log, char **err)
{
	return fs_writer(s, journal_reopen(ref, run_id, log, err));
}

static const char *
fs_writer_ref(const struct store_writer *w)
{
	return journal_path(((const struct file_writer *)w)->j);
}

static void
fs_set_echo(struct store_writer *w, void (*fn)(const char *line, void *arg), void *arg)
{
	journal_set_echo(((struct file_writer *)w)->j, fn, arg);
}

/* read from the journal's last 64 KiB */
static int
fs_last(struct store_writer *w, long *seq, char **hash)
{
	char buf[65536];
	int fd = open(fs_writer_ref(w), O_RDONLY | O_CLOEXEC);
	off_t end, from;
	ssize_t n;
	char *nl, *start;
	json_t *rec;
	int rc = -1;

	if (fd < 0)
		return -1;
	end = lseek(fd, 0, SEEK_END);
	from = end > (off_t)sizeof buf - 1 ? end - (off_t)sizeof buf + 1 : 0;
	n = end > 0 ? pread(fd, buf, (size_t)(end - from), from) : 0;
	close(fd);
	if (n <= 1 || buf[n - 1] != '\n')
		return -1;
	buf[n - 1] = '\0';
	nl = strrchr(buf, '\n');
	start = nl != NULL ? nl + 1 : buf;
	if (nl == NULL && from > 0)
		return -1;		/* a line longer than the buffer */
	rec = json_loads(start, 0, NULL);
	if (json_is_string(json_object_get(rec, "hash")) &&
	    json_is_integer(json_object_get(rec, "seq"))) {
		*seq = (long)json_integer_value(json_object_get(rec, "seq"));
		*hash = xstrdup(json_string_value(json_object_get(rec, "hash")));
		rc = 0;
	}
	json_decref(rec);
	return rc;
}

static long
fs_append(struct store_writer *w, const char *event, const char *step, int attempt,
    json_t *data, char **err)
{
	return journal_append(((struct file_writer *)w)->j, event, step, attempt, data, err);
}

static void
fs_set_lazy(struct store_writer *w, bool on)
{
	journal_set_lazy(((struct file_writer *)w)->j, on);
}

static int
fs_sync(struct store_writer *w, char **err)
{
	return journal_sync(((struct file_writer *)w)->j, err);
}

static void
fs_close_writer(struct store_writer *w)
{
	journal_close(((struct file_writer *)w)->j);
	free(w);
}

/* no notifications here: a waiter sees the journal grow */
static off_t
size_of(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? st.st_size : -1;
}

static int
fs_behind(struct store_writer *w)
{
	return journal_behind(((struct file_writer *)w)->j);
}

static int
fs_watch(struct store *s, const char *ref, bool on, char **err)
{
	((struct file_store *)s)->watched = on ? size_of(ref) : -1;
	return 0;
}

/* look at the journal's size every 250 ms: a record makes it grow */
static int
fs_wait(struct store *s, const char *ref, int64_t ms, char **err)
{
	struct file_store *fs = (struct file_store *)s;
	int64_t end = zdm_now_ms() + ms;

	for (;;) {
		off_t now = size_of(ref);
		int64_t left = end - zdm_now_ms();

		if (now != fs->watched) {
			fs->watched = now;
			return 1;
		}
		if (left <= 0 || zdm_sleep_ms(left < 250 ? left : 250) != 0)
			return 0;
	}
}

static int
fs_lock(struct store *s, const char *name, const char *run_id, struct store_lock **lk,
    char **err)
{
	struct file_lock *fl;
	int fd;
	int rc = lock_acquire(s->location, name, run_id, &fd, err);

	if (rc != 0)
		return rc;
	fl = xcalloc(1, sizeof *fl);
	fl->l.store = s;
	fl->fd = fd;
	fl->name = xstrdup(name);
	*lk = &fl->l;
	return 0;
}

/* the file flock'd is still the one at the lock's path */
static int
fs_lock_check(struct store_lock *lk, char **err)
{
	struct file_lock *fl = (struct file_lock *)lk;

	return lock_still_held(fl->fd, lk->store->location, fl->name, err);
}

static void
fs_unlock(struct store_lock *lk)
{
	struct file_lock *fl = (struct file_lock *)lk;

	lock_release(fl->fd);
	free(fl->name);
	free(fl);
}

static bool
fs_locked(struct store *s, const char *name, long *pid, char **run)
{
	return lock_held(s->location, name, pid, run);
}

static char *
jdup(const json_t *o, const char *k)
{
	const char *v = json_string_value(json_object_get(o, k));

	return v != NULL ? xstrdup(v) : NULL;
}

static int
fs_lock_info(struct store *s, const char *name, struct store_lock_info *li, char **err)
{
	json_t *h;

	if (lock_inspect(s->location, name, &li->held, &h) != 0)
		return seterr(err, "runbook name '%s' cannot name a lock file", name);
	if (h != NULL && json_is_integer(json_object_get(h, "pid"))) {
		li->known = true;
		li->pid = (long)json_integer_value(json_object_get(h, "pid"));
		li->host = jdup(h, "host");
		li->actor = jdup(h, "actor");
		li->run_id = jdup(h, "run");
		li->since = jdup(h, "since");
		if (li->run_id != NULL && *li->run_id == '\0') {
			free(li->run_id);
			li->run_id = NULL;
		}
	}
	json_decref(h);
	return 0;
}

/* the record of the line [p, end) (no newline), or NULL */
static json_t *
line_rec(const char *p, const char *end)
{
	json_t *r = json_loadb(p, (size_t)(end - p), 0, NULL);

	if (r != NULL && !json_is_object(r)) {
		json_decref(r);
		r = NULL;
	}
	return r;
}

/* a growable read buffer, reused across journals */
struct rbuf {
	char *p;
	size_t cap;
};

/* LEN bytes of FD at OFF into B; the bytes read, or -1 */
static ssize_t
read_at(int fd, struct rbuf *b, off_t off, size_t len)
{
	size_t got = 0;

	if (b->cap < len + 1) {
		b->cap = len + 1 > 65536 ? len + 1 : 65536;
		b->p = xrealloc(b->p, b->cap);
	}
	while (got < len) {
		ssize_t r = pread(fd, b->p + got, len - got, off + (off_t)got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

/* the marks (struct rs_marks) of the whole lines in [lo, end), from the end
 * back until the last record that places the run and the last that acts
 * are found; the records they point to go to keep[] (at most 3, owned).
 * True when both were found. */
static bool
marks_back(const char *lo, const char *end, struct rs_marks *m, json_t **keep, size_t *nkeep)
{
	bool have_last = false;

	while (end > lo && end[-1] != '\n')
		end--;		/* a torn last line: left out, as reading does */
	while (end > lo && (m->place == NULL || m->place == m->first || m->act == NULL)) {
		const char *p = end - 1;
		json_t *r;
		bool kept = false;

		while (p > lo && p[-1] != '\n')
			p--;
		r = line_rec(p, end - 1);
		end = p;
		if (r == NULL)
			continue;
		if (!have_last) {
			m->last = r;
			have_last = kept = true;
		}
		if ((m->place == NULL || m->place == m->first) && runstate_places(r)) {
			m->place = r;
			kept = true;
		}
		if (m->act == NULL && runstate_acts(r)) {
			m->act = r;
			kept = true;
		}
		if (kept)
			keep[(*nkeep)++] = r;
		else
			json_decref(r);
	}
	return m->place != NULL && m->place != m->first && m->act != NULL;
}

#define HEAD_MAX (64 * 1024)	/* the first line is looked for in this much */
#define TAIL_MAX (256 * 1024)	/* the tail read first */

/*
 * The summary of the journal at PATH (a run of runbook NAME, or any), from
 * its first line and the lines at its end back to its last record that says
 * where the run stands and its last step. or undo. record (struct rs_marks).
 * A journal up to HEAD_MAX + TAIL_MAX is read at once; a longer one, its
 * first line and its last TAIL_MAX, and the rest only when the marks are
 * not in that tail.  A torn last line is left out, as reading does.  1 and
 * *out, 0 when it is another runbook's; a journal whose first record cannot
 * be read is "unreadable".
 */
static int
journal_summary(const char *path, const char *run_id, const char *name, struct rbuf *b,
    struct run_summary *out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	ssize_t n;
	const char *nl;
	size_t first_end, size;
	json_t *first = NULL, *keep[3];
	size_t nkeep = 0;
	struct rs_marks m = { NULL, NULL, NULL, NULL };
	int rc = 1;

	memset(out, 0, sizeof *out);
	if (fd < 0 || fstat(fd, &st) != 0 || st.st_size <= 0)
		goto unreadable;
	size = (size_t)st.st_size;
	n = read_at(fd, b, 0, size <= HEAD_MAX + TAIL_MAX ? size : HEAD_MAX);
	if (n > 0 && (size_t)n < size && memchr(b->p, '\n', (size_t)n) == NULL)
		n = read_at(fd, b, 0, size);	/* a first line longer than HEAD_MAX */
	if (n <= 0 || (nl = memchr(b->p, '\n', (size_t)n)) == NULL ||
	    (first = line_rec(b->p, nl)) == NULL)
		goto unreadable;
	if (name != NULL) {
		const char *rn = json_string_value(json_object_get(json_object_get(first, "data"), "name"));

		if (rn == NULL || strcmp(rn, name) != 0) {
			rc = 0;
			goto out;
		}
	}
	first_end = (size_t)(nl - b->p) + 1;
	m.first = m.last = first;
	m.place = runstate_places(first) ? first : NULL;
	if ((size_t)n == size) {
		marks_back(b->p + first_end, b->p + n, &m, keep, &nkeep);
	} else {
		/* the tail, from its first whole line */
		off_t from = (off_t)(size - TAIL_MAX);
		const char *lo;

		if ((size_t)from < first_end)
			from = (off_t)first_end;
		n = read_at(fd, b, from, size - (size_t)from);
		if (n <= 0)
			goto unreadable;
		lo = b->p;
		if ((size_t)from > first_end) {
			lo = memchr(b->p, '\n', (size_t)n);
			lo = lo != NULL ? lo + 1 : b->p + n;
		}
		if (!marks_back(lo, b->p + n, &m, keep, &nkeep) && (size_t)from > first_end) {
			/* not in the tail: the whole journal after all */
			while (nkeep > 0)
				json_decref(keep[--nkeep]);
			m.last = first;
			m.place = runstate_places(first) ? first : NULL;
			m.act = NULL;
			n = read_at(fd, b, 0, size);
			if (n <= 0)
				goto unreadable;
			marks_back(b->p + first_end, b->p + n, &m, keep, &nkeep);
		}
	}
	run_summary_fold(&m, out);
	if (out->run_id == NULL) {
		const char *const v[9] = { run_id, out->name, out->runbook, out->actor, out->host,
			out->started, out->updated, out->step, out->state };
		char *old = out->mem;

		out->mem = NULL;
		run_summary_strings(out, v);
		free(old);
	}
	goto out;
unreadable:
	{
		const char *const v[9] = { run_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
			"unreadable" };

		run_summary_release(out);
		run_summary_strings(out, v);
	}
out:
	if (fd >= 0)
		close(fd);
	json_decref(first);
	while (nkeep > 0)
		json_decref(keep[--nkeep]);
	return rc;
}

/* every journal is read (its head and tail): q->newest does not spare any */
static int
fs_runs(struct store *s, const struct runs_query *q, struct run_summary **out, size_t *n,
    char **err)
{
	struct file_store *fs = (struct file_store *)s;
	DIR *d;
	struct dirent *e;
	struct rbuf b = { NULL, 0 };
	size_t cap = 0;

	if (fs->place == NULL)
		return 0;	/* no runs yet */
	d = opendir(fs->place);
	if (d == NULL)
		return seterr(err, "cannot read '%s': %s", fs->place, strerror(errno));
	while ((e = readdir(d)) != NULL) {
		char *p, *id;

		if (!is_journal_name(e->d_name))
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 64;
			*out = xrealloc(*out, cap * sizeof **out);
		}
		p = path_join(fs->place, e->d_name);
		id = xstrndup(e->d_name, strlen(e->d_name) - 6);
		if (journal_summary(p, id, q->name, &b, &(*out)[*n]) == 1) {
			struct run_summary *r = &(*out)[*n];

			if (q->since != NULL && r->started != NULL && strcmp(r->started, q->since) < 0)
				run_summary_release(r);
			else
				(*n)++;
		}
		free(id);
		free(p);
	}
	closedir(d);
	free(b.p);
	return 0;
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
	.create = fs_create,
	.open_writer = fs_open_writer,
	.writer_ref = fs_writer_ref,
	.set_echo = fs_set_echo,
	.last = fs_last,
	.append = fs_append,
	.close_writer = fs_close_writer,
	.set_lazy = fs_set_lazy,
	.sync = fs_sync,
	.watch = fs_watch,
	.behind = fs_behind,
	.wait = fs_wait,
	.lock = fs_lock,
	.lock_check = fs_lock_check,
	.unlock = fs_unlock,
	.locked = fs_locked,
	.lock_info = fs_lock_info,
	.runs = fs_runs,
	.read_text = fs_read_text,
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
	fs->s.dir = fs->s.location;
	fs->watched = -1;
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
