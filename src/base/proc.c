/*
 * proc.c - run a child process for a step.
 *
 * The child gets its own process group (so a timeout or an interrupt stops
 * the command and everything it started: SIGTERM to the group, then SIGKILL
 * after kill_grace_ms), stdin from /dev/null or a string, and stdout/stderr
 * captured through pipes up to `cap` bytes each.  posix_spawn is used rather
 * than fork: it is the cheapest way to start a process, which matters for
 * the per-step overhead (bench/overhead.sh).  Exit is watched with a pidfd,
 * so a grandchild that keeps the pipes open does not hold the step.
 *
 * If zdm itself is killed with SIGKILL the child's group keeps running:
 * the journal then shows the step as started and not ended (in doubt).
 */
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/proc.h"
#include "base/redact.h"
#include "base/util.h"
#include "zdm/step.h"

extern char **environ;

volatile sig_atomic_t zdm_interrupted;
volatile sig_atomic_t zdm_wake;
void (*zdm_tick)(void);
void (*zdm_watch)(void);
void (*zdm_live_hide)(void);
static volatile sig_atomic_t signal_count;

static volatile sig_atomic_t child_running;

static void
on_signal(int sig)
{
	zdm_interrupted = sig;
	signal_count++;
	/* a second signal while no child runs (zdm busy in its own code, e.g.
	 * an expression): stop now; the journal is consistent at any point */
	if (signal_count > 1 && !child_running) {
		signal(sig, SIG_DFL);
		raise(sig);
	}
}

void
proc_install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;	/* no SA_RESTART: poll and sleep wake up */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);	/* terminal closed, ssh dropped */
	sigaction(SIGQUIT, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	/* an inherited SIG_IGN would make the kernel reap our children and
	 * waitpid() never see them */
	sa.sa_handler = SIG_DFL;
	sigaction(SIGCHLD, &sa, NULL);
}

void
zdm_warnf(const char *fmt, ...)
{
	va_list ap;

	if (zdm_live_hide != NULL)
		zdm_live_hide();
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fflush(stderr);
}

void
zdm_ticked(void)
{
	if (zdm_tick != NULL)
		zdm_tick();
	if (zdm_watch != NULL)
		zdm_watch();
}

int
zdm_sleep_ms(int64_t ms)
{
	int64_t end = zdm_now_ms() + ms;

	for (;;) {
		int64_t left = end - zdm_now_ms();
		struct timespec ts;

		if (zdm_interrupted)
			return -1;
		if (left <= 0 || zdm_wake)
			return 0;
		if (left > 200 && (zdm_tick != NULL || zdm_watch != NULL))
			left = 200;
		ts.tv_sec = left / 1000;
		ts.tv_nsec = (left % 1000) * 1000000;
		nanosleep(&ts, NULL);
		zdm_ticked();
	}
}

int
zdm_poll_fd(int fd, short events, int64_t deadline)
{
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = events };
		int64_t now = zdm_now_ms(), wait = 200;
		int n;

		if (zdm_interrupted) {
			errno = EINTR;
			return -1;
		}
		if (deadline != 0) {
			if (now >= deadline || zdm_wake)
				return 0;
			if (deadline - now < wait)
				wait = deadline - now;
		}
		n = poll(&pfd, 1, (int)wait);
		zdm_ticked();
		if (n > 0)
			return 1;
		if (n < 0 && errno != EINTR)
			return -1;
	}
}

/*
 * The child's environment: zdm's own (environ) less the names EXTRA sets,
 * then EXTRA's NAME=VALUE.  environ's entries are pointed to, not copied
 * (the child gets them before proc_run returns); only EXTRA's are allocated,
 * from *OWNED on, for free_env.
 */
