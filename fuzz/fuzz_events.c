/*
 * fuzz_events.c - libFuzzer harness: the input is a JSON event, redacted and
 * written as the --output json stream writes it (ci_emit).  Checked
 * property: with secrets registered, no secret string survives redaction
 * and no number equal to a numeric secret does; a failure aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/redact.h"
#include "report/ci.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SECRET "s3cr3t"
#define PIN 4711

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (freopen("/dev/null", "w", stdout) == NULL)
		abort();
	redact_add(SECRET);
	redact_add("4711");
	return 0;
}

/* no number equal to PIN anywhere below v (the top value itself aside) */
static void
check(const json_t *v, int depth)
{
	size_t i;
	const char *k;
	json_t *e;

	if (depth > 0 && json_is_number(v) && json_number_value(v) == PIN)
		abort();
	if (json_is_array(v))
		json_array_foreach(v, i, e)
			check(e, depth + 1);
	if (json_is_object(v))
		json_object_foreach((json_t *)v, k, e)
			check(e, depth + 1);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *v = json_loadb((const char *)data, size, JSON_ALLOW_NUL | JSON_DECODE_ANY, NULL);
	json_t *copy;
	char *d;

	if (v == NULL)
		return 0;
	copy = json_deep_copy(v);
	redact_json(copy);
	d = json_dumps(copy, JSON_COMPACT | JSON_ENCODE_ANY);
	if (d != NULL && memmem(d, strlen(d), SECRET, strlen(SECRET)) != NULL)
		abort();
	check(copy, 0);
	free(d);
	json_decref(copy);
	if (json_is_object(v))
		ci_emit(v);	/* steals v */
	else
		json_decref(v);
	return 0;
}
