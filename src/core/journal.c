/*
 * journal.c - the durable, hash-chained run journal.
 *
 * Format (zdm-runbook(5) JOURNAL): one JSON Lines file per run,
 * STATE_DIR/runs/RUN_ID.jsonl, one record per line, keys sorted, compact:
 *
 *   {"attempt":1,"data":{...},"event":"step.succeeded","hash":"<hex>",
 *    "prev":"<hex>","run":"RUN_ID","seq":3,"step":"shift-10",
 *    "ts":"2026-11-21T10:00:01.123Z"}
 *
 * - "step" is left out when the record has no step, "attempt" when it is 0;
 *   "data" is always there ({} when there is nothing to say) and is redacted
 *   (redact_json) before it is hashed, so no secret reaches the disk.
 * - seq counts from 1.  The first record's data carries "chain": "sha256",
 *   or "hmac-sha256" when ZDM_AUDIT_KEY was set (non-empty) at creation.
 * - canonical = the record without "hash", dumped JSON_COMPACT|JSON_SORT_KEYS;
 *   hash = lowercase hex of SHA-256(prev || canonical), or of
 *   HMAC-SHA256(ZDM_AUDIT_KEY, prev || canonical) for an hmac chain;
 *   prev = the hash of the record before (64 '0' for seq 1).
 * - Write-ahead: the line is written to an O_APPEND fd and fdatasync'd before
 *   journal_append returns; with journal_set_lazy on, the fdatasync waits for
 *   the next record appended with it off (or journal_sync, journal_close).
 * - One chain, whoever appends: each append holds flock(LOCK_EX) on the
 *   journal while it checks that the file still ends where this writer's
 *   last record (or the read it was opened from) ended, writes and syncs.
 *   A record another process appended meanwhile (zdm approve deciding for a
 *   run that waits for it) makes the append fail, nothing written, instead
 *   of forking the chain: the writer reads the journal again and reopens.
 * - Reading: every "\n"-terminated line must be a record whose seq, prev,
 *   hash and run continue the chain; a last piece without "\n" is a torn
 *   write (crash mid-append): it is reported and ignored, and journal_reopen
 *   truncates it away before appending.  Anything else is damage, reported as
 *   FILE:LINE: what.
 *
 * Fault injection for the crash tests (read once at create/reopen):
 *   ZDM_TEST_CRASH_BEFORE_RECORD=N SIGKILL just before record N is written
 *                                  (nothing of it on disk)
 *   ZDM_TEST_CRASH_AFTER_RECORD=N  SIGKILL right after record N is on disk
 *   ZDM_TEST_TEAR_RECORD=N         write half of record N's line, then SIGKILL
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "base/fsio.h"
#include "base/redact.h"
#include "base/util.h"
#include "core/audit_key.h"
#include "core/journal.h"

#define HASH_HEX 64
#define DUMP_FLAGS (JSON_COMPACT | JSON_SORT_KEYS)
#define LOAD_FLAGS (JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL)

static const char zero_hash[HASH_HEX + 1] =
    "0000000000000000000000000000000000000000000000000000000000000000";

struct journal {
	int fd;
	char *path;
	char *run_id;
	long seq;			/* seq of the last record written */
	off_t end;			/* where the file ends after it (fd journals) */
	char prev[HASH_HEX + 1];	/* hash of the last record written */
	bool hmac;
	char *key;			/* ZDM_AUDIT_KEY when hmac */
	size_t keylen;
	long crash_before;		/* ZDM_TEST_CRASH_BEFORE_RECORD, 0 = off */
	long crash_after;		/* ZDM_TEST_CRASH_AFTER_RECORD, 0 = off */
	long tear_at;			/* ZDM_TEST_TEAR_RECORD, 0 = off */
	bool broken;			/* a write failed: the tail is unknown */
	bool lazy;			/* journal_set_lazy: no fdatasync per append */
	bool unsynced;			/* lines written since the last fdatasync */
	void (*echo)(const char *line, void *arg);
	void *echo_arg;
	struct sbuf line;		/* the record being written, reused */
	char *run_enc;			/* run_id as jansson encodes it, quotes included */
	char *step_enc, *step_last;	/* the same for the last step appended */
	struct {			/* and for the events appended (few) */
		char *name, *enc;
	} ev[24];
	/* journal_open_sink: the line goes here instead of to fd */
	int (*sink)(const char *line, size_t len, long seq, void *arg, char **err);
	void *sink_arg;
};

/* ---- helpers ------------------------------------------------------------ */

static long
env_long(const char *name)
{
	const char *s = getenv(name);
	char *end;
	long v;

	if (s == NULL || *s == '\0')
		return 0;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < 0)
		return 0;
	return v;
}

static const char hexdigits[16] = "0123456789abcdef";

