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
#include "core/runstate.h"

struct store;

/* a run open for appending; each backend's writer starts with this */
struct store_writer {
	struct store *store;
};

/* the run lock of one runbook name, held; each backend's starts with this */
struct store_lock {
	struct store *store;
};

/* which runs zdm runs asks for */
struct runs_query {
	const char *name;	/* of runbook NAME only, or NULL: all */
	const char *since;	/* started then or later (a journal ts, UTC:
				 * "2026-11-21T10:00:01.123Z"), or NULL */
	size_t newest;		/* the newest N (by started, then run id) are enough; 0:
				 * all.  A backend may return more, in any order. */
};

/* who holds a runbook's run lock (zdm lock status); strings malloc'd or NULL */
struct store_lock_info {
	bool held;		/* a live zdm holds it now */
	bool known;		/* the fields below name a holder: the one now when held,
				 * else the last one, whose record is left (a holder that
				 * died, or on PostgreSQL the last one at all) */
	long pid;		/* its process (0: unknown) */
	char *host, *actor, *run_id;
	char *since;		/* when it took the lock, UTC ISO-8601 */
	long long epoch;	/* PostgreSQL: takes of this lock so far; -1 elsewhere */
};

/* what store_import did with one run (zdm state push) */
struct store_import {
	long had;		/* records of the run the store held before */
	long added;		/* records it added: 0 when it holds them all already */
	long differs;		/* the first seq at which the store holds another
				 * record (or none) than the one given: nothing was
				 * added; 0 when none differs */
	bool busy;		/* a zdm holds the run lock of the run's runbook in
				 * the store (it may be writing the run): nothing added */
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
	/* optional (NULL: every append is durable when it returns, lazy or
	 * not).  Lazy on: an append may return before its record is durable;
	 * it is durable at the latest when an append made with lazy off
	 * returns, or sync returns 0 (close_writer tries too).  A caller asks
	 * for it only for records after which it acts on nothing (the world, a
	 * step) until one of those: losing them in a crash loses no decision
	 * whose effects are out there.  The file backend skips fdatasync. */
	void (*set_lazy)(struct store_writer *w, bool on);
	int (*sync)(struct store_writer *w, char **err);
	/* each append through W also wakes whoever store_wait()s on its run,
	 * in the same transaction (NULL: the waiters poll) */
	void (*set_notify)(struct store_writer *w);
	/* start (on) or stop watching the run REF for store_wait; -1 and *err */
	int (*watch)(struct store *s, const char *ref, bool on, char **err);
	/* without waiting: 1 when another writer may have appended to W's run
	 * after W's last record (read it again), else 0; cheap enough to ask
	 * every 250 ms (the file backend: the journal's size; PostgreSQL: the
	 * notifications that came, once the run is watched).  NULL: never. */
	int (*behind)(struct store_writer *w);
	/* sleep at most MS, less when the run REF may have a new record: 1 it
	 * may (read it again), 0 nothing came, -1 and *err when the store
	 * cannot be reached; a signal cuts it short (0) */
	int (*wait)(struct store *s, const char *ref, int64_t ms, char **err);
	/* one run at a time per runbook name: 0 and *lk while held; 1 and *err
	 * naming the holder when another has it; -1 and *err when it cannot
	 * be taken (the store cannot be reached, a bad name) */
	int (*lock)(struct store *s, const char *name, const char *run_id, struct store_lock **lk,
	    char **err);
	/* optional: as lock, but while another holds it wait up to WAIT_MS (> 0)
	 * in the store itself for it to be let go (1: still held then) */
	int (*lock_wait)(struct store *s, const char *name, const char *run_id, int64_t wait_ms,
	    struct store_lock **lk, char **err);
	/* is LK still this process's: -1 and *err when another may have taken it */
	int (*lock_check)(struct store_lock *lk, char **err);
	void (*unlock)(struct store_lock *lk);
	/* does a live zdm hold NAME's lock; its pid and run when it says (else 0, NULL) */
	bool (*locked)(struct store *s, const char *name, long *pid, char **run);
	/* who holds NAME's lock, or held it last; -1 and *err when the store
	 * cannot tell */
	int (*lock_info)(struct store *s, const char *name, struct store_lock_info *li, char **err);
	/* the summary of every run Q asks for, in no particular order
	 * (runstate.h: run_summary_fold); -1 and *err when they cannot be
	 * listed */
	int (*runs)(struct store *s, const struct runs_query *q, struct run_summary **out,
	    size_t *n, char **err);
	/* the run's records exactly as stored, *text (malloc'd), each line ended
	 * by "\n", checked as read checks them into *log (a torn last line lies
	 * past log->good_len); -1 and *err, *why 1 bad chain or 2 unusable */
	int (*read_text)(struct store *s, const char *ref, char **text, size_t *len,
	    struct jlog *log, char **err, int *why);
	/* store_import; NULL when the backend cannot */
	int (*import)(struct store *s, const char *name, const char *text, size_t len,
	    struct store_import *r, char **err);
	void (*free)(struct store *s);
};

