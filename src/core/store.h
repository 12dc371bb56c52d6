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

/*
 * What a store that can lose its connection while a run goes on (the
 * PostgreSQL backend) does about it, told to the store_set_retry callback:
 * STORE_CONN_LOST once when a statement finds the connection gone,
 * STORE_CONN_RETRY after each attempt to connect again that failed, and
 * STORE_CONN_BACK when it is connected again (with the run lock, when it
 * held one, still its own).  Giving up is not told: the call that found the
 * connection gone fails, its *err saying why.  Borrowed for the call.
 */
enum store_conn_kind { STORE_CONN_LOST, STORE_CONN_RETRY, STORE_CONN_BACK };

struct store_conn {
	enum store_conn_kind kind;
	const char *place;	/* the state, for messages (store_location) */
	const char *why;	/* LOST, RETRY: the last error */
	int64_t timeout_ms;	/* how long it tries in all (--state-timeout) */
	int64_t until;		/* wall clock, seconds since the epoch: when it gives up */
	int64_t ms;		/* RETRY, BACK: how long since the connection was lost */
	int attempt;		/* RETRY, BACK: attempts to connect again so far */
	bool locked;		/* BACK: it took its run lock back */
};

struct store_ops {
	/* its appends fail once the run lock is lost (the runner then stops) */
	bool fences;
	/* a lost connection: try again for timeout_ms (0: never), telling fn;
	 * NULL when the store cannot lose one (the file backend) */
	void (*set_retry)(struct store *s, int64_t timeout_ms,
	    void (*fn)(const struct store_conn *c, void *arg), void *arg);
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
int store_lock(struct store *s, const char *name, const char *run_id, struct store_lock **lk,
    char **err);
int store_lock_check(struct store_lock *lk, char **err);
void store_unlock(struct store_lock *lk);
bool store_locked(struct store *s, const char *name, long *pid, char **run);
bool store_fences(const struct store *s);
/*
 * A connection to the state lost while a run goes on is tried again, with
 * backoff (100 ms doubling to 2 s), for TIMEOUT_MS in all (0: not at all),
 * FN (may be NULL) told of each move.  On the way back the store takes its
 * run lock back, if it held one, only if nobody else took it meanwhile, and
 * an append that was cut off is found committed or made again, never
 * twice.  Until set: no retry.  A no-op for a store that cannot lose a
 * connection.
 */
void store_set_retry(struct store *s, int64_t timeout_ms,
    void (*fn)(const struct store_conn *c, void *arg), void *arg);

#endif