/* lowercase hex of the 32 bytes of a digest */
static void
hex32(const unsigned char *md, char out[HASH_HEX + 1])
{
	for (unsigned int i = 0; i < HASH_HEX / 2; i++) {
		out[2 * i] = hexdigits[md[i] >> 4];
		out[2 * i + 1] = hexdigits[md[i] & 0xf];
	}
	out[HASH_HEX] = '\0';
}

/* SHA-256, fetched once: an implicit fetch per digest costs more than the
 * digest of a record */
static const EVP_MD *
sha256_md(void)
{
	static EVP_MD *md;

	if (md == NULL)
		md = EVP_MD_fetch(NULL, "SHA256", NULL);
	return md;
}

/*
 * hash = hex(SHA-256(prev || canonical)), or hex(HMAC-SHA256(key, ...)) when
 * key is not NULL, canonical given as N pieces (the bytes of all of them, in
 * order).  Returns 0, or -1 if libcrypto failed.
 */
static int
chain_hash_parts(const char *key, size_t keylen, const char *prev,
    const char *const *part, const size_t *plen, size_t n, char out[HASH_HEX + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	size_t prevlen = strlen(prev);
	int ok;

	if (key != NULL) {
		size_t total = prevlen, at = prevlen;
		unsigned char *buf;

		for (size_t i = 0; i < n; i++)
			total += plen[i];
		buf = xmalloc(total > 0 ? total : 1);
		memcpy(buf, prev, prevlen);
		for (size_t i = 0; i < n; i++) {
			memcpy(buf + at, part[i], plen[i]);
			at += plen[i];
		}
		ok = HMAC(EVP_sha256(), key, (int)keylen, buf, total, md,
		    &mdlen) != NULL;
		free(buf);
	} else {
		static EVP_MD_CTX *ctx;
		const EVP_MD *sha = sha256_md();

		if (ctx == NULL)
			ctx = EVP_MD_CTX_new();
		ok = ctx != NULL && sha != NULL && EVP_DigestInit_ex(ctx, sha, NULL) == 1 &&
		    EVP_DigestUpdate(ctx, prev, prevlen) == 1;
		for (size_t i = 0; ok && i < n; i++)
			ok = EVP_DigestUpdate(ctx, part[i], plen[i]) == 1;
		ok = ok && EVP_DigestFinal_ex(ctx, md, &mdlen) == 1;
	}
	if (!ok || mdlen != HASH_HEX / 2)
		return -1;
	hex32(md, out);
	return 0;
}

static int
chain_hash(const char *key, size_t keylen, const char *prev,
    const char *canon, size_t clen, char out[HASH_HEX + 1])
{
	return chain_hash_parts(key, keylen, prev, &canon, &clen, 1, out);
}

/* the hash of a record as read (its own "prev", everything but "hash") */
static int
record_hash(const json_t *rec, const char *key, char out[HASH_HEX + 1])
{
	json_t *copy = json_copy((json_t *)rec);	/* shallow */
	const char *prev;
	char *canon;
	int rc;

	if (copy == NULL)
		return -1;
	json_object_del(copy, "hash");
	prev = json_string_value(json_object_get(copy, "prev"));
	canon = json_dumps(copy, DUMP_FLAGS);
	json_decref(copy);
	if (canon == NULL || prev == NULL) {
		free(canon);
		return -1;
	}
	rc = chain_hash(key, key != NULL ? strlen(key) : 0, prev, canon,
	    strlen(canon), out);
	free(canon);
	return rc;
}

static void
journal_free(struct journal *j)
{
	if (j == NULL)
		return;
	if (j->fd >= 0) {
		if (j->unsynced && !j->broken)
			datasync(j->fd);	/* best effort: journal_sync says */
		close(j->fd);
	}
	if (j->key != NULL) {
		OPENSSL_cleanse(j->key, j->keylen);
		free(j->key);
	}
	sb_release(&j->line);
	free(j->run_enc);
	free(j->step_enc);
	free(j->step_last);
	for (size_t i = 0; i < sizeof j->ev / sizeof j->ev[0]; i++) {
		free(j->ev[i].name);
		free(j->ev[i].enc);
	}
	free(j->path);
	free(j->run_id);
	free(j);
}

static struct journal *
journal_new(const char *path, const char *run_id)
{
	struct journal *j = xcalloc(1, sizeof *j);

	j->fd = -1;
	j->path = xstrdup(path);
	j->run_id = xstrdup(run_id);
	memcpy(j->prev, zero_hash, sizeof j->prev);
	sb_init(&j->line);
	j->crash_before = env_long("ZDM_TEST_CRASH_BEFORE_RECORD");
	j->crash_after = env_long("ZDM_TEST_CRASH_AFTER_RECORD");
	j->tear_at = env_long("ZDM_TEST_TEAR_RECORD");
	return j;
}

static void
journal_use_key(struct journal *j, const char *key)
{
	j->hmac = true;
	j->keylen = strlen(key);
	j->key = xstrdup(key);
}

/* ---- writing ------------------------------------------------------------ */

struct journal *
journal_create(const char *path, const char *run_id, char **err)
{
	struct journal *j;
	char *dir;
	const char *key;

	if (run_id == NULL || *run_id == '\0') {
		seterr(err, "journal '%s': empty run id", path);
		return NULL;
	}
	dir = path_dirname(path);
	if (mkdir_p(dir, 0700) != 0) {
		seterr(err, "cannot create directory '%s': %s", dir,
		    strerror(errno));
		free(dir);
		return NULL;
	}
	if (dir_private(dir, false, err) != 0) {	/* not a symlink, ours alone */
		free(dir);
		return NULL;
	}
	j = journal_new(path, run_id);
	key = audit_key();
	if (key != NULL)
		journal_use_key(j, key);
	j->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC,
	    0600);
	if (j->fd < 0) {
		seterr(err, "cannot create journal '%s': %s", path,
		    strerror(errno));
		goto fail;
	}
	if (sync_dir(dir, err) != 0)
		goto fail;
	{
		/* mkdir_p may have just made dir: make its entry durable too
		 * (best effort: the parent may not be ours to open) */
		char *up = path_dirname(dir);

		sync_dir(up, NULL);
		free(up);
	}
	free(dir);
	return j;
fail:
	free(dir);
	journal_free(j);
	return NULL;
}

