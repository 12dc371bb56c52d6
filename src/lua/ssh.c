/*
 * ssh.c - zdm.ssh(hosts, cmd [, opts]) for plugins: the `ssh` built-in's
 * client (net/sshc.c) with the same host key policies, auth, timeouts and
 * redaction.  Hosts run concurrently (opts.max_parallel); batches and
 * failure budgets are the plugin's own to decide (docs/plugins.md).
 */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "base/redact.h"
#include "base/util.h"
#include "lua/lib.h"
#include "net/sshc.h"

#define LSSH_CAP 65536		/* default bytes kept of stdout and of stderr */
#define LSSH_MAX_HOSTS 1000

static const char *
opt_str(lua_State *L, int idx, const char *k)
{
	const char *s = NULL;

	if (lua_getfield(L, idx, k) != LUA_TNIL) {
		if (lua_type(L, -1) != LUA_TSTRING)
			luaL_error(L, "zdm.ssh: opts.%s must be a string", k);
		s = lua_tostring(L, -1);	/* stays alive: opts holds it */
	}
	lua_pop(L, 1);
	return s;
}

static int64_t
opt_int(lua_State *L, int idx, const char *k, int64_t def, int64_t min, int64_t max)
{
	int64_t v = def;

	if (lua_getfield(L, idx, k) != LUA_TNIL) {
		if (!lua_isinteger(L, -1))
			luaL_error(L, "zdm.ssh: opts.%s must be a whole number", k);
		v = lua_tointeger(L, -1);
		if (v < min || v > max) {
			char m[200];	/* lua_pushfstring knows no %lld */

			snprintf(m, sizeof m, "zdm.ssh: opts.%s must be from %lld to %lld", k,
			    (long long)min, (long long)max);
			luaL_error(L, "%s", m);
		}
	}
	lua_pop(L, 1);
	return v;
}

/*
 * Everything one call holds in C: a full userdata with a C __close and
 * __gc (lssh_gc), marked to-be-closed, so a Lua error anywhere in the call
 * (a bad argument, "not enough memory" while the results are pushed, the
 * step's deadline) frees it as the stack unwinds.  Host strings are
 * borrowed from the hosts argument, which stays on the stack.
 */
#define LSSH_MT "zdm.ssh.call"

struct lssh_call {
	const char *hosts[LSSH_MAX_HOSTS];
	size_t nhosts;
	json_t *argv, *env;
	char *kh, *command, *def_user, *err, *red;
	struct sshc_target *tg;
	size_t ntg;		/* targets parsed (to release) */
	struct sshc_job *jobs;
	size_t njobs;
	size_t cap;		/* opts.cap, bytes per stream per host */
};

static void
lssh_release(struct lssh_call *c)
{
	json_decref(c->argv);
	json_decref(c->env);
	c->argv = c->env = NULL;
	for (size_t k = 0; c->jobs != NULL && k < c->njobs; k++)
		sshc_job_release(&c->jobs[k]);
	free(c->jobs);
	c->jobs = NULL;
	c->njobs = 0;
	for (size_t k = 0; c->tg != NULL && k < c->ntg; k++)
		sshc_target_release(&c->tg[k]);
	free(c->tg);
	c->tg = NULL;
	c->ntg = 0;
	free(c->kh);
	free(c->command);
	free(c->def_user);
	free(c->err);
	free(c->red);
	c->kh = c->command = c->def_user = c->err = c->red = NULL;
}

static int
lssh_gc(lua_State *L)
{
	lssh_release(luaL_checkudata(L, 1, LSSH_MT));
	return 0;
}

/* set field k of the table on top to a redacted copy of s (the copy is
 * held in c->red while Lua may raise) */
static void
set_redacted(lua_State *L, struct lssh_call *c, const char *k, const char *s, size_t n,
    bool trunc)
{
	const char *b = s ? s : "";
	char *t;

	if (trunc) {		/* the head was cut: drop its partial line, so a
				 * secret cut in half is not shown half */
		size_t cut = sshc_tail_start(b, n);

		b += cut;
		n -= cut;
	}
	t = xstrndup(b, n);
	free(c->red);
	c->red = redact_str(t);
	free(t);
	lua_pushstring(L, c->red);
	lua_setfield(L, -2, k);
	free(c->red);
	c->red = NULL;
}

/* the results table, in host order (run under lua_pcall: it may raise
 * "not enough memory") */
