/*
 * expr.c - `${{ ... }}` expressions in a Lua sandbox (see expr.h).
 *
 * The sandbox: one lua_State per run, only the base functions that cannot
 * reach the outside (tostring, tonumber, type, pairs, ipairs, select, next)
 * and the string, table and math libraries, a memory cap through lua_Alloc
 * and an instruction-count hook so `while true do end` cannot hang a run.
 * Chunks are loaded in text mode only.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "base/util.h"
#include "core/expr.h"
#include "lua/luajson.h"

#define EXPR_MEM_LIMIT (64u << 20)	/* bytes */
#define EXPR_MAX_INSNS 10000000		/* instructions per expression */

struct expr {
	lua_State *L;
	size_t mem;
	int env_ref;			/* the _ENV table of every expression */
	char **step_ids;
	size_t nsteps;
	bool static_mode;
	unsigned long deferred;	/* evaluations that met something not known yet */
	long insns;
};

static char deferred_key;	/* error value: "not known before the run" */

static void *
expr_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct expr *x = ud;

	if (ptr == NULL)
		osize = 0;
	if (nsize == 0) {
		free(ptr);
		x->mem -= osize;
		return NULL;
	}
	if (nsize > osize && x->mem + (nsize - osize) > EXPR_MEM_LIMIT)
		return NULL;
	ptr = realloc(ptr, nsize);
	if (ptr != NULL)
		x->mem = x->mem - osize + nsize;
	return ptr;
}

static void
count_hook(lua_State *L, lua_Debug *ar)
{
	(void)ar;
	luaL_error(L, "expression ran for too long (over %d instructions)", EXPR_MAX_INSNS);
}

static int
l_missing_var(lua_State *L)
{
	return luaL_error(L, "unknown var '%s'", luaL_optstring(L, 2, "?"));
}

static int
l_missing_step(lua_State *L)
{
	return luaL_error(L, "unknown step '%s'", luaL_optstring(L, 2, "?"));
}

static int
l_missing_secret(lua_State *L)
{
	return luaL_error(L, "unknown secret '%s'", luaL_optstring(L, 2, "?"));
}

static int
l_missing_input(lua_State *L)
{
	return luaL_error(L, "unknown input '%s' (the include's with: does not give it)",
	    luaL_optstring(L, 2, "?"));
}

static int
l_deferred(lua_State *L)
{
	lua_pushlightuserdata(L, &deferred_key);
	return lua_error(L);
}

/* __index of _ENV: a name that is not there is a typo, not nil */
static int
l_missing_global(lua_State *L)
{
	static const char *const names[] = {
		"vars", "secrets", "env", "steps", "run", "tostring", "tonumber", "type",
		"pairs", "ipairs", "select", "next", "error", "assert", "string", "table",
		"math", NULL,
	};
	const char *k = luaL_optstring(L, 2, "?");
	const char *s = did_you_mean(k, names);

	if (strcmp(k, "each") == 0)
		return luaL_error(L, "'each' is known only in a step under for_each: (the item of "
		    "that step's copy)");
	if (strcmp(k, "inputs") == 0)
		return luaL_error(L, "'inputs' is known only in the steps of an included file "
		    "(the include's with:)");
	if (s != NULL)
		return luaL_error(L, "unknown name '%s' (did you mean '%s'?)", k, s);
	return luaL_error(L, "unknown name '%s' (expressions see vars, secrets, env, steps, run)", k);
}

static int
l_env_index(lua_State *L)
{
	const char *v = getenv(luaL_checkstring(L, 2));

	if (v == NULL)
		lua_pushnil(L);
	else
		lua_pushstring(L, v);
	return 1;
}

/* push a table with a metatable whose __index is fn */
static void
push_guarded(lua_State *L, lua_CFunction fn)
{
	lua_newtable(L);
	lua_newtable(L);
	lua_pushcfunction(L, fn);
	lua_setfield(L, -2, "__index");
	lua_setmetatable(L, -2);
}

static void
set_env_field(struct expr *x, const char *name)
{
	/* value on top of the stack */
	lua_rawgeti(x->L, LUA_REGISTRYINDEX, x->env_ref);
	lua_insert(x->L, -2);
	lua_setfield(x->L, -2, name);
	lua_pop(x->L, 1);
}

static int
expr_panic(lua_State *L)
{
	fprintf(stderr, "zdm: expression sandbox: %s\n",
	    lua_tostring(L, -1) ? lua_tostring(L, -1) : "unprotected error");
	abort();
}

