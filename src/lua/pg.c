/*
 * pg.c - zdm.pg: PostgreSQL for Lua plugins, through libpq.
 *
 *   local db, err = zdm.pg.connect(conninfo, {password=, connect_timeout=ms,
 *                                  statement_timeout=ms, application_name=})
 *   local r, err, sqlstate = db:query(sql, {params...})  -- extended protocol
 *   local r, err = db:query(sql, nil, {simple = true})   -- simple protocol, rows
 *   local ok, err, sqlstate = db:exec(sql)               -- simple protocol
 *   ... db:query(sql, params, {timeout = ms}), db:exec(sql, {timeout = ms})
 *   db:quote_ident(s), db:quote_literal(s)               -- PQescape*
 *   db:close()
 *
 * The contract is in docs/plugins.md ("zdm.pg").  Every wait (connecting,
 * a query) is non-blocking libpq (PQconnectStartParams / PQconnectPoll,
 * PQsendQuery*, poll(2) on PQsocket) in slices of at most 200 ms, bounded
 * by the step's deadline (lhx_deadline_ms) and stopped by a signal
 * (zdm_interrupted): then the running query is cancelled (PQcancel), the
 * connection closed, and lhx_check() raises for the runner.  A call's own
 * `timeout` ends the same way but returns nil, "timed out ..." instead.
 *
 * The simple query protocol with rows ({simple = true}) is for servers
 * that speak PostgreSQL's protocol without the extended one: PgBouncer's
 * admin console answers Parse with "extended query protocol not supported
 * by admin console".
 *
 * A connection is a full userdata with a C __gc and __close (PQfinish), so
 * an error that unwinds, or the collection the host runs after each call,
 * closes it.  A PGresult being turned into Lua tables is held by a
 * to-be-closed userdata too, so running out of the plugin's memory cap
 * (64 MiB) part-way leaks nothing.  Values and messages handed back are
 * redacted (redact_str) when the run has secrets.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <libpq-fe.h>
#include <lua.h>

#include "base/proc.h"
#include "base/redact.h"
#include "base/util.h"
#include "lua/lib.h"
#include "zdm/step.h"

#define PG_CONN	"zdm.pg.conn"		/* registry names of the metatables */
#define PG_RES	"zdm.pg.result"
#define PG_CONNECT_TIMEOUT_MS	10000	/* default connect_timeout */

struct pgconn {
	PGconn *conn;
	lua_State *L;			/* for notices (logged) */
	char *where;			/* "host=... port=... dbname=..." for messages */
};

struct pgres {
	PGresult *res;
};

/* the null sentinel: zdm.pg.null as a query parameter is SQL NULL */
static char pg_null_key;

/* ---- helpers ------------------------------------------------------------- */

/* a redacted copy of s as a Lua string */
static void
pg_push_redacted(lua_State *L, const char *s, size_t n)
{
	if (!redact_active()) {
		lua_pushlstring(L, s, n);
		return;
	}
	char *r = redact_str(s);	/* PQgetvalue is NUL-terminated */
	lua_pushstring(L, r);
	free(r);
}

static void
pg_push_redacted_str(lua_State *L, const char *s)
{
	pg_push_redacted(L, s, strlen(s));
}

/* libpq messages end with a newline: trim */
static char *
pg_trim(const char *s)
{
	char *t = xstrdup(s != NULL ? s : "");
	size_t n = strlen(t);

	while (n > 0 && (t[n - 1] == '\n' || t[n - 1] == ' '))
		t[--n] = '\0';
	for (char *p = t; *p; p++)
		if (*p == '\n' || *p == '\t')
			*p = ' ';
	return t;
}

static void
pg_finish(struct pgconn *c)
{
	if (c->conn != NULL)
		PQfinish(c->conn);
	c->conn = NULL;
	free(c->where);
	c->where = NULL;
}

/* stop what the server is doing for us and close: the deadline passed or
 * a signal came.  PQcancel opens its own short connection to 127.0.0.1 or
 * wherever the server is; it does not wait for the query to end. */
