/*
 * params.c - a step's `with:` checked against its type's params (names,
 * types, required, defaults, duration and enum conversion) and its own
 * validate(); every problem goes to the runbook's error list through
 * zdm_diag() with the place of the param.  At validate time only what does
 * not need step outputs or secrets is checked (static_params); at run time
 * runbook_params() resolves and checks the rest.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "base/strmap.h"
#include "base/util.h"
#include "core/params_check.h"
#include "core/runbook.h"
#include "zdm/step.h"

const char *
ptype_name(enum zdm_ptype t)
{
	switch (t) {
	case ZDM_T_STRING: return "string";
	case ZDM_T_INT: return "int";
	case ZDM_T_NUMBER: return "number";
	case ZDM_T_BOOL: return "bool";
	case ZDM_T_DURATION: return "duration";
	case ZDM_T_LIST: return "list";
	case ZDM_T_MAP: return "map";
	case ZDM_T_ANY: return "any";
	case ZDM_T_PATH: return "path";
	}
	return "?";
}

/* the value node of param in the with: mapping, under its name or an
 * earlier one, or NULL */
static const struct ynode *
written(const struct zdm_diag *d, const char *param)
{
	const struct ynode *n = ymap_get(d->with, param);

	for (size_t i = 0; n == NULL && d->t != NULL && i < d->t->nrenamed; i++)
		if (strcmp(d->t->renamed[i].name, param) == 0)
			n = ymap_get(d->with, d->t->renamed[i].was);
	return n;
}

void
zdm_diag(struct zdm_diag *d, const char *param, const char *fmt, ...)
{
	va_list ap;
	char *m;
	const struct ynode *at = d->at;

	if (param != NULL && d->with != NULL && written(d, param) != NULL)
		at = written(d, param);
	else if (d->with != NULL)
		at = d->with;
	va_start(ap, fmt);
	m = xvasprintf(fmt, ap);
	va_end(ap);
	if (param != NULL)
		err_at(d->rb, d->errs, at, "%s: param '%s': %s", d->what, param, m);
	else
		err_at(d->rb, d->errs, at, "%s: %s", d->what, m);
	free(m);
}

int64_t
zdm_diag_timeout(const struct zdm_diag *d, const char **from)
{
	if (from != NULL)
		*from = d->timeout_from != NULL ? d->timeout_from : "the step's timeout";
	return d->timeout_ms;
}

bool
zdm_diag_written(const struct zdm_diag *d, const char *param)
{
	return d->with != NULL && written(d, param) != NULL;
}

/*
 * Check (and convert) one parameter value against its declared type.
 * Returns a new reference, or NULL with *msg.
 */
static json_t *
convert_param(const struct zdm_param *p, json_t *v, char **msg)
{
	const char *tn = ptype_name(p->type);

	switch (p->type) {
	case ZDM_T_PATH:
	case ZDM_T_STRING:
		if (json_is_string(v))
			return json_incref(v);
		if (json_is_integer(v))
			return json_sprintf("%lld", (long long)json_integer_value(v));
		if (json_is_boolean(v))
			return json_string(json_is_true(v) ? "true" : "false");
		if (json_is_real(v)) {
			seterr(msg, "must be a string; write the number in quotes so YAML keeps it as written");
			return NULL;
		}
		break;
	case ZDM_T_INT:
		if (json_is_integer(v))
			return json_incref(v);
		if (json_is_string(v)) {
			char *end;
			long long n;

			errno = 0;
			n = strtoll(json_string_value(v), &end, 10);
			if (errno == 0 && end != json_string_value(v) && *end == '\0')
				return json_integer(n);
		}
		break;
	case ZDM_T_NUMBER:
		if (json_is_number(v))
			return json_incref(v);
		if (json_is_string(v)) {
			char *end;
			double d = strtod(json_string_value(v), &end);

			if (end != json_string_value(v) && *end == '\0')
				return json_real(d);
		}
		break;
	case ZDM_T_BOOL:
		if (json_is_boolean(v))
			return json_incref(v);
		if (json_is_string(v) && strcmp(json_string_value(v), "true") == 0)
			return json_true();
		if (json_is_string(v) && strcmp(json_string_value(v), "false") == 0)
			return json_false();
		break;
	case ZDM_T_DURATION: {
		int64_t ms;

		if (json_is_integer(v) && json_integer_value(v) == 0)
			return json_integer(0);
		if (json_is_string(v) && parse_duration(json_string_value(v), &ms) == 0)
			return json_integer(ms);
		if (json_is_integer(v) && json_integer_value(v) > 0) {
			seterr(msg, "bad duration '%lld' (give a unit: %lldms, %llds)",
			    (long long)json_integer_value(v), (long long)json_integer_value(v),
			    (long long)json_integer_value(v));
			return NULL;
		}
		if (json_is_string(v)) {
			seterr(msg, "bad duration '%s' (use a number and a unit: 500ms, 30s, 5m, 1h)",
			    json_string_value(v));
			return NULL;
		}
		break;
	}
	case ZDM_T_LIST:
		if (json_is_array(v))
			return json_incref(v);
		break;
	case ZDM_T_MAP:
		if (json_is_object(v))
			return json_incref(v);
		break;
	case ZDM_T_ANY:
		return json_incref(v);
	}
	seterr(msg, "must be %s %s, not %s",
	    (p->type == ZDM_T_INT || p->type == ZDM_T_ANY) ? "an" : "a", tn,
	    json_is_string(v) ? "a string" : json_is_integer(v) ? "a whole number" :
	    json_is_real(v) ? "a number" : json_is_boolean(v) ? "a boolean" :
	    json_is_array(v) ? "a list" : json_is_object(v) ? "a mapping" : "null");
	return NULL;
}

