/*
 * runbook.c - schema `zdm: 1`: read, check, resolve (see runbook.h and
 * docs/zdm-runbook.5).  Every check reports into one error list and goes on,
 * so a user sees every problem of a runbook in one `zdm validate`.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "base/redact.h"
#include "base/strmap.h"
#include "base/util.h"
#include "core/params_check.h"
#include "core/registry.h"
#include "core/runbook.h"
#include "net/httpc.h"
#include "zdm/step.h"

#define DEFAULT_TIMEOUT_MS (5 * 60 * 1000)
#define DEFAULT_RETRY_DELAY_MS 2000

static const char *const top_keys[] = {
	"zdm", "name", "description", "vars", "secrets", "defaults", "on_failure",
	"steps", "notify", "probes", NULL,
};
static const char *const step_keys[] = {
	"id", "name", "description", "uses", "with", "if", "timeout", "retries",
	"retry_delay", "backoff", "undo", "idempotent", "read_only", "for_each", NULL,
};
/* a probe is written like a step, minus what only a run's step has */
static const char *const probe_keys[] = {
	"id", "name", "description", "uses", "with", "timeout", "retries", "retry_delay",
	"backoff", "read_only", "compare", NULL,
};
/* the types whose effect is the command or request the runbook writes: a
 * probe of one of these is read-only when its author says so */
static const char *const vouch_types[] = { "exec", "ssh", "http", NULL };
static const char *const undo_keys[] = { "uses", "with", "timeout", NULL };
/* a file brought by include: that is a mapping rather than a list of steps */
static const char *const included_keys[] = { "description", "inputs", "steps", NULL };
static const char *const default_keys[] = {
	"timeout", "retries", "retry_delay", "backoff", NULL,
};


void
err_at(struct runbook *rb, struct yerrs *e, const struct ynode *n, const char *fmt, ...)
{
	va_list ap;
	char *m;

	va_start(ap, fmt);
	m = xvasprintf(fmt, ap);
	va_end(ap);
	/* a node of an included file names that file; one copied through an
	 * alias is placed at the alias and names where it was written */
	if (n != NULL && n->def_line > 0)
		yerr(e, n->file != NULL ? n->file : rb->path, n->line, n->col,
		    "%s (in the value aliased here, written at line %d column %d)", m,
		    n->def_line, n->def_col);
	else
		yerr(e, n != NULL && n->file != NULL ? n->file : rb->path, n ? n->line : 1,
		    n ? n->col : 1, "%s", m);
	free(m);
}

void
warn_at(struct runbook *rb, const struct ynode *n, const char *fmt, ...)
{
	va_list ap;
	char *m;

	if (rb->warns == NULL)
		return;
	va_start(ap, fmt);
	m = xvasprintf(fmt, ap);
	va_end(ap);
	/* the same place and text said twice (a step's params are checked
	 * at validate and again at run time) is said once */
	for (size_t i = 0; i < rb->warns->n; i++) {
		const struct yerr *w = &rb->warns->v[i];
		const char *tail = strstr(w->msg, ": warning: ");

		if (n != NULL && w->line == n->line && w->col == n->col && tail != NULL &&
		    strcmp(tail + 11, m) == 0) {
			free(m);
			return;
		}
	}
	yerr(rb->warns, rb->path, n ? n->line : 1, n ? n->col : 1, "warning: %s", m);
	free(m);
}

static bool
valid_id(const char *s)
{
	if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9')))
		return false;
	for (const char *p = s + 1; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		    *p == '_' || *p == '-'))
			return false;
	return strlen(s) <= 64;
}

static bool
valid_ident(const char *s)
{
	if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_'))
		return false;
	for (const char *p = s + 1; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '_'))
			return false;
	return true;
}

static void
check_keys(struct runbook *rb, struct yerrs *e, const struct ynode *map,
    const char *const *allowed, const char *where)
{
	for (size_t i = 0; i < map->n; i++) {
		const char *k = map->keys[i]->str;
		bool ok = false;

		/* x-anything at the top of a runbook or an included file: a place
		 * for anchors, which zdm ignores */
		if ((allowed == top_keys || allowed == included_keys) && strncmp(k, "x-", 2) == 0)
			continue;
		for (size_t j = 0; allowed[j] != NULL; j++)
			if (strcmp(allowed[j], k) == 0)
				ok = true;
		if (!ok) {
			const char *s = did_you_mean(k, allowed);

			if (s != NULL)
				err_at(rb, e, map->keys[i], "unknown key '%s' in %s (did you mean '%s'?)", k, where, s);
			else
				err_at(rb, e, map->keys[i], "unknown key '%s' in %s", k, where);
		}
	}
}

/* a scalar string; reports and returns NULL otherwise */
static const char *
want_string(struct runbook *rb, struct yerrs *e, const struct ynode *n, const char *what)
{
	json_t *v;
	bool ok;

	if (n == NULL)
		return NULL;
	if (n->kind != Y_SCALAR) {
		err_at(rb, e, n, "%s must be a string, not %s", what, ynode_kind_name(n));
		return NULL;
	}
	v = yscalar_json(n);
	ok = json_is_string(v);
	json_decref(v);
	if (!ok) {
		err_at(rb, e, n, "%s must be a string, not %s", what, ynode_kind_name(n));
		return NULL;
	}
	return n->str;
}

static int
want_duration(struct runbook *rb, struct yerrs *e, const struct ynode *n,
    const char *what, int64_t *ms)
{
	if (n == NULL)
		return 0;
	if (n->kind != Y_SCALAR || parse_duration(n->str, ms) != 0) {
		err_at(rb, e, n, "%s: bad duration '%s' (use a number and a unit: 500ms, 30s, 5m, 1h, 1m30s)",
		    what, n->kind == Y_SCALAR ? n->str : ynode_kind_name(n));
		return -1;
	}
	return 0;
}

static int
want_count(struct runbook *rb, struct yerrs *e, const struct ynode *n,
    const char *what, int *out)
{
	json_t *v;

	if (n == NULL)
		return 0;
	v = n->kind == Y_SCALAR ? yscalar_json(n) : NULL;
	if (v == NULL || !json_is_integer(v) || json_integer_value(v) < 0 ||
	    json_integer_value(v) > 1000) {
		err_at(rb, e, n, "%s must be a whole number from 0 to 1000", what);
		json_decref(v);
		return -1;
	}
	*out = (int)json_integer_value(v);
	json_decref(v);
	return 0;
}

static int
want_bool(struct runbook *rb, struct yerrs *e, const struct ynode *n,
    const char *what, bool *out)
{
	json_t *v;

	if (n == NULL)
		return 0;
	v = n->kind == Y_SCALAR ? yscalar_json(n) : NULL;
	if (v == NULL || !json_is_boolean(v)) {
		err_at(rb, e, n, "%s must be true or false", what);
		json_decref(v);
		return -1;
	}
	*out = json_is_true(v);
	json_decref(v);
	return 0;
}

/* every string in the YAML tree under n: check its expressions */
static void
check_exprs(struct runbook *rb, struct yerrs *e, const struct ynode *n,
    const char *const *vars, const char *const *secrets,
    const char *const *before, const char *const *all)
{
	if (n == NULL)
		return;
	if (n->kind == Y_SCALAR) {
		char **errs = NULL;

		if (!expr_has_template(n->str))
			return;
		expr_check(rb->x, n->str, vars, secrets, before, all, &errs);
		for (size_t i = 0; errs != NULL && errs[i] != NULL; i++) {
			err_at(rb, e, n, "%s", errs[i]);
			free(errs[i]);
		}
		free(errs);
		return;
	}
	for (size_t i = 0; i < n->n; i++)
		check_exprs(rb, e, n->items[i], vars, secrets, before, all);
}

/* where a step's timeout comes from, in words, for a timing message;
 * malloc'd.  own: the step's (or undo's) timeout: node, or NULL */
/* a template or an expression somewhere in v (a with: as written) */
static bool
has_expr(const json_t *v)
{
	const char *k;
	json_t *e;
	size_t i;

	if (json_is_string(v))
		return zdm_is_expr(v) || expr_has_template(json_string_value(v));
	if (json_is_object(v)) {
		json_object_foreach((json_t *)v, k, e)
			if (has_expr(e) || expr_has_template(k))
				return true;
	}
	if (json_is_array(v)) {
		json_array_foreach(v, i, e)
			if (has_expr(e))
				return true;
	}
	return false;
}

static char *
timeout_from(struct runbook *rb, const struct ynode *own, const char *whose, int64_t ms)
{
	const struct ynode *dn = ymap_get(ymap_get(rb->root, "defaults"), "timeout");
	char d[32];

	fmt_duration(ms, d, sizeof d);
	if (own != NULL)
		return xasprintf("%s timeout: %s (line %d)", whose, d, own->line);
	if (dn != NULL)
		return xasprintf("the step's timeout %s from defaults: timeout (line %d)", d, dn->line);
	return xasprintf("the step's timeout %s (zdm's default; set timeout: on the step)", d);
}

