/*
 * luahost.c - Lua plugins as step types.
 *
 * A plugin is a text file that returns a table with the step-type contract
 * (DESIGN.md "Step types").  luahost_load() gives each plugin its own
 * lua_State and wraps it in a `struct zdm_step_type` whose callbacks call the
 * plugin's functions, so the runner cannot tell a plugin from a built-in.
 *
 * The sandbox (DESIGN.md "The Lua host"):
 *   - libraries: base, string, table, math, utf8 only; no dofile, loadfile or
 *     require; `load` accepts text only (crafted bytecode can crash the VM);
 *     `print` goes to zdm.log;
 *   - no Lua code that runs with hooks off: Lua runs __gc finalizers, and
 *     the message handler of an error raised by the hook, with hooks
 *     disabled, so setmetatable refuses __gc and xpcall runs its handler
 *     after the unwind;
 *   - memory: a lua_Alloc that refuses to grow past ZDM_PLUGIN_MEMORY_MB
 *     (default 64), so a runaway plugin gets "not enough memory";
 *   - time: a count hook checks the deadline and zdm_interrupted every
 *     LH_HOOK_EVERY instructions; once it fires it fires on every
 *     instruction, so a pcall in the plugin cannot swallow the kill (redis).
 *     Count hooks do not run inside C functions: the zdm.* functions that
 *     wait (exec, sleep) carry the deadline themselves.
 *
 * Every entry into Lua goes through lh_pcall(), which runs a C "body" in
 * protected mode, so a Lua error (or a memory error while pushing params)
 * can never reach the panic handler.  C memory held while Lua may raise is
 * kept in a "guard" userdata marked to-be-closed, which frees it whether
 * the function returns or unwinds.
 *
 * The plugin behind a lua_State is found through LUA_EXTRASPACE: the hook
 * and the message handler have no upvalues, and one mechanism is simpler
 * than two.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include "base/proc.h"
#include "base/redact.h"
#include "base/util.h"
#include "core/events.h"
#include "core/plugin_path.h"
#include "lua/host.h"
#include "lua/luahost_ext.h"
#include "lua/luajson.h"
#include "net/httpc.h"
#include "zdm/step.h"

#define LH_MEMORY_MB	64		/* per plugin; ZDM_PLUGIN_MEMORY_MB */
#define LH_HOOK_EVERY	1000		/* instructions between deadline checks */
#define LH_STATIC_MS	10000		/* load, validate, plan: should be instant */
#define LH_EXEC_CAP	(1024 * 1024)	/* zdm.exec: bytes kept per stream */
#define LH_KILL_GRACE	2000		/* zdm.exec: SIGTERM -> SIGKILL */
#define LH_GUARD	"zdm.guard"	/* registry name of the guard metatable */
#define LH_LIBS		"zdm.libs"	/* registry: zdm.lib name -> its value */

struct plugin {
	lua_State *L;
	char *name, *path, *description;
	struct zdm_param *params;
	size_t nparams;
	bool read_only, idempotent;
	int ref_run, ref_validate, ref_plan, ref_undo, ref_snapshot;	/* registry refs */
	size_t mem, mem_limit;
	const char *const *search;	/* plugin path, for zdm.lib; load only */
	bool loading;			/* the plugin file's top level is running */

	/* the call in progress */
	struct zdm_ctx *ctx;		/* run and undo only */
	struct zdm_result *res;		/* run and undo only */
	int64_t deadline_ms;		/* 0 = none */
	bool killed;			/* the hook fired: every instruction raises */
	const char *kill_reason;
};

/* one callback's arguments and results, handed to its protected body */
struct call {
	struct plugin *p;
	const char *fn;			/* "run", "undo", ... for messages */
	int ref;
	struct zdm_ctx *ctx;
	const json_t *params;
	const json_t *undo_data;
	bool with_undo_data;
	bool raw_result;		/* snapshot(): the value itself is undo_data */
	struct zdm_result *res;
	struct zdm_diag *diag;
	char *plan;
	int rc;
};

/* C resources held while Lua may raise; released by __close or __gc */
struct guard {
	int fd;
	json_t *json;
	char *str;
	struct sbuf sb;
	bool has_sb;
	struct proc_result pr;
	bool has_pr;
};

static const char *const lh_type_names[] = {
	/* in enum zdm_ptype order */
	"string", "int", "number", "bool", "duration", "list", "map", "any", NULL
};

static struct plugin *
lh_plugin(lua_State *L)
{
	return *(struct plugin **)lua_getextraspace(L);
}

/* ---- memory, time, errors ------------------------------------------------ */

static void *
lh_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct plugin *p = ud;
	size_t old = ptr != NULL ? osize : 0;	/* ptr == NULL: osize is a type tag */
	void *n;

	if (nsize == 0) {
		free(ptr);
		p->mem -= old;
		return NULL;
	}
	if (nsize > old && p->mem - old + nsize > p->mem_limit)
		return NULL;
	n = realloc(ptr, nsize);
	if (n == NULL)
		return NULL;
	p->mem = p->mem - old + nsize;
	return n;
}

static int
lh_panic(lua_State *L)
{
	const char *m = lua_tostring(L, -1);

	fprintf(stderr, "zdm: unprotected error in a Lua plugin: %s\n",
	    m != NULL ? m : "?");
	abort();
}

/* the deadline passed or a signal came: note why and say so */
static bool
lh_expired(struct plugin *p)
{
	if (zdm_interrupted) {
		p->kill_reason = "interrupted";
		if (p->res != NULL)
			p->res->interrupted = true;
		return true;
	}
	if (p->deadline_ms != 0 && zdm_now_ms() >= p->deadline_ms) {
		p->kill_reason = "timed out";
		if (p->res != NULL)
			p->res->timed_out = true;
		return true;
	}
	return false;
}

static void lh_hook(lua_State *L, lua_Debug *ar);
static void lh_may_act(lua_State *L, const char *what);

/* from here on every instruction raises, until the call unwinds */
static int
lh_kill(lua_State *L, struct plugin *p)
{
	p->killed = true;
	lua_sethook(L, lh_hook, LUA_MASKCOUNT, 1);
	lua_pushstring(L, p->kill_reason);
	return lua_error(L);
}

static void
lh_hook(lua_State *L, lua_Debug *ar)
{
	struct plugin *p = lh_plugin(L);

	if (p->killed || lh_expired(p))
		lh_kill(L, p);
}

/* for zdm.* functions: raise if the call must stop */
static void
lh_check(lua_State *L, struct plugin *p)
{
	if (p->killed || lh_expired(p))
		lh_kill(L, p);
}

/* message handler: make the error a string */
static int
lh_msgh(lua_State *L)
{
	struct plugin *p = lh_plugin(L);

	if (p->killed) {
		lua_pushstring(L, p->kill_reason);
		return 1;
	}
	if (lua_type(L, 1) == LUA_TSTRING || lua_type(L, 1) == LUA_TNUMBER) {
		lua_tostring(L, 1);
		lua_settop(L, 1);
		return 1;
	}
	if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
		return 1;
	lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
	return 1;
}

/*
 * Run body(arg) in protected mode under the hook.  Returns a lua status;
 * on error, msg holds the message.  Leaves the stack as it found it.
 */
static int
lh_pcall(struct plugin *p, lua_CFunction body, void *arg, int64_t deadline,
    char *msg, size_t msgsz)
{
	lua_State *L = p->L;
	int top = lua_gettop(L), rc;

	msg[0] = '\0';
	p->deadline_ms = deadline;
	p->killed = false;
	p->kill_reason = NULL;
	lua_sethook(L, lh_hook, LUA_MASKCOUNT, LH_HOOK_EVERY);
	lua_pushcfunction(L, lh_msgh);
	lua_pushcfunction(L, body);
	lua_pushlightuserdata(L, arg);
	rc = lua_pcall(L, 1, 0, top + 1);
	if (rc != LUA_OK) {
		const char *m = lua_type(L, -1) == LUA_TSTRING ?
		    lua_tostring(L, -1) : "(no error message)";

		snprintf(msg, msgsz, "%s", m);
	}
	lua_settop(L, top);
	lua_gc(L, LUA_GCCOLLECT);	/* the call's garbage; only C finalizers exist */
	lua_sethook(L, NULL, 0, 0);
	p->deadline_ms = 0;
	return rc;
}

/* why a call that did not return normally failed ("run()", "loading") */
static void
lh_why(struct plugin *p, const char *what, const char *msg, int64_t limit,
    char *out, size_t n)
{
	if (!p->killed)
		snprintf(out, n, "%s", msg);
	else if (strcmp(p->kill_reason, "interrupted") == 0)
		snprintf(out, n, "%s interrupted by signal %d", what,
		    (int)zdm_interrupted);
	else if (limit != 0)
		snprintf(out, n, "%s did not finish within %llds", what,
		    (long long)(limit / 1000));
	else
		snprintf(out, n, "%s did not finish before the step's deadline", what);
}