static void
pg_abandon(struct pgconn *c)
{
	if (c->conn != NULL && PQstatus(c->conn) == CONNECTION_OK &&
	    PQtransactionStatus(c->conn) == PQTRANS_ACTIVE) {
		PGcancel *cn = PQgetCancel(c->conn);
		char buf[256];

		if (cn != NULL) {
			(void)PQcancel(cn, buf, sizeof buf);
			PQfreeCancel(cn);
		}
	}
	pg_finish(c);
}

/*
 * Wait until the socket is ready for `events`, for at most until `own`
 * (monotonic ms; 0 = none) and the step's deadline.  Returns 1 ready, 0
 * when `own` passed.  When the step's deadline passes or a signal came,
 * abandons the connection and raises (lhx_check).
 */
static int
pg_wait(lua_State *L, struct pgconn *c, short events, int64_t own)
{
	int64_t step = lhx_deadline_ms(L), until;
	int fd = PQsocket(c->conn), rc;

	if (fd < 0)
		return 1;	/* let libpq report the broken connection */
	until = step == 0 ? own : own == 0 || step < own ? step : own;
	rc = zdm_poll_fd(fd, events, until);
	if (rc == 1 || (rc < 0 && !zdm_interrupted))
		return 1;	/* ready, or libpq will see the error on the socket */
	if (zdm_interrupted || (step != 0 && zdm_now_ms() >= step)) {
		pg_abandon(c);
		lhx_check(L);
		luaL_error(L, "zdm.pg: stopped");	/* not reached */
	}
	return 0;		/* its own timeout (connect_timeout) */
}

static struct pgconn *
pg_check(lua_State *L)
{
	struct pgconn *c = luaL_checkudata(L, 1, PG_CONN);

	if (c->conn == NULL)
		luaL_error(L, "zdm.pg: the connection is closed");
	return c;
}

static void
pg_notice(void *arg, const char *msg)
{
	struct pgconn *c = arg;
	char *t = pg_trim(msg);

	if (c->L != NULL) {
		char *line = xasprintf("postgres: %s", t);
		lhx_log(c->L, line);
		free(line);
	}
	free(t);
}

/* ---- results ------------------------------------------------------------- */

static int
pg_res_gc(lua_State *L)
{
	struct pgres *r = luaL_checkudata(L, 1, PG_RES);

	if (r->res != NULL)
		PQclear(r->res);
	r->res = NULL;
	return 0;
}

/* a to-be-closed holder for a PGresult */
static struct pgres *
pg_res_hold(lua_State *L, PGresult *res)
{
	struct pgres *r = lua_newuserdatauv(L, sizeof *r, 0);

	r->res = NULL;
	luaL_setmetatable(L, PG_RES);
	lua_toclose(L, -1);
	r->res = res;
	return r;
}

/* "ERROR:  message (SQLSTATE 55P03)" plus DETAIL when there is one */
static char *
pg_res_error(const PGresult *res, PGconn *conn)
{
	const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY);
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	const char *det = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
	const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	char *out;

	if (msg == NULL) {
		char *t = pg_trim(res != NULL ? PQresultErrorMessage(res) :
		    PQerrorMessage(conn));
		if (*t == '\0') {
			free(t);
			t = pg_trim(PQerrorMessage(conn));
		}
		return t;
	}
	out = xasprintf("%s:  %s%s%s (SQLSTATE %s)", sev != NULL ? sev : "ERROR",
	    msg, det != NULL ? "; DETAIL:  " : "", det != NULL ? det : "",
	    st != NULL ? st : "?????");
	char *t = pg_trim(out);
	free(out);
	return t;
}

/* push nil, message, sqlstate-or-nil; returns 3 */
static int
pg_push_fail(lua_State *L, const PGresult *res, PGconn *conn)
{
	char *m = pg_res_error(res, conn);
	const char *st = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

	lua_pushnil(L);
	pg_push_redacted_str(L, m);
	free(m);
	if (st != NULL)
		lua_pushstring(L, st);
	else
		lua_pushnil(L);
	return 3;
}

