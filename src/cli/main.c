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
#include "cli/cli.h"
#include "core/audit_key.h"
#include "core/journal.h"
#include "core/registry.h"
#include "core/runner.h"
#include "core/runstate.h"
#include "report/ci.h"
#include "steps/builtin.h"
#include "zdm/step.h"

static const struct option long_opts[] = {
	{ "var", required_argument, NULL, 'V' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "quiet", no_argument, NULL, 'q' },
	{ "timestamps", no_argument, NULL, 'M' },
	{ "heartbeat", required_argument, NULL, 'H' },
	{ "watch", no_argument, NULL, 'w' },
	{ "vars-file", required_argument, NULL, 'f' },
	{ "dry-run", no_argument, NULL, 'n' },
	{ "output", required_argument, NULL, 'o' },
	{ "state-dir", required_argument, NULL, 's' },
	{ "state", required_argument, NULL, 'S' },
	{ "schema", required_argument, NULL, 'K' },
	{ "state-timeout", required_argument, NULL, 'E' },
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
	{ "only", required_argument, NULL, 'W' },
	{ "lock-timeout", required_argument, NULL, 'L' },
	{ "runbook", required_argument, NULL, 'B' },
	{ "status", required_argument, NULL, 'T' },
	{ "since", required_argument, NULL, 'Z' },
	{ "limit", required_argument, NULL, 'N' },
	{ "wait-for-approval", required_argument, NULL, 'a' },
	{ "list", no_argument, NULL, 'l' },
	{ "html", required_argument, NULL, 'G' },
	{ "refresh", required_argument, NULL, 'r' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static unsigned
opt_bit(int c)
{
	switch (c) {
	case 'V': return O_VAR;
	case 'v': return O_CONSOLE;
	case 'q': return O_CONSOLE;
	case 'M': return O_CONSOLE | O_WATCH;
	case 'H': return O_CONSOLE;
	case 'w': return O_WATCH;
	case 'f': return O_VARS_FILE;
	case 'n': return O_DRY_RUN;
	case 'o': return O_OUTPUT | O_OUTPUT_FILE;
	case 's': return O_STATE_DIR;
	case 'S': return O_STATE_DIR;
	case 'K': return O_STATE_DIR;
	case 'E': return O_STATE_TIMEOUT;
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
	case 'W': return O_ONLY;
	case 'L': return O_LOCK_TIMEOUT;
	case 'B': return O_RUNS_FILTER;
	case 'T': return O_RUNS_FILTER;
	case 'Z': return O_RUNS_FILTER;
	case 'N': return O_RUNS_FILTER;
	case 'a': return O_WAIT_APPROVAL;
	case 'l': return O_LIST;
	case 'G': return O_HTML;
	case 'r': return O_REFRESH;
	}
	return 0;
}


static int
cmd_version(const struct cmd *cmd, struct cli *c)
{
	printf("zdm %s (jansson %s, %s)\n", ZDM_VERSION, JANSSON_VERSION, "Lua 5.4");
	return ZDM_EXIT_OK;
}

static int cmd_help(const struct cmd *cmd, struct cli *c);
static int cmd_complete(const struct cmd *cmd, struct cli *c);

static const struct cmd commands[] = {
	{ "validate", cmd_validate, O_VAR | O_VARS_FILE | O_PLUGIN_PATH, 1, 1,
	  "validate RUNBOOK [--var k=v] [--vars-file F]",
	  "Check everything that can be checked without running: the schema, ids, step types,\n"
	  "params, durations and expressions.  Every error is FILE:LINE:COL: message; exit 2." },
	{ "plan", cmd_run, O_VAR | O_VARS_FILE | O_PLUGIN_PATH | O_STATE_DIR | O_OUTPUT | O_OUTPUT_DOC, 1, 1,
	  "plan RUNBOOK [--var k=v] [--vars-file F] [--output json]",
	  "Print the resolved steps, whether each runs (if:, as far as known before the run),\n"
	  "what each would do (later steps from the state the earlier ones leave) and its undo.\n"
	  "Runs nothing, writes nothing.  --output json: the plan as one JSON document (zdm(1))." },
	{ "run", cmd_run, O_VAR | O_VARS_FILE | O_PLUGIN_PATH | O_STATE_DIR | O_DRY_RUN |
	  O_OUTPUT | O_FAIL_AT | O_YES | O_JUNIT | O_NONINTERACTIVE | O_APPROVE | O_LOCK_TIMEOUT | O_STATE_TIMEOUT |
	  O_WAIT_APPROVAL | O_CONSOLE, 1, 1,
	  "run RUNBOOK [--var k=v] [--vars-file F] [--dry-run] [--output text|json]\n"
	  "           [--fail-at STEP] [--state-dir DIR] [--junit FILE] [--non-interactive]\n"
	  "           [--approve STEP]... [--lock-timeout DURATION] [--state-timeout D]\n"
	  "           [--wait-for-approval DURATION]\n"
	  "           [-v | -q] [--timestamps] [--heartbeat DURATION]",
	  "Run the steps in order, journaling each before and after it acts.  On failure:\n"
	  "on_failure (rollback by default).  --dry-run runs read-only steps (gates) for real and\n"
	  "prints the plan of the others.  --fail-at STEP forces a failure after STEP succeeds,\n"
	  "to rehearse the rollback in a drill.\n"
	  "Exit: 0 ok, 1 failed and rolled back, 2 usage/validation/lock, 3 a person must look,\n"
	  "4 paused or interrupted (resumable), 5 a step is in doubt.\n"
	  "CI: --output json (events, docs/ci.md), --junit FILE, --non-interactive (implied\n"
	  "without a terminal or with CI set), --approve STEP (pre-approve an approval step);\n"
	  "GitHub annotations when GITHUB_ACTIONS=true.\n"
	  "--wait-for-approval DURATION (5m, 1h): at an approval step, do not prompt or pause at\n"
	  "once: wait, holding the run, until zdm approve (from any machine sharing the state)\n"
	  "records a decision, and go on at once (denied: the step fails); none within DURATION:\n"
	  "pause as without it (exit 4)." },
	{ "resume", cmd_continue, O_VAR | O_VARS_FILE | O_PLUGIN_PATH | O_STATE_DIR | O_IN_DOUBT |
	  O_ALLOW_CHANGED | O_OUTPUT | O_JUNIT | O_NONINTERACTIVE | O_APPROVE | O_LOCK_TIMEOUT | O_STATE_TIMEOUT |
	  O_WAIT_APPROVAL | O_CONSOLE, 0, 1,
	  "resume [RUN_ID | RUNBOOK] [--in-doubt [STEP=]retry|skip]... [--allow-changed]\n"
	  "           [--output text|json] [--junit FILE] [--non-interactive] [--approve STEP]...\n"
	  "           [--lock-timeout DURATION] [--state-timeout D]\n"
	  "           [--wait-for-approval DURATION]\n"
	  "           [-v | -q] [--timestamps] [--heartbeat DURATION]",
	  "Continue a run that crashed, was interrupted or paused.  Steps that succeeded are\n"
	  "skipped with their recorded outputs.  A step that started but never ended is in doubt:\n"
	  "it runs again if idempotent; otherwise zdm asks (exit 5) and you answer\n"
	  "--in-doubt STEP=retry (it did not happen: run it) or STEP=skip (it did: take it as\n"
	  "done).  A changed runbook is refused unless --allow-changed.  --approve and\n"
	  "--wait-for-approval as for zdm run." },
	{ "rollback", cmd_continue, O_VAR | O_VARS_FILE | O_PLUGIN_PATH | O_STATE_DIR | O_IN_DOUBT |
	  O_ALLOW_CHANGED | O_OUTPUT | O_JUNIT | O_NONINTERACTIVE | O_LOCK_TIMEOUT | O_STATE_TIMEOUT | O_YES |
	  O_CONSOLE, 0, 1,
	  "rollback [RUN_ID | RUNBOOK] [--in-doubt [STEP=]retry|skip]... [--allow-changed]\n"
	  "           [--output text|json] [--junit FILE] [--lock-timeout DURATION] [--state-timeout D] [--yes]\n"
	  "           [-v | -q] [--timestamps] [--heartbeat DURATION]",
	  "Undo the run's completed steps in reverse order from their recorded undo_data, or\n"
	  "continue a rollback that was cut short.  No undo runs twice.  Before it acts, every\n"
	  "item in doubt needs an answer (exit 5 names each): a step in doubt, STEP=retry (it\n"
	  "took effect: undo it) or STEP=skip (it did not); an undo in doubt, STEP=retry (it did\n"
	  "not happen: run it) or STEP=skip (it did).  A bare retry|skip answers a single item.\n"
	  "Without RUN_ID or RUNBOOK it takes the newest run; when that run succeeded, zdm asks\n"
	  "first (y/N) on a terminal, and otherwise refuses (exit 2) unless --yes.\n"
	  "Exit 0 when every step is undone, 3 when not, 5 when something is in doubt." },
	{ "drill", cmd_drill, O_VAR | O_VARS_FILE | O_PLUGIN_PATH | O_STATE_DIR | O_ONLY | O_JSON |
	  O_NONINTERACTIVE | O_APPROVE | O_LOCK_TIMEOUT | O_STATE_TIMEOUT, 1, 1,
	  "drill RUNBOOK [--var k=v] [--vars-file F] [--only STEP]... [--json]\n"
	  "           [--state-dir DIR] [--non-interactive] [--approve STEP]...\n"
	  "           [--lock-timeout DURATION] [--state-timeout D]",
	  "Rehearse the rollback after every step that changes something: read the runbook's\n"
	  "probes (probes:, read-only checks), then for each such step run the runbook for real\n"
	  "with a failure forced right after it (as run --fail-at does), let it roll back\n"
	  "(whatever on_failure says), read the probes again and compare.  Prints a matrix\n"
	  "(failure point x probe: same / differs) and what differed.  Each run is journaled\n"
	  "and takes the runbook's lock.  --only STEP drills only these failure points; --json\n"
	  "prints the result as one JSON object (the progress goes to stderr).\n"
	  "Exit: 0 every probe the same after every rollback, 1 a rollback left a difference\n"
	  "(or a run failed before its failure point), 2 bad input, no probes, a probe failing\n"
	  "before anything ran, or a held lock (nothing ran), 3 a rollback did not complete\n"
	  "(the drill stops there: a person must look), 4 paused or interrupted, 5 in doubt." },
	{ "status", cmd_status, O_STATE_DIR | O_OUTPUT | O_OUTPUT_DOC | O_WATCH, 0, 1,
	  "status [RUN_ID | RUNBOOK] [--output json] [--watch [--timestamps]]",
	  "Where a run stands: its state, whether a zdm process holds it, each step's last event.\n"
	  "--output json: the same as one JSON document (keys in zdm(1)).  --watch: follow a run\n"
	  "started elsewhere from its journal, step by step, until it ends; exit with the run's\n"
	  "exit status (0 succeeded, 1 rolled back, 3 a person must look, 4 paused or\n"
	  "interrupted or no zdm holds it any more, 5 in doubt)." },
	{ "runs", cmd_runs, O_STATE_DIR | O_OUTPUT | O_OUTPUT_DOC | O_RUNS_FILTER, 0, 0,
	  "runs [--runbook NAME] [--status STATUS] [--since DATE] [--limit N] [--output json]",
	  "The runs of the state, newest first: run id, runbook, status, actor, host, started\n"
	  "(UTC), duration and the step it stands at.  STATUS is running, rolling_back, stale\n"
	  "(no zdm holds it: crashed between steps; resume or roll back), in_doubt (crashed\n"
	  "during a step or an undo), paused, interrupted, succeeded, failed, aborted,\n"
	  "rolled_back, rollback_failed or unreadable.  --since YYYY-MM-DD (UTC) or an RFC 3339\n"
	  "time: runs started then or later.  --limit N: the newest N.  --output json: a JSON\n"
	  "array (keys in zdm(1)).  Exit 0, also when there are none." },
	{ "report", cmd_report, O_STATE_DIR | O_HTML | O_REFRESH, 0, 1,
	  "report [RUN_ID | RUNBOOK | JOURNAL] --html FILE [--refresh N] [--state-dir DIR]",
	  "Write the run (default: the newest) as one self-contained HTML page to FILE: its\n"
	  "runbook and sha256, actor, host, zdm version, outcome, start and duration, the hash\n"
	  "chain's verdict (as zdm audit verify gives it); a timeline of every step's attempts\n"
	  "and undos; each gate's measurements against its threshold, one chart per gate; the\n"
	  "approvals, pauses, aborts and promotions with who and when.  The page holds\n"
	  "everything it shows (the chart library uPlot is built in): viewing it fetches\n"
	  "nothing.  FILE is written whole or not at all (a temporary file renamed over it).\n"
	  "--refresh N: while the run is in progress, the page reloads itself every N seconds\n"
	  "(1 to 86400); write it again meanwhile to bring it up to date.  docs/report.md.\n"
	  "Exit 0 written; 2 no such run, no --html, a bad --refresh, or FILE cannot be\n"
	  "written (nothing is left behind)." },
	{ "lock", cmd_lock, O_STATE_DIR | O_OUTPUT | O_OUTPUT_DOC, 2, 2,
	  "lock status NAME [--output json]",
	  "Who holds runbook NAME's run lock: pid, host, actor, run and since (and on PostgreSQL\n"
	  "the lock's epoch), or \"free\" (with the last holder when its record is left).\n"
	  "Exit 0 held or free; 2 when the state cannot be read." },
	{ "log", cmd_log, O_STATE_DIR | O_JSON, 0, 1, "log [RUN_ID | RUNBOOK] [--json]",
	  "The journal as a timeline (who, when, what, outcome, durations); --json: the records." },
	{ "audit", cmd_audit, 0, 1, 64, audit_usage, audit_help },
	{ "approve", cmd_approve, O_STATE_DIR | O_DENY | O_REASON, 2, 2,
	  "approve RUN_ID STEP [--deny] [--reason TEXT] [--state-dir DIR]",
	  "Decide an approval step the run is paused on: approve it, or with --deny refuse it.\n"
	  "Recorded in the run's journal (approval.granted / approval.denied) with the actor:\n"
	  "ZDM_ACTOR, else the login name, who must be among the step's approvers.  Then\n"
	  "zdm resume RUN_ID goes on (approved) or rolls back (denied).  A run that waits for\n"
	  "it (--wait-for-approval) goes on by itself, at once.  Exit 2 when the run is not\n"
	  "waiting on STEP, the actor may not decide, or a zdm process holds the run for\n"
	  "anything else." },
	{ "pause", cmd_control, O_STATE_DIR | O_REASON, 1, 1,
	  "pause RUN_ID [--reason TEXT] [--state-dir DIR]",
	  "Ask the zdm running RUN_ID (here or on any machine sharing the state) to pause\n"
	  "before its next step: the step under way finishes, then the run pauses (run.paused,\n"
	  "that zdm exits 4); zdm resume RUN_ID goes on.  Journaled as control.pause with the\n"
	  "actor (ZDM_ACTOR, else the login name).  Exit 0 asked; 2 when no live zdm runs it." },
	{ "abort", cmd_control, O_STATE_DIR | O_REASON, 1, 1,
	  "abort RUN_ID [--reason TEXT] [--state-dir DIR]",
	  "Ask the zdm running RUN_ID to stop and roll back now, whatever on_failure says: a\n"
	  "step under way that changes nothing (a gate, a wait) stops at once; one that changes\n"
	  "things finishes first, so its undo knows what it did.  Then every completed step is\n"
	  "undone, newest first (that zdm exits 1, or 6 when a change has no undo).  Journaled\n"
	  "as control.abort with the actor.  Exit 0 asked; 2 when no live zdm runs it (a paused\n"
	  "run: zdm rollback RUN_ID)." },
	{ "promote", cmd_control, O_STATE_DIR | O_REASON, 1, 2,
	  "promote RUN_ID [STEP] [--reason TEXT] [--state-dir DIR]",
	  "Ask the zdm running RUN_ID to end the wait of the gate under way (wait, health_gate,\n"
	  "metric_gate) as passed: its outputs say promoted_by, and the run goes on.  STEP, when\n"
	  "given, must be the step under way.  Journaled as control.promote with the actor.\n"
	  "Exit 0 asked; 2 when no live zdm runs it or the step under way is no such gate." },
	{ "state", cmd_state, O_STATE_DIR, 1, 3,
	  "state init URL [--schema NAME]\n"
	  "       zdm state push DIR URL [--schema NAME]",
	  "init: create zdm's schema (default zdm) in the PostgreSQL database URL, or check that\n"
	  "it is there and of this zdm's version; safe to run again.\n"
	  "push: copy the runs of the state dir DIR (DIR/runs/*.jsonl) into URL, each journal's\n"
	  "chain checked first (HMAC with ZDM_AUDIT_KEY), each run in one transaction, the lines\n"
	  "as they are.  A run already there is skipped; one there with fewer records gets the\n"
	  "rest; one that differs is refused, never overwritten; one a live zdm is writing is\n"
	  "skipped.  Safe to run again.  Exit 0 every run is there, 1 one was refused (a chain\n"
	  "that does not verify, or a run that differs), 2 bad input, an unreadable journal, a\n"
	  "run still being written or a database error.\n"
	  "The password comes from PGPASSWORD or ~/.pgpass, never from URL (refused, exit 2).\n"
	  "docs/state.md." },
	{ "plugins", cmd_plugins, O_PLUGIN_PATH, 0, 0, "plugins [--plugin-path DIRS]",
	  "List the step types, built-in and Lua, with their params, then the directories\n"
	  "plugins are looked for in (first found wins)." },
	{ "init", cmd_init, O_OUTPUT_FILE | O_LIST, 0, 1,
	  "init [TEMPLATE] [--output FILE] | init --list",
	  "Print a commented starter runbook made from TEMPLATE (default blue-green-nginx),\n"
	  "or with --output FILE write it to FILE, which must not exist (an existing file is\n"
	  "never overwritten: exit 2).  It validates as written: what to change is in its vars:\n"
	  "(marked CHANGE), secrets come from the environment.  --list: the templates, one a\n"
	  "line (blue-green-nginx, canary-haproxy, postgres-move, rolling-ssh)." },
	{ "completion", cmd_completion, 0, 1, 1, "completion bash|zsh",
	  "Print the shell completion script for bash or zsh.  It completes commands, each\n"
	  "command's flags, runbook files, run ids, step ids after --fail-at, --approve and\n"
	  "--only, and template names, asking this zdm (zdm __complete) so they never drift.\n"
	  "  bash: source <(zdm completion bash), or install it as\n"
	  "        /usr/local/share/bash-completion/completions/zdm (make install does)\n"
	  "  zsh:  zdm completion zsh > a directory of $fpath as _zdm (make install puts it in\n"
	  "        /usr/local/share/zsh/site-functions), then compinit" },
	{ "schema", cmd_schema, O_PLUGIN_PATH, 0, 0, "schema [--plugin-path DIRS]",
	  "Print a JSON Schema (draft 2020-12) of the runbook language for editors and other\n"
	  "validators, made from the step types (built-in and the plugins found, as for\n"
	  "zdm plugins): each uses: checks its with: params.  zdm validate checks more.\n"
	  "docs/editors.md." },
	{ "version", cmd_version, 0, 0, 0, "version", "Print zdm's version." },
	{ "help", cmd_help, 0, 0, 1, "help [COMMAND]", "Show help." },
	/* hidden (a name starting with '_'): what the shell completions ask */
	{ "__complete", cmd_complete, O_VAR | O_VARS_FILE | O_PLUGIN_PATH | O_STATE_DIR, 1, 2,
	  "__complete commands | flags COMMAND | valued | steps RUNBOOK | runs | types | templates",
	  "Print completion candidates, one a line (for the scripts of zdm completion)." },
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void
usage_all(FILE *f)
{
	fprintf(f, "zdm %s — zero-downtime migrations from declarative runbooks\n\nusage:\n", ZDM_VERSION);
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (commands[i].name[0] != '_')
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
			printf("  --state-dir DIR    journals and locks (default: ZDM_STATE_DIR, or .zdm beside the runbook)\n"
			    "  --state PATH|URL   a state dir, or PostgreSQL (postgresql://..., key=value; also\n"
			    "                     ZDM_STATE); the password from PGPASSWORD or ~/.pgpass\n"
			    "  --schema NAME      the PostgreSQL state's schema (ZDM_STATE_SCHEMA; else a search_path\n"
			    "                     in the URL's options; else zdm)\n");
		if (c->opts & O_STATE_TIMEOUT)
			printf("  --state-timeout D  a connection to a PostgreSQL state lost during the run is\n"
			    "                     tried again this long (default 30s; 0: not), then exit 4\n");
		if (c->opts & O_PLUGIN_PATH)
			printf("  --plugin-path DIRS plugin directories, ':'-separated (also ZDM_PLUGIN_PATH)\n");
	}
	if (c->opts & O_CONSOLE)
		printf("  -v, --verbose      show what each step's commands print (stdout, stderr), under it\n"
		    "  -q, --quiet        print only failures and the result\n"
		    "  --timestamps       start each line with the time (RFC 3339, UTC, milliseconds)\n"
		    "  --heartbeat D      not on a terminal: while a step runs, a line every D (default\n"
		    "                     30s; 0: none) with its elapsed and remaining time\n");
	if (c->opts & O_LOCK_TIMEOUT)
		printf("  --lock-timeout D   while another zdm holds the runbook's run lock, wait up to D\n"
		    "                     (30s, 2m, 1h30m) for it, saying who holds it; default 0:\n"
		    "                     exit 2 at once\n");
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

/* zdm __complete commands | flags COMMAND | valued: from the command table
 * and the options above; the rest in cmd_complete.c */
static int
cmd_complete(const struct cmd *cmd, struct cli *c)
{
	const char *what = c->argv[0];

	if (strcmp(what, "commands") == 0 && c->argc == 1) {
		for (size_t i = 0; i < NCOMMANDS; i++)
			if (commands[i].name[0] != '_')
				printf("%s\n", commands[i].name);
		return ZDM_EXIT_OK;
	}
	if (strcmp(what, "valued") == 0 && c->argc == 1) {
		/* the options that take a value: the word after one is no argument */
		for (size_t k = 0; long_opts[k].name != NULL; k++)
			if (long_opts[k].has_arg == required_argument)
				printf("--%s\n", long_opts[k].name);
		return ZDM_EXIT_OK;
	}
	if (strcmp(what, "flags") == 0 && c->argc == 2) {
		for (size_t i = 0; i < NCOMMANDS; i++) {
			if (strcmp(commands[i].name, c->argv[1]) != 0)
				continue;
			for (size_t k = 0; long_opts[k].name != NULL; k++)
				if (long_opts[k].val == 'h' || (commands[i].opts & opt_bit(long_opts[k].val)))
					printf("--%s\n", long_opts[k].name);
			return ZDM_EXIT_OK;
		}
		fprintf(stderr, "zdm __complete: unknown command '%s'\n", c->argv[1]);
		return ZDM_EXIT_USAGE;
	}
	return complete_more(c);
}

static void
cli_free(struct cli *c)
{
	free(c->vars);
	free(c->approve);
	free(c->answers);
	free(c->only);
}

/* --in-doubt retry|skip (the one item in doubt) or STEP=retry|skip (one
 * item of several); STEP is cut out of ARG in place.  -1 after saying why */
static int
parse_in_doubt(const struct cmd *cmd, struct cli *c, char *arg, int argc)
{
	char *eq = strchr(arg, '='), *word = eq ? eq + 1 : arg;
	enum in_doubt a = strcmp(word, "retry") == 0 ? IN_DOUBT_RETRY :
	    strcmp(word, "skip") == 0 ? IN_DOUBT_SKIP : IN_DOUBT_ASK;

	if (a == IN_DOUBT_ASK || (eq != NULL && eq == arg)) {
		fprintf(stderr, "zdm %s: --in-doubt '%s': use retry or skip, or STEP=retry|skip for one item "
		    "of several (zdm %s --help)\n", cmd->name, arg, cmd->name);
		return -1;
	}
	if (eq == NULL) {
		c->in_doubt = a;
		return 0;
	}
	*eq = '\0';
	for (size_t k = 0; k < c->nanswers; k++)
		if (strcmp(c->answers[k].step, arg) == 0 && c->answers[k].answer != a) {
			fprintf(stderr, "zdm %s: --in-doubt %s=%s: step '%s' is answered both ways\n",
			    cmd->name, arg, word, arg);
			*eq = '=';
			return -1;
		}
	if (c->answers == NULL)
		c->answers = xcalloc((size_t)argc, sizeof *c->answers);
	c->answers[c->nanswers].step = arg;
	c->answers[c->nanswers++].answer = a;
	return 0;
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
		size_t n = 0;

		for (size_t i = 0; i < NCOMMANDS; i++)
			if (commands[i].name[0] != '_')	/* hidden */
				names[n++] = commands[i].name;
		names[n] = NULL;
		s = did_you_mean(argv[1], names);
		fprintf(stderr, "zdm: unknown command '%s'%s%s%s (zdm --help lists them)\n", argv[1],
		    s ? " (did you mean '" : "", s ? s : "", s ? "'?)" : "");
		return ZDM_EXIT_USAGE;
	}
	memset(&c, 0, sizeof c);
	c.state_timeout_ms = -1;
	c.heartbeat_ms = -1;
	c.vars = xcalloc((size_t)argc, sizeof *c.vars);
	optind = 2;
	opterr = 0;
	int li = -1;

	while ((opt = getopt_long(argc, argv, ":hvq", long_opts, &li)) != -1) {
		char optname[64];

		if (li >= 0)
			snprintf(optname, sizeof optname, "--%s", long_opts[li].name);
		else
			snprintf(optname, sizeof optname, "%s", argv[optind - 1]);
		li = -1;
		if (opt == 'h') {
			help_one(cmd);
			cli_free(&c);
			return ZDM_EXIT_OK;
		}
		if (opt == '?' || opt == ':') {
			fprintf(stderr, "zdm %s: %s '%s' (zdm %s --help)\n", cmd->name,
			    opt == ':' ? "missing value for" : "unknown or ambiguous option",
			    argv[optind - 1], cmd->name);
			cli_free(&c);
			return ZDM_EXIT_USAGE;
		}
		if ((cmd->opts & opt_bit(opt)) == 0) {
			fprintf(stderr, "zdm %s: option '%s' does not apply here (zdm %s --help)\n",
			    cmd->name, optname, cmd->name);
			cli_free(&c);
			return ZDM_EXIT_USAGE;
		}
		switch (opt) {
		case 'V': c.vars[c.nvars++] = optarg; break;
		case 'v':
		case 'q':
			if (c.level != 0 && c.level != (opt == 'v' ? 1 : -1)) {
				fprintf(stderr, "zdm %s: -v (--verbose) and -q (--quiet) ask for opposite "
				    "things; give one\n", cmd->name);
				cli_free(&c);
				return ZDM_EXIT_USAGE;
			}
			c.level = opt == 'v' ? 1 : -1;
			break;
		case 'M': c.timestamps = true; break;
		case 'H':
			if (strcmp(optarg, "0") == 0)
				c.heartbeat_ms = 0;
			else if (parse_duration(optarg, &c.heartbeat_ms) != 0) {
				fprintf(stderr, "zdm %s: --heartbeat '%s': not a duration; use e.g. 30s, 1m "
				    "or 0 (no heartbeat)\n", cmd->name, optarg);
				cli_free(&c);
				return ZDM_EXIT_USAGE;
			}
			break;
		case 'w': c.watch = true; break;
		case 'l': c.list = true; break;
		case 'G':
			if (*optarg == '\0') {
				fprintf(stderr, "zdm %s: --html needs a file name\n", cmd->name);
				cli_free(&c);
				return ZDM_EXIT_USAGE;
			}
			c.html = optarg;
			break;
		case 'r': {
			char *end;
			long n;

			errno = 0;
			n = strtol(optarg, &end, 10);
			if (errno != 0 || end == optarg || *end != '\0' || n < 1 || n > 86400) {
				fprintf(stderr, "zdm %s: --refresh '%s': a whole number of seconds, 1 to 86400\n",
				    cmd->name, optarg);
				cli_free(&c);
				return ZDM_EXIT_USAGE;
			}
			c.refresh = (int)n;
			break;
		}
		case 'f': c.vars_file = optarg; break;
		case 'n': c.dry_run = true; break;
		case 'o':
			if (cmd->opts & O_OUTPUT_FILE)
				c.output_file = optarg;
			else if (strcmp(optarg, "json") == 0)
				c.json_output = true;
			else if (strcmp(optarg, "text") != 0) {
				fprintf(stderr, "zdm %s: --output '%s': use text or json\n", cmd->name, optarg);
				cli_free(&c);
				return ZDM_EXIT_USAGE;
			}
			break;
		case 's':
			if (*optarg == '\0') {
				fprintf(stderr, "zdm %s: --state-dir is empty\n", cmd->name);
				cli_free(&c);
				return ZDM_EXIT_USAGE;
			}
			c.state_dir = optarg;
			break;
		case 'S':
		case 'K':
			if (*optarg == '\0') {
				fprintf(stderr, "zdm %s: %s is empty\n", cmd->name, optname);
				cli_free(&c);
				return ZDM_EXIT_USAGE;
			}
			if (opt == 'S')
				c.state = optarg;
			else
				c.schema = optarg;
			break;
		case 'E':
			/* a bare 0 too: no retry */
			if (strcmp(optarg, "0") == 0)
				c.state_timeout_ms = 0;
			else if (parse_duration(optarg, &c.state_timeout_ms) != 0 ||
			    c.state_timeout_ms > 24LL * 3600 * 1000) {
				fprintf(stderr, "zdm %s: --state-timeout '%s': a duration such as 30s, 500ms or "
				    "2m (at most 24h; 0: do not retry a lost state connection)\n", cmd->name,
				    optarg);
				cli_free(&c);
				return ZDM_EXIT_USAGE;
			}
			break;
		case 'p': c.plugin_path = optarg; break;
		case 'F': c.fail_at = optarg; break;
		case 'D':
			if (parse_in_doubt(cmd, &c, optarg, argc) != 0) {
				cli_free(&c);
				return ZDM_EXIT_USAGE;
			}
			break;
		case 'A': c.allow_changed = true; break;
		case 'j': c.json = true; break;
		case 'y': c.yes = true; break;
		case 'J':
			if (*optarg == '\0') {
				fprintf(stderr, "zdm %s: --junit needs a file name\n", cmd->name);
				cli_free(&c);
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
		case 'L':
			if (parse_duration(optarg, &c.lock_wait_ms) != 0) {
				fprintf(stderr, "zdm %s: --lock-timeout '%s': not a duration; use e.g. 30s, "
				    "2m or 1h30m (0 to refuse a held lock at once)\n", cmd->name, optarg);
				cli_free(&c);
				return ZDM_EXIT_USAGE;
			}
			break;
		case 'a':
			if (parse_duration(optarg, &c.wait_approval_ms) != 0 || c.wait_approval_ms <= 0) {
				fprintf(stderr, "zdm %s: --wait-for-approval '%s': give how long to wait for "
				    "zdm approve, a duration more than 0 such as 30s, 5m, 1h or 1h30m "
				    "(zdm %s --help)\n", cmd->name, optarg, cmd->name);
				cli_free(&c);
				return ZDM_EXIT_USAGE;
			}
			break;
		case 'B': c.runs_runbook = optarg; break;
		case 'T': c.runs_status = optarg; break;
		case 'Z': c.runs_since = optarg; break;
		case 'N': {
			char *end;

			errno = 0;
			c.runs_limit = strtol(optarg, &end, 10);
			if (errno != 0 || end == optarg || *end != '\0' || c.runs_limit < 1) {
				fprintf(stderr, "zdm %s: --limit '%s': a whole number of runs, 1 or more\n",
				    cmd->name, optarg);
				cli_free(&c);
				return ZDM_EXIT_USAGE;
			}
			break;
		}
		case 'W':
			if (c.only == NULL)
				c.only = xcalloc((size_t)argc, sizeof *c.only);
			c.only[c.nonly++] = optarg;
			break;
		}
	}
	c.argc = argc - optind;
	c.argv = argv + optind;
	if (c.argc < cmd->min_args || c.argc > cmd->max_args) {
		fprintf(stderr, "usage: zdm %s\n", cmd->usage);
		cli_free(&c);
		return ZDM_EXIT_USAGE;
	}
	proc_install_signals();
	{
		char *kerr = NULL;

		if (journal_init_key(&kerr) != 0) {
			fprintf(stderr, "zdm: %s\n", kerr);
			free(kerr);
			cli_free(&c);
			return ZDM_EXIT_USAGE;
		}
	}
	/* a JSON document of its own, or the event stream */
	json_stream = c.json_output && !(cmd->opts & O_OUTPUT_DOC);
	ci_json_stdout = json_stream;
	rc = cmd->fn(cmd, &c);
	if (json_stream) {
		/* the stream's last line, always: how zdm ended (docs/ci.md) */
		static const char *const word[] = {
			"succeeded", "rolled_back", "usage_error", "needs_person", "paused", "in_doubt",
			"rolled_back",
		};
		json_t *ev = json_pack("{s:s,s:i,s:s}", "event", "exit", "exit_code", rc, "status",
		    out_status[0] ? out_status : rc >= 0 && rc <= 6 ? word[rc] : "?");

		if (json_array_size(out_left) > 0) {
			/* what stays: the steps that changed things and have no undo */
			char *m = left_in_place_text(out_left);

			json_object_set_new(ev, "left_in_place", json_incref(out_left));
			json_object_set_new(ev, "message", json_string(m));
			free(m);
		}

		if (out_run_id[0] != '\0')
			json_object_set_new(ev, "run", json_string(out_run_id));
		json_object_set_new(ev, "command", json_string(cmd->name));
		ci_emit(ev);
	}
	json_decref(out_left);
	out_left = NULL;
	cli_free(&c);
	redact_reset();
	return rc;
}