/*
 * A path param as written, resolved from the runbook's directory when it
 * is relative, so a runbook means the same files from any current
 * directory.  "" (the param's "none"), /abs and ~/... stay as they are.
 */
static json_t *
resolve_path(const struct runbook *rb, json_t *v)
{
	const char *s = json_string_value(v);
	char *dir, *full;
	json_t *r;

	if (rb == NULL || rb->abspath == NULL || s == NULL || s[0] == '\0' || s[0] == '/' ||
	    s[0] == '~')
		return v;
	dir = path_dirname(rb->abspath);
	full = strcmp(s, ".") == 0 ? xstrdup(dir) : path_join(dir, strncmp(s, "./", 2) == 0 ? s + 2 : s);
	r = json_string(full);
	free(dir);
	free(full);
	json_decref(v);
	return r;
}

/*
 * A param's default (JSON text in its zdm_param), parsed once per distinct
 * text and copied at each use: the same defaults fill every step's params.
 * NULL if it does not parse.
 */
static json_t *
param_default(const char *def)
{
	static struct strmap seen;	/* def -> index in vals */
	static json_t **vals;
	static size_t n, cap;
	size_t at;

	if (!strmap_get(&seen, def, &at)) {
		json_t *v = json_loads(def, JSON_DECODE_ANY, NULL);

		if (v == NULL)
			return NULL;
		if (n == cap) {
			cap = cap ? cap * 2 : 32;
			vals = xrealloc(vals, cap * sizeof *vals);
		}
		at = n;
		vals[n++] = v;
		strmap_put(&seen, xstrdup(def), at, NULL);
	}
	return json_deep_copy(vals[at]);
}

/*
 * Schema checks of `params` (rendered) for type t; fills defaults and
 * converts values in place.  Expressions still unresolved (static mode) are
 * left alone.
 */
void
check_params(struct zdm_diag *d, const struct zdm_step_type *t, json_t *params,
    bool final)
{
	const char *k;
	json_t *v;
	void *tmp;
	const char **names = xcalloc(t->nparams + 1, sizeof *names);
	const char **suggested = xcalloc(json_object_size(params) + 1, sizeof *suggested);
	size_t nsug = 0;

	for (size_t i = 0; i < t->nparams; i++)
		names[i] = t->params[i].name;
	/* an earlier name: the value moves to the new one, with a warning */
	for (size_t i = 0; i < t->nrenamed; i++) {
		const struct zdm_rename *r = &t->renamed[i];
		json_t *old = json_object_get(params, r->was);
		const struct ynode *kn = d->with ? ymap_key(d->with, r->was) : NULL;

		if (old == NULL)
			continue;
		if (json_object_get(params, r->name) != NULL) {
			const struct ynode *save = d->at, *savew = d->with;

			d->at = kn ? kn : d->at;
			d->with = NULL;
			zdm_diag(d, NULL, "'%s' and '%s' are both given: '%s' is the earlier name of "
			    "'%s'; keep only '%s'", r->was, r->name, r->was, r->name, r->name);
			d->at = save;
			d->with = savew;
		} else {
			warn_at(d->rb, kn ? kn : d->at, "%s: param '%s' of '%s' is now called '%s' "
			    "(the old name still works for now; write %s:)", d->what, r->was, t->name,
			    r->name, r->name);
			json_object_set(params, r->name, old);
		}
		json_object_del(params, r->was);
	}
	json_object_foreach_safe(params, tmp, k, v) {
		bool known = false;

		for (size_t i = 0; i < t->nparams; i++)
			if (strcmp(t->params[i].name, k) == 0)
				known = true;
		if (!known) {
			const char *s = did_you_mean(k, names);
			const struct ynode *kn = d->with ? ymap_key(d->with, k) : NULL;
			const struct ynode *save = d->at, *savew = d->with;

			d->at = kn ? kn : d->at;
			d->with = NULL;
			if (s != NULL)
				suggested[nsug++] = s;
			if (s != NULL)
				zdm_diag(d, NULL, "unknown param '%s' for '%s' (did you mean '%s'?)", k, t->name, s);
			else
				zdm_diag(d, NULL, "unknown param '%s' for '%s' (see 'zdm plugins')", k, t->name);
			d->at = save;
			d->with = savew;
		}
	}
	free(names);
	for (size_t i = 0; i < t->nparams; i++) {
		const struct zdm_param *p = &t->params[i];
		json_t *val = json_object_get(params, p->name), *conv;
		char *msg = NULL;

		if (val == NULL || json_is_null(val)) {
			if (p->def != NULL) {
				json_t *dv = param_default(p->def);

				if (dv != NULL) {
					json_object_set_new(params, p->name, dv);
					val = dv;
				}
			} else if (p->required) {
				bool misspelt = false;

				for (size_t j = 0; j < nsug; j++)
					if (strcmp(suggested[j], p->name) == 0)
						misspelt = true;
				if (!misspelt)
					zdm_diag(d, val ? p->name : NULL, "missing required param '%s' (%s)",
					    p->name, p->doc ? p->doc : ptype_name(p->type));
				continue;
			} else {
				json_object_del(params, p->name);
				continue;
			}
		}
		if (!final && zdm_is_expr(val))
			continue;
		if (!final && json_is_string(val) && expr_has_template(json_string_value(val)))
			continue;
		conv = convert_param(p, val, &msg);
		if (conv == NULL) {
			zdm_diag(d, p->name, "%s", msg);
			free(msg);
			continue;
		}
		if (p->type == ZDM_T_PATH)
			conv = resolve_path(d->rb, conv);
		json_object_set_new(params, p->name, conv);
	}
	free(suggested);
}