/* every string in the YAML tree under n: warn about the env vars its
 * expressions read that are not set now (the run's environment may differ) */
static void
warn_env(struct runbook *rb, const struct ynode *n, const char *what)
{
	if (n == NULL)
		return;
	if (n->kind == Y_SCALAR) {
		char **names;

		if (!expr_has_template(n->str) || (names = expr_env_unset(n->str)) == NULL)
			return;
		for (size_t i = 0; names[i] != NULL; i++) {
			warn_at(rb, n, "%s: env.%s is not set: a run without %s in its environment fails "
			    "this step (set it, or give a default: ${{ env.%s or \"...\" }})", what,
			    names[i], names[i], names[i]);
			free(names[i]);
		}
		free(names);
		return;
	}
	for (size_t i = 0; i < n->n; i++)
		warn_env(rb, n->items[i], what);
}

static void
parse_vars(struct runbook *rb, struct yerrs *e, const struct ynode *n)
{
	rb->vars = json_object();
	if (n == NULL)
		return;
	if (n->kind != Y_MAP) {
		err_at(rb, e, n, "vars must be a mapping of name: value");
		return;
	}
	for (size_t i = 0; i < n->n; i++) {
		const char *k = n->keys[i]->str;

		if (!valid_ident(k))
			err_at(rb, e, n->keys[i], "var name '%s' must be a Lua identifier ([A-Za-z_][A-Za-z0-9_]*)", k);
		if (n->items[i]->kind == Y_SCALAR && expr_has_template(n->items[i]->str))
			err_at(rb, e, n->items[i], "var '%s': expressions are not allowed in vars (set it with --var)", k);
		json_object_set_new(rb->vars, k, ynode_json(n->items[i]));
	}
}

/* --var k=v: typed like the runbook's own value for k */
static void
apply_var_flag(struct runbook *rb, struct yerrs *e, const char *kv)
{
	const char *eq = strchr(kv, '=');
	char *k;
	json_t *old, *nv = NULL;

	if (eq == NULL || eq == kv) {
		err_at(rb, e, NULL, "--var '%s': expected key=value", kv);
		return;
	}
	k = xstrndup(kv, (size_t)(eq - kv));
	old = json_object_get(rb->vars, k);
	if (old == NULL) {
		const char **names = xcalloc(json_object_size(rb->vars) + 1, sizeof *names);
		const char *key, *s;
		json_t *v;
		size_t i = 0;

		json_object_foreach(rb->vars, key, v)
			names[i++] = key;
		s = did_you_mean(k, names);
		if (s != NULL)
			err_at(rb, e, NULL, "--var '%s': no such var in the runbook (did you mean '%s'?)", k, s);
		else
			err_at(rb, e, NULL, "--var '%s': no such var in the runbook (declare it under vars:)", k);
		free(names);
		free(k);
		return;
	}
	eq++;
	if (*eq == '\0') {
		/* a typo or an unset shell variable (--var root=$ROOT) must not
		 * quietly replace the runbook's value with nothing */
		char *was = json_is_string(old) ? xstrdup(json_string_value(old)) :
		    json_dumps(old, JSON_ENCODE_ANY | JSON_COMPACT);

		err_at(rb, e, NULL, "--var '%s=': the value is empty; give one (--var %s=VALUE) or "
		    "leave the flag out to keep the runbook's value '%s' (an empty string on purpose: "
		    "--var '%s=\"\"')", k, k, was ? was : "", k);
		free(was);
		free(k);
		return;
	}
	if (json_is_integer(old)) {
		char *end;
		long long n;

		errno = 0;
		n = strtoll(eq, &end, 10);
		if (errno == 0 && end != eq && *end == '\0')
			nv = json_integer(n);
	} else if (json_is_real(old)) {
		char *end;
		double d = strtod(eq, &end);

		if (end != eq && *end == '\0')
			nv = json_real(d);
	} else if (json_is_boolean(old)) {
		if (strcmp(eq, "true") == 0)
			nv = json_true();
		else if (strcmp(eq, "false") == 0)
			nv = json_false();
	} else if (json_is_string(old) || json_is_null(old)) {
		/* "" (quoted for the shell: --var 'k=""') is the empty string,
		 * said on purpose */
		nv = json_string(strcmp(eq, "\"\"") == 0 ? "" : eq);
	} else {
		nv = json_loads(eq, JSON_DECODE_ANY, NULL);
	}
	if (nv == NULL) {
		err_at(rb, e, NULL, "--var '%s': '%s' is not %s like the runbook's value", k, eq,
		    json_is_integer(old) ? "a whole number" : json_is_real(old) ? "a number" :
		    json_is_boolean(old) ? "true or false" : "JSON");
		free(k);
		return;
	}
	json_object_set_new(rb->vars, k, nv);
	free(k);
}

static void
apply_vars_file(struct runbook *rb, struct yerrs *e, const char *file)
{
	struct ynode *root = yparse_file_as(file, file, "the vars file (--vars-file)", e);

	if (root == NULL)
		return;
	if (root->kind != Y_MAP) {
		yerr(e, file, root->line, root->col, "a vars file is a mapping of name: value");
	} else {
		for (size_t i = 0; i < root->n; i++) {
			const char *k = root->keys[i]->str;

			if (json_object_get(rb->vars, k) == NULL)
				yerr(e, file, root->keys[i]->line, root->keys[i]->col,
				    "no var '%s' in %s (declare it under vars:)", k, rb->path);
			else
				json_object_set_new(rb->vars, k, ynode_json(root->items[i]));
		}
	}
	ynode_free(root);
}

static void
parse_secrets(struct runbook *rb, struct yerrs *e, const struct ynode *n)
{
	if (n == NULL)
		return;
	if (n->kind != Y_MAP) {
		err_at(rb, e, n, "secrets must be a mapping of name: {env: NAME} or {file: PATH}");
		return;
	}
	rb->secrets = xcalloc(n->n, sizeof *rb->secrets);
	for (size_t i = 0; i < n->n; i++) {
		const struct ynode *v = n->items[i];
		struct rb_secret *s = &rb->secrets[rb->nsecrets];
		const struct ynode *env = ymap_get(v, "env"), *file = ymap_get(v, "file");

		if (!valid_ident(n->keys[i]->str)) {
			err_at(rb, e, n->keys[i], "secret name '%s' must be a Lua identifier", n->keys[i]->str);
			continue;
		}
		if (v->kind != Y_MAP || v->n != 1 || (env == NULL && file == NULL)) {
			err_at(rb, e, v, "secret '%s' must be {env: NAME} or {file: PATH}", n->keys[i]->str);
			continue;
		}
		s->name = xstrdup(n->keys[i]->str);
		s->node = v;
		if (env != NULL && want_string(rb, e, env, "env") != NULL)
			s->env = xstrdup(env->str);
		if (file != NULL && want_string(rb, e, file, "file") != NULL) {
			/* a relative file is the runbook's neighbour, wherever zdm runs */
			char *dir = path_dirname(rb->abspath);

			s->file = file->str[0] == '/' || file->str[0] == '\0' ? xstrdup(file->str) :
			    path_join(dir, file->str);
			free(dir);
		}
		rb->nsecrets++;
	}
}

/* notify: [{url: URL, on: [start, failure, rollback, finish, pause], timeout: 5s}] */
static const char *const notify_keys[] = { "url", "on", "timeout", NULL };
static const char *const notify_events[] = {
	"start", "failure", "rollback", "finish", "pause", NULL,
};

