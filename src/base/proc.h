/*
 * proc.h - child processes in their own process group, signals, and the
 * waits (sleep, poll) that a signal cuts short.
 */
#ifndef ZDM_BASE_PROC_H
#define ZDM_BASE_PROC_H

#include <signal.h>
#include <sys/types.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

extern volatile sig_atomic_t zdm_interrupted;	/* signal number, ZDM_STOP_ABORT, or 0 */
/* zdm_interrupted when `zdm abort` stops a read-only step (core/control.c):
 * every wait ends as for a signal, but no signal came */
#define ZDM_STOP_ABORT (-1)
/* set while the running gate's wait should end now (`zdm promote`): the
 * sleeps and polls below return at once as if their time had passed */
extern volatile sig_atomic_t zdm_wake;
/* called about every 200 ms while a child runs or zdm sleeps (the terminal
 * redraws the running step's elapsed time); NULL = nothing */
extern void (*zdm_tick)(void);
/* called with zdm_tick, at the same points (a run's live control: `zdm
 * pause`, `abort`, `promote` from elsewhere); NULL = nothing */
extern void (*zdm_watch)(void);
/* zdm_tick, then zdm_watch: what a wait calls every 200 ms or less */
void zdm_ticked(void);
/* wipes the terminal's live line while one is drawn (the next zdm_tick
 * draws it again); NULL = none.  zdm_warnf calls it first */
extern void (*zdm_live_hide)(void);
/* a line for stderr from a step (a warning, a prompt), never inside the
 * live line; fmt as printf, flushed */
void zdm_warnf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
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
	/* each line the command prints as it comes (stream 1 stdout, 2
	 * stderr), without its newline and not redacted; a line longer than
	 * 4 KiB comes in pieces, a last line without newline at the end.
	 * Every line is handed on, whatever cap keeps.  NULL = none */
	void (*on_line)(void *arg, int stream, const char *line);
	void *line_arg;
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
/* a live process (not this one) whose environment holds entry ("K=v")
 * exactly, or 0: how resume finds a step's command still running after the
 * zdm that started it was killed (ZDM_STEP_TAG, set by the exec step) */
pid_t proc_find_env(const char *entry);
void proc_result_release(struct proc_result *r);
/* sleep until ms passed or a signal arrives; returns -1 if interrupted
 * (0 early when zdm_wake is set) */
int zdm_sleep_ms(int64_t ms);
/* wait for `events` on fd until the monotonic ms `deadline` (0 = none), in
 * slices of at most 200 ms that run zdm_tick (the live line stays alive):
 * 1 ready (or an error/hangup to read), 0 the deadline passed, -1 a signal
 * came (zdm_interrupted; errno EINTR) or poll failed (errno) */
int zdm_poll_fd(int fd, short events, int64_t deadline);

#endif
