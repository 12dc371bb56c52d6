/*
 * cmd_schema.c - zdm schema: a JSON Schema (draft 2020-12) of the runbook
 * language, made from the step registry (built-ins and the plugins on the
 * plugin path), for editors and other validators.
 *
 * It accepts what `zdm validate` accepts, and a little more: the checks that
 * need the whole runbook (expressions, step references, duplicate ids, a
 * type's own validate()) are left to zdm.  Keep it in step with runbook.c
 * (its key tables and want_* checks) and params.c (convert_param).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/util.h"
#include "cli/cli.h"
#include "core/registry.h"
#include "zdm/step.h"

#define SCHEMA_DRAFT "https://json-schema.org/draft/2020-12/schema"
/* runbook.c: valid_id (at most 64) and valid_ident */
#define ID_PATTERN "^[a-z0-9][a-z0-9_-]*$"
#define IDENT_PATTERN "^[A-Za-z_][A-Za-z0-9_]*$"
/* parse_duration: one or more number-and-unit, the number as strtod reads
 * it from a digit on (decimal, or hexadecimal after 0x) */
#define DURATION_PATTERN "^(([0-9]+\\.?[0-9]*([eE][-+]?[0-9]+)?|" \
	"0[xX][0-9a-fA-F]*\\.?[0-9a-fA-F]*([pP][-+]?[0-9]+)?)(ms|s|m|h))+$"
/* a value still holding an expression; checked by zdm once it is known */
#define EXPR_PATTERN "\\$\\{\\{"
/* strtoll base 10 and strtod, as convert_param reads a string */
#define INT_STRING_PATTERN "^\\s*[-+]?[0-9]+$"
#define NUMBER_STRING_PATTERN "^\\s*[-+]?(([0-9]+\\.?[0-9]*|\\.[0-9]+)([eE][-+]?[0-9]+)?|" \
	"0[xX]([0-9a-fA-F]+\\.?[0-9a-fA-F]*|\\.[0-9a-fA-F]+)([pP][-+]?[0-9]+)?|" \
	"[iI][nN][fF]([iI][nN][iI][tT][yY])?|[nN][aA][nN])$"
#define RB_MAX_EACH_ITEMS 1000
#define RB_MAX_COUNT 1000

static json_t *
ref(const char *def)
{
	char p[128];

	snprintf(p, sizeof p, "#/$defs/%s", def);
	return json_pack("{s:s}", "$ref", p);
}

static json_t *
described(json_t *schema, const char *doc)
{
	if (doc != NULL && *doc != '\0')
		json_object_set_new(schema, "description", json_string(doc));
	return schema;
}

static json_t *
strings(const char *const *v)
{
	json_t *a = json_array();

	for (size_t i = 0; v[i] != NULL; i++)
		json_array_append_new(a, json_string(v[i]));
	return a;
}

/* anyOf: the value itself, or a string holding an expression */
static json_t *
or_expr(json_t *schema)
{
	return json_pack("{s:[o,o]}", "anyOf", schema, ref("expression"));
}

/* a `with:` value of type t, as convert_param takes it */
static json_t *
param_value(enum zdm_ptype t)
{
	switch (t) {
	case ZDM_T_STRING:
	case ZDM_T_PATH:
		/* a whole number or a boolean is taken as its text */
		return json_pack("{s:[s,s,s]}", "type", "string", "integer", "boolean");
	case ZDM_T_INT:
		return or_expr(json_pack("{s:[{s:s},{s:s,s:s}]}", "anyOf", "type", "integer",
		    "type", "string", "pattern", INT_STRING_PATTERN));
	case ZDM_T_NUMBER:
		return or_expr(json_pack("{s:[{s:s},{s:s,s:s}]}", "anyOf", "type", "number",
		    "type", "string", "pattern", NUMBER_STRING_PATTERN));
	case ZDM_T_BOOL:
		return or_expr(json_pack("{s:[{s:s},{s:[s,s]}]}", "anyOf", "type", "boolean",
		    "enum", "true", "false"));
	case ZDM_T_DURATION:
		/* a bare number other than 0 is refused: it needs a unit */
		return or_expr(json_pack("{s:[{s:s,s:i},{s:o}]}", "anyOf", "type", "integer",
		    "const", 0, "$ref", json_string("#/$defs/duration")));
	case ZDM_T_LIST:
		return or_expr(json_pack("{s:s}", "type", "array"));
	case ZDM_T_MAP:
		return or_expr(json_pack("{s:s}", "type", "object"));
	case ZDM_T_ANY:
		break;
	}
	return json_object();
}

