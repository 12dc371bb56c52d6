/*
 * Unit tests of the expression sandbox (core/expr.c): values that do not fit
 * its memory are an error for the caller, never an abort; a step's scope
 * (each, inputs) is a set of values, gone when it is unset.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/expr.h"

int unit_expr(void);

int
unit_expr(void)
{
	int fails = 0;
	struct expr *x = expr_new();
	size_t big = (size_t)70 << 20;	/* over the sandbox's 64 MiB */
	char *s = malloc(big + 1);
	json_t *vars, *t, *r;
	char *err = NULL;
	int rc;

#define CHECK(cond, what) do { if (cond) printf("ok - %s\n", what); \
	else { printf("not ok - %s\n", what); fails++; } } while (0)
	memset(s, 'a', big);
	s[big] = '\0';
	vars = json_pack("{s:s,s:s}", "big", s, "small", "x");
	free(s);
	rc = expr_set(x, "vars", vars, &err);
	CHECK(rc == -1 && err != NULL && strstr(err, "vars do not fit the expression sandbox's 64 MiB") != NULL,
	    "expr: vars over the memory cap are an error, not an abort");
	free(err);
	err = NULL;
	t = json_string("${{ vars.small }}");
	r = expr_render(x, t, &err);
	CHECK(r == NULL && err != NULL, "expr: after a failed set, vars is empty (no half-set table)");
	json_decref(r);
	free(err);
	err = NULL;
	json_object_del(vars, "big");
	rc = expr_set(x, "vars", vars, &err);
	r = expr_render(x, t, &err);
	CHECK(rc == 0 && r != NULL && strcmp(json_string_value(r), "x") == 0,
	    "expr: the sandbox works after the failed set");
	json_decref(r);
	free(err);
	json_decref(t);
	json_decref(vars);

	/* each and inputs: values of one step's scope, unknown once it is unset */
	{
		json_t *scope = json_pack("{s:i,s:{s:s}}", "each", 25, "inputs", "pool", "web");

		expr_set_scope(x, scope);
		t = json_string("${{ each * 2 }}");
		r = expr_render(x, t, &err);
		CHECK(r != NULL && json_is_integer(r) && json_integer_value(r) == 50,
		    "expr: each is a number in expressions, not text");
		json_decref(r);
		json_decref(t);
		t = json_string("${{ inputs.pool }}-${{ each }}");
		r = expr_render(x, t, &err);
		CHECK(r != NULL && strcmp(json_string_value(r), "web-25") == 0,
		    "expr: inputs.NAME is the include's value");
		json_decref(r);
		json_decref(t);
		t = json_string("${{ inputs.nope }}");
		r = expr_render(x, t, &err);
		CHECK(r == NULL && err != NULL && strstr(err, "unknown input 'nope'") != NULL,
		    "expr: an input not given is an error, not nil");
		json_decref(r);
		free(err);
		err = NULL;
		json_decref(t);
		expr_set_scope(x, NULL);
		t = json_string("${{ each }}");
		r = expr_render(x, t, &err);
		CHECK(r == NULL && err != NULL && strstr(err, "'each' is known only in a step under for_each:") != NULL,
		    "expr: without a scope each is an unknown name");
		json_decref(r);
		free(err);
		err = NULL;
		json_decref(t);
		json_decref(scope);
	}
	expr_free(x);
#undef CHECK
	return fails;
}