static void
parse_notify(struct runbook *rb, struct yerrs *e, const struct ynode *n)
{
	if (n == NULL)
		return;
	if (n->kind != Y_SEQ) {
		err_at(rb, e, n, "notify must be a list of webhooks (- url: ...), not %s",
		    ynode_kind_name(n));
		return;
	}
	rb->notify = xcalloc(n->n + 1, sizeof *rb->notify);
	for (size_t i = 0; i < n->n; i++) {
		const struct ynode *w = n->items[i], *u, *on, *to;
		struct rb_notify *nt;
		const char *s, *why;

		if (w->kind != Y_MAP) {
			err_at(rb, e, w, "a notify entry is a mapping (url:, on:, timeout:), not %s",
			    ynode_kind_name(w));
			continue;
		}
		check_keys(rb, e, w, notify_keys, "a notify entry");
		nt = &rb->notify[rb->nnotify++];
		nt->node = w;
		nt->on = NOTIFY_ALL;
		nt->timeout_ms = NOTIFY_DEFAULT_TIMEOUT_MS;
		if ((u = ymap_get(w, "url")) == NULL)
			err_at(rb, e, w, "notify entry: missing 'url:' (the webhook, e.g. "
			    "${{ secrets.slack_hook }})");
		else if ((s = want_string(rb, e, u, "url")) != NULL) {
			nt->url = xstrdup(s);
			if (!expr_has_template(s) && (why = http_url_problem(s)) != NULL)
				err_at(rb, e, u, "notify url '%s': %s", s, why);
		}
		if ((on = ymap_get(w, "on")) != NULL) {
			nt->on = 0;
			if (on->kind != Y_SEQ || on->n == 0)
				err_at(rb, e, on, "on: must be a list such as [failure, finish] (events: "
				    "start, failure, rollback, finish, pause), not %s",
				    on->kind == Y_SEQ ? "an empty list" : ynode_kind_name(on));
			for (size_t j = 0; on->kind == Y_SEQ && j < on->n; j++) {
				const struct ynode *ev = on->items[j];
				size_t k;

				for (k = 0; notify_events[k] != NULL; k++)
					if (ev->kind == Y_SCALAR && strcmp(ev->str, notify_events[k]) == 0)
						break;
				if (notify_events[k] != NULL) {
					nt->on |= 1u << k;
				} else if (ev->kind != Y_SCALAR) {
					err_at(rb, e, ev, "notify event must be a word (start, failure, "
					    "rollback, finish, pause), not %s", ynode_kind_name(ev));
				} else {
					const char *dym = did_you_mean(ev->str, notify_events);

					err_at(rb, e, ev, "unknown notify event '%s'%s%s%s (use start, "
					    "failure, rollback, finish, pause)", ev->str,
					    dym ? " (did you mean '" : "", dym ? dym : "", dym ? "'?)" : "");
				}
			}
		}
		if ((to = ymap_get(w, "timeout")) != NULL &&
		    want_duration(rb, e, to, "timeout", &nt->timeout_ms) == 0 &&
		    (nt->timeout_ms < 1 || nt->timeout_ms > NOTIFY_MAX_TIMEOUT_MS))
			err_at(rb, e, to, "notify timeout must be from 1ms to 30s: a webhook must not "
			    "hold up the migration");
	}
}

/* what a rollback does about step S, whose params at validate time are P
 * (NULL when they do not check out) */
static enum rb_undo_kind
undo_kind(const struct rb_step *s, const json_t *p)
{
	if (s->undo != NULL)
		return RB_UNDOABLE;
	if (s->read_only)
		return RB_READ_ONLY;
	if (s->type->undo == NULL)
		return RB_NOT_UNDONE;
	if (s->type->can_undo != NULL && p != NULL && !s->type->can_undo(s->type, p))
		return RB_NOT_UNDONE;
	return RB_UNDOABLE;
}

static struct rb_undo *
parse_undo(struct runbook *rb, struct yerrs *e, const struct ynode *n, const char *stepid)
{
	struct rb_undo *u;
	const char *uses;
	const struct ynode *with;
	char *err = NULL;

	if (n->kind != Y_MAP) {
		err_at(rb, e, n, "step '%s': undo must be a mapping with uses: and with: (a step of its own)", stepid);
		return NULL;
	}
	check_keys(rb, e, n, undo_keys, "undo");
	u = xcalloc(1, sizeof *u);
	u->node = n;
	u->timeout_ms = 0;
	uses = want_string(rb, e, ymap_get(n, "uses"), "undo: uses");
	if (ymap_get(n, "uses") == NULL)
		err_at(rb, e, n, "step '%s': undo needs 'uses:' (the step type that puts things back)", stepid);
	if (uses != NULL) {
		u->uses = xstrdup(uses);
		u->type = registry_get(rb->reg, uses, &err);
		if (u->type == NULL)
			err_at(rb, e, ymap_get(n, "uses"), "%s", err);
		free(err);
	}
	with = ymap_get(n, "with");
	if (with != NULL && with->kind != Y_MAP)
		err_at(rb, e, with, "undo: with must be a mapping of params");
	u->with_node = with && with->kind == Y_MAP ? with : NULL;
	u->with = u->with_node ? ynode_json(u->with_node) : json_object();
	want_duration(rb, e, ymap_get(n, "timeout"), "undo: timeout", &u->timeout_ms);
	return u;
}

static void
free_undo(struct rb_undo *u)
{
	if (u == NULL)
		return;
	free(u->uses);
	json_decref(u->with);
	free(u);
}

/* read_only: true on a step of exec, ssh or http (NODE): the author's word
 * that its command or request only reads, so a rollback has nothing to
 * undo there (not "left in place", not exit 6); other types say it
 * themselves */
static void
vouch_read_only(struct runbook *rb, struct yerrs *e, const struct ynode *node, struct rb_step *s)
{
	bool vouched = false, vouchable = false;
	const json_t *m = json_object_get(s->with, "method");

	want_bool(rb, e, node, "read_only", &vouched);
	for (size_t i = 0; s->uses != NULL && vouch_types[i] != NULL; i++)
		if (strcmp(s->uses, vouch_types[i]) == 0)
			vouchable = true;
	if (s->type != NULL && !vouchable) {
		err_at(rb, e, node, "step '%s': read_only: is for exec, ssh and http, whose effect is the "
		    "command or request you write; %s says itself whether it changes things", s->id,
		    s->uses);
		return;
	}
	if (!vouched)
		return;
	s->read_only = true;
	if (s->uses != NULL && strcmp(s->uses, "http") == 0 && json_is_string(m) &&
	    !expr_has_template(json_string_value(m)) &&
	    strcasecmp(json_string_value(m), "GET") != 0 && strcasecmp(json_string_value(m), "HEAD") != 0)
		err_at(rb, e, node, "step '%s': read_only: true with method %s, which may change "
		    "things: a read-only request is a GET or a HEAD", s->id, json_string_value(m));
}

/* what a probe adds to a step: read_only: (the author's word, for the
 * types in vouch_types), compare: [output, ...]; and it must only read */
static void
parse_probe(struct runbook *rb, struct yerrs *e, const struct ynode *n, struct rb_step *s)
{
	const struct ynode *ro = ymap_get(n, "read_only"), *cmp = ymap_get(n, "compare");
	bool vouched = false, vouchable = false;

	want_bool(rb, e, ro, "read_only", &vouched);
	for (size_t i = 0; s->uses != NULL && vouch_types[i] != NULL; i++)
		if (strcmp(s->uses, vouch_types[i]) == 0)
			vouchable = true;
	if (s->type != NULL && s->type->waits_for_person) {
		err_at(rb, e, ymap_get(n, "uses"), "probe '%s': %s waits for a person; a probe "
		    "must answer on its own (exec, http, a gate)", s->id, s->uses);
	} else if (s->type != NULL && s->type->read_only) {
		s->read_only = true;
	} else if (s->type != NULL && vouchable && vouched) {
		const json_t *m = json_object_get(s->with, "method");

		s->read_only = true;
		if (strcmp(s->uses, "http") == 0 && json_is_string(m) &&
		    !expr_has_template(json_string_value(m)) &&
		    strcasecmp(json_string_value(m), "GET") != 0 &&
		    strcasecmp(json_string_value(m), "HEAD") != 0)
			err_at(rb, e, ymap_get(s->with_node, "method"), "probe '%s': method %s may "
			    "change things; a probe only reads (GET or HEAD)", s->id,
			    json_string_value(m));
	} else if (s->type != NULL && vouchable) {
		err_at(rb, e, ro != NULL ? ro : ymap_get(n, "uses"), "probe '%s': %s may change "
		    "things and a probe must only read; if this %s only reads, say so with "
		    "read_only: true on the probe", s->id, s->uses,
		    strcmp(s->uses, "http") == 0 ? "request" : "command");
	} else if (s->type != NULL) {
		err_at(rb, e, ro != NULL ? ro : ymap_get(n, "uses"), "probe '%s': %s is not read-only "
		    "and a probe must only read; use a read-only type (health_gate, metric_gate, a "
		    "read-only plugin) or exec, ssh or http with read_only: true", s->id, s->uses);
	}
	if (cmp == NULL)
		return;
	if (cmp->kind != Y_SEQ || cmp->n == 0) {
		err_at(rb, e, cmp, "probe '%s': compare must be a list of output names such as "
		    "[stdout, exit_code], not %s", s->id,
		    cmp->kind == Y_SEQ ? "an empty list" : ynode_kind_name(cmp));
		return;
	}
	s->compare = json_array();
	for (size_t i = 0; i < cmp->n; i++) {
		const char *k = want_string(rb, e, cmp->items[i], "compare: an output name");

		if (k != NULL)
			json_array_append_new(s->compare, json_string(k));
	}
}

/* ---- reuse: for_each: and include: ------------------------------------
 *
 * The steps: list is expanded before any step is read: a step with
 * for_each: becomes one step per item (id "<id>-<item>"), a group
 * {for_each:, steps:} repeats its steps per item in order, and
 * {include: FILE, with:} puts FILE's steps in its place.  Each copy keeps
 * the YAML node it was written as (messages point there, in its own file)
 * and a scope: `each` and `inputs` for its expressions (expr_set_scope).
 */