/* ---- guards -------------------------------------------------------------- */

static void
lh_guard_release(struct guard *g)
{
	if (g->fd >= 0)
		close(g->fd);
	g->fd = -1;
	json_decref(g->json);
	g->json = NULL;
	free(g->str);
	g->str = NULL;
	if (g->has_sb)
		sb_release(&g->sb);
	g->has_sb = false;
	if (g->has_pr)
		proc_result_release(&g->pr);
	g->has_pr = false;
}

static int
lh_guard_close(lua_State *L)
{
	struct guard *g = lua_touserdata(L, 1);

	if (g != NULL)
		lh_guard_release(g);
	return 0;
}

/* push a guard, to-be-closed: it releases what it holds when the running
 * C function returns or unwinds */
static struct guard *
lh_guard(lua_State *L)
{
	struct guard *g = lua_newuserdatauv(L, sizeof *g, 0);

	memset(g, 0, sizeof *g);
	g->fd = -1;
	luaL_setmetatable(L, LH_GUARD);
	lua_toclose(L, -1);
	return g;
}

/* ---- the zdm module: logging, time --------------------------------------- */

static void
lh_log_str(struct plugin *p, const char *s)
{
	const char *who = p->ctx != NULL && p->ctx->step_id != NULL ?
	    p->ctx->step_id : p->name;
	char *r = redact_str(s), *line = r;

	for (;;) {
		char *nl = strchr(line, '\n');
		int len = nl != NULL ? (int)(nl - line) : (int)strlen(line);

		fprintf(stderr, "  | %s: %.*s\n", who, len, line);
		if (nl == NULL || nl[1] == '\0')
			break;
		line = nl + 1;
	}
	free(r);
}

/* zdm.log(msg) */
static int
lh_log(lua_State *L)
{
	lh_log_str(lh_plugin(L), luaL_tolstring(L, 1, NULL));
	return 0;
}

/* print(...): tab-separated, like the real one, into zdm.log */
static int
lh_print(lua_State *L)
{
	int n = lua_gettop(L);
	luaL_Buffer b;

	luaL_buffinit(L, &b);
	for (int i = 1; i <= n; i++) {
		if (i > 1)
			luaL_addchar(&b, '\t');
		luaL_tolstring(L, i, NULL);
		luaL_addvalue(&b);
	}
	luaL_pushresult(&b);
	lh_log_str(lh_plugin(L), lua_tostring(L, -1));
	return 0;
}

/* load(chunk [, chunkname [, mode [, env]]]) with mode forced to "t" */
static int
lh_load(lua_State *L)
{
	bool env = lua_gettop(L) >= 4;	/* load() tells a nil env from none */

	lua_settop(L, 4);
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_pushvalue(L, 1);
	lua_pushvalue(L, 2);
	lua_pushliteral(L, "t");
	if (env)
		lua_pushvalue(L, 4);
	lua_call(L, env ? 4 : 3, LUA_MULTRET);
	return lua_gettop(L) - 4;
}

/*
 * xpcall(f, h, ...): Lua calls a message handler from inside the error, and
 * when the error is the hook's kill that is with hooks off: an endless
 * handler would never be stopped.  Here h runs after the unwind, under the
 * hook.  Without the debug library a handler cannot see the stack anyway.
 */
static int
lh_xpcall(lua_State *L)
{
	int n = lua_gettop(L);

	luaL_checktype(L, 2, LUA_TFUNCTION);
	lua_pushvalue(L, 1);
	for (int i = 3; i <= n; i++)
		lua_pushvalue(L, i);
	if (lua_pcall(L, n - 2, LUA_MULTRET, 0) == LUA_OK) {
		lua_pushboolean(L, 1);
		lua_insert(L, n + 1);
		return lua_gettop(L) - n;
	}
	lua_pushvalue(L, 2);
	lua_insert(L, -2);
	lua_pcall(L, 1, 1, 0);		/* h(err), or the error h raised */
	lua_pushboolean(L, 0);
	lua_insert(L, -2);
	return 2;
}

/*
 * setmetatable(t, mt) without __gc: Lua runs finalizers with hooks off, so
 * a plugin's __gc could loop forever out of the deadline's reach.
 */
static int
lh_setmetatable(lua_State *L)
{
	lua_settop(L, 2);
	if (lua_type(L, 2) == LUA_TTABLE) {
		lua_pushliteral(L, "__gc");
		if (lua_rawget(L, 2) != LUA_TNIL)
			return luaL_error(L, "setmetatable: __gc is not allowed in plugins");
		lua_pop(L, 1);
	}
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, 2, 1);
	return 1;
}

/* zdm.sleep(ms): bounded by the step's deadline */
static int
lh_sleep(lua_State *L)
{
	struct plugin *p = lh_plugin(L);
	lua_Number ms = luaL_checknumber(L, 1);
	int64_t until, left;

	lh_check(L, p);
	if (!(ms > 0))
		return 0;
	if (ms > 1e12)
		ms = 1e12;
	until = zdm_now_ms() + (int64_t)ms;
	if (p->deadline_ms != 0 && until > p->deadline_ms)
		until = p->deadline_ms;
	for (;;) {
		left = until - zdm_now_ms();
		if (left <= 0)
			break;
		zdm_sleep_ms(left);
		lh_check(L, p);
	}
	lh_check(L, p);		/* cut short by the deadline: raises */
	return 0;
}

/*
 * zdm.note(event, data): journal an event of the step's own now (on disk
 * when it returns), e.g. "backfill.batch"; earlier attempts' notes come back
 * in ctx.notes.  Names with a dot, not in zdm's own namespaces.
 */
static int
lh_note(lua_State *L)
{
	struct plugin *p = lh_plugin(L);
	const char *ev = luaL_checkstring(L, 1);
	char *err = NULL, ebuf[512];
	json_t *data;

	lh_may_act(L, "zdm.note");
	if (!ev_note_allowed(ev))
		return luaL_error(L, "zdm.note: event '%s' must be 'area.what' and not in "
		    "zdm's own step./undo./run./rollback./drill. namespaces", ev);
	if (lua_isnoneornil(L, 2)) {
		data = json_null();
	} else {
		data = lj_to_json(L, 2, &err);
		if (data == NULL) {
			snprintf(ebuf, sizeof ebuf, "%s", err != NULL ? err : "?");
			free(err);
			return luaL_error(L, "zdm.note: data: %s", ebuf);
		}
	}
	redact_json(data);
	zdm_note(p->ctx, ev, data);
	return 0;
}

/* zdm.progress(text): one live line beside the running step on a terminal */
static int
lh_progress(lua_State *L)
{
	struct plugin *p = lh_plugin(L);
	const char *t = luaL_checkstring(L, 1);

	lh_check(L, p);
	if (p->ctx != NULL)
		zdm_progress(p->ctx, "%s", t);
	return 0;
}

/* zdm.is_expr(v) */
static int
lh_is_expr(lua_State *L)
{
	json_t *j = NULL;
	size_t len;
	const char *s;
	bool r = false;

	if (lua_type(L, 1) == LUA_TSTRING) {
		s = lua_tolstring(L, 1, &len);
		j = json_stringn(s, len);
		r = j != NULL && zdm_is_expr(j);
		json_decref(j);
	}
	lua_pushboolean(L, r);
	return 1;
}

/* ---- the zdm module: exec ------------------------------------------------ */

/* opts.NAME as a string or nil (left on the stack; the pointer lives as long) */
static const char *
lh_optfield_str(lua_State *L, int t, const char *name)
{
	int ty = lua_getfield(L, t, name);

	if (ty == LUA_TNIL)
		return NULL;
	if (ty != LUA_TSTRING)
		luaL_error(L, "zdm.exec: option '%s' must be a string, got %s",
		    name, luaL_typename(L, -1));
	return lua_tostring(L, -1);
}

static int64_t
lh_optfield_num(lua_State *L, int t, const char *name)
{
	lua_Number v;

	if (lua_getfield(L, t, name) == LUA_TNIL) {
		lua_pop(L, 1);
		return 0;
	}
	if (lua_type(L, -1) != LUA_TNUMBER)
		luaL_error(L, "zdm.exec: option '%s' must be a number, got %s",
		    name, luaL_typename(L, -1));
	v = lua_tonumber(L, -1);
	if (!(v >= 1 && v <= 1e12))
		luaL_error(L, "zdm.exec: option '%s' must be a positive number", name);
	lua_pop(L, 1);
	return (int64_t)v;
}

/* check opts.env: string keys, string or number values */
static void
lh_check_env(lua_State *L, int t)
{
	lua_pushnil(L);
	while (lua_next(L, t) != 0) {
		if (lua_type(L, -2) != LUA_TSTRING)
			luaL_error(L, "zdm.exec: env names must be strings, got %s",
			    luaL_typename(L, -2));
		if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
			luaL_error(L, "zdm.exec: env '%s' must be a string, got %s",
			    lua_tostring(L, -2), luaL_typename(L, -1));
		lua_pop(L, 1);
	}
}

