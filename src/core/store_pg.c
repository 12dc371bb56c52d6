/*
 * store_pg.c - runs kept in PostgreSQL (store.h), over libpq; docs/state.md.
 *
 * In a schema of its own (default zdm; `zdm state init` makes it):
 *
 *   SCHEMA.meta     (key, value): schema_version
 *   SCHEMA.journal  (run_id, seq, record, written): one row per record,
 *                   primary key (run_id, seq); record is the line the file
 *                   backend writes (journal.c: prev, hash, HMAC), so reading
 *                   and `zdm audit verify` check the same chain.  A trigger
 *                   refuses UPDATE and DELETE.
 *   SCHEMA.locks    (runbook, epoch, backend_pid, host, pid, actor, run_id,
 *                   since): who holds a runbook's run lock
 *
 * A ref is "pg:WHERE/SCHEMA/RUN_ID" (WHERE: user@host:port/db, never a
 * password: one in the connection string is refused before connecting).
 *
 * The run lock of runbook NAME is the session-level advisory lock
 * (hashtext(SCHEMA), hashtext(NAME)) held by this store's own connection, so
 * it goes when the process or its connection does; TCP keepalives on both
 * ends (idle 5 s, then 3 probes 2 s apart) and tcp_user_timeout 10 s make the
 * server drop a vanished client in about 11 s.  Taking it bumps the lock
 * row's epoch and records this backend's pid there.  Every append while the
 * lock is held is fenced: the INSERT adds its row only if the lock row still
 * has this epoch and this backend, in the same statement; a zdm that lost
 * its connection (or was frozen while another took over) appends nothing.
 * Each append is its own transaction, committed with synchronous_commit on
 * before the call returns (the file backend's fdatasync).
 *
 * A writer with store_set_notify (zdm approve) also sends
 * pg_notify('zdm_SCHEMA', run_id) in its INSERT's statement, so on commit;
 * a zdm waiting for an approval (store_wait) LISTENs on that channel on its
 * own connection, between its queries (poll() on PQsocket, PQconsumeInput,
 * PQnotifies), and reads the run again when its id comes.  A notification
 * only says "look": the decision is read from the journal.  Two writers of
 * one run (the waiting zdm, zdm approve without the lock) cannot fork the
 * chain: the second INSERT of a seq fails on the primary key.
 */
#include <ctype.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "base/proc.h"
#include "base/util.h"
#include "core/actor.h"
#include "core/store.h"
#include "zdm/step.h"

#define SCHEMA_VERSION "1"

struct pg_lock {
	struct store_lock l;
	char *name;
	char epoch[24];
};

struct pg_store {
	struct store s;
	PGconn *conn;
	char *schema;		/* an identifier: [a-z_][a-z0-9_]* */
	char *where;		/* user@host:port/db */
	char *place;		/* where and schema, for messages */
	struct pg_lock *held;	/* the run lock this connection holds, or NULL */
	char *channel;		/* of NOTIFY: zdm_SCHEMA (at most 63 bytes) */
	bool listening;		/* LISTEN channel on this connection */
};

struct pg_writer {
	struct store_writer w;
	struct journal *j;
	char *ref;
	char *run_id;
	bool notify;		/* store_set_notify: each INSERT notifies the channel */
};

/* SQL with each '@' replaced by the quoted schema */
static char *
sql(const struct pg_store *ps, const char *tmpl)
{
	struct sbuf sb;

	sb_init(&sb);
	for (const char *p = tmpl; *p != '\0'; p++) {
		if (*p == '@')
			sb_addf(&sb, "\"%s\"", ps->schema);
		else
			sb_add(&sb, p, 1);
	}
	return sb_detach(&sb);
}

/* libpq's message, first line, no newline (malloc'd) */
static char *
pg_msg(const PGconn *c, const PGresult *res)
{
	const char *m = res != NULL ? PQresultErrorMessage(res) : "";
	char *t;

	if (m == NULL || *m == '\0')
		m = PQerrorMessage(c);
	t = xstrdup(m != NULL && *m != '\0' ? m : "unknown error");
	t[strcspn(t, "\n")] = '\0';
	if (strncmp(t, "ERROR:  ", 8) == 0)
		memmove(t, t + 8, strlen(t + 8) + 1);
	return t;
}

