/*
 * sshc.h - a small SSH client layer over libssh2 for the `ssh` built-in and
 * zdm.ssh: one session per host (TCP connect, handshake, host key check
 * against known_hosts, public-key auth from a key file or ssh-agent), one
 * exec channel per command, stdout/stderr kept up to a cap.
 *
 * Every session is in libssh2's non-blocking mode and every wait is a
 * poll(2) of at most 200 ms bounded by a deadline, so a host that does not
 * answer, a per-host timeout, the step's timeout and SIGINT/SIGTERM
 * (zdm_interrupted) all end a wait promptly.  Hosts run concurrently on a
 * small pool of threads (libssh2 is thread-safe per session; libssh2_init
 * is called once); results come back to the calling thread one by one.
 *
 * Units: times in ms on the monotonic clock (zdm_now_ms()), sizes in bytes.
 * Errors: messages name the host and say what to do; they never contain
 * the passphrase (it is passed to libssh2 only).
 */
#ifndef ZDM_SSHC_H
#define ZDM_SSHC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A host as written in a runbook: "host", "host:port", "user@host:port",
 * "[::1]:22".  All strings owned. */
struct sshc_target {
	char *label;		/* the entry as written: the key in outputs */
	char *user;		/* from the entry, else the default user */
	char *host;		/* name or address, no brackets */
	int port;		/* from the entry, else the default port */
};

/* Parse one entry; def_user/def_port apply where the entry names none.
 * Returns 0, or -1 with *err (malloc'd) saying what is wrong. */
int sshc_parse_target(const char *s, const char *def_user, int def_port,
    struct sshc_target *t, char **err);
void sshc_target_release(struct sshc_target *t);

enum sshc_policy {
	SSHC_STRICT,		/* unknown or changed host key: refused */
	SSHC_ACCEPT_NEW,	/* unknown: appended to known_hosts; changed: refused */
};

/* How to connect: shared by every host of a call; borrowed strings. */
struct sshc_opts {
	const char *key_file;	/* private key (OpenSSH or PEM); NULL = ssh-agent */
	const char *passphrase;	/* for key_file, or NULL; never logged */
	const char *known_hosts;	/* path; must be set */
	enum sshc_policy policy;
	int64_t connect_timeout_ms;	/* TCP connect + handshake + auth; > 0 */
	bool check_only;	/* connect, check the host key, authenticate, and
				 * stop: no command runs, known_hosts is not
				 * written (accept-new: an unknown key is only
				 * reported in key_new) */
};

/* One host's command and, after sshc_run_all(), its result. */
struct sshc_job {
	/* in */
	const struct sshc_target *t;	/* borrowed */
	const char *command;	/* the remote command line (the remote user's shell runs it) */
	int64_t deadline_ms;	/* monotonic; 0 = none: the whole job, connect included */
	int64_t timeout_ms;	/* per host, from when its connect starts; 0 = none */
	size_t cap;		/* bytes of stdout and of stderr kept: the LAST cap bytes */
	/* out (owned; sshc_job_release frees) */
	bool ran;		/* the command started on the host */
	int exit_code;		/* -1 when no exit status came back */
	char *exit_signal;	/* "TERM" when the command was killed by a signal, else NULL */
	char *out, *err;	/* NUL-terminated tails, NOT yet redacted */
	size_t out_len, err_len;
	bool out_trunc, err_trunc;	/* more came than cap: the head was dropped */
	char *error;		/* why it did not run or did not finish, or NULL */
	bool timed_out, interrupted;
	int64_t duration_ms;	/* connect to exit status */
	bool authed;		/* the host key was accepted and the login too */
	bool key_new;		/* check_only, accept-new: the key is not in
				 * known_hosts yet (a run would add it) */
};

void sshc_job_release(struct sshc_job *j);

/*
 * Run jobs[0..n) on at most max_parallel hosts at once.  on_done(i, arg) is
 * called in the calling thread as each job ends (in the order they end);
 * tick() (may be NULL) about every 200 ms while waiting.  Returns when
 * every job has ended (a signal ends the waits of all: each is marked
 * interrupted).
 */
void sshc_run_all(const struct sshc_opts *o, struct sshc_job *jobs, size_t n,
    int max_parallel, void (*on_done)(size_t i, void *arg), void *arg);

/* The remote command line: argv (a JSON array of strings/numbers, each
 * single-quoted) or shell (run as /bin/sh -c 'shell'), with env (object or
 * NULL) prefixed as `env 'NAME=value' ...` so no AcceptEnv is needed on the
 * server.  malloc'd. */
#include <jansson.h>
char *sshc_build_command(const json_t *argv, const char *shell, const json_t *env);
/* "~/x" -> "$HOME/x"; malloc'd */
char *sshc_expand_home(const char *path);
/* the local login name (as OpenSSH's default user); malloc'd */
char *sshc_default_user(void);

/* Where a tail whose head was cut (more than cap came) may start being
 * shown: after the first line end, and never inside the first
 * redact_maxlen()-1 bytes, so the end of a secret cut at the head is not
 * shown (redaction would not know it).  Returns the bytes to skip, <= n. */
size_t sshc_tail_start(const char *s, size_t n);

/* Single-quote s for a POSIX shell (embedded ' becomes '\''), appended to sb
 * (a struct sbuf *). */
struct sbuf;
void sshc_quote(struct sbuf *sb, const char *s);

#endif