struct expr *
expr_new(void)
{
	struct expr *x = xcalloc(1, sizeof *x);
	static const char *const basefns[] = {
		"tostring", "tonumber", "type", "pairs", "ipairs", "select", "next",
		"error", "assert", NULL,
	};
	static const char *const libnames[] = {
		LUA_STRLIBNAME, LUA_TABLIBNAME, LUA_MATHLIBNAME, NULL,
	};
	static const luaL_Reg libs[] = {
		{ LUA_GNAME, luaopen_base },
		{ LUA_STRLIBNAME, luaopen_string },
		{ LUA_TABLIBNAME, luaopen_table },
		{ LUA_MATHLIBNAME, luaopen_math },
		{ NULL, NULL },
	};
	lua_State *L;

	L = lua_newstate(expr_alloc, x);
	if (L == NULL) {
		fputs("zdm: cannot create the expression sandbox\n", stderr);
		abort();
	}
	x->L = L;
	lua_atpanic(L, expr_panic);
	for (const luaL_Reg *l = libs; l->name != NULL; l++) {
		luaL_requiref(L, l->name, l->func, 1);
		lua_pop(L, 1);
	}
	lua_newtable(L);	/* _ENV */
	expr_env_copy(L, basefns);
	expr_env_copy(L, libnames);
	lua_newtable(L);
	lua_pushcfunction(L, l_missing_global);
	lua_setfield(L, -2, "__index");
	lua_setmetatable(L, -2);
	x->env_ref = luaL_ref(L, LUA_REGISTRYINDEX);

	push_guarded(L, l_missing_var);
	set_env_field(x, "vars");
	push_guarded(L, l_missing_secret);
	set_env_field(x, "secrets");
	push_guarded(L, l_missing_step);
	set_env_field(x, "steps");
	push_guarded(L, l_env_index);
	set_env_field(x, "env");
	lua_newtable(L);
	set_env_field(x, "run");
	return x;
}

void
expr_free(struct expr *x)
{
	if (x == NULL)
		return;
	lua_close(x->L);
	for (size_t i = 0; i < x->nsteps; i++)
		free(x->step_ids[i]);
	free(x->step_ids);
	free(x);
}

void
expr_set_step_ids(struct expr *x, const char *const *ids, size_t n)
{
	for (size_t i = 0; i < x->nsteps; i++)
		free(x->step_ids[i]);
	free(x->step_ids);
	x->step_ids = xcalloc(n + 1, sizeof *x->step_ids);
	for (size_t i = 0; i < n; i++)
		x->step_ids[i] = xstrdup(ids[i]);
	x->nsteps = n;
}

/* copy the JSON object's members into the table on top of the stack */
static void
fill_table(lua_State *L, const json_t *obj)
{
	const char *k;
	json_t *v;

	json_object_foreach((json_t *)obj, k, v) {
		lj_push(L, v);
		lua_setfield(L, -2, k);
	}
}

struct set_table {
	struct expr *x;
	lua_CFunction guard;
	const json_t *obj;
};

static int
set_table_body(lua_State *L)
{
	struct set_table *a = lua_touserdata(L, 1);

	if (a->guard != NULL)
		push_guarded(L, a->guard);
	else
		lua_newtable(L);
	if (a->obj != NULL)
		fill_table(L, a->obj);
	return 1;
}

int
expr_set(struct expr *x, const char *name, const json_t *obj, char **err)
{
	struct set_table a = { x, NULL, obj };
	int rc = 0;

	if (strcmp(name, "vars") == 0)
		a.guard = l_missing_var;
	else if (strcmp(name, "inputs") == 0)
		a.guard = l_missing_input;
	else if (strcmp(name, "secrets") == 0)
		a.guard = x->static_mode ? l_deferred : l_missing_secret;
	/* protected: values too large for the sandbox's memory cap are an
	 * error for the caller to report, not a panic */
	lua_pushcfunction(x->L, set_table_body);
	lua_pushlightuserdata(x->L, &a);
	if (lua_pcall(x->L, 1, 1, 0) != LUA_OK) {
		rc = seterr(err, "%s do not fit the expression sandbox's %u MiB (%s)", name,
		    EXPR_MEM_LIMIT >> 20, lua_tostring(x->L, -1) ? lua_tostring(x->L, -1) : "error");
		lua_pop(x->L, 1);
		a.obj = NULL;
		lua_pushcfunction(x->L, set_table_body);
		lua_pushlightuserdata(x->L, &a);
		if (lua_pcall(x->L, 1, 1, 0) != LUA_OK) {
			lua_pop(x->L, 1);
			lua_newtable(x->L);
		}
	}
	set_env_field(x, name);
	return rc;
}