/* run TMPL (schema '@') with N text params; NULL and *err on an error */
static PGresult *
q(struct pg_store *ps, const char *tmpl, int n, const char *const *vals, char **err)
{
	char *text = sql(ps, tmpl), *m;
	PGresult *res = PQexecParams(ps->conn, text, n, NULL, vals, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(res);

	free(text);
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		return res;
	m = pg_msg(ps->conn, res);
	if (PQstatus(ps->conn) == CONNECTION_BAD)
		seterr(err, "the connection to the state database %s was lost: %s", ps->where, m);
	else
		seterr(err, "state database %s: %s", ps->where, m);
	free(m);
	PQclear(res);
	return NULL;
}

/* ---- refs ------------------------------------------------------------------ */

static char *
ref_of(const struct pg_store *ps, const char *run_id)
{
	return xasprintf("pg:%s/%s/%s", ps->where, ps->schema, run_id);
}

/* the run id of a ref (or a bare run id) */
static const char *
run_of(const char *ref)
{
	const char *b = strrchr(ref, '/');

	return b != NULL ? b + 1 : ref;
}

/* ---- finding and reading ---------------------------------------------------- */

static char *
pg_find(struct store *s, const char *run_id)
{
	struct pg_store *ps = (struct pg_store *)s;
	const char *v[] = { run_id };
	PGresult *res = q(ps, "SELECT 1 FROM @.journal WHERE run_id = $1 LIMIT 1", 1, v, NULL);
	char *ref = NULL;

	if (res != NULL && PQntuples(res) == 1)
		ref = ref_of(ps, run_id);
	PQclear(res);
	return ref;
}

static char *
pg_latest(struct store *s, const char *name, bool with_dry)
{
	struct pg_store *ps = (struct pg_store *)s;
	const char *v[] = { name, with_dry ? "true" : "false" };
	PGresult *res = q(ps,
	    "SELECT f.run_id FROM @.journal f "
	    "JOIN (SELECT run_id, max(written) AS w FROM @.journal GROUP BY run_id) m USING (run_id) "
	    "WHERE f.seq = 1 AND ($1::text IS NULL OR (f.record::jsonb)->'data'->>'name' = $1) "
	    "AND ($2::boolean OR (f.record::jsonb)->'data'->>'dry_run' IS DISTINCT FROM 'true') "
	    "ORDER BY m.w DESC, f.run_id DESC LIMIT 1", 2, v, NULL);
	char *ref = NULL;

	if (res != NULL && PQntuples(res) == 1)
		ref = ref_of(ps, PQgetvalue(res, 0, 0));
	PQclear(res);
	return ref;
}

static const char *
pg_runs_place(struct store *s)
{
	return ((struct pg_store *)s)->place;
}

static int
pg_list(struct store *s, const char *name, char ***refs, size_t *n, char **err)
{
	struct pg_store *ps = (struct pg_store *)s;
	const char *v[] = { name };
	PGresult *res = q(ps,
	    "SELECT run_id FROM @.journal WHERE seq = 1 AND "
	    "($1::text IS NULL OR (record::jsonb)->'data'->>'name' = $1) ORDER BY run_id", 1, v, err);

	*refs = NULL;
	*n = 0;
	if (res == NULL)
		return -1;
	*n = (size_t)PQntuples(res);
	*refs = xcalloc(*n + 1, sizeof **refs);
	for (size_t i = 0; i < *n; i++)
		(*refs)[i] = ref_of(ps, PQgetvalue(res, (int)i, 0));
	PQclear(res);
	return 0;
}

/* every record of the run, each line ended by "\n"; NULL and *err when
 * there is none or it cannot be read */
static char *
run_text(struct pg_store *ps, const char *ref, size_t *len, char **err)
{
	const char *v[] = { run_of(ref) };
	PGresult *res = q(ps, "SELECT record FROM @.journal WHERE run_id = $1 ORDER BY seq", 1, v, err);
	struct sbuf sb;

	if (res == NULL)
		return NULL;
	if (PQntuples(res) == 0) {
		seterr(err, "no run '%s' in %s", run_of(ref), ps->place);
		PQclear(res);
		return NULL;
	}
	sb_init(&sb);
	for (int i = 0; i < PQntuples(res); i++) {
		sb_add(&sb, PQgetvalue(res, i, 0), (size_t)PQgetlength(res, i, 0));
		sb_add(&sb, "\n", 1);
	}
	PQclear(res);
	*len = sb.len;
	return sb_detach(&sb);
}

static int
pg_read(struct store *s, const char *ref, struct jlog *log, char **err)
{
	size_t len = 0;
	char *text = run_text((struct pg_store *)s, ref, &len, err);
	int rc;

	memset(log, 0, sizeof *log);
	if (text == NULL)
		return -1;
	rc = journal_read_text(ref, text, len, log, err, NULL);
	free(text);
	return rc;
}

static void
pg_read_unchecked(struct store *s, const char *ref, struct jlog *log)
{
	struct pg_store *ps = (struct pg_store *)s;
	const char *v[] = { run_of(ref) };
	PGresult *res = q(ps, "SELECT record FROM @.journal WHERE run_id = $1 ORDER BY seq", 1, v, NULL);
	size_t cap = 0;

	memset(log, 0, sizeof *log);
	for (int i = 0; res != NULL && i < PQntuples(res); i++) {
		json_t *r = json_loadb(PQgetvalue(res, i, 0), (size_t)PQgetlength(res, i, 0), 0, NULL);

		if (!json_is_object(r)) {
			json_decref(r);
			continue;
		}
		if (log->n == cap) {
			cap = cap ? cap * 2 : 16;
			log->recs = xrealloc(log->recs, cap * sizeof *log->recs);
		}
		log->recs[log->n++] = r;
	}
	PQclear(res);
}

static int
pg_verify(struct store *s, const char *ref, FILE *out, FILE *errout)
{
	size_t len = 0;
	char *err = NULL, *text = run_text((struct pg_store *)s, ref, &len, &err);
	int rc;

	if (text == NULL) {
		fprintf(errout, "%s: %s\n", ref, err);
		free(err);
		return 2;
	}
	rc = journal_verify_text(ref, text, len, out, errout);
	free(text);
	return rc;
}

/* ---- appending --------------------------------------------------------------- */

/* journal.c's sink: one INSERT, its own transaction, fenced by the lock */
static int
pg_sink(const char *line, size_t len, long seq, void *arg, char **err)
{
	struct pg_writer *pw = arg;
	struct pg_store *ps = (struct pg_store *)pw->w.store;
	char seqs[24], *rec = xmalloc(len + 1);
	const char *v[6];
	PGresult *res;
	int rc = -1;

	memcpy(rec, line, len);
	rec[len] = '\0';
	snprintf(seqs, sizeof seqs, "%ld", seq);
	v[0] = pw->run_id;
	v[1] = seqs;
	v[2] = rec;
	if (ps->held != NULL) {
		v[3] = ps->held->name;
		v[4] = ps->held->epoch;
		v[5] = ps->channel;
		res = q(ps, pw->notify ?
		    "WITH ins AS (INSERT INTO @.journal (run_id, seq, record) SELECT $1, $2, $3 "
		    "WHERE EXISTS (SELECT 1 FROM @.locks WHERE runbook = $4 AND epoch = $5 "
		    "AND backend_pid = pg_backend_pid()) RETURNING run_id) "
		    "SELECT pg_notify($6, run_id) FROM ins" :
		    "INSERT INTO @.journal (run_id, seq, record) SELECT $1, $2, $3 "
		    "WHERE EXISTS (SELECT 1 FROM @.locks WHERE runbook = $4 AND epoch = $5 "
		    "AND backend_pid = pg_backend_pid())", pw->notify ? 6 : 5, v, err);
	} else {
		v[3] = ps->channel;
		res = q(ps, pw->notify ?
		    "WITH ins AS (INSERT INTO @.journal (run_id, seq, record) VALUES ($1, $2, $3) "
		    "RETURNING run_id) SELECT pg_notify($4, run_id) FROM ins" :
		    "INSERT INTO @.journal (run_id, seq, record) VALUES ($1, $2, $3)",
		    pw->notify ? 4 : 3, v, err);
	}
	if (res == NULL)
		goto out;
	if (strcmp(PQcmdTuples(res), "1") != 0)
		seterr(err, "this zdm no longer holds the run lock of runbook '%s' (another zdm "
		    "took it); record %ld of run %s was not written", ps->held->name, seq, pw->run_id);
	else
		rc = 0;
	PQclear(res);
out:
	free(rec);
	return rc;
}

static struct store_writer *
pg_writer_new(struct store *s, const char *run_id, const struct jlog *log, char **err)
{
	struct pg_store *ps = (struct pg_store *)s;
	struct pg_writer *pw = xcalloc(1, sizeof *pw);

	pw->w.store = s;
	pw->run_id = xstrdup(run_id);
	pw->ref = ref_of(ps, run_id);
	pw->j = journal_open_sink(pw->ref, run_id, log, pg_sink, pw, err);
	if (pw->j == NULL) {
		free(pw->run_id);
		free(pw->ref);
		free(pw);
		return NULL;
	}
	return &pw->w;
}

static struct store_writer *
pg_create(struct store *s, const char *run_id, char **err)
{
	return pg_writer_new(s, run_id, NULL, err);
}

static struct store_writer *
pg_open_writer(struct store *s, const char *ref, const char *run_id,
    const struct jlog *log, char **err)
{
	if (strcmp(run_of(ref), run_id) != 0)
		return seterr(err, "run '%s' is not the run of '%s'", run_id, ref), NULL;
	return pg_writer_new(s, run_id, log, err);
}

static const char *
pg_writer_ref(const struct store_writer *w)
{
	return ((const struct pg_writer *)w)->ref;
}

static void
pg_set_echo(struct store_writer *w, void (*fn)(const char *line, void *arg), void *arg)
{
	journal_set_echo(((struct pg_writer *)w)->j, fn, arg);
}

static int
pg_last(struct store_writer *w, long *seq, char **hash)
{
	struct pg_writer *pw = (struct pg_writer *)w;
	const char *v[] = { pw->run_id };
	PGresult *res = q((struct pg_store *)w->store,
	    "SELECT seq, (record::jsonb)->>'hash' FROM @.journal WHERE run_id = $1 "
	    "ORDER BY seq DESC LIMIT 1", 1, v, NULL);
	int rc = -1;

	if (res != NULL && PQntuples(res) == 1 && !PQgetisnull(res, 0, 1)) {
		*seq = strtol(PQgetvalue(res, 0, 0), NULL, 10);
		*hash = xstrdup(PQgetvalue(res, 0, 1));
		rc = 0;
	}
	PQclear(res);
	return rc;
}

static long
pg_append(struct store_writer *w, const char *event, const char *step, int attempt,
    json_t *data, char **err)
{
	return journal_append(((struct pg_writer *)w)->j, event, step, attempt, data, err);
}

static void
pg_close_writer(struct store_writer *w)
{
	struct pg_writer *pw = (struct pg_writer *)w;

	journal_close(pw->j);
	free(pw->run_id);
	free(pw->ref);
	free(pw);
}

static void
pg_set_notify(struct store_writer *w)
{
	((struct pg_writer *)w)->notify = true;
}

/* ---- waiting for another writer's record ------------------------------------------ */

/* the notifications libpq holds: does one name RUN_ID */
static bool
drain(struct pg_store *ps, const char *run_id)
{
	PGnotify *n;
	bool hit = false;

	while ((n = PQnotifies(ps->conn)) != NULL) {
		if (run_id != NULL && strcmp(n->relname, ps->channel) == 0 &&
		    strcmp(n->extra, run_id) == 0)
			hit = true;
		PQfreemem(n);
	}
	return hit;
}

static int
pg_watch(struct store *s, const char *ref, bool on, char **err)
{
	struct pg_store *ps = (struct pg_store *)s;
	char *text;
	PGresult *res;

	if (on == ps->listening)
		return 0;
	text = xasprintf("%s \"%s\"", on ? "LISTEN" : "UNLISTEN", ps->channel);
	res = PQexec(ps->conn, text);
	free(text);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		char *m = pg_msg(ps->conn, res);

		seterr(err, "state database %s: cannot %s for approvals: %s", ps->where,
		    on ? "listen" : "stop listening", m);
		free(m);
		PQclear(res);
		return -1;
	}
	PQclear(res);
	ps->listening = on;
	if (!on)
		drain(ps, NULL);
	return 0;
}

