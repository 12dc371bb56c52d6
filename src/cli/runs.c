/*
 * runs.c - which run an argument names: the state dir of a runbook, and
 * RUN_ID | RUNBOOK | JOURNAL arguments, found through the store (store.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fsio.h"
#include "base/util.h"
#include "base/ynode.h"
#include "cli/cli.h"
#include "core/store.h"

/* the --state / --state-dir / ZDM_STATE / ZDM_STATE_DIR in force, or NULL */
static const char *
state_spec(const struct cli *c)
{
	const char *env = getenv("ZDM_STATE"), *envd = getenv("ZDM_STATE_DIR");

	if (c->state != NULL)
		return c->state;
	if (c->state_dir != NULL)
		return c->state_dir;
	if (env != NULL && *env != '\0')
		return env;
	if (envd != NULL && *envd != '\0')
		return envd;
	return NULL;
}

char *
state_dir_for(const struct cli *c, const char *runbook)
{
	const char *spec = state_spec(c);
	char *dir, *abs;

	if (spec != NULL)
		return path_abs(spec);
	if (runbook == NULL)
		return path_abs(".zdm");
	dir = path_dirname(runbook);
	abs = strcmp(dir, ".") == 0 ? xstrdup(".zdm") : path_join(dir, ".zdm");
	free(dir);
	dir = path_abs(abs);
	free(abs);
	return dir;
}

struct store *
state_open(const struct cli *c, const char *runbook, const char *cmd)
{
	const char *spec = state_spec(c), *schema = c->schema;
	struct store *s;
	char *err = NULL, *sd;

	if (c->state != NULL && c->state_dir != NULL) {
		fprintf(stderr, "zdm %s: give --state or --state-dir, not both\n", cmd);
		return NULL;
	}
	if (schema == NULL)
		schema = getenv("ZDM_STATE_SCHEMA") && *getenv("ZDM_STATE_SCHEMA") ?
		    getenv("ZDM_STATE_SCHEMA") : NULL;
	if (spec != NULL && store_is_pg(spec)) {
		s = store_open_pg(spec, schema, &err);
		if (s == NULL) {
			/* never the connection string: it is the user's to show */
			fprintf(stderr, "zdm %s: %s: %s\n", cmd, c->state != NULL ? "--state" : "ZDM_STATE",
			    err);
			free(err);
		}
		return s;
	}
	if (c->schema != NULL) {
		fprintf(stderr, "zdm %s: --schema is for a PostgreSQL state (--state postgresql://...)\n",
		    cmd);
		return NULL;
	}
	sd = state_dir_for(c, runbook);
	s = store_open_dir(sd);
	free(sd);
	return s;
}

bool
is_runbook_path(const char *a)
{
	size_t n = strlen(a);
	struct stat st;

	if (n > 6 && strcmp(a + n - 6, ".jsonl") == 0)
		return false;
	return stat(a, &st) == 0 && S_ISREG(st.st_mode);
}

static bool
with_dry(const char *cmd)
{
	return strcmp(cmd, "resume") != 0 && strcmp(cmd, "rollback") != 0;
}

/*
 * The state dirs zdm ran runbooks in lately, newest first, one absolute
 * path a line: $XDG_STATE_HOME/zdm/state-dirs, else
 * ~/.local/state/zdm/state-dirs.  A bare RUN_ID is looked for in them, so
 * a hint zdm printed (zdm resume RUN_ID) works from any directory.
 */
#define INDEX_MAX 32

char *
state_index_path(void)
{
	const char *x = getenv("XDG_STATE_HOME"), *h = getenv("HOME");

	if (x != NULL && x[0] == '/')
		return path_join(x, "zdm/state-dirs");
	if (h != NULL && h[0] == '/')
		return path_join(h, ".local/state/zdm/state-dirs");
	return NULL;
}

/* the index's lines (at most INDEX_MAX), NULL-terminated; n in *n */
static char **
index_read(const char *path, size_t *n)
{
	char **v = xcalloc(INDEX_MAX + 1, sizeof *v), line[PATH_MAX + 2];
	FILE *f = fopen(path, "r");

	*n = 0;
	if (f == NULL)
		return v;
	while (*n < INDEX_MAX && fgets(line, sizeof line, f) != NULL) {
		size_t l = strlen(line);

		if (l > 0 && line[l - 1] == '\n')
			line[--l] = '\0';
		if (line[0] == '/')
			v[(*n)++] = xstrdup(line);
	}
	fclose(f);
	return v;
}