static int
set_each_body(lua_State *L)
{
	const json_t *v = lua_touserdata(L, 1);

	lj_push(L, v);
	return 1;
}

void
expr_set_scope(struct expr *x, const json_t *scope)
{
	const json_t *each = json_object_get(scope, "each");
	const json_t *inputs = json_object_get(scope, "inputs");

	if (each != NULL) {
		lua_pushcfunction(x->L, set_each_body);
		lua_pushlightuserdata(x->L, (void *)each);
		if (lua_pcall(x->L, 1, 1, 0) != LUA_OK) {
			lua_pop(x->L, 1);
			lua_pushnil(x->L);
		}
	} else {
		lua_pushnil(x->L);	/* unset: a use is an unknown name */
	}
	set_env_field(x, "each");
	if (inputs != NULL) {
		expr_set(x, "inputs", inputs, NULL);
	} else {
		lua_pushnil(x->L);
		set_env_field(x, "inputs");
	}
}

void
expr_set_static(struct expr *x, bool on)
{
	x->static_mode = on;
	push_guarded(x->L, on ? l_deferred : l_missing_secret);
	set_env_field(x, "secrets");
	push_guarded(x->L, on ? l_deferred : l_missing_step);
	set_env_field(x, "steps");
	/* the environment of `zdm validate` is not the run's */
	push_guarded(x->L, on ? l_deferred : l_env_index);
	set_env_field(x, "env");
}

void
expr_defer(struct expr *x, const char *name)
{
	push_guarded(x->L, l_deferred);
	set_env_field(x, name);
}

struct set_step {
	struct expr *x;
	const char *id;
	const json_t *outputs;
};

static int
set_step_body(lua_State *L)
{
	struct set_step *a = lua_touserdata(L, 1);

	lua_rawgeti(L, LUA_REGISTRYINDEX, a->x->env_ref);
	lua_getfield(L, -1, "steps");
	lua_newtable(L);
	if (a->outputs != NULL)
		lj_push(L, a->outputs);
	else
		lua_newtable(L);
	lua_setfield(L, -2, "outputs");
	lua_setfield(L, -2, a->id);
	return 0;
}

void
expr_set_step(struct expr *x, const char *id, const json_t *outputs)
{
	struct set_step a = { x, id, outputs };

	/* protected: outputs too large for the sandbox's memory cap must not
	 * take zdm down (and with it every resume and rollback of the run) */
	lua_pushcfunction(x->L, set_step_body);
	lua_pushlightuserdata(x->L, &a);
	if (lua_pcall(x->L, 1, 0, 0) != LUA_OK) {
		fprintf(stderr, "zdm: warning: outputs of step '%s' do not fit the expression sandbox (%s); "
		    "expressions see none\n", id, lua_tostring(x->L, -1) ? lua_tostring(x->L, -1) : "?");
		lua_pop(x->L, 1);
		a.outputs = NULL;
		lua_pushcfunction(x->L, set_step_body);
		lua_pushlightuserdata(x->L, &a);
		if (lua_pcall(x->L, 1, 0, 0) != LUA_OK)
			lua_pop(x->L, 1);
	}
}

bool
expr_has_template(const char *s)
{
	return s != NULL && strstr(s, "${{") != NULL;
}

/* ---- scanning: references and '-' rewriting ---------------------------- */

static bool
idchar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '_';
}

/* skip a Lua string literal or comment starting at p; returns the end */
static const char *
skip_literal(const char *p)
{
	if (*p == '"' || *p == '\'') {
		char q = *p++;

		while (*p != '\0' && *p != q) {
			if (*p == '\\' && p[1] != '\0')
				p++;
			p++;
		}
		return *p ? p + 1 : p;
	}
	if (p[0] == '[' && (p[1] == '[' || p[1] == '=')) {
		const char *e = strstr(p, "]]");

		return e ? e + 2 : p + strlen(p);
	}
	if (p[0] == '-' && p[1] == '-') {
		while (*p != '\0' && *p != '\n')
			p++;
		return p;
	}
	return NULL;
}

struct ref {
	char kind;	/* 'v' vars, 's' secrets, 't' steps, 'e' env */
	char *name;
	char *field;	/* steps: the name after steps.<id>., if any */
	bool or_default;	/* followed by `or`: `env.X or "dflt"` */
};