static const char *const group_keys[] = { "for_each", "steps", NULL };
static const char *const include_keys[] = { "include", "with", "for_each", NULL };

static void fold_includes_sha(struct runbook *rb, struct yerrs *e);

struct rb_inst {
	const struct ynode *node;	/* the step as written */
	char *suffix;			/* the for_each item, or NULL */
	json_t *scope;			/* {each, inputs}, or NULL */
};

struct expansion {
	struct rb_inst *v;
	size_t n;
	const char *files[RB_MAX_INCLUDE_DEPTH + 2];	/* the include chain (abspaths) */
	const char *shown[RB_MAX_INCLUDE_DEPTH + 2];	/* the same, as in messages */
	int depth;
	bool full;
};

struct rb_ctx {
	const json_t *each;		/* the item, or NULL */
	const char *item;		/* its text: the id suffix */
	const struct ynode *each_node;	/* the for_each: that set it */
	const json_t *inputs;		/* or NULL */
	const char *path;		/* the file of the list, as in messages */
};

static json_t *
ctx_scope(const struct rb_ctx *c)
{
	json_t *s;

	if (c->each == NULL && c->inputs == NULL)
		return NULL;
	s = json_object();
	if (c->each != NULL)
		json_object_set(s, "each", (json_t *)c->each);
	if (c->inputs != NULL)
		json_object_set(s, "inputs", (json_t *)c->inputs);
	return s;
}

static void
add_inst(struct runbook *rb, struct yerrs *e, struct expansion *x, const struct ynode *n,
    const struct rb_ctx *c)
{
	if (x->n >= RB_MAX_STEPS) {
		if (!x->full)
			err_at(rb, e, n, "the runbook expands to more than %d steps (for_each: and "
			    "include: included): split it into several runbooks", RB_MAX_STEPS);
		x->full = true;
		return;
	}
	x->v = xrealloc(x->v, (x->n + 1) * sizeof *x->v);
	x->v[x->n].node = n;
	x->v[x->n].suffix = c->item != NULL ? xstrdup(c->item) : NULL;
	x->v[x->n].scope = ctx_scope(c);
	x->n++;
}

static bool
id_part(const char *s)
{
	if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9')))
		return false;
	for (const char *p = s + 1; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		    *p == '_' || *p == '-'))
			return false;
	return true;
}

/* for_each: a list of scalars that can end a step id; false after reporting */
static bool
check_each(struct runbook *rb, struct yerrs *e, const struct ynode *fe, const struct rb_ctx *c)
{
	bool ok = true;

	if (c->each_node != NULL) {
		err_at(rb, e, fe, "for_each inside the for_each at %s:%d: for_each does not nest "
		    "(list every combination in one for_each)", c->each_node->file != NULL ?
		    c->each_node->file : rb->path, c->each_node->line);
		return false;
	}
	if (fe->kind != Y_SEQ) {
		err_at(rb, e, fe, "for_each must be a list of items such as [10, 25, 50, 100], not %s",
		    ynode_kind_name(fe));
		return false;
	}
	if (fe->n == 0) {
		err_at(rb, e, fe, "for_each is empty: list at least one item");
		return false;
	}
	if (fe->n > RB_MAX_EACH) {
		err_at(rb, e, fe, "for_each has %zu items, over the limit of %d", fe->n, RB_MAX_EACH);
		return false;
	}
	for (size_t i = 0; i < fe->n; i++) {
		const struct ynode *it = fe->items[i];
		json_t *v = it->kind == Y_SCALAR ? yscalar_json(it) : NULL;

		if (v == NULL || json_is_null(v)) {
			err_at(rb, e, it, "a for_each item must be a number or a word (it ends the "
			    "step's id), not %s", ynode_kind_name(it));
			ok = false;
		} else if (!id_part(it->str)) {
			err_at(rb, e, it, "for_each item '%s' cannot end a step id: use lower-case "
			    "letters, digits, '-' and '_', starting with a letter or digit", it->str);
			ok = false;
		} else {
			for (size_t j = 0; j < i; j++)
				if (fe->items[j]->kind == Y_SCALAR &&
				    strcmp(fe->items[j]->str, it->str) == 0) {
					err_at(rb, e, it, "for_each item '%s' is listed twice (first "
					    "at line %d): each copy needs its own id", it->str,
					    fe->items[j]->line);
					ok = false;
					break;
				}
		}
		json_decref(v);
	}
	return ok;
}

static void expand_list(struct runbook *rb, struct yerrs *e, struct expansion *x,
    const struct ynode *list, const struct rb_ctx *c);

static bool
json_has_template(const json_t *v)
{
	const char *k;
	json_t *m;
	size_t i;

	if (json_is_string(v))
		return expr_has_template(json_string_value(v));
	if (json_is_array(v)) {
		json_array_foreach(v, i, m)
			if (json_has_template(m))
				return true;
	}
	if (json_is_object(v)) {
		json_object_foreach((json_t *)v, k, m)
			if (json_has_template(m))
				return true;
	}
	return false;
}

/* the include's with: evaluated now (vars, each, inputs): an object */
static json_t *
include_inputs(struct runbook *rb, struct yerrs *e, const struct ynode *with,
    const struct rb_ctx *c)
{
	json_t *in = json_object(), *scope = ctx_scope(c);

	expr_set_scope(rb->x, scope);
	for (size_t i = 0; with != NULL && i < with->n; i++) {
		const char *k = with->keys[i]->str;
		json_t *t = ynode_json(with->items[i]), *v;
		char *err = NULL;

		if (!valid_ident(k))
			err_at(rb, e, with->keys[i], "input name '%s' must be a Lua identifier "
			    "([A-Za-z_][A-Za-z0-9_]*)", k);
		v = expr_render(rb->x, t, &err);
		if (v == NULL || json_has_template(v))
			json_object_set_new(in, k, json_null());	/* said here, not missing */
		if (v == NULL) {
			err_at(rb, e, with->items[i], "include with: '%s': %s", k, err);
		} else if (json_has_template(v)) {
			err_at(rb, e, with->items[i], "include with: '%s' needs what is known only "
			    "while the run goes (steps, secrets, env or run): an input is fixed when "
			    "the runbook is read, from vars, each or inputs; write that expression in "
			    "the included file instead", k);
		} else {
			json_object_set(in, k, v);
		}
		free(err);
		json_decref(v);
		json_decref(t);
	}
	expr_set_scope(rb->x, NULL);
	json_decref(scope);
	return in;
}

