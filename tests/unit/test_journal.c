/*
 * test_journal.c - unit checks for src/journal.c: the hash chain, damage
 * named by line, torn tails, reopen, HMAC chains, fault injection, the lock.
 *
 * unit_journal() prints one "ok - ..." / "not ok - ..." line per check and
 * returns the number of failed checks.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/redact.h"
#include "base/util.h"
#include "core/audit_key.h"
#include "core/journal.h"
#include "core/lock.h"

int unit_journal(void);

static int failed;

static void
check(bool cond, const char *what, const char *detail)
{
	if (cond) {
		printf("ok - journal: %s\n", what);
		return;
	}
	failed++;
	printf("not ok - journal: %s%s%s\n", what, detail ? ": " : "",
	    detail ? detail : "");
}

static char *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct sbuf sb;
	char buf[4096];
	size_t r;

	sb_init(&sb);
	if (f != NULL) {
		for (;;) {
			r = fread(buf, 1, sizeof buf, f);
			if (r == 0)
				break;
			sb_add(&sb, buf, r);
		}
		fclose(f);
	}
	if (len != NULL)
		*len = sb.len;
	return sb_detach(&sb);
}

static void
spit(const char *path, const char *p, size_t n, const char *mode)
{
	FILE *f = fopen(path, mode);

	if (f == NULL)
		return;
	fwrite(p, 1, n, f);
	fclose(f);
}

/* start of line n (1-based) in s, or NULL */
static char *
line_at(char *s, int n)
{
	for (int i = 1; i < n && s != NULL; i++) {
		s = strchr(s, '\n');
		if (s != NULL)
			s++;
	}
	return s;
}

/* journal_verify with its output captured; returns its exit code */
static int
verify(const char *path, char **out, char **errout)
{
	size_t n1, n2;
	FILE *o = open_memstream(out, &n1);
	FILE *e = open_memstream(errout, &n2);
	int rc = journal_verify(path, o, e);

	fclose(o);
	fclose(e);
	return rc;
}

static int
rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(p);
}

static void
echo_count(const char *line, void *arg)
{
	int *n = arg;

	if (strchr(line, '\n') == NULL && line[0] == '{')
		(*n)++;
}

static long
append(struct journal *j, const char *event, const char *step, int attempt,
    const char *data)
{
	char *err = NULL;
	long seq = journal_append(j, event, step, attempt,
	    data ? json_loads(data, 0, NULL) : NULL, &err);

	if (seq < 0) {
		printf("# journal_append: %s\n", err);
		free(err);
	}
	return seq;
}

/* run fn in a child with env NAME=VALUE; returns the child's wait status */
/* the size of file PATH, or (size_t)-1 */
static size_t
file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (size_t)st.st_size : (size_t)-1;
}

static int
in_child(const char *name, const char *value, const char *path)
{
	pid_t pid;
	int st = 0;

	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		struct journal *j;

		setenv(name, value, 1);
		j = journal_create(path, "crash", NULL);
		if (j == NULL)
			_exit(10);
		for (int i = 0; i < 3; i++)
			if (append(j, "step.started", "s", 1, NULL) < 0)
				_exit(11);
		journal_close(j);
		_exit(0);
	}
	if (pid < 0)
		return -1;
	waitpid(pid, &st, 0);
	return st;
}

/* every line the writer puts on disk is json_dumps(JSON_COMPACT |
 * JSON_SORT_KEYS) of the record it holds, byte for byte: the canonical form
 * the chain hashes and that readers hash without re-encoding */