static int
pg_wait(struct store *s, const char *ref, int64_t ms, char **err)
{
	struct pg_store *ps = (struct pg_store *)s;
	int64_t end = zdm_now_ms() + ms;
	const char *run = run_of(ref);

	if (!ps->listening && pg_watch(s, ref, true, err) != 0)
		return -1;
	for (;;) {
		int r;

		if (drain(ps, run))	/* some came with our own queries */
			return 1;
		r = zdm_poll_fd(PQsocket(ps->conn), POLLIN, end);
		if (r <= 0)
			return 0;	/* the time passed, or a signal */
		if (!PQconsumeInput(ps->conn) || PQstatus(ps->conn) == CONNECTION_BAD) {
			char *m = pg_msg(ps->conn, NULL);

			seterr(err, "the connection to the state database %s was lost: %s", ps->where, m);
			free(m);
			return -1;
		}
	}
}

/* ---- the run lock -------------------------------------------------------------- */

/* "runbook 'NAME' is locked by pid ..." from the lock row, as the file backend says it */
static void
holder_err(struct pg_store *ps, const char *name, char **err)
{
	const char *v[] = { name };
	PGresult *res = q(ps,
	    "SELECT pid, host, run_id, to_char(since AT TIME ZONE 'UTC', "
	    "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), actor FROM @.locks "
	    "WHERE runbook = $1 AND backend_pid IS NOT NULL", 1, v, NULL);

	if (res != NULL && PQntuples(res) == 1)
		seterr(err, "runbook '%s' is locked by pid %s on host '%s' (run %s, since %s, "
		    "actor %s); wait for that run to finish or stop it", name, PQgetvalue(res, 0, 0),
		    PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 3),
		    PQgetvalue(res, 0, 4));
	else
		seterr(err, "runbook '%s' is locked by another zdm (no details in %s); wait for "
		    "that run to finish or stop it", name, ps->place);
	PQclear(res);
}

