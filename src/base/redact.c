/*
 * redact.c - every value that came from `secrets:` is replaced by "***"
 * wherever zdm writes text: journal records, log lines, terminal output and a
 * child process's captured stdout/stderr.
 *
 * The list is process-wide (secrets are resolved once per run).  Longer
 * secrets are replaced first so a secret that contains another is not left
 * half visible.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/redact.h"
#include "base/util.h"

static char **secrets;
static size_t nsecrets;

static int
bylen(const void *a, const void *b)
{
	size_t la = strlen(*(char *const *)a), lb = strlen(*(char *const *)b);

	return la < lb ? 1 : la > lb ? -1 : 0;
}

void
redact_add(const char *secret)
{
	if (secret == NULL || *secret == '\0')
		return;
	for (size_t i = 0; i < nsecrets; i++)
		if (strcmp(secrets[i], secret) == 0)
			return;
	secrets = xrealloc(secrets, (nsecrets + 1) * sizeof *secrets);
	secrets[nsecrets++] = xstrdup(secret);
	qsort(secrets, nsecrets, sizeof *secrets, bylen);
	/* a secret read from a file usually ends in a newline: redact the
	 * value without it too */
	{
		size_t n = strlen(secret);

		if (n > 1 && secret[n - 1] == '\n') {
			char *t = xstrndup(secret, n - 1);

			redact_add(t);
			free(t);
		}
	}
}

size_t
redact_maxlen(void)
{
	/* sorted longest first */
	return nsecrets ? strlen(secrets[0]) : 0;
}

bool
redact_active(void)
{
	return nsecrets > 0;
}

/* lengths, not C strings: a NUL inside a value must not hide what follows */
static bool
contains_any_n(const char *s, size_t n)
{
	for (size_t i = 0; i < nsecrets; i++)
		if (memmem(s, n, secrets[i], strlen(secrets[i])) != NULL)
			return true;
	return false;
}

char *
redact_strn(const char *s, size_t n, size_t *outlen)
{
	struct sbuf sb;
	size_t p = 0;

	if (s == NULL)
		return NULL;
	sb_init(&sb);
	if (!contains_any_n(s, n)) {
		sb_add(&sb, s, n);
	} else {
		while (p < n) {
			size_t i;

			for (i = 0; i < nsecrets; i++) {
				size_t k = strlen(secrets[i]);

				if (k <= n - p && memcmp(s + p, secrets[i], k) == 0) {
					sb_adds(&sb, "***");
					p += k;
					break;
				}
			}
			if (i == nsecrets)
				sb_addc(&sb, s[p++]);
		}
	}
	if (outlen != NULL)
		*outlen = sb.len;
	return sb_detach(&sb);
}

char *
redact_str(const char *s)
{
	return s == NULL ? NULL : redact_strn(s, strlen(s), NULL);
}

size_t
redact_tail(char *s, size_t len)
{
	/* a cut inside a secret leaves its first bytes at the end: drop them */
	for (size_t i = 0; i < nsecrets; i++) {
		size_t sl = strlen(secrets[i]);

		for (size_t k = sl - 1; k > 0; k--) {
			if (k <= len && memcmp(s + len - k, secrets[i], k) == 0) {
				len -= k;
				s[len] = '\0';
				break;
			}
		}
	}
	return len;
}

/* a number equal to a secret (a PIN passed through tonumber, a JSON output
 * equal to a secret) becomes the string "***": NULL if not.  Equal, not
 * containing: a secret "5" must not wipe every duration with a 5 in it. */
static json_t *
redact_number(const json_t *v)
{
	char t[64];

	if (json_is_integer(v))
		snprintf(t, sizeof t, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	else if (json_is_real(v) && fabs(json_real_value(v)) < 9007199254740992.0 &&
	    json_real_value(v) == floor(json_real_value(v)))
		snprintf(t, sizeof t, "%.0f", json_real_value(v));	/* 4711.0 is 4711 */
	else if (json_is_real(v))
		snprintf(t, sizeof t, "%.17g", json_real_value(v));
	else
		return NULL;
	for (size_t i = 0; i < nsecrets; i++)
		if (strcmp(t, secrets[i]) == 0)
			return json_string("***");
	if (json_is_real(v)) {
		char *d = json_dumps(v, JSON_ENCODE_ANY);	/* jansson's own form */

		for (size_t i = 0; d != NULL && i < nsecrets; i++)
			if (strcmp(d, secrets[i]) == 0) {
				free(d);
				return json_string("***");
			}
		free(d);
	}
	return NULL;
}

void
redact_json(json_t *v)
{
	if (nsecrets == 0 || v == NULL)
		return;
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		size_t n = json_string_length(v);

		if (contains_any_n(s, n)) {
			size_t rn;
			char *r = redact_strn(s, n, &rn);

			/* a secret that ends inside a UTF-8 sequence can leave bytes
			 * jansson refuses: then the whole value goes */
			if (json_string_setn(v, r, rn) != 0)
				json_string_set(v, "***");
			free(r);
		}
	} else if (json_is_array(v)) {
		size_t i;
		json_t *e, *r;

		json_array_foreach(v, i, e) {
			if ((r = redact_number(e)) != NULL)
				json_array_set_new(v, i, r);
			else
				redact_json(e);
		}
	} else if (json_is_object(v)) {
		const char *k;
		json_t *e, *r;
		void *tmp;

		json_object_foreach_safe(v, tmp, k, e) {
			if ((r = redact_number(e)) != NULL)
				json_object_set_new(v, k, r);
			else
				redact_json(e);
			if (contains_any_n(k, strlen(k))) {
				char *rk = redact_str(k);

				json_object_set(v, rk, json_object_get(v, k));
				json_object_del(v, k);
				free(rk);
			}
		}
	}
}

void
redact_reset(void)
{
	for (size_t i = 0; i < nsecrets; i++)
		free(secrets[i]);
	free(secrets);
	secrets = NULL;
	nsecrets = 0;
}