static json_t *
param_schema(const struct zdm_param *p)
{
	json_t *s = param_value(p->type);

	/* an optional param given as null is left out (its default) */
	if (!p->required)
		s = json_pack("{s:[o,{s:s}]}", "anyOf", s, "type", "null");
	/* on the outside, where an editor shows them */
	described(s, p->doc);
	if (p->def != NULL) {
		json_t *d = json_loads(p->def, JSON_DECODE_ANY, NULL);

		if (d != NULL)
			json_object_set_new(s, "default", d);
	}
	return s;
}

/* with: of type t: its params (and their earlier names), nothing else */
static json_t *
with_schema(const struct zdm_step_type *t)
{
	json_t *props = json_object(), *req = json_array(), *all = json_array();
	json_t *w = json_pack("{s:s}", "type", "object");

	for (size_t i = 0; i < t->nparams; i++) {
		const struct zdm_param *p = &t->params[i];
		json_t *either = json_array();

		json_object_set_new(props, p->name, param_schema(p));
		json_array_append_new(either, json_pack("{s:s,s:[s]}", "type", "object", "required",
		    p->name));
		for (size_t k = 0; k < t->nrenamed; k++) {
			const struct zdm_rename *r = &t->renamed[k];
			json_t *old;
			char *doc;

			if (strcmp(r->name, p->name) != 0)
				continue;
			old = param_schema(p);
			doc = xasprintf("Earlier name of '%s' (still read; write %s:).", p->name,
			    p->name);
			json_object_set_new(old, "description", json_string(doc));
			free(doc);
			json_object_set_new(old, "deprecated", json_true());
			json_object_set_new(props, r->was, old);
			json_array_append_new(either, json_pack("{s:s,s:[s]}", "type", "object",
			    "required", r->was));
			/* never both */
			json_array_append_new(all, json_pack("{s:{s:s,s:[s,s]}}", "not", "type",
			    "object", "required", p->name, r->was));
		}
		if (p->required) {
			if (json_array_size(either) == 1)
				json_array_append_new(req, json_string(p->name));
			else
				json_array_append_new(all, json_pack("{s:O}", "anyOf", either));
		}
		json_decref(either);
	}
	described(w, t->description);
	json_object_set_new(w, "properties", props);
	if (json_array_size(req) > 0)
		json_object_set_new(w, "required", req);
	else
		json_decref(req);
	if (json_array_size(all) > 0)
		json_object_set_new(w, "allOf", all);
	else
		json_decref(all);
	json_object_set_new(w, "additionalProperties", json_false());
	return w;
}

/* uses: X -> with: checked against X's params */
static json_t *
typed_with(const struct zdm_step_type *const *all, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; i < n; i++) {
		const struct zdm_step_type *t = all[i];
		json_t *then = json_pack("{s:s,s:{s:o}}", "type", "object", "properties", "with",
		    with_schema(t));
		bool needs = false;

		for (size_t k = 0; k < t->nparams; k++)
			needs |= t->params[k].required;
		/* no with: is an empty one: a required param is then missing */
		if (needs)
			json_object_set_new(then, "required", json_pack("[s]", "with"));
		json_array_append_new(a, json_pack("{s:{s:s,s:[s],s:{s:{s:s}}},s:o}", "if",
		    "type", "object", "required", "uses", "properties", "uses", "const", t->name, "then", then));
	}
	return json_pack("{s:o}", "allOf", a);
}

/* the keys a step and a probe share */
static json_t *
step_common(void)
{
	return json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}",
	    "id", described(json_pack("{s:s,s:s,s:i}", "type", "string", "pattern", ID_PATTERN,
	        "maxLength", 64), "The step's id: [a-z0-9][a-z0-9_-]*, at most 64."),
	    "name", described(json_pack("{s:s}", "type", "string"), "A name to show."),
	    "description", described(json_pack("{s:s}", "type", "string"), "What the step is for."),
	    "uses", described(ref("uses"), "The step type (zdm plugins)."),
	    "with", described(json_pack("{s:s}", "type", "object"), "The type's params."),
	    "timeout", described(ref("duration"), "Time per attempt (default 5m)."),
	    "retries", described(ref("count"), "Attempts after the first (default 0)."),
	    "retry_delay", described(ref("duration"), "Wait before a retry (default 2s)."),
	    "backoff", ref("backoff"));
}

