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
 */
#ifndef ZDM_CORE_STORE_H
#define ZDM_CORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#include "core/journal.h"

struct store;
struct store_writer;

struct store_ops {
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
	/* append to the run REF after LOG, as read (it continues LOG's chain) */
	struct store_writer *(*open_writer)(struct store *s, const char *ref, const char *run_id,
	    const struct jlog *log, char **err);
	/* one record, durable when it returns (data is stolen); its seq, or -1 */
	long (*append)(struct store_writer *w, const char *event, const char *step, int attempt,
	    json_t *data, char **err);
	void (*close_writer)(struct store_writer *w);
	/* one run at a time per runbook name: *lk >= 0 while held */
	int (*lock)(struct store *s, const char *name, const char *run_id, int *lk, char **err);
	void (*unlock)(struct store *s, int lk);
	/* does a live zdm hold NAME's lock; its pid and run when it says (else 0, NULL) */
	bool (*locked)(struct store *s, const char *name, long *pid, char **run);
	void (*free)(struct store *s);
};

struct store {
	const struct store_ops *ops;
	char *location;		/* where it is, as given: a state dir */
};

/* the file backend on STATE_DIR (which need not exist yet) */
struct store *store_open_dir(const char *state_dir);
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
struct store_writer *store_open_writer(struct store *s, const char *ref, const char *run_id,
    const struct jlog *log, char **err);
long store_append(struct store *s, struct store_writer *w, const char *event, const char *step,
    int attempt, json_t *data, char **err);
void store_close_writer(struct store *s, struct store_writer *w);
int store_lock(struct store *s, const char *name, const char *run_id, int *lk, char **err);
void store_unlock(struct store *s, int lk);
bool store_locked(struct store *s, const char *name, long *pid, char **run);

#endif
