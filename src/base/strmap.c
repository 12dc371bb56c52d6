/*
 * strmap.c - open addressing with linear probing, FNV-1a hashes, the table
 * doubled when it is more than half full.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/strmap.h"
#include "base/util.h"

static uint64_t
hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h ^ (h >> 29);
}

void
strmap_init(struct strmap *m)
{
	memset(m, 0, sizeof *m);
}

void
strmap_release(struct strmap *m)
{
	free(m->keys);
	free(m->vals);
	strmap_init(m);
}

/* the slot of key, or of the empty slot where it would go; cap > 0 */
static size_t
slot(const struct strmap *m, const char *key)
{
	size_t i = (size_t)hash(key) & (m->cap - 1);

	while (m->keys[i] != NULL && strcmp(m->keys[i], key) != 0)
		i = (i + 1) & (m->cap - 1);
	return i;
}

static void
grow(struct strmap *m)
{
	struct strmap big = { NULL, NULL, m->cap == 0 ? 16 : m->cap * 2, 0 };

	big.keys = xcalloc(big.cap, sizeof *big.keys);
	big.vals = xcalloc(big.cap, sizeof *big.vals);
	for (size_t i = 0; i < m->cap; i++)
		if (m->keys[i] != NULL) {
			size_t j = slot(&big, m->keys[i]);

			big.keys[j] = m->keys[i];
			big.vals[j] = m->vals[i];
			big.n++;
		}
	free(m->keys);
	free(m->vals);
	*m = big;
}

bool
strmap_put(struct strmap *m, const char *key, size_t val, size_t *old)
{
	size_t i;

	if ((m->n + 1) * 2 > m->cap)
		grow(m);
	i = slot(m, key);
	if (m->keys[i] != NULL) {
		if (old != NULL)
			*old = m->vals[i];
		return false;
	}
	m->keys[i] = key;
	m->vals[i] = val;
	m->n++;
	return true;
}

bool
strmap_get(const struct strmap *m, const char *key, size_t *val)
{
	size_t i;

	if (m->cap == 0)
		return false;
	i = slot(m, key);
	if (m->keys[i] == NULL)
		return false;
	if (val != NULL)
		*val = m->vals[i];
	return true;
}