static int
pg_lock(struct store *s, const char *name, const char *run_id, struct store_lock **lk,
    char **err)
{
	struct pg_store *ps = (struct pg_store *)s;
	const char *kv[] = { ps->schema, name };
	char host[256], pid[24], *who;
	const char *v[5];
	PGresult *res;
	struct pg_lock *pl;

	if (ps->held != NULL)
		return seterr(err, "this zdm already holds the run lock of runbook '%s'", ps->held->name);
	res = q(ps, "SELECT pg_try_advisory_lock(hashtext($1), hashtext($2))", 2, kv, err);
	if (res == NULL)
		return -1;
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		PQclear(res);
		holder_err(ps, name, err);
		return -1;
	}
	PQclear(res);
	if (gethostname(host, sizeof host) != 0)
		snprintf(host, sizeof host, "?");
	host[sizeof host - 1] = '\0';
	snprintf(pid, sizeof pid, "%ld", (long)getpid());
	who = audit_who();
	v[0] = name;
	v[1] = host;
	v[2] = pid;
	v[3] = who;
	v[4] = run_id != NULL ? run_id : "";
	res = q(ps, "INSERT INTO @.locks AS l (runbook, epoch, backend_pid, host, pid, actor, run_id, since) "
	    "VALUES ($1, 1, pg_backend_pid(), $2, $3, $4, $5, now()) "
	    "ON CONFLICT (runbook) DO UPDATE SET epoch = l.epoch + 1, backend_pid = excluded.backend_pid, "
	    "host = excluded.host, pid = excluded.pid, actor = excluded.actor, run_id = excluded.run_id, "
	    "since = excluded.since RETURNING epoch", 5, v, err);
	free(who);
	if (res == NULL || PQntuples(res) != 1) {
		PQclear(res);
		PQclear(q(ps, "SELECT pg_advisory_unlock(hashtext($1), hashtext($2))", 2, kv, NULL));
		return -1;
	}
	pl = xcalloc(1, sizeof *pl);
	pl->l.store = s;
	pl->name = xstrdup(name);
	snprintf(pl->epoch, sizeof pl->epoch, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	ps->held = pl;
	*lk = &pl->l;
	return 0;
}

