/*
 * lua_ssh.c - zdm.ssh(hosts, cmd [, opts]) for plugins: the `ssh` built-in's
 * client (src/sshc.c) with the same host key policies, auth, timeouts and
 * redaction.  Hosts run concurrently (opts.max_parallel); batches and
 * failure budgets are the plugin's own to decide (docs/plugins.md).
 */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "luahost_ext.h"
#include "sshc.h"
#include "zdm.h"

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
		if (v < min || v > max)
			luaL_error(L, "zdm.ssh: opts.%s must be from %lld to %lld", k,
			    (long long)min, (long long)max);
	}
	lua_pop(L, 1);
	return v;
}

/* the pieces, checked before anything is allocated in C, so an argument
 * error (a longjmp) leaks nothing */
struct lssh_req {
	const char *hosts[LSSH_MAX_HOSTS];
	size_t nhosts;
	json_t *argv, *env;	/* owned once built */
	const char *shell;
};

static int
l_ssh(lua_State *L)
{
	static const char *const known[] = {
		"user", "port", "key_file", "passphrase", "known_hosts", "host_key_policy",
		"env", "connect_timeout", "timeout", "max_parallel", "cap", NULL
	};
	struct lssh_req *rq;
	struct sshc_opts o;
	struct sshc_target *tg;
	struct sshc_job *jobs;
	const char *user, *pol;
	char *kh, *command, *err = NULL, *def_user, ebuf[1024];
	int64_t port, ctmo, tmo, par, cap, dl;
	size_t n = 0;

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
	rq = lua_newuserdatauv(L, sizeof *rq, 0);	/* freed by Lua; no C pointers owned yet */
	memset(rq, 0, sizeof *rq);
	if (lua_type(L, 1) == LUA_TSTRING) {
		rq->hosts[rq->nhosts++] = lua_tostring(L, 1);
	} else if (lua_type(L, 1) == LUA_TTABLE) {
		lua_Integer len = (lua_Integer)lua_rawlen(L, 1);

		if (len == 0 || len > LSSH_MAX_HOSTS)
			return luaL_argerror(L, 1, "1 to 1000 hosts");
		for (lua_Integer i = 1; i <= len; i++) {
			if (lua_rawgeti(L, 1, i) != LUA_TSTRING)
				return luaL_error(L, "zdm.ssh: hosts[%d] must be a string", (int)i);
			rq->hosts[rq->nhosts++] = lua_tostring(L, -1);
			lua_pop(L, 1);
		}
	} else {
		return luaL_typeerror(L, 1, "host string or list of hosts");
	}
	if (lua_type(L, 2) == LUA_TSTRING) {
		rq->shell = lua_tostring(L, 2);
		if (*rq->shell == '\0')
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
	memset(&o, 0, sizeof o);
	o.key_file = opt_str(L, 3, "key_file");
	o.passphrase = opt_str(L, 3, "passphrase");
	o.policy = pol && strcmp(pol, "accept-new") == 0 ? SSHC_ACCEPT_NEW : SSHC_STRICT;
	o.connect_timeout_ms = ctmo;
	if (lua_getfield(L, 3, "env") != LUA_TNIL) {
		luaL_checktype(L, -1, LUA_TTABLE);
		lua_pushnil(L);
		while (lua_next(L, -2) != 0) {
			if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
				return luaL_error(L, "zdm.ssh: opts.env must map names to strings");
			lua_pop(L, 1);
		}
	}
	lua_pop(L, 1);
	{
		const char *khs = opt_str(L, 3, "known_hosts");

		kh = NULL;
		/* nothing below raises until everything C-side is freed */
		kh = sshc_expand_home(khs ? khs : "~/.ssh/known_hosts");
	}
	o.known_hosts = kh;

	/* C-side from here on: no Lua errors until freed */
	if (lua_type(L, 2) == LUA_TTABLE) {
		rq->argv = json_array();
		for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, 2); i++) {
			size_t len;
			const char *s;

			lua_rawgeti(L, 2, i);
			s = lua_tolstring(L, -1, &len);
			json_array_append_new(rq->argv, json_stringn(s, len));
			lua_pop(L, 1);
		}
	}
	if (lua_getfield(L, 3, "env") == LUA_TTABLE) {
		rq->env = json_object();
		lua_pushnil(L);
		while (lua_next(L, -2) != 0) {
			json_object_set_new(rq->env, lua_tostring(L, -2), json_string(lua_tostring(L, -1)));
			lua_pop(L, 1);
		}
	}
	lua_pop(L, 1);
	command = sshc_build_command(rq->argv, rq->shell, rq->env);
	json_decref(rq->argv);
	json_decref(rq->env);
	rq->argv = rq->env = NULL;

	def_user = user ? xstrdup(user) : sshc_default_user();
	tg = xcalloc(rq->nhosts, sizeof *tg);
	for (n = 0; n < rq->nhosts; n++)
		if (sshc_parse_target(rq->hosts[n], def_user, (int)port, &tg[n], &err) != 0)
			break;
	free(def_user);
	if (n < rq->nhosts) {
		snprintf(ebuf, sizeof ebuf, "zdm.ssh: %s", err);
		free(err);
		for (size_t k = 0; k < n; k++)
			sshc_target_release(&tg[k]);
		free(tg);
		free(command);
		free(kh);
		return luaL_error(L, "%s", ebuf);
	}
	dl = lhx_deadline_ms(L);
	jobs = xcalloc(n, sizeof *jobs);
	for (size_t k = 0; k < n; k++) {
		jobs[k].t = &tg[k];
		jobs[k].command = command;
		jobs[k].deadline_ms = dl;
		jobs[k].timeout_ms = tmo;
		jobs[k].cap = (size_t)cap;
	}
	sshc_run_all(&o, jobs, n, (int)par, NULL, NULL);

	/* results, in host order; text redacted */
	lua_createtable(L, (int)n, 0);
	for (size_t k = 0; k < n; k++) {
		struct sshc_job *j = &jobs[k];
		char *r;

		lua_createtable(L, 0, 8);
		lua_pushstring(L, tg[k].label);
		lua_setfield(L, -2, "host");
		if (j->exit_code >= 0) {
			lua_pushinteger(L, j->exit_code);
			lua_setfield(L, -2, "code");
		}
		if (j->exit_signal != NULL) {
			lua_pushstring(L, j->exit_signal);
			lua_setfield(L, -2, "signal");
		}
		r = redact_str(j->out ? j->out : "");
		lua_pushstring(L, r);
		lua_setfield(L, -2, "stdout");
		free(r);
		r = redact_str(j->err ? j->err : "");
		lua_pushstring(L, r);
		lua_setfield(L, -2, "stderr");
		free(r);
		if (j->error != NULL) {
			r = redact_str(j->error);
			lua_pushstring(L, r);
			lua_setfield(L, -2, "error");
			free(r);
		}
		lua_pushinteger(L, j->duration_ms);
		lua_setfield(L, -2, "duration_ms");
		lua_pushboolean(L, j->timed_out);
		lua_setfield(L, -2, "timed_out");
		lua_rawseti(L, -2, (lua_Integer)k + 1);
	}
	for (size_t k = 0; k < n; k++) {
		sshc_job_release(&jobs[k]);
		sshc_target_release(&tg[k]);
	}
	free(jobs);
	free(tg);
	free(command);
	free(kh);
	lhx_check(L);		/* the step's deadline passed or a signal came */
	return 1;
}

int
lua_ssh_open(lua_State *L)
{
	lua_pushcfunction(L, l_ssh);
	lua_setfield(L, -2, "ssh");
	return 0;
}
