/*
 * yaml.c - libyaml events into a small node tree that keeps LINE:COLUMN for
 * every node, so every runbook error can say FILE:LINE:COL.
 *
 * Scalars are typed as YAML 1.2's core schema does (plain `true`, `3`,
 * `2.5`, `null`, `~`; anything quoted is a string).  Tags and multiple
 * documents are refused: a runbook should read the same to a person as to
 * zdm.
 *
 * Anchors (&name), aliases (*name) and merge keys (<<: *name, or a list of
 * aliases) are resolved here: an alias becomes a copy of its anchored node
 * whose nodes carry the alias's place (line, col) and the place they were
 * written (def_line, def_col), so a message points at the use and names the
 * definition.  Copies count against YAML_MAX_ALIAS_NODES, so an alias bomb
 * is refused at the alias that crosses the limit.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "base/strmap.h"
#include "base/util.h"
#include "base/ynode.h"

/*
 * The items (and keys) of a node have room for room(n) entries: n rounded up
 * to a power of two.  yadd doubles the room when n reaches it, so a list or
 * mapping of 100,000 entries is not copied over at each one.
 */
static size_t
room(size_t n)
{
	size_t r = 1;

	while (r < n)
		r *= 2;
	return r;
}

static struct ynode *
ynew(enum ynode_kind kind, const yaml_mark_t *m, const char *file)
{
	struct ynode *n = xcalloc(1, sizeof *n);

	n->kind = kind;
	n->line = (int)m->line + 1;
	n->col = (int)m->column + 1;
	n->file = file;
	return n;
}

struct ynode *
ynode_clone(const struct ynode *n)
{
	struct ynode *c;

	if (n == NULL)
		return NULL;
	c = xcalloc(1, sizeof *c);
	*c = *n;
	c->str = n->str != NULL ? xstrdup(n->str) : NULL;
	c->items = n->n > 0 ? xcalloc(room(n->n), sizeof *c->items) : NULL;
	c->keys = n->keys != NULL && n->n > 0 ? xcalloc(room(n->n), sizeof *c->keys) : NULL;
	for (size_t i = 0; i < n->n; i++) {
		c->items[i] = ynode_clone(n->items[i]);
		if (c->keys != NULL)
			c->keys[i] = ynode_clone(n->keys[i]);
	}
	if (n->keys == NULL || n->n == 0)
		c->keys = NULL;
	return c;
}

static size_t
ynode_count(const struct ynode *n)
{
	size_t k = 1;

	for (size_t i = 0; n != NULL && i < n->n; i++)
		k += ynode_count(n->items[i]) + (n->keys != NULL ? 1 : 0);
	return k;
}

/* a copy of n placed at the alias (line, col): every node remembers where it
 * was written */
static struct ynode *
clone_at(const struct ynode *n, int line, int col)
{
	struct ynode *c = xcalloc(1, sizeof *c);

	*c = *n;
	if (n->def_line == 0) {
		c->def_line = n->line;
		c->def_col = n->col;
	}
	c->line = line;
	c->col = col;
	c->str = n->str != NULL ? xstrdup(n->str) : NULL;
	c->items = n->n > 0 ? xcalloc(room(n->n), sizeof *c->items) : NULL;
	c->keys = n->keys != NULL && n->n > 0 ? xcalloc(room(n->n), sizeof *c->keys) : NULL;
	for (size_t i = 0; i < n->n; i++) {
		c->items[i] = clone_at(n->items[i], line, col);
		if (c->keys != NULL)
			c->keys[i] = clone_at(n->keys[i], line, col);
	}
	return c;
}

void
ynode_free(struct ynode *n)
{
	if (n == NULL)
		return;
	for (size_t i = 0; i < n->n; i++) {
		ynode_free(n->items[i]);
		if (n->keys != NULL)
			ynode_free(n->keys[i]);
	}
	free(n->items);
	free(n->keys);
	free(n->str);
	free(n);
}

static void
yadd(struct ynode *parent, struct ynode *key, struct ynode *val)
{
	size_t n = parent->n;

	if ((n & (n - 1)) == 0) {	/* 0 or a power of two: full */
		parent->items = xrealloc(parent->items, room(n + 1) * sizeof *parent->items);
		if (parent->kind == Y_MAP)
			parent->keys = xrealloc(parent->keys, room(n + 1) * sizeof *parent->keys);
	}
	if (parent->kind == Y_MAP)
		parent->keys[n] = key;
	parent->items[parent->n++] = val;
}

