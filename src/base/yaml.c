/*
 * yaml.c - libyaml events into a small node tree that keeps LINE:COLUMN for
 * every node, so every runbook error can say FILE:LINE:COL.
 *
 * Scalars are typed as YAML 1.2's core schema does (plain `true`, `3`,
 * `2.5`, `null`, `~`; anything quoted is a string).  Aliases, tags and
 * multiple documents are refused: a runbook should read the same to a
 * person as to zdm.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "base/util.h"
#include "base/ynode.h"

static struct ynode *
ynew(enum ynode_kind kind, const yaml_mark_t *m)
{
	struct ynode *n = xcalloc(1, sizeof *n);

	n->kind = kind;
	n->line = (int)m->line + 1;
	n->col = (int)m->column + 1;
	return n;
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
	parent->items = xrealloc(parent->items, (parent->n + 1) * sizeof *parent->items);
	if (parent->kind == Y_MAP) {
		parent->keys = xrealloc(parent->keys, (parent->n + 1) * sizeof *parent->keys);
		parent->keys[parent->n] = key;
	}
	parent->items[parent->n++] = val;
}

#define YAML_MAX_DEPTH 64	/* a runbook nested deeper is a mistake */

struct yparser {
	yaml_parser_t p;
	const char *file;
	struct yerrs *errs;
	bool failed;
	int depth;
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
	e->v[e->n].msg = line > 0 ? xasprintf("%s:%d:%d: %s", file, line, col, msg) :
	    xasprintf("%s: %s", file, msg);
	e->n++;
	free(msg);
}

static int
byloc(const void *a, const void *b)
{
	const struct yerr *x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	if (x->col != y->col)
		return x->col < y->col ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

void
yerrs_sort(struct yerrs *e)
{
	if (e->n > 1)
		qsort(e->v, e->n, sizeof *e->v, byloc);
}

void
yerrs_release(struct yerrs *e)
{
	for (size_t i = 0; i < e->n; i++)
		free(e->v[i].msg);
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
static struct ynode *parse_children_in(struct yparser *yp, struct ynode *n, yaml_event_type_t end);

static struct ynode *
parse_children(struct yparser *yp, struct ynode *n, yaml_event_type_t end)
{
	struct ynode *r = parse_children_in(yp, n, end);

	yp->depth--;
	return r;
}

static struct ynode *
parse_children_in(struct yparser *yp, struct ynode *n, yaml_event_type_t end)
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
			if (key->kind != Y_SCALAR) {
				yerr(yp->errs, yp->file, key->line, key->col,
				    "mapping keys must be plain strings");
				yp->failed = true;
			} else {
				for (size_t i = 0; i < n->n; i++)
					if (strcmp(n->keys[i]->str, key->str) == 0) {
						yerr(yp->errs, yp->file, key->line, key->col,
						    "duplicate key '%s' (first at line %d)",
						    key->str, n->keys[i]->line);
						break;
					}
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

/* consumes ev */
static struct ynode *
parse_node(struct yparser *yp, yaml_event_t *ev)
{
	struct ynode *n = NULL;

	switch (ev->type) {
	case YAML_SCALAR_EVENT:
		n = ynew(Y_SCALAR, &ev->start_mark);
		n->str = xstrndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
		n->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
		if (ev->data.scalar.tag != NULL &&
		    strcmp((const char *)ev->data.scalar.tag, "!") != 0)
			bad_tag(yp, n, ev->data.scalar.tag);
		break;
	case YAML_SEQUENCE_START_EVENT:
		n = ynew(Y_SEQ, &ev->start_mark);
		if (ev->data.sequence_start.tag != NULL)
			bad_tag(yp, n, ev->data.sequence_start.tag);
		yaml_event_delete(ev);
		return parse_children(yp, n, YAML_SEQUENCE_END_EVENT);
	case YAML_MAPPING_START_EVENT:
		n = ynew(Y_MAP, &ev->start_mark);
		if (ev->data.mapping_start.tag != NULL)
			bad_tag(yp, n, ev->data.mapping_start.tag);
		yaml_event_delete(ev);
		return parse_children(yp, n, YAML_MAPPING_END_EVENT);
	case YAML_ALIAS_EVENT:
		yerr(yp->errs, yp->file, (int)ev->start_mark.line + 1,
		    (int)ev->start_mark.column + 1,
		    "YAML aliases (*%s) are not supported: write the value out",
		    ev->data.alias.anchor);
		yp->failed = true;
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