static void
include_one(struct runbook *rb, struct yerrs *e, struct expansion *x, const struct ynode *n,
    const char *inc, const struct rb_ctx *c)
{
	const struct ynode *where = ymap_get(n, "include"), *with = ymap_get(n, "with");
	const struct ynode *steps, *declared = NULL;
	char *dir, *shown, *abs;
	struct rb_include *ri;
	struct rb_ctx sub;
	json_t *given, *inputs;
	size_t nerr0;

	dir = path_dirname(c->path);
	shown = inc[0] == '/' || strcmp(dir, ".") == 0 ? xstrdup(inc) : path_join(dir, inc);
	free(dir);
	abs = realpath(shown, NULL);
	if (abs == NULL) {
		err_at(rb, e, where, "cannot read included file '%s': %s", shown, strerror(errno));
		free(shown);
		return;
	}
	for (int i = 0; i <= x->depth; i++)
		if (strcmp(x->files[i], abs) == 0) {
			struct sbuf sb;

			sb_init(&sb);
			for (int j = i; j <= x->depth; j++)
				sb_addf(&sb, "%s -> ", x->shown[j]);
			sb_adds(&sb, shown);
			err_at(rb, e, where, "include cycle: %s (a file cannot include itself, even "
			    "through others)", sb.buf);
			sb_release(&sb);
			free(shown);
			free(abs);
			return;
		}
	if (x->depth >= RB_MAX_INCLUDE_DEPTH) {
		err_at(rb, e, where, "includes nest more than %d files deep: '%s' is one too many",
		    RB_MAX_INCLUDE_DEPTH, shown);
		free(shown);
		free(abs);
		return;
	}
	/* a file included again (by a for_each, or from two places) is read once */
	ri = NULL;
	for (size_t i = 0; i < rb->nincludes && ri == NULL; i++)
		if (strcmp(rb->includes[i].abspath, abs) == 0)
			ri = &rb->includes[i];
	if (ri != NULL) {
		free(shown);
		free(abs);
		shown = ri->path;
		abs = ri->abspath;
	} else {
		rb->includes = xrealloc(rb->includes, (rb->nincludes + 1) * sizeof *rb->includes);
		ri = &rb->includes[rb->nincludes++];
		ri->path = shown;
		ri->abspath = abs;
		ri->root = yparse_file(shown, shown, e);
	}
	if (ri->root == NULL)
		return;
	steps = ri->root;
	if (ri->root->kind == Y_MAP) {
		check_keys(rb, e, ri->root, included_keys, "an included file");
		steps = ymap_get(ri->root, "steps");
		declared = ymap_get(ri->root, "inputs");
		if (steps == NULL) {
			err_at(rb, e, ri->root, "an included file needs steps: (the list of steps "
			    "it brings)");
			return;
		}
		if (declared != NULL && declared->kind != Y_MAP) {
			err_at(rb, e, declared, "inputs must be a mapping of name: default (~ for "
			    "an input the include must give), not %s", ynode_kind_name(declared));
			return;
		}
	}
	if (steps->kind != Y_SEQ || steps->n == 0) {
		err_at(rb, e, steps, "an included file is a list of steps (or inputs: and "
		    "steps:), not %s", steps->kind == Y_SEQ ? "an empty list" : ynode_kind_name(steps));
		return;
	}
	if (with != NULL && with->kind != Y_MAP) {
		err_at(rb, e, with, "include with: must be a mapping of inputs, not %s",
		    ynode_kind_name(with));
		return;
	}
	nerr0 = e->n;
	given = include_inputs(rb, e, with, c);
	if (declared == NULL) {
		inputs = json_incref(given);
	} else {
		const char **names = xcalloc(declared->n + 1, sizeof *names);

		inputs = json_object();
		for (size_t i = 0; i < declared->n; i++) {
			const char *k = declared->keys[i]->str;
			json_t *v = json_object_get(given, k);

			names[i] = k;
			if (!valid_ident(k))
				err_at(rb, e, declared->keys[i], "input name '%s' must be a Lua "
				    "identifier ([A-Za-z_][A-Za-z0-9_]*)", k);
			if (v != NULL) {
				json_incref(v);
			} else {
				v = ynode_json(declared->items[i]);
				if (json_is_null(v)) {
					err_at(rb, e, where, "include '%s': missing input '%s' (%s:%d "
					    "declares it without a default): give it under with:", inc,
					    k, shown, declared->keys[i]->line);
					json_decref(v);
					continue;
				}
			}
			json_object_set_new(inputs, k, v);
		}
		for (size_t i = 0; with != NULL && i < with->n; i++) {
			const char *k = with->keys[i]->str, *dym;

			if (ymap_get(declared, k) != NULL)
				continue;
			dym = did_you_mean(k, names);
			if (dym != NULL)
				err_at(rb, e, with->keys[i], "include '%s' has no input '%s' (did you "
				    "mean '%s'?)", inc, k, dym);
			else
				err_at(rb, e, with->keys[i], "include '%s' has no input '%s' (%s "
				    "declares its inputs at line %d)", inc, k, shown, declared->line);
		}
		free(names);
	}
	json_decref(given);
	if (e->n > nerr0) {	/* its steps would only repeat the mistake */
		json_decref(inputs);
		return;
	}
	sub = *c;
	sub.inputs = inputs;
	sub.path = shown;
	x->depth++;
	x->files[x->depth] = abs;
	x->shown[x->depth] = shown;
	expand_list(rb, e, x, steps, &sub);
	x->depth--;
	json_decref(inputs);
}

/* run fn over each item of for_each fe (checked), or once when fe is NULL */
static void
each_item(struct runbook *rb, struct yerrs *e, struct expansion *x, const struct ynode *n,
    const struct ynode *fe, const struct rb_ctx *c,
    void (*fn)(struct runbook *, struct yerrs *, struct expansion *, const struct ynode *,
    const struct rb_ctx *))
{
	if (fe == NULL) {
		fn(rb, e, x, n, c);
		return;
	}
	if (!check_each(rb, e, fe, c))
		return;
	for (size_t i = 0; i < fe->n && !x->full; i++) {
		struct rb_ctx sub = *c;
		json_t *v = yscalar_json(fe->items[i]);

		sub.each = v;
		sub.item = fe->items[i]->str;
		sub.each_node = fe;
		fn(rb, e, x, n, &sub);
		json_decref(v);
	}
}

static void
do_step(struct runbook *rb, struct yerrs *e, struct expansion *x, const struct ynode *n,
    const struct rb_ctx *c)
{
	add_inst(rb, e, x, n, c);
}

static void
do_group(struct runbook *rb, struct yerrs *e, struct expansion *x, const struct ynode *n,
    const struct rb_ctx *c)
{
	expand_list(rb, e, x, ymap_get(n, "steps"), c);
}

static void
do_include(struct runbook *rb, struct yerrs *e, struct expansion *x, const struct ynode *n,
    const struct rb_ctx *c)
{
	include_one(rb, e, x, n, ymap_get(n, "include")->str, c);
}

static void
expand_list(struct runbook *rb, struct yerrs *e, struct expansion *x,
    const struct ynode *list, const struct rb_ctx *c)
{
	for (size_t i = 0; i < list->n && !x->full; i++) {
		const struct ynode *n = list->items[i], *fe = ymap_get(n, "for_each"), *sub;

		if (n->kind != Y_MAP) {
			add_inst(rb, e, x, n, c);	/* parse_step says what is wrong */
		} else if (ymap_get(n, "include") != NULL) {
			check_keys(rb, e, n, include_keys, "an include");
			if (want_string(rb, e, ymap_get(n, "include"), "include") != NULL)
				each_item(rb, e, x, n, fe, c, do_include);
		} else if ((sub = ymap_get(n, "steps")) != NULL) {
			check_keys(rb, e, n, group_keys, "a for_each group");
			if (fe == NULL)
				err_at(rb, e, n, "a group of steps needs for_each: (it repeats its "
				    "steps once per item); a plain step goes straight in the list");
			else if (sub->kind != Y_SEQ || sub->n == 0)
				err_at(rb, e, sub, "the steps: of a for_each group must be a list of "
				    "steps, not %s", sub->kind == Y_SEQ ? "an empty list" :
				    ynode_kind_name(sub));
			else
				each_item(rb, e, x, n, fe, c, do_group);
		} else {
			each_item(rb, e, x, n, fe, c, do_step);
		}
	}
}

/*
 * name: or description: of a step copied by for_each: or brought by
 * include: may say which copy it is (${{ each }}, ${{ inputs.x }}, vars):
 * evaluated when the runbook is read.  Others are text as written.
 */
static char *
copy_text(struct runbook *rb, struct yerrs *e, const struct ynode *n, const char *s,
    const json_t *scope, const char *what)
{
	json_t *t, *v;
	char *err = NULL, *out;

	if (scope == NULL || !expr_has_template(s))
		return xstrdup(s);
	t = json_string(s);
	expr_set_scope(rb->x, scope);
	v = expr_render(rb->x, t, &err);
	expr_set_scope(rb->x, NULL);
	json_decref(t);
	if (v == NULL) {
		err_at(rb, e, n, "%s: %s", what, err);
		free(err);
		return xstrdup(s);
	}
	if (json_is_string(v) && !expr_has_template(json_string_value(v)))
		out = xstrdup(json_string_value(v));
	else if (!json_is_string(v))
		out = json_dumps(v, JSON_ENCODE_ANY);
	else
		out = xstrdup(s);	/* needs the run: shown as written */
	json_decref(v);
	return out;
}

/* a step (probe false) of rb->steps or a probe of rb->probes: the same
 * syntax, but a probe has no if:, undo: or idempotent: */