/*
 * zdm.exec(cmd [, opts]) -> {code=, signal=, stdout=, stderr=, timed_out=}
 * | nil, msg.  cmd: argv table or shell string.  opts: env, cwd, stdin,
 * timeout (ms), cap (bytes).
 */
/*
 * validate() and plan() (and loading) must change nothing: DESIGN's "no side
 * effects" for `zdm validate` and `zdm plan`.  Only run(), undo() and
 * snapshot() (which may read through a command) have a step context.
 */
static void
lh_may_act(lua_State *L, const char *what)
{
	struct plugin *p = lh_plugin(L);

	if (p->ctx == NULL)
		luaL_error(L, "%s is not allowed here: validate() and plan() must change nothing "
		    "(do it in run() or undo())", what);
}

static int
lh_exec(lua_State *L)
{
	static const char *const known[] = {
		"env", "cwd", "stdin", "timeout", "cap", NULL
	};

	lh_may_act(L, "zdm.exec");
	struct plugin *p = lh_plugin(L);
	struct proc_opts o;
	struct guard *g;
	char **argv, *err = NULL, ebuf[512];
	int64_t timeout, cap, deadline;
	int env_idx = 0;

	lh_check(L, p);
	lua_settop(L, 2);
	memset(&o, 0, sizeof o);
	if (lua_type(L, 1) == LUA_TSTRING) {
		o.shell = lua_tostring(L, 1);
	} else if (lua_type(L, 1) == LUA_TTABLE) {
		lua_Integer n = (lua_Integer)lua_rawlen(L, 1);

		if (n == 0)
			return luaL_argerror(L, 1, "empty argv");
		/* the strings stay alive: the table at 1 holds them */
		argv = lua_newuserdatauv(L, ((size_t)n + 1) * sizeof *argv, 0);
		for (lua_Integer i = 1; i <= n; i++) {
			if (lua_rawgeti(L, 1, i) != LUA_TSTRING)
				return luaL_error(L, "zdm.exec: argv[%d] must be a string, got %s",
				    (int)i, luaL_typename(L, -1));
			argv[i - 1] = (char *)lua_tostring(L, -1);
			lua_pop(L, 1);
		}
		argv[n] = NULL;
		o.argv = argv;
	} else {
		return luaL_typeerror(L, 1, "argv table or command string");
	}

	o.cap = LH_EXEC_CAP;
	o.kill_grace_ms = LH_KILL_GRACE;
	deadline = p->deadline_ms;
	if (!lua_isnil(L, 2)) {
		luaL_checktype(L, 2, LUA_TTABLE);
		lua_pushnil(L);
		while (lua_next(L, 2) != 0) {
			const char *k = lua_type(L, -2) == LUA_TSTRING ?
			    lua_tostring(L, -2) : NULL;
			size_t i;

			for (i = 0; k != NULL && known[i] != NULL; i++)
				if (strcmp(k, known[i]) == 0)
					break;
			if (k == NULL || known[i] == NULL)
				return luaL_error(L, "zdm.exec: unknown option '%s'",
				    k != NULL ? k : luaL_typename(L, -2));
			lua_pop(L, 1);
		}
		o.cwd = lh_optfield_str(L, 2, "cwd");
		o.stdin_data = lh_optfield_str(L, 2, "stdin");
		timeout = lh_optfield_num(L, 2, "timeout");
		if (timeout != 0 && (deadline == 0 || zdm_now_ms() + timeout < deadline))
			deadline = zdm_now_ms() + timeout;
		cap = lh_optfield_num(L, 2, "cap");
		if (cap != 0)
			o.cap = (size_t)cap;
		if (lua_getfield(L, 2, "env") != LUA_TNIL) {
			luaL_checktype(L, -1, LUA_TTABLE);
			env_idx = lua_gettop(L);
			lh_check_env(L, env_idx);
		}
	}
	o.deadline_ms = deadline;

	g = lh_guard(L);
	if (env_idx != 0) {
		g->json = json_object();
		lua_pushnil(L);
		while (lua_next(L, env_idx) != 0) {
			size_t len;
			const char *v;

			lua_pushvalue(L, -1);	/* tostring a copy: keep next() sane */
			v = lua_tolstring(L, -1, &len);
			if (json_object_set_new(g->json, lua_tostring(L, -3),
			    json_stringn(v, len)) != 0)
				return luaL_error(L, "zdm.exec: env '%s' is not valid UTF-8",
				    lua_tostring(L, -3));
			lua_pop(L, 2);
		}
		o.env = g->json;
	}

	g->has_pr = true;
	if (proc_run(&o, &g->pr, &err) == -1) {
		snprintf(ebuf, sizeof ebuf, "%s", err != NULL ? err : "cannot start");
		free(err);
		lua_pushnil(L);
		lua_pushstring(L, ebuf);
		return 2;
	}
	lh_check(L, p);		/* the step's deadline passed or a signal came */

	lua_createtable(L, 0, 5);
	lua_pushinteger(L, g->pr.exit_code);
	lua_setfield(L, -2, "code");
	if (g->pr.term_signal != 0) {
		lua_pushinteger(L, g->pr.term_signal);
		lua_setfield(L, -2, "signal");
	}
	lua_pushlstring(L, g->pr.out != NULL ? g->pr.out : "", g->pr.out_len);
	lua_setfield(L, -2, "stdout");
	lua_pushlstring(L, g->pr.err != NULL ? g->pr.err : "", g->pr.err_len);
	lua_setfield(L, -2, "stderr");
	lua_pushboolean(L, g->pr.timed_out);
	lua_setfield(L, -2, "timed_out");
	return 1;
}

/* ---- the zdm module: http ------------------------------------------------ */

/* req.NAME as a string or nil (left on the stack; the pointer lives as long) */
static const char *
lh_http_str(lua_State *L, const char *name)
{
	int ty = lua_getfield(L, 1, name);

	if (ty == LUA_TNIL)
		return NULL;
	if (ty != LUA_TSTRING)
		luaL_error(L, "zdm.http: '%s' must be a string, got %s", name,
		    luaL_typename(L, -1));
	return lua_tostring(L, -1);
}

/* req.headers into g->json: string names, string or number values */
static void
lh_http_headers(lua_State *L, struct guard *g)
{
	int t;

	if (lua_getfield(L, 1, "headers") == LUA_TNIL) {
		lua_pop(L, 1);
		return;
	}
	if (!lua_istable(L, -1))
		luaL_error(L, "zdm.http: 'headers' must be a table of name = value, got %s",
		    luaL_typename(L, -1));
	t = lua_gettop(L);
	g->json = json_object();
	lua_pushnil(L);
	while (lua_next(L, t) != 0) {
		size_t len;
		const char *v;

		if (lua_type(L, -2) != LUA_TSTRING)
			luaL_error(L, "zdm.http: header names must be strings, got %s",
			    luaL_typename(L, -2));
		if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
			luaL_error(L, "zdm.http: header '%s' must be a string, got %s",
			    lua_tostring(L, -2), luaL_typename(L, -1));
		lua_pushvalue(L, -1);	/* tostring a copy: keep next() sane */
		v = lua_tolstring(L, -1, &len);
		if (json_object_set_new(g->json, lua_tostring(L, -3), json_stringn(v, len)) != 0)
			luaL_error(L, "zdm.http: header '%s' is not valid UTF-8", lua_tostring(L, -3));
		lua_pop(L, 2);
	}
	lua_pop(L, 1);
}

/*
 * zdm.http(req) -> {status=, body=, headers=, duration_ms=} | nil, msg
 * req: url (required), method ("GET"), headers (name = value), body (a
 * string as is, or a table sent as JSON with content-type application/json),
 * timeout (ms; 10 s), ca_file, insecure, unix_socket, bearer, user,
 * password.  Response header names are lower case.  Bounded by the step's
 * deadline (count hooks do not run inside C: the request carries it).
 * Bad arguments raise; a request that got no response (refused, timed out,
 * TLS) returns nil and curl's message.
 */