/*
 * Static checks of a step's (or undo's) params with the type's schema.
 * Expressions that need only vars and env are evaluated now, so a bad one
 * fails `zdm validate` instead of a run halfway through; those that need
 * steps or secrets stay as written.
 */
void
static_params(struct runbook *rb, struct yerrs *e, const struct ynode *at,
    const struct zdm_step_type *t, const json_t *with, const struct ynode *with_node,
    const char *what, int64_t timeout_ms, const char *timeout_from, json_t **out)
{
	struct zdm_diag d = { rb, at, with_node, e, what, timeout_ms, timeout_from, t };
	json_t *p = json_object(), *v;
	const char *k;
	size_t before = e->n;
	bool bad = false;

	json_object_foreach((json_t *)with, k, v) {
		char *err = NULL;
		json_t *r = expr_render(rb->x, v, &err);

		if (r == NULL) {
			zdm_diag(&d, k, "%s", err);
			free(err);
			bad = true;
			continue;
		}
		json_object_set_new(p, k, r);
	}
	check_params(&d, t, p, false);
	if (!bad && e->n == before && t->validate != NULL)
		t->validate(t, p, &d);
	if (out != NULL && !bad && e->n == before)
		*out = json_incref(p);
	json_decref(p);
}

json_t *
runbook_params(struct runbook *rb, const struct ynode *where,
    const struct zdm_step_type *t, const json_t *with, const struct ynode *with_node,
    char **err)
{
	struct yerrs e = { 0 };
	struct zdm_diag d = { rb, where, with_node, &e, "", 0, NULL, t };	/* timing: checked at validate */
	json_t *p;
	char *rerr = NULL;

	d.what = t->name;
	{
		/* checked at load, nothing to resolve: as they were */
		struct rb_step *s = runbook_step_of_with(rb, with);

		if (s != NULL && s->checked != NULL && s->type == t)
			return json_incref(s->checked);
	}
	expr_set_scope(rb->x, runbook_scope_of(rb, with));
	p = expr_render(rb->x, with, &rerr);
	expr_set_scope(rb->x, NULL);
	if (p == NULL) {
		seterr(err, "%s:%d:%d: %s", where->file != NULL ? where->file : rb->path,
		    where->line, where->col, rerr);
		free(rerr);
		return NULL;
	}
	check_params(&d, t, p, true);
	if (e.n == 0 && t->validate != NULL)
		t->validate(t, p, &d);
	if (e.n > 0) {
		struct sbuf sb;

		yerrs_sort(&e);
		sb_init(&sb);
		for (size_t i = 0; i < e.n; i++)
			sb_addf(&sb, "%s%s", i ? "; " : "", e.v[i].msg);
		seterr(err, "%s", sb.buf);
		sb_release(&sb);
		yerrs_release(&e);
		json_decref(p);
		return NULL;
	}
	return p;
}
