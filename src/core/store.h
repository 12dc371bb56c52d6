/*
 * store.h - the one door to stored runs: finding a run, reading its
 * records, appending one durably, listing the runs of a place, and the
 * lock that keeps one run of a runbook going at a time.
 *
 * A store is a place runs are kept; a run in it is named by a ref, a
 * string the backend gives out and takes back (and that messages may
 * show).  The file backend (store_file.c) keeps STATE_DIR/runs/RUN_ID.jsonl
 * (journal.c) and STATE_DIR/locks/NAME.lock (lock.c); its refs are the
 * journals' paths.  Another backend implements struct store_ops.
 *
 * Nothing else writes or locks runs: the runner, zdm approve and the
 * webhooks' notify.failed records append through a store_writer, and the
 * run lock is a store_lock, checked before each step (a backend that can
 * lose it, or fence it, says so there).  scripts/check-includes.sh fails
 * when a file other than store_file.c calls journal.c's writers or lock.c.
 *
 * Two writers of one run: a zdm that waits for an approval
 * (--wait-for-approval) holds the run lock while `zdm approve`, from
 * anywhere, appends the decision without it.  Every backend keeps one
 * chain: an append fails, writing nothing, when another writer appended
 * to the run since this writer's last record (the file backend's journal
 * flock and size check, PostgreSQL's primary key on (run_id, seq)); the
 * loser reads the run again and opens a new writer after the other's
 * record.  store_watch and store_wait let the waiting zdm sleep until a
 * record may have come (PostgreSQL: LISTEN/NOTIFY; files: polling).
 */
#ifndef ZDM_CORE_STORE_H
#define ZDM_CORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "core/journal.h"

struct store;

/* a run open for appending; each backend's writer starts with this */
struct store_writer {
	struct store *store;
};

/* the run lock of one runbook name, held; each backend's starts with this */
struct store_lock {
	struct store *store;
};

struct store_ops {
	/* its appends fail once the run lock is lost (the runner then stops) */
	bool fences;
	/* the run RUN_ID: its ref (malloc'd), or NULL */
	char *(*find)(struct store *s, const char *run_id);
	/* the run written to last, of runbook NAME (or any); dry runs only with_dry */
	char *(*latest)(struct store *s, const char *name, bool with_dry);
	/* where its runs are, for messages; NULL when the location holds none */
	const char *(*runs_place)(struct store *s);
	/* every run's ref (of runbook NAME, or all), by run id; -1 and *err
	 * when they cannot be listed */
	int (*list)(struct store *s, const char *name, char ***refs, size_t *n, char **err);
	/* the records, chain checked (journal_read's contract) */
	int (*read)(struct store *s, const char *ref, struct jlog *log, char **err);
	/* the records that parse, unchecked: what a damaged run claims */
	void (*read_unchecked)(struct store *s, const char *ref, struct jlog *log);
	/* check the chain, printing the verdict: 0 ok, 1 bad chain, 2 unusable */
	int (*verify)(struct store *s, const char *ref, FILE *out, FILE *errout);
	/* a new run RUN_ID, empty, open for appending */
	struct store_writer *(*create)(struct store *s, const char *run_id, char **err);
	/* append to the run REF after LOG, as read (it continues LOG's chain) */
	struct store_writer *(*open_writer)(struct store *s, const char *ref, const char *run_id,
	    const struct jlog *log, char **err);
	/* the run a writer appends to */
	const char *(*writer_ref)(const struct store_writer *w);
	/* fn gets each record's line once it is durable */
	void (*set_echo)(struct store_writer *w, void (*fn)(const char *line, void *arg), void *arg);
	/* the seq and hash (malloc'd) of the run's last record on record; -1
	 * when they cannot be read */
	int (*last)(struct store_writer *w, long *seq, char **hash);
	/* one record, durable when it returns (data is stolen); its seq, or -1 */
	long (*append)(struct store_writer *w, const char *event, const char *step, int attempt,
	    json_t *data, char **err);
	void (*close_writer)(struct store_writer *w);
	/* each append through W also wakes whoever store_wait()s on its run,
	 * in the same transaction (NULL: the waiters poll) */
	void (*set_notify)(struct store_writer *w);
	/* start (on) or stop watching the run REF for store_wait; -1 and *err */
	int (*watch)(struct store *s, const char *ref, bool on, char **err);
	/* sleep at most MS, less when the run REF may have a new record: 1 it
	 * may (read it again), 0 nothing came, -1 and *err when the store
	 * cannot be reached; a signal cuts it short (0) */
	int (*wait)(struct store *s, const char *ref, int64_t ms, char **err);
	/* one run at a time per runbook name: *lk while held; -1 and *err
	 * naming the holder when another has it */
	int (*lock)(struct store *s, const char *name, const char *run_id, struct store_lock **lk,
	    char **err);
	/* is LK still this process's: -1 and *err when another may have taken it */
	int (*lock_check)(struct store_lock *lk, char **err);
	void (*unlock)(struct store_lock *lk);
	/* does a live zdm hold NAME's lock; its pid and run when it says (else 0, NULL) */
	bool (*locked)(struct store *s, const char *name, long *pid, char **run);
	void (*free)(struct store *s);
};