/*
 * Send is done; read every result until libpq has none.  Keeps the first
 * failed result, else the last one, in a to-be-closed holder pushed on the
 * stack (so a wait that raises leaks nothing); returns it (owned by the
 * holder) or NULL when the connection broke before any result.  `own`
 * (monotonic ms; 0 = none) is the call's own timeout: when it passes, the
 * query is cancelled, the connection closed, *timed_out set and NULL
 * returned.
 */
static PGresult *
pg_collect(lua_State *L, struct pgconn *c, int64_t own, bool *timed_out)
{
	struct pgres *keep = pg_res_hold(L, NULL);
	PGresult *r;
	int f;

	*timed_out = false;
	/* the query may not have gone out whole yet (non-blocking mode) */
	while ((f = PQflush(c->conn)) == 1)
		if (!pg_wait(L, c, POLLIN | POLLOUT, own))
			goto timeout;
	if (f < 0)
		return NULL;
	for (;;) {
		while (PQisBusy(c->conn)) {
			if (!pg_wait(L, c, POLLIN, own))
				goto timeout;
			if (!PQconsumeInput(c->conn))
				break;
		}
		r = PQgetResult(c->conn);
		if (r == NULL)
			break;
		if (keep->res != NULL && PQresultStatus(keep->res) == PGRES_FATAL_ERROR) {
			PQclear(r);
		} else {
			if (keep->res != NULL)
				PQclear(keep->res);
			keep->res = r;
		}
		if (PQstatus(c->conn) == CONNECTION_BAD)
			break;
	}
	return keep->res;
timeout:
	pg_abandon(c);
	*timed_out = true;
	return NULL;
}

static bool
pg_res_ok(const PGresult *r)
{
	ExecStatusType s = r != NULL ? PQresultStatus(r) : PGRES_FATAL_ERROR;

	return s == PGRES_TUPLES_OK || s == PGRES_COMMAND_OK ||
	    s == PGRES_EMPTY_QUERY || s == PGRES_SINGLE_TUPLE;
}

/* ---- a call's options: {timeout = ms[, simple = bool]} ------------------ */

struct pg_callopts {
	int64_t timeout;	/* ms; 0 = none (the step's deadline only) */
	bool simple;		/* db:query: the simple query protocol */
};

/* read the options table at `idx` (none or nil: defaults); `simple` only
 * for db:query.  Unknown keys and bad values raise. */
static void
pg_callopts(lua_State *L, int idx, const char *fn, bool with_simple,
    struct pg_callopts *o)
{
	static const char *const names[] = { "timeout", "simple", NULL };

	o->timeout = 0;
	o->simple = false;
	if (lua_isnoneornil(L, idx))
		return;
	luaL_checktype(L, idx, LUA_TTABLE);
	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;

		if (key != NULL && strcmp(key, "timeout") == 0) {
			int ok;
			lua_Integer v = lua_tointegerx(L, -1, &ok);

			if (!ok || v < 1 || v > (lua_Integer)1000000000000)
				luaL_error(L, "%s: timeout must be whole ms (1 to 10^12)", fn);
			o->timeout = (int64_t)v;
		} else if (with_simple && key != NULL && strcmp(key, "simple") == 0) {
			if (!lua_isboolean(L, -1))
				luaL_error(L, "%s: simple must be true or false", fn);
			o->simple = lua_toboolean(L, -1);
		} else {
			const char *dym = key != NULL ? did_you_mean(key, names) : NULL;

			if (!with_simple && dym != NULL && strcmp(dym, "simple") == 0)
				dym = NULL;
			luaL_error(L, "%s: unknown option '%s'%s%s%s", fn,
			    key != NULL ? key : "?", dym ? " (did you mean '" : "",
			    dym ? dym : "", dym ? "'?)" : "");
		}
		lua_pop(L, 1);
	}
}