/* q is just past a reference: is the next word `or`? */
static bool
followed_by_or(const char *q)
{
	while (*q == ' ' || *q == '\t' || *q == '\n')
		q++;
	return q[0] == 'o' && q[1] == 'r' && !idchar(q[2]);
}

/*
 * Walk code; collect references; write the code with dashed step ids
 * rewritten into *out (may be NULL).
 */
static void
scan(const char *code, char *const *step_ids, struct ref **refs, size_t *nrefs,
    char **out)
{
	struct sbuf sb;
	const char *p = code;

	sb_init(&sb);
	while (*p != '\0') {
		const char *lit = skip_literal(p);
		const char *names[] = { "vars", "secrets", "steps", "env" };
		const char kinds[] = { 'v', 's', 't', 'e' };
		bool matched = false;

		if (lit != NULL) {
			sb_add(&sb, p, (size_t)(lit - p));
			p = lit;
			continue;
		}
		for (int k = 0; k < 4 && !matched; k++) {
			size_t l = strlen(names[k]);
			const char *q;

			if (strncmp(p, names[k], l) != 0 || idchar(p[l]) ||
			    (p > code && (idchar(p[-1]) || p[-1] == '.')))
				continue;
			q = p + l;
			while (*q == ' ')
				q++;
			if (*q == '.') {
				const char *s = ++q, *e;

				while (*q == ' ')
					q++;
				s = q;
				e = s;
				while (idchar(*e) || (kinds[k] == 't' && *e == '-'))
					e++;
				if (e == s)
					continue;
				/* a step's name is the whole dashed name: [s, e) is
				 * letters, digits, '_' and '-' up to what is none of
				 * them, so no shorter known id can end on a boundary
				 * inside it (and looking for one costs a pass over
				 * every step id per reference) */
				*refs = xrealloc(*refs, (*nrefs + 1) * sizeof **refs);
				(*refs)[*nrefs].kind = kinds[k];
				(*refs)[*nrefs].name = xstrndup(s, (size_t)(e - s));
				(*refs)[*nrefs].field = NULL;
				(*refs)[*nrefs].or_default = followed_by_or(e);
				if (kinds[k] == 't') {
					const char *f = e, *fe;

					while (*f == ' ')
						f++;
					if (*f == '.') {
						f++;
						while (*f == ' ')
							f++;
						for (fe = f; idchar(*fe); fe++)
							;
						(*refs)[*nrefs].field = xstrndup(f, (size_t)(fe - f));
					}
				}
				(*nrefs)++;
				if (kinds[k] == 't')
					sb_addf(&sb, "steps[\"%.*s\"]", (int)(e - s), s);
				else
					sb_add(&sb, p, (size_t)(e - p));
				p = e;
				matched = true;
			} else if (*q == '[' && (q[1] == '"' || q[1] == '\'')) {
				const char *s = q + 2, *e = strchr(s, q[1]);

				if (e != NULL && e[1] == ']') {
					*refs = xrealloc(*refs, (*nrefs + 1) * sizeof **refs);
					(*refs)[*nrefs].kind = kinds[k];
					(*refs)[*nrefs].name = xstrndup(s, (size_t)(e - s));
					(*refs)[*nrefs].field = NULL;
					(*refs)[*nrefs].or_default = followed_by_or(e + 2);
					(*nrefs)++;
					sb_add(&sb, p, (size_t)(e + 2 - p));
					p = e + 2;
					matched = true;
				}
			}
		}
		if (!matched) {
			/* copy one identifier (or one char) through */
			if (idchar(*p)) {
				const char *s = p;

				while (idchar(*p))
					p++;
				sb_add(&sb, s, (size_t)(p - s));
			} else {
				sb_addc(&sb, *p++);
			}
		}
	}
	if (out != NULL)
		*out = sb_detach(&sb);
	else
		sb_release(&sb);
}

/*
 * GitHub Actions' expression habits in Lua code, outside string literals:
 * the operators Lua writes otherwise, and the status functions zdm has no
 * use for.  A malloc'd hint ("'!=' is not Lua: write '~='"), or NULL.
 */