static void
parse_step(struct runbook *rb, struct yerrs *e, const struct ynode *n, size_t idx,
    int64_t dtimeout, int dretries, int64_t ddelay, bool dfixed, bool probe,
    const struct rb_inst *in, struct strmap *seen)
{
	struct rb_step *all = probe ? rb->probes : rb->steps;
	struct rb_step *s = &all[idx];
	const char *kind = probe ? "probe" : "step";
	const char *id, *uses, *str;
	size_t i;
	const struct ynode *with, *un;
	char *err = NULL;

	s->node = n;
	s->scope = in != NULL && in->scope != NULL ? json_incref(in->scope) : NULL;
	s->timeout_ms = dtimeout;
	s->retries = dretries;
	s->retry_delay_ms = ddelay;
	s->backoff_fixed = dfixed;
	if (n->kind != Y_MAP) {
		s->id = xasprintf("%s-%zu", kind, idx + 1);
		strmap_put(seen, s->id, idx, NULL);
		s->with = json_object();
		err_at(rb, e, n, "%s %zu must be a mapping with id: and uses:, not %s", kind, idx + 1,
		    ynode_kind_name(n));
		return;
	}
	check_keys(rb, e, n, probe ? probe_keys : step_keys, probe ? "a probe" : "a step");
	id = want_string(rb, e, ymap_get(n, "id"), "id");
	if (ymap_get(n, "id") == NULL)
		err_at(rb, e, n, "%s %zu has no id (every %s needs a unique id: [a-z0-9][a-z0-9_-]*)",
		    kind, idx + 1, kind);
	else if (id != NULL && !valid_id(id))
		err_at(rb, e, ymap_get(n, "id"), "malformed %s id '%s' (use [a-z0-9][a-z0-9_-]*, at most 64)",
		    kind, id);
	if (id != NULL) {
		/* a copy made by for_each: the step's id, '-', the item */
		s->id = in != NULL && in->suffix != NULL ? xasprintf("%s-%s", id, in->suffix) :
		    xstrdup(id);
		if (valid_id(id) && !valid_id(s->id))
			err_at(rb, e, ymap_get(n, "id"), "step id '%s' with the for_each item '%s' "
			    "is '%s', over 64 characters: shorten the id", id, in->suffix, s->id);
		/* the first earlier step (or probe) with this id, if any */
		if (!strmap_put(seen, s->id, idx, &i)) {
			const struct ynode *first = all[i].node;

			if (first->file != NULL && n->file != NULL && strcmp(first->file, n->file) != 0)
				err_at(rb, e, ymap_get(n, "id"), "duplicate %s id '%s' (first at %s:%d)",
				    kind, s->id, first->file, first->line);
			else if (first == n)
				err_at(rb, e, ymap_get(n, "id"), "duplicate %s id '%s' (this step is "
				    "included twice: give each include its own for_each item)", kind, s->id);
			else
				err_at(rb, e, ymap_get(n, "id"), "duplicate %s id '%s' (first at line %d)",
				    kind, s->id, first->line);
		}
	} else {
		s->id = xasprintf("%s-%zu", kind, idx + 1);
		strmap_put(seen, s->id, idx, NULL);
	}
	if ((str = want_string(rb, e, ymap_get(n, "name"), "name")) != NULL)
		s->name = copy_text(rb, e, ymap_get(n, "name"), str, s->scope, "name");
	if ((str = want_string(rb, e, ymap_get(n, "description"), "description")) != NULL)
		s->description = copy_text(rb, e, ymap_get(n, "description"), str, s->scope,
		    "description");
	uses = want_string(rb, e, ymap_get(n, "uses"), "uses");
	if (ymap_get(n, "uses") == NULL)
		err_at(rb, e, n, "%s '%s' has no uses: (the step type: exec, wait, or a plugin like release.symlink)",
		    kind, s->id);
	if (uses != NULL) {
		s->uses = xstrdup(uses);
		s->type = registry_get(rb->reg, uses, &err);
		if (s->type == NULL)
			err_at(rb, e, ymap_get(n, "uses"), "%s", err);
		free(err);
		err = NULL;
	}
	with = ymap_get(n, "with");
	if (with != NULL && with->kind != Y_MAP)
		err_at(rb, e, with, "%s '%s': with must be a mapping of params", kind, s->id);
	s->with_node = with && with->kind == Y_MAP ? with : NULL;
	s->with = s->with_node ? ynode_json(s->with_node) : json_object();
	if (!probe && (s->if_node = ymap_get(n, "if")) != NULL) {
		json_t *lit = s->if_node->kind == Y_SCALAR ? yscalar_json(s->if_node) : NULL;

		if (s->if_node->kind != Y_SCALAR)
			err_at(rb, e, s->if_node, "step '%s': if must be an expression like ${{ vars.env == \"prod\" }}, not %s",
			    s->id, ynode_kind_name(s->if_node));
		else if (!json_is_boolean(lit) && !expr_has_template(s->if_node->str)) {
			char *hint = expr_habit(s->if_node->str);

			if (hint != NULL)
				err_at(rb, e, s->if_node, "step '%s': if: '%s' is a GitHub Actions condition: %s",
				    s->id, s->if_node->str, hint);
			else
				err_at(rb, e, s->if_node, "step '%s': if must be an expression like ${{ %s }}, not the plain text '%s' (which would always be true)",
				    s->id, s->if_node->str, s->if_node->str);
			free(hint);
		} else
			s->if_expr = xstrdup(s->if_node->str);
		json_decref(lit);
	}
	want_duration(rb, e, ymap_get(n, "timeout"), "timeout", &s->timeout_ms);
	if (ymap_get(n, "timeout") != NULL && s->timeout_ms == 0)
		err_at(rb, e, ymap_get(n, "timeout"), "timeout must be more than 0");
	want_count(rb, e, ymap_get(n, "retries"), "retries", &s->retries);
	want_duration(rb, e, ymap_get(n, "retry_delay"), "retry_delay", &s->retry_delay_ms);
	if ((un = ymap_get(n, "backoff")) != NULL) {
		if (un->kind == Y_SCALAR && strcmp(un->str, "fixed") == 0)
			s->backoff_fixed = true;
		else if (un->kind == Y_SCALAR && strcmp(un->str, "exponential") == 0)
			s->backoff_fixed = false;
		else
			err_at(rb, e, un, "backoff must be 'exponential' (the default: the delay doubles) or 'fixed'");
	}
	s->idempotent = s->type ? s->type->idempotent : false;
	if (probe) {
		parse_probe(rb, e, n, s);
		return;
	}
	want_bool(rb, e, ymap_get(n, "idempotent"), "idempotent", &s->idempotent);
	s->read_only = s->type ? s->type->read_only : false;
	if ((un = ymap_get(n, "read_only")) != NULL)
		vouch_read_only(rb, e, un, s);
	if ((un = ymap_get(n, "undo")) != NULL)
		s->undo = parse_undo(rb, e, un, s->id);
	if (s->undo != NULL && s->read_only && ymap_get(n, "read_only") != NULL)
		err_at(rb, e, ymap_get(n, "read_only"), "step '%s': read_only: true and an undo: a step "
		    "that only reads has nothing to undo; drop one of them", s->id);
}

/* probes: read-only steps a drill runs before the first run and after each
 * rollback; they see vars, secrets and env, not the outputs of steps */
static void
parse_probes(struct runbook *rb, struct yerrs *e, const struct ynode *n,
    const char *const *ids, const char *const *vars, const char *const *secrets,
    int64_t dtimeout, int dretries, int64_t ddelay, bool dfixed)
{
	const char *none[] = { NULL };
	struct strmap seen = { 0 };

	if (n == NULL)
		return;
	if (n->kind != Y_SEQ) {
		err_at(rb, e, n, "probes must be a list of read-only steps (- id: ... uses: ...), not %s",
		    ynode_kind_name(n));
		return;
	}
	if (n->n == 0) {
		err_at(rb, e, n, "probes is empty: list the read-only checks a drill compares, or leave probes: out");
		return;
	}
	rb->probes = xcalloc(n->n, sizeof *rb->probes);
	rb->nprobes = n->n;
	for (size_t j = 0; j < n->n; j++)
		parse_step(rb, e, n->items[j], j, dtimeout, dretries, ddelay, dfixed, true, NULL,
		    &seen);
	strmap_release(&seen);
	for (size_t j = 0; j < rb->nprobes; j++) {
		struct rb_step *p = &rb->probes[j];
		size_t nerr0 = e->n;

		check_exprs(rb, e, p->with_node, vars, secrets, none, ids);
		if (e->n == nerr0) {
			char *what = xasprintf("probe '%s'", p->id);

			warn_env(rb, p->with_node, what);
			free(what);
		}
		for (size_t k = nerr0; k < e->n; k++) {
			/* no step has run when a probe runs first: say why */
			char *at = strstr(e->v[k].msg, ", which has not run at this point");

			if (at != NULL) {
				char *m;

				*at = '\0';
				m = xasprintf("%s: a probe runs before and after the runs, so it sees "
				    "vars, secrets and env, not the outputs of steps", e->v[k].msg);
				free(e->v[k].msg);
				e->v[k].msg = m;
			}
		}
		if (p->type != NULL && e->n == nerr0 &&
		    !(ymap_get(p->node, "with") != NULL && p->with_node == NULL)) {
			char *what = xasprintf("probe '%s'", p->id);
			char *from = timeout_from(rb, ymap_get(p->node, "timeout"), "the probe's",
			    p->timeout_ms);

			static_params(rb, e, ymap_get(p->node, "uses"), p->type, p->with,
			    p->with_node, what, p->timeout_ms, from, NULL);
			free(what);
			free(from);
		}
	}
}

static void
parse_defaults(struct runbook *rb, struct yerrs *e, const struct ynode *n,
    int64_t *timeout, int *retries, int64_t *delay, bool *fixed)
{
	const struct ynode *b;

	if (n == NULL)
		return;
	if (n->kind != Y_MAP) {
		err_at(rb, e, n, "defaults must be a mapping (timeout, retries, retry_delay, backoff)");
		return;
	}
	check_keys(rb, e, n, default_keys, "defaults");
	if (want_duration(rb, e, ymap_get(n, "timeout"), "defaults: timeout", timeout) == 0 &&
	    ymap_get(n, "timeout") != NULL && *timeout == 0)
		err_at(rb, e, ymap_get(n, "timeout"), "defaults: timeout must be more than 0");
	want_count(rb, e, ymap_get(n, "retries"), "defaults: retries", retries);
	want_duration(rb, e, ymap_get(n, "retry_delay"), "defaults: retry_delay", delay);
	if ((b = ymap_get(n, "backoff")) != NULL) {
		if (b->kind == Y_SCALAR && strcmp(b->str, "fixed") == 0)
			*fixed = true;
		else if (!(b->kind == Y_SCALAR && strcmp(b->str, "exponential") == 0))
			err_at(rb, e, b, "backoff must be 'exponential' or 'fixed'");
	}
}

