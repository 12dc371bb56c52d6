/*
 * cli.h - the command line's own interface: the options a command takes,
 * the command table's entry, each command's handler (one file each:
 * cmd_*.c) and what they share (common.c, runs.c).  Handlers return an
 * exit code (ZDM_EXIT_*); only src/cli prints errors and exits.
 */
#ifndef ZDM_CLI_CLI_H
#define ZDM_CLI_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "core/runner.h"
#include "core/runstate.h"

/* Exit codes (zdm(1) EXIT STATUS): every command returns one. */
enum {
	ZDM_EXIT_OK = 0,
	ZDM_EXIT_ROLLED_BACK = 1,
	ZDM_EXIT_USAGE = 2,
	ZDM_EXIT_NEEDS_PERSON = 3,
	ZDM_EXIT_PAUSED = 4,
	ZDM_EXIT_IN_DOUBT = 5,
	ZDM_EXIT_LEFT_IN_PLACE = 6,	/* rolled back, but steps with no undo left changes */
};

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
	O_JUNIT = 1 << 16,
	O_NONINTERACTIVE = 1 << 17,
	O_APPROVE = 1 << 18,
	O_DENY = 1 << 19,
	O_REASON = 1 << 20,
	O_ONLY = 1 << 21,
	O_LOCK_TIMEOUT = 1 << 22,
	O_RUNS_FILTER = 1 << 23,	/* zdm runs: --runbook, --status, --since, --limit */
	O_CONSOLE = 1 << 27,		/* -v, -q, --timestamps, --heartbeat */
	O_WATCH = 1 << 28,		/* zdm status --watch (and --timestamps) */
	O_OUTPUT_DOC = 1 << 24,		/* not an option: --output json prints one JSON
					 * document, not the event stream */
	O_STATE_TIMEOUT = 1 << 25,
	O_WAIT_APPROVAL = 1 << 26,
	O_OUTPUT_FILE = 1 << 11,	/* zdm init: --output FILE (not text|json) */
	O_LIST = 1 << 12,		/* zdm init --list */
	O_HTML = 1 << 13,		/* zdm report --html FILE */
	O_REFRESH = 1 << 14,		/* zdm report --refresh N */
};