/* nil, "timed out after N ms ..." for a call whose own timeout passed */
static int
pg_push_timeout(lua_State *L, int64_t ms)
{
	lua_pushnil(L);
	lua_pushfstring(L, "timed out after %I ms (the statement was cancelled and "
	    "the connection closed)", (lua_Integer)ms);
	return 2;
}

/* ---- db:query(sql [, params [, opts]]) ------------------------------------ */

static int
pg_query(lua_State *L)
{
	struct pgconn *c = pg_check(L);
	const char *sql = luaL_checkstring(L, 2);
	int n = 0, i, ncol, nrow;
	const char **vals = NULL;
	PGresult *res;
	struct pg_callopts o;
	bool timed_out;
	int sent;

	pg_callopts(L, 4, "db:query", true, &o);
	if (!lua_isnoneornil(L, 3)) {
		luaL_checktype(L, 3, LUA_TTABLE);
		n = (int)luaL_len(L, 3);
		if (n < 0 || n > 65535)
			return luaL_error(L, "db:query: at most 65535 parameters");
	}
	if (o.simple && n > 0)
		return luaL_error(L, "db:query: simple = true takes no parameters "
		    "(the simple query protocol has none)");
	/* parameter texts stay on the Lua stack (referenced) while sent */
	lua_settop(L, 3);
	luaL_checkstack(L, n + 8, "db:query: too many parameters");
	if (n > 0) {
		vals = lua_newuserdatauv(L, sizeof *vals * (size_t)n, 0);	/* at 4 */
		for (i = 1; i <= n; i++) {
			int t = lua_geti(L, 3, i);

			if (t == LUA_TLIGHTUSERDATA && lua_touserdata(L, -1) == &pg_null_key) {
				vals[i - 1] = NULL;
			} else if (t == LUA_TSTRING || t == LUA_TNUMBER) {
				vals[i - 1] = lua_tostring(L, -1);
			} else if (t == LUA_TBOOLEAN) {
				lua_pushstring(L, lua_toboolean(L, -1) ? "true" : "false");
				lua_replace(L, -2);
				vals[i - 1] = lua_tostring(L, -1);
			} else {
				return luaL_error(L, "db:query: parameter $%d is a %s "
				    "(give strings, numbers, booleans or zdm.pg.null)",
				    i, luaL_typename(L, -1));
			}
		}
	}
	sent = o.simple ? PQsendQuery(c->conn, sql) :
	    PQsendQueryParams(c->conn, sql, n, NULL, vals, NULL, NULL, 0);
	if (!sent) {
		char *m = pg_trim(PQerrorMessage(c->conn));
		lua_pushnil(L);
		pg_push_redacted_str(L, m);
		free(m);
		return 2;
	}
	/* held on the stack until we return */
	res = pg_collect(L, c, o.timeout > 0 ? zdm_now_ms() + o.timeout : 0, &timed_out);
	if (timed_out)
		return pg_push_timeout(L, o.timeout);
	if (!pg_res_ok(res))
		return pg_push_fail(L, res, c->conn);

	ncol = PQnfields(res);
	nrow = PQntuples(res);
	lua_createtable(L, 0, 5);
	lua_createtable(L, ncol, 0);
	for (i = 0; i < ncol; i++) {
		lua_pushstring(L, PQfname(res, i));
		lua_rawseti(L, -2, i + 1);
	}
	lua_setfield(L, -2, "columns");
	lua_createtable(L, nrow, 0);
	for (int r = 0; r < nrow; r++) {
		lua_createtable(L, 0, ncol);
		for (i = 0; i < ncol; i++) {
			if (PQgetisnull(res, r, i))
				continue;
			pg_push_redacted(L, PQgetvalue(res, r, i),
			    (size_t)PQgetlength(res, r, i));
			lua_setfield(L, -2, PQfname(res, i));
		}
		lua_rawseti(L, -2, r + 1);
	}
	lua_setfield(L, -2, "rows");
	lua_pushinteger(L, nrow);
	lua_setfield(L, -2, "count");
	lua_pushinteger(L, strtoll(PQcmdTuples(res), NULL, 10));
	lua_setfield(L, -2, "affected");
	pg_push_redacted_str(L, PQcmdStatus(res));
	lua_setfield(L, -2, "status");
	return 1;
}

