/*
 * fuzz_expr.c - libFuzzer harness: the input is a string with `${{ ... }}`
 * expressions, checked statically (as validate does), rendered (as a step's
 * params are), evaluated as an `if:` and as a gate condition, in a new
 * sandbox per input (so every allocation of an input is freed by it, and
 * libFuzzer's leak check stays cheap and exact).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include <jansson.h>

#include "base/util.h"
#include "core/expr.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const ids[] = { "one", "two-x", NULL };
static const char *const vars[] = { "a", "s", "t", NULL };
static const char *const secrets[] = { "tok", NULL };

static struct expr *
sandbox(void)
{
	struct expr *x = expr_new();
	json_t *v = json_pack("{s:i,s:s,s:{s:[i,i]}}", "a", 1, "s", "x", "t", "u", 1, 2);
	json_t *o = json_pack("{s:s,s:i}", "stdout", "hi", "exit_code", 0);
	json_t *r = json_pack("{s:s,s:b}", "id", "20261204T000000Z-0000", "dry_run", 0);

	expr_set_step_ids(x, (const char *const *)ids, 2);
	if (expr_set(x, "vars", v, NULL) != 0 || expr_set(x, "run", r, NULL) != 0)
		abort();
	expr_set_step(x, "one", o);
	json_decref(v);
	json_decref(o);
	json_decref(r);
	return x;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct expr *x = sandbox();
	json_t *s = json_text((const char *)data, size), *out;
	const char *text = json_string_value(s);
	char **errs = NULL, *err = NULL;
	bool truth;
	int cond;

	expr_check(x, text, vars, secrets, ids, ids, &errs);
	for (size_t i = 0; errs != NULL && errs[i] != NULL; i++)
		free(errs[i]);
	free(errs);
	out = expr_render(x, s, &err);
	json_decref(out);
	free(err);
	err = NULL;
	expr_truthy(x, text, &truth, &err);
	free(err);
	err = NULL;
	if (expr_eval_cond(x, text, NULL, &cond, &err) != 0)
		free(err);
	json_decref(s);
	expr_free(x);
	return 0;
}
