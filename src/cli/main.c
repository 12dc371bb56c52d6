/*
 * main.c - the zdm command line.  One table entry per command (as git.c and
 * tmux's cmd-*.c do): name, handler, the options it takes, usage and help.
 * Options are parsed once here; handlers only do their job.  Only this file
 * turns errors into exit codes.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/proc.h"
#include "base/redact.h"
#include "base/util.h"
#include "cli/audit.h"
#include "core/journal.h"
#include "core/lock.h"
#include "core/registry.h"
#include "core/runner.h"
#include "report/ci.h"
#include "steps/builtin.h"
#include "zdm/step.h"

/* options a command may take */
enum {
	O_VAR = 1 << 0,
	O_VARS_FILE = 1 << 1,
	O_DRY_RUN = 1 << 2,
	O_OUTPUT = 1 << 3,
	O_STATE_DIR = 1 << 4,
	O_PLUGIN_PATH = 1 << 5,
	O_FAIL_AT = 1 << 6,
	O_IN_DOUBT = 1 << 7,
	O_ALLOW_CHANGED = 1 << 8,
	O_JSON = 1 << 9,
	O_YES = 1 << 10,
	/* issue 7A: CI stage */
	O_JUNIT = 1 << 16,
	O_NONINTERACTIVE = 1 << 17,
	O_APPROVE = 1 << 18,
	O_DENY = 1 << 19,
	O_REASON = 1 << 20,
};

struct cli {
	const char **vars;
	size_t nvars;
	const char *vars_file;
	bool dry_run;
	bool json_output;
	const char *state_dir;
	const char *plugin_path;
	const char *fail_at;
	enum in_doubt in_doubt;
	bool allow_changed;
	bool json;
	const char *junit;		/* --junit FILE */
	bool non_interactive;		/* --non-interactive */
	const char **approve;		/* --approve STEP, repeatable */
	size_t napprove;
	bool deny;			/* zdm approve --deny */
	const char *reason;		/* zdm approve --reason TEXT */
	int argc;		/* positional arguments */
	char **argv;
};

struct cmd {
	const char *name;
	int (*fn)(const struct cmd *, struct cli *);
	unsigned opts;
	int min_args, max_args;
	const char *usage;
	const char *help;
};