/* ---- db:exec(sql [, opts]) ----------------------------------------------- */

static int
pg_exec(lua_State *L)
{
	struct pgconn *c = pg_check(L);
	const char *sql = luaL_checkstring(L, 2);
	PGresult *res;
	struct pg_callopts o;
	bool timed_out;

	pg_callopts(L, 3, "db:exec", false, &o);
	lua_settop(L, 2);
	if (!PQsendQuery(c->conn, sql)) {
		char *m = pg_trim(PQerrorMessage(c->conn));
		lua_pushnil(L);
		pg_push_redacted_str(L, m);
		free(m);
		return 2;
	}
	res = pg_collect(L, c, o.timeout > 0 ? zdm_now_ms() + o.timeout : 0, &timed_out);
	if (timed_out)
		return pg_push_timeout(L, o.timeout);
	if (!pg_res_ok(res))
		return pg_push_fail(L, res, c->conn);
	lua_pushboolean(L, 1);
	return 1;
}

/* ---- quoting ----------------------------------------------------------- */

static int
pg_quote(lua_State *L, bool ident)
{
	struct pgconn *c = pg_check(L);
	size_t n;
	const char *s = luaL_checklstring(L, 2, &n);
	char *q = ident ? PQescapeIdentifier(c->conn, s, n) :
	    PQescapeLiteral(c->conn, s, n);

	if (q == NULL) {
		char *m = pg_trim(PQerrorMessage(c->conn));
		lua_pushnil(L);
		pg_push_redacted_str(L, m);
		free(m);
		return 2;
	}
	lua_pushstring(L, q);
	PQfreemem(q);
	return 1;
}

static int pg_quote_ident(lua_State *L) { return pg_quote(L, true); }
static int pg_quote_literal(lua_State *L) { return pg_quote(L, false); }

/* ---- close / gc / tostring ---------------------------------------------- */

static int
pg_close(lua_State *L)
{
	struct pgconn *c = luaL_checkudata(L, 1, PG_CONN);

	pg_finish(c);
	return 0;
}

static int
pg_tostring(lua_State *L)
{
	struct pgconn *c = luaL_checkudata(L, 1, PG_CONN);

	lua_pushfstring(L, "zdm.pg connection (%s)", c->conn != NULL ?
	    (c->where != NULL ? c->where : "open") : "closed");
	return 1;
}

/* ---- zdm.pg.connect ------------------------------------------------------- */

static const char *const pg_opt_names[] = {
	"password", "connect_timeout", "statement_timeout", "application_name", NULL
};

static int64_t
pg_opt_ms(lua_State *L, const char *name, lua_Integer max)
{
	int ok;
	lua_Integer v;

	lua_getfield(L, 2, name);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return -1;
	}
	v = lua_tointegerx(L, -1, &ok);
	if (!ok || v < 0 || v > max)
		luaL_error(L, "zdm.pg.connect: %s must be whole ms (0 to %I)", name, max);
	lua_pop(L, 1);
	return (int64_t)v;
}

static const char *
pg_opt_str(lua_State *L, const char *name)
{
	const char *s;

	lua_getfield(L, 2, name);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return NULL;
	}
	if (lua_type(L, -1) != LUA_TSTRING)
		luaL_error(L, "zdm.pg.connect: %s must be a string", name);
	s = lua_tostring(L, -1);
	lua_pop(L, 1);	/* still referenced by the options table */
	return s;
}