#define YAML_MAX_DEPTH 64	/* a runbook nested deeper is a mistake */

struct anchor {
	char *name;
	struct ynode *node;	/* a private copy: the tree may change after */
	size_t size;		/* nodes in it */
};

struct yparser {
	yaml_parser_t p;
	const char *file;
	struct yerrs *errs;
	bool failed;
	int depth;
	struct anchor *anchors;
	size_t nanchors;
	const char *open[YAML_MAX_DEPTH + 2];	/* anchors whose node is being read */
	int nopen;
	size_t copied;		/* nodes copied by aliases so far */
};

void
yerr(struct yerrs *e, const char *file, int line, int col, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	msg = xvasprintf(fmt, ap);
	va_end(ap);
	e->v = xrealloc(e->v, (e->n + 1) * sizeof *e->v);
	e->v[e->n].line = line;
	e->v[e->n].col = col;
	e->v[e->n].seq = e->n;
	e->v[e->n].file = xstrdup(file);
	e->v[e->n].msg = line > 0 ? xasprintf("%s:%d:%d: %s", file, line, col, msg) :
	    xasprintf("%s: %s", file, msg);
	e->n++;
	free(msg);
}

static int
byloc(const void *a, const void *b)
{
	const struct yerr *x = a, *y = b;

	if (x->rank != y->rank)
		return x->rank < y->rank ? -1 : 1;
	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	if (x->col != y->col)
		return x->col < y->col ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

void
yerrs_sort(struct yerrs *e)
{
	/* the files, in the order of their first error (a few: the runbook and
	 * what it includes) */
	const char **files = xcalloc(e->n + 2, sizeof *files);
	size_t nfiles = 0;

	if (e->first != NULL)
		files[nfiles++] = e->first;

	for (size_t i = 0; i < e->n; i++) {
		size_t f;

		for (f = 0; f < nfiles; f++)
			if (strcmp(files[f], e->v[i].file) == 0)
				break;
		if (f == nfiles)
			files[nfiles++] = e->v[i].file;
		e->v[i].rank = f;
	}
	free(files);
	if (e->n > 1)
		qsort(e->v, e->n, sizeof *e->v, byloc);
	/* a step copied by for_each: makes the same mistake in each copy: say
	 * it once */
	for (size_t i = 0, k = 0, n = e->n; i < n; i++) {
		bool dup = false;

		/* the same message has the same place: look back among those */
		for (size_t j = k; j > 0 && !dup && e->v[j - 1].rank == e->v[i].rank &&
		    e->v[j - 1].line == e->v[i].line && e->v[j - 1].col == e->v[i].col; j--)
			dup = strcmp(e->v[j - 1].msg, e->v[i].msg) == 0;
		if (dup) {
			free(e->v[i].msg);
			free(e->v[i].file);
			e->n--;
		} else {
			e->v[k++] = e->v[i];
		}
	}
}

void
yerrs_release(struct yerrs *e)
{
	for (size_t i = 0; i < e->n; i++) {
		free(e->v[i].msg);
		free(e->v[i].file);
	}
	free(e->v);
	e->v = NULL;
	e->n = 0;
}

static bool
next_event(struct yparser *yp, yaml_event_t *ev)
{
	if (yaml_parser_parse(&yp->p, ev))
		return true;
	if (yp->p.context != NULL)
		yerr(yp->errs, yp->file, (int)yp->p.problem_mark.line + 1,
		    (int)yp->p.problem_mark.column + 1, "YAML syntax: %s %s started at line %d column %d",
		    yp->p.problem ? yp->p.problem : "error", yp->p.context,
		    (int)yp->p.context_mark.line + 1, (int)yp->p.context_mark.column + 1);
	else
		yerr(yp->errs, yp->file, (int)yp->p.problem_mark.line + 1,
		    (int)yp->p.problem_mark.column + 1, "YAML syntax: %s",
		    yp->p.problem ? yp->p.problem : "error");
	yp->failed = true;
	return false;
}

static struct ynode *parse_node(struct yparser *yp, yaml_event_t *ev);
static struct ynode *parse_children_in(struct yparser *yp, struct ynode *n, struct strmap *seen,
    yaml_event_type_t end, struct ynode *merges);

/* move a source mapping's entries whose keys n does not have into n */
static void
merge_one(struct ynode *n, struct ynode *src)
{
	for (size_t i = 0; i < src->n; i++) {
		if (src->keys[i] == NULL || ymap_get(n, src->keys[i]->str) != NULL)
			continue;
		yadd(n, src->keys[i], src->items[i]);
		src->keys[i] = NULL;
		src->items[i] = NULL;
	}
}

/*
 * `<<: *a` or `<<: [*a, *b]`: the keys the mapping does not write itself
 * come from the merged mappings, the first one listed first (as YAML's
 * merge key type has it).
 */
static void
apply_merges(struct ynode *n, struct ynode *merges)
{
	for (size_t i = 0; i < merges->n; i++) {
		struct ynode *v = merges->items[i];

		if (v->kind == Y_MAP) {
			merge_one(n, v);
			continue;
		}
		for (size_t j = 0; v->kind == Y_SEQ && j < v->n; j++)
			if (v->items[j]->kind == Y_MAP)
				merge_one(n, v->items[j]);
	}
}

static bool
merge_ok(struct yparser *yp, const struct ynode *v)
{
	bool ok = v->kind == Y_MAP || (v->kind == Y_SEQ && v->n > 0);

	for (size_t j = 0; v->kind == Y_SEQ && j < v->n; j++)
		ok = ok && v->items[j]->kind == Y_MAP;
	if (!ok) {
		yerr(yp->errs, yp->file, v->line, v->col,
		    "a merge key (<<) takes a mapping, an alias of one (<<: *defaults) or a "
		    "list of them (<<: [*a, *b]), not %s", ynode_kind_name(v));
		yp->failed = true;
	}
	return ok;
}

static struct ynode *
parse_children(struct yparser *yp, struct ynode *n, yaml_event_type_t end)
{
	struct ynode merges = { .kind = Y_SEQ };
	struct strmap seen = { 0 };
	struct ynode *r = parse_children_in(yp, n, &seen, end, &merges);

	if (!yp->failed && merges.n > 0)
		apply_merges(n, &merges);
	for (size_t i = 0; i < merges.n; i++)
		ynode_free(merges.items[i]);
	free(merges.items);
	strmap_release(&seen);
	yp->depth--;
	return r;
}

/*
 * The key of mapping n that is the same as key (about to be added as key
 * n->n), or NULL.  A small mapping is searched; from SEEN_AFTER keys on,
 * seen indexes them (made then, kept up to date with each key added).
 */
#define SEEN_AFTER 16
static const struct ynode *
earlier_key(const struct ynode *n, const struct ynode *key, struct strmap *seen)
{
	size_t i;

	if (n->n < SEEN_AFTER) {
		for (i = 0; i < n->n; i++)
			if (strcmp(n->keys[i]->str, key->str) == 0)
				return n->keys[i];
		return NULL;
	}
	if (seen->n == 0)
		for (i = 0; i < n->n; i++)
			strmap_put(seen, n->keys[i]->str, i, NULL);
	return strmap_put(seen, key->str, n->n, &i) ? NULL : n->keys[i];
}

static struct ynode *
parse_children_in(struct yparser *yp, struct ynode *n, struct strmap *seen,
    yaml_event_type_t end, struct ynode *merges)
{
	if (++yp->depth > YAML_MAX_DEPTH) {
		yerr(yp->errs, yp->file, n->line, n->col,
		    "nested more than %d levels deep", YAML_MAX_DEPTH);
		yp->failed = true;
		return n;
	}
	for (;;) {
		yaml_event_t ev;
		struct ynode *key = NULL, *val;

		if (!next_event(yp, &ev))
			return n;
		if (ev.type == end) {
			yaml_event_delete(&ev);
			return n;
		}
		if (n->kind == Y_MAP) {
			key = parse_node(yp, &ev);
			if (key == NULL || yp->failed) {
				ynode_free(key);
				return n;
			}
			if (!next_event(yp, &ev)) {
				ynode_free(key);
				return n;
			}
			if (key->kind == Y_SCALAR && !key->quoted && strcmp(key->str, "<<") == 0) {
				if (merges->line > 0) {
					yerr(yp->errs, yp->file, key->line, key->col,
					    "duplicate merge key '<<' (first at line %d): merge several "
					    "mappings with one list, <<: [*a, *b]", merges->line);
					yp->failed = true;
					ynode_free(key);
					yaml_event_delete(&ev);	/* the value's, not parsed */
					return n;
				}
				merges->line = key->line;
				ynode_free(key);
				val = parse_node(yp, &ev);
				if (val == NULL || yp->failed || !merge_ok(yp, val)) {
					ynode_free(val);
					return n;
				}
				yadd(merges, NULL, val);
				continue;
			}
			if (key->kind != Y_SCALAR) {
				yerr(yp->errs, yp->file, key->line, key->col,
				    "mapping keys must be plain strings");
				yp->failed = true;
			} else {
				const struct ynode *first = earlier_key(n, key, seen);

				if (first != NULL)
					yerr(yp->errs, yp->file, key->line, key->col,
					    "duplicate key '%s' (first at line %d)",
					    key->str, first->line);
			}
		}
		val = parse_node(yp, &ev);
		if (val == NULL) {
			ynode_free(key);
			return n;
		}
		yadd(n, key, val);
		if (yp->failed)
			return n;
	}
}

static void
bad_tag(struct yparser *yp, const struct ynode *n, const yaml_char_t *tag)
{
	const char *t = (const char *)tag, *std = "tag:yaml.org,2002:";

	if (strncmp(t, std, strlen(std)) == 0)
		yerr(yp->errs, yp->file, n->line, n->col,
		    "YAML tags are not supported ('!!%s'): write the value plainly or quote it",
		    t + strlen(std));
	else
		yerr(yp->errs, yp->file, n->line, n->col,
		    "YAML tags are not supported ('%s'): write the value plainly or quote it", t);
}

static const struct anchor *
find_anchor(struct yparser *yp, const char *name)
{
	for (size_t i = yp->nanchors; i > 0; i--)	/* the latest &name wins */
		if (strcmp(yp->anchors[i - 1].name, name) == 0)
			return &yp->anchors[i - 1];
	return NULL;
}

static void
add_anchor(struct yparser *yp, const char *name, const struct ynode *n)
{
	yp->anchors = xrealloc(yp->anchors, (yp->nanchors + 1) * sizeof *yp->anchors);
	yp->anchors[yp->nanchors].name = xstrdup(name);
	yp->anchors[yp->nanchors].node = ynode_clone(n);
	yp->anchors[yp->nanchors].size = ynode_count(n);
	yp->nanchors++;
}

static struct ynode *
alias(struct yparser *yp, const yaml_event_t *ev)
{
	const char *name = (const char *)ev->data.alias.anchor;
	int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
	const struct anchor *a;

	for (int i = 0; i < yp->nopen; i++)
		if (strcmp(yp->open[i], name) == 0) {
			yerr(yp->errs, yp->file, line, col, "alias *%s is inside the node its "
			    "anchor &%s names: a value cannot contain itself", name, name);
			yp->failed = true;
			return NULL;
		}
	if ((a = find_anchor(yp, name)) == NULL) {
		yerr(yp->errs, yp->file, line, col, "alias *%s has no anchor: define it "
		    "first with &%s on a value above (anchors are per file)", name, name);
		yp->failed = true;
		return NULL;
	}
	if (a->size > YAML_MAX_ALIAS_NODES - yp->copied) {
		yerr(yp->errs, yp->file, line, col, "alias *%s would copy more than %d nodes "
		    "through aliases in this file (an alias bomb?): aliases of aliases multiply; "
		    "write the repeated part once, or use for_each: or include:",
		    name, YAML_MAX_ALIAS_NODES);
		yp->failed = true;
		return NULL;
	}
	yp->copied += a->size;
	return clone_at(a->node, line, col);
}

/* consumes ev */
static struct ynode *
parse_node(struct yparser *yp, yaml_event_t *ev)
{
	struct ynode *n = NULL;
	const char *anchor = NULL;

	switch (ev->type) {
	case YAML_SCALAR_EVENT:
		n = ynew(Y_SCALAR, &ev->start_mark, yp->file);
		n->str = xstrndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
		n->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
		if (ev->data.scalar.tag != NULL &&
		    strcmp((const char *)ev->data.scalar.tag, "!") != 0)
			bad_tag(yp, n, ev->data.scalar.tag);
		if (ev->data.scalar.anchor != NULL)
			add_anchor(yp, (const char *)ev->data.scalar.anchor, n);
		break;
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT: {
		bool seq = ev->type == YAML_SEQUENCE_START_EVENT;
		const yaml_char_t *tag = seq ? ev->data.sequence_start.tag : ev->data.mapping_start.tag;
		char *aname = NULL;

		n = ynew(seq ? Y_SEQ : Y_MAP, &ev->start_mark, yp->file);
		if (tag != NULL)
			bad_tag(yp, n, tag);
		anchor = (const char *)(seq ? ev->data.sequence_start.anchor :
		    ev->data.mapping_start.anchor);
		if (anchor != NULL && yp->nopen < YAML_MAX_DEPTH + 2) {
			aname = xstrdup(anchor);
			yp->open[yp->nopen++] = aname;
		}
		yaml_event_delete(ev);
		n = parse_children(yp, n, seq ? YAML_SEQUENCE_END_EVENT : YAML_MAPPING_END_EVENT);
		if (aname != NULL) {
			yp->nopen--;
			if (!yp->failed)
				add_anchor(yp, aname, n);
			free(aname);
		}
		return n;
	}
	case YAML_ALIAS_EVENT:
		n = alias(yp, ev);
		break;
	default:
		yerr(yp->errs, yp->file, (int)ev->start_mark.line + 1,
		    (int)ev->start_mark.column + 1, "unexpected YAML event");
		yp->failed = true;
		break;
	}
	yaml_event_delete(ev);
	return n;
}

/*
 * The whole file, read before parsing.  Only a regular file of at most
 * YAML_MAX_BYTES is read: a FIFO, a device or /dev/stdin could block
 * forever or never end, and a runbook of 1,000 steps is about 100 KB.
 * Opened non-blocking, so a FIFO is refused without waiting for a writer.
 */
static char *
read_regular(const char *path, const char *display, const char *what, struct yerrs *errs,
    size_t *len)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	struct stat st;
	char *buf;
	size_t n = 0;

	if (fd < 0) {
		yerr(errs, display, 0, 0, "cannot read %s: %s", what, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		yerr(errs, display, 0, 0, "not a regular file (a runbook or vars file is read "
		    "only from a file: a FIFO, device, socket or directory is refused)");
		close(fd);
		return NULL;
	}
	if (st.st_size > YAML_MAX_BYTES) {
		yerr(errs, display, 0, 0, "%lld bytes is over the limit of %d MiB for a "
		    "runbook or vars file", (long long)st.st_size, YAML_MAX_BYTES >> 20);
		close(fd);
		return NULL;
	}
	buf = xmalloc((size_t)st.st_size + 1);
	for (;;) {
		ssize_t r = read(fd, buf + n, (size_t)st.st_size + 1 - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			yerr(errs, display, 0, 0, "cannot read %s: %s", what, strerror(errno));
			free(buf);
			close(fd);
			return NULL;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (n > (size_t)st.st_size) {	/* it grew while being read */
			yerr(errs, display, 0, 0, "the file grew while it was read; try again");
			free(buf);
			close(fd);
			return NULL;
		}
	}
	close(fd);
	buf[n] = '\0';
	*len = n;
	return buf;
}

struct ynode *
yparse_file(const char *path, const char *display, struct yerrs *errs)
{
	return yparse_file_as(path, display, "runbook", errs);
}

struct ynode *
yparse_file_as(const char *path, const char *display, const char *what, struct yerrs *errs)
{
	struct yparser yp;
	struct ynode *root = NULL;
	yaml_event_t ev;
	int ndocs = 0;
	size_t len;
	char *buf = read_regular(path, display, what, errs, &len);

	if (buf == NULL)
		return NULL;
	memset(&yp, 0, sizeof yp);
	yp.file = display;
	yp.errs = errs;
	yaml_parser_initialize(&yp.p);
	yaml_parser_set_input_string(&yp.p, (const unsigned char *)buf, len);
	while (!yp.failed && next_event(&yp, &ev)) {
		yaml_event_type_t t = ev.type;

		if (t == YAML_STREAM_END_EVENT) {
			yaml_event_delete(&ev);
			break;
		}
		if (t == YAML_DOCUMENT_START_EVENT) {
			if (++ndocs > 1) {
				yerr(errs, display, (int)ev.start_mark.line + 1,
				    (int)ev.start_mark.column + 1,
				    "a runbook is one YAML document; found a second");
				yp.failed = true;
			}
			yaml_event_delete(&ev);
			continue;
		}
		if (t == YAML_STREAM_START_EVENT || t == YAML_DOCUMENT_END_EVENT) {
			yaml_event_delete(&ev);
			continue;
		}
		if (root != NULL) {
			yaml_event_delete(&ev);
			break;
		}
		root = parse_node(&yp, &ev);
	}
	yaml_parser_delete(&yp.p);
	free(buf);
	for (size_t i = 0; i < yp.nanchors; i++) {
		free(yp.anchors[i].name);
		ynode_free(yp.anchors[i].node);
	}
	free(yp.anchors);
	if (yp.failed) {
		ynode_free(root);
		return NULL;
	}
	if (root == NULL)
		yerr(errs, display, 1, 1, "the runbook is empty");
	return root;
}

struct ynode *
ymap_get(const struct ynode *map, const char *key)
{
	if (map == NULL || map->kind != Y_MAP)
		return NULL;
	for (size_t i = 0; i < map->n; i++)
		if (strcmp(map->keys[i]->str, key) == 0)
			return map->items[i];
	return NULL;
}

const struct ynode *
ymap_key(const struct ynode *map, const char *key)
{
	if (map == NULL || map->kind != Y_MAP)
		return NULL;
	for (size_t i = 0; i < map->n; i++)
		if (strcmp(map->keys[i]->str, key) == 0)
			return map->keys[i];
	return NULL;
}

static bool
is_int(const char *s)
{
	const char *p = s;

	if (*p == '-' || *p == '+')
		p++;
	if (*p == '\0')
		return false;
	for (; *p != '\0'; p++)
		if (*p < '0' || *p > '9')
			return false;
	return true;
}

static bool
is_float(const char *s, double *d)
{
	char *end;
	const char *p = s;

	if (*p == '-' || *p == '+')
		p++;
	if (!((*p >= '0' && *p <= '9') || *p == '.'))
		return false;
	errno = 0;
	*d = strtod(s, &end);
	return *end == '\0' && errno == 0 && isfinite(*d) && strpbrk(s, "xXpP") == NULL;
}

json_t *
yscalar_json(const struct ynode *n)
{
	const char *s = n->str;
	double d;

	if (n->quoted)
		return json_string(s);
	if (*s == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
	    strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0)
		return json_null();
	if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 || strcmp(s, "TRUE") == 0)
		return json_true();
	if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0 || strcmp(s, "FALSE") == 0)
		return json_false();
	if (is_int(s)) {
		char *end;
		long long v;

		errno = 0;
		v = strtoll(s, &end, 10);
		if (errno == 0)
			return json_integer(v);
	}
	if (is_float(s, &d))
		return json_real(d);
	return json_string(s);
}

json_t *
ynode_json(const struct ynode *n)
{
	json_t *v;

	if (n == NULL)
		return json_null();
	switch (n->kind) {
	case Y_SCALAR:
		return yscalar_json(n);
	case Y_SEQ:
		v = json_array();
		for (size_t i = 0; i < n->n; i++)
			json_array_append_new(v, ynode_json(n->items[i]));
		return v;
	case Y_MAP:
		v = json_object();
		for (size_t i = 0; i < n->n; i++)
			json_object_set_new(v, n->keys[i]->str, ynode_json(n->items[i]));
		return v;
	}
	return json_null();
}

const char *
ynode_kind_name(const struct ynode *n)
{
	json_t *v;
	const char *k;

	if (n->kind == Y_SEQ)
		return "a list";
	if (n->kind == Y_MAP)
		return "a mapping";
	v = yscalar_json(n);
	k = json_is_string(v) ? "a string" : json_is_integer(v) ? "a whole number" :
	    json_is_real(v) ? "a number" : json_is_boolean(v) ? "a boolean" : "null";
	json_decref(v);
	return k;
}
