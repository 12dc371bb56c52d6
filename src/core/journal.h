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
/*
 * Lazy appends (on): journal_append writes the line and returns without
 * fdatasync; the record becomes durable with the next append made with
 * lazy off (its fdatasync covers every line written before it), at
 * journal_sync, or at journal_close.  Only for records that decide that
 * nothing is to be done: nothing may act on the world on the strength of a
 * lazy record before one of those.  A journal_open_sink journal ignores it.
 */
void journal_set_lazy(struct journal *j, bool on);
/* make every line written so far durable: 0, or -1 and *err (the journal
 * is then unusable, as after a failed append) */
int journal_sync(struct journal *j, char **err);
/* has the file grown past this writer's last record (another writer
 * appended since: read it again) */
bool journal_behind(const struct journal *j);
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

/*
 * A journal kept elsewhere than in a file (a state backend's table): the
 * same records, byte for byte, the same chain.  journal_open_sink appends
 * to the run RUN_ID after LOG (NULL or empty: a new run); each record's line
 * (no newline) goes to sink, which makes it durable and returns 0, or -1
 * with *err (the append then fails).  NAME is for messages.
 * journal_read_text and journal_verify_text check TEXT, the records' lines
 * each ended by "\n", as journal_read and journal_verify check a file
 * (*why, may be NULL: 1 bad chain, 2 unusable).
 */
struct journal *journal_open_sink(const char *name, const char *run_id, const struct jlog *log,
    int (*sink)(const char *line, size_t len, long seq, void *arg, char **err), void *arg,
    char **err);
int journal_read_text(const char *name, const char *text, size_t len, struct jlog *log,
    char **err, int *why);
int journal_verify_text(const char *name, const char *text, size_t len, FILE *out, FILE *errout);


#endif