static int
lh_http(lua_State *L)
{
	static const char *const known[] = {
		"method", "url", "headers", "body", "timeout", "ca_file", "insecure",
		"unix_socket", "bearer", "user", "password", NULL
	};
	struct plugin *p = lh_plugin(L);
	struct http_req req;
	struct http_resp resp;
	struct guard *gq, *gr;
	char *err = NULL, ebuf[1024];
	const char *why;
	int ty, rc;

	lh_check(L, p);
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	luaL_checkstack(L, 40, "zdm.http");
	lua_pushnil(L);
	while (lua_next(L, 1) != 0) {
		const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
		size_t i;

		for (i = 0; k != NULL && known[i] != NULL; i++)
			if (strcmp(k, known[i]) == 0)
				break;
		if (k == NULL || known[i] == NULL) {
			const char *dym = k != NULL ? did_you_mean(k, known) : NULL;

			return luaL_error(L, "zdm.http: unknown option '%s'%s%s%s",
			    k != NULL ? k : luaL_typename(L, -2), dym ? " (did you mean '" : "",
			    dym ? dym : "", dym ? "'?)" : "");
		}
		lua_pop(L, 1);
	}

	memset(&req, 0, sizeof req);
	req.url = lh_http_str(L, "url");
	if (req.url == NULL)
		return luaL_error(L, "zdm.http: 'url' is required");
	why = http_url_problem(req.url);
	if (why != NULL)
		return luaL_error(L, "zdm.http: malformed URL '%s': %s", req.url, why);
	req.method = lh_http_str(L, "method");
	if (req.method != NULL && strcasecmp(req.method, "GET") != 0 &&
	    strcasecmp(req.method, "HEAD") != 0)
		lh_may_act(L, "zdm.http with a method other than GET or HEAD");
	req.ca_file = lh_http_str(L, "ca_file");
	req.unix_socket = lh_http_str(L, "unix_socket");
	req.bearer = lh_http_str(L, "bearer");
	req.user = lh_http_str(L, "user");
	req.password = lh_http_str(L, "password");
	ty = lua_getfield(L, 1, "insecure");
	if (ty != LUA_TNIL && ty != LUA_TBOOLEAN)
		return luaL_error(L, "zdm.http: 'insecure' must be a boolean, got %s",
		    luaL_typename(L, -1));
	req.insecure = lua_toboolean(L, -1);
	ty = lua_getfield(L, 1, "timeout");
	if (ty != LUA_TNIL) {
		lua_Number ms = lua_tonumber(L, -1);

		if (ty != LUA_TNUMBER || !(ms >= 1 && ms <= 1e12))
			return luaL_error(L, "zdm.http: 'timeout' must be a positive number of ms");
		req.timeout_ms = (int64_t)ms;
	}
	req.deadline_ms = p->deadline_ms;

	gq = lh_guard(L);
	lh_http_headers(L, gq);
	ty = lua_getfield(L, 1, "body");
	if (ty == LUA_TSTRING) {
		req.body = lua_tolstring(L, -1, &req.body_len);
	} else if (ty == LUA_TTABLE) {
		json_t *j = lj_to_json(L, lua_gettop(L), &err);
		bool has_ct = false;
		const char *k;
		json_t *v;

		if (j == NULL) {
			snprintf(ebuf, sizeof ebuf, "%s", err != NULL ? err : "?");
			free(err);
			return luaL_error(L, "zdm.http: body: %s", ebuf);
		}
		gq->str = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
		json_decref(j);
		if (gq->str == NULL)
			return luaL_error(L, "zdm.http: body: cannot encode as JSON");
		req.body = gq->str;
		req.body_len = strlen(gq->str);
		if (gq->json == NULL)
			gq->json = json_object();
		json_object_foreach(gq->json, k, v)
			if (strcasecmp(k, "content-type") == 0)
				has_ct = true;
		if (!has_ct)
			json_object_set_new(gq->json, "Content-Type", json_string("application/json"));
	} else if (ty != LUA_TNIL) {
		return luaL_error(L, "zdm.http: 'body' must be a string or a table, got %s",
		    luaL_typename(L, -1));
	}
	req.headers = gq->json;
	if (req.insecure)
		lh_log_str(p, "warning: zdm.http with insecure = true: TLS certificates are not verified");

	gr = lh_guard(L);
	rc = http_do(&req, &resp, &err);
	gr->str = resp.body;		/* the guard frees them, whatever happens next */
	gr->json = resp.headers;
	if (rc != 0) {
		snprintf(ebuf, sizeof ebuf, "%s", err != NULL ? err : "request failed");
		free(err);
		lh_check(L, p);		/* the step's deadline passed or a signal came */
		lua_pushnil(L);
		lua_pushstring(L, ebuf);
		return 2;
	}
	lh_check(L, p);

	/* what a plugin gets back is redacted like zdm.exec's output */
	if (redact_active()) {
		char *red = redact_str(gr->str);

		free(gr->str);
		gr->str = red;
		resp.body = red;
		resp.body_len = strlen(red);
		if (resp.body_trunc)	/* a secret cut by the limit */
			resp.body_len = redact_tail(red, resp.body_len);
		redact_json(gr->json);
	}
	lua_createtable(L, 0, 4);
	lua_pushinteger(L, (lua_Integer)resp.status);
	lua_setfield(L, -2, "status");
	lua_pushlstring(L, gr->str, resp.body_len);
	lua_setfield(L, -2, "body");
	lj_push(L, gr->json);
	lua_setfield(L, -2, "headers");
	lua_pushinteger(L, (lua_Integer)resp.duration_ms);
	lua_setfield(L, -2, "duration_ms");
	if (resp.body_trunc) {
		lua_pushboolean(L, 1);
		lua_setfield(L, -2, "body_truncated");
	}
	return 1;
}

/* ---- the zdm module: files ----------------------------------------------- */

/* "dir/base" -> dir ("." or "/" as needed) and a temp name beside it with
 * `suffix` appended.  -1 (errno set) when it does not fit or has no base. */
static int
lh_beside(const char *path, char *dir, size_t dn, char *tmp, size_t tn,
    const char *suffix)
{
	const char *slash = strrchr(path, '/'), *base;
	int r;

	if (slash == NULL) {
		snprintf(dir, dn, ".");
		base = path;
	} else {
		size_t len = slash == path ? 1 : (size_t)(slash - path);

		if (len >= dn) {
			errno = ENAMETOOLONG;
			return -1;
		}
		memcpy(dir, path, len);
		dir[len] = '\0';
		base = slash + 1;
	}
	if (base[0] == '\0') {
		errno = EISDIR;
		return -1;
	}
	r = snprintf(tmp, tn, "%s/.%.200s.%s", dir, base, suffix);
	if (r < 0 || (size_t)r >= tn) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

static int
lh_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc, e;

	if (fd == -1)
		return -1;
	rc = fsync(fd);
	e = errno;
	close(fd);
	errno = e;
	/* some file systems cannot sync a directory; nothing to do there */
	return rc == -1 && errno != EINVAL ? -1 : 0;
}

static int
lh_write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w == -1 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* zdm.file.read(path) -> string | nil, msg */
static int
lh_file_read(lua_State *L)
{
	struct plugin *p = lh_plugin(L);
	const char *path = luaL_checkstring(L, 1);
	struct guard *g = lh_guard(L);
	char buf[65536];

	g->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (g->fd == -1)
		return luaL_fileresult(L, 0, path);
	sb_init(&g->sb);
	g->has_sb = true;
	for (;;) {
		ssize_t r = read(g->fd, buf, sizeof buf);

		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1)
			return luaL_fileresult(L, 0, path);
		if (r == 0)
			break;
		if (g->sb.len + (size_t)r > p->mem_limit) {
			errno = EFBIG;
			return luaL_fileresult(L, 0, path);
		}
		sb_add(&g->sb, buf, (size_t)r);
	}
	lua_pushlstring(L, g->sb.buf, g->sb.len);
	return 1;
}

/* zdm.file.write_atomic(path, data [, mode]) -> true | nil, msg
 * mode defaults to the replaced file's, or 0644 */
static int
lh_file_write_atomic(lua_State *L)
{
	const char *path = (lh_may_act(L, "zdm.file.write_atomic"), luaL_checkstring(L, 1));
	size_t len;
	const char *data = luaL_checklstring(L, 2, &len);
	lua_Integer mode = luaL_optinteger(L, 3, -1);
	char dir[PATH_MAX], tmp[PATH_MAX];
	struct stat st;
	int fd = -1, e;

	luaL_argcheck(L, mode >= -1 && mode <= 07777, 3, "mode out of range");
	if (lh_beside(path, dir, sizeof dir, tmp, sizeof tmp, "zdm-XXXXXX") == -1)
		return luaL_fileresult(L, 0, path);
	if (mode == -1)
		mode = stat(path, &st) == 0 ? (lua_Integer)(st.st_mode & 07777) : 0644;
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd == -1)
		return luaL_fileresult(L, 0, path);
	if (lh_write_all(fd, data, len) == -1 || fchmod(fd, (mode_t)mode) == -1 ||
	    fsync(fd) == -1)
		goto fail;
	e = close(fd);
	fd = -1;
	if (e == -1 || rename(tmp, path) == -1)
		goto fail;
	if (lh_fsync_dir(dir) == -1)
		return luaL_fileresult(L, 0, dir);
	lua_pushboolean(L, 1);
	return 1;
fail:
	e = errno;
	if (fd != -1)
		close(fd);
	unlink(tmp);
	errno = e;
	return luaL_fileresult(L, 0, path);
}