/* this connection is alive and the lock row still names it, at its epoch */
static int
pg_lock_check(struct store_lock *lk, char **err)
{
	struct pg_lock *pl = (struct pg_lock *)lk;
	struct pg_store *ps = (struct pg_store *)lk->store;
	const char *v[] = { pl->name, pl->epoch };
	char *qerr = NULL;
	PGresult *res = q(ps, "SELECT EXISTS (SELECT 1 FROM @.locks WHERE runbook = $1 AND epoch = $2 "
	    "AND backend_pid = pg_backend_pid())", 2, v, &qerr);
	int rc = 0;

	if (res == NULL) {
		seterr(err, "%s; the run lock of runbook '%s' went with it", qerr, pl->name);
		free(qerr);
		return -1;
	}
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
		rc = seterr(err, "another zdm took the run lock of runbook '%s' in %s", pl->name, ps->place);
	PQclear(res);
	return rc;
}

static void
pg_unlock(struct store_lock *lk)
{
	struct pg_lock *pl = (struct pg_lock *)lk;
	struct pg_store *ps = (struct pg_store *)lk->store;
	const char *v[] = { pl->name, pl->epoch }, *kv[] = { ps->schema, pl->name };

	if (PQstatus(ps->conn) == CONNECTION_OK) {
		PQclear(q(ps, "UPDATE @.locks SET backend_pid = NULL WHERE runbook = $1 AND epoch = $2 "
		    "AND backend_pid = pg_backend_pid()", 2, v, NULL));
		PQclear(q(ps, "SELECT pg_advisory_unlock(hashtext($1), hashtext($2))", 2, kv, NULL));
	}
	if (ps->held == pl)
		ps->held = NULL;
	free(pl->name);
	free(pl);
}

