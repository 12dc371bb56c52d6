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
	const char *file;	/* the file's name as shown in messages (borrowed) */
	int def_line, def_col;	/* copied through an alias: where the anchored
				 * content was written (line, col are the alias's) */
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
	size_t rank;		/* errors of one file stay together, files in the
				 * order of their first error */
	char *file;
	char *msg;
};
struct yerrs {
	struct yerr *v;
	size_t n;
	const char *first;	/* errors of this file sort first (borrowed), or NULL */
};
void yerr(struct yerrs *e, const char *file, int line, int col, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
void yerrs_sort(struct yerrs *e);
void yerrs_release(struct yerrs *e);

/* NULL with errors in *errs when the file does not read or parse */
/* a runbook or vars file is a regular file of at most this many bytes */
#define YAML_MAX_BYTES (16 << 20)
/* aliases may copy at most this many nodes into one file's tree: a chain of
 * aliases of aliases (the "billion laughs") stops here */
#define YAML_MAX_ALIAS_NODES 100000

/* display must outlive the tree: nodes point to it (ynode.file) */

struct ynode *yparse_file(const char *path, const char *display, struct yerrs *errs);
/* the same, saying what the file is when it cannot be read ("cannot read
 * WHAT: ..."); yparse_file says "runbook" */
struct ynode *yparse_file_as(const char *path, const char *display, const char *what,
    struct yerrs *errs);
void ynode_free(struct ynode *n);
struct ynode *ynode_clone(const struct ynode *n);
struct ynode *ymap_get(const struct ynode *map, const char *key);
const struct ynode *ymap_key(const struct ynode *map, const char *key);
json_t *yscalar_json(const struct ynode *n);
json_t *ynode_json(const struct ynode *n);	/* new reference */
const char *ynode_kind_name(const struct ynode *n);	/* "a list", "a string", ... */

#endif