static char **
build_env(const json_t *extra, size_t *owned)
{
	size_t n = 0, m = 0;
	char **envp;
	const char *k;
	json_t *v;

	while (environ[n] != NULL)
		n++;
	envp = xcalloc(n + json_object_size(extra) + 1, sizeof *envp);
	for (size_t i = 0; i < n; i++) {
		bool overridden = false;

		/* NAME= at the start of the entry, for each of the few names */
		json_object_foreach((json_t *)extra, k, v) {
			size_t kl = json_object_iter_key_len(json_object_key_to_iter(k));

			if (strncmp(environ[i], k, kl) == 0 && environ[i][kl] == '=') {
				overridden = true;
				break;
			}
		}
		if (!overridden)
			envp[m++] = environ[i];
	}
	*owned = m;
	json_object_foreach((json_t *)extra, k, v) {
		if (json_is_string(v)) {
			size_t kl = strlen(k), vl = json_string_length(v);
			char *e = xmalloc(kl + vl + 2);

			memcpy(e, k, kl);
			e[kl] = '=';
			memcpy(e + kl + 1, json_string_value(v), vl + 1);
			envp[m++] = e;
		} else {
			char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);

			envp[m++] = xasprintf("%s=%s", k, s ? s : "");
			free(s);
		}
	}
	envp[m] = NULL;
	return envp;
}

static void
free_env(char **envp, size_t owned)
{
	if (envp == NULL)
		return;
	for (size_t i = owned; envp[i] != NULL; i++)
		free(envp[i]);
	free(envp);
}

#define LINE_MAX_BYTES 4096

struct stream {
	int fd, no;		/* no: 1 stdout, 2 stderr */
	struct sbuf sb;
	size_t cap;
	bool trunc;
	const struct proc_opts *o;
	char line[LINE_MAX_BYTES + 1];	/* the line being read, for o->on_line */
	size_t linelen;
};

/* hand complete lines of buf to o->on_line; at_end: the rest as well */
static void
lines(struct stream *s, const char *buf, size_t n, bool at_end)
{
	if (s->o->on_line == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		if (buf[i] == '\n' || s->linelen == LINE_MAX_BYTES) {
			s->line[s->linelen] = '\0';
			s->o->on_line(s->o->line_arg, s->no, s->line);
			s->linelen = 0;
			if (buf[i] == '\n')
				continue;
		}
		s->line[s->linelen++] = buf[i];
	}
	if (at_end && s->linelen > 0) {
		s->line[s->linelen] = '\0';
		s->o->on_line(s->o->line_arg, s->no, s->line);
		s->linelen = 0;
	}
}

/* read what is available; returns false at EOF or error */
static bool
drain(struct stream *s)
{
	char buf[16384];

	for (;;) {
		ssize_t r = read(s->fd, buf, sizeof buf);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return errno == EAGAIN;
		if (r == 0) {
			lines(s, "", 0, true);
			return false;
		}
		lines(s, buf, (size_t)r, false);
		if (s->sb.len < s->cap) {
			size_t take = (size_t)r;

			if (take > s->cap - s->sb.len) {
				take = s->cap - s->sb.len;
				s->trunc = true;
			}
			sb_add(&s->sb, buf, take);
		} else {
			s->trunc = true;
		}
	}
}

static int
pidfd_open_(pid_t pid)
{
#ifdef SYS_pidfd_open
	return (int)syscall(SYS_pidfd_open, pid, 0);
#else
	errno = ENOSYS;
	return -1;
#endif
}