/* a live session holds NAME's advisory lock: the lock row names it */
static bool
pg_locked(struct store *s, const char *name, long *pid, char **run)
{
	struct pg_store *ps = (struct pg_store *)s;
	const char *v[] = { name, ps->schema };
	PGresult *res = q(ps,
	    "SELECT l.pid, l.run_id FROM @.locks l JOIN pg_locks k ON k.pid = l.backend_pid "
	    "AND k.locktype = 'advisory' AND k.granted AND k.objsubid = 2 "
	    "AND k.classid = hashtext($2)::bit(32)::bigint::oid "
	    "AND k.objid = hashtext($1)::bit(32)::bigint::oid WHERE l.runbook = $1", 2, v, NULL);
	bool held = res != NULL && PQntuples(res) >= 1;

	*pid = 0;
	*run = NULL;
	if (held) {
		*pid = strtol(PQgetvalue(res, 0, 0), NULL, 10);
		*run = *PQgetvalue(res, 0, 1) != '\0' ? xstrdup(PQgetvalue(res, 0, 1)) : NULL;
	}
	PQclear(res);
	return held;
}

static void
pg_free(struct store *s)
{
	struct pg_store *ps = (struct pg_store *)s;

	if (ps->held != NULL)
		pg_unlock(&ps->held->l);
	PQfinish(ps->conn);
	free(ps->schema);
	free(ps->channel);
	free(ps->where);
	free(ps->place);
	free(s->location);
	free(ps);
}

static const struct store_ops pg_ops = {
	.fences = true,
	.find = pg_find,
	.latest = pg_latest,
	.runs_place = pg_runs_place,
	.list = pg_list,
	.read = pg_read,
	.read_unchecked = pg_read_unchecked,
	.verify = pg_verify,
	.create = pg_create,
	.open_writer = pg_open_writer,
	.writer_ref = pg_writer_ref,
	.set_echo = pg_set_echo,
	.last = pg_last,
	.append = pg_append,
	.close_writer = pg_close_writer,
	.set_notify = pg_set_notify,
	.watch = pg_watch,
	.wait = pg_wait,
	.lock = pg_lock,
	.lock_check = pg_lock_check,
	.unlock = pg_unlock,
	.locked = pg_locked,
	.free = pg_free,
};

/* ---- opening ------------------------------------------------------------------- */

