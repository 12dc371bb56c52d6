/*
 * junit.c - `--junit FILE`: a run as a JUnit XML report, built from the
 * run's journal (so a resumed or rolled-back run reports every part of it,
 * whichever process ran it).
 *
 * Shape: the JUnit XML format of Apache Ant's XMLJUnitResultFormatter as
 * CI servers read it (Jenkins' junit-4.xsd, GitLab's and GitHub actions'
 * JUnit report parsers); tests/data/junit.xsd is the schema it is checked
 * against:
 *
 *   <testsuites name="zdm" tests failures errors skipped time>
 *     <testsuite name=RUNBOOK-NAME tests failures errors skipped time timestamp>
 *       <properties> zdm.run, zdm.status, zdm.runbook </properties>
 *       <testcase name=STEP-ID classname=zdm.RUNBOOK-NAME time=SECONDS>
 *         <skipped message=/> | <failure message= type=>text</failure> |
 *         <error message= type=>text</error>   (in doubt, or its undo failed)
 *         <system-out> attempts, outputs, the rollback's outcome </system-out>
 *
 * Times are seconds with millisecond precision (the journal's duration_ms
 * of every attempt, summed).  Messages are the journal's, already redacted,
 * redacted again here.  Written to FILE.tmp.PID, fsynced, renamed over FILE.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/redact.h"
#include "base/util.h"
#include "core/store.h"
#include "core/runbook.h"
#include "core/runstate.h"
#include "report/junit.h"

static void xml_escape_raw(struct sbuf *sb, const char *s, bool attr);

void
xml_escape(struct sbuf *sb, const char *s, bool attr)
{
	/* redact before escaping: a secret holding & or < would no longer
	 * match once escaped (the journal's text is redacted already; this is
	 * for what comes from elsewhere, the runbook's own text) */
	char *red = s != NULL ? redact_str(s) : NULL;

	xml_escape_raw(sb, red, attr);
	free(red);
}

static void
xml_escape_raw(struct sbuf *sb, const char *s, bool attr)
{
	const unsigned char *p = (const unsigned char *)s;

	for (; p != NULL && *p != '\0'; p++) {
		switch (*p) {
		case '&': sb_adds(sb, "&amp;"); continue;
		case '<': sb_adds(sb, "&lt;"); continue;
		case '>': sb_adds(sb, "&gt;"); continue;
		case '"': sb_adds(sb, "&quot;"); continue;
		case '\'': sb_adds(sb, "&apos;"); continue;
		case '\t': sb_adds(sb, attr ? "&#9;" : "\t"); continue;
		case '\n': sb_adds(sb, attr ? "&#10;" : "\n"); continue;
		case '\r': sb_adds(sb, "&#13;"); continue;
		}
		if (*p < 0x20 || *p == 0x7f) {
			/* XML 1.0 has no place for C0 controls, not even as
			 * character references; DEL is legal but invisible */
			if (*p == 0x7f)
				sb_adds(sb, "&#127;");
			else
				sb_adds(sb, "\xef\xbf\xbd");
			continue;
		}
		if (p[0] == 0xef && p[1] == 0xbf && (p[2] == 0xbe || p[2] == 0xbf)) {
			/* U+FFFE, U+FFFF: not XML characters */
			sb_adds(sb, "\xef\xbf\xbd");
			p += 2;
			continue;
		}
		if (*p >= 0x80) {
			/* a UTF-8 sequence: copy it whole if it is complete */
			size_t n = *p >= 0xf0 ? 4 : *p >= 0xe0 ? 3 : *p >= 0xc0 ? 2 : 1;
			size_t k;

			for (k = 1; k < n && (p[k] & 0xc0) == 0x80; k++)
				;
			if (n == 1 || k < n) {
				sb_adds(sb, "\xef\xbf\xbd");
				p += k - 1;
				continue;
			}
			sb_add(sb, p, n);
			p += n - 1;
			continue;
		}
		sb_addc(sb, (char)*p);
	}
}

static void
attr(struct sbuf *sb, const char *name, const char *v)
{
	sb_addf(sb, " %s=\"", name);
	xml_escape(sb, v, true);
	sb_addc(sb, '"');
}