char *
expr_habit(const char *code)
{
	struct sbuf sb;
	const char *p = code;
	bool ne = false, has_and = false, has_or = false, has_not = false;
	const char *fn = NULL;

	while (*p != '\0') {
		const char *lit = skip_literal(p);

		if (lit != NULL) {
			p = lit;
			continue;
		}
		if (p[0] == '!' && p[1] == '=') {
			ne = true;
			p += 2;
		} else if (p[0] == '&' && p[1] == '&') {
			has_and = true;
			p += 2;
		} else if (p[0] == '|' && p[1] == '|') {
			has_or = true;
			p += 2;
		} else if (p[0] == '!') {
			has_not = true;
			p++;
		} else if (idchar(*p)) {
			const char *s = p, *q;
			static const char *const status[] = { "success", "failure", "always", "cancelled", NULL };

			while (idchar(*p))
				p++;
			for (q = p; *q == ' ' || *q == '\t'; q++)
				;
			if (*q == '(' && fn == NULL && (s == code || s[-1] != '.'))
				for (size_t i = 0; status[i] != NULL; i++)
					if ((size_t)(p - s) == strlen(status[i]) &&
					    strncmp(s, status[i], (size_t)(p - s)) == 0)
						fn = status[i];
		} else {
			p++;
		}
	}
	if (!ne && !has_and && !has_or && !has_not && fn == NULL)
		return NULL;
	sb_init(&sb);
	if (ne)
		sb_adds(&sb, "'!=' is not Lua: use ~= (Lua's not-equal)");
	if (has_and)
		sb_addf(&sb, "%s'&&' is not Lua: use and", sb.len ? "; " : "");
	if (has_or)
		sb_addf(&sb, "%s'||' is not Lua: use or", sb.len ? "; " : "");
	if (has_not)
		sb_addf(&sb, "%s'!x' is not Lua: use not x", sb.len ? "; " : "");
	if (fn != NULL && strcmp(fn, "success") == 0)
		sb_addf(&sb, "%ssuccess() is GitHub Actions': a zdm step runs only when every step "
		    "before it succeeded, so leave it out", sb.len ? "; " : "");
	else if (fn != NULL && strcmp(fn, "failure") == 0)
		sb_addf(&sb, "%sfailure() is GitHub Actions': zdm does not run steps after a failure; "
		    "what puts things back is an undo: (run on rollback), and notify: with on: [failure] "
		    "tells people", sb.len ? "; " : "");
	else if (fn != NULL && strcmp(fn, "always") == 0)
		sb_addf(&sb, "%salways() is GitHub Actions': zdm does not run steps after a failure; "
		    "use an undo: (run on rollback) or notify: with on: [finish]", sb.len ? "; " : "");
	else if (fn != NULL)
		sb_addf(&sb, "%s%s() is GitHub Actions': an interrupted zdm run stops and is resumed "
		    "with zdm resume; notify: with on: [pause] tells people", sb.len ? "; " : "", fn);
	return sb_detach(&sb);
}

static void
free_refs(struct ref *refs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(refs[i].name);
		free(refs[i].field);
	}
	free(refs);
}

/* find the next ${{ ... }} in s; returns the start or NULL; sets code span */
static const char *
next_template(const char *s, const char **code, size_t *codelen, const char **after)
{
	const char *a = strstr(s, "${{"), *b;

	if (a == NULL)
		return NULL;
	b = strstr(a + 3, "}}");
	if (b == NULL)
		return NULL;
	*code = a + 3;
	*codelen = (size_t)(b - (a + 3));
	*after = b + 2;
	return a;
}

static char *
trim(const char *s, size_t n)
{
	while (n > 0 && (*s == ' ' || *s == '\t' || *s == '\n')) {
		s++;
		n--;
	}
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n'))
		n--;
	return xstrndup(s, n);
}

/* compile "return (code)" with the sandbox _ENV; pushes the function */
static int
compile(struct expr *x, const char *code, char **err)
{
	char *rewritten = NULL, *chunk;
	struct ref *refs = NULL;
	size_t nrefs = 0;
	int rc;

	scan(code, x->step_ids, &refs, &nrefs, &rewritten);
	free_refs(refs, nrefs);
	chunk = xasprintf("return %s", rewritten);
	free(rewritten);
	rc = luaL_loadbufferx(x->L, chunk, strlen(chunk), "=expr", "t");
	free(chunk);
	if (rc != LUA_OK) {
		const char *m = lua_tostring(x->L, -1);

		if (m != NULL && strncmp(m, "expr:", 5) == 0) {
			const char *c = strchr(m + 5, ':');

			m = c ? c + 2 : m;
		}
		{
			const char *eof = m ? strstr(m, "near <eof>") : NULL;
			char *hint = expr_habit(code);

			if (hint != NULL)
				seterr(err, "expression '%s' does not parse: %s", code, hint);
			else if (eof != NULL)
				seterr(err, "expression '%s' does not parse: %.*sat the end of the expression",
				    code, (int)(eof - m), m);
			else
				seterr(err, "expression '%s' does not parse: %s", code, m ? m : "?");
			free(hint);
		}
		lua_pop(x->L, 1);
		return -1;
	}
	lua_rawgeti(x->L, LUA_REGISTRYINDEX, x->env_ref);
	lua_setupvalue(x->L, -2, 1);
	return 0;
}