struct runbook *
runbook_load(const char *path, struct registry *reg, const struct rb_opts *o,
    struct yerrs *errs)
{
	struct runbook *rb = xcalloc(1, sizeof *rb);
	const struct ynode *root, *n;
	const char *s;
	int64_t dtimeout = DEFAULT_TIMEOUT_MS, ddelay = DEFAULT_RETRY_DELAY_MS;
	int dretries = 0;
	bool dfixed = false;
	char *err = NULL;

	rb->path = xstrdup(path);
	rb->abspath = path_abs(path);
	rb->reg = reg;
	rb->warns = o != NULL ? o->warns : NULL;
	rb->x = expr_new();
	rb->root = yparse_file(path, rb->path, errs);
	if (rb->root == NULL)
		goto fail;
	if (sha256_file(path, rb->sha256, &err) != 0) {
		yerr(errs, path, 1, 1, "%s", err);
		free(err);
		goto fail;
	}
	root = rb->root;
	if (root->kind != Y_MAP) {
		err_at(rb, errs, root, "a runbook is a mapping (zdm: 1, name:, steps:), not %s",
		    ynode_kind_name(root));
		goto fail;
	}
	check_keys(rb, errs, root, top_keys, "the runbook");
	n = ymap_get(root, "zdm");
	if (n == NULL) {
		err_at(rb, errs, root, "missing 'zdm: 1' (the runbook schema version)");
	} else {
		json_t *v = n->kind == Y_SCALAR ? yscalar_json(n) : NULL;

		if (json_is_string(v) && strcmp(n->str, "1") == 0)
			err_at(rb, errs, n, "zdm must be the number 1, not the string \"1\" (write zdm: 1 without quotes)");
		else if (v == NULL || !json_is_integer(v) || json_integer_value(v) != 1)
			err_at(rb, errs, n, "unsupported schema version '%s' (this zdm reads zdm: 1)",
			    n->kind == Y_SCALAR ? n->str : ynode_kind_name(n));
		json_decref(v);
	}
	n = ymap_get(root, "name");
	if (n == NULL)
		err_at(rb, errs, root, "missing 'name:' (the runbook's name: [a-z0-9][a-z0-9_-]*)");
	else if ((s = want_string(rb, errs, n, "name")) != NULL) {
		if (!valid_id(s))
			err_at(rb, errs, n, "malformed runbook name '%s' (use [a-z0-9][a-z0-9_-]*, at most 64)", s);
		rb->name = xstrdup(s);
	}
	if ((s = want_string(rb, errs, ymap_get(root, "description"), "description")) != NULL)
		rb->description = xstrdup(s);
	parse_vars(rb, errs, ymap_get(root, "vars"));
	parse_secrets(rb, errs, ymap_get(root, "secrets"));
	parse_notify(rb, errs, ymap_get(root, "notify"));
	parse_defaults(rb, errs, ymap_get(root, "defaults"), &dtimeout, &dretries, &ddelay, &dfixed);
	if ((n = ymap_get(root, "on_failure")) != NULL) {
		if (n->kind == Y_SCALAR && strcmp(n->str, "rollback") == 0)
			rb->on_failure = ON_FAILURE_ROLLBACK;
		else if (n->kind == Y_SCALAR && strcmp(n->str, "pause") == 0)
			rb->on_failure = ON_FAILURE_PAUSE;
		else if (n->kind == Y_SCALAR && strcmp(n->str, "abort") == 0)
			rb->on_failure = ON_FAILURE_ABORT;
		else
			err_at(rb, errs, n, "on_failure must be rollback (the default), pause or abort, not '%s'",
			    n->kind == Y_SCALAR ? n->str : ynode_kind_name(n));
	}
	if (o != NULL && o->vars_file != NULL)
		apply_vars_file(rb, errs, o->vars_file);
	for (size_t i = 0; o != NULL && i < o->nvars; i++)
		apply_var_flag(rb, errs, o->vars[i]);

	n = ymap_get(root, "steps");
	if (n == NULL) {
		err_at(rb, errs, root, "missing 'steps:' (the list of steps to run)");
	} else if (n->kind != Y_SEQ) {
		err_at(rb, errs, n, "steps must be a list, not %s", ynode_kind_name(n));
	} else if (n->n == 0) {
		err_at(rb, errs, n, "steps is empty: a runbook needs at least one step");
	} else {
		const char **ids, **vars, **secrets, **before;
		const char *k;
		json_t *v;
		size_t i = 0;

		struct expansion x = { 0 };
		struct rb_ctx top = { 0 };

		{
			char *verr = NULL;

			if (expr_set(rb->x, "vars", rb->vars, &verr) != 0) {
				const struct ynode *vn = ymap_get(root, "vars");

				err_at(rb, errs, vn != NULL ? vn : root, "vars: %s", verr);
				free(verr);
			}
		}
		expr_set_static(rb->x, true);
		expr_defer(rb->x, "run");	/* run.id is not known before the run */
		/* for_each: and include: make the list of steps */
		top.path = rb->path;
		x.files[0] = rb->abspath;
		x.shown[0] = rb->path;
		expand_list(rb, errs, &x, n, &top);
		rb->steps = xcalloc(x.n + 1, sizeof *rb->steps);
		rb->nsteps = x.n;
		for (size_t j = 0; j < x.n; j++)
			parse_step(rb, errs, x.v[j].node, j, dtimeout, dretries, ddelay, dfixed, false,
			    &x.v[j], &rb->step_index);
		for (size_t j = 0; j < x.n; j++) {
			free(x.v[j].suffix);
			json_decref(x.v[j].scope);
		}
		free(x.v);
		if (rb->nincludes > 0)
			fold_includes_sha(rb, errs);
		/* expressions: syntax and references, then the static params */
		ids = xcalloc(rb->nsteps + 1, sizeof *ids);
		for (size_t j = 0; j < rb->nsteps; j++)
			ids[j] = rb->steps[j].id;
		expr_set_step_ids(rb->x, ids, rb->nsteps);
		vars = xcalloc(json_object_size(rb->vars) + 1, sizeof *vars);
		json_object_foreach(rb->vars, k, v)
			vars[i++] = k;
		secrets = xcalloc(rb->nsecrets + 1, sizeof *secrets);
		for (size_t j = 0; j < rb->nsecrets; j++)
			secrets[j] = rb->secrets[j].name;
		before = xcalloc(rb->nsteps + 2, sizeof *before);
		for (size_t j = 0; j < rb->nsteps; j++) {
			struct rb_step *st = &rb->steps[j];
			char *what = xasprintf("step '%s'", st->id);
			size_t nerr0 = errs->n;

			/* before[] holds the ids of steps 0..j-1 here, NULL-terminated */
			expr_set_scope(rb->x, st->scope);
			check_exprs(rb, errs, st->with_node, vars, secrets, before, ids);
			check_exprs(rb, errs, st->if_node, vars, secrets, before, ids);
			if (errs->n == nerr0)
				warn_env(rb, st->with_node, what);
			if (st->if_expr != NULL && errs->n == nerr0) {
				bool yes;
				char *err = NULL;

				if (expr_truthy(rb->x, st->if_expr, &yes, &err) != 0)
					err_at(rb, errs, st->if_node, "step '%s': if: %s", st->id, err);
				free(err);
			}
			/* params are evaluated only when their expressions check out:
			 * one mistake, one message */
			if (st->type != NULL && errs->n == nerr0 &&
			    !(ymap_get(st->node, "with") != NULL && st->with_node == NULL)) {
				char *from = timeout_from(rb, ymap_get(st->node, "timeout"), "the step's",
				    st->timeout_ms);
				json_t *sp = NULL;

				static_params(rb, errs, ymap_get(st->node, "uses"), st->type,
				    st->with, st->with_node, what, st->timeout_ms, from, &sp);
				free(from);
				st->undo_kind = undo_kind(st, sp);
				/* nothing in with: to resolve at run time: these are
				 * the params every attempt gets */
				if (sp != NULL && st->with != NULL && !has_expr(st->with))
					st->checked = sp;
				else
					json_decref(sp);
			}
			free(what);
			before[j] = ids[j];	/* an undo sees its own step's outputs (and the
						 * next step sees this one) */
			nerr0 = errs->n;
			if (st->undo != NULL)
				check_exprs(rb, errs, st->undo->with_node, vars, secrets, before, ids);
			if (st->undo != NULL && errs->n == nerr0) {
				what = xasprintf("undo of step '%s'", st->id);
				warn_env(rb, st->undo->with_node, what);
				free(what);
			}
			if (st->undo != NULL && st->undo->type != NULL && errs->n == nerr0 &&
			    !(ymap_get(st->undo->node, "with") != NULL && st->undo->with_node == NULL)) {
				const struct ynode *own = ymap_get(st->undo->node, "timeout");
				int64_t tmo = st->undo->timeout_ms ? st->undo->timeout_ms : st->timeout_ms;
				char *from = own != NULL && st->undo->timeout_ms ?
				    timeout_from(rb, own, "the undo's", tmo) :
				    timeout_from(rb, ymap_get(st->node, "timeout"), "the step's", tmo);

				what = xasprintf("undo of step '%s'", st->id);
				static_params(rb, errs, ymap_get(st->undo->node, "uses"),
				    st->undo->type, st->undo->with, st->undo->with_node, what, tmo, from, NULL);
				free(what);
				free(from);
			}
			expr_set_scope(rb->x, NULL);
		}
		free(before);
		parse_probes(rb, errs, ymap_get(root, "probes"), ids, vars, secrets, dtimeout,
		    dretries, ddelay, dfixed);
		for (size_t j = 0; j < rb->nnotify; j++) {
			/* a URL sees vars, secrets and env, not steps */
			const char *none[] = { NULL };

			check_exprs(rb, errs, ymap_get(rb->notify[j].node, "url"), vars, secrets,
			    none, ids);
		}
		expr_set_static(rb->x, false);
		free(ids);
		free(vars);
		free(secrets);
	}
	errs->first = rb->path;	/* the runbook's own mistakes, then its includes' */
	yerrs_sort(errs);
	if (errs->n > 0)
		goto fail;
	errs->first = NULL;
	return rb;
fail:
	errs->first = rb->path;
	yerrs_sort(errs);
	errs->first = NULL;
	runbook_free(rb);
	return NULL;
}