bool
store_is_pg(const char *spec)
{
	size_t k = 0;

	if (strncmp(spec, "postgresql://", 13) == 0 || strncmp(spec, "postgres://", 11) == 0)
		return true;
	/* key=value conninfo: it starts with a keyword and '=' */
	while (spec[k] == ' ')
		k++;
	if (!islower((unsigned char)spec[k]))
		return false;
	while (islower((unsigned char)spec[k]) || spec[k] == '_')
		k++;
	while (spec[k] == ' ')
		k++;
	return spec[k] == '=';
}

static bool
schema_ok(const char *s)
{
	if (s == NULL || !(islower((unsigned char)*s) || *s == '_') || strlen(s) > 63)
		return false;
	for (; *s != '\0'; s++)
		if (!islower((unsigned char)*s) && !isdigit((unsigned char)*s) && *s != '_')
			return false;
	return true;
}

/* the server's notices (NOTICE: relation exists, skipping) are not ours to print */
static void
no_notice(void *arg, const char *message)
{
	(void)arg, (void)message;
}

/* connect; no schema check.  Errors never quote the connection string. */
static struct pg_store *
pg_connect(const char *spec, const char *schema, char **err)
{
	/* ours first: what the connection string says wins */
	const char *kw[] = { "application_name", "connect_timeout", "keepalives", "keepalives_idle",
	    "keepalives_interval", "keepalives_count", "tcp_user_timeout", "dbname", NULL };
	const char *vals[] = { "zdm", "10", "1", "5", "2", "3", "10000", spec, NULL };
	PQconninfoOption *opts;
	char *perr = NULL, *m;
	struct pg_store *ps;
	PGresult *res;

	if (!schema_ok(schema))
		return seterr(err, "--schema '%s': a schema name is lowercase letters, digits and _ "
		    "(at most 63, not starting with a digit)", schema ? schema : ""), NULL;
	opts = PQconninfoParse(spec, &perr);
	if (opts == NULL) {
		PQfreemem(perr);
		return seterr(err, "the state connection string cannot be read (a postgresql:// URI or "
		    "key=value conninfo; see docs/state.md)"), NULL;
	}
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
		if (strcmp(o->keyword, "password") == 0 && o->val != NULL) {
			PQconninfoFree(opts);
			return seterr(err, "the state connection string holds a password: leave it out and "
			    "give it the libpq way (PGPASSWORD, ~/.pgpass or PGPASSFILE), so it never shows "
			    "in a command line, a process list or a message"), NULL;
		}
	PQconninfoFree(opts);
	ps = xcalloc(1, sizeof *ps);
	ps->s.ops = &pg_ops;
	ps->schema = xstrdup(schema);
	ps->channel = xasprintf("zdm_%.59s", schema);
	ps->conn = PQconnectdbParams(kw, vals, 1);
	if (ps->conn == NULL || PQstatus(ps->conn) != CONNECTION_OK) {
		m = pg_msg(ps->conn, NULL);
		seterr(err, "cannot connect to the state database: %s", m);
		free(m);
		goto fail;
	}
	PQsetNoticeProcessor(ps->conn, no_notice, NULL);
	ps->where = xasprintf("%s@%s:%s/%s", PQuser(ps->conn), PQhost(ps->conn), PQport(ps->conn),
	    PQdb(ps->conn));
	ps->place = xasprintf("%s (schema %s)", ps->where, ps->schema);
	ps->s.location = xstrdup(ps->place);
	/* the server drops a vanished client too: keepalives on its end, and
	 * every commit of ours is durable before it returns */
	res = PQexec(ps->conn, "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; "
	    "SET tcp_keepalives_count = 3; SET tcp_user_timeout = 10000; SET synchronous_commit = on");
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		m = pg_msg(ps->conn, res);
		seterr(err, "state database %s: %s", ps->where, m);
		free(m);
		PQclear(res);
		goto fail;
	}
	PQclear(res);
	return ps;
fail:
	pg_free(&ps->s);
	return NULL;
}