/* zdm.file.readlink(path) -> target | nil, msg */
static int
lh_file_readlink(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	char buf[PATH_MAX];
	ssize_t n = readlink(path, buf, sizeof buf);

	if (n == (ssize_t)sizeof buf) {
		errno = ENAMETOOLONG;
		n = -1;
	}
	if (n == -1)
		return luaL_fileresult(L, 0, path);
	lua_pushlstring(L, buf, (size_t)n);
	return 1;
}

/*
 * zdm.file.symlink(target, linkpath) -> true | nil, msg
 * Atomic replace: make the link under a unique name beside linkpath, then
 * rename() it over linkpath (`ln -s` + `mv -T`); readers never see no link.
 */
static int
lh_file_symlink(lua_State *L)
{
	static unsigned counter;
	const char *target = (lh_may_act(L, "zdm.file.symlink"), luaL_checkstring(L, 1));
	const char *link = luaL_checkstring(L, 2);
	char dir[PATH_MAX], tmp[PATH_MAX], suffix[32];
	int e;

	for (int tries = 0;; tries++) {
		unsigned r = (unsigned)getpid() * 2654435761u ^
		    (unsigned)zdm_now_ms() ^ ++counter * 0x9e3779b9u;

		snprintf(suffix, sizeof suffix, "zdm-%08x", r);
		if (lh_beside(link, dir, sizeof dir, tmp, sizeof tmp, suffix) == -1)
			return luaL_fileresult(L, 0, link);
		if (symlink(target, tmp) == 0)
			break;
		if (errno != EEXIST || tries == 100)
			return luaL_fileresult(L, 0, link);
	}
	if (rename(tmp, link) == -1) {
		e = errno;
		unlink(tmp);
		errno = e;
		return luaL_fileresult(L, 0, link);
	}
	if (lh_fsync_dir(dir) == -1)
		return luaL_fileresult(L, 0, dir);
	lua_pushboolean(L, 1);
	return 1;
}

/* zdm.file.remove(path) -> true | nil, msg (a file, a link, an empty dir) */
static int
lh_file_remove(lua_State *L)
{
	const char *path = (lh_may_act(L, "zdm.file.remove"), luaL_checkstring(L, 1));

	return luaL_fileresult(L, remove(path) == 0, path);
}

/* zdm.file.exists(path) -> bool; true for anything there, a dangling link too */
static int
lh_file_exists(lua_State *L)
{
	struct stat st;

	lua_pushboolean(L, lstat(luaL_checkstring(L, 1), &st) == 0);
	return 1;
}

/* zdm.file.type(path) -> "file" | "dir" | "link" | "other" | nil, msg */
static int
lh_file_type(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	struct stat st;

	if (lstat(path, &st) == -1)
		return luaL_fileresult(L, 0, path);
	if (S_ISREG(st.st_mode))
		lua_pushliteral(L, "file");
	else if (S_ISDIR(st.st_mode))
		lua_pushliteral(L, "dir");
	else if (S_ISLNK(st.st_mode))
		lua_pushliteral(L, "link");
	else
		lua_pushliteral(L, "other");
	return 1;
}

/* ---- the zdm module: json ------------------------------------------------ */

/* zdm.json.encode(v) -> string; raises on a value with no JSON form */
static int
lh_json_encode(lua_State *L)
{
	struct guard *g;
	char *err = NULL, ebuf[512];

	luaL_checkany(L, 1);
	lua_settop(L, 1);
	g = lh_guard(L);
	g->json = lj_to_json(L, 1, &err);
	if (g->json == NULL) {
		snprintf(ebuf, sizeof ebuf, "%s", err != NULL ? err : "?");
		free(err);
		return luaL_error(L, "zdm.json.encode: %s", ebuf);
	}
	g->str = json_dumps(g->json, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
	if (g->str == NULL)
		return luaL_error(L, "zdm.json.encode: cannot encode");
	lua_pushstring(L, g->str);
	return 1;
}

/* zdm.json.decode(s) -> value | nil, msg */
static int
lh_json_decode(lua_State *L)
{
	size_t len;
	const char *s = luaL_checklstring(L, 1, &len);
	struct guard *g = lh_guard(L);
	json_error_t je;

	g->json = json_loadb(s, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
	if (g->json == NULL) {
		lua_pushnil(L);
		lua_pushfstring(L, "invalid JSON at line %d, column %d: %s",
		    je.line, je.column, je.text);
		return 2;
	}
	lj_push(L, g->json);
	return 1;
}

/*
 * zdm.lib(name): a plugin library, "db._pg" -> the first <dir>/db/_pg.lua on
 * the plugin search path (the registry's plugin_find, the plugins' own
 * order).  Text only, run once in this plugin's state (same globals, hook
 * and memory cap), its value cached in LUA_REGISTRYINDEX[LH_LIBS] (true for
 * a library that returns nothing).  Only while the plugin file loads, so
 * a missing or broken library is a load error, reported at validate.
 */
static int
lh_lib(lua_State *L)
{
	struct plugin *p = lh_plugin(L);
	const char *name = luaL_checkstring(L, 1);
	char *file;
	int libs;

	if (!p->loading)
		return luaL_error(L, "zdm.lib('%s'): only while the plugin loads (at the top "
		    "level of its file, e.g. `local pg = zdm.lib(\"db._pg\")`), not in "
		    "validate(), plan(), run() or undo()", name);
	if (!plugin_name_valid(name) || !plugin_is_lib(name))
		return luaL_error(L, "zdm.lib('%s'): not a library name: a dotted name whose "
		    "last part starts with '_' (\"db._pg\" is <dir>/db/_pg.lua)", name);
	lua_settop(L, 1);
	lua_getfield(L, LUA_REGISTRYINDEX, LH_LIBS);
	libs = lua_gettop(L);
	switch (lua_getfield(L, libs, name)) {
	case LUA_TNIL:
		break;
	case LUA_TLIGHTUSERDATA:	/* the mark of a library still loading */
		return luaL_error(L, "zdm.lib('%s'): the library needs itself "
		    "(a cycle of zdm.lib calls)", name);
	default:
		return 1;
	}
	lua_pop(L, 1);

	file = plugin_find(p->search, name);
	if (file == NULL) {
		const char *rel = luaL_gsub(L, name, ".", "/");
		luaL_Buffer b;

		luaL_buffinit(L, &b);
		for (size_t i = 0; p->search != NULL && p->search[i] != NULL; i++) {
			if (i > 0)
				luaL_addchar(&b, ':');
			luaL_addstring(&b, p->search[i]);
		}
		luaL_pushresult(&b);
		return luaL_error(L, "zdm.lib('%s'): library not found: no %s.lua "
		    "on the plugin path (%s)", name, rel, lua_tostring(L, -1));
	}
	lua_pushstring(L, file);	/* may raise: file is freed first below */
	free(file);
	if (luaL_loadfilex(L, lua_tostring(L, -1), "t") != LUA_OK)
		goto fail;	/* "<file>:<line>: <syntax error>" */
	lua_pushlightuserdata(L, p);
	lua_setfield(L, libs, name);
	lua_pushvalue(L, 1);
	if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
		lua_pushnil(L);
		lua_setfield(L, libs, name);
		goto fail;
	}
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		lua_pushboolean(L, 1);
	}
	lua_pushvalue(L, -1);
	lua_setfield(L, libs, name);
	return 1;
fail:
	/* "<plugin>:<line>: zdm.lib('db._pg'): <library>:<line>: ..." */
	if (p->killed)
		return lua_error(L);
	if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER) {
		const char *tn = luaL_typename(L, -1);

		lua_pushfstring(L, "(error object is a %s value)", tn);
		lua_remove(L, -2);
	}
	luaL_where(L, 1);
	lua_pushfstring(L, "zdm.lib('%s'): ", name);
	lua_rotate(L, -3, 2);
	lua_concat(L, 3);
	return lua_error(L);
}

static const luaL_Reg lh_zdm_funcs[] = {
	{ "lib", lh_lib },
	{ "exec", lh_exec },
	{ "http", lh_http },
	{ "sleep", lh_sleep },
	{ "log", lh_log },
	{ "is_expr", lh_is_expr },
	{ "note", lh_note },
	{ "progress", lh_progress },
	{ NULL, NULL },
};

static const luaL_Reg lh_file_funcs[] = {
	{ "read", lh_file_read },
	{ "write_atomic", lh_file_write_atomic },
	{ "readlink", lh_file_readlink },
	{ "symlink", lh_file_symlink },
	{ "remove", lh_file_remove },
	{ "exists", lh_file_exists },
	{ "type", lh_file_type },
	{ NULL, NULL },
};

static const luaL_Reg lh_json_funcs[] = {
	{ "encode", lh_json_encode },
	{ "decode", lh_json_decode },
	{ NULL, NULL },
};

/* the libraries a plugin gets (linit.c: "copy me and edit") */
static const luaL_Reg lh_libs[] = {
	{ LUA_GNAME, luaopen_base },
	{ LUA_STRLIBNAME, luaopen_string },
	{ LUA_TABLIBNAME, luaopen_table },
	{ LUA_MATHLIBNAME, luaopen_math },
	{ LUA_UTF8LIBNAME, luaopen_utf8 },
	{ NULL, NULL },
};