static void
secs(char *out, size_t n, int64_t ms)
{
	snprintf(out, n, "%lld.%03lld", (long long)(ms / 1000), (long long)(ms % 1000));
}

static int
write_atomic(const char *path, const char *text, size_t len, char **err)
{
	char *tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	size_t off = 0;

	if (fd < 0) {
		seterr(err, "cannot write '%s': %s", tmp, strerror(errno));
		free(tmp);
		return -1;
	}
	while (off < len) {
		ssize_t k = write(fd, text + off, len - off);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			seterr(err, "cannot write '%s': %s", tmp, strerror(errno));
			close(fd);
			unlink(tmp);
			free(tmp);
			return -1;
		}
		off += (size_t)k;
	}
	if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
		seterr(err, "cannot write '%s': %s", path, strerror(errno));
		unlink(tmp);
		free(tmp);
		return -1;
	}
	free(tmp);
	return 0;
}

/* how the report names where the run stands: a run not ended is running */
static const char *
status_of(const struct runstate *st)
{
	switch (st->outcome) {
	case RS_RUNNING:
	case RS_ROLLING_BACK:
		return "running";
	case RS_PAUSED:
	case RS_INTERRUPTED:
	case RS_FINISHED:
		break;
	}
	return runstate_word(st);
}

int
junit_write(const char *out, const struct runbook *rb, struct store *s, const char *ref,
    char **err)
{
	static const struct rs_step notrun;	/* a step the journal does not name */
	struct jlog log;
	struct runstate st;
	struct sbuf sb, cases;
	const char *status, *run, *ts;
	int tests = (int)rb->nsteps, failures = 0, errors = 0, skipped = 0;
	int64_t total;
	char t[48];
	int rc;
	const char **left = xcalloc(rb->nsteps + 1, sizeof *left);	/* left in place */
	size_t nleft = 0;

	memset(&log, 0, sizeof log);
	if (store_read(s, ref, &log, err) != 0) {
		free(left);
		return -1;
	}
	runstate_fold(&log, &st, NULL);
	status = status_of(&st);
	run = st.run_id != NULL ? st.run_id : "";
	ts = st.started;
	total = st.finished_ms;
	{
		/* a run not finished yet (paused, interrupted): its steps' time */
		int64_t steps_ms = 0;

		for (size_t i = 0; i < rb->nsteps; i++) {
			const struct rs_step *s = runstate_step(&st, rb->steps[i].id);

			if (s != NULL)
				steps_ms += s->ms + s->undo_ms;
		}
		if (steps_ms > total)
			total = steps_ms;
	}
	sb_init(&cases);
	for (size_t i = 0; i < rb->nsteps; i++) {
		const struct rs_step *s = runstate_step(&st, rb->steps[i].id);
		const char *id = rb->steps[i].id;
		struct sbuf so;

		if (s == NULL)
			s = &notrun;
		sb_init(&so);
		secs(t, sizeof t, s->ms);
		sb_adds(&cases, "    <testcase");
		attr(&cases, "name", id);
		sb_addf(&cases, " classname=\"zdm.");
		xml_escape(&cases, rb->name, true);
		sb_addf(&cases, "\" time=\"%s\">\n", t);
		sb_addf(&so, "uses: %s\nattempts: %d\n", rb->steps[i].uses, s->starts);
		if (rb->steps[i].name != NULL)
			sb_addf(&so, "name: %s\n", rb->steps[i].name);
		if (s->granted_by != NULL)
			sb_addf(&so, "approved by: %s\n", s->granted_by);
		if (s->undo != RS_UNDO_NONE) {
			char u[48];

			secs(u, sizeof u, s->undo_ms);
			sb_addf(&so, "rollback: %s%s%s (%ss)\n",
			    s->undo == RS_UNDO_FAILED ? "undo FAILED" :
			    s->undo == RS_UNDO_STARTED ? "undo in doubt" :
			    s->undone == RS_LEFT_IN_PLACE ? "left in place" :
			    s->undone == RS_NOTHING_TO_UNDO ? "nothing to undo" :
			    s->undone == RS_UNDONE ? "undone" : "not undone",
			    s->undo_msg ? ": " : "", s->undo_msg ? s->undo_msg : "", u);
		}
		switch (s->phase) {
		case RS_PENDING:
			sb_adds(&cases, "      <skipped message=\"not run\"/>\n");
			skipped++;
			break;
		case RS_SKIPPED:
			sb_adds(&cases, "      <skipped");
			attr(&cases, "message", s->skip_reason ? s->skip_reason : "skipped");
			sb_adds(&cases, "/>\n");
			skipped++;
			break;
		case RS_STARTED:
			sb_adds(&cases, "      <error type=\"in_doubt\"");
			attr(&cases, "message", "started but its end is not recorded (in doubt)");
			sb_adds(&cases, "/>\n");
			errors++;
			break;
		case RS_FAILED:
			if (s->needs_decision && st.outcome == RS_PAUSED) {
				sb_adds(&cases, "      <skipped");
				attr(&cases, "message", s->error ? s->error : "paused");
				sb_adds(&cases, "/>\n");
				skipped++;
				break;
			}
			sb_addf(&cases, "      <failure type=\"%s\"", s->timed_out ? "timed_out" : ev_name(EV_STEP_FAILED));
			attr(&cases, "message", s->error ? s->error : "failed");
			sb_adds(&cases, ">");
			xml_escape(&cases, s->error ? s->error : "failed", false);
			sb_adds(&cases, "</failure>\n");
			failures++;
			break;
		case RS_SUCCEEDED:
			break;
		}
		if (s->undo == RS_UNDO_STARTED || s->undo == RS_UNDO_FAILED) {
			sb_addf(&cases, "      <error type=\"%s\"",
			    ev_name(s->undo == RS_UNDO_FAILED ? EV_UNDO_FAILED : EV_UNDO_STARTED));
			attr(&cases, "message", s->undo_msg ? s->undo_msg : "the undo did not complete");
			sb_adds(&cases, "/>\n");
			errors++;
		}
		if (s->undone == RS_LEFT_IN_PLACE && s->undo != RS_UNDO_STARTED &&
		    s->undo != RS_UNDO_FAILED) {
			sb_adds(&cases, "      <error type=\"left_in_place\"");
			attr(&cases, "message", "this step changed things and has no undo: the rollback "
			    "left its change in place");
			sb_adds(&cases, "/>\n");
			errors++;
			left[nleft++] = id;
		}
		sb_adds(&cases, "      <system-out>");
		xml_escape(&cases, so.buf, false);
		sb_adds(&cases, "</system-out>\n    </testcase>\n");
		sb_release(&so);
	}
	secs(t, sizeof t, total);
	sb_init(&sb);
	sb_adds(&sb, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"zdm\"");
	sb_addf(&sb, " tests=\"%d\" failures=\"%d\" errors=\"%d\" skipped=\"%d\" time=\"%s\">\n",
	    tests, failures, errors, skipped, t);
	sb_adds(&sb, "  <testsuite");
	attr(&sb, "name", rb->name);
	sb_addf(&sb, " tests=\"%d\" failures=\"%d\" errors=\"%d\" skipped=\"%d\" time=\"%s\"",
	    tests, failures, errors, skipped, t);
	if (ts != NULL)
		attr(&sb, "timestamp", ts);
	sb_adds(&sb, ">\n    <properties>\n      <property name=\"zdm.run\"");
	attr(&sb, "value", run ? run : "");
	sb_adds(&sb, "/>\n      <property name=\"zdm.status\"");
	attr(&sb, "value", status);
	sb_adds(&sb, "/>\n      <property name=\"zdm.runbook\"");
	attr(&sb, "value", rb->path);
	if (nleft > 0) {
		char *m = left_text(left, nleft);

		sb_adds(&sb, "/>\n      <property name=\"zdm.left_in_place\"");
		attr(&sb, "value", m);
		free(m);
	}
	sb_adds(&sb, "/>\n    </properties>\n");
	sb_add(&sb, cases.buf, cases.len);
	sb_adds(&sb, "  </testsuite>\n</testsuites>\n");
	sb_release(&cases);
	{
		char *red = redact_str(sb.buf);

		rc = write_atomic(out, red, strlen(red), err);
		free(red);
	}
	sb_release(&sb);
	free(left);
	runstate_release(&st);
	jlog_release(&log);
	return rc;
}