static int
lssh_results(lua_State *L)
{
	struct lssh_call *c = lua_touserdata(L, 1);

	lua_createtable(L, (int)c->njobs, 0);
	for (size_t k = 0; k < c->njobs; k++) {
		struct sshc_job *j = &c->jobs[k];

		lua_createtable(L, 0, 10);
		lua_pushstring(L, c->tg[k].label);
		lua_setfield(L, -2, "host");
		if (j->exit_code >= 0) {
			lua_pushinteger(L, j->exit_code);
			lua_setfield(L, -2, "code");
		}
		if (j->exit_signal != NULL) {
			lua_pushstring(L, j->exit_signal);
			lua_setfield(L, -2, "signal");
		}
		set_redacted(L, c, "stdout", j->out, j->out_len, j->out_trunc);
		/* the C copy is not needed any more: give the memory back now */
		free(j->out);
		j->out = NULL;
		set_redacted(L, c, "stderr", j->err, j->err_len, j->err_trunc);
		free(j->err);
		j->err = NULL;
		if (j->out_trunc) {
			lua_pushboolean(L, 1);
			lua_setfield(L, -2, "stdout_truncated");
		}
		if (j->err_trunc) {
			lua_pushboolean(L, 1);
			lua_setfield(L, -2, "stderr_truncated");
		}
		if (j->error != NULL)
			set_redacted(L, c, "error", j->error, strlen(j->error), false);
		lua_pushinteger(L, j->duration_ms);
		lua_setfield(L, -2, "duration_ms");
		lua_pushboolean(L, j->timed_out);
		lua_setfield(L, -2, "timed_out");
		if (j->ran && j->exit_code < 0 && j->exit_signal == NULL) {
			/* started, no exit status: it may have run, or still run */
			lua_pushboolean(L, 1);
			lua_setfield(L, -2, "unknown");
		}
		lua_rawseti(L, -2, (lua_Integer)k + 1);
	}
	return 1;
}

