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
 *   SCHEMA.runs     one row per run: its summary (runstate.h, struct
 *                   run_summary) folded from its first record, its last
 *                   that says where it stands, its last step. or undo.
 *                   record and its last (struct rs_marks), kept by the
 *                   writer, which has them; rewritten in the statement that
 *                   inserts each record, so it is as durable and as fenced.
 *                   Derived from the journal, which stays the record: `zdm
 *                   state init` makes the rows of runs that have none.
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
 * A connection lost while a run goes on (the server restarted, a failover,
 * the network) is tried again for --state-timeout (store_set_retry; none
 * until set), with backoff from 100 ms doubling to 2 s.  Connected again,
 * the store takes its run lock back only as it left it: the advisory lock
 * free (or held by its own old session, which it ends) and the lock row
 * still at its epoch, naming its old backend; the row then moves to the new
 * backend at the next epoch.  An append cut off by the loss may or may not
 * have committed: the run's row at that seq says (the same record: it did;
 * none: it is inserted again; the primary key refuses a second one anyway).
 * A read or the lock check is simply run again.  Given up (the timeout, a
 * signal, the lock another's), every later call fails at once with the same
 * reason (ps->gone).
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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "base/proc.h"
#include "base/util.h"
#include "core/actor.h"
#include "core/runstate.h"
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
	unsigned prepared;	/* the statements of q_prepared made on conn (bits) */
	char *spec;		/* the connection string, to connect again */
	int64_t retry_ms;	/* a lost connection is tried again this long; 0: not */
	void (*told)(const struct store_conn *c, void *arg);	/* or NULL */
	void *told_arg;
	char *gone;		/* why the connection is lost for good, or NULL */
	char *channel;		/* of NOTIFY: zdm_SCHEMA (at most 63 bytes) */
	bool listening;		/* LISTEN channel on this connection */
};