static void
lh_sandbox(lua_State *L)
{
	for (const luaL_Reg *l = lh_libs; l->func != NULL; l++) {
		luaL_requiref(L, l->name, l->func, 1);
		lua_pop(L, 1);
	}
	lua_pushnil(L);
	lua_setglobal(L, "dofile");
	lua_pushnil(L);
	lua_setglobal(L, "loadfile");
	lua_pushnil(L);
	lua_setglobal(L, "require");
	lua_getglobal(L, "load");
	lua_pushcclosure(L, lh_load, 1);
	lua_setglobal(L, "load");
	lua_pushcfunction(L, lh_print);
	lua_setglobal(L, "print");
	lua_pushcfunction(L, lh_xpcall);
	lua_setglobal(L, "xpcall");
	lua_getglobal(L, "setmetatable");
	lua_pushcclosure(L, lh_setmetatable, 1);
	lua_setglobal(L, "setmetatable");

	lua_newtable(L);
	lua_setfield(L, LUA_REGISTRYINDEX, LH_LIBS);

	luaL_newmetatable(L, LH_GUARD);
	lua_pushcfunction(L, lh_guard_close);
	lua_setfield(L, -2, "__close");
	lua_pushcfunction(L, lh_guard_close);
	lua_setfield(L, -2, "__gc");
	lua_pop(L, 1);

	luaL_newlib(L, lh_zdm_funcs);
	luaL_newlib(L, lh_file_funcs);
	lua_setfield(L, -2, "file");
	luaL_newlib(L, lh_json_funcs);
	lua_setfield(L, -2, "json");
	for (size_t i = 0; lhx_openers[i] != NULL; i++)
		lhx_openers[i](L);	/* zdm.socket, zdm.pg, zdm.ssh, ... */
	lua_setglobal(L, "zdm");
}

/* ---- loading: the plugin's table ----------------------------------------- */

static bool
lh_optbool(lua_State *L, struct plugin *p, int t, const char *name)
{
	int ty = lua_getfield(L, t, name);
	bool v = lua_toboolean(L, -1);

	if (ty != LUA_TNIL && ty != LUA_TBOOLEAN)
		luaL_error(L, "%s: '%s' must be a boolean, got %s", p->path, name,
		    luaL_typename(L, -1));
	lua_pop(L, 1);
	return v;
}

static int
lh_optfunc(lua_State *L, struct plugin *p, int t, const char *name, bool required)
{
	int ty = lua_getfield(L, t, name);

	if (ty == LUA_TNIL && !required) {
		lua_pop(L, 1);
		return LUA_NOREF;
	}
	if (ty != LUA_TFUNCTION)
		luaL_error(L, "%s: '%s' must be a function, got %s", p->path, name,
		    luaL_typename(L, -1));
	return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* a default that fits its type; NULL or why not.  May replace *j. */
static const char *
lh_default_fits(enum zdm_ptype type, json_t **j)
{
	int64_t ms;

	switch (type) {
	case ZDM_T_STRING:
		return json_is_string(*j) ? NULL : "a string";
	case ZDM_T_INT:
		return json_is_integer(*j) ? NULL : "a whole number";
	case ZDM_T_NUMBER:
		return json_is_number(*j) ? NULL : "a number";
	case ZDM_T_BOOL:
		return json_is_boolean(*j) ? NULL : "a boolean";
	case ZDM_T_DURATION:
		if (json_is_integer(*j) && json_integer_value(*j) >= 0)
			return NULL;
		if (json_is_string(*j) && parse_duration(json_string_value(*j), &ms) == 0)
			return NULL;
		return "a duration like \"30s\" (or whole ms)";
	case ZDM_T_LIST:
		if (json_is_object(*j) && json_object_size(*j) == 0) {
			json_decref(*j);	/* {} is also the empty list */
			*j = json_array();
		}
		return json_is_array(*j) ? NULL : "a list";
	case ZDM_T_MAP:
		return json_is_object(*j) ? NULL : "a map";
	case ZDM_T_ANY:
		break;
	}
	return NULL;
}

static void
lh_param(lua_State *L, struct plugin *p, int i, int e, struct zdm_param *prm)
{
	static const char *const fields[] = {
		"name", "type", "required", "default", "doc", NULL
	};
	const char *s, *why, *dym;
	char *jerr = NULL, ebuf[300];
	size_t k;
	json_t *j;

	if (!lua_istable(L, e))
		luaL_error(L, "%s: params[%d]: must be a table {name = ..., type = ...}, got %s",
		    p->path, i, luaL_typename(L, e));
	lua_pushnil(L);
	while (lua_next(L, e) != 0) {
		if (lua_type(L, -2) != LUA_TSTRING)
			luaL_error(L, "%s: params[%d]: field names must be strings",
			    p->path, i);
		s = lua_tostring(L, -2);
		for (k = 0; fields[k] != NULL; k++)
			if (strcmp(s, fields[k]) == 0)
				break;
		if (fields[k] == NULL) {
			dym = did_you_mean(s, fields);
			luaL_error(L, "%s: params[%d]: unknown field '%s'%s%s%s", p->path,
			    i, s, dym ? " (did you mean '" : "", dym ? dym : "",
			    dym ? "'?)" : "");
		}
		lua_pop(L, 1);
	}

	if (lua_getfield(L, e, "name") != LUA_TSTRING || lua_rawlen(L, -1) == 0)
		luaL_error(L, "%s: params[%d]: 'name' must be a non-empty string",
		    p->path, i);
	s = lua_tostring(L, -1);
	for (int m = 0; m < i - 1; m++)
		if (strcmp(p->params[m].name, s) == 0)
			luaL_error(L, "%s: params[%d]: duplicate name '%s'", p->path, i, s);
	prm->name = xstrdup(s);
	lua_pop(L, 1);

	if (lua_getfield(L, e, "type") != LUA_TSTRING)
		luaL_error(L, "%s: params[%d]: 'type' must be one of string, int, number, bool, duration, list, map, any",
		    p->path, i);
	s = lua_tostring(L, -1);
	for (k = 0; lh_type_names[k] != NULL; k++)
		if (strcmp(s, lh_type_names[k]) == 0)
			break;
	if (lh_type_names[k] == NULL) {
		dym = did_you_mean(s, lh_type_names);
		luaL_error(L, "%s: params[%d]: unknown type '%s'%s%s%s", p->path, i, s,
		    dym ? " (did you mean '" : "", dym ? dym : "", dym ? "'?)" : "");
	}
	prm->type = (enum zdm_ptype)k;
	lua_pop(L, 1);

	if (lua_getfield(L, e, "required") != LUA_TNIL && !lua_isboolean(L, -1))
		luaL_error(L, "%s: params[%d]: 'required' must be a boolean", p->path, i);
	prm->required = lua_toboolean(L, -1);
	lua_pop(L, 1);

	if (lua_getfield(L, e, "doc") != LUA_TNIL && lua_type(L, -1) != LUA_TSTRING)
		luaL_error(L, "%s: params[%d]: 'doc' must be a string", p->path, i);
	prm->doc = xstrdup(lua_isnil(L, -1) ? "" : lua_tostring(L, -1));
	lua_pop(L, 1);

	if (lua_getfield(L, e, "default") != LUA_TNIL) {
		if (prm->required)
			luaL_error(L, "%s: params[%d]: '%s' is required and has a default",
			    p->path, i, prm->name);
		/* no Lua calls while j is held */
		j = lj_to_json(L, -1, &jerr);
		if (j == NULL) {
			snprintf(ebuf, sizeof ebuf, "%s", jerr != NULL ? jerr : "?");
			free(jerr);
			luaL_error(L, "%s: params[%d]: default: %s", p->path, i, ebuf);
		}
		why = lh_default_fits(prm->type, &j);
		if (why == NULL)
			prm->def = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
		json_decref(j);
		if (why != NULL)
			luaL_error(L, "%s: params[%d]: default for '%s' must be %s",
			    p->path, i, prm->name, why);
	}
	lua_pop(L, 1);
}

static void
lh_params(lua_State *L, struct plugin *p, int t)
{
	lua_Integer n = (lua_Integer)lua_rawlen(L, t), count = 0;

	lua_pushnil(L);
	while (lua_next(L, t) != 0) {
		count++;
		if (!lua_isinteger(L, -2) || lua_tointeger(L, -2) < 1 ||
		    lua_tointeger(L, -2) > n)
			luaL_error(L, "%s: 'params' must be a list of {name = ..., type = ...}",
			    p->path);
		lua_pop(L, 1);
	}
	if (count != n)
		luaL_error(L, "%s: 'params' must be a list without holes", p->path);
	if (n > 1000)
		luaL_error(L, "%s: 'params' has more than 1000 entries", p->path);
	p->params = xcalloc((size_t)n + 1, sizeof *p->params);
	for (lua_Integer i = 1; i <= n; i++) {
		p->nparams = (size_t)i;	/* so a failure frees what is filled */
		lua_rawgeti(L, t, i);
		lh_param(L, p, (int)i, lua_gettop(L), &p->params[i - 1]);
		lua_pop(L, 1);
	}
}

/* protected: open the sandbox, run the file, read its table */
static int
lh_load_body(lua_State *L)
{
	struct plugin *p = lua_touserdata(L, 1);
	int t, ty;

	lh_sandbox(L);
	if (luaL_loadfilex(L, p->path, "t") != LUA_OK)
		return lua_error(L);
	lua_call(L, 0, 1);
	t = lua_gettop(L);
	if (!lua_istable(L, t))
		return luaL_error(L, "%s: must return a table (the step type), got %s",
		    p->path, luaL_typename(L, t));

	if (lua_getfield(L, t, "description") != LUA_TSTRING)
		return luaL_error(L, "%s: 'description' must be a string, got %s",
		    p->path, luaL_typename(L, -1));
	p->description = xstrdup(lua_tostring(L, -1));
	lua_pop(L, 1);
	p->read_only = lh_optbool(L, p, t, "read_only");
	p->idempotent = lh_optbool(L, p, t, "idempotent");
	p->ref_run = lh_optfunc(L, p, t, "run", true);
	p->ref_validate = lh_optfunc(L, p, t, "validate", false);
	p->ref_plan = lh_optfunc(L, p, t, "plan", false);
	p->ref_undo = lh_optfunc(L, p, t, "undo", false);
	p->ref_snapshot = lh_optfunc(L, p, t, "snapshot", false);

	ty = lua_getfield(L, t, "params");
	if (ty == LUA_TTABLE)
		lh_params(L, p, lua_gettop(L));
	else if (ty != LUA_TNIL)
		return luaL_error(L, "%s: 'params' must be a list, got %s", p->path,
		    luaL_typename(L, -1));
	return 0;
}

/* ---- calls --------------------------------------------------------------- */

static void
lh_push_params(lua_State *L, const json_t *params)
{
	if (params != NULL && !json_is_null(params))
		lj_push(L, params);
	else
		lua_newtable(L);
}

static void
lh_push_ctx(lua_State *L, const struct zdm_ctx *ctx)
{
	lua_createtable(L, 0, 6);
	if (ctx == NULL)
		return;
	lua_pushstring(L, ctx->run_id != NULL ? ctx->run_id : "");
	lua_setfield(L, -2, "run_id");
	lua_pushstring(L, ctx->step_id != NULL ? ctx->step_id : "");
	lua_setfield(L, -2, "step_id");
	lua_pushinteger(L, ctx->attempt);
	lua_setfield(L, -2, "attempt");
	lua_pushboolean(L, ctx->dry_run);
	lua_setfield(L, -2, "dry_run");
	lua_pushboolean(L, ctx->undoing);
	lua_setfield(L, -2, "undoing");
	lua_pushstring(L, ctx->state_dir != NULL ? ctx->state_dir : "");
	lua_setfield(L, -2, "state_dir");
	if (ctx->prior != NULL && !json_is_null(ctx->prior)) {
		lj_push(L, ctx->prior);
		lua_setfield(L, -2, "prior");
	}
	if (ctx->notes != NULL && json_array_size(ctx->notes) > 0) {
		lj_push(L, ctx->notes);
		lua_setfield(L, -2, "notes");
	}
}

/* one validate() answer: a message or {param=, message=}; false if neither */
static bool
lh_diag_one(lua_State *L, struct call *c, int idx)
{
	const char *param = NULL;

	if (lua_type(L, idx) == LUA_TSTRING) {
		zdm_diag(c->diag, NULL, "%s", lua_tostring(L, idx));
		return true;
	}
	if (!lua_istable(L, idx))
		return false;
	if (lua_getfield(L, idx, "message") != LUA_TSTRING) {
		lua_pop(L, 1);
		return false;
	}
	if (lua_getfield(L, idx, "param") == LUA_TSTRING)
		param = lua_tostring(L, -1);
	zdm_diag(c->diag, param, "%s", lua_tostring(L, -2));
	lua_pop(L, 2);
	return true;
}

static int
lh_validate_body(lua_State *L)
{
	struct call *c = lua_touserdata(L, 1);
	int r;

	lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
	lh_push_params(L, c->params);
	lua_call(L, 1, 1);
	r = lua_gettop(L);
	if (lua_isnil(L, r) || lh_diag_one(L, c, r))
		return 0;
	if (!lua_istable(L, r)) {
		zdm_diag(c->diag, NULL, "validate() returned a %s (expected nil, a message or a list of {param = ..., message = ...})",
		    luaL_typename(L, r));
		return 0;
	}
	for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, r); i++) {
		lua_rawgeti(L, r, i);
		if (!lh_diag_one(L, c, lua_gettop(L)))
			zdm_diag(c->diag, NULL, "validate() returned a list with a %s in it",
			    luaL_typename(L, -1));
		lua_pop(L, 1);
	}
	return 0;
}

