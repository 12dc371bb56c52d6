/*
 * store.c - the door to stored runs (store.h): each call goes to the
 * store's backend.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/proc.h"
#include "base/util.h"
#include "core/store.h"

void
store_close(struct store *s)
{
	if (s != NULL)
		s->ops->free(s);
}

bool
store_fences(const struct store *s)
{
	return s->ops->fences;
}

void
store_set_retry(struct store *s, int64_t timeout_ms,
    void (*fn)(const struct store_conn *c, void *arg), void *arg)
{
	if (s->ops->set_retry != NULL)
		s->ops->set_retry(s, timeout_ms, fn, arg);
}

const char *
store_location(const struct store *s)
{
	return s->location;
}

char *
store_find(struct store *s, const char *run_id)
{
	char *v;

	s->busy++;
	v = s->ops->find(s, run_id);
	s->busy--;
	return v;
}

char *
store_latest(struct store *s, const char *name, bool with_dry)
{
	char *v;

	s->busy++;
	v = s->ops->latest(s, name, with_dry);
	s->busy--;
	return v;
}

const char *
store_runs_place(struct store *s)
{
	return s->ops->runs_place(s);
}

int
store_list(struct store *s, const char *name, char ***refs, size_t *n, char **err)
{
	int v;

	s->busy++;
	v = s->ops->list(s, name, refs, n, err);
	s->busy--;
	return v;
}

void
store_list_free(char **refs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(refs[i]);
	free(refs);
}

int
store_read(struct store *s, const char *ref, struct jlog *log, char **err)
{
	int v;

	s->busy++;
	v = s->ops->read(s, ref, log, err);
	s->busy--;
	return v;
}

void
store_read_unchecked(struct store *s, const char *ref, struct jlog *log)
{
	s->ops->read_unchecked(s, ref, log);
}

int
store_verify(struct store *s, const char *ref, FILE *out, FILE *errout)
{
	return s->ops->verify(s, ref, out, errout);
}

struct store_writer *
store_create(struct store *s, const char *run_id, char **err)
{
	struct store_writer *v;

	s->busy++;
	v = s->ops->create(s, run_id, err);
	s->busy--;
	return v;
}

struct store_writer *
store_open_writer(struct store *s, const char *ref, const char *run_id,
    const struct jlog *log, char **err)
{
	struct store_writer *v;

	s->busy++;
	v = s->ops->open_writer(s, ref, run_id, log, err);
	s->busy--;
	return v;
}

const char *
store_writer_ref(const struct store_writer *w)
{
	return w->store->ops->writer_ref(w);
}

void
store_set_echo(struct store_writer *w, void (*fn)(const char *line, void *arg), void *arg)
{
	w->store->ops->set_echo(w, fn, arg);
}

int
store_writer_last(struct store_writer *w, long *seq, char **hash)
{
	int v;

	w->store->busy++;
	v = w->store->ops->last(w, seq, hash);
	w->store->busy--;
	return v;
}

long
store_append(struct store_writer *w, const char *event, const char *step, int attempt,
    json_t *data, char **err)
{
	long v;

	w->store->busy++;
	v = w->store->ops->append(w, event, step, attempt, data, err);
	w->store->busy--;
	return v;
}

void
store_close_writer(struct store_writer *w)
{
	if (w != NULL) {
		struct store *s = w->store;

		s->busy++;
		s->ops->close_writer(w);
		s->busy--;
	}
}

void
store_set_lazy(struct store_writer *w, bool on)
{
	if (w != NULL && w->store->ops->set_lazy != NULL)
		w->store->ops->set_lazy(w, on);
}

int
store_sync(struct store_writer *w, char **err)
{
	int v;

	if (w == NULL || w->store->ops->sync == NULL)
		return 0;
	w->store->busy++;
	v = w->store->ops->sync(w, err);
	w->store->busy--;
	return v;
}

int
store_behind(struct store_writer *w)
{
	int v;

	if (w->store->ops->behind == NULL)
		return 0;
	w->store->busy++;
	v = w->store->ops->behind(w);
	w->store->busy--;
	return v;
}

bool
store_busy(const struct store *s)
{
	return s->busy > 0;
}

void
store_set_notify(struct store_writer *w)
{
	if (w->store->ops->set_notify != NULL)
		w->store->ops->set_notify(w);
}

int
store_watch(struct store *s, const char *ref, bool on, char **err)
{
	int v;

	s->busy++;
	v = s->ops->watch(s, ref, on, err);
	s->busy--;
	return v;
}

int
store_wait(struct store *s, const char *ref, int64_t ms, char **err)
{
	int v;

	s->busy++;
	v = s->ops->wait(s, ref, ms, err);
	s->busy--;
	return v;
}

int
store_lock(struct store *s, const char *name, const char *run_id, struct store_lock **lk,
    char **err)
{
	int v;

	*lk = NULL;
	s->busy++;
	v = s->ops->lock(s, name, run_id, lk, err);
	s->busy--;
	return v;
}

int
store_lock_check(struct store_lock *lk, char **err)
{
	int v;

	lk->store->busy++;
	v = lk->store->ops->lock_check(lk, err);
	lk->store->busy--;
	return v;
}

void
store_unlock(struct store_lock *lk)
{
	if (lk != NULL) {
		struct store *s = lk->store;

		s->busy++;
		s->ops->unlock(lk);
		s->busy--;
	}
}

bool
store_locked(struct store *s, const char *name, long *pid, char **run)
{
	bool v;

	s->busy++;
	v = s->ops->locked(s, name, pid, run);
	s->busy--;
	return v;
}

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
store_lock_wait(struct store *s, const char *name, const char *run_id, int64_t wait_ms,
    void (*waiting)(const char *why, void *arg), void *arg, struct store_lock **lk, char **err)
{
	int64_t until = mono_ms() + wait_ms, pause = 5;
	char *said = NULL;
	bool first = true;
	int rc;

	for (;;) {
		char *why = NULL;
		int64_t left = until - mono_ms();

		if (first || s->ops->lock_wait == NULL || left <= 0) {
			rc = store_lock(s, name, run_id, lk, &why);
		} else {
			*lk = NULL;
			s->busy++;
			rc = s->ops->lock_wait(s, name, run_id, left < 250 ? left : 250, lk, &why);
			s->busy--;
		}
		first = false;
		if (rc != 1 || wait_ms <= 0 || zdm_interrupted || mono_ms() >= until) {
			if (rc != 0)
				seterr(err, "%s", why != NULL ? why : "the run lock cannot be taken");
			free(why);
			break;
		}
		if (waiting != NULL && (said == NULL || strcmp(said, why) != 0)) {
			waiting(why, arg);
			free(said);
			said = why;
		} else {
			free(why);
		}
		if (s->ops->lock_wait != NULL)
			continue;	/* it waits in the store */
		if (pause > until - mono_ms())
			pause = until - mono_ms();
		if (pause > 0 && zdm_sleep_ms(pause) != 0)
			continue;	/* a signal: the next try is the last */
		pause = pause * 2 > 25 ? 25 : pause * 2;
	}
	free(said);
	return rc;
}

