/*
 * store.c - the door to stored runs (store.h): each call goes to the
 * store's backend.
 */
#include <stdlib.h>

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

const char *
store_location(const struct store *s)
{
	return s->location;
}

char *
store_find(struct store *s, const char *run_id)
{
	return s->ops->find(s, run_id);
}

char *
store_latest(struct store *s, const char *name, bool with_dry)
{
	return s->ops->latest(s, name, with_dry);
}

const char *
store_runs_place(struct store *s)
{
	return s->ops->runs_place(s);
}

int
store_list(struct store *s, const char *name, char ***refs, size_t *n, char **err)
{
	return s->ops->list(s, name, refs, n, err);
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
	return s->ops->read(s, ref, log, err);
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
	return s->ops->create(s, run_id, err);
}

struct store_writer *
store_open_writer(struct store *s, const char *ref, const char *run_id,
    const struct jlog *log, char **err)
{
	return s->ops->open_writer(s, ref, run_id, log, err);
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
	return w->store->ops->last(w, seq, hash);
}

long
store_append(struct store_writer *w, const char *event, const char *step, int attempt,
    json_t *data, char **err)
{
	return w->store->ops->append(w, event, step, attempt, data, err);
}

void
store_close_writer(struct store_writer *w)
{
	if (w != NULL)
		w->store->ops->close_writer(w);
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
	return s->ops->watch(s, ref, on, err);
}

int
store_wait(struct store *s, const char *ref, int64_t ms, char **err)
{
	return s->ops->wait(s, ref, ms, err);
}

int
store_lock(struct store *s, const char *name, const char *run_id, struct store_lock **lk,
    char **err)
{
	*lk = NULL;
	return s->ops->lock(s, name, run_id, lk, err);
}

int
store_lock_check(struct store_lock *lk, char **err)
{
	return lk->store->ops->lock_check(lk, err);
}

void
store_unlock(struct store_lock *lk)
{
	if (lk != NULL)
		lk->store->ops->unlock(lk);
}

bool
store_locked(struct store *s, const char *name, long *pid, char **run)
{
	return s->ops->locked(s, name, pid, run);
}