/*
 * The runbook's sha256 covers its included files: one that changes
 * between a run and its resume is a changed runbook.  With includes it is
 * the sha256 of "<runbook's sha256>\n" and "<path>\t<sha256>\n" per include.
 */
static void
fold_includes_sha(struct runbook *rb, struct yerrs *e)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(ctx);
		err_at(rb, e, NULL, "sha256: cannot initialise digest");
		return;
	}
	EVP_DigestUpdate(ctx, rb->sha256, strlen(rb->sha256));
	EVP_DigestUpdate(ctx, "\n", 1);
	for (size_t i = 0; i < rb->nincludes; i++) {
		char sha[65], *err = NULL;

		if (rb->includes[i].root == NULL)
			continue;
		if (sha256_file(rb->includes[i].abspath, sha, &err) != 0) {
			yerr(e, rb->includes[i].path, 1, 1, "%s", err);
			free(err);
			continue;
		}
		EVP_DigestUpdate(ctx, rb->includes[i].path, strlen(rb->includes[i].path));
		EVP_DigestUpdate(ctx, "\t", 1);
		EVP_DigestUpdate(ctx, sha, strlen(sha));
		EVP_DigestUpdate(ctx, "\n", 1);
	}
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	EVP_MD_CTX_free(ctx);
	for (unsigned int i = 0; i < mdlen && i < 32; i++)
		snprintf(rb->sha256 + 2 * i, 3, "%02x", md[i]);
}

/* the step whose with (or, when undo, its undo's with) this is; the search
 * starts where the last one was found (steps run in order) */
static struct rb_step *
step_of_with(struct runbook *rb, const json_t *with, bool undo)
{
	for (size_t k = 0; with != NULL && k < rb->nsteps; k++) {
		size_t i = (rb->scope_at + k) % rb->nsteps;

		if (rb->steps[i].with == with ||
		    (undo && rb->steps[i].undo != NULL && rb->steps[i].undo->with == with)) {
			rb->scope_at = i;
			return &rb->steps[i];
		}
	}
	return NULL;
}

const json_t *
runbook_scope_of(struct runbook *rb, const json_t *with)
{
	struct rb_step *s = step_of_with(rb, with, true);

	return s != NULL ? s->scope : NULL;
}

struct rb_step *
runbook_step_of_with(struct runbook *rb, const json_t *with)
{
	return step_of_with(rb, with, false);
}

char *
runbook_copies_of(const struct runbook *rb, const char *id)
{
	struct sbuf sb;
	size_t n = 0;

	sb_init(&sb);
	for (size_t i = 0; i < rb->nsteps; i++) {
		const struct ynode *w = ymap_get(rb->steps[i].node, "id");

		if (json_object_get(rb->steps[i].scope, "each") == NULL || w == NULL ||
		    w->kind != Y_SCALAR || strcmp(w->str, id) != 0)
			continue;
		sb_addf(&sb, "%s%s", n++ ? ", " : "", rb->steps[i].id);
	}
	if (n == 0) {
		sb_release(&sb);
		return NULL;
	}
	return sb_detach(&sb);
}

int
runbook_if(struct runbook *rb, const struct rb_step *s, bool *yes, char **err)
{
	int rc;

	expr_set_scope(rb->x, s->scope);
	rc = expr_cond(rb->x, s->if_expr, yes, err);
	expr_set_scope(rb->x, NULL);
	return rc;
}

void
runbook_free(struct runbook *rb)
{
	if (rb == NULL)
		return;
	strmap_release(&rb->step_index);
	for (size_t i = 0; i < rb->nsteps; i++) {
		struct rb_step *s = &rb->steps[i];

		free(s->id);
		free(s->name);
		free(s->description);
		free(s->uses);
		free(s->if_expr);
		json_decref(s->with);
		json_decref(s->checked);
		json_decref(s->scope);
		free_undo(s->undo);
	}
	free(rb->steps);
	for (size_t i = 0; i < rb->nincludes; i++) {
		ynode_free(rb->includes[i].root);
		free(rb->includes[i].path);
		free(rb->includes[i].abspath);
	}
	free(rb->includes);
	for (size_t i = 0; i < rb->nprobes; i++) {
		struct rb_step *s = &rb->probes[i];

		free(s->id);
		free(s->name);
		free(s->description);
		free(s->uses);
		json_decref(s->with);
		json_decref(s->compare);
	}
	free(rb->probes);
	for (size_t i = 0; i < rb->nsecrets; i++) {
		free(rb->secrets[i].name);
		free(rb->secrets[i].env);
		free(rb->secrets[i].file);
	}
	free(rb->secrets);
	for (size_t i = 0; i < rb->nnotify; i++)
		free(rb->notify[i].url);
	free(rb->notify);
	json_decref(rb->vars);
	expr_free(rb->x);
	ynode_free(rb->root);
	free(rb->name);
	free(rb->description);
	free(rb->path);
	free(rb->abspath);
	free(rb);
}

struct rb_step *
runbook_step(struct runbook *rb, const char *id)
{
	size_t i;

	/* step_index: each id and its first step, made as the steps were read */
	return strmap_get(&rb->step_index, id, &i) ? &rb->steps[i] : NULL;
}

int
runbook_resolve_secrets(struct runbook *rb, char **err)
{
	json_t *obj = json_object();
	int rc;

	for (size_t i = 0; i < rb->nsecrets; i++) {
		struct rb_secret *s = &rb->secrets[i];
		char *val = NULL;

		if (s->env != NULL) {
			const char *v = getenv(s->env);

			if (v == NULL) {
				seterr(err, "%s:%d:%d: secret '%s': environment variable %s is not set",
				    rb->path, s->node->line, s->node->col, s->name, s->env);
				json_decref(obj);
				return -1;
			}
			val = xstrdup(v);
		} else if (s->file != NULL) {
			FILE *f = fopen(s->file, "rb");
			struct sbuf sb;
			char buf[4096];
			size_t r;

			if (f == NULL) {
				seterr(err, "%s:%d:%d: secret '%s': cannot read file '%s': %s",
				    rb->path, s->node->line, s->node->col, s->name, s->file, strerror(errno));
				json_decref(obj);
				return -1;
			}
			sb_init(&sb);
			while ((r = fread(buf, 1, sizeof buf, f)) > 0 && sb.len < (1u << 20))
				sb_add(&sb, buf, r);
			if (ferror(f)) {
				int e = errno;

				fclose(f);
				sb_release(&sb);
				seterr(err, "%s:%d:%d: secret '%s': cannot read file '%s': %s",
				    rb->path, s->node->line, s->node->col, s->name, s->file, strerror(e));
				json_decref(obj);
				return -1;
			}
			fclose(f);
			/* a trailing newline is not part of the secret */
			while (sb.len > 0 && (sb.buf[sb.len - 1] == '\n' || sb.buf[sb.len - 1] == '\r'))
				sb.buf[--sb.len] = '\0';
			val = sb_detach(&sb);
		}
		if (val == NULL)
			continue;
		redact_add(val);
		json_object_set_new(obj, s->name, json_string(val));
		explicit_bzero(val, strlen(val));
		free(val);
	}
	rc = expr_set(rb->x, "secrets", obj, err);
	json_decref(obj);
	return rc;
}