struct journal *
journal_reopen(const char *path, const char *run_id, const struct jlog *log,
    char **err)
{
	struct journal *j;
	struct stat st;
	const char *key = audit_key();

	j = journal_new(path, run_id);
	if (log->n > 0) {
		const json_t *first = log->recs[0];
		const char *run = json_string_value(json_object_get(first, "run"));
		const char *chain = json_string_value(json_object_get(
		    json_object_get(first, "data"), "chain"));

		if (run == NULL || strcmp(run, run_id) != 0) {
			seterr(err, "journal '%s' belongs to run '%s', not '%s'",
			    path, run != NULL ? run : "?", run_id);
			goto fail;
		}
		if (chain != NULL && strcmp(chain, "hmac-sha256") == 0) {
			if (key == NULL) {
				seterr(err, "journal '%s' is chained with "
				    "hmac-sha256 but ZDM_AUDIT_KEY is not set",
				    path);
				goto fail;
			}
			journal_use_key(j, key);
		} else if (chain == NULL || strcmp(chain, "sha256") != 0) {
			seterr(err, "journal '%s': unknown chain '%s'", path,
			    chain != NULL ? chain : "(none)");
			goto fail;
		}
		if (log->last_hash == NULL ||
		    strlen(log->last_hash) != HASH_HEX) {
			seterr(err, "journal '%s': no last hash to continue "
			    "from", path);
			goto fail;
		}
		memcpy(j->prev, log->last_hash, HASH_HEX + 1);
		j->seq = (long)log->n;
	} else if (key != NULL) {
		/* nothing complete was written: start the chain afresh */
		journal_use_key(j, key);
	}

	j->fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (j->fd < 0) {
		seterr(err, "cannot open journal '%s': %s", path,
		    strerror(errno));
		goto fail;
	}
	if (fstat(j->fd, &st) != 0) {
		seterr(err, "cannot stat journal '%s': %s", path,
		    strerror(errno));
		goto fail;
	}
	if ((size_t)st.st_size < log->good_len ||
	    ((size_t)st.st_size > log->good_len && !log->torn)) {
		seterr(err, "journal '%s' changed since it was read", path);
		goto fail;
	}
	j->end = (off_t)log->good_len;
	if ((size_t)st.st_size > log->good_len) {
		if (ftruncate(j->fd, (off_t)log->good_len) != 0) {
			seterr(err, "cannot truncate the torn last line of "
			    "journal '%s': %s", path, strerror(errno));
			goto fail;
		}
		if (fullsync(j->fd) != 0) {
			seterr(err, "cannot fsync journal '%s': %s", path,
			    strerror(errno));
			goto fail;
		}
	}
	return j;
fail:
	journal_free(j);
	return NULL;
}

/*
 * Take the journal's flock and check that it ends where this writer left it
 * (no record of another process since): 0 with the flock held, or -1 with
 * *err and not held.
 */