static json_t *
step_def(void)
{
	json_t *p = step_common();

	json_object_set_new(p, "if", described(json_pack("{s:[{s:s},o]}", "anyOf", "type",
	    "boolean", ref("expression")), "Run the step only when this ${{ ... }} is true."));
	json_object_set_new(p, "undo", ref("undo"));
	json_object_set_new(p, "idempotent", described(json_pack("{s:s}", "type", "boolean"),
	    "Safe to run again when a crash left it in doubt."));
	json_object_set_new(p, "read_only", described(json_pack("{s:s}", "type", "boolean"),
	    "The author's word that this exec, ssh or http step changes nothing."));
	json_object_set_new(p, "for_each", ref("for_each"));
	return json_pack("{s:s,s:s,s:[s,s],s:o,s:b,s:[o]}", "description", "A step.",
	    "type", "object", "required", "id", "uses", "properties", p,
	    "additionalProperties", 0, "allOf", ref("typed_with"));
}

static json_t *
probe_def(void)
{
	json_t *p = step_common();

	json_object_set_new(p, "read_only", json_pack("{s:s}", "type", "boolean"));
	json_object_set_new(p, "compare", described(json_pack("{s:s,s:i,s:{s:s}}", "type",
	    "array", "minItems", 1, "items", "type", "string"),
	    "The outputs a drill compares before and after."));
	return json_pack("{s:s,s:s,s:[s,s],s:o,s:b,s:[o]}", "description",
	    "A read-only check a drill compares.", "type", "object", "required", "id", "uses",
	    "properties", p, "additionalProperties", 0, "allOf", ref("typed_with"));
}

/* a steps: entry: a step, a for_each group of steps, or an include */
static json_t *
entry_def(void)
{
	json_t *group = json_pack("{s:s,s:s,s:[s,s],s:{s:o,s:{s:s,s:i,s:o}},s:b}",
	    "description", "Steps repeated once per for_each item.", "type", "object",
	    "required", "for_each", "steps", "properties", "for_each", ref("for_each"),
	    "steps", "type", "array", "minItems", 1, "items", ref("entry"),
	    "additionalProperties", 0);
	json_t *inc = json_pack("{s:s,s:s,s:[s],s:{s:o,s:o,s:o},s:b}",
	    "description", "Another file's steps in this place.", "type", "object",
	    "required", "include", "properties",
	    "include", described(json_pack("{s:s}", "type", "string"),
	        "The file, relative to this runbook."),
	    "with", described(json_pack("{s:s}", "type", "object"), "The included file's inputs."),
	    "for_each", ref("for_each"), "additionalProperties", 0);

	return json_pack("{s:{s:s,s:[s]},s:o,s:{s:{s:s,s:[s]},s:o,s:o}}",
	    "if", "type", "object", "required", "include", "then", inc,
	    "else", "if", "type", "object", "required", "steps", "then", group,
	    "else", ref("step"));
}

static json_t *
defs(const struct zdm_step_type *const *all, size_t n)
{
	static const char *const events[] = {
		"start", "failure", "rollback", "finish", "pause", NULL,
	};
	json_t *d = json_object(), *names = json_array();

	for (size_t i = 0; i < n; i++)
		json_array_append_new(names, json_string(all[i]->name));
	json_object_set_new(d, "expression", described(json_pack("{s:s,s:s}", "type", "string",
	    "pattern", EXPR_PATTERN), "An expression ${{ ... }}, checked by zdm."));
	json_object_set_new(d, "duration", described(json_pack("{s:s,s:s}", "type", "string",
	    "pattern", DURATION_PATTERN), "A number and a unit: 500ms, 30s, 5m, 1h, 1m30s."));
	json_object_set_new(d, "count", json_pack("{s:s,s:i,s:i}", "type", "integer",
	    "minimum", 0, "maximum", RB_MAX_COUNT));
	json_object_set_new(d, "backoff", described(json_pack("{s:[s,s]}", "enum",
	    "exponential", "fixed"), "How the delay grows between retries (default exponential)."));
	json_object_set_new(d, "uses", json_pack("{s:s,s:o}", "type", "string", "enum", names));
	/* an item is a scalar: a word, a number, true or false (as text) */
	json_object_set_new(d, "for_each", described(json_pack("{s:s,s:i,s:i,s:{s:[s,s,s]}}",
	    "type", "array", "minItems", 1, "maxItems", RB_MAX_EACH_ITEMS, "items", "type",
	    "string", "number", "boolean"), "Repeat once per item; the item ends the step id."));
	json_object_set_new(d, "typed_with", typed_with(all, n));
	json_object_set_new(d, "step", step_def());
	json_object_set_new(d, "probe", probe_def());
	json_object_set_new(d, "entry", entry_def());
	json_object_set_new(d, "undo", json_pack("{s:s,s:s,s:[s],s:{s:o,s:o,s:o},s:b,s:[o]}",
	    "description", "What puts the step's change back, when its type has no undo of "
	    "its own.", "type", "object", "required", "uses", "properties", "uses", ref("uses"),
	    "with", json_pack("{s:s}", "type", "object"), "timeout", ref("duration"),
	    "additionalProperties", 0, "allOf", ref("typed_with")));
	json_object_set_new(d, "notify", json_pack("{s:s,s:s,s:[s],s:{s:o,s:o,s:o},s:b}",
	    "description", "A webhook told of the run's events.", "type", "object", "required",
	    "url", "properties", "url", json_pack("{s:s}", "type", "string"), "on",
	    json_pack("{s:s,s:i,s:{s:o}}", "type", "array", "minItems", 1, "items", "enum",
	    strings(events)), "timeout", ref("duration"), "additionalProperties", 0));
	return d;
}