/* "host=H port=P dbname=D" from what libpq parsed (no password) */
static char *
pg_where(const char *conninfo)
{
	PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
	const char *host = NULL, *port = NULL, *db = NULL;
	struct sbuf sb;

	if (opts == NULL)
		return xstrdup("(unparsable conninfo)");
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
		if (o->val == NULL || *o->val == '\0')
			continue;
		if (strcmp(o->keyword, "host") == 0 || (host == NULL &&
		    strcmp(o->keyword, "hostaddr") == 0))
			host = o->val;
		else if (strcmp(o->keyword, "port") == 0)
			port = o->val;
		else if (strcmp(o->keyword, "dbname") == 0)
			db = o->val;
	}
	sb_init(&sb);
	sb_addf(&sb, "host=%s port=%s dbname=%s", host != NULL ? host : "(default)",
	    port != NULL ? port : "5432", db != NULL ? db : "(default)");
	PQconninfoFree(opts);
	char *w = redact_str(sb.buf);
	sb_release(&sb);
	return w;
}

static int
pg_connect(lua_State *L)
{
	const char *conninfo, *password = NULL, *appname = NULL;
	int64_t ctimeout = PG_CONNECT_TIMEOUT_MS, stimeout = -1, own;
	const char *kw[6], *vals[6];
	int k = 0;
	char *perr = NULL;
	PQconninfoOption *parsed;
	struct pgconn *c;
	PostgresPollingStatusType st;

	lhx_may_act(L, "zdm.pg.connect");
	conninfo = luaL_checkstring(L, 1);
	if (!lua_isnoneornil(L, 2)) {
		luaL_checktype(L, 2, LUA_TTABLE);
		lua_pushnil(L);
		while (lua_next(L, 2) != 0) {
			const char *key = lua_type(L, -2) == LUA_TSTRING ?
			    lua_tostring(L, -2) : NULL;
			bool known = false;

			for (int i = 0; key != NULL && pg_opt_names[i] != NULL; i++)
				known = known || strcmp(key, pg_opt_names[i]) == 0;
			if (!known) {
				const char *dym = key != NULL ? did_you_mean(key, pg_opt_names) : NULL;
				return luaL_error(L, "zdm.pg.connect: unknown option '%s'%s%s%s",
				    key != NULL ? key : "?", dym ? " (did you mean '" : "",
				    dym ? dym : "", dym ? "'?)" : "");
			}
			lua_pop(L, 1);
		}
		password = pg_opt_str(L, "password");
		appname = pg_opt_str(L, "application_name");
		if ((own = pg_opt_ms(L, "connect_timeout", (lua_Integer)1000000000000)) >= 0)
			ctimeout = own;
		/* PostgreSQL's own limit for statement_timeout: INT_MAX ms (24.8 days) */
		stimeout = pg_opt_ms(L, "statement_timeout", (lua_Integer)INT_MAX);
	}
	lua_settop(L, 2);

	/* a conninfo libpq cannot parse: say so without echoing it (it may
	 * hold a password) */
	parsed = PQconninfoParse(conninfo, &perr);
	if (parsed == NULL) {
		char *t = pg_trim(perr != NULL ? perr : "out of memory");
		lua_pushnil(L);
		lua_pushfstring(L, "connect: bad conninfo: %s", t);
		free(t);
		PQfreemem(perr);
		return 2;
	}
	PQconninfoFree(parsed);

	c = lua_newuserdatauv(L, sizeof *c, 0);	/* at 3 */
	memset(c, 0, sizeof *c);
	luaL_setmetatable(L, PG_CONN);
	c->where = pg_where(conninfo);
	c->L = L;

	kw[k] = "dbname";		/* expanded: conninfo or URI, first */
	vals[k++] = conninfo;
	if (password != NULL) {
		kw[k] = "password";
		vals[k++] = password;
	}
	kw[k] = appname != NULL ? "application_name" : "fallback_application_name";
	vals[k++] = appname != NULL ? appname : "zdm";
	kw[k] = NULL;
	vals[k] = NULL;

	c->conn = PQconnectStartParams(kw, vals, 1);
	if (c->conn == NULL)
		return luaL_error(L, "zdm.pg.connect: out of memory");
	own = ctimeout > 0 ? zdm_now_ms() + ctimeout : 0;
	st = PGRES_POLLING_WRITING;
	while (PQstatus(c->conn) != CONNECTION_BAD &&
	    st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
		if (!pg_wait(L, c, st == PGRES_POLLING_READING ? POLLIN : POLLOUT, own)) {
			lua_pushnil(L);
			lua_pushfstring(L, "connect %s: timed out after %I ms",
			    c->where, (lua_Integer)ctimeout);
			pg_finish(c);
			return 2;
		}
		st = PQconnectPoll(c->conn);
	}
	if (PQstatus(c->conn) != CONNECTION_OK) {
		char *t = pg_trim(PQerrorMessage(c->conn));
		char *m = xasprintf("connect %s: %s", c->where, t);

		lua_pushnil(L);
		pg_push_redacted_str(L, m);
		free(m);
		free(t);
		pg_finish(c);
		return 2;
	}
	PQsetNoticeProcessor(c->conn, pg_notice, c);
	/* sends never block: PQflush in pg_collect waits on the socket instead */
	if (PQsetnonblocking(c->conn, 1) != 0) {
		lua_pushnil(L);
		lua_pushfstring(L, "connect %s: cannot switch to non-blocking mode", c->where);
		pg_finish(c);
		return 2;
	}
	if (stimeout >= 0) {
		char sql[64];
		PGresult *res;

		snprintf(sql, sizeof sql, "SET statement_timeout = %lld",
		    (long long)stimeout);
		if (!PQsendQuery(c->conn, sql)) {
			lua_pushnil(L);
			lua_pushfstring(L, "connect %s: cannot set statement_timeout", c->where);
			pg_finish(c);
			return 2;
		}
		bool timed_out;

		res = pg_collect(L, c, 0, &timed_out);
		if (!pg_res_ok(res)) {
			char *e = pg_res_error(res, c->conn);
			char *m = xasprintf("connect %s: SET statement_timeout: %s", c->where, e);

			lua_pushnil(L);
			pg_push_redacted_str(L, m);
			free(m);
			free(e);
			pg_finish(c);
			return 2;
		}
	}
	lua_pushvalue(L, 3);
	return 1;
}