static int
claim_end(struct journal *j, char **err)
{
	struct stat st;

	while (flock(j->fd, LOCK_EX) != 0)
		if (errno != EINTR)
			return seterr(err, "cannot lock journal '%s': %s", j->path, strerror(errno));
	if (fstat(j->fd, &st) != 0) {
		seterr(err, "cannot stat journal '%s': %s", j->path, strerror(errno));
		flock(j->fd, LOCK_UN);
		return -1;
	}
	if (st.st_size != j->end) {
		seterr(err, "journal '%s' changed since this zdm last wrote or read it: another "
		    "process appended to it; record %ld was not written", j->path, j->seq + 1);
		flock(j->fd, LOCK_UN);
		return -1;
	}
	return 0;
}

/* json_dump_callback's sink: the line being built */
static int
line_put(const char *p, size_t n, void *arg)
{
	sb_add(arg, p, n);
	return 0;
}

/* jansson's encoding of the string S (quotes and escapes as json_dumps
 * writes them), appended to SB; -1 if S is not valid UTF-8 */
static int
put_string(struct sbuf *sb, const char *s)
{
	json_t *v = json_string(s);
	int rc = v != NULL ? json_dump_callback(v, line_put, sb, DUMP_FLAGS | JSON_ENCODE_ANY) : -1;

	json_decref(v);
	return rc;
}