int
store_lock_info(struct store *s, const char *name, struct store_lock_info *li, char **err)
{
	memset(li, 0, sizeof *li);
	li->epoch = -1;
	return s->ops->lock_info(s, name, li, err);
}

void
store_lock_info_release(struct store_lock_info *li)
{
	free(li->host);
	free(li->actor);
	free(li->run_id);
	free(li->since);
	memset(li, 0, sizeof *li);
}

int
store_runs(struct store *s, const struct runs_query *q, struct run_summary **out, size_t *n,
    char **err)
{
	*out = NULL;
	*n = 0;
	return s->ops->runs(s, q, out, n, err);
}

void
store_runs_free(struct run_summary *runs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		run_summary_release(&runs[i]);
	free(runs);
}

int
store_read_text(struct store *s, const char *ref, char **text, size_t *len,
    struct jlog *log, char **err, int *why)
{
	return s->ops->read_text(s, ref, text, len, log, err, why);
}

int
store_import(struct store *s, const char *name, const char *text, size_t len,
    struct store_import *r, char **err)
{
	memset(r, 0, sizeof *r);
	if (s->ops->import == NULL)
		return seterr(err, "%s cannot take runs copied in (a PostgreSQL state can)",
		    s->location);
	return s->ops->import(s, name, text, len, r, err);
}
