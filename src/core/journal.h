/*
 * journal.h - the durable, hash-chained journal of a run: JSON Lines, one
 * record per line, each fdatasync'd before the caller goes on.
 */
#ifndef ZDM_CORE_JOURNAL_H
#define ZDM_CORE_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

struct journal;

/* a journal file read back and checked */
struct jlog {
	json_t **recs;		/* parsed records, in order; owned */
	size_t n;
	bool torn;		/* last line was torn and ignored */
	size_t good_len;	/* bytes up to the end of the last good line */
	char *last_hash;	/* hash of the last good record (hex) */
};

/* Create STATE_DIR/runs/RUN_ID.jsonl (and dirs), fsync the directory. */
struct journal *journal_create(const char *path, const char *run_id, char **err);
/* Re-open an existing journal for appending after journal_read(); truncates
 * a torn tail to log->good_len and continues the chain from log's last hash. */
struct journal *journal_reopen(const char *path, const char *run_id,
    const struct jlog *log, char **err);
/* Append one record; data is stolen (may be NULL).  Redacts, hashes, writes
 * and fdatasyncs before returning.  Returns the record's seq, or -1. */
long journal_append(struct journal *j, const char *event, const char *step,
    int attempt, json_t *data, char **err);
const char *journal_path(const struct journal *j);
void journal_close(struct journal *j);
/* record echo for --output json: called with each record after it is on disk */
void journal_set_echo(struct journal *j, void (*fn)(const char *line, void *arg), void *arg);

/* Read and verify the chain.  Damage other than a torn last line is an
 * error naming FILE:LINE.  */
int journal_read(const char *path, struct jlog *log, char **err);
void jlog_release(struct jlog *log);
/* `zdm audit verify`: prints the result; returns 0 ok, 1 bad chain, 2 unusable */
int journal_verify(const char *path, FILE *out, FILE *errout);


#endif