/* a decimal integer, as jansson writes one ("%lld") */
static void
put_int(struct sbuf *sb, long v)
{
	char d[24];
	size_t i = sizeof d;
	unsigned long u = v < 0 ? 0UL - (unsigned long)v : (unsigned long)v;

	do {
		d[--i] = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (v < 0)
		d[--i] = '-';
	sb_add(sb, d + i, sizeof d - i);
}

/* the encoding of S kept in *ENC (S in *LAST), made again only when S changes */
static const char *
encoded(char **enc, char **last, const char *s)
{
	struct sbuf sb;

	if (*enc != NULL && (last == NULL || strcmp(*last, s) == 0))
		return *enc;
	sb_init(&sb);
	if (put_string(&sb, s) != 0) {
		sb_release(&sb);
		return NULL;
	}
	free(*enc);
	*enc = sb_detach(&sb);
	if (last != NULL) {
		free(*last);
		*last = xstrdup(s);
	}
	return *enc;
}

static const char *
event_encoded(struct journal *j, const char *event)
{
	size_t i, n = sizeof j->ev / sizeof j->ev[0];

	for (i = 0; i < n && j->ev[i].name != NULL; i++)
		if (strcmp(j->ev[i].name, event) == 0)
			return j->ev[i].enc;
	if (i == n) {		/* full: the last slot is a one-entry cache */
		i = n - 1;
		return encoded(&j->ev[i].enc, &j->ev[i].name, event);
	}
	if (encoded(&j->ev[i].enc, &j->ev[i].name, event) == NULL) {
		free(j->ev[i].name);
		j->ev[i].name = NULL;
		return NULL;
	}
	return j->ev[i].enc;
}

/*
 * The line of a record into j->line, in canonical form, each value encoded
 * by jansson once: the data object by json_dump_callback (JSON_COMPACT |
 * JSON_SORT_KEYS, as json_dumps), the strings (event, run, step) as jansson
 * encodes a string (kept while they repeat), around them the record's keys
 * in their sorted order: "attempt" (when not 0), "data", "event", "hash",
 * "prev", "run", "seq", "step" (when there is one), "ts".  "prev" and "hash"
 * are lowercase hex, "ts" is digits and -:.TZ (now_iso8601), "seq" and
 * "attempt" decimal integers: each is its own JSON encoding between quotes,
 * or bare for the integers, as jansson writes them.  canonical (without
 * "hash") = the line before ,"hash":"<hex>" and the line after it: hashed as
 * those two pieces, then the hash is written in its place.  The bytes are
 * json_dumps(record with hash, DUMP_FLAGS)'s (tests/unit/test_journal.c
 * checks it, record by record, for odd steps, events and data).  j->line
 * has room for a "\n" after it.  Returns 0, or -1 with *err set.
 */
static int
record_line(struct journal *j, const char *event, const char *step, int attempt,
    json_t *data, const char *ts, long seq, char hash[HASH_HEX + 1], char **err)
{
	struct sbuf *sb = &j->line;
	const char *ev, *run, *st = NULL;
	size_t head, at, tail;

	ev = event_encoded(j, event != NULL ? event : "");
	run = encoded(&j->run_enc, NULL, j->run_id);
	if (step != NULL)
		st = encoded(&j->step_enc, &j->step_last, step);
	if (event == NULL || ev == NULL || run == NULL || (step != NULL && st == NULL))
		return seterr(err, "journal '%s': cannot build record for '%s' "
		    "(not valid UTF-8?)", j->path, event != NULL ? event : "");
	sb->len = 0;
	sb_adds(sb, "{");
	if (attempt != 0) {
		sb_adds(sb, "\"attempt\":");
		put_int(sb, attempt);
		sb_adds(sb, ",");
	}
	sb_adds(sb, "\"data\":");
	if (json_dump_callback(data, line_put, sb, DUMP_FLAGS) != 0)
		return seterr(err, "journal '%s': cannot encode the data of '%s'", j->path, event);
	sb_adds(sb, ",\"event\":");
	sb_adds(sb, ev);
	head = sb->len;
	sb_adds(sb, ",\"hash\":\"");
	at = sb->len;
	sb_add(sb, zero_hash, HASH_HEX);
	sb_adds(sb, "\"");
	tail = sb->len;
	sb_adds(sb, ",\"prev\":\"");
	sb_add(sb, j->prev, HASH_HEX);
	sb_adds(sb, "\",\"run\":");
	sb_adds(sb, run);
	sb_adds(sb, ",\"seq\":");
	put_int(sb, seq);
	if (st != NULL) {
		sb_adds(sb, ",\"step\":");
		sb_adds(sb, st);
	}
	sb_adds(sb, ",\"ts\":\"");
	sb_adds(sb, ts);
	sb_adds(sb, "\"}");
	{
		const char *part[2] = { sb->buf, sb->buf + tail };
		size_t plen[2] = { head, sb->len - tail };

		if (chain_hash_parts(j->key, j->keylen, j->prev, part, plen, 2, hash) != 0)
			return seterr(err, "journal '%s': cannot hash record", j->path);
	}
	memcpy(sb->buf + at, hash, HASH_HEX);
	sb_add(sb, "\n", 1);	/* room for the "\n" the write adds */
	sb->len--;
	sb->buf[sb->len] = '\0';
	return 0;
}

long
journal_append(struct journal *j, const char *event, const char *step,
    int attempt, json_t *data, char **err)
{
	json_t *d;
	char *line = NULL;
	char hash[HASH_HEX + 1];
	char ts[32];
	long seq = j->seq + 1;
	size_t len = 0;
	long rc = -1;

	if (j->broken) {
		json_decref(data);
		seterr(err, "journal '%s' is unusable after a failed write",
		    j->path);
		return -1;
	}
	if (data != NULL && !json_is_object(data)) {
		json_decref(data);
		seterr(err, "journal '%s': record data must be an object",
		    j->path);
		return -1;
	}
	/* redaction and the chain's name change the data: then on a private
	 * copy (the caller's values stay as they are); else as it is */
	if (data == NULL)
		d = json_object();
	else if (seq == 1 || redact_active())
		d = json_deep_copy(data);
	else
		d = json_incref(data);
	json_decref(data);
	if (d == NULL) {
		seterr(err, "journal '%s': out of memory", j->path);
		return -1;
	}
	redact_json(d);
	if (seq == 1)
		json_object_set_new(d, "chain",
		    json_string(j->hmac ? "hmac-sha256" : "sha256"));

	now_iso8601(ts, sizeof ts);
	if (record_line(j, event, step, attempt, d, ts, seq, hash, err) != 0)
		goto out;
	line = j->line.buf;
	len = j->line.len;
	if (j->sink == NULL && claim_end(j, err) != 0)
		goto out;

	if (j->crash_before == seq)
		raise(SIGKILL);	/* fault injection: a crash before the write */
	if (j->tear_at == seq) {
		/* fault injection: a crash in the middle of the write */
		size_t half = len / 2 > 0 ? len / 2 : 1;

		if (write_all(j->fd, line, half) == 0)
			datasync(j->fd);
		raise(SIGKILL);
	}

	if (j->sink != NULL) {
		/* durable when the sink returns 0; it said why not */
		if (j->sink(line, len, seq, j->sink_arg, err) != 0) {
			j->broken = true;	/* it may or may not be kept */
			goto out;
		}
	} else if ((line[len] = '\n', write_all(j->fd, line, len + 1) != 0) ||
	    (!j->lazy && datasync(j->fd) != 0)) {
		j->broken = true;
		seterr(err, "cannot write journal '%s': %s", j->path,
		    strerror(errno));
		flock(j->fd, LOCK_UN);
		goto out;
	} else {
		j->end += (off_t)len + 1;
		j->unsynced = j->lazy;
		flock(j->fd, LOCK_UN);
	}
	line[len] = '\0';
	j->seq = seq;
	memcpy(j->prev, hash, sizeof j->prev);
	if (j->echo != NULL)
		j->echo(line, j->echo_arg);
	if (j->crash_after == seq)
		raise(SIGKILL);
	rc = seq;
out:
	json_decref(d);
	return rc;
}

void
journal_set_lazy(struct journal *j, bool on)
{
	j->lazy = on && j->sink == NULL;
}

int
journal_sync(struct journal *j, char **err)
{
	if (j->broken)
		return seterr(err, "journal '%s' is unusable after a failed write", j->path);
	if (!j->unsynced)
		return 0;
	if (datasync(j->fd) != 0) {
		j->broken = true;
		return seterr(err, "cannot fsync journal '%s': %s", j->path, strerror(errno));
	}
	j->unsynced = false;
	return 0;
}

bool
journal_behind(const struct journal *j)
{
	struct stat st;

	/* another writer's record makes the file longer than this one left it */
	return j->fd >= 0 && j->sink == NULL && !j->broken && fstat(j->fd, &st) == 0 &&
	    st.st_size != j->end;
}

const char *
journal_path(const struct journal *j)
{
	return j->path;
}

void
journal_close(struct journal *j)
{
	journal_free(j);
}

void
journal_set_echo(struct journal *j, void (*fn)(const char *line, void *arg),
    void *arg)
{
	j->echo = fn;
	j->echo_arg = arg;
}

/* ---- reading ------------------------------------------------------------ */

/* why journal_read failed: the chain is damaged, or the file cannot be used */
enum { BAD_CHAIN = 1, UNUSABLE = 2 };

static int
read_file(const char *path, char **out, size_t *outlen, char **err)
{
	struct sbuf sb;
	char buf[65536];
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return seterr(err, "cannot read journal '%s': %s", path,
		    strerror(errno));
	sb_init(&sb);
	for (;;) {
		ssize_t r = read(fd, buf, sizeof buf);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;

			close(fd);
			sb_release(&sb);
			return seterr(err, "cannot read journal '%s': %s", path,
			    strerror(e));
		}
		if (r == 0)
			break;
		sb_add(&sb, buf, (size_t)r);
	}
	close(fd);
	*outlen = sb.len;
	*out = sb_detach(&sb);
	return 0;
}