static void
lh_validate(const struct zdm_step_type *t, const json_t *params,
    struct zdm_diag *d)
{
	struct plugin *p = t->impl;
	struct call c = {
		.p = p, .fn = "validate", .ref = p->ref_validate,
		.params = params, .diag = d,
	};
	char msg[1024], why[1024];

	if (lh_pcall(p, lh_validate_body, &c, zdm_now_ms() + LH_STATIC_MS, msg,
	    sizeof msg) != LUA_OK) {
		lh_why(p, "validate()", msg, LH_STATIC_MS, why, sizeof why);
		zdm_diag(d, NULL, "%s", why);
	}
}

static int
lh_plan_body(lua_State *L)
{
	struct call *c = lua_touserdata(L, 1);

	lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
	lh_push_params(L, c->params);
	lua_call(L, 1, 1);
	if (lua_type(L, -1) == LUA_TSTRING)
		c->plan = xstrdup(lua_tostring(L, -1));
	else if (!lua_isnil(L, -1))
		c->plan = xasprintf("(plan() returned a %s)", luaL_typename(L, -1));
	return 0;
}

static char *
lh_plan(const struct zdm_step_type *t, const json_t *params)
{
	struct plugin *p = t->impl;
	struct call c = {
		.p = p, .fn = "plan", .ref = p->ref_plan, .params = params,
	};
	char msg[1024], why[1024];

	if (p->ref_plan == LUA_NOREF)
		return NULL;
	if (lh_pcall(p, lh_plan_body, &c, zdm_now_ms() + LH_STATIC_MS, msg,
	    sizeof msg) != LUA_OK) {
		free(c.plan);
		lh_why(p, "plan()", msg, LH_STATIC_MS, why, sizeof why);
		return xasprintf("(plan() failed: %s)", why);
	}
	return c.plan;
}

/*
 * What run() or undo() returned, at r and r + 1: nil | {outputs=, undo_data=}
 * for success, or nil, message | false for failure.
 */
static void
lh_take_result(lua_State *L, struct call *c, int r)
{
	static const char *const fields[] = { "outputs", "undo_data", NULL };
	json_t *out = NULL, *undo = NULL;
	char *err = NULL;
	const char *dym;
	int oi, ui;

	if (lua_isnil(L, r) || (lua_isboolean(L, r) && !lua_toboolean(L, r))) {
		if (!lua_isnil(L, r + 1))
			zdm_fail(c->res, "%s", luaL_tolstring(L, r + 1, NULL));
		else if (lua_isboolean(L, r))
			zdm_fail(c->res, "%s() returned false", c->fn);
		else
			c->rc = 0;
		return;
	}
	if (!lua_istable(L, r)) {
		zdm_fail(c->res, "%s() returned a %s (expected nil or {outputs = ..., undo_data = ...})",
		    c->fn, luaL_typename(L, r));
		return;
	}
	lua_pushnil(L);
	while (lua_next(L, r) != 0) {
		const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;

		if (k == NULL || (strcmp(k, "outputs") != 0 && strcmp(k, "undo_data") != 0)) {
			dym = k != NULL ? did_you_mean(k, fields) : NULL;
			zdm_fail(c->res, "%s() returned an unknown field '%s'%s%s%s", c->fn,
			    k != NULL ? k : luaL_typename(L, -2),
			    dym ? " (did you mean '" : " (expected outputs, undo_data",
			    dym ? dym : "", dym ? "'?)" : ")");
			return;
		}
		lua_pop(L, 1);
	}
	lua_getfield(L, r, "outputs");
	oi = lua_gettop(L);
	lua_getfield(L, r, "undo_data");
	ui = lua_gettop(L);
	if (!lua_isnil(L, oi) && !lua_istable(L, oi)) {
		zdm_fail(c->res, "%s(): outputs must be a table, got %s", c->fn,
		    luaL_typename(L, oi));
		return;
	}

	/* no Lua calls from here on: C memory is held */
	if (lua_istable(L, oi)) {
		out = lj_to_json(L, oi, &err);
		if (out == NULL) {
			zdm_fail(c->res, "%s(): outputs: %s", c->fn, err);
			free(err);
			return;
		}
		if (!json_is_object(out)) {
			json_decref(out);
			zdm_fail(c->res, "%s(): outputs must be a table of name = value, got a list",
			    c->fn);
			return;
		}
	}
	if (!lua_isnil(L, ui)) {
		undo = lj_to_json(L, ui, &err);
		if (undo == NULL) {
			json_decref(out);
			zdm_fail(c->res, "%s(): undo_data: %s", c->fn, err);
			free(err);
			return;
		}
	}
	json_decref(c->res->outputs);
	json_decref(c->res->undo_data);
	c->res->outputs = out;
	c->res->undo_data = undo;
	c->rc = 0;
}

