/*
 * host.c - Lua plugins as step types: the sandbox host.
 *
 * A plugin is a text file that returns a table with the step-type contract
 * (zdm/step.h; docs/plugins.md, "The table").  luahost_load() gives each
 * plugin its own lua_State and wraps it in a `struct zdm_step_type` whose
 * callbacks call the plugin's functions, so the runner cannot tell a plugin
 * from a built-in.  The values that cross the contract are converted by
 * contract.c; what the plugin's code can reach (Lua's safe libraries, a few
 * replaced base functions, the zdm libraries of lib.h) is set up by
 * sandbox.c.  The limits are kept here:
 *   - text only: the plugin file is loaded in text mode, as sandbox.c's
 *     `load` and zdm.lib load theirs (crafted bytecode can crash the VM);
 *   - no Lua code that runs with hooks off: Lua runs __gc finalizers, and
 *     the message handler of an error raised by the hook, with hooks
 *     disabled, so sandbox.c's setmetatable refuses __gc and its xpcall
 *     runs the handler after the unwind;
 *   - memory: a lua_Alloc that refuses to grow past ZDM_PLUGIN_MEMORY_MB
 *     (default 64), so a runaway plugin gets "not enough memory";
 *   - time: a count hook checks the deadline and zdm_interrupted every
 *     LH_HOOK_EVERY instructions; once it fires it fires on every
 *     instruction, so a pcall in the plugin cannot swallow the kill (redis).
 *     Count hooks do not run inside C functions: the zdm.* functions that
 *     wait (exec, sleep, ...) carry the deadline themselves (lib.h).
 *
 * Every entry into Lua goes through lh_pcall(), which runs a C "body" in
 * protected mode, so a Lua error (or a memory error while pushing params)
 * can never reach the panic handler.  C memory held while Lua may raise is
 * kept in a "guard" userdata marked to-be-closed (lhx_guard), which frees
 * it whether the function returns or unwinds.
 *
 * The plugin behind a lua_State is found through LUA_EXTRASPACE: the hook
 * and the message handler have no upvalues, and one mechanism is simpler
 * than two.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>

#include "base/proc.h"
#include "base/redact.h"
#include "base/util.h"
#include "lua/contract.h"
#include "lua/host.h"
#include "lua/lib.h"
#include "lua/luajson.h"
#include "lua/sandbox.h"
#include "zdm/step.h"

#define LH_MEMORY_MB	64		/* per plugin; ZDM_PLUGIN_MEMORY_MB */
#define LH_HOOK_EVERY	1000		/* instructions between deadline checks */
#define LH_STATIC_MS	10000		/* load, validate, plan: should be instant */
#define LH_GUARD	"zdm.guard"	/* registry name of the guard metatable */

struct plugin {
	lua_State *L;
	char *name, *path, *description;
	struct zdm_param *params;
	size_t nparams;
	struct zdm_rename *renamed;	/* `renamed = {old = "new"}` */
	size_t nrenamed;
	bool read_only, idempotent;
	int ref_run, ref_validate, ref_plan, ref_undo, ref_snapshot, ref_check,
	    ref_can_undo;	/* registry refs */
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
	bool check_result;		/* check(): nil or true (and a line), or nil, why */
	json_t *planned;		/* plan(): the planned state, updated; or NULL */
	struct zdm_result *res;
	struct zdm_diag *diag;
	char *plan;
	bool yes;			/* can_undo() */
	int rc;
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
lh_guard_release(struct lhx_guard *g)
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
	struct lhx_guard *g = lua_touserdata(L, 1);

	if (g != NULL)
		lh_guard_release(g);
	return 0;
}

static void
lh_guard_init(lua_State *L)
{
	luaL_newmetatable(L, LH_GUARD);
	lua_pushcfunction(L, lh_guard_close);
	lua_setfield(L, -2, "__close");
	lua_pushcfunction(L, lh_guard_close);
	lua_setfield(L, -2, "__gc");
	lua_pop(L, 1);
}

/* push a guard, to-be-closed: it releases what it holds when the running
 * C function returns or unwinds */
struct lhx_guard *
lhx_guard(lua_State *L)
{
	struct lhx_guard *g = lua_newuserdatauv(L, sizeof *g, 0);

	memset(g, 0, sizeof *g);
	g->fd = -1;
	luaL_setmetatable(L, LH_GUARD);
	lua_toclose(L, -1);
	return g;
}

/* ---- logging ------------------------------------------------------------- */

