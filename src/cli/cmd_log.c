/*
 * cmd_log.c - zdm log: the journal as a timeline, or its records (--json).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
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
#include "core/journal.h"
#include "core/registry.h"
#include "core/runner.h"
#include "core/runstate.h"
#include "core/store.h"
#include "report/ci.h"
#include "steps/builtin.h"
#include "zdm/step.h"

static const char *
ts_time(const char *ts)
{
	const char *t = ts ? strchr(ts, 'T') : NULL;

	return t ? t + 1 : ts ? ts : "?";
}

int
cmd_log(const struct cmd *cmd, struct cli *c)
{
	char *jp, *err = NULL;
	struct store *s;
	struct jlog log;
	int rc = ZDM_EXIT_OK;

	memset(&log, 0, sizeof log);
	s = find_run(c, c->argc ? c->argv[0] : NULL, cmd->name, &jp);
	if (s == NULL)
		return ZDM_EXIT_USAGE;
	if (store_read(s, jp, &log, &err) != 0) {
		fprintf(stderr, "zdm log: %s\n  (zdm audit verify %s)\n", err, jp);
		free(err);
		free(jp);
		store_close(s);
		return ZDM_EXIT_USAGE;
	}
	for (size_t i = 0; i < log.n; i++) {
		json_t *r = log.recs[i], *d = json_object_get(r, "data");
		const char *ev = json_string_value(json_object_get(r, "event"));
		const char *st = json_string_value(json_object_get(r, "step"));
		enum ev e = ev_parse(ev);
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
		if (e == EV_RUN_STARTED) {
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
		if (e == EV_GATE_MEASUREMENT) {
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
		if (e == EV_UNDO_SUCCEEDED || e == EV_UNDO_SKIPPED)
			sb_addf(&sb, "  %s", rs_undone_text(rs_undone_of(e, d)));
		if (json_is_string(json_object_get(d, "actor")))	/* a decision, a control */
			sb_addf(&sb, "  by %s", json_string_value(json_object_get(d, "actor")));
		if (json_is_string(json_object_get(d, "reason")))
			sb_addf(&sb, "  (%s)", json_string_value(json_object_get(d, "reason")));
		if (e == EV_STEP_SUCCEEDED && json_object_size(json_object_get(d, "undo_data")) > 0) {
			char *u = json_dumps(json_object_get(d, "undo_data"), JSON_COMPACT | JSON_SORT_KEYS);

			sb_addf(&sb, "  undo_data %s", u);
			free(u);
		}
		if (e == EV_RUN_RESUMED) {
			json_t *a = json_object_get(d, "actor");

			sb_addf(&sb, " by %s on %s", json_string_value(json_object_get(a, "login")),
			    json_string_value(json_object_get(a, "host")));
		}
		printf("%-13s %-16s%s\n", ts_time(ts), ev, sb.buf);
		sb_release(&sb);
	}
	if (!c->json) {
		struct runstate rs;

		runstate_fold(&log, &rs, NULL);
		printf("state: %s\n", runstate_word(&rs));
		left_line(&rs);
		runstate_release(&rs);
		if (log.torn)
			printf("note: the last line was torn (a crash mid-write) and is ignored\n");
	}
	jlog_release(&log);
	free(jp);
	store_close(s);
	return rc;
}