static int
lh_call_body(lua_State *L)
{
	struct call *c = lua_touserdata(L, 1);
	int fn, nargs = 2;

	lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
	fn = lua_gettop(L);
	lh_push_ctx(L, c->ctx);
	lh_push_params(L, c->params);
	if (c->with_undo_data) {
		if (c->undo_data != NULL)
			lj_push(L, c->undo_data);
		else
			lua_pushnil(L);
		nargs = 3;
	}
	lua_call(L, nargs, 2);
	if (c->raw_result) {
		char *err = NULL;
		json_t *v = NULL;

		if (lua_isnil(L, fn) && !lua_isnil(L, fn + 1)) {
			/* `return nil, "why"`: a failure, as in run() */
			zdm_fail(c->res, "%s", luaL_tolstring(L, fn + 1, NULL));
			return 0;
		}

		if (!lua_isnil(L, fn)) {
			v = lj_to_json(L, fn, &err);
			if (v == NULL) {
				zdm_fail(c->res, "%s(): %s", c->fn, err);
				free(err);
				return 0;
			}
		}
		json_decref(c->res->undo_data);
		c->res->undo_data = v;
		c->rc = 0;
		return 0;
	}
	lh_take_result(L, c, fn);
	return 0;
}

static int
lh_call(struct plugin *p, struct call *c)
{
	char msg[sizeof c->res->err], why[sizeof c->res->err], what[16];

	c->rc = -1;
	p->ctx = c->ctx;
	p->res = c->res;
	/* killed yet "returned": `return pcall(zdm.sleep, 1e9)` ends without
	 * another instruction for the hook to raise on */
	if (lh_pcall(p, lh_call_body, c, c->ctx != NULL ? c->ctx->deadline_ms : 0,
	    msg, sizeof msg) != LUA_OK || p->killed) {
		snprintf(what, sizeof what, "%s()", c->fn);
		lh_why(p, what, msg, 0, why, sizeof why);
		if (p->killed)
			c->res->err[0] = '\0';	/* the kill is the cause */
		zdm_fail(c->res, "%s", why);
		c->rc = -1;
	}
	if (c->rc != 0)
		zdm_fail(c->res, "%s() failed", c->fn);
	p->ctx = NULL;
	p->res = NULL;
	return c->rc;
}

static int
lh_run(const struct zdm_step_type *t, struct zdm_ctx *ctx,
    const json_t *params, struct zdm_result *res)
{
	struct plugin *p = t->impl;
	struct call c = {
		.p = p, .fn = "run", .ref = p->ref_run, .ctx = ctx,
		.params = params, .res = res,
	};

	return lh_call(p, &c);
}

static int
lh_snapshot(const struct zdm_step_type *t, struct zdm_ctx *ctx,
    const json_t *params, struct zdm_result *res)
{
	struct plugin *p = t->impl;
	struct call c = {
		.p = p, .fn = "snapshot", .ref = p->ref_snapshot, .ctx = ctx,
		.params = params, .res = res, .raw_result = true,
	};

	return lh_call(p, &c);
}

static int
lh_undo(const struct zdm_step_type *t, struct zdm_ctx *ctx,
    const json_t *params, const json_t *undo_data, struct zdm_result *res)
{
	struct plugin *p = t->impl;
	struct call c = {
		.p = p, .fn = "undo", .ref = p->ref_undo, .ctx = ctx,
		.params = params, .undo_data = undo_data, .with_undo_data = true,
		.res = res,
	};

	return lh_call(p, &c);
}

/* ---- life cycle ---------------------------------------------------------- */

static void
lh_free(struct plugin *p)
{
	if (p == NULL)
		return;
	if (p->L != NULL) {
		/* a plugin's __gc runs at close: keep it on a short leash */
		p->deadline_ms = zdm_now_ms() + 1000;
		p->killed = false;
		lua_sethook(p->L, lh_hook, LUA_MASKCOUNT, LH_HOOK_EVERY);
		lua_close(p->L);
	}
	for (size_t i = 0; i < p->nparams; i++) {
		free((char *)p->params[i].name);
		free((char *)p->params[i].def);
		free((char *)p->params[i].doc);
	}
	free(p->params);
	free(p->name);
	free(p->path);
	free(p->description);
	free(p);
}

static void
lh_free_impl(void *impl)
{
	lh_free(impl);
}

/* ZDM_PLUGIN_MEMORY_MB, or the default */
static int
lh_mem_limit(size_t *out, char **err)
{
	const char *s = getenv("ZDM_PLUGIN_MEMORY_MB");
	char *end;
	long long v;

	*out = (size_t)LH_MEMORY_MB << 20;
	if (s == NULL || s[0] == '\0')
		return 0;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < 1 || v > (1LL << 20))
		return seterr(err, "ZDM_PLUGIN_MEMORY_MB: invalid value '%s' (a number of MiB)", s);
	*out = (size_t)v << 20;
	return 0;
}

struct zdm_step_type *
luahost_load(const char *name, const char *path, char **err)
{
	return luahost_load_from(name, path, NULL, err);
}

struct zdm_step_type *
luahost_load_from(const char *name, const char *path,
    const char *const *search, char **err)
{
	struct plugin *p = xcalloc(1, sizeof *p);
	struct zdm_step_type *t;
	char msg[1024], why[1024];
	size_t plen = strlen(path);
	int rc;

	p->name = xstrdup(name);
	p->path = xstrdup(path);
	p->ref_run = p->ref_validate = p->ref_plan = p->ref_undo = p->ref_snapshot = LUA_NOREF;
	if (lh_mem_limit(&p->mem_limit, err) == -1)
		goto fail;
	p->L = lua_newstate(lh_alloc, p);
	if (p->L == NULL) {
		seterr(err, "%s: not enough memory for a Lua state", path);
		goto fail;
	}
	*(struct plugin **)lua_getextraspace(p->L) = p;
	lua_atpanic(p->L, lh_panic);
	p->search = search;
	p->loading = true;
	rc = lh_pcall(p, lh_load_body, p, zdm_now_ms() + LH_STATIC_MS, msg, sizeof msg);
	p->loading = false;
	p->search = NULL;
	if (rc != LUA_OK) {
		lh_why(p, "loading", msg, LH_STATIC_MS, why, sizeof why);
		/* Lua's own messages start "path:line:" unless it is a bare one */
		if (strncmp(why, path, plen) == 0 && why[plen] == ':')
			seterr(err, "%s", why);
		else
			seterr(err, "%s: %s", path, why);
		goto fail;
	}

	t = xcalloc(1, sizeof *t);
	t->name = p->name;
	t->description = p->description;
	t->params = p->params;
	t->nparams = p->nparams;
	t->read_only = p->read_only;
	t->idempotent = p->idempotent;
	t->validate = p->ref_validate != LUA_NOREF ? lh_validate : NULL;
	t->plan = lh_plan;
	t->run = lh_run;
	t->undo = p->ref_undo != LUA_NOREF ? lh_undo : NULL;
	t->snapshot = p->ref_snapshot != LUA_NOREF ? lh_snapshot : NULL;
	t->impl = p;
	t->free_impl = lh_free_impl;
	return t;
fail:
	lh_free(p);
	return NULL;
}

/* ---- for the host module's other parts (luahost_ext.h) ------------------- */

void
lhx_may_act(lua_State *L, const char *what)
{
	lh_may_act(L, what);
}

void
lhx_check(lua_State *L)
{
	lh_check(L, lh_plugin(L));
}

int64_t
lhx_deadline_ms(lua_State *L)
{
	return lh_plugin(L)->deadline_ms;
}

size_t
lhx_mem_limit(lua_State *L)
{
	return lh_plugin(L)->mem_limit;
}

struct zdm_ctx *
lhx_ctx(lua_State *L)
{
	return lh_plugin(L)->ctx;
}

void
lhx_log(lua_State *L, const char *msg)
{
	lh_log_str(lh_plugin(L), msg);
}
