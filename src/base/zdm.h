/*
 * zdm.h - internal interfaces between zdm's modules.
 *
 * Conventions (git/tmux style): functions return 0 on success and -1 on
 * failure, filling `char **err` with a malloc'd message (lowercase, no full
 * stop, subject quoted) that the caller frees.  Only main.c turns errors into
 * exit codes.  Nothing here prints except the output and log modules.
 */
#ifndef ZDM_INTERNAL_H
#define ZDM_INTERNAL_H

#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "zdm/step.h"

#define ZDM_VERSION "0.1.0"

/* Exit codes: DESIGN.md "CLI". */
enum {
	ZDM_EXIT_OK = 0,
	ZDM_EXIT_ROLLED_BACK = 1,
	ZDM_EXIT_USAGE = 2,
	ZDM_EXIT_NEEDS_PERSON = 3,
	ZDM_EXIT_PAUSED = 4,
	ZDM_EXIT_IN_DOUBT = 5,
};

/* ---- util.c ------------------------------------------------------------ */

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t m);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap);
/* set *err (if err and *err is NULL: first error wins) and return -1 */
int seterr(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* growable string; buf is never NULL after sb_init */
struct sbuf {
	char *buf;
	size_t len, cap;
};
void sb_init(struct sbuf *sb);
void sb_add(struct sbuf *sb, const void *p, size_t n);
void sb_adds(struct sbuf *sb, const char *s);
void sb_addf(struct sbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_addc(struct sbuf *sb, char c);
char *sb_detach(struct sbuf *sb);	/* caller frees; sb is left empty (buf NULL): sb_init to reuse */
void sb_release(struct sbuf *sb);

/* "500ms" "30s" "5m" "1h" "1h30m" -> ms.  Returns -1 on a bad duration. */
int parse_duration(const char *s, int64_t *ms);
/* a JSON string of n bytes; invalid UTF-8 becomes U+FFFD; never NULL */
json_t *json_text(const char *s, size_t n);
/* 1234 -> "1.2s"; 61000 -> "1m1s"; out >= 32 bytes */
void fmt_duration(int64_t ms, char *out, size_t n);
/* wall clock, "2026-11-21T10:00:01.123Z"; out >= 32 bytes */
void now_iso8601(char *out, size_t n);
/* lowercase hex SHA-256 of a file (65 bytes out) */
int sha256_file(const char *path, char out[65], char **err);
/* Levenshtein-based suggestion among candidates (NULL-terminated); NULL if none close */
const char *did_you_mean(const char *word, const char *const *cands);
/* mkdir -p */
int mkdir_p(const char *path, int mode);
char *path_join(const char *a, const char *b);
char *path_dirname(const char *p);
char *path_abs(const char *p);

/* ---- redact.c: secrets never leave zdm in clear ----------------------- */

void redact_add(const char *secret);	/* copies; empty strings ignored */
bool redact_active(void);
size_t redact_maxlen(void);		/* length of the longest secret */
/* cut a trailing piece that begins a secret (text cut short); new length */
size_t redact_tail(char *s, size_t len);
char *redact_str(const char *s);	/* malloc'd copy with every secret -> "***" */
void redact_json(json_t *v);		/* in place: every string (and key) */
void redact_reset(void);

/* ---- proc.c: child processes in their own process group -------------- */

extern volatile sig_atomic_t zdm_interrupted;	/* signal number, or 0 */
/* called about every 200 ms while a child runs or zdm sleeps (the terminal
 * redraws the running step's elapsed time); NULL = nothing */
extern void (*zdm_tick)(void);
void proc_install_signals(void);

struct proc_opts {
	char *const *argv;	/* argv[0] looked up in PATH; or NULL with shell */
	const char *shell;	/* run with /bin/sh -c */
	const json_t *env;	/* object of extra variables, or NULL */
	const char *cwd;	/* or NULL */
	const char *stdin_data;	/* or NULL: /dev/null */
	int64_t deadline_ms;	/* monotonic; 0 = none */
	int64_t kill_grace_ms;	/* SIGTERM -> SIGKILL delay */
	size_t cap;		/* bytes kept per stream */
};

struct proc_result {
	int exit_code;		/* -1 when killed by a signal */
	int term_signal;
	bool timed_out, interrupted;
	char *out, *err;	/* NUL-terminated, redacted, owned */
	size_t out_len, err_len;
	bool out_trunc, err_trunc;
	int64_t duration_ms;
};

/* Returns 0 when the process ran (whatever its exit), -1 when it could not start. */
int proc_run(const struct proc_opts *o, struct proc_result *r, char **err);
void proc_result_release(struct proc_result *r);
/* sleep until ms passed or a signal arrives; returns -1 if interrupted */
int zdm_sleep_ms(int64_t ms);
/* wait for `events` on fd until the monotonic ms `deadline` (0 = none), in
 * slices of at most 200 ms that run zdm_tick (the live line stays alive):
 * 1 ready (or an error/hangup to read), 0 the deadline passed, -1 a signal
 * came (zdm_interrupted; errno EINTR) or poll failed (errno) */
int zdm_poll_fd(int fd, short events, int64_t deadline);

/* ---- journal.c ---------------------------------------------------------- */

struct journal;

/* a journal file read back and checked */
struct jlog {
	json_t **recs;		/* parsed records, in order; owned */
	size_t n;
	bool torn;		/* last line was torn and ignored */
	size_t good_len;	/* bytes up to the end of the last good line */
	char *last_hash;	/* hash of the last good record (hex) */
};

/* Create STATE_DIR/runs/RUN_ID.jsonl (and dirs), fsync the directory. */
struct journal *journal_create(const char *path, const char *run_id, char **err);
/* Re-open an existing journal for appending after journal_read(); truncates
 * a torn tail to log->good_len and continues the chain from log's last hash. */
struct journal *journal_reopen(const char *path, const char *run_id,
    const struct jlog *log, char **err);
/* Append one record; data is stolen (may be NULL).  Redacts, hashes, writes
 * and fdatasyncs before returning.  Returns the record's seq, or -1. */
long journal_append(struct journal *j, const char *event, const char *step,
    int attempt, json_t *data, char **err);
const char *journal_path(const struct journal *j);
void journal_close(struct journal *j);
/* record echo for --output json: called with each record after it is on disk */
void journal_set_echo(struct journal *j, void (*fn)(const char *line, void *arg), void *arg);

/* Read and verify the chain.  Damage other than a torn last line is an
 * error naming FILE:LINE.  */
int journal_read(const char *path, struct jlog *log, char **err);
void jlog_release(struct jlog *log);
/* `zdm audit verify`: prints the result; returns 0 ok, 1 bad chain, 2 unusable */
int journal_verify(const char *path, FILE *out, FILE *errout);

/* Take ZDM_AUDIT_KEY out of the environment (steps must not see it) and
 * onto the redaction list; call before anything is spawned. */
void journal_init_key(void);
/* set (or with NULL clear) the HMAC key directly: tests */
void journal_set_audit_key(const char *key);

/* Lock per runbook name in STATE_DIR/locks/NAME.lock (flock; released when
 * the process dies).  On contention err names holder pid, host and run. */
int lock_acquire(const char *state_dir, const char *name, const char *run_id,
    int *fd, char **err);
void lock_release(int fd);

/* ---- luajson.c: json_t <-> Lua --------------------------------------- */
struct lua_State;
void lj_push(struct lua_State *L, const json_t *v);
/* converts the value at idx; tables with 1..n keys become arrays; an empty
 * table becomes {} (object) unless empty_as_array.  Returns NULL and sets
 * *err on a value that has no JSON form (function, userdata, cycle). */
json_t *lj_to_json(struct lua_State *L, int idx, char **err);

/* ---- registry.c: one registry for built-ins and plugins ---------------- */

struct registry;
struct registry *registry_new(const char *const *plugin_path);
/* find a type by name, loading a plugin from the path on first use.
 * NULL with *err when not found or the plugin does not load. */
const struct zdm_step_type *registry_get(struct registry *r, const char *name, char **err);
/* every known name (built-ins and every plugin found on the path), sorted;
 * loads all plugins.  Returns count; names owned by the registry. */
size_t registry_all(struct registry *r, const struct zdm_step_type ***out);
void registry_free(struct registry *r);
/* plugin search path: --plugin-path, ZDM_PLUGIN_PATH, ./plugins, PREFIX/share/zdm/plugins */
char **plugin_path_build(const char *flag);
void plugin_path_free(char **p);
/* plugin names and files (registry.c), also for zdm.lib in luahost.c:
 * a dotted name of [a-z0-9_-] parts; a library's last part starts with '_';
 * plugin_find: the first <dir>/a/b.lua on path (malloc'd) or NULL */
bool plugin_name_valid(const char *name);
bool plugin_is_lib(const char *name);
char *plugin_find(const char *const *path, const char *name);

/* built-in types */
extern const struct zdm_step_type zdm_step_exec;
extern const struct zdm_step_type zdm_step_wait;
extern const struct zdm_step_type zdm_step_metric_gate;
extern const struct zdm_step_type zdm_step_http, zdm_step_health_gate;
extern const struct zdm_step_type zdm_step_ssh;	/* steps/ssh.c */

/* ---- issue 7A: CI stage (ci.c, junit.c, steps/approval.c) --------------- */

extern const struct zdm_step_type zdm_step_approval;
/* how approval steps decide in this process (set by the runner) */
struct approval_opts {
	bool interactive;		/* may prompt on the terminal */
	const char *const *pre;		/* --approve STEP ids */
	size_t npre;
};
void approval_configure(const struct approval_opts *o);
char *approval_actor(void);		/* ZDM_ACTOR, else the login name; malloc'd */
/* approvers: JSON array of names; empty or not an array: anyone */
bool approval_allowed(const json_t *approvers, const char *name);

/* --output json: one event per line on stdout, schema docs/ci.md ("v": 1) */
#define ZDM_EVENT_SCHEMA 1
void ci_emit(json_t *ev);		/* adds "v" and "ts" if missing; stolen */
/* GitHub Actions workflow commands (::error file=..,line=..,col=..::msg)
 * when GITHUB_ACTIONS=true; level "error" | "warning" | "notice"; on stdout,
 * or stderr when stdout carries --output json; line/col 0 = none */
bool ci_github(void);
void ci_annotate(const char *level, const char *file, int line, int col,
    const char *title, const char *msg);
extern bool ci_json_stdout;		/* stdout is the JSON event stream */

/* --junit FILE from a run's journal (written atomically: FILE.tmp, rename) */
struct runbook;
int junit_write(const char *out, const struct runbook *rb, const char *journal, char **err);
/* XML 1.0 escaping of UTF-8 text into sb; characters XML cannot hold
 * (C0 controls but TAB LF CR, U+FFFE, U+FFFF) become U+FFFD */
void xml_escape(struct sbuf *sb, const char *s, bool attr);

/* ---- luahost.c --------------------------------------------------------- */

/* Load `plugins/<a>/<b>.lua` for name "a.b" from file `path` into a new step
 * type (malloc'd; free with its free_impl then free()). */
struct zdm_step_type *luahost_load(const char *name, const char *path, char **err);
/* the same, with the plugin search path (NULL-terminated, borrowed for the
 * load only) where the plugin's zdm.lib() looks for libraries */
struct zdm_step_type *luahost_load_from(const char *name, const char *path,
    const char *const *search, char **err);

/* ---- lua_pg.c: zdm.pg (libpq) for plugins; opener in lhx_openers ---- */
int lua_pg_open(struct lua_State *L);

#endif