struct store *
store_open_pg(const char *spec, const char *schema, char **err)
{
	struct pg_store *ps = pg_connect(spec, schema, err);
	PGresult *res;
	char *text;
	const char *state;

	if (ps == NULL)
		return NULL;
	text = sql(ps, "SELECT value FROM @.meta WHERE key = 'schema_version'");
	res = PQexec(ps->conn, text);
	free(text);
	state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		if (state != NULL && (strcmp(state, "42P01") == 0 || strcmp(state, "3F000") == 0))
			seterr(err, "no zdm state in %s: create it once with: zdm state init URL%s%s",
			    ps->place, strcmp(schema, "zdm") ? " --schema " : "",
			    strcmp(schema, "zdm") ? schema : "");
		else {
			char *m = pg_msg(ps->conn, res);

			seterr(err, "state database %s: cannot read the schema version: %s", ps->place, m);
			free(m);
		}
		PQclear(res);
		pg_free(&ps->s);
		return NULL;
	}
	if (strcmp(PQgetvalue(res, 0, 0), SCHEMA_VERSION) != 0) {
		bool newer = strtol(PQgetvalue(res, 0, 0), NULL, 10) > strtol(SCHEMA_VERSION, NULL, 10);

		seterr(err, "the zdm state in %s is schema version %s; this zdm knows version %s: %s",
		    ps->place, PQgetvalue(res, 0, 0), SCHEMA_VERSION,
		    newer ? "use a newer zdm" : "upgrade it with: zdm state init URL");
		PQclear(res);
		pg_free(&ps->s);
		return NULL;
	}
	PQclear(res);
	return &ps->s;
}

int
store_init_pg(const char *spec, const char *schema, char **out, char **err)
{
	static const char init[] =
	    "BEGIN;"
	    "SELECT pg_advisory_xact_lock(hashtext('zdm state init'), 0);"
	    "CREATE SCHEMA IF NOT EXISTS @;"
	    "CREATE TABLE IF NOT EXISTS @.meta (key text PRIMARY KEY, value text NOT NULL);"
	    "CREATE TABLE IF NOT EXISTS @.journal ("
	    "  run_id text NOT NULL,"
	    "  seq bigint NOT NULL CHECK (seq > 0),"
	    "  record text NOT NULL,"
	    "  written timestamptz NOT NULL DEFAULT clock_timestamp(),"
	    "  PRIMARY KEY (run_id, seq));"
	    "CREATE TABLE IF NOT EXISTS @.locks ("
	    "  runbook text PRIMARY KEY,"
	    "  epoch bigint NOT NULL,"
	    "  backend_pid integer,"
	    "  host text, pid bigint, actor text, run_id text, since timestamptz);"
	    "CREATE OR REPLACE FUNCTION @.journal_append_only() RETURNS trigger LANGUAGE plpgsql AS "
	    "$$BEGIN RAISE EXCEPTION 'zdm journal rows are append-only (% refused)', TG_OP; END$$;"
	    "CREATE OR REPLACE TRIGGER journal_append_only BEFORE UPDATE OR DELETE ON @.journal "
	    "  FOR EACH ROW EXECUTE FUNCTION @.journal_append_only();"
	    "INSERT INTO @.meta VALUES ('schema_version', '" SCHEMA_VERSION "') ON CONFLICT (key) DO NOTHING;"
	    "COMMIT;";
	struct pg_store *ps = pg_connect(spec, schema, err);
	PGresult *res;
	char *text;
	int rc = -1;

	if (ps == NULL)
		return -1;
	text = sql(ps, init);
	res = PQexec(ps->conn, text);
	free(text);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		char *m = pg_msg(ps->conn, res);

		seterr(err, "state database %s: cannot create schema %s: %s", ps->where, schema, m);
		free(m);
	} else {
		PQclear(res);
		text = sql(ps, "SELECT value FROM @.meta WHERE key = 'schema_version'");
		res = PQexec(ps->conn, text);
		free(text);
		if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
		    strcmp(PQgetvalue(res, 0, 0), SCHEMA_VERSION) == 0) {
			*out = xasprintf("%s: zdm state schema version %s ready", ps->place, SCHEMA_VERSION);
			rc = 0;
		} else {
			seterr(err, "state database %s: schema %s holds another version of zdm's state (%s)",
			    ps->where, schema, PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "none");
		}
	}
	PQclear(res);
	pg_free(&ps->s);
	return rc;
}