struct pg_writer {
	struct store_writer w;
	struct journal *j;
	char *ref;
	char *run_id;
	json_t *mk[4];		/* the run's marks, owned: first, place, act, last */
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

/* RES as a statement returned it: itself when it went well, else NULL and
 * *err, its SQLSTATE in state (6 bytes, may be NULL; "" when none) */
static PGresult *
q_result(struct pg_store *ps, PGresult *res, char **err, char *state)
{
	ExecStatusType st = PQresultStatus(res);
	const char *code;
	char *m;

	if (state != NULL)
		state[0] = '\0';
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		return res;
	code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	if (state != NULL && code != NULL)
		snprintf(state, 6, "%s", code);
	m = pg_msg(ps->conn, res);
	if (PQstatus(ps->conn) == CONNECTION_BAD)
		seterr(err, "the connection to the state database %s was lost: %s", ps->where, m);
	else if (code != NULL && strcmp(code, "42501") == 0)
		/* insufficient_privilege: a read-only role (an auditor's) writing */
		seterr(err, "state database %s: %s (role %s may not write to zdm's state: "
		    "run, resume, rollback, approve and state push need the runner role's grants, "
		    "docs/state.md)", ps->where, m, PQuser(ps->conn));
	else
		seterr(err, "state database %s: %s", ps->where, m);
	free(m);
	PQclear(res);
	return NULL;
}

/* run TMPL (schema '@') with N text params; NULL and *err on an error,
 * its SQLSTATE in state (may be NULL).  Never tried again: a statement
 * inside a transaction (BEGIN ... COMMIT) must not be replayed alone. */
static PGresult *
qx(struct pg_store *ps, const char *tmpl, int n, const char *const *vals, char **err,
    char *state)
{
	char *text = sql(ps, tmpl);
	PGresult *res = PQexecParams(ps->conn, text, n, NULL, vals, NULL, NULL, 0);

	free(text);
	return q_result(ps, res, err, state);
}

static PGresult *
q(struct pg_store *ps, const char *tmpl, int n, const char *const *vals, char **err)
{
	return qx(ps, tmpl, n, vals, err, NULL);
}

/* qx, for a statement run once a record: prepared on the connection the
 * first time (statement ID, 0..31, named "zdm_ID"), so the server parses
 * and plans it once; a new connection (pg_reconnect) prepares it again */
static PGresult *
qpx(struct pg_store *ps, unsigned id, const char *tmpl, int n, const char *const *vals,
    char **err, char *state)
{
	char name[16];

	snprintf(name, sizeof name, "zdm_%u", id);
	if (!(ps->prepared & (1u << id))) {
		char *text = sql(ps, tmpl);
		PGresult *res = q_result(ps, PQprepare(ps->conn, name, text, n, NULL), err, state);

		free(text);
		if (res == NULL)
			return NULL;
		PQclear(res);
		ps->prepared |= 1u << id;
	}
	return q_result(ps, PQexecPrepared(ps->conn, name, n, vals, NULL, NULL, 0), err, state);
}

static PGresult *
q_prepared(struct pg_store *ps, unsigned id, const char *tmpl, int n, const char *const *vals,
    char **err)
{
	return qpx(ps, id, tmpl, n, vals, err, NULL);
}

static int pg_reconnect(struct pg_store *ps, const char *why, int64_t *deadline, char **err);

/* q() for a statement that may simply run again (a read, the lock check),
 * prepared as statement ID unless ID < 0: a lost connection is tried again
 * (pg_reconnect, until *deadline; 0: from now), then the statement */
static PGresult *
qr_until(struct pg_store *ps, int id, const char *tmpl, int n, const char *const *vals,
    int64_t *deadline, char **err)
{
	for (;;) {
		char *qerr = NULL;
		PGresult *res;

		if (ps->gone != NULL)
			return seterr(err, "%s", ps->gone), NULL;
		res = id < 0 ? q(ps, tmpl, n, vals, &qerr) :
		    q_prepared(ps, (unsigned)id, tmpl, n, vals, &qerr);
		if (res != NULL || PQstatus(ps->conn) != CONNECTION_BAD) {
			if (res == NULL && err != NULL && *err == NULL)
				*err = qerr;
			else
				free(qerr);
			return res;
		}
		if (pg_reconnect(ps, qerr, deadline, err) != 0) {
			free(qerr);
			return NULL;
		}
		free(qerr);
	}
}

static PGresult *
qr(struct pg_store *ps, const char *tmpl, int n, const char *const *vals, char **err)
{
	int64_t deadline = 0;

	return qr_until(ps, -1, tmpl, n, vals, &deadline, err);
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
	PGresult *res = qr(ps, "SELECT 1 FROM @.journal WHERE run_id = $1 LIMIT 1", 1, v, NULL);
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
	PGresult *res = qr(ps,
	    "SELECT run_id FROM @.runs WHERE ($1::text IS NULL OR runbook = $1) "
	    "AND ($2::boolean OR NOT dry_run) ORDER BY written DESC, run_id DESC LIMIT 1", 2, v, NULL);
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
	/* all: every run id, a run whose first row is gone too (audit verify
	 * names it); of a runbook: the runs whose first record names it */
	PGresult *res = name == NULL ?
	    qr(ps, "SELECT DISTINCT run_id FROM @.journal ORDER BY run_id", 0, NULL, err) :
	    qr(ps, "SELECT run_id FROM @.journal WHERE seq = 1 AND "
	    "(record::jsonb)->'data'->>'name' = $1 ORDER BY run_id", 1, v, err);

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
	PGresult *res = qr(ps, "SELECT record FROM @.journal WHERE run_id = $1 ORDER BY seq", 1, v, err);
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
	PGresult *res = qr(ps, "SELECT record FROM @.journal WHERE run_id = $1 ORDER BY seq", 1, v, NULL);
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
pg_read_text(struct store *s, const char *ref, char **text, size_t *len, struct jlog *log,
    char **err, int *why)
{
	memset(log, 0, sizeof *log);
	*why = 2;
	*len = 0;
	*text = run_text((struct pg_store *)s, ref, len, err);
	if (*text == NULL)
		return -1;
	if (journal_read_text(ref, *text, *len, log, err, why) != 0) {
		free(*text);
		*text = NULL;
		*len = 0;
		return -1;
	}
	return 0;
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

/* the marks as a struct rs_marks */
static struct rs_marks
marks_of(json_t *const mk[4])
{
	struct rs_marks m = { mk[0], mk[1], mk[2], mk[3] };

	return m;
}

/* M's records, now the writer's (owned refs) */
static void
marks_keep(struct pg_writer *pw, const struct rs_marks *m)
{
	const json_t *nk[4] = { m->first, m->place, m->act, m->last };

	for (int i = 0; i < 4; i++) {
		json_incref((json_t *)nk[i]);
		json_decref(pw->mk[i]);
		pw->mk[i] = (json_t *)nk[i];
	}
}

/* the columns of SCHEMA.runs after the record: $4 on (runs_sql) */
static void
summary_vals(const struct run_summary *rs, const char **v)
{
	v[0] = rs->name;
	v[1] = rs->runbook;
	v[2] = rs->dry_run ? "true" : "false";
	v[3] = rs->actor;
	v[4] = rs->host;
	v[5] = rs->started;
	v[6] = rs->updated;
	v[7] = rs->step;
	v[8] = rs->state;
	v[9] = rs->open ? "true" : "false";
	v[10] = rs->in_doubt ? "true" : "false";
}

/* its summary written beside each record: one statement, "j" the row the
 * WITH before it inserted ($1 run, $2 seq, $4.. summary_vals) */
#define RUNS_UPSERT \
	"INSERT INTO @.runs AS r (run_id, runbook, path, dry_run, actor, host, started, updated, " \
	"records, step, state, going, in_doubt, written) " \
	"SELECT $1, $4, $5, $6::boolean, $7, $8, $9, $10, $2::bigint, $11, $12, $13::boolean, " \
	"$14::boolean, j.written FROM j ON CONFLICT (run_id) DO UPDATE SET runbook = excluded.runbook, " \
	"path = excluded.path, dry_run = excluded.dry_run, actor = excluded.actor, " \
	"host = excluded.host, started = excluded.started, updated = excluded.updated, " \
	"records = excluded.records, step = excluded.step, state = excluded.state, " \
	"going = excluded.going, in_doubt = excluded.in_doubt, written = excluded.written"

/* journal.c's sink: one statement, its own transaction, fenced by the lock:
 * the record's row and the run's summary (SCHEMA.runs) */
/* is record SEQ of the run, as REC, in the state: 1 it is, 0 there is none
 * (-1 and *err: another record is there, or it cannot be read) */
static int
committed(struct pg_store *ps, struct pg_writer *pw, long seq, const char *seqs, const char *rec,
    int64_t *deadline, char **err)
{
	const char *v[] = { pw->run_id, seqs };
	PGresult *res = qr_until(ps, -1, "SELECT record FROM @.journal WHERE run_id = $1 AND seq = $2",
	    2, v, deadline, err);
	int rc;

	if (res == NULL)
		return -1;
	if (PQntuples(res) == 0)
		rc = 0;
	else if (strcmp(PQgetvalue(res, 0, 0), rec) == 0)
		rc = 1;
	else
		rc = seterr(err, "record %ld of run %s in %s is not the one this zdm wrote: another "
		    "zdm appended to the run", seq, pw->run_id, ps->place);
	PQclear(res);
	return rc;
}

/*
 * Fault injection for the tests (as journal.c's ZDM_TEST_CRASH_AFTER_RECORD):
 * with ZDM_TEST_STATE_LOSS_AFTER_COMMIT=N, once record N has committed, the
 * connection is cut (the socket shut down, so the server ends the session)
 * as if the answer to the COMMIT were lost on the way: the append must find
 * out that it committed.  Once per process.
 */
static bool
lose_after_commit(struct pg_store *ps, long seq)
{
	static bool done;
	const char *e = getenv("ZDM_TEST_STATE_LOSS_AFTER_COMMIT");

	if (done || e == NULL || strtol(e, NULL, 10) != seq)
		return false;
	done = true;
	shutdown(PQsocket(ps->conn), SHUT_RDWR);
	PQclear(PQexec(ps->conn, "SELECT 1"));	/* libpq sees it gone */
	return true;
}

/* journal.c's sink: one INSERT, its own transaction, fenced by the lock.
 * Cut off by a lost connection, it may or may not have committed: once
 * connected again (and the lock taken back), the row at SEQ says which,
 * and a record that is not there is inserted again. */
static int
pg_sink(const char *line, size_t len, long seq, void *arg, char **err)
{
	struct pg_writer *pw = arg;
	struct pg_store *ps = (struct pg_store *)pw->w.store;
	char seqs[24], state[6], *rec = xmalloc(len + 1), *qerr;
	const char *v[17];
	json_t *r = json_loadb(line, len, 0, NULL);
	struct rs_marks m = marks_of(pw->mk);
	struct run_summary rs;
	PGresult *res;
	int64_t deadline = 0;
	int rc = -1, k;
	bool dup;

	memcpy(rec, line, len);
	rec[len] = '\0';
	snprintf(seqs, sizeof seqs, "%ld", seq);
	rs_marks_add(&m, r);
	run_summary_fold(&m, &rs);
	v[0] = pw->run_id;
	v[1] = seqs;
	v[2] = rec;
	summary_vals(&rs, v + 3);
	for (;;) {
		if (ps->gone != NULL) {
			seterr(err, "%s", ps->gone);
			break;
		}
		qerr = NULL;
		dup = false;
		/* the record's row, the run's summary and (zdm approve's writer)
		 * the notification to a waiting zdm: one statement, so on commit */
		if (ps->held != NULL) {
			v[14] = ps->held->name;
			v[15] = ps->held->epoch;
			v[16] = ps->channel;
			res = pw->notify ?
			    qpx(ps, 3, "WITH j AS (INSERT INTO @.journal (run_id, seq, record) "
			    "SELECT $1, $2::bigint, $3 WHERE EXISTS (SELECT 1 FROM @.locks WHERE runbook = $15 "
			    "AND epoch = $16 AND backend_pid = pg_backend_pid()) RETURNING written), "
			    "u AS (" RUNS_UPSERT ") SELECT pg_notify($17, $1) FROM j", 17, v, &qerr, state) :
			    qpx(ps, 0, "WITH j AS (INSERT INTO @.journal (run_id, seq, record) "
			    "SELECT $1, $2::bigint, $3 WHERE EXISTS (SELECT 1 FROM @.locks WHERE runbook = $15 "
			    "AND epoch = $16 AND backend_pid = pg_backend_pid()) RETURNING written) "
			    RUNS_UPSERT, 16, v, &qerr, state);
		} else {
			v[14] = ps->channel;
			res = pw->notify ?
			    qpx(ps, 4, "WITH j AS (INSERT INTO @.journal (run_id, seq, record) "
			    "VALUES ($1, $2::bigint, $3) RETURNING written), u AS (" RUNS_UPSERT ") "
			    "SELECT pg_notify($15, $1) FROM j", 15, v, &qerr, state) :
			    qpx(ps, 1, "WITH j AS (INSERT INTO @.journal (run_id, seq, record) "
			    "VALUES ($1, $2::bigint, $3) RETURNING written) " RUNS_UPSERT, 14, v, &qerr,
			    state);
		}
		if (res != NULL && strcmp(PQcmdTuples(res), "1") == 0 && lose_after_commit(ps, seq)) {
			/* the test's loss: committed, and the answer lost */
			PQclear(res);
			res = NULL;
			qerr = xstrdup("ZDM_TEST_STATE_LOSS_AFTER_COMMIT");
		}
		if (res != NULL) {
			if (strcmp(PQcmdTuples(res), "1") != 0)
				seterr(err, "this zdm no longer holds the run lock of runbook '%s' (another zdm "
				    "took it); record %ld of run %s was not written", ps->held->name, seq,
				    pw->run_id);
			else
				rc = 0;
			PQclear(res);
			break;
		}
		if (PQstatus(ps->conn) == CONNECTION_BAD) {
			/* it may or may not have committed */
			k = pg_reconnect(ps, qerr, &deadline, err);
			free(qerr);
			if (k != 0)
				break;
		} else if (strcmp(state, "23505") == 0) {
			/* (run_id, seq) is there already: ours, committed before
			 * a loss that this connection did not see, or another's */
			free(qerr);
			dup = true;
		} else {
			if (err != NULL && *err == NULL)
				*err = qerr;
			else
				free(qerr);
			break;
		}
		k = committed(ps, pw, seq, seqs, rec, &deadline, err);
		if (k == 0 && dup)
			k = seterr(err, "record %ld of run %s was refused as already there, and is not",
			    seq, pw->run_id);
		if (k != 0) {
			/* there: with its summary, written in the same statement */
			rc = k > 0 ? 0 : -1;
			break;
		}
		/* not there: insert it again */
	}
	if (rc == 0)
		marks_keep(pw, &m);
	run_summary_release(&rs);
	json_decref(r);
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
	if (log != NULL) {
		struct rs_marks m = { NULL, NULL, NULL, NULL };

		for (size_t i = 0; i < log->n; i++)
			rs_marks_add(&m, log->recs[i]);
		marks_keep(pw, &m);
	}
	pw->j = journal_open_sink(pw->ref, run_id, log, pg_sink, pw, err);
	if (pw->j == NULL) {
		for (int i = 0; i < 4; i++)
			json_decref(pw->mk[i]);
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
	PGresult *res = qr((struct pg_store *)w->store,
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
	for (int i = 0; i < 4; i++)
		json_decref(pw->mk[i]);
	free(pw->run_id);
	free(pw->ref);
	free(pw);
}

/* ---- runs copied in (zdm state push) ------------------------------------------- */

/* ROLLBACK the push's transaction; a lost connection has rolled it back */
static void
tx_rollback(struct pg_store *ps)
{
	if (PQstatus(ps->conn) == CONNECTION_OK)
		PQclear(q(ps, "ROLLBACK", 0, NULL, NULL));
}

/* the run's summary row (SCHEMA.runs) from all of LOG's records, as
 * pg_sink would have left it; 0, or -1 and *err */
static int
import_summary(struct pg_store *ps, const char *run, const struct jlog *log, char **err)
{
	struct rs_marks m = { NULL, NULL, NULL, NULL };
	struct run_summary rs;
	const char *v[14];
	char seqs[24];
	PGresult *res;

	for (size_t i = 0; i < log->n; i++)
		rs_marks_add(&m, log->recs[i]);
	run_summary_fold(&m, &rs);
	snprintf(seqs, sizeof seqs, "%zu", log->n);
	v[0] = run;
	v[1] = seqs;
	v[2] = json_string_value(json_object_get(log->recs[log->n - 1], "ts"));
	summary_vals(&rs, v + 3);
	res = q(ps, "WITH j AS (SELECT $3::timestamptz AS written) " RUNS_UPSERT, 14, v, err);
	run_summary_release(&rs);
	if (res == NULL)
		return -1;
	PQclear(res);
	return 0;
}

/*
 * The run in TEXT, checked, in one transaction: serialised with other
 * pushes of the run by a transaction advisory lock, then compared line by
 * line with the rows there, then the rest inserted (written: each record's
 * own ts, so the newest run is still the one written to last).  Appending
 * to a run the state holds also takes its runbook's run lock for the
 * transaction: a zdm holding it may be writing the run (r->busy).
 */
static int
pg_import(struct store *s, const char *name, const char *text, size_t len,
    struct store_import *r, char **err)
{
	struct pg_store *ps = (struct pg_store *)s;
	struct jlog log;
	const char *run, *book, *p, *v[4];
	char seqs[24];
	PGresult *res = NULL;
	long have;
	int why;

	if (journal_read_text(name, text, len, &log, err, &why) != 0)
		return -1;
	if (log.n == 0) {
		jlog_release(&log);
		return seterr(err, "%s: no complete record to copy", name);
	}
	len = log.good_len;	/* a torn last line is no record */
	run = json_string_value(json_object_get(log.recs[0], "run"));
	book = json_string_value(json_object_get(json_object_get(log.recs[0], "data"), "name"));
	res = q(ps, "BEGIN", 0, NULL, err);
	if (res == NULL)
		goto fail;
	PQclear(res);
	v[0] = ps->schema;
	v[1] = run;
	res = q(ps, "SELECT pg_advisory_xact_lock(hashtext('zdm state push'), hashtext($1 || '/' || $2))",
	    2, v, err);
	if (res == NULL)
		goto rollback;
	PQclear(res);
	res = q(ps, "SELECT seq, record FROM @.journal WHERE run_id = $1 ORDER BY seq", 1, v + 1, err);
	if (res == NULL)
		goto rollback;
	have = PQntuples(res);
	r->had = have;
	p = text;
	for (long i = 0; i < have && i < (long)log.n; i++) {
		const char *nl = memchr(p, '\n', (size_t)(text + len - p));

		if (strtol(PQgetvalue(res, (int)i, 0), NULL, 10) != i + 1 ||
		    (size_t)PQgetlength(res, (int)i, 1) != (size_t)(nl - p) ||
		    memcmp(PQgetvalue(res, (int)i, 1), p, (size_t)(nl - p)) != 0) {
			r->differs = i + 1;
			break;
		}
		p = nl + 1;
	}
	PQclear(res);
	res = NULL;
	if (r->differs > 0 || have >= (long)log.n)
		goto nothing;
	if (have > 0 && book != NULL) {
		v[0] = ps->schema;
		v[1] = book;
		res = q(ps, "SELECT pg_try_advisory_xact_lock(hashtext($1), hashtext($2))", 2, v, err);
		if (res == NULL)
			goto rollback;
		r->busy = strcmp(PQgetvalue(res, 0, 0), "t") != 0;
		PQclear(res);
		res = NULL;
		if (r->busy)
			goto nothing;
	}
	for (long i = have; i < (long)log.n; i++) {
		const char *nl = memchr(p, '\n', (size_t)(text + len - p));
		char *line = xstrndup(p, (size_t)(nl - p));

		snprintf(seqs, sizeof seqs, "%ld", i + 1);
		v[0] = run;
		v[1] = seqs;
		v[2] = line;
		v[3] = json_string_value(json_object_get(log.recs[i], "ts"));
		res = q(ps, "INSERT INTO @.journal (run_id, seq, record, written) "
		    "VALUES ($1, $2, $3, $4::timestamptz)", 4, v, err);
		free(line);
		if (res == NULL)
			goto rollback;
		PQclear(res);
		res = NULL;
		p = nl + 1;
	}
	if (import_summary(ps, run, &log, err) != 0)
		goto rollback;
	res = q(ps, "COMMIT", 0, NULL, err);
	if (res == NULL)
		goto fail;
	/* the COMMIT of a transaction that failed says ROLLBACK */
	if (strcmp(PQcmdStatus(res), "COMMIT") != 0) {
		seterr(err, "state database %s: the transaction copying run %s was rolled back",
		    ps->where, run);
		goto fail;
	}
	PQclear(res);
	r->added = (long)log.n - have;
	jlog_release(&log);
	return 0;
nothing:
	tx_rollback(ps);
	jlog_release(&log);
	return 0;
rollback:
	tx_rollback(ps);
fail:
	PQclear(res);
	jlog_release(&log);
	return -1;
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
			char *m = pg_msg(ps->conn, NULL), *why;
			int64_t deadline = 0;

			why = xasprintf("the connection to the state database %s was lost: %s", ps->where, m);
			free(m);
			/* tried again as any read is (--state-timeout); back, the
			 * run is read again: a decision may have come meanwhile */
			r = pg_reconnect(ps, why, &deadline, err);
			free(why);
			return r == 0 ? 1 : -1;
		}
	}
}

/* store_behind: a notification for W's run came (it listens from the
 * first call on) */
static int
pg_behind(struct store_writer *w)
{
	struct pg_writer *pw = (struct pg_writer *)w;
	struct pg_store *ps = (struct pg_store *)w->store;

	if (ps->conn == NULL || PQstatus(ps->conn) != CONNECTION_OK ||
	    PQtransactionStatus(ps->conn) != PQTRANS_IDLE)
		return 0;
	if (!ps->listening && pg_watch(w->store, pw->ref, true, NULL) != 0)
		return 0;
	if (!PQconsumeInput(ps->conn))
		return 0;
	return drain(ps, pw->run_id) ? 1 : 0;
}

/* ---- the run lock -------------------------------------------------------------- */

/* who the lock row of NAME names now, for "lost the run lock to ...":
 * "pid P on host 'H', run R, since T" (malloc'd) */
static char *
taker(struct pg_store *ps, const char *name)
{
	const char *v[] = { name };
	PGresult *res = q(ps,
	    "SELECT pid, host, run_id, to_char(since AT TIME ZONE 'UTC', "
	    "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), backend_pid IS NOT NULL FROM @.locks "
	    "WHERE runbook = $1", 1, v, NULL);
	char *t;

	if (res != NULL && PQntuples(res) == 1)
		t = xasprintf("pid %s on host '%s', run %s, since %s%s", PQgetvalue(res, 0, 0),
		    PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 3),
		    strcmp(PQgetvalue(res, 0, 4), "t") == 0 ? "" : ", since released");
	else
		t = xstrdup("no details");
	PQclear(res);
	return t;
}

/* "runbook 'NAME' is locked by pid ..." from the lock row, as the file backend says it */
static void
holder_err(struct pg_store *ps, const char *name, char **err)
{
	const char *v[] = { name };
	PGresult *res = NULL;

	/* the holder writes its row just after it takes the lock: give it that
	 * moment (at most 500 ms) rather than say nothing of who it is */
	for (int i = 0; i < 50; i++) {
		PQclear(res);
		res = q(ps,
		    "SELECT pid, host, run_id, to_char(since AT TIME ZONE 'UTC', "
		    "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), actor FROM @.locks "
		    "WHERE runbook = $1 AND backend_pid IS NOT NULL AND EXISTS (SELECT 1 FROM pg_locks l "
		    "WHERE l.locktype = 'advisory' AND l.granted AND l.pid = backend_pid)", 1, v, NULL);
		if (res == NULL || PQntuples(res) == 1 || zdm_interrupted)
			break;
		usleep(10000);
	}
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

/* the advisory lock of NAME, waiting up to WAIT_MS for it (0: a try): 0
 * taken, 1 held by another, -1 and *err */
static int
advisory_take(struct pg_store *ps, const char *name, int64_t wait_ms, char **err)
{
	const char *kv[] = { ps->schema, name };
	char ms[32];
	const char *tv[] = { ms };
	PGresult *res;
	char *text;
	const char *state;
	int rc;

	if (wait_ms <= 0) {
		res = q(ps, "SELECT pg_try_advisory_lock(hashtext($1), hashtext($2))", 2, kv, err);
		if (res == NULL)
			return -1;
		rc = strcmp(PQgetvalue(res, 0, 0), "t") == 0 ? 0 : 1;
		PQclear(res);
		return rc;
	}
	/* blocked in the server, so the lock is ours the moment it is let go;
	 * lock_timeout ends the wait (SQLSTATE 55P03) */
	snprintf(ms, sizeof ms, "%lldms", (long long)wait_ms);
	res = q(ps, "SELECT set_config('lock_timeout', $1, false)", 1, tv, err);
	if (res == NULL)
		return -1;
	PQclear(res);
	text = sql(ps, "SELECT pg_advisory_lock(hashtext($1), hashtext($2))");
	res = PQexecParams(ps->conn, text, 2, NULL, kv, NULL, NULL, 0);
	free(text);
	state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	if (PQresultStatus(res) == PGRES_TUPLES_OK) {
		rc = 0;
	} else if (state != NULL && strcmp(state, "55P03") == 0) {
		rc = 1;
	} else {
		char *m = pg_msg(ps->conn, res);

		rc = seterr(err, "state database %s: %s", ps->where, m);
		free(m);
	}
	PQclear(res);
	PQclear(q(ps, "SELECT set_config('lock_timeout', '0', false)", 0, NULL, NULL));
	return rc;
}

static int
pg_take(struct store *s, const char *name, const char *run_id, int64_t wait_ms,
    struct store_lock **lk, char **err)
{
	struct pg_store *ps = (struct pg_store *)s;
	const char *kv[] = { ps->schema, name };
	char host[256], pid[24], *who;
	const char *v[5];
	PGresult *res;
	struct pg_lock *pl;
	int rc;

	if (ps->held != NULL)
		return seterr(err, "this zdm already holds the run lock of runbook '%s'", ps->held->name);
	rc = advisory_take(ps, name, wait_ms, err);
	if (rc < 0)
		return -1;
	if (rc == 1) {
		holder_err(ps, name, err);
		return 1;
	}
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

static int
pg_lock(struct store *s, const char *name, const char *run_id, struct store_lock **lk,
    char **err)
{
	return pg_take(s, name, run_id, 0, lk, err);
}

static int
pg_lock_wait(struct store *s, const char *name, const char *run_id, int64_t wait_ms,
    struct store_lock **lk, char **err)
{
	return pg_take(s, name, run_id, wait_ms > 0 ? wait_ms : 1, lk, err);
}

/* this connection is alive and the lock row still names it, at its epoch
 * (a lost connection is tried again first, and with it the lock) */
static int
pg_lock_check(struct store_lock *lk, char **err)
{
	struct pg_lock *pl = (struct pg_lock *)lk;
	struct pg_store *ps = (struct pg_store *)lk->store;
	const char *v[] = { pl->name, pl->epoch };
	char *qerr = NULL, *who;
	int64_t deadline = 0;
	PGresult *res = qr_until(ps, 2, "SELECT EXISTS (SELECT 1 FROM @.locks WHERE runbook = $1 "
	    "AND epoch = $2 AND backend_pid = pg_backend_pid())", 2, v, &deadline, &qerr);
	int rc = 0;

	if (res == NULL) {
		if (ps->gone != NULL)
			seterr(err, "%s", qerr);	/* it says what was lost */
		else
			seterr(err, "lost the run lock of runbook '%s': %s", pl->name, qerr);
		free(qerr);
		return -1;
	}
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		who = taker(ps, pl->name);
		rc = seterr(err, "lost the run lock of runbook '%s' to another zdm (%s) in %s", pl->name,
		    who, ps->place);
		free(who);
	}
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
	PGresult *res = qr(ps,
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

static char *
val_or_null(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NULL : xstrdup(PQgetvalue(res, row, col));
}

/* the advisory lock of NAME granted to a session: its pg_locks row */
#define ADVISORY_HELD \
	"SELECT 1 FROM pg_locks k WHERE k.locktype = 'advisory' AND k.granted AND k.objsubid = 2 " \
	"AND k.database = (SELECT oid FROM pg_database WHERE datname = current_database()) " \
	"AND k.classid = hashtext($2)::bit(32)::bigint::oid " \
	"AND k.objid = hashtext($1)::bit(32)::bigint::oid"

/* held: a session holds the advisory lock (pg_locks); the lock row names
 * the holder when it is that session, else the last one */
static int
pg_lock_info(struct store *s, const char *name, struct store_lock_info *li, char **err)
{
	struct pg_store *ps = (struct pg_store *)s;
	const char *v[] = { name, ps->schema };
	PGresult *res = qr(ps,
	    "SELECT EXISTS (" ADVISORY_HELD "), EXISTS (" ADVISORY_HELD " AND k.pid = l.backend_pid), "
	    "l.pid, l.host, l.actor, nullif(l.run_id, ''), to_char(l.since AT TIME ZONE 'UTC', "
	    "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), l.epoch "
	    "FROM (SELECT 1) x LEFT JOIN @.locks l ON l.runbook = $1", 2, v, err);

	if (res == NULL)
		return -1;
	li->held = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	/* held by a session the row does not name yet (between its take and
	 * its row): no details */
	li->known = !PQgetisnull(res, 0, 2) && (!li->held || strcmp(PQgetvalue(res, 0, 1), "t") == 0);
	if (li->known) {
		li->pid = strtol(PQgetvalue(res, 0, 2), NULL, 10);
		li->host = val_or_null(res, 0, 3);
		li->actor = val_or_null(res, 0, 4);
		li->run_id = val_or_null(res, 0, 5);
		li->since = val_or_null(res, 0, 6);
		li->epoch = strtoll(PQgetvalue(res, 0, 7), NULL, 10);
	}
	PQclear(res);
	return 0;
}

/* started is the journal's ts text, which sorts as the times do */
static int
pg_runs(struct store *s, const struct runs_query *rq, struct run_summary **out, size_t *n,
    char **err)
{
	struct pg_store *ps = (struct pg_store *)s;
	char lim[24];
	const char *v[3];
	PGresult *res;

	snprintf(lim, sizeof lim, "%zu", rq->newest);
	v[0] = rq->name;
	v[1] = rq->since;
	v[2] = rq->newest > 0 ? lim : NULL;
	res = qr(ps,
	    "SELECT run_id, runbook, path, actor, host, started, updated, step, state, going, in_doubt, "
	    "dry_run, records FROM @.runs WHERE ($1::text IS NULL OR runbook = $1) "
	    "AND ($2::text IS NULL OR started >= $2) ORDER BY started DESC, run_id DESC LIMIT $3::bigint",
	    3, v, err);

	if (res == NULL)
		return -1;
	*n = (size_t)PQntuples(res);
	*out = xcalloc(*n + 1, sizeof **out);
	for (int i = 0; i < PQntuples(res); i++) {
		struct run_summary *r = &(*out)[i];
		const char *v[9];

		for (int k = 0; k < 9; k++)
			v[k] = PQgetisnull(res, i, k) ? NULL : PQgetvalue(res, i, k);
		if (v[8] == NULL)
			v[8] = "?";
		run_summary_strings(r, v);
		r->open = strcmp(PQgetvalue(res, i, 9), "t") == 0;
		r->in_doubt = strcmp(PQgetvalue(res, i, 10), "t") == 0;
		r->dry_run = strcmp(PQgetvalue(res, i, 11), "t") == 0;
		r->records = strtol(PQgetvalue(res, i, 12), NULL, 10);
	}
	PQclear(res);
	return 0;
}

/* ---- a lost connection ----------------------------------------------------------- */

static void
tell(struct pg_store *ps, enum store_conn_kind kind, const char *why, int64_t t0,
    int64_t deadline, int attempt, bool locked)
{
	struct store_conn c = { .kind = kind, .place = ps->place, .why = why, .attempt = attempt,
	    .locked = locked };
	int64_t now = zdm_now_ms();

	if (ps->told == NULL)
		return;
	c.timeout_ms = ps->retry_ms;
	c.until = (int64_t)time(NULL) + (deadline - now + 999) / 1000;
	c.ms = now - t0;
	ps->told(&c, ps->told_arg);
}

/* lost for good: this call and every later one fail with WHY (stolen) */
static int
give_up(struct pg_store *ps, char *why, char **err)
{
	free(ps->gone);
	ps->gone = why;
	return seterr(err, "%s", why);
}

/*
 * Connected again: take the run lock back as it was left.  0 it is this
 * zdm's again, the lock row at the next epoch naming this backend; 1 not
 * yet: this zdm's old session still holds it (the lock row at its epoch
 * names the backend holding the advisory lock), so it is ended and the next
 * attempt takes it; -1 another zdm has it or had it meanwhile (*lost says
 * so); -2 a statement failed (*err).
 */
static int
retake(struct pg_store *ps, char **lost, char **err)
{
	struct pg_lock *pl = ps->held;
	const char *kv[] = { ps->schema, pl->name }, *v[] = { pl->name, pl->epoch, ps->schema };
	const char *bv[1];
	PGresult *res = q(ps, "SELECT pg_try_advisory_lock(hashtext($1), hashtext($2))", 2, kv, err);
	char *who;

	if (res == NULL)
		return -2;
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		PQclear(res);
		res = q(ps, "SELECT l.backend_pid FROM @.locks l JOIN pg_locks k ON k.pid = l.backend_pid "
		    "AND k.locktype = 'advisory' AND k.granted AND k.objsubid = 2 "
		    "AND k.classid = hashtext($3)::bit(32)::bigint::oid "
		    "AND k.objid = hashtext($1)::bit(32)::bigint::oid "
		    "WHERE l.runbook = $1 AND l.epoch = $2", 3, v, err);
		if (res == NULL)
			return -2;
		if (PQntuples(res) == 0) {
			PQclear(res);
			goto lost;
		}
		/* ours from before the loss (the server has not seen it go):
		 * end it; an append it was making commits or not with its end */
		bv[0] = PQgetvalue(res, 0, 0);
		PQclear(q(ps, "SELECT pg_terminate_backend($1::int)", 1, bv, NULL));
		PQclear(res);
		return 1;
	}
	PQclear(res);
	res = q(ps, "UPDATE @.locks SET epoch = epoch + 1, backend_pid = pg_backend_pid() "
	    "WHERE runbook = $1 AND epoch = $2 RETURNING epoch", 2, v, err);
	if (res == NULL)
		return -2;
	if (PQntuples(res) == 1) {
		snprintf(pl->epoch, sizeof pl->epoch, "%s", PQgetvalue(res, 0, 0));
		PQclear(res);
		return 0;
	}
	PQclear(res);
	PQclear(q(ps, "SELECT pg_advisory_unlock(hashtext($1), hashtext($2))", 2, kv, NULL));
lost:
	who = taker(ps, pl->name);
	*lost = xasprintf("lost the run lock of runbook '%s' to another zdm (%s), which took it while "
	    "this zdm was cut off from the state database %s", pl->name, who, ps->place);
	free(who);
	return -1;
}

static PGconn *pg_dial(const char *spec, int connect_timeout, char **err);

/*
 * The connection is lost (WHY): connect again, with backoff (100 ms doubling
 * to 2 s), until *deadline (0: now + retry_ms, set here, so the calls one
 * append or read makes share one), then take the run lock back when one is
 * held (retake).  0 when connected again, the lock this zdm's; -1 and *err
 * when not: the timeout passed, a signal came, the lock is another's, or
 * the store is not told to retry (a plain error, then, when no run set it).
 */
static int
pg_reconnect(struct pg_store *ps, const char *why, int64_t *deadline, char **err)
{
	int64_t t0 = zdm_now_ms(), delay = 100, left;
	char *last = xstrdup(why), *e, *lost = NULL, d[32];
	int attempt = 0, k;
	PGconn *c;

	if (ps->gone != NULL) {
		free(last);
		return seterr(err, "%s", ps->gone);
	}
	if (ps->retry_ms <= 0) {
		if (ps->told == NULL) {
			/* no run asked for retries: the error as it was */
			if (err != NULL && *err == NULL)
				*err = last;
			else
				free(last);
			return -1;
		}
		e = xasprintf("lost the state database %s: %s (--state-timeout 0: not tried again)",
		    ps->place, last);
		free(last);
		return give_up(ps, e, err);
	}
	if (*deadline == 0)
		*deadline = t0 + ps->retry_ms;
	tell(ps, STORE_CONN_LOST, last, t0, *deadline, 0, false);
	for (;;) {
		left = *deadline - zdm_now_ms();
		if (left <= 0) {
			fmt_duration(ps->retry_ms, d, sizeof d);
			give_up(ps, xasprintf("lost the state database %s: not connected again within %s "
			    "(--state-timeout): %s", ps->place, d, last), err);
			break;
		}
		if (zdm_sleep_ms(delay < left ? delay : left) != 0) {
			give_up(ps, xasprintf("lost the state database %s: interrupted while connecting "
			    "again (%s)", ps->place, last), err);
			break;
		}
		delay = delay * 2 < 2000 ? delay * 2 : 2000;
		attempt++;
		e = NULL;
		if (PQstatus(ps->conn) != CONNECTION_OK) {
			left = *deadline - zdm_now_ms();
			c = pg_dial(ps->spec, left > 10000 ? 10 : left > 2000 ? (int)(left / 1000) : 2, &e);
			if (c == NULL) {
				free(last);
				last = e != NULL ? e : xstrdup("cannot connect");
				tell(ps, STORE_CONN_RETRY, last, t0, *deadline, attempt, false);
				continue;
			}
			PQfinish(ps->conn);
			ps->conn = c;
			ps->prepared = 0;	/* prepared on the old one */
			ps->listening = false;	/* pg_wait listens again */
		}
		if (ps->held != NULL) {
			k = retake(ps, &lost, &e);
			if (k == -1) {
				free(e);
				give_up(ps, lost, err);
				break;
			}
			if (k != 0) {
				free(last);
				if (k == 1 || e == NULL) {
					free(e);
					e = xasprintf("this zdm's session from before the loss still held the "
					    "run lock of runbook '%s'; it was ended", ps->held->name);
				}
				last = e;
				tell(ps, STORE_CONN_RETRY, last, t0, *deadline, attempt, false);
				continue;
			}
		}
		free(last);
		tell(ps, STORE_CONN_BACK, NULL, t0, *deadline, attempt, ps->held != NULL);
		return 0;
	}
	free(last);
	return -1;
}

static void
pg_set_retry(struct store *s, int64_t timeout_ms, void (*fn)(const struct store_conn *c, void *arg),
    void *arg)
{
	struct pg_store *ps = (struct pg_store *)s;

	ps->retry_ms = timeout_ms > 0 ? timeout_ms : 0;
	ps->told = fn;
	ps->told_arg = arg;
}

static void
pg_free(struct store *s)
{
	struct pg_store *ps = (struct pg_store *)s;

	if (ps->held != NULL)
		pg_unlock(&ps->held->l);
	PQfinish(ps->conn);
	free(ps->spec);
	free(ps->gone);
	free(ps->schema);
	free(ps->channel);
	free(ps->where);
	free(ps->place);
	free(s->location);
	free(ps);
}

static const struct store_ops pg_ops = {
	.fences = true,
	.set_retry = pg_set_retry,
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
	.behind = pg_behind,
	.wait = pg_wait,
	.lock = pg_lock,
	.lock_wait = pg_lock_wait,
	.lock_check = pg_lock_check,
	.unlock = pg_unlock,
	.locked = pg_locked,
	.lock_info = pg_lock_info,
	.runs = pg_runs,
	.read_text = pg_read_text,
	.import = pg_import,
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

/* a connection to SPEC (checked: no password) with zdm's session settings,
 * CONNECT_TIMEOUT seconds at most (what SPEC says wins); NULL and *err
 * when there is none.  Errors never quote the connection string. */
static PGconn *
pg_dial(const char *spec, int connect_timeout, char **err)
{
	/* ours first: what the connection string says wins */
	const char *kw[] = { "application_name", "connect_timeout", "keepalives", "keepalives_idle",
	    "keepalives_interval", "keepalives_count", "tcp_user_timeout", "dbname", NULL };
	char ct[16];
	const char *vals[] = { "zdm", ct, "1", "5", "2", "3", "10000", spec, NULL };
	PGconn *c;
	PGresult *res;
	char *m;

	snprintf(ct, sizeof ct, "%d", connect_timeout);
	c = PQconnectdbParams(kw, vals, 1);
	if (c == NULL || PQstatus(c) != CONNECTION_OK) {
		m = pg_msg(c, NULL);
		seterr(err, "cannot connect to the state database: %s", m);
		free(m);
		PQfinish(c);
		return NULL;
	}
	PQsetNoticeProcessor(c, no_notice, NULL);
	/* the server drops a vanished client too: keepalives on its end, and
	 * every commit of ours is durable before it returns */
	res = PQexec(c, "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; "
	    "SET tcp_keepalives_count = 3; SET tcp_user_timeout = 10000; SET synchronous_commit = on");
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		m = pg_msg(c, res);
		seterr(err, "state database %s@%s:%s/%s: %s", PQuser(c), PQhost(c), PQport(c), PQdb(c), m);
		free(m);
		PQclear(res);
		PQfinish(c);
		return NULL;
	}
	PQclear(res);
	return c;
}

/* the first schema of a search_path the conninfo's options set
 * ("-c search_path=team,public", "-csearch_path=team", "--search_path=team"),
 * malloc'd; NULL when they set none */
static char *
options_schema(const char *options)
{
	const char *p = options != NULL ? strstr(options, "search_path=") : NULL;
	size_t n;

	if (p == NULL)
		return NULL;
	p += strlen("search_path=");
	while (*p == '"' || *p == '\'' || *p == ' ')
		p++;
	n = strcspn(p, ", \"'");
	return n > 0 ? xstrndup(p, n) : NULL;
}

/* connect; no schema check.  SCHEMA NULL: the first of the search_path the
 * connection string's options set, else "zdm".  Errors never quote the
 * connection string. */
static struct pg_store *
pg_connect(const char *spec, const char *given, char **err)
{
	PQconninfoOption *opts;
	char *perr = NULL, *schema = NULL;
	struct pg_store *ps;

	opts = PQconninfoParse(spec, &perr);
	if (opts == NULL) {
		PQfreemem(perr);
		return seterr(err, "the state connection string cannot be read (a postgresql:// URI or "
		    "key=value conninfo; see docs/state.md)"), NULL;
	}
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
		if (strcmp(o->keyword, "password") == 0 && o->val != NULL) {
			PQconninfoFree(opts);
			free(schema);
			return seterr(err, "the state connection string holds a password: leave it out and "
			    "give it the libpq way (PGPASSWORD, ~/.pgpass or PGPASSFILE), so it never shows "
			    "in a command line, a process list or a message"), NULL;
		}
		if (given == NULL && strcmp(o->keyword, "options") == 0)
			schema = options_schema(o->val);
	}
	PQconninfoFree(opts);
	if (schema == NULL)
		schema = xstrdup(given != NULL ? given : "zdm");
	if (!schema_ok(schema)) {
		seterr(err, "%s '%s': a schema name is lowercase letters, digits and _ "
		    "(at most 63, not starting with a digit)", given != NULL ? "--schema" :
		    "the search_path in the connection string's options", schema);
		free(schema);
		return NULL;
	}
	ps = xcalloc(1, sizeof *ps);
	ps->s.ops = &pg_ops;
	ps->schema = schema;
	ps->spec = xstrdup(spec);
	ps->channel = xasprintf("zdm_%.59s", schema);
	ps->conn = pg_dial(spec, 10, err);
	if (ps->conn == NULL) {
		pg_free(&ps->s);
		return NULL;
	}
	ps->where = xasprintf("%s@%s:%s/%s", PQuser(ps->conn), PQhost(ps->conn), PQport(ps->conn),
	    PQdb(ps->conn));
	ps->place = xasprintf("%s (schema %s)", ps->where, ps->schema);
	ps->s.location = xstrdup(ps->place);
	return ps;
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
	text = sql(ps, "SELECT value, to_regclass('@.runs') IS NOT NULL FROM @.meta "
	    "WHERE key = 'schema_version'");
	res = PQexec(ps->conn, text);
	free(text);
	state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		if (state != NULL && (strcmp(state, "42P01") == 0 || strcmp(state, "3F000") == 0))
			seterr(err, "no zdm state in %s: create it once with: zdm state init URL%s%s",
			    ps->place, strcmp(ps->schema, "zdm") ? " --schema " : "",
			    strcmp(ps->schema, "zdm") ? ps->schema : "");
		else {
			char *m = pg_msg(ps->conn, res);

			seterr(err, "state database %s: cannot read the schema version: %s", ps->place, m);
			free(m);
		}
		PQclear(res);
		pg_free(&ps->s);
		return NULL;
	}
	if (strcmp(PQgetvalue(res, 0, 0), SCHEMA_VERSION) == 0) {
		/* made by a zdm from before the run summaries */
		if (strcmp(PQgetvalue(res, 0, 1), "t") != 0) {
			seterr(err, "the zdm state in %s has no run summaries (%s.runs) yet: add them "
			    "once with: zdm state init URL%s%s", ps->place, ps->schema,
			    strcmp(ps->schema, "zdm") ? " --schema " : "",
			    strcmp(ps->schema, "zdm") ? ps->schema : "");
			PQclear(res);
			pg_free(&ps->s);
			return NULL;
		}
		PQclear(res);
		return &ps->s;
	}
	{
		bool newer = strtol(PQgetvalue(res, 0, 0), NULL, 10) > strtol(SCHEMA_VERSION, NULL, 10);

		seterr(err, "the zdm state in %s is schema version %s; this zdm knows version %s: %s",
		    ps->place, PQgetvalue(res, 0, 0), SCHEMA_VERSION,
		    newer ? "use a newer zdm" : "upgrade it with: zdm state init URL");
		PQclear(res);
		pg_free(&ps->s);
		return NULL;
	}
}

/* the summary row of the run whose records RES rows [from, to) hold
 * (run_id, record, written), unless it has one; 0, or -1 and *err */
static int
backfill_run(struct pg_store *ps, PGresult *res, int from, int to, char **err)
{
	json_t *recs[4] = { NULL, NULL, NULL, NULL };
	struct rs_marks m = { NULL, NULL, NULL, NULL };
	struct run_summary rs;
	const char *v[14];
	char seqs[24];
	PGresult *ins;

	for (int i = from; i < to; i++) {
		json_t *r = json_loadb(PQgetvalue(res, i, 1), (size_t)PQgetlength(res, i, 1), 0, NULL);

		if (!json_is_object(r)) {
			json_decref(r);
			continue;
		}
		rs_marks_add(&m, r);
		/* keep what the marks point to, and nothing else */
		{
			const json_t *nk[4] = { m.first, m.place, m.act, m.last };
			json_t *old[4];

			memcpy(old, recs, sizeof old);
			for (int k = 0; k < 4; k++)
				recs[k] = json_incref((json_t *)nk[k]);
			for (int k = 0; k < 4; k++)
				json_decref(old[k]);
			json_decref(r);
		}
	}
	if (m.first == NULL)
		return 0;	/* nothing readable: zdm status says why */
	run_summary_fold(&m, &rs);
	snprintf(seqs, sizeof seqs, "%ld", rs.records);
	v[0] = PQgetvalue(res, from, 0);
	v[1] = seqs;
	v[2] = PQgetvalue(res, to - 1, 2);
	summary_vals(&rs, v + 3);
	ins = q(ps, "INSERT INTO @.runs (run_id, runbook, path, dry_run, actor, host, started, updated, "
	    "records, step, state, going, in_doubt, written) VALUES ($1, $4, $5, $6::boolean, $7, $8, $9, "
	    "$10, $2::bigint, $11, $12, $13::boolean, $14::boolean, $3::timestamptz) "
	    "ON CONFLICT (run_id) DO NOTHING", 14, v, err);
	run_summary_release(&rs);
	for (int k = 0; k < 4; k++)
		json_decref(recs[k]);
	if (ins == NULL)
		return -1;
	PQclear(ins);
	return 0;
}

/* the summary rows of runs that have none (a state made before zdm kept
 * them), from their records, in one transaction; how many, or -1 and *err */
static long
backfill(struct pg_store *ps, char **err)
{
	PGresult *res, *t;
	long n = 0;
	int from = 0;

	res = q(ps, "SELECT j.run_id, j.record, j.written FROM @.journal j "
	    "WHERE NOT EXISTS (SELECT 1 FROM @.runs r WHERE r.run_id = j.run_id) "
	    "ORDER BY j.run_id, j.seq", 0, NULL, err);
	if (res == NULL)
		return -1;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return 0;
	}
	if ((t = q(ps, "BEGIN", 0, NULL, err)) == NULL) {
		PQclear(res);
		return -1;
	}
	PQclear(t);
	for (int i = 1; i <= PQntuples(res); i++) {
		if (i < PQntuples(res) && strcmp(PQgetvalue(res, i, 0), PQgetvalue(res, from, 0)) == 0)
			continue;
		if (backfill_run(ps, res, from, i, err) != 0) {
			PQclear(q(ps, "ROLLBACK", 0, NULL, NULL));
			PQclear(res);
			return -1;
		}
		n++;
		from = i;
	}
	PQclear(res);
	if ((t = q(ps, "COMMIT", 0, NULL, err)) == NULL)
		return -1;
	PQclear(t);
	return n;
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
	    "CREATE TABLE IF NOT EXISTS @.runs ("
	    "  run_id text PRIMARY KEY,"
	    "  runbook text, path text, dry_run boolean NOT NULL DEFAULT false,"
	    "  actor text, host text, started text, updated text,"
	    "  records bigint NOT NULL, step text, state text NOT NULL,"
	    "  going boolean NOT NULL, in_doubt boolean NOT NULL,"
	    "  written timestamptz NOT NULL);"
	    /* on columns an append never changes, so its update of the row is HOT */
	    "CREATE INDEX IF NOT EXISTS runs_runbook_started ON @.runs (runbook, started);"
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

		seterr(err, "state database %s: cannot create schema %s: %s", ps->where, ps->schema, m);
		free(m);
	} else {
		PQclear(res);
		text = sql(ps, "SELECT value FROM @.meta WHERE key = 'schema_version'");
		res = PQexec(ps->conn, text);
		free(text);
		if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
		    strcmp(PQgetvalue(res, 0, 0), SCHEMA_VERSION) == 0) {
			char *berr = NULL;
			long n = backfill(ps, &berr);

			if (n < 0) {
				seterr(err, "state database %s: cannot summarise the runs kept before: %s",
				    ps->where, berr);
				free(berr);
			} else {
				*out = xasprintf("%s: zdm state schema version %s ready", ps->place,
				    SCHEMA_VERSION);
				if (n > 0) {
					char *o = *out;

					*out = xasprintf("%s (summarised %ld run%s kept before)", o, n,
					    n == 1 ? "" : "s");
					free(o);
				}
				rc = 0;
			}
		} else {
			seterr(err, "state database %s: schema %s holds another version of zdm's state (%s)",
			    ps->where, ps->schema, PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "none");
		}
	}
	PQclear(res);
	pg_free(&ps->s);
	return rc;
}

