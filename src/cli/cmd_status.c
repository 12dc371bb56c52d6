/*
 * cmd_status.c - zdm status: where a run stands, from its journal and lock.
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
#include "core/lock.h"
#include "core/registry.h"
#include "core/runner.h"
#include "core/runstate.h"
#include "report/ci.h"
#include "steps/builtin.h"
#include "zdm/step.h"

int
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
