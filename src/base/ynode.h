/*
 * ynode.h - the runbook's YAML as a tree that remembers where each node was
 * (1-based line and column), and the error list every check writes into.
 */
#ifndef ZDM_YNODE_H
#define ZDM_YNODE_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

enum ynode_kind { Y_SCALAR, Y_SEQ, Y_MAP };

struct ynode {
	enum ynode_kind kind;
	int line, col;
	char *str;		/* scalar text */
	bool quoted;		/* scalar was quoted or a block: always a string */
	size_t n;
	struct ynode **items;	/* sequence items, or mapping values */
	struct ynode **keys;	/* mapping keys (scalars), parallel to items */
};

/* every error is FILE:LINE:COL: message; all are reported, sorted by place */
struct yerr {
	int line, col;
	size_t seq;
	char *msg;
};
struct yerrs {
	struct yerr *v;
	size_t n;
};
void yerr(struct yerrs *e, const char *file, int line, int col, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
void yerrs_sort(struct yerrs *e);
void yerrs_release(struct yerrs *e);

/* NULL with errors in *errs when the file does not read or parse */
/* a runbook or vars file is a regular file of at most this many bytes */
#define YAML_MAX_BYTES (16 << 20)

struct ynode *yparse_file(const char *path, const char *display, struct yerrs *errs);
/* the same, saying what the file is when it cannot be read ("cannot read
 * WHAT: ..."); yparse_file says "runbook" */
struct ynode *yparse_file_as(const char *path, const char *display, const char *what,
    struct yerrs *errs);
void ynode_free(struct ynode *n);
struct ynode *ymap_get(const struct ynode *map, const char *key);
const struct ynode *ymap_key(const struct ynode *map, const char *key);
json_t *yscalar_json(const struct ynode *n);
json_t *ynode_json(const struct ynode *n);	/* new reference */
const char *ynode_kind_name(const struct ynode *n);	/* "a list", "a string", ... */

#endif