static void
strv_free(char **v)
{
	for (size_t i = 0; v != NULL && v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

static bool
is_dir(const char *p)
{
	struct stat st;

	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* put DIR first in the index: under its lock, a new file renamed over the
 * old one, so a reader never sees half of it; -1 and *err */
static int
index_add(const char *path, const char *dir, char **err)
{
	char *parent = path_dirname(path), *lk = xasprintf("%s.lock", path),
	    *tmp = xasprintf("%s.%ld.tmp", path, (long)getpid()), **old;
	size_t n;
	int lfd = -1, rc = -1;
	FILE *f = NULL;

	if (mkdir_p(parent, 0700) != 0) {
		seterr(err, "cannot create %s: %s", parent, strerror(errno));
		goto out;
	}
	lfd = open(lk, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lfd < 0 || flock(lfd, LOCK_EX) != 0) {
		seterr(err, "cannot lock %s: %s", lk, strerror(errno));
		goto out;
	}
	old = index_read(path, &n);
	f = fopen(tmp, "w");
	if (f == NULL) {
		seterr(err, "cannot write %s: %s", tmp, strerror(errno));
		strv_free(old);
		goto out;
	}
	fprintf(f, "%s\n", dir);
	for (size_t i = 0, k = 1; i < n && k < INDEX_MAX; i++)
		if (strcmp(old[i], dir) != 0 && is_dir(old[i])) {	/* a dir gone is dropped */
			fprintf(f, "%s\n", old[i]);
			k++;
		}
	strv_free(old);
	if (fflush(f) != 0 || fullsync(fileno(f)) != 0 || fclose(f) != 0) {
		seterr(err, "cannot write %s: %s", tmp, strerror(errno));
		f = NULL;
		unlink(tmp);
		goto out;
	}
	f = NULL;
	if (rename(tmp, path) != 0) {
		seterr(err, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
		unlink(tmp);
		goto out;
	}
	rc = 0;
out:
	if (f != NULL)
		fclose(f);
	if (lfd >= 0)
		close(lfd);	/* lets the lock go */
	free(parent);
	free(lk);
	free(tmp);
	return rc;
}

void
state_remember(const struct store *s)
{
	char *path, *err = NULL, real[PATH_MAX];

	if (s == NULL || s->dir == NULL || realpath(s->dir, real) == NULL)
		return;		/* not in files, or no run was written there */
	if ((path = state_index_path()) == NULL)
		return;
	if (index_add(path, real, &err) != 0) {
		fprintf(stderr, "zdm: warning: cannot record the state dir %s in %s: %s; "
		    "from another directory name it with --state-dir\n", real, path, err);
		free(err);
	}
	free(path);
}

/* a RUN_ID that can name a journal file (no path in it) */
static bool
run_id_plain(const char *id)
{
	return id[0] != '\0' && id[0] != '.' && strchr(id, '/') == NULL;
}

/*
 * A bare RUN_ID without --state / --state-dir (or a PostgreSQL ZDM_STATE):
 * looked for in ZDM_STATE_DIR (or a ZDM_STATE dir), ./.zdm and the state
 * dirs of the index.  Found in one: its store; in none or in several: NULL
 * after saying so (exit 2).
 */
static struct store *
search_run(const struct cli *c, const char *id, const char *cmd, char **ref)
{
	char *cands[INDEX_MAX + 3], *found[INDEX_MAX + 3], *seen[INDEX_MAX + 3];
	char *ipath = state_index_path(), **idx;
	size_t nc = 0, nf = 0, ns = 0, n;
	const char *spec = state_spec(c);
	struct store *s = NULL;

	*ref = NULL;
	if (spec != NULL)
		cands[nc++] = path_abs(spec);
	cands[nc++] = path_abs(".zdm");
	idx = ipath != NULL ? index_read(ipath, &n) : xcalloc(1, sizeof *idx);
	for (size_t i = 0; idx[i] != NULL; i++)
		cands[nc++] = xstrdup(idx[i]);
	strv_free(idx);
	for (size_t i = 0; i < nc && run_id_plain(id); i++) {
		char real[PATH_MAX], *j;
		bool dup = false;
		struct store *t;

		if (realpath(cands[i], real) == NULL)
			continue;
		for (size_t k = 0; k < ns; k++)
			dup = dup || strcmp(seen[k], real) == 0;
		if (dup)
			continue;
		seen[ns++] = xstrdup(real);
		t = store_open_dir(cands[i]);
		j = store_find(t, id);
		if (j != NULL) {
			found[nf++] = xstrdup(cands[i]);
			if (s == NULL) {
				s = t;
				*ref = j;
				continue;
			}
			free(j);
		}
		store_close(t);
	}
	if (nf == 0)
		fprintf(stderr, "zdm %s: no run '%s' in %s%s%s, nor in the state dirs of the runbooks "
		    "run lately (%s); name the runbook, or set --state-dir / ZDM_STATE_DIR\n", cmd, id,
		    spec != NULL ? cands[0] : "", spec != NULL ? " or " : "", cands[spec != NULL],
		    ipath != NULL ? ipath : "no index: HOME is not set");
	else if (nf > 1) {
		fprintf(stderr, "zdm %s: run '%s' is in %zu state dirs:\n", cmd, id, nf);
		for (size_t i = 0; i < nf; i++)
			fprintf(stderr, "  %s\n", found[i]);
		fprintf(stderr, "  name one: zdm %s %s --state-dir DIR\n", cmd, id);
		free(*ref);
		*ref = NULL;
		store_close(s);
		s = NULL;
	}
	for (size_t i = 0; i < nc; i++)
		free(cands[i]);
	for (size_t i = 0; i < nf; i++)
		free(found[i]);
	for (size_t i = 0; i < ns; i++)
		free(seen[i]);
	free(ipath);
	return s;
}

/*
 * [RUN_ID | RUNBOOK | JOURNAL] -> the store of its state dir and the run's
 * ref in it.  With a runbook, its newest run.  Prints the error and
 * returns NULL when none.
 */
struct store *
find_run(const struct cli *c, const char *arg, const char *cmd, char **ref)
{
	struct store *s;
	char *sd;

	*ref = NULL;
	if (arg != NULL && strlen(arg) > 6 && strcmp(arg + strlen(arg) - 6, ".jsonl") == 0) {
		char *abs = path_abs(arg);

		if (access(abs, R_OK) != 0) {
			fprintf(stderr, "zdm %s: cannot read journal '%s': %s\n", cmd, arg, strerror(errno));
			free(abs);
			return NULL;
		}
		sd = store_dir_of_journal(abs);
		s = store_open_dir(sd);
		free(sd);
		*ref = abs;
		return s;
	}
	if (arg != NULL && is_runbook_path(arg)) {
		struct yerrs e = { 0 };
		struct ynode *root = yparse_file(arg, arg, &e);
		const struct ynode *n = ymap_get(root, "name");

		s = state_open(c, arg, cmd);
		if (s == NULL) {
			ynode_free(root);
			yerrs_release(&e);
			return NULL;
		}
		if (n != NULL && n->kind == Y_SCALAR)
			*ref = store_latest(s, n->str, with_dry(cmd));
		else if (e.n > 0)
			print_errors(&e);
		else
			fprintf(stderr, "zdm %s: '%s' is not a runbook (no name:); name a RUN_ID, a runbook or a journal\n",
			    cmd, arg);
		if (*ref == NULL && n != NULL)
			fprintf(stderr, "zdm %s: no runs of runbook '%s' in %s\n", cmd, n->str, store_location(s));
		ynode_free(root);
		yerrs_release(&e);
		if (*ref == NULL) {
			store_close(s);
			return NULL;
		}
		return s;
	}
	if (arg != NULL && c->state == NULL && c->state_dir == NULL &&
	    (state_spec(c) == NULL || !store_is_pg(state_spec(c))) && c->schema == NULL)
		return search_run(c, arg, cmd, ref);
	s = state_open(c, NULL, cmd);
	if (s == NULL)
		return NULL;
	*ref = arg == NULL ? store_latest(s, NULL, with_dry(cmd)) : store_find(s, arg);
	if (*ref == NULL && arg == NULL)
		fprintf(stderr, "zdm %s: no runs in %s (name a RUN_ID or RUNBOOK, or set --state-dir)\n",
		    cmd, store_location(s));
	else if (*ref == NULL)
		fprintf(stderr, "zdm %s: no run '%s' in %s (name the runbook, or set --state-dir / ZDM_STATE_DIR)\n",
		    cmd, arg, store_location(s));
	if (*ref == NULL) {
		store_close(s);
		return NULL;
	}
	return s;
}