static void
canonical_lines(const char *dir, const char *key, const char *what)
{
	char *path = xasprintf("%s/canon-%s/runs/c1.jsonl", dir, what);
	char *err = NULL, *text, *line, *save = NULL;
	struct journal *j;
	size_t len;
	int n = 0, same = 0;
	char detail[160] = "";

	journal_set_audit_key(key);
	j = journal_create(path, "c1", &err);
	check(j != NULL, "create (canonical lines)", err);
	free(err);
	if (j == NULL) {
		free(path);
		journal_set_audit_key(NULL);
		return;
	}
	append(j, "run.started", NULL, 0, "{\"runbook\":\"x.yml\",\"z\":[1,-2,3.5,true,null]}");
	append(j, "step.started", "shift-10", 1, NULL);
	append(j, "step.succeeded", "sh\"if\\t/é☃", 7,
	    "{\"outputs\":{\"b\":\"tab\\there\\nnl \\u0001 \\u001f \\\"q\\\" \\\\ / é 😀\","
	    "\"a\":{\"prev\":\"x\",\"hash\":\"y\"},\"\":0,\"n\":123456789012}}");
	append(j, "undo.skipped", "s", 0, "{}");
	append(j, "x", NULL, 3, "{\"nul\":\"a\\u0000b\",\"e\":[],\"o\":{}}");
	/* event and step strings that need escapes, again and changed (each
	 * string is encoded once while it repeats) */
	append(j, "ev\"/\\\x01\xc3\xa9", "sh\"if\\t/é☃", 2147483647, "{\"a\":1}");
	append(j, "ev\"/\\\x01\xc3\xa9", "s\x7f", -1, NULL);
	append(j, "x", "shift-10", 1, "{}");
	{
		char *e = NULL;

		check(journal_append(j, "bad\xff", "s", 1, NULL, &e) < 0 && e != NULL,
		    "an event that is not UTF-8: no record", e);
		free(e);
		e = NULL;
		check(journal_append(j, "x", "s\xc3", 1, NULL, &e) < 0 && e != NULL,
		    "a step that is not UTF-8: no record", e);
		free(e);
	}
	journal_close(j);
	text = slurp(path, &len);
	for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		json_t *rec = json_loads(line, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
		char *again = rec != NULL ? json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS) : NULL;

		n++;
		if (again != NULL && strcmp(again, line) == 0)
			same++;
		else if (detail[0] == '\0')
			snprintf(detail, sizeof detail, "line %d: %.60s / %.60s", n, line,
			    again != NULL ? again : "(no parse)");
		free(again);
		json_decref(rec);
	}
	free(text);
	check(n == 8 && same == 8, what, detail[0] != '\0' ? detail : NULL);

	/* read (every record parsed) and verify (canonical lines hashed as
	 * they are) agree; a line re-spaced by hand still has the hash of its
	 * canonical form, and is checked the old way */
	{
		struct jlog log;
		char *out = NULL, *eout = NULL, *text2, *respaced = xasprintf("%s.sp", path);
		size_t i, kept = 0;
		int rc;
		FILE *f;

		rc = journal_read(path, &log, &err);
		for (i = 0; rc == 0 && i < log.n; i++)
			kept += log.recs[i] != NULL;
		check(rc == 0 && log.n == 8 && kept == 8, "journal_read keeps every record", err);
		free(err);
		err = NULL;
		if (rc == 0)
			jlog_release(&log);
		rc = verify(path, &out, &eout);
		check(rc == 0 && strstr(out, "ok, 8 records") != NULL, "verify: canonical lines ok",
		    eout);
		free(out);
		free(eout);
		text2 = slurp(path, &len);
		f = fopen(respaced, "w");
		save = NULL;
		n = 0;
		for (line = strtok_r(text2, "\n", &save); line != NULL && f != NULL;
		    line = strtok_r(NULL, "\n", &save)) {
			json_t *rec = json_loads(line, JSON_ALLOW_NUL, NULL);
			char *sp = ++n == 3 ? json_dumps(rec, JSON_SORT_KEYS) : xstrdup(line);

			fprintf(f, "%s\n", sp);
			free(sp);
			json_decref(rec);
		}
		if (f != NULL)
			fclose(f);
		free(text2);
		out = eout = NULL;
		rc = verify(respaced, &out, &eout);
		check(rc == 0 && strstr(out, "ok, 8 records") != NULL,
		    "verify: a line not in canonical form is checked by its canonical form", eout);
		free(out);
		free(eout);
		free(respaced);
	}
	free(path);
	journal_set_audit_key(NULL);
}