/* the shape every record must have before its hash means anything */
static const char *
record_shape(const json_t *rec)
{
	const json_t *v;

	if (!json_is_integer(json_object_get(rec, "seq")))
		return "field 'seq' is missing or not an integer";
	if (!json_is_string(json_object_get(rec, "ts")))
		return "field 'ts' is missing or not a string";
	if (!json_is_string(json_object_get(rec, "run")))
		return "field 'run' is missing or not a string";
	if (!json_is_string(json_object_get(rec, "event")))
		return "field 'event' is missing or not a string";
	if (!json_is_object(json_object_get(rec, "data")))
		return "field 'data' is missing or not an object";
	if (!json_is_string(json_object_get(rec, "prev")))
		return "field 'prev' is missing or not a string";
	if (!json_is_string(json_object_get(rec, "hash")))
		return "field 'hash' is missing or not a string";
	v = json_object_get(rec, "step");
	if (v != NULL && !json_is_string(v))
		return "field 'step' is not a string";
	v = json_object_get(rec, "attempt");
	if (v != NULL && !json_is_integer(v))
		return "field 'attempt' is not an integer";
	return NULL;
}

static void
jlog_push(struct jlog *log, json_t *rec, size_t *cap)
{
	if (log->n == *cap) {
		*cap = *cap ? *cap * 2 : 16;
		log->recs = xrealloc(log->recs, *cap * sizeof *log->recs);
	}
	log->recs[log->n++] = rec;
}

/* the piece after the last newline is a prefix of a record's line */
static bool
torn_record(const char *p, size_t n)
{
	static const char *const starts[] = { "{\"attempt\":", "{\"data\":" };

	for (size_t i = 0; i < 2; i++) {
		size_t k = strlen(starts[i]);

		if (memcmp(p, starts[i], n < k ? n : k) == 0 && memchr(p, '\0', n) == NULL)
			return true;
	}
	return false;
}

/* a file named like a run id (20261121T193504Z-227a.jsonl), or a ref
 * ending in a bare run id (a PostgreSQL run: pg:WHERE/SCHEMA/RUN_ID), holds
 * that run: records copied over another run's are tampering.  Any other
 * name (a copy kept for review) says nothing. */
static bool
run_matches_name(const char *path, const char *run)
{
	const char *b = strrchr(path, '/');
	size_t n;

	b = b != NULL ? b + 1 : path;
	n = strlen(b);
	if (!(n == 27 && strcmp(b + 21, ".jsonl") == 0) && n != 21)
		return true;
	if (b[8] != 'T' || b[15] != 'Z' || b[16] != '-')
		return true;
	for (size_t i = 0; i < 21; i++)
		if (i != 8 && i != 15 && i != 16 && !isxdigit((unsigned char)b[i]))
			return true;
	return strncmp(b, run, 21) == 0 && run[21] == '\0';
}

static int jparse(const char *path, char *buf, size_t len, struct jlog *log, char **err,
    int *why);

