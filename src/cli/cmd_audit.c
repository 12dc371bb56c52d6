/*
 * audit.c - the audit trail around the journal (docs/audit.md):
 *
 *   - `zdm audit verify`: the chain of one journal, or of every journal of a
 *     state dir, with the runs that never finished listed as incomplete;
 *   - `zdm audit export`: one row per run of a state dir or of a PostgreSQL
 *     state, JSON (jansson) or CSV (RFC 4180).
 *
 * The chain itself (hashes, HMAC, first bad line) is journal.c's; this file
 * only reads its answers.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/proc.h"
#include "base/redact.h"
#include "base/util.h"
#include "cli/cli.h"
#include "core/audit_key.h"
#include "core/journal.h"
#include "core/runner.h"
#include "core/runstate.h"
#include "core/store.h"
#include "zdm/step.h"

/* ---- actor and provenance ------------------------------------------------ */

static const char *
jstr(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

void
audit_print_started(const json_t *d, FILE *out)
{
	const json_t *a = json_object_get(d, "actor"), *g = json_object_get(d, "git");
	const char *who = jstr(a, "who"), *login = jstr(a, "login");

	if (who != NULL && login != NULL && strcmp(who, login) != 0)
		fprintf(out, "  acting for %s%s%s\n", who, jstr(a, "SUDO_USER") ? ", sudo by " : "",
		    jstr(a, "SUDO_USER") ? jstr(a, "SUDO_USER") : "");
	if (jstr(a, "ci") != NULL)
		fprintf(out, "  ci %s%s%s\n", jstr(a, "ci"), jstr(a, "ci_url") ? " " : "",
		    jstr(a, "ci_url") ? jstr(a, "ci_url") : "");
	if (json_is_object(g))
		fprintf(out, "  git %s in %s, runbook %s\n",
		    jstr(g, "commit") ? jstr(g, "commit") : "(no commit yet)",
		    jstr(g, "root") ? jstr(g, "root") : "?", jstr(g, "runbook") ? jstr(g, "runbook") : "?");
}

/* ---- reading a state dir --------------------------------------------------- */

/* the state dir when none is named: --state-dir, ZDM_STATE_DIR, ./.zdm */
static char *
default_state_dir(const char *flag)
{
	const char *env = getenv("ZDM_STATE_DIR");

	if (flag != NULL)
		return path_abs(flag);
	if (env != NULL && *env != '\0')
		return path_abs(env);
	return path_abs(".zdm");
}

/* pid of the zdm that holds the run's lock now, or 0 */
static long
lock_holder_of(struct store *s, const struct runstate *st)
{
	long pid = 0;
	char *run = NULL;

	if (st->name == NULL || st->run_id == NULL ||
	    !store_locked(s, st->name, &pid, &run) || run == NULL || strcmp(run, st->run_id) != 0)
		pid = 0;
	free(run);
	return pid;
}

/* ---- zdm audit verify ------------------------------------------------------ */

struct tally {
	int complete, incomplete, broken, unusable;
};

/* store_verify into strings: its exit (0, 1 bad chain, 2 unusable) */
static int
verify_capture(struct store *s, const char *path, char **out, char **err)
{
	size_t ol = 0, el = 0;
	FILE *fo = open_memstream(out, &ol), *fe = open_memstream(err, &el);
	int rc;

	if (fo == NULL || fe == NULL)
		abort();	/* out of memory */
	rc = store_verify(s, path, fo, fe);
	fclose(fo);
	fclose(fe);
	while (ol > 0 && (*out)[ol - 1] == '\n')
		(*out)[--ol] = '\0';
	while (el > 0 && (*err)[el - 1] == '\n')
		(*err)[--el] = '\0';
	return rc;
}

/* the verdict on an intact journal, without its name (one read: the log is
 * needed anyway) */
static char *
ok_words(const struct jlog *log)
{
	const char *chain = log->n > 0 ? jstr(json_object_get(log->recs[0], "data"), "chain") : NULL;

	return xasprintf("ok, %zu records, chain %s, last hash %.16s%s", log->n, chain ? chain : "?",
	    log->last_hash, log->torn ? ", torn last line ignored" : "");
}

/* the verdict's line for an intact journal */
static char *
ok_line(const char *path, const struct jlog *log)
{
	char *w = ok_words(log), *l = xasprintf("%s: %s", path, w);

	free(w);
	return l;
}

int
audit_read(struct store *s, const char *ref, struct jlog *log, char **msg)
{
	char *out = NULL, *err = NULL;
	int rc = store_read(s, ref, log, NULL) == 0 ? 0 : verify_capture(s, ref, &out, &err);

	*msg = NULL;
	if (rc == 0 && out != NULL)
		rc = 1;		/* changed between the reads */
	if (rc == 0) {
		*msg = ok_words(log);
	} else {
		/* drop the "REF:" the message starts with: the caller names the run */
		const char *m = err != NULL && *err != '\0' ? err : "changed while it was read";

		if (strncmp(m, ref, strlen(ref)) == 0)
			m += strlen(ref);
		if (*m == ':')
			m++;
		*msg = xstrdup(*m == ' ' ? m + 1 : m);
		store_read_unchecked(s, ref, log);
	}
	free(out);
	free(err);
	return rc;
}

static void
verify_one_in_dir(struct store *s, const char *path, struct tally *t)
{
	char *out = NULL, *err = NULL;
	struct jlog log;
	struct runstate st;

	if (store_read(s, path, &log, NULL) != 0) {
		/* read again for the verdict: broken or unusable */
		int rc = verify_capture(s, path, &out, &err);

		fprintf(stderr, "%s\n", rc != 0 ? err : "changed while it was read");
		if (rc == 2)
			t->unusable++;
		else
			t->broken++;
		goto done;
	}
	if (log.n == 0) {
		/* nothing was verified: as zdm audit verify FILE says */
		fprintf(stderr, "%s: no complete record: nothing to verify (a run that crashed as "
		    "its journal was made, or an emptied journal)\n", path);
		t->broken++;
		jlog_release(&log);
		goto done;
	}
	out = ok_line(path, &log);
	runstate_fold(&log, &st, NULL);
	if (st.ended) {
		printf("%s, %s\n", out, runstate_word(&st));
		t->complete++;
	} else {
		long pid = lock_holder_of(s, &st);
		const json_t *last = log.n > 0 ? log.recs[log.n - 1] : NULL;
		const char *lev = last ? jstr(last, "event") : NULL;

		t->incomplete++;
		if (pid > 0)
			printf("%s, incomplete: running (pid %ld holds the lock)\n", out, pid);
		else
			printf("%s, incomplete: no run.finished; ends at line %zu (%s%s%s), %s, and no "
			    "zdm holds its lock: paused, crashed or killed, or its last lines were "
			    "cut off\n", out, log.n, lev ? lev : "?", jstr(last, "step") ? " " : "",
			    jstr(last, "step") ? jstr(last, "step") : "", runstate_word(&st));
	}
	runstate_release(&st);
	jlog_release(&log);
done:
	free(out);
	free(err);
}

/* zdm audit verify --state URL [RUN_ID...]: runs kept in PostgreSQL */
static int
verify_pg(const char *url, const char *schema, int argc, char **argv, struct tally *t)
{
	char *err = NULL, **v = NULL;
	struct store *s = store_open_pg(url, schema, &err);
	size_t n = 0;

	if (s == NULL) {
		fprintf(stderr, "zdm audit verify: --state: %s\n", err);
		free(err);
		return -1;
	}
	if (argc == 0 && store_list(s, NULL, &v, &n, &err) != 0) {
		fprintf(stderr, "zdm audit verify: %s\n", err);
		free(err);
		t->unusable++;
	}
	for (size_t i = 0; i < n; i++)
		verify_one_in_dir(s, v[i], t);
	if (argc == 0 && n == 0 && err == NULL)
		printf("%s: no runs\n", store_runs_place(s));
	store_list_free(v, n);
	for (int i = 0; i < argc; i++) {
		char *ref = store_find(s, argv[i]);

		if (ref == NULL) {
			fprintf(stderr, "zdm audit verify: no run '%s' in %s\n", argv[i], store_runs_place(s));
			t->unusable++;
			continue;
		}
		verify_one_in_dir(s, ref, t);
		free(ref);
	}
	store_close(s);
	return 0;
}

static int
verify_dir(const char *dir, struct tally *t)
{
	struct store *s = store_open_dir(dir);
	const char *runs = store_runs_place(s);
	char *err = NULL;
	char **v;
	size_t n;

	if (runs == NULL) {
		fprintf(stderr, "zdm audit verify: '%s' is not a state dir (no runs/ in it)\n", dir);
		store_close(s);
		t->unusable++;
		return -1;
	}
	if (store_list(s, NULL, &v, &n, &err) != 0) {
		fprintf(stderr, "zdm audit verify: %s\n", err);
		free(err);
		store_close(s);
		t->unusable++;
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		verify_one_in_dir(s, v[i], t);
	if (n == 0)
		printf("%s: no journals\n", runs);
	store_list_free(v, n);
	store_close(s);
	return 0;
}

static int
cmd_verify(int argc, char **argv, const char *state_flag, const char *schema)
{
	struct tally t = { 0, 0, 0, 0 };
	bool dirs = false;
	struct stat st;

	if (state_flag != NULL && store_is_pg(state_flag)) {
		if (verify_pg(state_flag, schema, argc, argv, &t) != 0)
			return ZDM_EXIT_USAGE;
		dirs = true;
		argc = 0;
	} else if (argc == 0) {
		char *sd = default_state_dir(state_flag);

		if (stat(sd, &st) != 0 || !S_ISDIR(st.st_mode)) {
			fprintf(stderr, "zdm audit verify: no state dir '%s' (name journals or a state "
			    "dir, or set --state-dir / ZDM_STATE_DIR)\n", sd);
			free(sd);
			return ZDM_EXIT_USAGE;
		}
		verify_dir(sd, &t);
		free(sd);
		dirs = true;
	}
	for (int i = 0; i < argc; i++) {
		if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
			verify_dir(argv[i], &t);
			dirs = true;
			continue;
		}
		/* one journal: the single-file report, as before */
		{
			char *sd = store_dir_of_journal(argv[i]);
			struct store *s = store_open_dir(sd);

			switch (store_verify(s, argv[i], stdout, stderr)) {
			case 0: t.complete++; break;
			case 1: t.broken++; break;
			default: t.unusable++; break;
			}
			store_close(s);
			free(sd);
		}
	}
	if (dirs)
		printf("%d journal%s: %d complete, %d incomplete, %d broken, %d unreadable\n",
		    t.complete + t.incomplete + t.broken + t.unusable,
		    t.complete + t.incomplete + t.broken + t.unusable == 1 ? "" : "s",
		    t.complete, t.incomplete, t.broken, t.unusable);
	if (t.broken > 0)
		return 1;
	return t.unusable > 0 ? ZDM_EXIT_USAGE : ZDM_EXIT_OK;
}

/* ---- zdm audit export ------------------------------------------------------ */

/* the fields of a row, in output order (the CSV header) */
static const char *const export_fields[] = {
	"run", "runbook", "runbook_path", "sha256", "git_commit", "git_runbook", "who",
	"login", "sudo_user", "ci", "ci_url", "host", "zdm_version", "dry_run", "started",
	"finished", "status", "exit_code", "duration_ms", "steps", "steps_failed",
	"rolled_back", "steps_undone", "undo_failed", "failed_step", "records", "chain",
	"verified", "verify_error", "steps_left_in_place", NULL,
};

static json_t *
str_or_null(const char *s)
{
	return s != NULL ? json_string(s) : json_null();
}

/* one row for the journal at path; NULL when it is before since_ms */
static json_t *
export_row(struct store *s, const char *path, bool has_since, int64_t since_ms)
{
	struct jlog log;
	const json_t *first, *d, *a, *g;
	const char *started = NULL, *verified;
	struct runstate st;
	json_t *row;
	int64_t t0 = 0, t1 = 0;
	bool have_t0;
	size_t nfailed = 0, nufailed = 0;
	char *verr = NULL;
	int rc = audit_read(s, path, &log, &verr);

	verified = rc == 0 ? "ok" : rc == 2 ? "unchecked" : "broken";
	if (rc == 0) {
		free(verr);
		verr = NULL;
	}
	first = log.n > 0 ? log.recs[0] : NULL;
	d = json_object_get(first, "data");
	a = json_object_get(d, "actor");
	g = json_object_get(d, "git");
	started = jstr(first, "ts");
	have_t0 = started != NULL && parse_time(started, &t0) == 0;
	if (has_since && have_t0 && t0 < since_ms) {
		jlog_release(&log);
		free(verr);
		return NULL;
	}
	runstate_fold(&log, &st, NULL);	/* what it claims, checked or not */
	for (size_t i = 0; i < st.nsteps; i++) {
		nfailed += st.steps[i].failed;
		nufailed += st.steps[i].undo_failed;
	}

	row = json_object();
	{
		const char *slash = strrchr(path, '/');
		const char *base = slash != NULL ? slash + 1 : path;
		const char *run = jstr(first, "run");
		size_t bl = strlen(base);
		/* a journal's file name less ".jsonl"; a PostgreSQL ref ends with the run id */
		char *fromname = xstrndup(base, bl > 6 && strcmp(base + bl - 6, ".jsonl") == 0 ?
		    bl - 6 : bl);

		json_object_set_new(row, "run", json_string(run != NULL ? run : fromname));
		free(fromname);
	}
	json_object_set_new(row, "runbook", str_or_null(jstr(d, "name")));
	json_object_set_new(row, "runbook_path", str_or_null(jstr(d, "runbook")));
	json_object_set_new(row, "sha256", str_or_null(jstr(d, "sha256")));
	json_object_set_new(row, "git_commit", str_or_null(jstr(g, "commit")));
	json_object_set_new(row, "git_runbook", str_or_null(jstr(g, "runbook")));
	json_object_set_new(row, "who", str_or_null(jstr(a, "who") ? jstr(a, "who") : jstr(a, "login")));
	json_object_set_new(row, "login", str_or_null(jstr(a, "login")));
	json_object_set_new(row, "sudo_user", str_or_null(jstr(a, "SUDO_USER")));
	json_object_set_new(row, "ci", str_or_null(jstr(a, "ci")));
	json_object_set_new(row, "ci_url", str_or_null(jstr(a, "ci_url") ? jstr(a, "ci_url") :
	    jstr(a, "CI_JOB_URL")));
	json_object_set_new(row, "host", str_or_null(jstr(d, "host") ? jstr(d, "host") : jstr(a, "host")));
	json_object_set_new(row, "zdm_version", str_or_null(jstr(d, "zdm_version")));
	json_object_set_new(row, "dry_run", json_boolean(json_is_true(json_object_get(d, "dry_run"))));
	json_object_set_new(row, "started", str_or_null(started));
	json_object_set_new(row, "finished", str_or_null(st.ended_at));
	json_object_set_new(row, "status", json_string(log.n > 0 ? runstate_word(&st) : "empty"));
	json_object_set_new(row, "exit_code", json_is_integer(st.exit_code) ?
	    json_copy((json_t *)st.exit_code) : json_null());
	if (st.ended_at != NULL && have_t0 && parse_time(st.ended_at, &t1) == 0)
		json_object_set_new(row, "duration_ms", json_integer(t1 - t0));
	else
		json_object_set_new(row, "duration_ms", json_null());
	json_object_set_new(row, "steps", json_is_integer(json_object_get(d, "steps")) ?
	    json_copy(json_object_get(d, "steps")) : json_null());
	json_object_set_new(row, "steps_failed", json_integer((json_int_t)nfailed));
	json_object_set_new(row, "rolled_back", json_boolean(st.rolling_back));
	json_object_set_new(row, "steps_undone", json_integer(st.undone));
	json_object_set_new(row, "undo_failed", json_integer((json_int_t)nufailed));
	json_object_set_new(row, "failed_step", str_or_null(st.finished_failed_step));
	json_object_set_new(row, "records", json_integer((json_int_t)log.n));
	json_object_set_new(row, "chain", str_or_null(jstr(d, "chain")));
	json_object_set_new(row, "verified", json_string(verified));
	json_object_set_new(row, "verify_error", str_or_null(verr));
	{
		/* the steps its rollback left in place, as zdm status says them */
		const char **ids;
		size_t n = runstate_left(&st, &ids);

		json_object_set_new(row, "steps_left_in_place", json_integer((json_int_t)n));
		free(ids);
	}
	runstate_release(&st);
	jlog_release(&log);
	free(verr);
	return row;
}

/* RFC 4180: a field with a comma, quote, CR or LF is quoted, quotes doubled */
static void
csv_field(FILE *f, const char *s)
{
	/* a field a spreadsheet would run as a formula (OWASP "CSV injection":
	 * = + - @ and tab/CR first) gets a leading ': values such as "who" come
	 * from environment variables anyone can set */
	bool formula = strchr("=+-@\t\r", s[0]) != NULL && s[0] != '\0';

	if (!formula && strpbrk(s, ",\"\r\n") == NULL) {
		fputs(s, f);
		return;
	}
	fputc('"', f);
	if (formula)
		fputc('\'', f);
	for (; *s != '\0'; s++) {
		if (*s == '"')
			fputc('"', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

static void
csv_row(FILE *f, const json_t *row)
{
	for (size_t i = 0; export_fields[i] != NULL; i++) {
		const json_t *v = json_object_get(row, export_fields[i]);
		char num[32];

		if (i > 0)
			fputc(',', f);
		if (json_is_string(v))
			csv_field(f, json_string_value(v));
		else if (json_is_integer(v)) {
			snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
			fputs(num, f);
		} else if (json_is_boolean(v))
			fputs(json_is_true(v) ? "true" : "false", f);
		/* null: an empty field */
	}
	fputs("\r\n", f);
}

static int
cmp_rows(const void *a, const void *b)
{
	const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	const char *sx = jstr(x, "started"), *sy = jstr(y, "started");
	int c = strcmp(sx ? sx : "", sy ? sy : "");

	return c != 0 ? c : strcmp(jstr(x, "run"), jstr(y, "run"));
}

/* STATE_FLAG is --state-dir or --state (a PostgreSQL URL, with SCHEMA) */
static int
cmd_export(const char *state_flag, const char *schema, const char *since, const char *format)
{
	bool pg = state_flag != NULL && store_is_pg(state_flag);
	char *sd = pg ? NULL : default_state_dir(state_flag), *err = NULL;
	struct store *s;
	int64_t since_ms = 0;
	json_t **rows;
	size_t n, nrows = 0;
	char **v;
	bool csv;

	if (format != NULL && strcmp(format, "json") != 0 && strcmp(format, "csv") != 0) {
		fprintf(stderr, "zdm audit export: --format '%s': use json or csv\n", format);
		free(sd);
		return ZDM_EXIT_USAGE;
	}
	csv = format != NULL && strcmp(format, "csv") == 0;
	if (since != NULL && parse_time(since, &since_ms) != 0) {
		fprintf(stderr, "zdm audit export: --since '%s': not a date; use 2026-11-01 (UTC "
		    "midnight) or an ISO-8601 time such as 2026-11-01T10:00:00Z or "
		    "2026-11-01T12:00:00+02:00\n", since);
		free(sd);
		return ZDM_EXIT_USAGE;
	}
	if (pg) {
		s = store_open_pg(state_flag, schema, &err);
		if (s == NULL) {
			fprintf(stderr, "zdm audit export: --state: %s\n", err);
			free(err);
			return ZDM_EXIT_USAGE;
		}
	} else
		s = store_open_dir(sd);
	if (!pg && store_runs_place(s) == NULL) {
		fprintf(stderr, "zdm audit export: no journals in '%s' (no runs/ in it; set "
		    "--state-dir or ZDM_STATE_DIR)\n", sd);
		store_close(s);
		free(sd);
		return ZDM_EXIT_USAGE;
	}
	if (store_list(s, NULL, &v, &n, &err) != 0) {
		fprintf(stderr, "zdm audit export: %s\n", err);
		free(err);
		store_close(s);
		free(sd);
		return ZDM_EXIT_USAGE;
	}
	rows = xcalloc(n + 1, sizeof *rows);
	for (size_t i = 0; i < n; i++) {
		json_t *row = export_row(s, v[i], since != NULL, since_ms);

		if (row != NULL)
			rows[nrows++] = row;
	}
	if (nrows > 1)
		qsort(rows, nrows, sizeof *rows, cmp_rows);
	if (csv) {
		for (size_t i = 0; export_fields[i] != NULL; i++)
			printf("%s%s", i ? "," : "", export_fields[i]);
		fputs("\r\n", stdout);
		for (size_t i = 0; i < nrows; i++)
			csv_row(stdout, rows[i]);
	} else {
		json_t *arr = json_array();
		char *s;

		for (size_t i = 0; i < nrows; i++)
			json_array_append(arr, rows[i]);
		s = json_dumps(arr, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		if (s != NULL)
			puts(s);
		free(s);
		json_decref(arr);
	}
	for (size_t i = 0; i < nrows; i++)
		json_decref(rows[i]);
	free(rows);
	store_list_free(v, n);
	store_close(s);
	free(sd);
	fflush(stdout);
	return ZDM_EXIT_OK;
}

/* ---- zdm audit ----------------------------------------------------------- */

const char audit_usage[] =
    "audit verify [JOURNAL... | STATE_DIR...] [--state-dir DIR]\n"
    "       zdm audit verify --state URL [--schema NAME] [RUN_ID...]\n"
    "       zdm audit export [--state-dir DIR | --state URL [--schema NAME]] [--since DATE]\n"
    "                        [--format json|csv]";
const char audit_help[] =
    "verify: check each journal's hash chain (HMAC when ZDM_AUDIT_KEY is set) and name the\n"
    "first bad line; a state dir (default: ZDM_STATE_DIR or ./.zdm) checks every journal\n"
    "in it and lists runs with no run.finished as incomplete.  Exit 0 intact, 1 a chain\n"
    "is broken, 2 unreadable or no key.\n"
    "--state URL: every run kept in PostgreSQL, or the RUN_IDs named.\n"
    "export: one row per run (who, what, when, outcome, chain verified), JSON or CSV, of a\n"
    "state dir or of PostgreSQL (--state URL), the same rows for the same records;\n"
    "--since 2026-11-01 or an ISO-8601 time.  See docs/audit.md.";

/* as `zdm help audit` prints it (main.c's help_one) */
static void
audit_usage_print(FILE *f, bool full)
{
	if (full)
		fprintf(f, "usage: zdm %s\n\n%s\n", audit_usage, audit_help);
	else
		fprintf(f, "usage: zdm %s\n", audit_usage);
}

int
audit_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state-dir", required_argument, NULL, 's' },
		{ "state", required_argument, NULL, 'T' },
		{ "schema", required_argument, NULL, 'K' },
		{ "since", required_argument, NULL, 'S' },
		{ "format", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *state = NULL, *since = NULL, *format = NULL, *sub, *schema = NULL;
	bool export;
	int opt, rc;

	if (argc < 1 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0) {
		audit_usage_print(argc < 1 ? stderr : stdout, argc >= 1);
		return argc < 1 ? ZDM_EXIT_USAGE : ZDM_EXIT_OK;
	}
	sub = argv[0];
	if (strcmp(sub, "verify") != 0 && strcmp(sub, "export") != 0) {
		fprintf(stderr, "zdm audit: unknown subcommand '%s' (verify or export)\n", sub);
		return ZDM_EXIT_USAGE;
	}
	export = strcmp(sub, "export") == 0;
	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (opt) {
		case 'h':
			audit_usage_print(stdout, true);
			return ZDM_EXIT_OK;
		case 's':
			if (*optarg == '\0') {
				fprintf(stderr, "zdm audit %s: --state-dir is empty\n", sub);
				return ZDM_EXIT_USAGE;
			}
			state = optarg;
			break;
		case 'T':
			if (*optarg == '\0') {
				fprintf(stderr, "zdm audit %s: --state is empty\n", sub);
				return ZDM_EXIT_USAGE;
			}
			state = optarg;
			break;
		case 'K':
			schema = optarg;
			break;
		case 'S':
		case 'f':
			if (!export) {
				fprintf(stderr, "zdm audit verify: option '%s' does not apply here "
				    "(it is for zdm audit export)\n", opt == 'S' ? "--since" : "--format");
				return ZDM_EXIT_USAGE;
			}
			if (opt == 'S')
				since = optarg;
			else
				format = optarg;
			break;
		default:
			fprintf(stderr, "zdm audit %s: %s '%s' (zdm audit --help)\n", sub,
			    opt == ':' ? "missing value for" : "unknown option", argv[optind - 1]);
			return ZDM_EXIT_USAGE;
		}
	}
	{
		char *kerr = NULL;

		if (journal_init_key(&kerr) != 0) {
			fprintf(stderr, "zdm audit: %s\n", kerr);
			free(kerr);
			return ZDM_EXIT_USAGE;
		}
	}
	/* ZDM_STATE as --state would be; a state dir there only when nothing is named */
	if (state == NULL && getenv("ZDM_STATE") != NULL && *getenv("ZDM_STATE") != '\0' &&
	    (store_is_pg(getenv("ZDM_STATE")) || optind >= argc))
		state = getenv("ZDM_STATE");
	if (schema == NULL)
		schema = getenv("ZDM_STATE_SCHEMA") && *getenv("ZDM_STATE_SCHEMA") ?
		    getenv("ZDM_STATE_SCHEMA") : NULL;
	if (export) {
		if (optind < argc) {
			fprintf(stderr, "zdm audit export: unexpected argument '%s' (name the state dir "
			    "with --state-dir)\n", argv[optind]);
			return ZDM_EXIT_USAGE;
		}
		rc = cmd_export(state, schema, since, format);
	} else {
		if (state != NULL && optind < argc && !store_is_pg(state)) {
			fprintf(stderr, "zdm audit verify: name journals or --state-dir, not both\n");
			return ZDM_EXIT_USAGE;
		}
		rc = cmd_verify(argc - optind, argv + optind, state, schema);
	}
	journal_set_audit_key(NULL);
	redact_reset();
	return rc;
}

int
cmd_audit(const struct cmd *cmd, struct cli *c)
{
	(void)cmd;
	return audit_main(c->argc, c->argv);
}