/*
 * Evaluate code; leaves the value on the stack.  Returns 0, -1 (error in
 * *err) or 1 (deferred: needs steps/secrets, static mode).
 */
static int
eval(struct expr *x, const char *code, char **err)
{
	lua_State *L = x->L;
	int rc;

	if (compile(x, code, err) != 0)
		return -1;
	lua_sethook(L, count_hook, LUA_MASKCOUNT, EXPR_MAX_INSNS);
	rc = lua_pcall(L, 0, 1, 0);
	lua_sethook(L, NULL, 0, 0);
	if (rc == LUA_OK)
		return 0;
	if (lua_touserdata(L, -1) == &deferred_key) {
		lua_pop(L, 1);
		x->deferred++;
		return 1;
	}
	{
		const char *m = lua_tostring(L, -1);

		if (m != NULL && strncmp(m, "expr:", 5) == 0) {
			const char *c = strchr(m + 5, ':');

			m = c ? c + 2 : m;
		}
		seterr(err, "expression '%s': %s", code, m ? m : "error");
	}
	lua_pop(L, 1);
	return -1;
}

/* interpolate the value on top of the stack (pops it) */
static int
append_value(struct expr *x, struct sbuf *sb, const char *code, char **err)
{
	lua_State *L = x->L;
	int t = lua_type(L, -1);
	int rc = 0;

	if (t == LUA_TSTRING) {
		size_t n;
		const char *s = lua_tolstring(L, -1, &n);

		sb_add(sb, s, n);
	} else if (t == LUA_TNUMBER) {
		if (lua_isinteger(L, -1))
			sb_addf(sb, "%lld", (long long)lua_tointeger(L, -1));
		else
			sb_addf(sb, "%.14g", lua_tonumber(L, -1));
	} else if (t == LUA_TBOOLEAN) {
		sb_adds(sb, lua_toboolean(L, -1) ? "true" : "false");
	} else if (t == LUA_TNIL) {
		rc = seterr(err, "expression '%s' is nil inside a string", code);
	} else {
		char *e2 = NULL;
		json_t *j = lj_to_json(L, -1, &e2);

		if (j == NULL) {
			rc = seterr(err, "expression '%s': %s", code, e2 ? e2 : "no text form");
		} else {
			char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);

			sb_adds(sb, s ? s : "");
			free(s);
			json_decref(j);
		}
		free(e2);
	}
	lua_pop(L, 1);
	return rc;
}

/* the first env var code names that is not set in this process's
 * environment (without an `or` default), as a message; malloc'd or NULL */
static char *
unset_env(const char *code)
{
	struct ref *refs = NULL;
	size_t nrefs = 0;
	char *m = NULL;

	scan(code, NULL, &refs, &nrefs, NULL);
	for (size_t i = 0; i < nrefs && m == NULL; i++)
		if (refs[i].kind == 'e' && getenv(refs[i].name) == NULL)
			m = xasprintf("environment variable %s is not set (read by ${{ %s }}): "
			    "set it in the environment of zdm, or give a default: ${{ env.%s or \"...\" }}",
			    refs[i].name, code, refs[i].name);
	free_refs(refs, nrefs);
	return m;
}

char **
expr_env_unset(const char *s)
{
	const char *p = s, *code, *after;
	size_t codelen, n = 0;
	char **out = NULL;

	while (next_template(p, &code, &codelen, &after) != NULL) {
		char *c = trim(code, codelen);
		struct ref *refs = NULL;
		size_t nrefs = 0;

		scan(c, NULL, &refs, &nrefs, NULL);
		for (size_t i = 0; i < nrefs; i++) {
			bool dup = false;

			if (refs[i].kind != 'e' || refs[i].or_default || getenv(refs[i].name) != NULL)
				continue;
			for (size_t j = 0; j < n; j++)
				if (strcmp(out[j], refs[i].name) == 0)
					dup = true;
			if (dup)
				continue;
			out = xrealloc(out, (n + 2) * sizeof *out);
			out[n++] = xstrdup(refs[i].name);
			out[n] = NULL;
		}
		free_refs(refs, nrefs);
		free(c);
		p = after;
	}
	return out;
}