/* journal_read, telling why it failed (BAD_CHAIN or UNUSABLE) in *why */
static int
jread(const char *path, struct jlog *log, char **err, int *why)
{
	char *buf = NULL;
	size_t len = 0;

	memset(log, 0, sizeof *log);
	*why = UNUSABLE;
	if (read_file(path, &buf, &len, err) != 0)
		return -1;
	return jparse(path, buf, len, log, err, why);
}

/* check the records in buf (taken), the lines of the journal named path */
static int
jparse(const char *path, char *buf, size_t len, struct jlog *log, char **err, int *why)
{
	char *p, *end, *nl;
	const char *key = NULL, *run = NULL, *prev = zero_hash;
	size_t cap = 0;
	long lineno = 0;
	int rc = -1;

	*why = BAD_CHAIN;
	p = buf;
	end = buf + len;
	while (p < end) {
		json_error_t je;
		json_t *rec;
		const char *what, *rrun, *rprev, *rhash;
		char want[HASH_HEX + 1];
		json_int_t seq;

		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL) {
			/* a crash mid-append leaves the start of a record as
			 * zdm writes it (keys sorted: "attempt" or "data"
			 * first); anything else was put there */
			if (!torn_record(p, (size_t)(end - p))) {
				seterr(err, "%s:%ld: bytes after the last record that are not the start "
				    "of one (appended by hand, or garbage)", path, lineno + 1);
				goto out;
			}
			log->torn = true;	/* crash mid-append */
			break;
		}
		lineno++;
		rec = json_loadb(p, (size_t)(nl - p), LOAD_FLAGS, &je);
		if (rec == NULL) {
			seterr(err, "%s:%ld: not valid JSON: %s", path, lineno,
			    je.text);
			goto out;
		}
		jlog_push(log, rec, &cap);	/* owned by log from here */
		if (!json_is_object(rec)) {
			seterr(err, "%s:%ld: not a JSON object", path, lineno);
			goto out;
		}
		what = record_shape(rec);
		if (what != NULL) {
			seterr(err, "%s:%ld: %s", path, lineno, what);
			goto out;
		}
		if (lineno == 1) {
			const char *chain = json_string_value(json_object_get(
			    json_object_get(rec, "data"), "chain"));

			if (chain == NULL) {
				seterr(err, "%s:1: the first record has no "
				    "data.chain", path);
				goto out;
			}
			if (strcmp(chain, "hmac-sha256") == 0) {
				key = audit_key();
				if (key == NULL) {
					*why = UNUSABLE;
					seterr(err, "%s:1: chain is hmac-sha256 "
					    "but ZDM_AUDIT_KEY is not set: "
					    "cannot check it", path);
					goto out;
				}
			} else if (strcmp(chain, "sha256") != 0) {
				seterr(err, "%s:1: unknown chain '%s' (expected "
				    "sha256 or hmac-sha256)", path, chain);
				goto out;
			} else if (audit_key() != NULL) {
				/* with a key set, an unkeyed chain is one anybody
				 * could have re-made: never act on it */
				seterr(err, "%s:1: chain is plain sha256 but "
				    "ZDM_AUDIT_KEY is set: not made with the key "
				    "(re-chained, or written before the key was "
				    "set)", path);
				goto out;
			}
			run = json_string_value(json_object_get(rec, "run"));
			if (!run_matches_name(path, run)) {
				size_t pn = strlen(path);

				if (pn > 6 && strcmp(path + pn - 6, ".jsonl") == 0)
					seterr(err, "%s:1: the records are of run '%s', not of the run "
					    "the file is named for (copied over another run's journal?)",
					    path, run);
				else
					seterr(err, "%s:1: the records are of run '%s', not of the run "
					    "they are kept as (copied from another run?)", path, run);
				goto out;
			}
		}
		rhash = json_string_value(json_object_get(rec, "hash"));
		if (record_hash(rec, key, want) != 0) {
			*why = UNUSABLE;
			seterr(err, "%s:%ld: cannot hash the record", path,
			    lineno);
			goto out;
		}
		if (strcmp(rhash, want) != 0) {
			seterr(err, "%s:%ld: hash does not match the record "
			    "(line edited?)", path, lineno);
			goto out;
		}
		seq = json_integer_value(json_object_get(rec, "seq"));
		if (seq != (json_int_t)lineno) {
			seterr(err, "%s:%ld: seq %" JSON_INTEGER_FORMAT " where "
			    "%ld was expected (line dropped or reordered?)",
			    path, lineno, seq, lineno);
			goto out;
		}
		rprev = json_string_value(json_object_get(rec, "prev"));
		if (strcmp(rprev, prev) != 0) {
			if (lineno == 1)
				seterr(err, "%s:1: prev of the first record is "
				    "not all zeros (line dropped or "
				    "re-chained?)", path);
			else
				seterr(err, "%s:%ld: prev does not match the "
				    "hash of line %ld (line dropped, reordered "
				    "or re-chained?)", path, lineno, lineno - 1);
			goto out;
		}
		rrun = json_string_value(json_object_get(rec, "run"));
		if (strcmp(rrun, run) != 0) {
			seterr(err, "%s:%ld: run '%s' where '%s' was expected "
			    "(line from another journal?)", path, lineno, rrun,
			    run);
			goto out;
		}
		prev = rhash;
		p = nl + 1;
		log->good_len = (size_t)(p - buf);
	}
	log->last_hash = xstrdup(prev);
	rc = 0;