static json_t *
schema(const struct zdm_step_type *const *all, size_t n)
{
	json_t *secret = json_pack("{s:[{s:s,s:[s],s:{s:{s:s}},s:b},{s:s,s:[s],s:{s:{s:s}},s:b}]}",
	    "oneOf", "type", "object", "required", "env", "properties", "env", "type", "string",
	    "additionalProperties", 0, "type", "object", "required", "file", "properties",
	    "file", "type", "string", "additionalProperties", 0);
	json_t *props = json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}",
	    "zdm", described(json_pack("{s:i}", "const", 1), "The runbook schema version: 1."),
	    "name", described(json_pack("{s:s,s:s,s:i}", "type", "string", "pattern", ID_PATTERN,
	        "maxLength", 64), "The runbook's name: [a-z0-9][a-z0-9_-]*, at most 64."),
	    "description", json_pack("{s:s}", "type", "string"),
	    "vars", described(json_pack("{s:s,s:{s:s}}", "type", "object", "propertyNames",
	        "pattern", IDENT_PATTERN), "Values --var and --vars-file may replace."),
	    "secrets", described(json_pack("{s:s,s:{s:s},s:o}", "type", "object",
	        "propertyNames", "pattern", IDENT_PATTERN, "additionalProperties", secret),
	        "name: {env: NAME} or {file: PATH}; read at run time, never journaled."),
	    "defaults", json_pack("{s:s,s:{s:o,s:o,s:o,s:o},s:b}", "type", "object",
	        "properties", "timeout", ref("duration"), "retries", ref("count"),
	        "retry_delay", ref("duration"), "backoff", ref("backoff"),
	        "additionalProperties", 0),
	    "on_failure", described(json_pack("{s:[s,s,s]}", "enum", "rollback", "pause",
	        "abort"), "What a failed step does to the run (default rollback)."),
	    "steps", json_pack("{s:s,s:i,s:o}", "type", "array", "minItems", 1, "items",
	        ref("entry")),
	    "notify", json_pack("{s:s,s:o}", "type", "array", "items", ref("notify")),
	    "probes", json_pack("{s:s,s:i,s:o}", "type", "array", "minItems", 1, "items",
	        ref("probe")));

	return json_pack("{s:s,s:s,s:s,s:s,s:[s,s,s],s:o,s:{s:{}},s:b,s:o}",
	    "$schema", SCHEMA_DRAFT, "title", "zdm runbook",
	    "description", "A zdm runbook (zdm-runbook(5)), generated by `zdm schema` from its "
	    "step types.", "type", "object", "required", "zdm", "name", "steps",
	    "properties", props, "patternProperties", "^x-", "additionalProperties", 0,
	    "$defs", defs(all, n));
}

int
cmd_schema(const struct cmd *cmd, struct cli *c)
{
	char **pp;
	struct registry *reg = new_registry(c, NULL, &pp);
	const struct zdm_step_type **all;
	size_t n = registry_all(reg, &all);
	json_t *s = schema(all, n);
	int rc = ZDM_EXIT_OK;

	if (s == NULL || json_dumpf(s, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0 ||
	    fputc('\n', stdout) == EOF || fflush(stdout) != 0) {
		fprintf(stderr, "zdm %s: cannot write the schema\n", cmd->name);
		rc = ZDM_EXIT_USAGE;
	}
	json_decref(s);
	registry_free(reg);
	plugin_path_free(pp);
	return rc;
}
