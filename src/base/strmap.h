/*
 * strmap.h - a small open-addressing hash map from strings to indexes, for
 * "is this name taken" and "where is the step with this id" at 10,000 steps
 * without comparing every name with every other.
 *
 * Keys are borrowed: each must stay alive and unchanged while it is in the
 * map.  Zero-initialised (or strmap_init) is an empty map; strmap_release
 * frees the table, not the keys.
 */
#ifndef ZDM_BASE_STRMAP_H
#define ZDM_BASE_STRMAP_H

#include <stdbool.h>
#include <stddef.h>

struct strmap {
	const char **keys;	/* NULL: an empty slot */
	size_t *vals;
	size_t cap, n;		/* cap is 0 or a power of two */
};

void strmap_init(struct strmap *m);
void strmap_release(struct strmap *m);
/* key -> val unless key is there already: then false, *old (if old) its value,
 * the map unchanged (the first one wins) */
bool strmap_put(struct strmap *m, const char *key, size_t val, size_t *old);
/* true and *val (if val) when key is there */
bool strmap_get(const struct strmap *m, const char *key, size_t *val);

#endif