/* render one string; returns a new json value, or NULL (err).  strict: a
 * nil that comes from an unset env var is an error naming it */
static json_t *
render_string(struct expr *x, const char *s, bool strict, char **err)
{
	const char *code, *after, *start;
	size_t codelen;
	struct sbuf sb;
	const char *p = s;
	json_t *res = NULL;

	start = next_template(s, &code, &codelen, &after);
	if (start == NULL)
		return json_string(s);
	/* whole value: keeps its type */
	{
		const char *a = s, *z = after;

		while (*a == ' ')
			a++;
		while (*z == ' ')
			z++;
		if (a == start && *z == '\0') {
			char *c = trim(code, codelen);
			int rc = *c ? eval(x, c, err) : seterr(err, "empty expression '${{ }}'");

			if (rc == 0) {
				char *unset = strict && lua_isnil(x->L, -1) ? unset_env(c) : NULL;

				if (unset != NULL) {
					seterr(err, "%s", unset);
					free(unset);
				} else if (lua_isnil(x->L, -1))
					res = json_null();
				else
					res = lj_to_json(x->L, -1, err);
				lua_pop(x->L, 1);
				if (res == NULL)
					seterr(err, "expression '%s' has no JSON value", c);
			} else if (rc == 1) {
				res = json_string(s);
			}
			free(c);
			return res;
		}
	}
	sb_init(&sb);
	while ((start = next_template(p, &code, &codelen, &after)) != NULL) {
		char *c = trim(code, codelen);
		int rc;

		sb_add(&sb, p, (size_t)(start - p));
		rc = *c ? eval(x, c, err) : seterr(err, "empty expression '${{ }}'");
		if (rc == 0 && lua_isnil(x->L, -1)) {
			char *unset = unset_env(c);

			if (unset != NULL) {
				lua_pop(x->L, 1);
				rc = seterr(err, "%s", unset);
				free(unset);
			}
		}
		if (rc == 0)
			rc = append_value(x, &sb, c, err);
		free(c);
		if (rc == 1) {
			sb_release(&sb);
			return json_string(s);
		}
		if (rc != 0) {
			sb_release(&sb);
			return NULL;
		}
		p = after;
	}
	sb_adds(&sb, p);
	res = json_string(sb.buf);
	sb_release(&sb);
	return res;
}

json_t *
expr_render(struct expr *x, const json_t *t, char **err)
{
	json_t *out;

	if (t == NULL)
		return json_null();
	if (json_is_string(t))
		return render_string(x, json_string_value(t), true, err);
	if (json_is_array(t)) {
		size_t i;
		json_t *e;

		out = json_array();
		json_array_foreach(t, i, e) {
			json_t *r = expr_render(x, e, err);

			if (r == NULL) {
				json_decref(out);
				return NULL;
			}
			json_array_append_new(out, r);
		}
		return out;
	}
	if (json_is_object(t)) {
		const char *k;
		json_t *e;

		out = json_object();
		json_object_foreach((json_t *)t, k, e) {
			json_t *r = expr_render(x, e, err);

			if (r == NULL) {
				json_decref(out);
				return NULL;
			}
			json_object_set_new(out, k, r);
		}
		return out;
	}
	return json_deep_copy(t);
}

int
expr_truthy(struct expr *x, const char *tmpl, bool *out, char **err)
{
	json_t *src = json_string(tmpl), *v;

	v = render_string(x, tmpl, false, err);
	json_decref(src);
	if (v == NULL)
		return -1;
	if (json_is_string(v)) {
		/* a condition written as plain text: "true"/"false" */
		const char *s = json_string_value(v);

		*out = !(strcmp(s, "false") == 0 || strcmp(s, "") == 0 || strcmp(s, "0") == 0);
	} else {
		*out = !(json_is_null(v) || json_is_false(v));
	}
	json_decref(v);
	return 0;
}

int
expr_cond(struct expr *x, const char *tmpl, bool *out, char **err)
{
	unsigned long before = x->deferred;
	json_t *v = render_string(x, tmpl, false, err);

	if (v == NULL)
		return -1;
	json_decref(v);
	if (x->deferred != before)
		return 1;
	return expr_truthy(x, tmpl, out, err);
}

unsigned long
expr_deferred_count(const struct expr *x)
{
	return x->deferred;
}

static int
defer_step_body(lua_State *L)
{
	struct set_step *a = lua_touserdata(L, 1);

	lua_rawgeti(L, LUA_REGISTRYINDEX, a->x->env_ref);
	lua_getfield(L, -1, "steps");
	lua_newtable(L);
	push_guarded(L, l_deferred);
	lua_setfield(L, -2, "outputs");
	lua_setfield(L, -2, a->id);
	return 0;
}