static int
l_ssh(lua_State *L)
{
	static const char *const known[] = {
		"user", "port", "key_file", "passphrase", "known_hosts", "host_key_policy",
		"env", "connect_timeout", "timeout", "max_parallel", "cap", NULL
	};
	struct lssh_call *c;
	struct sshc_opts o;
	const char *user, *pol, *khs;
	int64_t port, ctmo, tmo, par, cap, dl;
	size_t n = 0, limit;
	int rc;
	char msg[512];		/* lua_pushfstring knows no %lld or %zu */

	lhx_may_act(L, "zdm.ssh");
	lhx_check(L);
	lua_settop(L, 3);
	if (lua_isnil(L, 3)) {
		lua_newtable(L);
		lua_replace(L, 3);
	}
	luaL_checktype(L, 3, LUA_TTABLE);
	lua_pushnil(L);
	while (lua_next(L, 3) != 0) {
		const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
		size_t i;

		for (i = 0; k != NULL && known[i] != NULL; i++)
			if (strcmp(k, known[i]) == 0)
				break;
		if (k == NULL || known[i] == NULL)
			return luaL_error(L, "zdm.ssh: unknown option '%s'", k ? k : luaL_typename(L, -2));
		lua_pop(L, 1);
	}
	c = lua_newuserdatauv(L, sizeof *c, 0);		/* stack slot 4 */
	memset(c, 0, sizeof *c);
	luaL_setmetatable(L, LSSH_MT);
	lua_toclose(L, 4);
	if (lua_type(L, 1) == LUA_TSTRING) {
		c->hosts[c->nhosts++] = lua_tostring(L, 1);
	} else if (lua_type(L, 1) == LUA_TTABLE) {
		lua_Integer len = (lua_Integer)lua_rawlen(L, 1);

		if (len == 0 || len > LSSH_MAX_HOSTS)
			return luaL_argerror(L, 1, "1 to 1000 hosts");
		for (lua_Integer i = 1; i <= len; i++) {
			if (lua_rawgeti(L, 1, i) != LUA_TSTRING)
				return luaL_error(L, "zdm.ssh: hosts[%d] must be a string", (int)i);
			c->hosts[c->nhosts++] = lua_tostring(L, -1);	/* the table holds it */
			lua_pop(L, 1);
		}
	} else {
		return luaL_typeerror(L, 1, "host string or list of hosts");
	}
	if (lua_type(L, 2) == LUA_TSTRING) {
		if (lua_rawlen(L, 2) == 0)
			return luaL_argerror(L, 2, "empty command");
	} else if (lua_type(L, 2) == LUA_TTABLE) {
		lua_Integer len = (lua_Integer)lua_rawlen(L, 2);

		if (len == 0)
			return luaL_argerror(L, 2, "empty argv");
		for (lua_Integer i = 1; i <= len; i++) {
			if (lua_rawgeti(L, 2, i) != LUA_TSTRING)
				return luaL_error(L, "zdm.ssh: argv[%d] must be a string", (int)i);
			lua_pop(L, 1);
		}
	} else {
		return luaL_typeerror(L, 2, "argv table or command string");
	}
	user = opt_str(L, 3, "user");
	pol = opt_str(L, 3, "host_key_policy");
	if (pol != NULL && strcmp(pol, "strict") != 0 && strcmp(pol, "accept-new") != 0)
		return luaL_error(L, "zdm.ssh: opts.host_key_policy must be strict or accept-new");
	port = opt_int(L, 3, "port", 22, 1, 65535);
	ctmo = opt_int(L, 3, "connect_timeout", 10000, 1, (int64_t)1e12);
	tmo = opt_int(L, 3, "timeout", 0, 0, (int64_t)1e12);
	par = opt_int(L, 3, "max_parallel", 32, 1, 256);
	cap = opt_int(L, 3, "cap", LSSH_CAP, 1, 64 << 20);
	c->cap = (size_t)cap;
	/* every host may send cap bytes on each of its two streams, and the
	 * results live in the plugin's Lua memory: refuse what cannot fit */
	limit = lhx_mem_limit(L);
	if ((uint64_t)cap * c->nhosts * 2 > (uint64_t)limit) {
		snprintf(msg, sizeof msg, "zdm.ssh: opts.cap %lld bytes x %d host%s x 2 streams (stdout, "
		    "stderr) is %llu bytes, more than the plugin's memory (%zu MiB, "
		    "ZDM_PLUGIN_MEMORY_MB); lower opts.cap to %llu or less, or call with fewer hosts",
		    (long long)cap, (int)c->nhosts, c->nhosts == 1 ? "" : "s",
		    (unsigned long long)cap * c->nhosts * 2, limit >> 20,
		    (unsigned long long)(limit / (c->nhosts * 2)));
		return luaL_error(L, "%s", msg);
	}
	memset(&o, 0, sizeof o);
	o.key_file = opt_str(L, 3, "key_file");
	o.passphrase = opt_str(L, 3, "passphrase");
	o.policy = pol && strcmp(pol, "accept-new") == 0 ? SSHC_ACCEPT_NEW : SSHC_STRICT;
	o.connect_timeout_ms = ctmo;
	khs = opt_str(L, 3, "known_hosts");
	c->kh = sshc_expand_home(khs ? khs : "~/.ssh/known_hosts");
	o.known_hosts = c->kh;
	if (lua_type(L, 2) == LUA_TTABLE) {
		c->argv = json_array();
		for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, 2); i++) {
			size_t len;
			const char *s;

			lua_rawgeti(L, 2, i);
			s = lua_tolstring(L, -1, &len);
			json_array_append_new(c->argv, json_stringn(s, len));
			lua_pop(L, 1);
		}
	}
	if (lua_getfield(L, 3, "env") != LUA_TNIL) {
		luaL_checktype(L, -1, LUA_TTABLE);
		c->env = json_object();
		lua_pushnil(L);
		while (lua_next(L, -2) != 0) {
			if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
				return luaL_error(L, "zdm.ssh: opts.env must map names to strings");
			json_object_set_new(c->env, lua_tostring(L, -2), json_string(lua_tostring(L, -1)));
			lua_pop(L, 1);
		}
	}
	lua_pop(L, 1);
	c->command = sshc_build_command(c->argv, lua_type(L, 2) == LUA_TSTRING ?
	    lua_tostring(L, 2) : NULL, c->env);

	c->def_user = user ? xstrdup(user) : sshc_default_user();
	c->tg = xcalloc(c->nhosts, sizeof *c->tg);
	for (n = 0; n < c->nhosts; n++) {
		if (sshc_parse_target(c->hosts[n], c->def_user, (int)port, &c->tg[n], &c->err) != 0) {
			c->red = redact_str(c->err);	/* both freed by __close */
			return luaL_error(L, "zdm.ssh: %s", c->red);
		}
		c->ntg = n + 1;
	}
	dl = lhx_deadline_ms(L);
	c->jobs = xcalloc(n, sizeof *c->jobs);
	c->njobs = n;
	for (size_t k = 0; k < n; k++) {
		c->jobs[k].t = &c->tg[k];
		c->jobs[k].command = c->command;
		c->jobs[k].deadline_ms = dl;
		c->jobs[k].timeout_ms = tmo;
		c->jobs[k].cap = (size_t)cap;
	}
	sshc_run_all(&o, c->jobs, n, (int)par, NULL, NULL);
	lhx_check(L);		/* the step's deadline passed or a signal came */

	/* results, text redacted; a memory error while building them is
	 * caught and said plainly (the userdata frees the C side either way) */
	lua_pushcfunction(L, lssh_results);
	lua_pushlightuserdata(L, c);
	rc = lua_pcall(L, 1, 1, 0);
	if (rc == LUA_ERRMEM) {
		lua_pop(L, 1);
		lssh_release(c);
		snprintf(msg, sizeof msg, "zdm.ssh: the hosts' output does not fit in the plugin's memory "
		    "(%zu MiB, ZDM_PLUGIN_MEMORY_MB) beside what the plugin already holds; lower "
		    "opts.cap (%lld bytes kept of each stream per host)", limit >> 20, (long long)cap);
		return luaL_error(L, "%s", msg);
	}
	if (rc != LUA_OK)
		return lua_error(L);
	return 1;	/* the results; slot 4 is closed as the call returns */
}

int
luaopen_zdm_ssh(lua_State *L)
{
	lhx_resource_lib(L, LSSH_MT, lssh_gc, "ssh", l_ssh);
	return 0;
}