static const struct option long_opts[] = {
	{ "var", required_argument, NULL, 'v' },
	{ "vars-file", required_argument, NULL, 'f' },
	{ "dry-run", no_argument, NULL, 'n' },
	{ "output", required_argument, NULL, 'o' },
	{ "state-dir", required_argument, NULL, 's' },
	{ "plugin-path", required_argument, NULL, 'p' },
	{ "fail-at", required_argument, NULL, 'F' },
	{ "in-doubt", required_argument, NULL, 'D' },
	{ "allow-changed", no_argument, NULL, 'A' },
	{ "json", no_argument, NULL, 'j' },
	{ "yes", no_argument, NULL, 'y' },
	{ "junit", required_argument, NULL, 'J' },
	{ "non-interactive", no_argument, NULL, 'I' },
	{ "approve", required_argument, NULL, 'P' },
	{ "deny", no_argument, NULL, 'X' },
	{ "reason", required_argument, NULL, 'R' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static unsigned
opt_bit(int c)
{
	switch (c) {
	case 'v': return O_VAR;
	case 'f': return O_VARS_FILE;
	case 'n': return O_DRY_RUN;
	case 'o': return O_OUTPUT;
	case 's': return O_STATE_DIR;
	case 'p': return O_PLUGIN_PATH;
	case 'F': return O_FAIL_AT;
	case 'D': return O_IN_DOUBT;
	case 'A': return O_ALLOW_CHANGED;
	case 'j': return O_JSON;
	case 'y': return O_YES;
	case 'J': return O_JUNIT;
	case 'I': return O_NONINTERACTIVE;
	case 'P': return O_APPROVE;
	case 'X': return O_DENY;
	case 'R': return O_REASON;
	}
	return 0;
}

/* ---- shared pieces ---- */

/* set while the command's stdout is the --output json event stream */
static bool json_stream;

/* "FILE:LINE:COL: message" -> its parts (file and message malloc'd) */
static void
split_diag(const char *m, char **file, int *line, int *col, char **msg)
{
	const char *p = m;

	*file = NULL;
	*line = *col = 0;
	*msg = NULL;
	/* the file name may hold ':'; find ":N:N: " */
	for (p = strchr(m, ':'); p != NULL; p = strchr(p + 1, ':')) {
		int l, c, n = 0;

		if (sscanf(p, ":%d:%d: %n", &l, &c, &n) == 2 && n > 0) {
			*file = xstrndup(m, (size_t)(p - m));
			*line = l;
			*col = c;
			*msg = xstrdup(p + n);
			return;
		}
	}
	*msg = xstrdup(m);
}

static void
print_errors(struct yerrs *e)
{
	for (size_t i = 0; i < e->n; i++) {
		char *file, *msg;
		int line, col;

		fprintf(stderr, "%s\n", e->v[i].msg);
		split_diag(e->v[i].msg, &file, &line, &col, &msg);
		if (json_stream) {
			json_t *ev = json_pack("{s:s,s:s*,s:i,s:i,s:s}", "event", "validation.error",
			    "file", file, "line", line, "col", col, "message", msg);

			ci_emit(ev);
		}
		ci_annotate("error", file, line, col, "zdm: invalid runbook", msg);
		free(file);
		free(msg);
	}
	fprintf(stderr, "zdm: %zu error%s; nothing ran\n", e->n, e->n == 1 ? "" : "s");
}

static char *
state_dir_for(const struct cli *c, const char *runbook)
{
	const char *env = getenv("ZDM_STATE_DIR");
	char *dir, *abs;

	if (c->state_dir != NULL)
		return path_abs(c->state_dir);
	if (env != NULL && *env != '\0')
		return path_abs(env);
	if (runbook == NULL)
		return path_abs(".zdm");
	dir = path_dirname(runbook);
	abs = strcmp(dir, ".") == 0 ? xstrdup(".zdm") : path_join(dir, ".zdm");
	free(dir);
	dir = path_abs(abs);
	free(abs);
	return dir;
}

/* load and check a runbook; NULL after printing the errors */
static struct runbook *
load(const struct cli *c, const char *path, struct registry *reg)
{
	struct rb_opts o = { c->vars, c->nvars, c->vars_file };
	struct yerrs e = { 0 };
	struct runbook *rb = runbook_load(path, reg, &o, &e);

	if (rb == NULL) {
		print_errors(&e);
		yerrs_release(&e);
	}
	return rb;
}

static bool
is_runbook_path(const char *a)
{
	size_t n = strlen(a);
	struct stat st;

	if (n > 6 && strcmp(a + n - 6, ".jsonl") == 0)
		return false;
	return stat(a, &st) == 0 && S_ISREG(st.st_mode);
}

/* the `name` in the first record of a journal (cheap: first line only);
 * *dry tells whether it was a dry run */
static char *
journal_runbook_name(const char *path, bool *dry)
{
	FILE *f = fopen(path, "rb");
	char *line = NULL, *name = NULL;
	size_t cap = 0;
	json_t *j;

	if (f == NULL)
		return NULL;
	if (getline(&line, &cap, f) > 0) {
		j = json_loads(line, 0, NULL);
		if (j != NULL) {
			const char *n = json_string_value(json_object_get(json_object_get(j, "data"), "name"));

			name = n ? xstrdup(n) : NULL;
			*dry = json_is_true(json_object_get(json_object_get(j, "data"), "dry_run"));
			json_decref(j);
		}
	}
	free(line);
	fclose(f);
	return name;
}

/* newest journal in STATE_DIR/runs (for runbook `name`, or any); dry runs
 * only when with_dry (resume and rollback never want a rehearsal) */
static char *
latest_journal(const char *state_dir, const char *name, bool with_dry)
{
	char *runs = path_join(state_dir, "runs"), *best = NULL;
	DIR *d = opendir(runs);
	struct dirent *e;
	struct timespec bt = { 0, 0 };

	if (d == NULL) {
		free(runs);
		return NULL;
	}
	while ((e = readdir(d)) != NULL) {
		size_t l = strlen(e->d_name);
		char *p, *n;

		if (l < 7 || strcmp(e->d_name + l - 6, ".jsonl") != 0)
			continue;
		{
			/* newest = most recently written: run ids share a second */
			struct stat st;

			p = path_join(runs, e->d_name);
			if (stat(p, &st) != 0 || (best != NULL &&
			    (st.st_mtim.tv_sec < bt.tv_sec || (st.st_mtim.tv_sec == bt.tv_sec &&
			    st.st_mtim.tv_nsec <= bt.tv_nsec)))) {
				free(p);
				continue;
			}
			{
				bool dry = false;

				n = journal_runbook_name(p, &dry);
				if ((name != NULL && (n == NULL || strcmp(n, name) != 0)) ||
				    (dry && !with_dry)) {
					free(n);
					free(p);
					continue;
				}
				free(n);
			}
			free(p);
			bt = st.st_mtim;
		}
		free(best);
		best = xstrdup(e->d_name);
	}
	closedir(d);
	if (best != NULL) {
		char *p = path_join(runs, best);

		free(best);
		best = p;
	}
	free(runs);
	return best;
}

static bool
with_dry(const char *cmd)
{
	return strcmp(cmd, "resume") != 0 && strcmp(cmd, "rollback") != 0;
}

/*
 * [RUN_ID | RUNBOOK | JOURNAL] -> journal path and state dir.  With a
 * runbook, its newest run.  Prints the error and returns NULL when none.
 */
static char *
find_journal(const struct cli *c, const char *arg, char **state_dir, const char *cmd)
{
	char *j = NULL;

	if (arg != NULL && strlen(arg) > 6 && strcmp(arg + strlen(arg) - 6, ".jsonl") == 0) {
		char *runs = NULL, *abs = path_abs(arg);

		if (access(abs, R_OK) != 0) {
			fprintf(stderr, "zdm %s: cannot read journal '%s': %s\n", cmd, arg, strerror(errno));
			free(abs);
			return NULL;
		}
		runs = path_dirname(abs);
		*state_dir = path_dirname(runs);
		free(runs);
		return abs;
	}
	if (arg != NULL && is_runbook_path(arg)) {
		struct yerrs e = { 0 };
		struct ynode *root = yparse_file(arg, arg, &e);
		const struct ynode *n = ymap_get(root, "name");

		*state_dir = state_dir_for(c, arg);
		if (n != NULL && n->kind == Y_SCALAR)
			j = latest_journal(*state_dir, n->str, with_dry(cmd));
		else if (e.n > 0)
			print_errors(&e);
		else
			fprintf(stderr, "zdm %s: '%s' is not a runbook (no name:); name a RUN_ID, a runbook or a journal\n",
			    cmd, arg);
		if (j == NULL && n != NULL)
			fprintf(stderr, "zdm %s: no runs of runbook '%s' in %s\n", cmd, n->str, *state_dir);
		ynode_free(root);
		yerrs_release(&e);
		return j;
	}
	*state_dir = state_dir_for(c, NULL);
	if (arg == NULL) {
		j = latest_journal(*state_dir, NULL, with_dry(cmd));
		if (j == NULL)
			fprintf(stderr, "zdm %s: no runs in %s (name a RUN_ID or RUNBOOK, or set --state-dir)\n",
			    cmd, *state_dir);
		return j;
	}
	{
		char *rel = xasprintf("runs/%s.jsonl", arg);

		j = path_join(*state_dir, rel);
		free(rel);
	}
	if (access(j, R_OK) != 0) {
		fprintf(stderr, "zdm %s: no run '%s' in %s (name the runbook, or set --state-dir / ZDM_STATE_DIR)\n",
		    cmd, arg, *state_dir);
		free(j);
		return NULL;
	}
	return j;
}

static struct registry *
new_registry(const struct cli *c, char ***path)
{
	*path = plugin_path_build(c->plugin_path);
	return registry_new((const char *const *)*path);
}

/* ---- commands ---- */

static char out_run_id[64], out_status[32];

/* --non-interactive, implied without a terminal or with CI set */
static bool
interactive(const struct cli *c)
{
	const char *ci = getenv("CI");

	return !c->non_interactive && (ci == NULL || *ci == '\0') &&
	    isatty(STDIN_FILENO) && isatty(STDERR_FILENO);
}

/* --approve STEP must name an approval step of the runbook */
static int
check_approve(const char *cmd, const struct cli *c, struct runbook *rb)
{
	for (size_t i = 0; i < c->napprove; i++) {
		struct rb_step *s = runbook_step(rb, c->approve[i]);

		if (s == NULL || s->type != &zdm_step_approval) {
			fprintf(stderr, "zdm %s: --approve '%s': %s %s; name a step that uses: approval\n",
			    cmd, c->approve[i], s ? "step is not an approval in" : "no such step in", rb->path);
			return -1;
		}
	}
	return 0;
}

/* the CI options of run, resume and rollback */
static void
ci_opts(struct run_opts *o, const struct cli *c)
{
	o->junit = c->junit;
	o->interactive = interactive(c);
	o->approve = c->approve;
	o->napprove = c->napprove;
	o->run_id_out = out_run_id;
	o->status_out = out_status;
}

static int
cmd_validate(const struct cmd *cmd, struct cli *c)
{
	char **pp;
	struct registry *reg = new_registry(c, &pp);
	struct runbook *rb = load(c, c->argv[0], reg);
	int rc = ZDM_EXIT_USAGE;

	if (rb != NULL) {
		printf("%s: ok (runbook '%s', %zu step%s)\n", c->argv[0], rb->name, rb->nsteps,
		    rb->nsteps == 1 ? "" : "s");
		rc = ZDM_EXIT_OK;
	}
	runbook_free(rb);
	registry_free(reg);
	plugin_path_free(pp);
	return rc;
}

static int
cmd_run(const struct cmd *cmd, struct cli *c)
{
	char **pp;
	struct registry *reg = new_registry(c, &pp);
	struct runbook *rb = load(c, c->argv[0], reg);
	struct run_opts o;
	char *sd = NULL;
	int rc = ZDM_EXIT_USAGE;

	if (rb == NULL)
		goto out;
	memset(&o, 0, sizeof o);
	o.mode = strcmp(cmd->name, "plan") == 0 ? MODE_PLAN : c->dry_run ? MODE_DRY_RUN : MODE_RUN;
	o.fail_at = c->fail_at;
	o.json = c->json_output;
	ci_opts(&o, c);
	if (check_approve(cmd->name, c, rb) != 0)
		goto out;
	sd = state_dir_for(c, c->argv[0]);
	o.state_dir = sd;
	if (c->fail_at != NULL && runbook_step(rb, c->fail_at) == NULL) {
		const char **ids = xcalloc(rb->nsteps + 1, sizeof *ids);
		const char *s;

		for (size_t i = 0; i < rb->nsteps; i++)
			ids[i] = rb->steps[i].id;
		s = did_you_mean(c->fail_at, ids);
		fprintf(stderr, "zdm run: --fail-at '%s': no such step in %s%s%s%s\n", c->fail_at,
		    c->argv[0], s ? " (did you mean '" : "", s ? s : "", s ? "'?)" : "");
		free(ids);
		goto out;
	}
	rc = runner_run(rb, &o);
out:
	free(sd);
	runbook_free(rb);
	registry_free(reg);
	plugin_path_free(pp);
	return rc;
}

/* a recorded value that a secret was cut out of: never a value to use */
static bool
has_redacted(const json_t *v)
{
	char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
	bool yes = s != NULL && strstr(s, "***") != NULL;

	free(s);
	return yes;
}

/* resume and rollback: find the journal, load its runbook, hand over */
static int
cmd_continue(const struct cmd *cmd, struct cli *c)
{
	char *sd = NULL, *jp, *err = NULL, **pp = NULL;
	struct jlog log;
	struct registry *reg = NULL;
	struct runbook *rb = NULL;
	const char *rbpath;
	struct run_opts o;
	int rc = ZDM_EXIT_USAGE;

	memset(&log, 0, sizeof log);
	jp = find_journal(c, c->argc ? c->argv[0] : NULL, &sd, cmd->name);
	if (jp == NULL)
		goto out;
	if (journal_read(jp, &log, &err) != 0) {
		fprintf(stderr, "zdm %s: the journal is damaged, so zdm cannot tell what ran: %s\n"
		    "  check it with: zdm audit verify %s\n", cmd->name, err, jp);
		free(err);
		goto out;
	}
	if (log.n == 0) {
		fprintf(stderr, "zdm %s: %s is empty: the run never started\n", cmd->name, jp);
		goto out;
	}
	rbpath = json_string_value(json_object_get(json_object_get(log.recs[0], "data"), "runbook"));
	if (rbpath == NULL) {
		fprintf(stderr, "zdm %s: %s:1: run.started does not name its runbook\n", cmd->name, jp);
		goto out;
	}
	if (c->argc && is_runbook_path(c->argv[0]))
		rbpath = c->argv[0];
	reg = new_registry(c, &pp);
	/* the run's vars as it recorded them, unless overridden again */
	rb = load(c, rbpath, reg);
	if (rb == NULL)
		goto out;
	{
		json_t *vars = json_object_get(json_object_get(log.recs[0], "data"), "vars");
		const char *k;
		json_t *v;

		json_object_foreach(vars, k, v)
			if (json_object_get(rb->vars, k) != NULL && !has_redacted(v)) {
				bool flagged = false;

				for (size_t i = 0; i < c->nvars; i++)
					if (strncmp(c->vars[i], k, strlen(k)) == 0 && c->vars[i][strlen(k)] == '=')
						flagged = true;
				if (!flagged)
					json_object_set(rb->vars, k, v);
			}
		expr_set(rb->x, "vars", rb->vars);
	}
	memset(&o, 0, sizeof o);
	o.mode = MODE_RUN;
	o.in_doubt = c->in_doubt;
	o.allow_changed = c->allow_changed;
	o.json = c->json_output;
	o.state_dir = sd;
	ci_opts(&o, c);
	if (check_approve(cmd->name, c, rb) != 0)
		goto out;
	if (strcmp(cmd->name, "resume") == 0)
		rc = runner_resume(rb, jp, &log, &o);
	else
		rc = runner_rollback(rb, jp, &log, &o);
out:
	jlog_release(&log);
	runbook_free(rb);
	registry_free(reg);
	plugin_path_free(pp);
	free(jp);
	free(sd);
	return rc;
}

static const char *
ts_time(const char *ts)
{
	const char *t = ts ? strchr(ts, 'T') : NULL;

	return t ? t + 1 : ts ? ts : "?";
}

static int
cmd_log(const struct cmd *cmd, struct cli *c)
{
	char *sd = NULL, *jp, *err = NULL;
	struct jlog log;
	int rc = ZDM_EXIT_OK;

	memset(&log, 0, sizeof log);
	jp = find_journal(c, c->argc ? c->argv[0] : NULL, &sd, cmd->name);
	if (jp == NULL) {
		free(sd);
		return ZDM_EXIT_USAGE;
	}
	if (journal_read(jp, &log, &err) != 0) {
		fprintf(stderr, "zdm log: %s\n  (zdm audit verify %s)\n", err, jp);
		free(err);
		free(jp);
		free(sd);
		return ZDM_EXIT_USAGE;
	}
	for (size_t i = 0; i < log.n; i++) {
		json_t *r = log.recs[i], *d = json_object_get(r, "data");
		const char *ev = json_string_value(json_object_get(r, "event"));
		const char *st = json_string_value(json_object_get(r, "step"));
		const char *ts = json_string_value(json_object_get(r, "ts"));
		json_int_t at = json_integer_value(json_object_get(r, "attempt"));
		struct sbuf sb;

		if (c->json) {
			char *s = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS);

			puts(s);
			free(s);
			continue;
		}
		if (ev == NULL)
			continue;
		sb_init(&sb);
		if (strcmp(ev, "run.started") == 0) {
			json_t *a = json_object_get(d, "actor");

			printf("run %s of '%s'%s\n  runbook %s (sha256 %.12s)\n  by %s on %s, zdm %s\n",
			    json_string_value(json_object_get(r, "run")),
			    json_string_value(json_object_get(d, "name")),
			    json_is_true(json_object_get(d, "dry_run")) ? " (dry run)" : "",
			    json_string_value(json_object_get(d, "runbook")),
			    json_string_value(json_object_get(d, "sha256")),
			    json_string_value(json_object_get(a, "login")),
			    json_string_value(json_object_get(a, "host")),
			    json_string_value(json_object_get(d, "zdm_version")));
			audit_print_started(d, stdout);
		}
		if (st != NULL)
			sb_addf(&sb, " %s", st);
		if (at > 0)
			sb_addf(&sb, " (attempt %lld)", (long long)at);
		if (json_is_integer(json_object_get(d, "duration_ms"))) {
			char dd[32];

			fmt_duration(json_integer_value(json_object_get(d, "duration_ms")), dd, sizeof dd);
			sb_addf(&sb, "  %s", dd);
		}
		if (strcmp(ev, "gate.measurement") == 0) {
			/* the evidence: what was measured and what it meant */
			json_t *v = json_object_get(d, "value");
			char *vs = v ? json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;

			if (json_is_integer(json_object_get(d, "n")))
				sb_addf(&sb, " #%lld", (long long)json_integer_value(json_object_get(d, "n")));
			if (json_is_integer(json_object_get(d, "round")))
				sb_addf(&sb, " round %lld", (long long)json_integer_value(json_object_get(d, "round")));
			if (json_is_string(json_object_get(d, "phase")))
				sb_addf(&sb, "  %s", json_string_value(json_object_get(d, "phase")));
			if (json_is_boolean(json_object_get(d, "healthy")))
				sb_addf(&sb, "  %s", json_is_true(json_object_get(d, "healthy")) ? "healthy" : "unhealthy");
			if (vs != NULL)
				sb_addf(&sb, "  value %s", vs);
			if (json_is_string(json_object_get(d, "message")))
				sb_addf(&sb, "  %s", json_string_value(json_object_get(d, "message")));
			free(vs);
		}
		if (json_is_string(json_object_get(d, "status")))
			sb_addf(&sb, "  %s", json_string_value(json_object_get(d, "status")));
		if (json_is_string(json_object_get(d, "error")))
			sb_addf(&sb, "  error: %s", json_string_value(json_object_get(d, "error")));
		if (json_is_string(json_object_get(d, "reason")))
			sb_addf(&sb, "  (%s)", json_string_value(json_object_get(d, "reason")));
		if (strcmp(ev, "step.succeeded") == 0 && json_object_size(json_object_get(d, "undo_data")) > 0) {
			char *u = json_dumps(json_object_get(d, "undo_data"), JSON_COMPACT | JSON_SORT_KEYS);

			sb_addf(&sb, "  undo_data %s", u);
			free(u);
		}
		if (strcmp(ev, "run.resumed") == 0) {
			json_t *a = json_object_get(d, "actor");

			sb_addf(&sb, " by %s on %s", json_string_value(json_object_get(a, "login")),
			    json_string_value(json_object_get(a, "host")));
		}
		printf("%-13s %-16s%s\n", ts_time(ts), ev, sb.buf);
		sb_release(&sb);
	}
	if (!c->json) {
		printf("state: %s\n", run_state_word(&log));
		if (log.torn)
			printf("note: the last line was torn (a crash mid-write) and is ignored\n");
	}
	jlog_release(&log);
	free(jp);
	free(sd);
	return rc;
}

static int
cmd_status(const struct cmd *cmd, struct cli *c)
{
	char *sd = NULL, *jp, *err = NULL;
	struct jlog log;
	json_t *steps;
	const char *k;
	json_t *v;

	memset(&log, 0, sizeof log);
	jp = find_journal(c, c->argc ? c->argv[0] : NULL, &sd, cmd->name);
	if (jp == NULL) {
		free(sd);
		return ZDM_EXIT_USAGE;
	}
	if (journal_read(jp, &log, &err) != 0 || log.n == 0) {
		fprintf(stderr, "zdm status: %s\n", err ? err : "empty journal");
		free(err);
		jlog_release(&log);
		free(jp);
		free(sd);
		return ZDM_EXIT_USAGE;
	}
	steps = json_object();	/* id -> last event, in first-seen order */
	for (size_t i = 0; i < log.n; i++) {
		const char *st = json_string_value(json_object_get(log.recs[i], "step"));
		const char *ev = json_string_value(json_object_get(log.recs[i], "event"));

		if (st != NULL && ev != NULL && strncmp(ev, "drill", 5) != 0 &&
		    strcmp(ev, "rollback.started") != 0 && strcmp(ev, "run.paused") != 0)
			json_object_set_new(steps, st, json_string(ev));
	}
	{
		json_t *d = json_object_get(log.recs[0], "data");
		const char *state = run_state_word(&log);
		char *lockp = NULL;
		int fd;

		printf("run      %s\nrunbook  %s (%s)\nstate    %s", json_string_value(json_object_get(log.recs[0], "run")),
		    json_string_value(json_object_get(d, "name")),
		    json_string_value(json_object_get(d, "runbook")), state);
		if (strncmp(state, "running", 7) == 0 || strncmp(state, "rolling", 7) == 0) {
			char *rel = xasprintf("locks/%s.lock", json_string_value(json_object_get(d, "name")));

			lockp = path_join(sd, rel);
			free(rel);
			fd = open(lockp, O_RDONLY | O_CLOEXEC);
			if (fd >= 0 && flock(fd, LOCK_SH | LOCK_NB) != 0)
				printf(" — a zdm process holds the lock: running");
			else
				printf(" — no zdm process holds the lock: it stopped (crash?); zdm resume or zdm rollback");
			if (fd >= 0)
				close(fd);
			free(lockp);
		}
		if (strcmp(state, "paused") == 0) {
			/* an approval: who is it waiting for, or what was decided */
			const char *ps = NULL, *dec = NULL, *by = NULL;
			const char *run = json_string_value(json_object_get(log.recs[0], "run"));

			for (size_t i = 0; i < log.n; i++) {
				json_t *r = log.recs[i], *rd = json_object_get(r, "data");
				const char *ev = json_string_value(json_object_get(r, "event"));
				const char *st = json_string_value(json_object_get(r, "step"));

				if (ev != NULL && strcmp(ev, "run.paused") == 0) {
					ps = json_is_string(json_object_get(rd, "waiting_for")) ? st : NULL;
					dec = NULL;
				} else if (ev != NULL && ps != NULL && st != NULL && strcmp(st, ps) == 0 &&
				    strncmp(ev, "approval.", 9) == 0 && strcmp(ev, "approval.requested") != 0) {
					dec = ev;
					by = json_string_value(json_object_get(rd, "actor"));
				}
			}
			if (ps != NULL && dec == NULL)
				printf(" — waiting for approval of step '%s': zdm approve %s %s, then zdm resume %s",
				    ps, run, ps, run);
			else if (ps != NULL)
				printf(" — step '%s' %s by %s: zdm resume %s", ps,
				    strcmp(dec, "approval.granted") == 0 ? "approved" : "denied", by ? by : "?", run);
		}
		printf("\njournal  %s (%zu records)\n", jp, log.n);
	}
	json_object_foreach(steps, k, v)
		printf("  %-24s %s\n", k, json_string_value(v));
	json_decref(steps);
	jlog_release(&log);
	free(jp);
	free(sd);
	return ZDM_EXIT_OK;
}

static int
cmd_audit(const struct cmd *cmd, struct cli *c)
{
	(void)cmd;
	return audit_main(c->argc, c->argv);
}

/*
 * zdm approve RUN_ID STEP [--deny] [--reason TEXT]: a person's decision on
 * an approval step the run is paused on, appended to the run's journal (in
 * the hash chain) under the run's lock.  `zdm resume` then acts on it.
 */
static int
cmd_approve(const struct cmd *cmd, struct cli *c)
{
	const char *step = c->argv[1], *name, *run, *uses = NULL, *decided = NULL, *by = NULL;
	const json_t *params = NULL;
	char *sd = NULL, *jp, *err = NULL, *actor = NULL;
	struct journal *j = NULL;
	struct jlog log;
	long paused = -1, seq;
	bool finished = false;
	int rc = ZDM_EXIT_USAGE, lockfd = -1;
	json_t *d;

	memset(&log, 0, sizeof log);
	jp = find_journal(c, c->argv[0], &sd, cmd->name);
	if (jp == NULL)
		goto out;
	if (journal_read(jp, &log, &err) != 0 || log.n == 0) {
		fprintf(stderr, "zdm approve: %s\n  (zdm audit verify %s)\n", err ? err : "the journal is empty", jp);
		goto out;
	}
	name = json_string_value(json_object_get(json_object_get(log.recs[0], "data"), "name"));
	run = json_string_value(json_object_get(log.recs[0], "run"));
	for (size_t k = 0; k < log.n; k++) {
		json_t *r = log.recs[k], *rd = json_object_get(r, "data");
		const char *ev = json_string_value(json_object_get(r, "event"));
		const char *sid = json_string_value(json_object_get(r, "step"));
		bool mine = sid != NULL && strcmp(sid, step) == 0;

		if (ev == NULL)
			continue;
		if (strcmp(ev, "run.finished") == 0)
			finished = true;
		else if (strcmp(ev, "run.paused") == 0)
			paused = mine && json_is_string(json_object_get(rd, "waiting_for")) ? (long)k : -1;
		else if (strcmp(ev, "run.resumed") == 0 || strcmp(ev, "rollback.started") == 0)
			paused = -1, decided = NULL;
		else if (mine && strcmp(ev, "step.started") == 0) {
			params = json_object_get(rd, "params");
			uses = json_string_value(json_object_get(rd, "uses"));
		} else if (mine && paused >= 0 && (strcmp(ev, "approval.granted") == 0 ||
		    strcmp(ev, "approval.denied") == 0)) {
			decided = ev;
			by = json_string_value(json_object_get(rd, "actor"));
		}
	}
	if (name == NULL || run == NULL) {
		fprintf(stderr, "zdm approve: %s:1: run.started does not name its run and runbook\n", jp);
		goto out;
	}
	if (finished || paused < 0 || uses == NULL || strcmp(uses, "approval") != 0) {
		fprintf(stderr, "zdm approve: run %s is not waiting for approval of step '%s' (state: %s)%s\n",
		    run, step, run_state_word(&log), finished ? "" : "; see zdm status");
		goto out;
	}
	if (decided != NULL) {
		fprintf(stderr, "zdm approve: step '%s' of run %s is already %s by %s; continue: zdm resume %s\n",
		    step, run, strcmp(decided, "approval.granted") == 0 ? "approved" : "denied",
		    by ? by : "?", run);
		goto out;
	}
	actor = approval_actor();
	if (!approval_allowed(json_object_get(params, "approvers"), actor)) {
		char *who = json_dumps(json_object_get(params, "approvers"), JSON_COMPACT);

		fprintf(stderr, "zdm approve: '%s' is not among the approvers of step '%s' (%s); "
		    "one of them must decide (the actor is ZDM_ACTOR, else the login name)\n",
		    actor, step, who ? who : "?");
		free(who);
		goto out;
	}
	if (lock_acquire(sd, name, run, &lockfd, &err) != 0) {
		fprintf(stderr, "zdm approve: %s\n", err);
		goto out;
	}
	j = journal_reopen(jp, run, &log, &err);
	if (j == NULL) {
		fprintf(stderr, "zdm approve: %s\n", err);
		goto out;
	}
	d = json_pack("{s:s,s:s}", "actor", actor, "via", "zdm approve");
	if (c->reason != NULL)
		json_object_set_new(d, "reason", json_string(c->reason));
	seq = journal_append(j, c->deny ? "approval.denied" : "approval.granted", step, 0, d, &err);
	if (seq < 0) {
		fprintf(stderr, "zdm approve: journal %s: %s\n", jp, err);
		rc = ZDM_EXIT_NEEDS_PERSON;
		goto out;
	}
	if (c->deny)
		printf("denied: step '%s' of run %s, by %s (journal record %ld).\n"
		    "  zdm resume %s now fails the step and rolls the run back\n", step, run, actor, seq, run);
	else
		printf("approved: step '%s' of run %s, by %s (journal record %ld).\n"
		    "  continue: zdm resume %s\n", step, run, actor, seq, run);
	rc = ZDM_EXIT_OK;
out:
	free(err);
	if (j != NULL)
		journal_close(j);
	if (lockfd >= 0)
		lock_release(lockfd);
	free(actor);
	jlog_release(&log);
	free(jp);
	free(sd);
	return rc;
}

static int
cmd_plugins(const struct cmd *cmd, struct cli *c)
{
	char **pp;
	struct registry *reg = new_registry(c, &pp);
	const struct zdm_step_type **all;
	size_t n = registry_all(reg, &all);

	for (size_t i = 0; i < n; i++) {
		const struct zdm_step_type *t = all[i];

		printf("%s%s%s%s\n  %s\n", t->name, t->read_only ? "  [read-only]" : "",
		    t->idempotent ? "  [idempotent]" : "", t->undo ? "  [undo]" : "",
		    t->description ? t->description : "");
		for (size_t k = 0; k < t->nparams; k++) {
			const struct zdm_param *p = &t->params[k];

			printf("    %-14s %-9s %-22s %s\n", p->name, ptype_name(p->type),
			    p->required ? "required" : p->def ? p->def : "optional",
			    p->doc ? p->doc : "");
		}
	}
	registry_free(reg);
	plugin_path_free(pp);
	return ZDM_EXIT_OK;
}

static int
cmd_version(const struct cmd *cmd, struct cli *c)
{
	printf("zdm %s (jansson %s, %s)\n", ZDM_VERSION, JANSSON_VERSION, "Lua 5.4");
	return ZDM_EXIT_OK;
}

static int cmd_help(const struct cmd *cmd, struct cli *c);

static const struct cmd commands[] = {
	{ "validate", cmd_validate, O_VAR | O_VARS_FILE | O_PLUGIN_PATH, 1, 1,
	  "validate RUNBOOK [--var k=v] [--vars-file F]",
	  "Check everything that can be checked without running: the schema, ids, step types,\n"
	  "params, durations and expressions.  Every error is FILE:LINE:COL: message; exit 2." },
	{ "plan", cmd_run, O_VAR | O_VARS_FILE | O_PLUGIN_PATH | O_STATE_DIR, 1, 1,
	  "plan RUNBOOK [--var k=v] [--vars-file F]",
	  "Print the resolved steps and their undo plan.  Runs nothing, writes nothing." },
	{ "run", cmd_run, O_VAR | O_VARS_FILE | O_PLUGIN_PATH | O_STATE_DIR | O_DRY_RUN |
	  O_OUTPUT | O_FAIL_AT | O_YES | O_JUNIT | O_NONINTERACTIVE | O_APPROVE, 1, 1,
	  "run RUNBOOK [--var k=v] [--vars-file F] [--dry-run] [--output text|json]\n"
	  "           [--fail-at STEP] [--state-dir DIR] [--junit FILE] [--non-interactive]\n"
	  "           [--approve STEP]...",
	  "Run the steps in order, journaling each before and after it acts.  On failure:\n"
	  "on_failure (rollback by default).  --dry-run runs read-only steps (gates) for real and\n"
	  "prints the plan of the others.  --fail-at STEP forces a failure after STEP succeeds,\n"
	  "to rehearse the rollback in a drill.\n"
	  "Exit: 0 ok, 1 failed and rolled back, 2 usage/validation/lock, 3 a person must look,\n"
	  "4 paused or interrupted (resumable), 5 a step is in doubt.\n"
	  "CI: --output json (events, docs/ci.md), --junit FILE, --non-interactive (implied\n"
	  "without a terminal or with CI set), --approve STEP (pre-approve an approval step);\n"
	  "GitHub annotations when GITHUB_ACTIONS=true." },
	{ "resume", cmd_continue, O_VAR | O_VARS_FILE | O_PLUGIN_PATH | O_STATE_DIR | O_IN_DOUBT |
	  O_ALLOW_CHANGED | O_OUTPUT | O_JUNIT | O_NONINTERACTIVE | O_APPROVE, 0, 1,
	  "resume [RUN_ID | RUNBOOK] [--in-doubt retry|skip] [--allow-changed]\n"
	  "           [--output text|json] [--junit FILE] [--non-interactive] [--approve STEP]...",
	  "Continue a run that crashed, was interrupted or paused.  Steps that succeeded are\n"
	  "skipped with their recorded outputs.  A step that started but never ended is in doubt:\n"
	  "it runs again if idempotent; otherwise choose --in-doubt retry (it did not happen) or\n"
	  "--in-doubt skip (it did).  A changed runbook is refused unless --allow-changed." },
	{ "rollback", cmd_continue, O_VAR | O_VARS_FILE | O_PLUGIN_PATH | O_STATE_DIR | O_IN_DOUBT |
	  O_ALLOW_CHANGED | O_OUTPUT | O_JUNIT | O_NONINTERACTIVE, 0, 1,
	  "rollback [RUN_ID | RUNBOOK] [--in-doubt retry|skip] [--allow-changed]\n"
	  "           [--output text|json] [--junit FILE]",
	  "Undo the run's completed steps in reverse order from their recorded undo_data, or\n"
	  "continue a rollback that was cut short.  No undo runs twice.  Exit 0 when every step\n"
	  "is undone, 3 when not, 5 when an undo is in doubt." },
	{ "status", cmd_status, O_STATE_DIR, 0, 1, "status [RUN_ID | RUNBOOK]",
	  "Where a run stands: its state, whether a zdm process holds it, each step's last event." },
	{ "log", cmd_log, O_STATE_DIR | O_JSON, 0, 1, "log [RUN_ID | RUNBOOK] [--json]",
	  "The journal as a timeline (who, when, what, outcome, durations); --json: the records." },
	{ "audit", cmd_audit, 0, 1, 64, audit_usage, audit_help },
	{ "approve", cmd_approve, O_STATE_DIR | O_DENY | O_REASON, 2, 2,
	  "approve RUN_ID STEP [--deny] [--reason TEXT] [--state-dir DIR]",
	  "Decide an approval step the run is paused on: approve it, or with --deny refuse it.\n"
	  "Recorded in the run's journal (approval.granted / approval.denied) with the actor:\n"
	  "ZDM_ACTOR, else the login name, who must be among the step's approvers.  Then\n"
	  "zdm resume RUN_ID goes on (approved) or rolls back (denied).  Exit 2 when the run is\n"
	  "not waiting on STEP, the actor may not decide, or a zdm process holds the run." },
	{ "plugins", cmd_plugins, O_PLUGIN_PATH, 0, 0, "plugins [--plugin-path DIRS]",
	  "List the step types, built-in and Lua, with their params." },
	{ "version", cmd_version, 0, 0, 0, "version", "Print zdm's version." },
	{ "help", cmd_help, 0, 0, 1, "help [COMMAND]", "Show help." },
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void
usage_all(FILE *f)
{
	fprintf(f, "zdm %s — zero-downtime migrations from declarative runbooks\n\nusage:\n", ZDM_VERSION);
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  zdm %s\n", commands[i].usage);
	fprintf(f, "\nzdm COMMAND --help for details; man zdm, man zdm-runbook.\n");
}

static void
help_one(const struct cmd *c)
{
	printf("usage: zdm %s\n\n%s\n", c->usage, c->help);
	if (c->opts & (O_VAR | O_STATE_DIR | O_PLUGIN_PATH)) {
		printf("\noptions:\n");
		if (c->opts & O_VAR)
			printf("  --var k=v          override a var (typed like the runbook's value)\n"
			    "  --vars-file F      override vars from a YAML mapping\n");
		if (c->opts & O_STATE_DIR)
			printf("  --state-dir DIR    journals and locks (default: ZDM_STATE_DIR, or .zdm beside the runbook)\n");
		if (c->opts & O_PLUGIN_PATH)
			printf("  --plugin-path DIRS plugin directories, ':'-separated (also ZDM_PLUGIN_PATH)\n");
	}
}

static int
cmd_help(const struct cmd *cmd, struct cli *c)
{
	if (c->argc == 1) {
		for (size_t i = 0; i < NCOMMANDS; i++)
			if (strcmp(commands[i].name, c->argv[0]) == 0) {
				help_one(&commands[i]);
				return ZDM_EXIT_OK;
			}
		fprintf(stderr, "zdm help: unknown command '%s'\n", c->argv[0]);
		return ZDM_EXIT_USAGE;
	}
	usage_all(stdout);
	return ZDM_EXIT_OK;
}

int
main(int argc, char **argv)
{
	const struct cmd *cmd = NULL;
	struct cli c;
	int opt, rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2) {
		usage_all(stderr);
		return ZDM_EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage_all(stdout);
		return ZDM_EXIT_OK;
	}
	if (strcmp(argv[1], "audit") == 0)	/* its own options: audit.c */
		return audit_main(argc - 2, argv + 2);
	if (strcmp(argv[1], "--version") == 0)
		argv[1] = "version";
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (strcmp(commands[i].name, argv[1]) == 0)
			cmd = &commands[i];
	if (cmd == NULL) {
		const char *names[NCOMMANDS + 1];
		const char *s;

		for (size_t i = 0; i < NCOMMANDS; i++)
			names[i] = commands[i].name;
		names[NCOMMANDS] = NULL;
		s = did_you_mean(argv[1], names);
		fprintf(stderr, "zdm: unknown command '%s'%s%s%s (zdm --help lists them)\n", argv[1],
		    s ? " (did you mean '" : "", s ? s : "", s ? "'?)" : "");
		return ZDM_EXIT_USAGE;
	}
	memset(&c, 0, sizeof c);
	c.vars = xcalloc((size_t)argc, sizeof *c.vars);
	optind = 2;
	opterr = 0;
	int li = -1;

	while ((opt = getopt_long(argc, argv, ":h", long_opts, &li)) != -1) {
		char optname[64];

		if (li >= 0)
			snprintf(optname, sizeof optname, "--%s", long_opts[li].name);
		else
			snprintf(optname, sizeof optname, "%s", argv[optind - 1]);
		li = -1;
		if (opt == 'h') {
			help_one(cmd);
			free(c.vars);
			free(c.approve);
			return ZDM_EXIT_OK;
		}
		if (opt == '?' || opt == ':') {
			fprintf(stderr, "zdm %s: %s '%s' (zdm %s --help)\n", cmd->name,
			    opt == ':' ? "missing value for" : "unknown or ambiguous option",
			    argv[optind - 1], cmd->name);
			free(c.vars);
			free(c.approve);
			return ZDM_EXIT_USAGE;
		}
		if ((cmd->opts & opt_bit(opt)) == 0) {
			fprintf(stderr, "zdm %s: option '%s' does not apply here (zdm %s --help)\n",
			    cmd->name, optname, cmd->name);
			free(c.vars);
			free(c.approve);
			return ZDM_EXIT_USAGE;
		}
		switch (opt) {
		case 'v': c.vars[c.nvars++] = optarg; break;
		case 'f': c.vars_file = optarg; break;
		case 'n': c.dry_run = true; break;
		case 'o':
			if (strcmp(optarg, "json") == 0)
				c.json_output = true;
			else if (strcmp(optarg, "text") != 0) {
				fprintf(stderr, "zdm %s: --output '%s': use text or json\n", cmd->name, optarg);
				free(c.vars);
				free(c.approve);
				return ZDM_EXIT_USAGE;
			}
			break;
		case 's':
			if (*optarg == '\0') {
				fprintf(stderr, "zdm %s: --state-dir is empty\n", cmd->name);
				free(c.vars);
				free(c.approve);
				return ZDM_EXIT_USAGE;
			}
			c.state_dir = optarg;
			break;
		case 'p': c.plugin_path = optarg; break;
		case 'F': c.fail_at = optarg; break;
		case 'D':
			if (strcmp(optarg, "retry") == 0)
				c.in_doubt = IN_DOUBT_RETRY;
			else if (strcmp(optarg, "skip") == 0)
				c.in_doubt = IN_DOUBT_SKIP;
			else {
				fprintf(stderr, "zdm %s: --in-doubt '%s': use retry (it did not happen) or skip (it did)\n",
				    cmd->name, optarg);
				free(c.vars);
				free(c.approve);
				return ZDM_EXIT_USAGE;
			}
			break;
		case 'A': c.allow_changed = true; break;
		case 'j': c.json = true; break;
		case 'y': break;
		case 'J':
			if (*optarg == '\0') {
				fprintf(stderr, "zdm %s: --junit needs a file name\n", cmd->name);
				free(c.vars);
				free(c.approve);
				return ZDM_EXIT_USAGE;
			}
			c.junit = optarg;
			break;
		case 'I': c.non_interactive = true; break;
		case 'P':
			if (c.approve == NULL)
				c.approve = xcalloc((size_t)argc, sizeof *c.approve);
			c.approve[c.napprove++] = optarg;
			break;
		case 'X': c.deny = true; break;
		case 'R': c.reason = optarg; break;
		}
	}
	c.argc = argc - optind;
	c.argv = argv + optind;
	if (c.argc < cmd->min_args || c.argc > cmd->max_args) {
		fprintf(stderr, "usage: zdm %s\n", cmd->usage);
		free(c.vars);
		free(c.approve);
		return ZDM_EXIT_USAGE;
	}
	proc_install_signals();
	journal_init_key();
	json_stream = c.json_output;
	ci_json_stdout = c.json_output;
	rc = cmd->fn(cmd, &c);
	if (json_stream) {
		/* the stream's last line, always: how zdm ended (docs/ci.md) */
		static const char *const word[] = {
			"succeeded", "rolled_back", "usage_error", "needs_person", "paused", "in_doubt",
		};
		json_t *ev = json_pack("{s:s,s:i,s:s}", "event", "exit", "exit_code", rc, "status",
		    out_status[0] ? out_status : rc >= 0 && rc <= 5 ? word[rc] : "?");

		if (out_run_id[0] != '\0')
			json_object_set_new(ev, "run", json_string(out_run_id));
		json_object_set_new(ev, "command", json_string(cmd->name));
		ci_emit(ev);
	}
	free(c.vars);
	free(c.approve);
	redact_reset();
	return rc;
}