int
proc_run(const struct proc_opts *o, struct proc_result *r, char **err)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, defs;
	int outp[2] = { -1, -1 }, errp[2] = { -1, -1 }, inp[2] = { -1, -1 };
	struct stream so, se;
	char **envp = NULL;
	size_t owned = 0;
	char *shargv[4];
	char *const *argv;
	pid_t pid;
	int pidfd = -1, status = 0, rc;
	bool reaped = false;
	int64_t start = zdm_now_ms(), kill_at = 0;
	bool exited = false, termed = false;
	size_t in_off = 0, in_len = o->stdin_data ? strlen(o->stdin_data) : 0;

	memset(r, 0, sizeof *r);
	r->exit_code = -1;
	if (o->shell != NULL) {
		shargv[0] = "/bin/sh";
		shargv[1] = "-c";
		shargv[2] = (char *)o->shell;
		shargv[3] = NULL;
		argv = shargv;
	} else {
		argv = o->argv;
	}
	if (argv == NULL || argv[0] == NULL)
		return seterr(err, "empty command");

	if (pipe2(outp, O_CLOEXEC) != 0 || pipe2(errp, O_CLOEXEC) != 0 ||
	    (o->stdin_data != NULL && pipe2(inp, O_CLOEXEC) != 0)) {
		seterr(err, "pipe: %s", strerror(errno));
		goto fail_pipes;
	}
	posix_spawn_file_actions_init(&fa);
	if (o->stdin_data != NULL)
		posix_spawn_file_actions_adddup2(&fa, inp[0], 0);
	else
		posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
	posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
	if (o->cwd != NULL)
		posix_spawn_file_actions_addchdir_np(&fa, o->cwd);
	posix_spawnattr_init(&at);
	sigemptyset(&none);
	sigemptyset(&defs);
	sigaddset(&defs, SIGINT);
	sigaddset(&defs, SIGTERM);
	sigaddset(&defs, SIGPIPE);
	sigaddset(&defs, SIGHUP);
	sigaddset(&defs, SIGQUIT);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &defs);
	posix_spawnattr_setpgroup(&at, 0);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
	    POSIX_SPAWN_SETSIGDEF);
	if (o->env != NULL && json_object_size(o->env) > 0)
		envp = build_env(o->env, &owned);
	rc = posix_spawnp(&pid, argv[0], &fa, &at, argv, envp ? envp : environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	free_env(envp, owned);
	close(outp[1]);
	close(errp[1]);
	if (inp[0] >= 0)
		close(inp[0]);
	if (rc != 0) {
		if (rc == ENOENT && o->cwd != NULL && access(o->cwd, X_OK) != 0)
			seterr(err, "cannot run '%s': cwd '%s': %s", argv[0], o->cwd,
			    strerror(errno));
		else
			seterr(err, "cannot run '%s': %s", argv[0], strerror(rc));
		close(outp[0]);
		close(errp[0]);
		if (inp[1] >= 0)
			close(inp[1]);
		return -1;
	}
	child_running = 1;
	pidfd = pidfd_open_(pid);
	fcntl(outp[0], F_SETFL, O_NONBLOCK);
	fcntl(errp[0], F_SETFL, O_NONBLOCK);
	if (inp[1] >= 0)
		fcntl(inp[1], F_SETFL, O_NONBLOCK);
	so.fd = outp[0];
	se.fd = errp[0];
	so.no = 1;
	se.no = 2;
	so.o = se.o = o;
	so.linelen = se.linelen = 0;
	/* keep a secret's length more than asked, so a secret cut by the cap
	 * is still whole when redacted; cut to the cap after redaction */
	so.cap = se.cap = (o->cap ? o->cap : 65536) + redact_maxlen();
	so.trunc = se.trunc = false;
	sb_init(&so.sb);
	sb_init(&se.sb);

	while (!exited) {
		struct pollfd p[4];
		int np = 0, timeout = 200, iout = -1, ierr = -1, iin = -1, ipid = -1;
		int64_t now = zdm_now_ms();

		if (!termed && o->deadline_ms > 0 && now >= o->deadline_ms) {
			r->timed_out = true;
			termed = true;
		}
		if (!termed && zdm_interrupted) {
			r->interrupted = true;
			termed = true;
		}
		if (termed && kill_at == 0) {
			kill(-pid, SIGTERM);
			kill_at = now + (o->kill_grace_ms >= 0 ? o->kill_grace_ms : 5000);
		}
		if (kill_at != 0 && (now >= kill_at || signal_count > 1)) {
			kill(-pid, SIGKILL);
			kill_at = INT64_MAX;
		}
		if (so.fd >= 0) {
			p[np].fd = so.fd;
			p[np].events = POLLIN;
			iout = np++;
		}
		if (se.fd >= 0) {
			p[np].fd = se.fd;
			p[np].events = POLLIN;
			ierr = np++;
		}
		if (inp[1] >= 0) {
			p[np].fd = inp[1];
			p[np].events = POLLOUT;
			iin = np++;
		}
		if (pidfd >= 0) {
			p[np].fd = pidfd;
			p[np].events = POLLIN;
			ipid = np++;
		}
		if (o->deadline_ms > 0 && !termed && o->deadline_ms - now < timeout)
			timeout = (int)(o->deadline_ms - now) + 1;
		if (pidfd < 0 && so.fd < 0 && se.fd < 0)
			timeout = 10;
		if (poll(p, (nfds_t)np, timeout) < 0 && errno != EINTR) {
			kill(-pid, SIGKILL);
			if (waitpid(pid, &status, 0) == pid)
				reaped = true;
			break;
		}
		zdm_ticked();
		if (iout >= 0 && p[iout].revents != 0 && !drain(&so)) {
			close(so.fd);
			so.fd = -1;
		}
		if (ierr >= 0 && p[ierr].revents != 0 && !drain(&se)) {
			close(se.fd);
			se.fd = -1;
		}
		if (iin >= 0 && p[iin].revents != 0) {
			ssize_t w = write(inp[1], o->stdin_data + in_off, in_len - in_off);

			if (w > 0)
				in_off += (size_t)w;
			if ((w < 0 && errno != EAGAIN && errno != EINTR) || in_off >= in_len) {
				close(inp[1]);
				inp[1] = -1;
			}
		}
		if ((ipid >= 0 && p[ipid].revents != 0) || pidfd < 0) {
			pid_t w = waitpid(pid, &status, WNOHANG);

			if (w == pid) {
				exited = true;
				reaped = true;
			} else if (w < 0 && errno == ECHILD) {
				exited = true;	/* gone, how it ended unknown */
			}
		}
	}
	/* the child is gone: take what is left in the pipes without waiting
	 * for grandchildren that may hold them open */
	if (so.fd >= 0) {
		drain(&so);
		close(so.fd);
	}
	if (se.fd >= 0) {
		drain(&se);
		close(se.fd);
	}
	lines(&so, "", 0, true);	/* a last line a grandchild left open */
	lines(&se, "", 0, true);
	if (inp[1] >= 0)
		close(inp[1]);
	if (pidfd >= 0)
		close(pidfd);
	if (termed)	/* stop what the command left behind in its group */
		kill(-pid, SIGKILL);
	child_running = 0;
	if (!reaped) {
		/* never turn "did not see it end" into exit 0 */
		r->exit_code = -1;
		r->term_signal = 0;
	} else if (WIFEXITED(status)) {
		r->exit_code = WEXITSTATUS(status);
	} else if (WIFSIGNALED(status)) {
		r->exit_code = -1;
		r->term_signal = WTERMSIG(status);
	}
	r->out = redact_str(so.sb.buf);
	r->err = redact_str(se.sb.buf);
	r->out_len = strlen(r->out);
	r->err_len = strlen(r->err);
	r->out_trunc = so.trunc;
	r->err_trunc = se.trunc;
	{
		size_t cap = o->cap ? o->cap : 65536;

		if (r->out_len > cap) {
			r->out[cap] = '\0';
			r->out_len = cap;
			r->out_trunc = true;
		}
		if (r->err_len > cap) {
			r->err[cap] = '\0';
			r->err_len = cap;
			r->err_trunc = true;
		}
		if (r->out_trunc)
			r->out_len = redact_tail(r->out, r->out_len);
		if (r->err_trunc)
			r->err_len = redact_tail(r->err, r->err_len);
	}
	sb_release(&so.sb);
	sb_release(&se.sb);
	r->duration_ms = zdm_now_ms() - start;
	return 0;

fail_pipes:
	for (int i = 0; i < 2; i++) {
		if (outp[i] >= 0)
			close(outp[i]);
		if (errp[i] >= 0)
			close(errp[i]);
		if (inp[i] >= 0)
			close(inp[i]);
	}
	return -1;
}

void
proc_result_release(struct proc_result *r)
{
	free(r->out);
	free(r->err);
	r->out = r->err = NULL;
}

pid_t
proc_find_env(const char *entry)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	size_t elen = strlen(entry);
	pid_t found = 0, self = getpid();

	if (d == NULL)
		return 0;
	while (found == 0 && (e = readdir(d)) != NULL) {
		char path[64], buf[65536];
		char *end;
		long pid = strtol(e->d_name, &end, 10);
		ssize_t n;
		int fd;

		if (*end != '\0' || pid <= 0 || pid == self)
			continue;
		snprintf(path, sizeof path, "/proc/%ld/environ", pid);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;	/* gone, or not ours to read */
		n = read(fd, buf, sizeof buf - 1);
		close(fd);
		if (n <= 0)
			continue;
		buf[n] = '\0';
		for (char *q = buf; q < buf + n; q += strlen(q) + 1)
			if (strlen(q) == elen && memcmp(q, entry, elen) == 0)
				found = (pid_t)pid;
	}
	closedir(d);
	return found;
}