struct cli {
	const char **vars;
	size_t nvars;
	const char *vars_file;
	bool dry_run;
	bool json_output;
	const char *state_dir;
	const char *state;		/* --state PATH | URL */
	const char *schema;		/* --schema NAME (PostgreSQL state) */
	int64_t state_timeout_ms;	/* --state-timeout DURATION; -1: not given */
	const char *plugin_path;
	const char *fail_at;
	enum in_doubt in_doubt;		/* --in-doubt retry|skip */
	struct in_doubt_answer *answers;	/* --in-doubt STEP=retry|skip, repeatable */
	size_t nanswers;
	bool allow_changed;
	bool json;
	bool yes;			/* --yes */
	const char *junit;		/* --junit FILE */
	bool non_interactive;		/* --non-interactive */
	const char **approve;		/* --approve STEP, repeatable */
	size_t napprove;
	int64_t wait_approval_ms;	/* --wait-for-approval DURATION; 0: none */
	bool deny;			/* zdm approve --deny */
	const char *reason;		/* zdm approve --reason TEXT */
	const char **only;		/* zdm drill --only STEP, repeatable */
	size_t nonly;
	int64_t lock_wait_ms;		/* --lock-timeout DURATION */
	const char *runs_runbook;	/* zdm runs --runbook NAME */
	const char *runs_status;	/* zdm runs --status STATUS */
	const char *runs_since;		/* zdm runs --since DATE */
	long runs_limit;		/* zdm runs --limit N (0: all) */
	int level;			/* -q -1, -v 1, else 0 */
	bool timestamps;		/* --timestamps */
	int64_t heartbeat_ms;		/* --heartbeat DURATION; -1: not given */
	bool watch;			/* zdm status --watch */
	const char *output_file;	/* zdm init --output FILE */
	bool list;			/* zdm init --list */
	const char *html;		/* zdm report --html FILE */
	int refresh;			/* zdm report --refresh N (seconds; 0: none) */
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

/* the handlers, one file each */
int cmd_validate(const struct cmd *cmd, struct cli *c);
int cmd_run(const struct cmd *cmd, struct cli *c);		/* plan, run */
int cmd_continue(const struct cmd *cmd, struct cli *c);	/* resume, rollback */
int cmd_status(const struct cmd *cmd, struct cli *c);
int cmd_log(const struct cmd *cmd, struct cli *c);
int cmd_audit(const struct cmd *cmd, struct cli *c);
int cmd_approve(const struct cmd *cmd, struct cli *c);
int cmd_control(const struct cmd *cmd, struct cli *c);	/* pause, abort, promote */
int cmd_plugins(const struct cmd *cmd, struct cli *c);
int cmd_drill(const struct cmd *cmd, struct cli *c);
int cmd_state(const struct cmd *cmd, struct cli *c);		/* state init */
int cmd_runs(const struct cmd *cmd, struct cli *c);
int cmd_lock(const struct cmd *cmd, struct cli *c);		/* lock status */
int cmd_init(const struct cmd *cmd, struct cli *c);
int cmd_completion(const struct cmd *cmd, struct cli *c);
int cmd_report(const struct cmd *cmd, struct cli *c);

/* cmd_init.c: the templates' names, one a line */
void init_template_names(FILE *f);
/* cmd_complete.c: zdm __complete steps RUNBOOK | runs | types | templates
 * (commands, flags and valued: main.c, from the command table) */
int complete_more(const struct cli *c);
int cmd_schema(const struct cmd *cmd, struct cli *c);

/* common.c: stdout is the --output json event stream; the run's id and how
 * the command left it, for the final `exit` event */
extern bool json_stream;
extern char out_run_id[64], out_status[32];
struct runstate;
/* print "rolled back; N steps that changed things have no undo: ..." when
 * the run's rollback left any in place */
char *left_summary(const struct runstate *st);
void left_line(const struct runstate *st);
/* the steps a rollback left in place, for the "exit" event */
extern json_t *out_left;

/* common.c */
struct yerrs;
struct registry;
/* every error as FILE:LINE:COL: message (and a validation.error event and
 * an annotation), then the count */
void print_errors(struct yerrs *e);
/* load and check a runbook; NULL after printing the errors */
struct runbook *load(const struct cli *c, const char *path, struct registry *reg);
/* the registry over the plugin search path of RUNBOOK (NULL: none):
 * plugin_path_build(); *path is freed by the caller */
struct registry *new_registry(const struct cli *c, const char *runbook, char ***path);
/* approvals may prompt: a terminal, no CI, no --non-interactive */
bool interactive(const struct cli *c);
/* --approve STEP must name an approval step of the runbook */
int check_approve(const char *cmd, const struct cli *c, struct runbook *rb);
int check_in_doubt(const char *cmd, const struct cli *c, struct runbook *rb);
/* the CI options of run, resume and rollback */
void ci_opts(struct run_opts *o, const struct cli *c);
/* --state-timeout, else its default (30 s), in ms */
int64_t state_timeout(const struct cli *c);
/* ZDM_TEST_PAUSE_AFTER_READ=PATH: wait here until PATH exists (the tests) */
void test_pause_after_read(void);

/* runs.c */
/* --state-dir, ZDM_STATE_DIR, or .zdm beside the runbook (absolute, malloc'd) */
char *state_dir_for(const struct cli *c, const char *runbook);
/* where runs are kept: --state or --state-dir, else ZDM_STATE or
 * ZDM_STATE_DIR, else .zdm beside the runbook (or in the current dir); a
 * PostgreSQL URL opens that backend.  NULL after printing why (exit 2). */
struct store *state_open(const struct cli *c, const char *runbook, const char *cmd);
bool is_runbook_path(const char *a);
/* the index of the state dirs runbooks ran in lately (malloc'd; NULL
 * without XDG_STATE_HOME or HOME), and putting S's state dir first in it
 * once a run is written there (a warning when it cannot) */
char *state_index_path(void);
struct store;
void state_remember(const struct store *s);
/* the run a RUN_ID | RUNBOOK | JOURNAL argument (or none: the newest)
 * names: the store of its state dir, and *ref (malloc'd) in it; NULL after
 * printing why */
struct store;
struct store *find_run(const struct cli *c, const char *arg, const char *cmd, char **ref);
/* "zdm CMD: FLAG: no such step in RUNBOOK (did you mean 'x'?)", or for a
 * step under for_each: the ids of its copies */
/* does the run REF hold more than N records now (another writer appended
 * since it was read: zdm approve, pause, abort and promote read it again) */
bool run_grew(struct store *store, const char *ref, size_t n);
struct runbook;
void no_such_step(const char *cmd, const char *flag, const char *id, const struct runbook *rb);

/* cmd_status.c: what the journal and the lock say of a run, now, as zdm
 * status says it (zdm report too) */
struct run_seen {
	struct jlog log;
	struct runstate st;
	bool folded;
	bool held;		/* a zdm process holds the runbook's lock for this run */
	long pid;
	char *holder;
	const char *status;	/* as zdm runs says it: running, stale, in_doubt, ... */
	bool over;		/* nothing more will come unless a person acts */
	int exit;		/* the run's exit status, once over */
};
/* fold v->log (read by the caller) into v->st and say where the run stands:
 * v->held, v->status, v->over, v->exit */
void run_seen_fold(struct store *s, struct run_seen *v);
void run_seen_release(struct run_seen *v);

/* cmd_audit.c: `zdm audit ...` with argv[0] the subcommand; parses its own
 * options.  Exit codes (docs/audit.md): verify 0 every chain intact
 * (incomplete runs are listed, not failed), 1 a chain is broken, 2 usage or
 * a journal that cannot be read or checked (no key); export 0, 2 usage. */
int audit_main(int argc, char **argv);
extern const char audit_usage[], audit_help[];
/* the run REF as zdm audit verify and export see it: into *log its records,
 * the chain checked, or when it does not verify the records that parse,
 * unchecked (what the run claims).  0 intact, 1 the chain is broken, 2 it
 * cannot be checked (no key), as zdm audit verify exits; *msg (malloc'd)
 * the verdict without the run's name: "ok, N records, chain sha256, last
 * hash ..." or why not */
int audit_read(struct store *s, const char *ref, struct jlog *log, char **msg);
/* `zdm log`: the provenance lines of a run.started record (CI identity,
 * git commit) printed under the header; prints nothing it does not have */
void audit_print_started(const json_t *data, FILE *out);

#endif