struct store {
	const struct store_ops *ops;
	char *location;		/* where it is, for messages: a state dir */
	const char *dir;	/* the state dir (a step's ctx->state_dir); NULL when
				 * runs are not kept in files */
};

/* the file backend on STATE_DIR (which need not exist yet) */
struct store *store_open_dir(const char *state_dir);
/* a PostgreSQL connection string (postgresql:// or postgres:// URI, or
 * key=value conninfo) rather than a state dir path */
bool store_is_pg(const char *spec);
/* the PostgreSQL backend (store_pg.c) on the zdm state in SCHEMA; NULL and
 * *err when it cannot connect, the string holds a password, or the schema
 * is missing or of another version */
struct store *store_open_pg(const char *spec, const char *schema, char **err);
/* zdm state init: create (or keep) the versioned schema; *out says so */
int store_init_pg(const char *spec, const char *schema, char **out, char **err);
/* the state dir of the journal at PATH (STATE_DIR/runs/RUN_ID.jsonl), malloc'd */
char *store_dir_of_journal(const char *path);
void store_close(struct store *s);

const char *store_location(const struct store *s);
char *store_find(struct store *s, const char *run_id);
char *store_latest(struct store *s, const char *name, bool with_dry);
const char *store_runs_place(struct store *s);
int store_list(struct store *s, const char *name, char ***refs, size_t *n, char **err);
void store_list_free(char **refs, size_t n);
int store_read(struct store *s, const char *ref, struct jlog *log, char **err);
void store_read_unchecked(struct store *s, const char *ref, struct jlog *log);
int store_verify(struct store *s, const char *ref, FILE *out, FILE *errout);
struct store_writer *store_create(struct store *s, const char *run_id, char **err);
struct store_writer *store_open_writer(struct store *s, const char *ref, const char *run_id,
    const struct jlog *log, char **err);
const char *store_writer_ref(const struct store_writer *w);
void store_set_echo(struct store_writer *w, void (*fn)(const char *line, void *arg), void *arg);
int store_writer_last(struct store_writer *w, long *seq, char **hash);
long store_append(struct store_writer *w, const char *event, const char *step, int attempt,
    json_t *data, char **err);
void store_close_writer(struct store_writer *w);
void store_set_notify(struct store_writer *w);
int store_watch(struct store *s, const char *ref, bool on, char **err);
int store_wait(struct store *s, const char *ref, int64_t ms, char **err);
int store_lock(struct store *s, const char *name, const char *run_id, struct store_lock **lk,
    char **err);
int store_lock_check(struct store_lock *lk, char **err);
void store_unlock(struct store_lock *lk);
bool store_locked(struct store *s, const char *name, long *pid, char **run);
bool store_fences(const struct store *s);

#endif