/* ---- the opener ------------------------------------------------------------ */

static int
pg_conn_gc(lua_State *L)
{
	struct pgconn *c = luaL_testudata(L, 1, PG_CONN);

	if (c != NULL)
		pg_finish(c);
	return 0;
}

/* the metatable `name` on the stack, made (true) with gc as __gc and
 * __close and a locked __metatable, or found (false) */
static bool
pg_metatable(lua_State *L, const char *name, lua_CFunction gc)
{
	if (!luaL_newmetatable(L, name))
		return false;
	lua_pushcfunction(L, gc);
	lua_setfield(L, -2, "__gc");
	lua_pushcfunction(L, gc);
	lua_setfield(L, -2, "__close");
	lua_pushliteral(L, "locked");
	lua_setfield(L, -2, "__metatable");
	return true;
}

int
luaopen_zdm_pg(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{"query", pg_query},
		{"exec", pg_exec},
		{"quote_ident", pg_quote_ident},
		{"quote_literal", pg_quote_literal},
		{"close", pg_close},
		{NULL, NULL},
	};

	if (pg_metatable(L, PG_CONN, pg_conn_gc)) {
		luaL_newlib(L, methods);
		lua_setfield(L, -2, "__index");
		lua_pushcfunction(L, pg_tostring);
		lua_setfield(L, -2, "__tostring");
	}
	lua_pop(L, 1);
	pg_metatable(L, PG_RES, pg_res_gc);
	lua_pop(L, 1);

	lua_createtable(L, 0, 2);
	lua_pushcfunction(L, pg_connect);
	lua_setfield(L, -2, "connect");
	lua_pushlightuserdata(L, &pg_null_key);
	lua_setfield(L, -2, "null");
	lua_setfield(L, -2, "pg");
	return 0;
}