struct store {
	const struct store_ops *ops;
	char *location;		/* where it is, for messages: a state dir */
	const char *dir;	/* the state dir (a step's ctx->state_dir); NULL when
				 * runs are not kept in files */
	int busy;		/* store_* calls under way (store_busy) */
};

/* the file backend on STATE_DIR (which need not exist yet) */
struct store *store_open_dir(const char *state_dir);
/* a PostgreSQL connection string (postgresql:// or postgres:// URI, or
 * key=value conninfo) rather than a state dir path */
bool store_is_pg(const char *spec);
/* the PostgreSQL backend (store_pg.c) on the zdm state in SCHEMA (NULL:
 * the first schema of a search_path set in the string's options, e.g.
 * ?options=-csearch_path%3Dteam, else "zdm"); NULL and *err when it cannot
 * connect, the string holds a password, or the schema is missing or of
 * another version */
struct store *store_open_pg(const char *spec, const char *schema, char **err);
/* zdm state init: create (or keep) the versioned schema (SCHEMA as for
 * store_open_pg); *out says so */
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
/* ops->set_lazy and ->sync; no-ops for a backend without them, or W NULL */
void store_set_lazy(struct store_writer *w, bool on);
int store_sync(struct store_writer *w, char **err);
void store_set_notify(struct store_writer *w);
int store_watch(struct store *s, const char *ref, bool on, char **err);
int store_wait(struct store *s, const char *ref, int64_t ms, char **err);
int store_behind(struct store_writer *w);
/* is a store_* call on S under way (one that waits calls zdm_tick, whose
 * hooks must not use S then: a connection runs one query at a time) */
bool store_busy(const struct store *s);
int store_lock(struct store *s, const char *name, const char *run_id, struct store_lock **lk,
    char **err);
int store_lock_check(struct store_lock *lk, char **err);
void store_unlock(struct store_lock *lk);
bool store_locked(struct store *s, const char *name, long *pid, char **run);
/* store_lock, and while another holds the lock (1) wait for it until
 * WAIT_MS passed or a signal came: in the backend's lock_wait, in slices of
 * at most 250 ms, or trying again with a short backoff (5 ms, doubling, at
 * most 25 ms); waiting(why, arg) is told each holder it waits for (why: the
 * holder as store_lock names it), the first time and when it changes.
 * WAIT_MS 0: one try.  Returns as store_lock. */
int store_lock_wait(struct store *s, const char *name, const char *run_id, int64_t wait_ms,
    void (*waiting)(const char *why, void *arg), void *arg, struct store_lock **lk, char **err);
int store_lock_info(struct store *s, const char *name, struct store_lock_info *li, char **err);
void store_lock_info_release(struct store_lock_info *li);
int store_runs(struct store *s, const struct runs_query *q, struct run_summary **out, size_t *n,
    char **err);
void store_runs_free(struct run_summary *runs, size_t n);
bool store_fences(const struct store *s);
int store_read_text(struct store *s, const char *ref, char **text, size_t *len,
    struct jlog *log, char **err, int *why);
/*
 * zdm state push: keep the run whose records are the lines of TEXT (LEN
 * bytes, each line ended by "\n": what store_read_text gave, up to
 * log->good_len) byte for byte.  They are checked first as store_read
 * checks a run (HMAC included; messages name NAME:LINE): a chain that does
 * not verify adds nothing (-1, *err).  What the store holds of the run must
 * be the same lines, then the rest is added after it in one transaction:
 * all of it or nothing.  *r says what was done; r->differs or r->busy set:
 * nothing was.  -1 and *err when the store cannot be written (nothing added).
 */
int store_import(struct store *s, const char *name, const char *text, size_t len,
    struct store_import *r, char **err);

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