out:
	free(buf);
	if (rc != 0)
		jlog_release(log);
	return rc;
}

int
journal_read(const char *path, struct jlog *log, char **err)
{
	int why;

	return jread(path, log, err, &why);
}

void
jlog_release(struct jlog *log)
{
	for (size_t i = 0; i < log->n; i++)
		json_decref(log->recs[i]);
	free(log->recs);
	free(log->last_hash);
	memset(log, 0, sizeof *log);
}

static int jverify(const char *path, const char *text, size_t len, FILE *out, FILE *errout);

int
journal_verify(const char *path, FILE *out, FILE *errout)
{
	return jverify(path, NULL, 0, out, errout);
}

/* from the file path, or from text when it is not NULL */
static int
jverify(const char *path, const char *text, size_t len, FILE *out, FILE *errout)
{
	struct jlog log;
	char *err = NULL;
	const char *chain = NULL;
	int why;

	if ((text != NULL ? journal_read_text(path, text, len, &log, &err, &why) :
	    jread(path, &log, &err, &why)) != 0) {
		fprintf(errout, "%s\n", err);
		free(err);
		return why;
	}
	if (log.n > 0)
		chain = json_string_value(json_object_get(
		    json_object_get(log.recs[0], "data"), "chain"));
	if (log.n == 0) {
		/* nothing was verified: not an intact journal */
		fprintf(errout, "%s: no complete record: nothing to verify (a run that crashed as "
		    "its journal was made, or an emptied journal)\n", path);
		jlog_release(&log);
		return BAD_CHAIN;
	}
	fprintf(out, "%s: ok, %zu records, chain %s, last hash %.16s%s\n", path, log.n, chain,
	    log.last_hash, log.torn ? ", torn last line ignored" : "");
	jlog_release(&log);
	return 0;
}

/* ---- journals kept elsewhere (a state backend other than files) ---------- */

struct journal *
journal_open_sink(const char *name, const char *run_id, const struct jlog *log,
    int (*sink)(const char *line, size_t len, long seq, void *arg, char **err), void *arg,
    char **err)
{
	struct journal *j;
	const char *key = audit_key();

	if (run_id == NULL || *run_id == '\0') {
		seterr(err, "journal '%s': empty run id", name);
		return NULL;
	}
	j = journal_new(name, run_id);
	j->sink = sink;
	j->sink_arg = arg;
	if (log != NULL && log->n > 0) {
		const json_t *first = log->recs[0];
		const char *run = json_string_value(json_object_get(first, "run"));
		const char *chain = json_string_value(json_object_get(
		    json_object_get(first, "data"), "chain"));

		if (run == NULL || strcmp(run, run_id) != 0) {
			seterr(err, "journal '%s' belongs to run '%s', not '%s'", name,
			    run != NULL ? run : "?", run_id);
			goto fail;
		}
		if (chain != NULL && strcmp(chain, "hmac-sha256") == 0) {
			if (key == NULL) {
				seterr(err, "journal '%s' is chained with hmac-sha256 but "
				    "ZDM_AUDIT_KEY is not set", name);
				goto fail;
			}
			journal_use_key(j, key);
		} else if (chain == NULL || strcmp(chain, "sha256") != 0) {
			seterr(err, "journal '%s': unknown chain '%s'", name,
			    chain != NULL ? chain : "(none)");
			goto fail;
		}
		if (log->last_hash == NULL || strlen(log->last_hash) != HASH_HEX) {
			seterr(err, "journal '%s': no last hash to continue from", name);
			goto fail;
		}
		memcpy(j->prev, log->last_hash, HASH_HEX + 1);
		j->seq = (long)log->n;
	} else if (key != NULL) {
		journal_use_key(j, key);
	}
	return j;
fail:
	journal_free(j);
	return NULL;
}

int
journal_read_text(const char *name, const char *text, size_t len, struct jlog *log, char **err,
    int *why)
{
	char *buf = xmalloc(len + 1);
	int w;

	memcpy(buf, text, len);
	buf[len] = '\0';
	memset(log, 0, sizeof *log);
	return jparse(name, buf, len, log, err, why != NULL ? why : &w);
}

int
journal_verify_text(const char *name, const char *text, size_t len, FILE *out, FILE *errout)
{
	return jverify(name, text, len, out, errout);
}