void
expr_defer_step(struct expr *x, const char *id)
{
	struct set_step a = { x, id, NULL };

	lua_pushcfunction(x->L, defer_step_body);
	lua_pushlightuserdata(x->L, &a);
	if (lua_pcall(x->L, 1, 0, 0) != LUA_OK)
		lua_pop(x->L, 1);
}

static bool
in_list(const char *s, const char *const *list)
{
	for (size_t i = 0; list != NULL && list[i] != NULL; i++)
		if (strcmp(list[i], s) == 0)
			return true;
	return false;
}

static void
push_err(char ***errs, char *msg)
{
	size_t n = 0;

	while (*errs != NULL && (*errs)[n] != NULL)
		n++;
	*errs = xrealloc(*errs, (n + 2) * sizeof **errs);
	(*errs)[n] = msg;
	(*errs)[n + 1] = NULL;
}

void
expr_check(struct expr *x, const char *s, const char *const *known_vars,
    const char *const *known_secrets, const char *const *steps_before,
    const char *const *all_steps, char ***errs)
{
	const char *p = s, *code, *after;
	size_t codelen;

	while (next_template(p, &code, &codelen, &after) != NULL) {
		char *c = trim(code, codelen), *err = NULL;
		struct ref *refs = NULL;
		size_t nrefs = 0;

		if (*c == '\0') {
			push_err(errs, xstrdup("empty expression '${{ }}'"));
		} else if (compile(x, c, &err) != 0) {
			push_err(errs, err);
			err = NULL;
		} else if ((err = expr_habit(c)) != NULL) {
			lua_pop(x->L, 1);
			push_err(errs, xasprintf("expression '%s': %s", c, err));
		} else {
			lua_pop(x->L, 1);
			scan(c, x->step_ids, &refs, &nrefs, NULL);
			for (size_t i = 0; i < nrefs; i++) {
				const char *n = refs[i].name;
				const char *sug;

				if (refs[i].kind == 'v' && !in_list(n, known_vars)) {
					sug = did_you_mean(n, known_vars);
					push_err(errs, sug ?
					    xasprintf("unknown var '%s' in '%s' (did you mean '%s'?)", n, c, sug) :
					    xasprintf("unknown var '%s' in '%s' (declare it under vars:)", n, c));
				} else if (refs[i].kind == 's' && !in_list(n, known_secrets)) {
					sug = did_you_mean(n, known_secrets);
					push_err(errs, sug ?
					    xasprintf("unknown secret '%s' in '%s' (did you mean '%s'?)", n, c, sug) :
					    xasprintf("unknown secret '%s' in '%s' (declare it under secrets:)", n, c));
				} else if (refs[i].kind == 't' && refs[i].field != NULL &&
				    strcmp(refs[i].field, "outputs") != 0) {
					push_err(errs, xasprintf("'%s': a step has only outputs (did you mean 'steps.%s.outputs.%s'?)",
					    c, n, refs[i].field));
				} else if (refs[i].kind == 't' && !in_list(n, steps_before)) {
					if (in_list(n, all_steps))
						push_err(errs, xasprintf("'%s' refers to step '%s', which has not run at this point", c, n));
					else {
						sug = did_you_mean(n, all_steps);
						push_err(errs, sug ?
						    xasprintf("unknown step '%s' in '%s' (did you mean '%s'?)", n, c, sug) :
						    xasprintf("unknown step '%s' in '%s'", n, c));
					}
				}
			}
			free_refs(refs, nrefs);
		}
		free(err);
		free(c);
		p = after;
	}
	if (strstr(p, "${{") != NULL)
		push_err(errs, xasprintf("unterminated expression: '${{' without '}}'"));
}

lua_State *
expr_lua(struct expr *x)
{
	return x->L;
}

int
expr_pcall(struct expr *x, int nargs)
{
	int rc;

	lua_sethook(x->L, count_hook, LUA_MASKCOUNT, EXPR_MAX_INSNS);
	rc = lua_pcall(x->L, nargs, 1, 0);
	lua_sethook(x->L, NULL, 0, 0);
	return rc;
}

void
expr_env_copy(lua_State *L, const char *const *names)
{
	for (size_t i = 0; names[i] != NULL; i++) {
		lua_getglobal(L, names[i]);
		lua_setfield(L, -2, names[i]);
	}
}
