/*
 * Unit tests for zdm's C modules.  Each unit_*() prints TAP-like
 * "ok - ..." / "not ok - ..." lines and returns its number of failures.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/redact.h"
#include "base/strmap.h"
#include "base/util.h"

int unit_journal(void);
int unit_luahost(void);
int unit_expr(void);
int unit_runstate(void);
int unit_store(void);
int unit_runsum(void);
int unit_console(void);
int unit_html(void);

/* small checks of util.c and redact.c */
static int
unit_util(void)
{
	int fails = 0;
	int64_t ms = -1;
	char *r;

#define CHECK(cond, what) do { if (cond) printf("ok - %s\n", what); \
	else { printf("not ok - %s\n", what); fails++; } } while (0)
	CHECK(parse_duration("500ms", &ms) == 0 && ms == 500, "duration 500ms");
	CHECK(parse_duration("1m30s", &ms) == 0 && ms == 90000, "duration 1m30s");
	CHECK(parse_duration("1.5s", &ms) == 0 && ms == 1500, "duration 1.5s");
	CHECK(parse_duration("5", &ms) != 0, "duration without unit refused");
	CHECK(parse_duration("5 minutes", &ms) != 0, "duration in words refused");
	CHECK(parse_duration("", &ms) != 0, "empty duration refused");
	redact_add("hunter2");
	redact_add("hunter2-long");
	r = redact_str("pw=hunter2-long and hunter2.");
	CHECK(strcmp(r, "pw=*** and ***.") == 0, "redaction replaces longer secrets first");
	free(r);
	{
		json_t *j = json_pack("{s:[s,{s:s}]}", "a", "x hunter2", "hunter2", "y");

		redact_json(j);
		r = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
		CHECK(strstr(r, "hunter2") == NULL, "redact_json reaches keys and nested strings");
		free(r);
		json_decref(j);
	}
	redact_reset();
	redact_add("s3cr3t");
	redact_add("4711");
	{
		json_t *j = json_pack("{s:s%,s:i,s:f,s:i,s:[i,f]}", "nul", "a\0s3cr3t", (size_t)8,
		    "pin", (json_int_t)4711, "pinf", 4711.0, "other", (json_int_t)47110,
		    "list", (json_int_t)4711, 4711.0);
		char *d;

		redact_json(j);
		d = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
		CHECK(strcmp(d, "{\"list\":[\"***\",\"***\"],\"nul\":\"a\\u0000***\",\"other\":47110,"
		    "\"pin\":\"***\",\"pinf\":\"***\"}") == 0,
		    "redact_json: a NUL does not hide a secret; numbers equal to a secret go, others stay");
		free(d);
		json_decref(j);
	}
	{
		size_t n;
		char *r = redact_strn("x\0s3cr3ty", 9, &n);

		CHECK(n == 6 && memcmp(r, "x\0***y", 7) == 0, "redact_strn works on lengths");
		free(r);
	}
	redact_reset();
	{
		const char *c[] = { "exec", "wait", "release.symlink", NULL };

		CHECK(did_you_mean("exex", c) != NULL && strcmp(did_you_mean("exex", c), "exec") == 0,
		    "did you mean exec");
		CHECK(did_you_mean("kubernetes", c) == NULL, "no far-fetched suggestion");
	}
	{
		struct strmap m;
		char (*names)[16] = xcalloc(5000, sizeof *names);
		size_t v = 0, bad = 0;

		strmap_init(&m);
		CHECK(!strmap_get(&m, "x", &v), "an empty strmap holds nothing");
		for (size_t i = 0; i < 5000; i++) {
			snprintf(names[i], sizeof names[i], "s%zu", i);
			if (!strmap_put(&m, names[i], i, NULL))
				bad++;
		}
		CHECK(bad == 0 && m.n == 5000, "strmap takes 5000 keys");
		for (size_t i = 0; i < 5000; i++)
			if (!strmap_get(&m, names[i], &v) || v != i)
				bad++;
		CHECK(bad == 0, "strmap finds each key's value");
		CHECK(!strmap_put(&m, "s42", 7, &v) && v == 42 && strmap_get(&m, "s42", &v) && v == 42,
		    "strmap keeps the first value of a key put twice");
		CHECK(!strmap_get(&m, "s5000", NULL) && !strmap_get(&m, "", NULL),
		    "strmap misses keys it was not given");
		strmap_release(&m);
		free(names);
	}
#undef CHECK
	return fails;
}

int
main(void)
{
	int fails = 0;

	fails += unit_util();
	fails += unit_journal();
	fails += unit_luahost();
	fails += unit_expr();
	fails += unit_runstate();
	fails += unit_store();
	fails += unit_runsum();
	fails += unit_console();
	fails += unit_html();
	printf("unit: %d failed\n", fails);
	return fails ? 1 : 0;
}