int
unit_journal(void)
{
	char tmpl[] = "/tmp/zdm-unit-journal-XXXXXX";
	char *dir, *path, *p2, *bad, *text, *out = NULL, *eout = NULL;
	char *err = NULL;
	struct journal *j;
	struct jlog log;
	size_t len, len3;
	int echoed = 0, rc, lfd, lfd2;

	failed = 0;
	journal_set_audit_key(NULL);
	unsetenv("ZDM_TEST_CRASH_BEFORE_RECORD");
	unsetenv("ZDM_TEST_CRASH_AFTER_RECORD");
	unsetenv("ZDM_TEST_TEAR_RECORD");
	dir = mkdtemp(tmpl);
	if (dir == NULL) {
		check(false, "mkdtemp", strerror(errno));
		return failed;
	}
	path = xasprintf("%s/state/runs/r1.jsonl", dir);
	p2 = xasprintf("%s/state/runs/r2.jsonl", dir);
	bad = xasprintf("%s/bad.jsonl", dir);

	/* ---- create, append, read back ---- */
	j = journal_create(path, "r1", &err);
	check(j != NULL, "create makes the dirs and the file", err);
	free(err);
	err = NULL;
	if (j == NULL)
		goto done;
	journal_set_echo(j, echo_count, &echoed);
	check(append(j, "run.started", NULL, 0, "{\"runbook\":\"x.yml\"}") == 1 &&
	    append(j, "step.started", "shift-10", 1, NULL) == 2 &&
	    append(j, "step.succeeded", "shift-10", 1,
	    "{\"outputs\":{\"n\":1,\"r\":0.1}}") == 3, "append returns 1, 2, 3", NULL);
	check(echoed == 3, "echo called once per record, without newline", NULL);
	check(strcmp(journal_path(j), path) == 0, "journal_path", NULL);
	rc = (int)journal_append(j, "x", NULL, 0, json_integer(1), &err);
	check(rc == -1 && err != NULL, "data that is not an object is refused", err);
	free(err);
	err = NULL;
	rc = (int)journal_append(j, "bad\xff", NULL, 0, NULL, &err);
	check(rc == -1 && err != NULL, "an event that is not UTF-8 is refused", err);
	free(err);
	err = NULL;
	journal_close(j);
	check(journal_create(path, "r1", &err) == NULL && err != NULL,
	    "create refuses an existing journal", err);
	free(err);
	err = NULL;

	text = slurp(path, &len3);
	check(strncmp(text, "{\"data\":{\"chain\":\"sha256\",\"runbook\"",
	    strlen("{\"data\":{\"chain\":\"sha256\",\"runbook\"")) == 0,
	    "records are compact with sorted keys, chain in seq 1", text);
	check(strstr(text, "\"attempt\"") == strstr(text, "\"attempt\":1,\"data\":{}"),
	    "attempt left out when 0, data {} when NULL", NULL);
	free(text);

	rc = journal_read(path, &log, &err);
	check(rc == 0 && log.n == 3 && !log.torn && log.good_len == len3,
	    "read back 3 records, chain ok", err);
	free(err);
	err = NULL;
	if (rc == 0) {
		check(json_object_get(log.recs[0], "step") == NULL &&
		    json_integer_value(json_object_get(log.recs[1], "attempt")) == 1 &&
		    strcmp(json_string_value(json_object_get(log.recs[2], "hash")),
		    log.last_hash) == 0, "record fields and last_hash", NULL);
		jlog_release(&log);
	}
	rc = verify(path, &out, &eout);
	check(rc == 0 && strstr(out, ": ok, 3 records, chain sha256, last hash ") != NULL,
	    "verify ok", out);
	free(out);
	free(eout);

	/* ---- an edited byte in line 2 ---- */
	text = slurp(path, &len);
	{
		char *l2 = line_at(text, 2);
		char *ev = strstr(l2, "step.started");

		ev[5] = 'S';
		spit(bad, text, len, "wb");
	}
	rc = journal_read(bad, &log, &err);
	check(rc == -1 && err != NULL && strstr(err, "bad.jsonl:2: hash does not match") != NULL,
	    "an edited line 2 is named", err);
	free(err);
	err = NULL;
	rc = verify(bad, &out, &eout);
	check(rc == 1 && strstr(eout, ":2:") != NULL, "verify returns 1 on an edit", eout);
	free(out);
	free(eout);
	free(text);

	/* ---- a dropped line 2 ---- */
	text = slurp(path, &len);
	{
		char *l2 = line_at(text, 2), *l3 = line_at(text, 3);

		memmove(l2, l3, strlen(l3) + 1);
		spit(bad, text, strlen(text), "wb");
	}
	rc = journal_read(bad, &log, &err);
	check(rc == -1 && err != NULL && strstr(err, ":2: seq 3 where 2 was expected") != NULL,
	    "a dropped line is named", err);
	free(err);
	err = NULL;
	free(text);

	/* ---- a line that is not JSON ---- */
	spit(bad, "nope\n", 5, "wb");
	rc = journal_read(bad, &log, &err);
	check(rc == -1 && err != NULL && strstr(err, ":1: not valid JSON: ") != NULL,
	    "garbage is not valid JSON", err);
	free(err);
	err = NULL;

	/* ---- an empty journal ---- */
	spit(bad, "", 0, "wb");
	rc = journal_read(bad, &log, &err);
	check(rc == 0 && log.n == 0 && !log.torn, "an empty journal is valid", err);
	free(err);
	err = NULL;
	if (rc == 0)
		jlog_release(&log);

	/* ---- a torn tail ---- */
	spit(path, "{\"attempt\":1,\"data\":{\"du", 24, "ab");	/* as zdm writes: keys sorted */
	rc = journal_read(path, &log, &err);
	check(rc == 0 && log.n == 3 && log.torn && log.good_len == len3,
	    "a torn last line is reported and ignored", err);
	free(err);
	err = NULL;
	if (rc == 0) {
		rc = verify(path, &out, &eout);
		check(rc == 0 && strstr(out, "torn last line ignored") != NULL,
		    "verify mentions the torn line", out);
		free(out);
		free(eout);

		j = journal_reopen(path, "r1", &log, &err);
		jlog_release(&log);
		check(j != NULL, "reopen after a torn line", err);
		free(err);
		err = NULL;
		if (j != NULL) {
			text = slurp(path, &len);
			check(len == len3, "reopen truncates the torn tail", NULL);
			free(text);
			/* redaction before the hash */
			redact_add("hunter2");
			check(append(j, "step.started", "db", 2,
			    "{\"pw\":\"xhunter2y\"}") == 4, "reopen continues with seq 4", NULL);
			redact_reset();
			journal_close(j);
			text = slurp(path, &len);
			check(strstr(text, "hunter2") == NULL && strstr(text, "x***y") != NULL,
			    "secrets are redacted before they reach the disk", NULL);
			free(text);
			rc = journal_read(path, &log, &err);
			check(rc == 0 && log.n == 4 && !log.torn, "the chain verifies after reopen", err);
			free(err);
			err = NULL;
			if (rc == 0) {
				j = journal_reopen(path, "other", &log, &err);
				check(j == NULL && err != NULL, "reopen refuses another run id", err);
				journal_close(j);
				free(err);
				err = NULL;
				spit(path, "{}\n", 3, "ab");
				j = journal_reopen(path, "r1", &log, &err);
				check(j == NULL && err != NULL && strstr(err, "changed since") != NULL,
				    "reopen refuses a journal that grew since it was read", err);
				journal_close(j);
				free(err);
				err = NULL;
				if (truncate(path, (off_t)log.good_len) != 0)
					check(false, "truncate", strerror(errno));
				jlog_release(&log);
			}
		}
	}

	/* ---- a torn first record: nothing complete, the chain starts afresh ---- */
	spit(bad, "{\"da", 4, "wb");
	rc = journal_read(bad, &log, &err);
	check(rc == 0 && log.n == 0 && log.torn && log.good_len == 0,
	    "a torn first line leaves an empty journal", err);
	free(err);
	err = NULL;
	if (rc == 0)
		jlog_release(&log);
	spit(bad, "{\"se", 4, "wb");	/* not how a record starts: put there by hand */
	rc = journal_read(bad, &log, &err);
	check(rc == -1 && err != NULL && strstr(err, "bad.jsonl:1: bytes after the last record") != NULL,
	    "bytes that cannot start a record are damage, not a torn line", err);
	free(err);
	err = NULL;
	spit(bad, "{\"da", 4, "wb");
	rc = journal_read(bad, &log, &err);
	free(err);
	err = NULL;
	if (rc == 0) {
		j = journal_reopen(bad, "rb", &log, &err);
		jlog_release(&log);
		check(j != NULL && append(j, "run.started", NULL, 0, NULL) == 1,
		    "reopen of a torn first line starts at seq 1", err);
		free(err);
		err = NULL;
		journal_close(j);
		rc = journal_read(bad, &log, &err);
		check(rc == 0 && log.n == 1 && !log.torn, "and it verifies", err);
		free(err);
		err = NULL;
		if (rc == 0)
			jlog_release(&log);
	}

	/* ---- HMAC chain ---- */
	journal_set_audit_key("k1");
	j = journal_create(p2, "r2", &err);
	check(j != NULL, "create with ZDM_AUDIT_KEY", err);
	free(err);
	err = NULL;
	if (j != NULL) {
		check(append(j, "run.started", NULL, 0, "{}") == 1 &&
		    append(j, "run.finished", NULL, 0, "{\"ok\":true}") == 2,
		    "append with hmac", NULL);
		journal_close(j);
	}
	rc = verify(p2, &out, &eout);
	check(rc == 0 && strstr(out, ": ok, 2 records, chain hmac-sha256") != NULL,
	    "verify with the key", out);
	free(out);
	free(eout);
	rc = verify(path, &out, &eout);
	check(rc == 1 && strstr(eout, ":1: chain is plain sha256 but ZDM_AUDIT_KEY is set") != NULL,
	    "a plain chain fails when the key is set", eout);
	free(out);
	free(eout);
	journal_set_audit_key("k2");
	rc = verify(p2, &out, &eout);
	check(rc == 1 && strstr(eout, ":1: hash does not match") != NULL,
	    "verify with the wrong key fails", eout);
	free(out);
	free(eout);
	journal_set_audit_key(NULL);
	rc = verify(p2, &out, &eout);
	check(rc == 2 && strstr(eout, "ZDM_AUDIT_KEY is not set") != NULL,
	    "verify without the key cannot check an hmac chain", eout);
	free(out);
	free(eout);
	journal_set_audit_key("k1");
	rc = journal_read(p2, &log, &err);
	free(err);
	err = NULL;
	if (rc == 0) {
		journal_set_audit_key(NULL);
		j = journal_reopen(p2, "r2", &log, &err);
		check(j == NULL && err != NULL, "reopen of an hmac chain needs the key", err);
		journal_close(j);
		free(err);
		err = NULL;
		jlog_release(&log);
	}
	journal_set_audit_key(NULL);

	/* ---- fault injection ---- */
	{
		char *c1 = xasprintf("%s/crash1.jsonl", dir);
		char *c2 = xasprintf("%s/crash2.jsonl", dir);
		char *c3 = xasprintf("%s/crash3.jsonl", dir);
		int st;

		st = in_child("ZDM_TEST_CRASH_AFTER_RECORD", "2", c1);
		rc = journal_read(c1, &log, &err);
		check(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL && rc == 0 &&
		    log.n == 2 && !log.torn, "ZDM_TEST_CRASH_AFTER_RECORD=2 kills after record 2", err);
		free(err);
		err = NULL;
		if (rc == 0)
			jlog_release(&log);
		st = in_child("ZDM_TEST_TEAR_RECORD", "2", c2);
		rc = journal_read(c2, &log, &err);
		check(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL && rc == 0 &&
		    log.n == 1 && log.torn, "ZDM_TEST_TEAR_RECORD=2 tears record 2", err);
		free(err);
		err = NULL;
		if (rc == 0)
			jlog_release(&log);
		st = in_child("ZDM_TEST_CRASH_BEFORE_RECORD", "2", c3);
		rc = journal_read(c3, &log, &err);
		check(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL && rc == 0 &&
		    log.n == 1 && !log.torn && log.good_len == file_size(c3),
		    "ZDM_TEST_CRASH_BEFORE_RECORD=2 kills with nothing of record 2 written", err);
		free(err);
		err = NULL;
		if (rc == 0)
			jlog_release(&log);
		free(c1);
		free(c2);
		free(c3);
	}

	/* ---- the lock ---- */
	{
		char *sd = xasprintf("%s/state", dir);
		char want[64];

		rc = lock_acquire(sd, "deploy", "r1", &lfd, &err);
		check(rc == 0 && lfd >= 0, "lock_acquire", err);
		free(err);
		err = NULL;
		rc = lock_acquire(sd, "deploy", "r9", &lfd2, &err);
		snprintf(want, sizeof want, "locked by pid %ld on host", (long)getpid());
		check(rc == 1 && lfd2 == -1 && err != NULL && strstr(err, want) != NULL &&
		    strstr(err, "(run r1, since ") != NULL,
		    "a second lock_acquire is busy (1) and names the holder", err);
		free(err);
		err = NULL;
		lock_release(lfd);
		rc = lock_acquire(sd, "deploy", "r9", &lfd2, &err);
		check(rc == 0, "lock_acquire after lock_release", err);
		free(err);
		err = NULL;
		lock_release(lfd2);
		rc = lock_acquire(sd, "../x", "r9", &lfd2, &err);
		check(rc == -1, "a name with a slash is refused", err);
		free(err);
		err = NULL;
		free(sd);
	}

	canonical_lines(dir, NULL, "each line is json_dumps of its record, byte for byte (sha256)");
	canonical_lines(dir, "k3y", "each line is json_dumps of its record, byte for byte (hmac)");

done:
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(path);
	free(p2);
	free(bad);
	return failed;
}