static void
lh_log_str(struct plugin *p, const char *s)
{
	const char *who = p->ctx != NULL && p->ctx->step_id != NULL ?
	    p->ctx->step_id : p->name;
	char *r = redact_str(s), *line = r;

	for (;;) {
		char *nl = strchr(line, '\n');
		int len = nl != NULL ? (int)(nl - line) : (int)strlen(line);

		/* through the runner when a step runs (the terminal keeps it
		 * off its live line), else straight to stderr */
		if (p->ctx != NULL && p->ctx->output != NULL) {
			char *one = xstrndup(line, (size_t)len);

			p->ctx->output(p->ctx, "log", one);
			free(one);
		} else {
			fprintf(stderr, "  | %s: %.*s\n", who, len, line);
		}
		if (nl == NULL || nl[1] == '\0')
			break;
		line = nl + 1;
	}
	free(r);
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

/* protected: open the sandbox, run the file, read its table */
/* the plugin table's `renamed` at r: earlier names of its params, each
 * `old = "new"` with new one of the params and old none of them */
static void
lh_renamed(lua_State *L, struct plugin *p, int r)
{
	lua_pushnil(L);
	while (lua_next(L, r) != 0) {
		const char *was, *name;
		bool is_param = false, was_param = false;

		if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
			luaL_error(L, "%s: 'renamed' must map old names to new ones: {old_name = \"new_name\"}",
			    p->path);
		was = lua_tostring(L, -2);
		name = lua_tostring(L, -1);
		for (size_t i = 0; i < p->nparams; i++) {
			is_param = is_param || strcmp(p->params[i].name, name) == 0;
			was_param = was_param || strcmp(p->params[i].name, was) == 0;
		}
		if (!is_param)
			luaL_error(L, "%s: renamed: '%s' = '%s': '%s' is not one of the params", p->path,
			    was, name, name);
		if (was_param)
			luaL_error(L, "%s: renamed: '%s' is still one of the params", p->path, was);
		p->renamed = xrealloc(p->renamed, (p->nrenamed + 1) * sizeof *p->renamed);
		p->renamed[p->nrenamed].was = xstrdup(was);
		p->renamed[p->nrenamed].name = xstrdup(name);
		p->nrenamed++;
		lua_pop(L, 1);
	}
}

static int
lh_load_body(lua_State *L)
{
	struct plugin *p = lua_touserdata(L, 1);
	int t, ty;

	lh_guard_init(L);
	sandbox_open(L);
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
	p->ref_check = lh_optfunc(L, p, t, "check", false);
	p->ref_can_undo = lh_optfunc(L, p, t, "can_undo", false);
	if (p->ref_can_undo != LUA_NOREF && p->ref_undo == LUA_NOREF)
		return luaL_error(L, "%s: 'can_undo' without 'undo': there is no undo to ask about",
		    p->path);

	ty = lua_getfield(L, t, "params");
	if (ty == LUA_TTABLE)
		contract_params(L, p->path, lua_gettop(L), &p->params, &p->nparams);
	else if (ty != LUA_TNIL)
		return luaL_error(L, "%s: 'params' must be a list, got %s", p->path,
		    luaL_typename(L, -1));
	lua_pop(L, 1);
	ty = lua_getfield(L, t, "renamed");
	if (ty == LUA_TTABLE)
		lh_renamed(L, p, lua_gettop(L));
	else if (ty != LUA_TNIL)
		return luaL_error(L, "%s: 'renamed' must be a table {old_name = \"new_name\"}, got %s",
		    p->path, luaL_typename(L, -1));
	return 0;
}

/* ---- calls --------------------------------------------------------------- */

static int
lh_validate_body(lua_State *L)
{
	struct call *c = lua_touserdata(L, 1);

	lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
	contract_push_params(L, c->params);
	lua_call(L, 1, 1);
	contract_diags(L, lua_gettop(L), c->diag);
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

	int st;

	/* the planned state at 2: plan(params, planned) may change it */
	if (c->planned != NULL)
		lj_push(L, c->planned);
	else
		lua_newtable(L);
	st = lua_gettop(L);
	lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
	contract_push_params(L, c->params);
	lua_pushvalue(L, st);
	lua_call(L, 2, 1);
	if (c->planned != NULL) {
		char *err = NULL;
		json_t *now = lua_istable(L, st) ? lj_to_json(L, st, &err) : NULL;

		/* no Lua calls while now is held */
		if (json_is_object(now))
			json_object_update(c->planned, now);
		json_decref(now);
		free(err);
	}
	if (lua_type(L, -1) == LUA_TSTRING)
		c->plan = xstrdup(lua_tostring(L, -1));
	else if (!lua_isnil(L, -1))
		c->plan = xasprintf("(plan() returned a %s)", luaL_typename(L, -1));
	return 0;
}

static char *
lh_plan_from(const struct zdm_step_type *t, const json_t *params, json_t *planned)
{
	struct plugin *p = t->impl;
	struct call c = {
		.p = p, .fn = "plan", .ref = p->ref_plan, .params = params,
		.planned = planned,
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

static char *
lh_plan(const struct zdm_step_type *t, const json_t *params)
{
	return lh_plan_from(t, params, NULL);
}

static int
lh_can_undo_body(lua_State *L)
{
	struct call *c = lua_touserdata(L, 1);

	lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
	contract_push_params(L, c->params);
	lua_call(L, 1, 1);
	if (!lua_isboolean(L, -1))
		return luaL_error(L, "can_undo() must return true or false, got %s",
		    luaL_typename(L, -1));
	c->yes = lua_toboolean(L, -1);
	return 0;
}

/* can_undo(params): a plugin that fails to say is taken at its word that
 * it has an undo (validate() reports what is wrong with the params) */
static bool
lh_can_undo(const struct zdm_step_type *t, const json_t *params)
{
	struct plugin *p = t->impl;
	struct call c = {
		.p = p, .fn = "can_undo", .ref = p->ref_can_undo, .params = params, .yes = true,
	};
	char msg[1024];

	if (lh_pcall(p, lh_can_undo_body, &c, zdm_now_ms() + LH_STATIC_MS, msg,
	    sizeof msg) != LUA_OK)
		return true;
	return c.yes;
}

static int
lh_call_body(lua_State *L)
{
	struct call *c = lua_touserdata(L, 1);
	int fn, nargs = 2;

	lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
	fn = lua_gettop(L);
	contract_push_ctx(L, c->ctx);
	contract_push_params(L, c->params);
	if (c->with_undo_data) {
		if (c->undo_data != NULL)
			lj_push(L, c->undo_data);
		else
			lua_pushnil(L);
		nargs = 3;
	}
	lua_call(L, nargs, 2);
	if (c->check_result) {
		/* nil or true: verified (a string: what was); nil, why | false: not */
		if ((lua_isnil(L, fn) && !lua_isnil(L, fn + 1)) ||
		    (lua_isboolean(L, fn) && !lua_toboolean(L, fn))) {
			if (!lua_isnil(L, fn + 1))
				zdm_fail(c->res, "%s", luaL_tolstring(L, fn + 1, NULL));
			else
				zdm_fail(c->res, "check() returned false");
			c->rc = -1;
		} else if (lua_isnil(L, fn) || lua_isboolean(L, fn) || lua_type(L, fn) == LUA_TSTRING) {
			if (lua_type(L, fn) == LUA_TSTRING) {
				json_t *o = json_pack("{s:s}", "checked", lua_tostring(L, fn));

				json_decref(c->res->outputs);
				c->res->outputs = o;
			}
			c->rc = 0;
		} else {
			zdm_fail(c->res, "check() returned a %s (expected nil, true, a line saying "
			    "what was verified, or nil and why it failed)", luaL_typename(L, fn));
			c->rc = -1;
		}
		return 0;
	}
	if (c->raw_result)
		c->rc = contract_undo_data(L, fn, c->fn, c->res);
	else
		c->rc = contract_result(L, fn, c->fn, c->res);
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

static int
lh_check_fn(const struct zdm_step_type *t, struct zdm_ctx *ctx,
    const json_t *params, struct zdm_result *res)
{
	struct plugin *p = t->impl;
	struct call c = {
		.p = p, .fn = "check", .ref = p->ref_check, .ctx = ctx,
		.params = params, .res = res, .check_result = true,
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
	for (size_t i = 0; i < p->nrenamed; i++) {
		free((char *)p->renamed[i].was);
		free((char *)p->renamed[i].name);
	}
	free(p->renamed);
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
	p->ref_check = LUA_NOREF;
	p->ref_can_undo = LUA_NOREF;
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
	t->renamed = p->renamed;
	t->nrenamed = p->nrenamed;
	t->read_only = p->read_only;
	t->idempotent = p->idempotent;
	t->validate = p->ref_validate != LUA_NOREF ? lh_validate : NULL;
	t->plan = lh_plan;
	t->plan_from = lh_plan_from;
	t->check = p->ref_check != LUA_NOREF ? lh_check_fn : NULL;
	t->run = lh_run;
	t->undo = p->ref_undo != LUA_NOREF ? lh_undo : NULL;
	t->snapshot = p->ref_snapshot != LUA_NOREF ? lh_snapshot : NULL;
	t->can_undo = p->ref_can_undo != LUA_NOREF ? lh_can_undo : NULL;
	t->impl = p;
	t->free_impl = lh_free_impl;
	return t;
fail:
	lh_free(p);
	return NULL;
}

/* ---- for the zdm libraries (lua/lib.h) ----------------------------------- */

/*
 * validate() and plan() (and loading) must change nothing: `zdm validate`
 * and `zdm plan` have no side effects.  Only run(), undo() and snapshot()
 * (which may read through a command) have a step context.
 */
void
lhx_may_act(lua_State *L, const char *what)
{
	struct plugin *p = lh_plugin(L);

	if (p->ctx == NULL)
		luaL_error(L, "%s is not allowed here: validate() and plan() must change nothing "
		    "(do it in run() or undo())", what);
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

bool
lhx_loading(lua_State *L)
{
	return lh_plugin(L)->loading;
}

const char *const *
lhx_search_path(lua_State *L)
{
	return lh_plugin(L)->search;
}

bool
lhx_killed(lua_State *L)
{
	return lh_plugin(L)->killed;
}
