/*
 * ssh - run a command on remote hosts over SSH (libssh2, src/sshc.c),
 * fanned out in rolling batches with a failure budget (docs/ssh.md).
 *
 *   - `batch` splits the hosts, in the order given, into batches like
 *     Ansible's `serial`: a count, a percentage of all hosts ("25%",
 *     rounded down, at least 1), or a list of those ([1, "50%"]: a canary
 *     first), the last repeating.  A batch starts when the one before it
 *     ended within its budget.
 *   - within a batch hosts run concurrently, at most `max_parallel` at once.
 *   - `max_fail` (count, or percentage of the batch, rounded down) is each
 *     batch's failure budget: more failed hosts than that stops the rollout
 *     (later batches do not run) and fails the step.  Within budget, the
 *     step goes on and succeeds, listing the failed hosts.  Budgets do not
 *     add up across batches: each batch is judged on its own.
 *   - each host that ends is journaled at once (`ssh.host` note); a rerun
 *     (retry, or resume after a crash) does not run again a host that
 *     succeeded; failed and unfinished hosts run again.
 *   - undo runs the `undo` command on the hosts where the command
 *     succeeded and where it started but sent no exit status (timed out,
 *     connection lost, interrupted: `unknown`, since libssh2 cannot stop the
 *     remote command), batch by batch in reverse order (`ssh.undo` notes
 *     make an interrupted undo resumable without repeating a host).  With no
 *     `undo` command, an unknown host fails the undo (exit 3).
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/proc.h"
#include "base/redact.h"
#include "base/util.h"
#include "core/events.h"
#include "core/expr.h"
#include "net/sshc.h"
#include "steps/builtin.h"
#include "steps/ssh_hosts.h"
#include "zdm/step.h"

#define SSH_TAIL_BYTES 4096	/* bytes of each stream read back per host */

static const struct zdm_param ssh_params[] = {
	{ "hosts", ZDM_T_ANY, true, NULL, "host list (host, host:port, user@host:port, [::1]:22), or a string of them separated by commas or spaces" },
	{ "command", ZDM_T_LIST, false, NULL, "argv, each argument single-quoted for the remote shell" },
	{ "shell", ZDM_T_STRING, false, NULL, "a command line for the remote user's shell (instead of command)" },
	{ "undo", ZDM_T_ANY, false, NULL, "argv list or shell string run on undo, on the hosts where the command succeeded or its outcome is unknown (must be safe either way)" },
	{ "port", ZDM_T_INT, false, "22", "port for hosts that name none" },
	{ "user", ZDM_T_STRING, false, NULL, "remote user for hosts that name none (default: the local user)" },
	{ "key_file", ZDM_T_PATH, false, NULL, "private key file (ed25519, rsa, ecdsa); default: ssh-agent (SSH_AUTH_SOCK)" },
	{ "passphrase", ZDM_T_STRING, false, NULL, "the key_file's passphrase (from secrets)" },
	{ "known_hosts", ZDM_T_PATH, false, "\"~/.ssh/known_hosts\"", "OpenSSH known_hosts file the host keys are checked against" },
	{ "host_key_policy", ZDM_T_STRING, false, "\"strict\"", "strict: unknown keys are refused; accept-new: unknown keys are added (changed keys are always refused)" },
	{ "env", ZDM_T_MAP, false, NULL, "environment for the command, passed as `env NAME=value` (no AcceptEnv needed)" },
	{ "expect_exit", ZDM_T_LIST, false, "[0]", "exit codes that count as success" },
	{ "connect_timeout", ZDM_T_DURATION, false, "\"10s\"", "per host: TCP connect, SSH handshake and authentication" },
	{ "host_timeout", ZDM_T_DURATION, false, "\"0s\"", "per host, connect to exit status; 0s = only the step's timeout" },
	{ "batch", ZDM_T_ANY, false, "\"100%\"", "batch size: a count, a percentage of the hosts (\"25%\"), or a list of them ([1, \"50%\"])" },
	{ "max_parallel", ZDM_T_INT, false, "32", "hosts of a batch running at once" },
	{ "max_fail", ZDM_T_ANY, false, "0", "failed hosts a batch may have and the rollout go on: a count or \"N%\" of the batch" },
	{ "output_lines", ZDM_T_INT, false, "10", "last lines of stdout and stderr kept per host in outputs and the journal" },
};

/* ---- validate / plan ---------------------------------------------------------- */

static void
check_argv(struct zdm_diag *d, const char *name, const json_t *cmd)
{
	json_t *v;
	size_t i;

	if (json_array_size(cmd) == 0)
		zdm_diag(d, name, "empty command");
	json_array_foreach(cmd, i, v)
		if (!json_is_string(v) && !json_is_number(v) && !zdm_is_expr(v))
			zdm_diag(d, name, "argument %zu must be a string", i + 1);
}

static void
ssh_validate(const struct zdm_step_type *t, const json_t *p, struct zdm_diag *d)
{
	const json_t *cmd = json_object_get(p, "command"), *sh = json_object_get(p, "shell");
	const json_t *hosts = json_object_get(p, "hosts"), *v, *u = json_object_get(p, "undo");
	const char *pol = json_string_value(json_object_get(p, "host_key_policy")), *k;
	long n, pct;
	size_t i;

	if ((cmd == NULL) == (sh == NULL))
		zdm_diag(d, NULL, "ssh needs exactly one of 'command' (argv list) or 'shell' (string)");
	if (json_is_array(cmd))
		check_argv(d, "command", cmd);
	if (json_is_string(sh) && json_string_length(sh) == 0)
		zdm_diag(d, "shell", "empty shell command");
	if (u != NULL && !zdm_is_expr(u)) {
		if (json_is_array(u))
			check_argv(d, "undo", u);
		else if (!json_is_string(u) || json_string_length(u) == 0)
			zdm_diag(d, "undo", "must be an argv list or a shell command string");
	}
	if (!zdm_is_expr(hosts)) {
		bool exprs = false;

		if (json_is_array(hosts)) {
			json_array_foreach(hosts, i, v)
				exprs = exprs || zdm_is_expr(v) ||
				    (json_is_string(v) && expr_has_template(json_string_value(v)));
		} else if (json_is_string(hosts)) {
			exprs = expr_has_template(json_string_value(hosts));
		} else {
			zdm_diag(d, "hosts", "must be a list of hosts or a string of them");
			exprs = true;
		}
		if (!exprs) {
			struct sshc_target *tg;
			char *err = NULL;

			json_t *hl = ssh_host_list(hosts);

			if (json_array_size(hl) == 0)
				zdm_diag(d, "hosts", "no hosts: give at least one (host, host:port, user@host:port)");
			else if (json_array_size(hl) > SSH_MAX_HOSTS)
				zdm_diag(d, "hosts", "more than %d hosts", SSH_MAX_HOSTS);
			json_decref(hl);
			if ((tg = ssh_targets(p, &i, &err)) == NULL && err != NULL)
				zdm_diag(d, "hosts", "%s", err);
			if (tg != NULL)
				ssh_free_targets(tg, i);
			free(err);
		}
	}
	if (pol != NULL && strcmp(pol, "strict") != 0 && strcmp(pol, "accept-new") != 0)
		zdm_diag(d, "host_key_policy", "'%s': must be strict or accept-new", pol);
	v = json_object_get(p, "passphrase");
	if (json_is_string(v) && !expr_has_template(json_string_value(v))) {
		char *r = redact_str(json_string_value(v));

		if (!redact_active() || strcmp(r, "***") != 0)
			zdm_diag(d, "passphrase", "must come from secrets (passphrase: ${{ secrets.NAME }}): "
			    "zdm writes params to the journal and only secrets are kept out of it");
		free(r);
	}
	if (v != NULL && json_object_get(p, "key_file") == NULL)
		zdm_diag(d, "passphrase", "a passphrase needs a key_file (ssh-agent keys are unlocked by ssh-add)");
	v = json_object_get(p, "env");
	json_object_foreach((json_t *)v, k, u) {
		bool good = (*k >= 'A' && *k <= 'Z') || (*k >= 'a' && *k <= 'z') || *k == '_';

		for (const char *c = k; *c != '\0' && good; c++)
			good = (*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || *c == '_' ||
			    (*c >= '0' && *c <= '9');
		if (!good)
			zdm_diag(d, "env", "'%s' is not a variable name ([A-Za-z_][A-Za-z0-9_]*)", k);
	}
	v = json_object_get(p, "expect_exit");
	json_array_foreach(v, i, u)
		if (!zdm_is_expr(u) && (!json_is_integer(u) || json_integer_value(u) < 0 ||
		    json_integer_value(u) > 255))
			zdm_diag(d, "expect_exit", "exit codes are whole numbers from 0 to 255");
	v = json_object_get(p, "port");
	if (json_is_integer(v) && (json_integer_value(v) < 1 || json_integer_value(v) > 65535))
		zdm_diag(d, "port", "must be from 1 to 65535");
	v = json_object_get(p, "connect_timeout");
	if (json_is_integer(v) && json_integer_value(v) <= 0)
		zdm_diag(d, "connect_timeout", "must be more than 0 (10s)");
	v = json_object_get(p, "host_timeout");
	if (json_is_integer(v) && json_integer_value(v) < 0)
		zdm_diag(d, "host_timeout", "must not be negative");
	v = json_object_get(p, "max_parallel");
	if (json_is_integer(v) && (json_integer_value(v) < 1 || json_integer_value(v) > 256))
		zdm_diag(d, "max_parallel", "must be from 1 to 256 hosts at once");
	v = json_object_get(p, "output_lines");
	if (json_is_integer(v) && (json_integer_value(v) < 1 || json_integer_value(v) > 1000))
		zdm_diag(d, "output_lines", "must be from 1 to 1000 lines");
	v = json_object_get(p, "batch");
	if (!zdm_is_expr(v)) {
		bool bad = json_is_array(v) && json_array_size(v) == 0;

		if (json_is_array(v)) {
			json_array_foreach(v, i, u)
				bad = bad || (!zdm_is_expr(u) && ssh_count_or_pct(u, &n, &pct, 1, 100) != 0);
		} else {
			bad = ssh_count_or_pct(v, &n, &pct, 1, 100) != 0;
		}
		if (bad)
			zdm_diag(d, "batch", "must be a count of hosts (1 or more), a percentage \"1%%\" to "
			    "\"100%%\", or a list of them like [1, \"25%%\"]");
	}
	v = json_object_get(p, "max_fail");
	if (!zdm_is_expr(v) && ssh_count_or_pct(v, &n, &pct, 0, 100) != 0)
		zdm_diag(d, "max_fail", "must be a count of hosts (0 or more) or a percentage of "
		    "the batch \"0%%\" to \"100%%\"");
}

static char *
cmd_text(const json_t *cmd, const json_t *sh)
{
	struct sbuf sb;
	size_t i;
	json_t *v;

	sb_init(&sb);
	if (json_is_array(cmd)) {
		json_array_foreach(cmd, i, v) {
			const char *s = json_is_string(v) ? json_string_value(v) : "?";

			if (i > 0)
				sb_addc(&sb, ' ');
			if (strpbrk(s, " \t'\"$") != NULL || *s == '\0')
				sshc_quote(&sb, s);
			else
				sb_adds(&sb, s);
		}
	} else {
		sb_adds(&sb, json_string_value(sh) ? json_string_value(sh) : "?");
	}
	return sb_detach(&sb);
}

static char *
ssh_plan(const struct zdm_step_type *t, const json_t *p)
{
	const json_t *u = json_object_get(p, "undo");
	json_t *hl = ssh_host_list(json_object_get(p, "hosts"));
	char *c = cmd_text(json_object_get(p, "command"), json_object_get(p, "shell"));
	size_t n = json_array_size(hl), *sizes, nb = ssh_plan_batches(json_object_get(p, "batch"), n, &sizes);
	struct sbuf sb;

	sb_init(&sb);
	sb_addf(&sb, "run '%s' over ssh on %zu host%s in %zu batch%s (", c, n, n == 1 ? "" : "s",
	    nb, nb == 1 ? "" : "es");
	for (size_t i = 0; i < nb; i++)
		sb_addf(&sb, "%s%zu", i ? "+" : "", sizes[i]);
	{
		const json_t *mf = json_object_get(p, "max_fail");

		if (json_is_string(mf))
			sb_addf(&sb, "), at most %s of each batch may fail (rounded down)", json_string_value(mf));
		else
			sb_addf(&sb, "), at most %lld failed host%s per batch", (long long)json_integer_value(mf),
			    json_integer_value(mf) == 1 ? "" : "s");
	}
	if (u != NULL) {
		char *uc = cmd_text(json_is_array(u) ? u : NULL, json_is_string(u) ? u : NULL);

		sb_addf(&sb, "; undo: '%s' on the hosts where it succeeded or its outcome is unknown, last batch first", uc);
		free(uc);
	}
	free(c);
	free(sizes);
	json_decref(hl);
	return sb_detach(&sb);
}

/* ---- run ------------------------------------------------------------------------ */

/* the last `lines` lines of a tail, redacted; a head cut by the cap is
 * dropped to the next line start (sshc_tail_start), so no secret is left
 * cut in half */
static json_t *
tail_lines(const char *s, size_t n, bool trunc, long lines)
{
	const char *b = s ? s : "", *e;
	char *red, *t;
	json_t *out;
	long k = 0;

	if (trunc) {
		size_t cut = sshc_tail_start(b, n);

		b += cut;
		n -= cut;
	}
	t = xstrndup(b, n);
	red = redact_str(t);
	free(t);
	n = strlen(red);
	while (n > 0 && red[n - 1] == '\n')
		n--;
	e = red + n;
	while (e > red) {
		if (e[-1] == '\n' && ++k >= lines)
			break;
		e--;
	}
	out = json_text(e, (size_t)(red + n - e));
	free(red);
	return out;
}

static const char *
last_line_of(const char *s)
{
	const char *nl;

	if (s == NULL)
		return NULL;
	nl = strrchr(s, '\n');
	return nl ? nl + 1 : s;
}

struct fan {
	struct zdm_ctx *ctx;
	const json_t *p;
	struct sshc_job *jobs;
	size_t *idx;		/* jobs[k] is host idx[k] */
	json_t **recs;		/* per host: the record, or NULL */
	size_t batch, nbatches, size, done, failed;
	long lines;
	bool undoing, tty;
	const json_t *expect;
};

static bool
exit_expected(const json_t *ee, int code)
{
	size_t i;
	json_t *v;

	if (code < 0)
		return false;
	json_array_foreach(ee, i, v)
		if (json_is_integer(v) && json_integer_value(v) == code)
			return true;
	return false;
}

static void
fan_line(struct fan *f, bool final)
{
	char line[200];

	snprintf(line, sizeof line, "%sbatch %zu/%zu: %zu host%s — %zu done, %zu failed, %zu running",
	    f->undoing ? "undo " : "", f->batch + 1, f->nbatches, f->size, f->size == 1 ? "" : "s",
	    f->done - f->failed, f->failed, f->size - f->done);
	if (!final) {
		if (f->tty)
			zdm_progress(f->ctx, "%s", line);
		return;
	}
	zdm_progress(f->ctx, "%s", line);
	if (f->tty)	/* a line of its own: the terminal keeps it off its live line */
		zdm_output(f->ctx, "log", line);
}

/* zdm run -v: what a host's command printed (the tail kept), each line
 * under the step as "[HOST] line", once the host is done */
static void
host_lines(struct zdm_ctx *ctx, const char *host, const char *stream, const char *s, size_t n)
{
	const char *end = s + n;

	while (s < end && *s != '\0') {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		size_t len = nl != NULL ? (size_t)(nl - s) : (size_t)(end - s);
		char *line = xasprintf("[%s] %.*s", host, (int)len, s);

		zdm_output(ctx, stream, line);
		free(line);
		s += len + (nl != NULL);
	}
}

static void
on_host(size_t k, void *arg)
{
	struct fan *f = arg;
	struct sshc_job *j = &f->jobs[k];
	bool ok = j->error == NULL && j->exit_signal == NULL && exit_expected(f->expect, j->exit_code);
	/* the command started and no exit status came back (timed out, the
	 * connection was lost, interrupted): it may have done its work, or
	 * may still be doing it (libssh2 1.10 cannot signal it) */
	bool unknown = j->ran && j->exit_code < 0 && j->exit_signal == NULL;
	json_t *rec = json_pack("{s:s,s:i,s:b,s:I}", "host", j->t->label, "batch", (int)f->batch + 1,
	    "ok", ok, "duration_ms", (json_int_t)j->duration_ms);

	json_object_set_new(rec, "exit", j->exit_code >= 0 ? json_integer(j->exit_code) : json_null());
	if (j->exit_signal != NULL)
		json_object_set_new(rec, "signal", json_string(j->exit_signal));
	json_object_set_new(rec, "stdout_tail", tail_lines(j->out, j->out_len, j->out_trunc, f->lines));
	json_object_set_new(rec, "stderr_tail", tail_lines(j->err, j->err_len, j->err_trunc, f->lines));
	if (j->error != NULL) {
		char *r = redact_str(j->error);

		if (unknown && !f->undoing) {
			char *u = xasprintf("%s; the command had started: its outcome is unknown (it "
			    "may have finished or still be running), so undo runs here too", r);

			free(r);
			r = u;
		}
		json_object_set_new(rec, "error", json_string(r));
		free(r);
	} else if (!ok) {
		const char *l = last_line_of(json_string_value(json_object_get(rec, "stderr_tail")));
		char *why;

		if (l == NULL || *l == '\0')
			l = last_line_of(json_string_value(json_object_get(rec, "stdout_tail")));
		if (j->exit_signal != NULL)
			why = xasprintf("killed by signal %s", j->exit_signal);
		else if (l != NULL && *l != '\0')
			why = xasprintf("exited with %d: %.300s", j->exit_code, l);
		else
			why = xasprintf("exited with %d", j->exit_code);
		json_object_set_new(rec, "error", json_string(why));
		free(why);
	}
	if (j->timed_out)
		json_object_set_new(rec, "timed_out", json_true());
	if (j->interrupted)
		json_object_set_new(rec, "interrupted", json_true());
	if (unknown)
		json_object_set_new(rec, "unknown", json_true());
	/* a host cut short by a signal before its command started has done
	 * nothing: no note.  One whose command started is noted unknown
	 * (ok false, so a rerun runs it again; undo runs on it) */
	if (j->out != NULL)
		host_lines(f->ctx, j->t->label, "stdout", j->out, j->out_len);
	if (j->err != NULL)
		host_lines(f->ctx, j->t->label, "stderr", j->err, j->err_len);
	if (!j->interrupted || unknown)
		zdm_note(f->ctx, ev_name(f->undoing ? EV_SSH_UNDO : EV_SSH_HOST), json_deep_copy(rec));
	json_decref(f->recs[f->idx[k]]);
	f->recs[f->idx[k]] = rec;
	f->done++;
	if (!ok)
		f->failed++;
	fan_line(f, false);
}

/* a fan-out over n hosts in nb batches, for run (undoing false) or undo */
static void
fan_init(struct fan *f, struct zdm_ctx *ctx, const json_t *p, size_t n, size_t nb, bool undoing)
{
	memset(f, 0, sizeof *f);
	f->ctx = ctx;
	f->p = p;
	f->undoing = undoing;
	f->recs = xcalloc(n, sizeof *f->recs);
	f->nbatches = nb;
	f->lines = (long)json_integer_value(json_object_get(p, "output_lines"));
	f->expect = json_object_get(p, "expect_exit");
	f->tty = isatty(STDOUT_FILENO) || isatty(STDERR_FILENO);
}

static void
ssh_opts(const json_t *p, struct sshc_opts *o, char **kh)
{
	const char *pol = json_string_value(json_object_get(p, "host_key_policy"));

	memset(o, 0, sizeof *o);
	o->key_file = json_string_value(json_object_get(p, "key_file"));
	o->passphrase = json_string_value(json_object_get(p, "passphrase"));
	*kh = sshc_expand_home(json_string_value(json_object_get(p, "known_hosts")));
	o->known_hosts = *kh;
	o->policy = pol && strcmp(pol, "accept-new") == 0 ? SSHC_ACCEPT_NEW : SSHC_STRICT;
	o->connect_timeout_ms = json_integer_value(json_object_get(p, "connect_timeout"));
}

/* run command on the hosts of one batch (sel[0..n) host indexes) */
static void
run_batch(struct fan *f, const struct sshc_opts *o, struct sshc_target *tg, const size_t *sel,
    size_t n, const char *command)
{
	int64_t ht = json_integer_value(json_object_get(f->p, "host_timeout"));

	f->jobs = xcalloc(n ? n : 1, sizeof *f->jobs);
	f->idx = xcalloc(n ? n : 1, sizeof *f->idx);
	for (size_t k = 0; k < n; k++) {
		f->idx[k] = sel[k];
		f->jobs[k].t = &tg[sel[k]];
		f->jobs[k].command = command;
		f->jobs[k].deadline_ms = f->ctx->deadline_ms;
		f->jobs[k].timeout_ms = ht;
		f->jobs[k].cap = SSH_TAIL_BYTES;
	}
	sshc_run_all(o, f->jobs, n, (int)json_integer_value(json_object_get(f->p, "max_parallel")),
	    on_host, f);
	for (size_t k = 0; k < n; k++)
		sshc_job_release(&f->jobs[k]);
	free(f->jobs);
	free(f->idx);
	f->jobs = NULL;
	f->idx = NULL;
}

/* "web1: exited with 1: boom; web2: ..." for up to 3 failed hosts of a batch */
static void
failed_text(struct sbuf *sb, json_t **recs, const size_t *sel, size_t n)
{
	size_t shown = 0, more = 0;

	for (size_t k = 0; k < n; k++) {
		json_t *r = recs[sel[k]];

		if (r == NULL || json_is_true(json_object_get(r, "ok")))
			continue;
		if (shown == 3) {
			more++;
			continue;
		}
		sb_addf(sb, "%s%s: %s", shown ? "; " : "", json_string_value(json_object_get(r, "host")),
		    json_string_value(json_object_get(r, "error")));
		shown++;
	}
	if (more)
		sb_addf(sb, "; and %zu more", more);
}

static int
ssh_run(const struct zdm_step_type *t, struct zdm_ctx *ctx, const json_t *p,
    struct zdm_result *res)
{
	struct sshc_target *tg;
	struct sshc_opts o;
	struct fan f;
	char *err = NULL, *kh, *command;
	size_t n, nb, *sizes, start = 0, b, *sel;
	json_t *outs, *hosts, *fl, *nr, *succ, *unk, *ul;
	bool stop = false, *was_unknown;
	int rc = 0;
	size_t nok = 0, nfail = 0, nskip = 0;

	tg = ssh_targets(p, &n, &err);
	if (tg == NULL) {
		zdm_fail(res, "%s", err ? err : "no hosts");
		free(err);
		return -1;
	}
	ssh_opts(p, &o, &kh);
	command = sshc_build_command(json_object_get(p, "command"),
	    json_string_value(json_object_get(p, "shell")), json_object_get(p, "env"));
	nb = ssh_plan_batches(json_object_get(p, "batch"), n, &sizes);
	fan_init(&f, ctx, p, n, nb, false);
	sel = xcalloc(n, sizeof *sel);
	was_unknown = xcalloc(n, sizeof *was_unknown);

	/* hosts that succeeded in an earlier attempt (before a crash too), and
	 * hosts whose outcome an earlier attempt left unknown */
	{
		size_t i;
		json_t *e;

		json_array_foreach(ctx->notes, i, e) {
			json_t *d = json_object_get(e, "data");
			const char *h = json_string_value(json_object_get(d, "host"));

			enum ev ev = ev_parse(json_string_value(json_object_get(e, "event")));

			if (ev != EV_SSH_HOST || h == NULL)
				continue;
			if (!json_is_true(json_object_get(d, "ok"))) {
				for (size_t k = 0; k < n; k++)
					if (json_is_true(json_object_get(d, "unknown")) && strcmp(tg[k].label, h) == 0)
						was_unknown[k] = true;
				continue;
			}
			for (size_t k = 0; k < n; k++)
				if (strcmp(tg[k].label, h) == 0) {
					json_decref(f.recs[k]);
					f.recs[k] = json_deep_copy(d);
					json_object_set_new(f.recs[k], "earlier_attempt", json_true());
				}
		}
	}

	for (b = 0; b < nb && !stop; b++) {
		size_t m = 0, allowed = ssh_budget(json_object_get(p, "max_fail"), sizes[b]), bfail = 0;
		bool intr = false, tmo = false;

		for (size_t k = start; k < start + sizes[b]; k++)
			if (f.recs[k] == NULL || !json_is_true(json_object_get(f.recs[k], "ok")))
				sel[m++] = k;
		f.batch = b;
		f.size = sizes[b];
		f.done = sizes[b] - m;
		f.failed = 0;
		if (m > 0) {
			if (zdm_interrupted || (ctx->deadline_ms && zdm_now_ms() >= ctx->deadline_ms)) {
				intr = zdm_interrupted != 0;
				tmo = !intr;
			} else {
				run_batch(&f, &o, tg, sel, m, command);
			}
		}
		fan_line(&f, true);
		for (size_t k = 0; k < m; k++) {
			json_t *r = f.recs[sel[k]];

			intr = intr || r == NULL || json_is_true(json_object_get(r, "interrupted"));
			tmo = tmo || (r != NULL && json_is_true(json_object_get(r, "timed_out")) &&
			    ctx->deadline_ms && zdm_now_ms() >= ctx->deadline_ms);
			if (r != NULL && !json_is_true(json_object_get(r, "ok")))
				bfail++;
		}
		if (intr && zdm_interrupted) {
			res->interrupted = true;
			zdm_fail(res, "interrupted in batch %zu/%zu; hosts that ended are journaled, "
			    "the rest run on resume", b + 1, nb);
			stop = true;
		} else if (tmo) {
			res->timed_out = true;
			zdm_fail(res, "the step timed out in batch %zu/%zu", b + 1, nb);
			stop = true;
		} else if (bfail > allowed) {
			struct sbuf sb;

			sb_init(&sb);
			failed_text(&sb, f.recs, sel, m);
			zdm_fail(res, "batch %zu/%zu: %zu of %zu host%s failed, over max_fail %zu%s: %s", b + 1,
			    nb, bfail, sizes[b], sizes[b] == 1 ? "" : "s", allowed,
			    b + 1 < nb ? "; the rollout stopped, later batches did not run" : "", sb.buf);
			sb_release(&sb);
			stop = true;
		}
		start += sizes[b];
	}
	if (stop)
		rc = -1;

	/* outputs: per host, counts; undo_data: the succeeded hosts by batch */
	outs = json_object();
	hosts = json_object();
	fl = json_array();
	nr = json_array();
	succ = json_array();
	unk = json_array();
	ul = json_array();
	start = 0;
	for (b = 0; b < nb; b++) {
		json_t *sb = json_array(), *ub = json_array();

		for (size_t k = start; k < start + sizes[b]; k++) {
			json_t *r = f.recs[k];

			/* unknown: now, or in an earlier attempt and not done since */
			if ((r != NULL && json_is_true(json_object_get(r, "unknown"))) ||
			    (was_unknown[k] && !json_is_true(json_object_get(r, "ok")))) {
				json_array_append_new(ub, json_string(tg[k].label));
				json_array_append_new(ul, json_string(tg[k].label));
			}
			if (r == NULL) {
				json_array_append_new(nr, json_string(tg[k].label));
				nskip++;
				continue;
			}
			json_object_set(hosts, tg[k].label, r);
			if (json_is_true(json_object_get(r, "ok"))) {
				json_array_append_new(sb, json_string(tg[k].label));
				nok++;
			} else {
				json_array_append_new(fl, json_string(tg[k].label));
				nfail++;
			}
		}
		json_array_append_new(succ, sb);
		json_array_append_new(unk, ub);
		start += sizes[b];
	}
	json_object_set_new(outs, "hosts", hosts);
	json_object_set_new(outs, "succeeded", json_integer((json_int_t)nok));
	json_object_set_new(outs, "failed", json_integer((json_int_t)nfail));
	json_object_set_new(outs, "failed_hosts", fl);
	json_object_set_new(outs, "not_run", nr);
	json_object_set_new(outs, "unknown_hosts", ul);
	json_object_set_new(outs, "batches", json_integer((json_int_t)nb));
	res->outputs = outs;
	res->undo_data = json_pack("{s:o,s:o}", "succeeded", succ, "unknown", unk);
	if (rc == 0 && nfail > 0)
		zdm_progress(ctx, "%zu host%s failed within max_fail: %s", nfail, nfail == 1 ? "" : "s",
		    json_string_value(json_array_get(fl, 0)));

	for (size_t k = 0; k < n; k++)
		json_decref(f.recs[k]);
	free(f.recs);
	free(sel);
	free(was_unknown);
	free(sizes);
	free(command);
	free(kh);
	ssh_free_targets(tg, n);
	return rc;
}

/* ---- check (--dry-run) ------------------------------------------------------------ */

static void
check_done(size_t i, void *arg)
{
	(void)i;
	(void)arg;
}

/* every host: connect, host key, login; no command.  Judged batch by batch
 * against max_fail, as run() judges the command */
static int
ssh_check(const struct zdm_step_type *t, struct zdm_ctx *ctx, const json_t *p,
    struct zdm_result *res)
{
	struct sshc_target *tg;
	struct sshc_opts o;
	struct sshc_job *jobs;
	char *err = NULL, *kh;
	size_t n, nb, *sizes, start = 0, nbad = 0, nnew = 0, shown = 0;
	struct sbuf bad, fresh;
	int rc = 0;

	(void)t;
	tg = ssh_targets(p, &n, &err);
	if (tg == NULL) {
		zdm_fail(res, "%s", err ? err : "no hosts");
		free(err);
		return -1;
	}
	ssh_opts(p, &o, &kh);
	o.check_only = true;
	jobs = xcalloc(n, sizeof *jobs);
	for (size_t k = 0; k < n; k++) {
		jobs[k].t = &tg[k];
		jobs[k].deadline_ms = ctx->deadline_ms;
		jobs[k].cap = 1;
	}
	sshc_run_all(&o, jobs, n, (int)json_integer_value(json_object_get(p, "max_parallel")),
	    check_done, NULL);
	nb = ssh_plan_batches(json_object_get(p, "batch"), n, &sizes);
	sb_init(&bad);
	sb_init(&fresh);
	for (size_t b = 0; b < nb; b++) {
		size_t bfail = 0;

		for (size_t k = start; k < start + sizes[b]; k++) {
			if (jobs[k].interrupted)
				res->interrupted = true;
			if (!jobs[k].authed) {
				char *r = redact_str(jobs[k].error ? jobs[k].error : "not reached");

				bfail++;
				nbad++;
				if (shown++ < 3)
					sb_addf(&bad, "%s%s: %s", shown > 1 ? "; " : "", tg[k].label, r);
				free(r);
			} else if (jobs[k].key_new) {
				sb_addf(&fresh, "%s%s", nnew++ ? ", " : "", tg[k].label);
			}
		}
		if (bfail > ssh_budget(json_object_get(p, "max_fail"), sizes[b]))
			rc = -1;
		start += sizes[b];
	}
	if (shown > 3)
		sb_addf(&bad, "; and %zu more", shown - 3);
	if (rc != 0)
		zdm_fail(res, "%zu of %zu host%s cannot be reached as the run needs, over max_fail: %s",
		    nbad, n, n == 1 ? "" : "s", bad.buf);
	else {
		struct sbuf ok;

		sb_init(&ok);
		sb_addf(&ok, "%zu host%s: host key and login accepted (no command run)", n - nbad,
		    n - nbad == 1 ? "" : "s");
		if (nnew > 0)
			sb_addf(&ok, "; not in known_hosts yet, the run adds them (accept-new): %s", fresh.buf);
		if (nbad > 0)
			sb_addf(&ok, "; within max_fail, not reached: %s", bad.buf);
		res->outputs = json_pack("{s:s}", "checked", ok.buf);
		sb_release(&ok);
	}
	sb_release(&bad);
	sb_release(&fresh);
	for (size_t k = 0; k < n; k++)
		sshc_job_release(&jobs[k]);
	free(jobs);
	free(sizes);
	free(kh);
	ssh_free_targets(tg, n);
	return rc;
}

/* ---- undo --------------------------------------------------------------------------- */

/* flag[k] for every target whose label is in one of lists' arrays */
static void
mark_hosts(const json_t *lists, const struct sshc_target *tg, size_t n, bool *flag)
{
	size_t i, x;
	json_t *e, *h;

	json_array_foreach(lists, i, e)
		json_array_foreach(e, x, h)
			for (size_t k = 0; k < n; k++)
				if (json_is_string(h) && strcmp(tg[k].label, json_string_value(h)) == 0)
					flag[k] = true;
}

/* without an undo command a rollback leaves the hosts as they are */
static bool
ssh_can_undo(const struct zdm_step_type *t, const json_t *p)
{
	return json_object_get(p, "undo") != NULL;
}

static int
ssh_undo(const struct zdm_step_type *t, struct zdm_ctx *ctx, const json_t *p,
    const json_t *undo_data, struct zdm_result *res)
{
	const json_t *u = json_object_get(p, "undo"), *succ = json_object_get(undo_data, "succeeded");
	const json_t *unkd = json_object_get(undo_data, "unknown");
	struct sshc_target *tg;
	struct sshc_opts o;
	struct fan f;
	char *err = NULL, *kh, *command;
	size_t n, nb, *sizes, *bat, *sel, i;
	bool *ok, *undone, *unk;
	json_t *e, *outs;
	int rc = 0;

	tg = ssh_targets(p, &n, &err);
	if (tg == NULL) {
		if (u == NULL) {	/* nothing would run anyway */
			free(err);
			res->undo_said = ZDM_UNDO_LEFT;
			snprintf(res->undo_why, sizeof res->undo_why,
			    "no undo command: what the command changed on the hosts is left in place");
			return 0;
		}
		zdm_fail(res, "%s", err ? err : "no hosts");
		free(err);
		return -1;
	}
	nb = ssh_plan_batches(json_object_get(p, "batch"), n, &sizes);
	bat = xcalloc(n, sizeof *bat);
	ok = xcalloc(n, sizeof *ok);
	undone = xcalloc(n, sizeof *undone);
	unk = xcalloc(n, sizeof *unk);
	sel = xcalloc(n, sizeof *sel);
	for (size_t b = 0, k = 0; b < nb; b++)
		for (size_t c = 0; c < sizes[b]; c++)
			bat[k++] = b;
	/* succeeded: from undo_data and from the notes (a crash leaves only
	 * these); unknown (the command started, no exit status): the same */
	mark_hosts(succ, tg, n, ok);
	mark_hosts(unkd, tg, n, unk);
	json_array_foreach(ctx->notes, i, e) {
		enum ev ev = ev_parse(json_string_value(json_object_get(e, "event")));
		json_t *d = json_object_get(e, "data");
		const char *h = json_string_value(json_object_get(d, "host"));

		if (ev == EV_SSH_HOST && h != NULL &&
		    json_is_true(json_object_get(d, "unknown")))
			for (size_t k = 0; k < n; k++)
				if (strcmp(tg[k].label, h) == 0)
					unk[k] = true;
		if (ev == EV_UNKNOWN || h == NULL || !json_is_true(json_object_get(d, "ok")))
			continue;
		for (size_t k = 0; k < n; k++) {
			if (strcmp(tg[k].label, h) != 0)
				continue;
			if (ev == EV_SSH_HOST)
				ok[k] = true;
			else if (ev == EV_SSH_UNDO)
				undone[k] = true;
		}
	}
	if (u == NULL) {
		/* no undo command: the hosts where the command succeeded stay as
		 * they are (the runbook said so); a host whose outcome is unknown
		 * may be half-way, so the rollback cannot claim it is back */
		struct sbuf sb;
		size_t nu = 0;

		sb_init(&sb);
		for (size_t k = 0; k < n; k++)
			if (unk[k] && !ok[k])
				sb_addf(&sb, "%s%s", nu++ ? ", " : "", tg[k].label);
		if (nu > 0) {
			zdm_fail(res, "no undo command, and the outcome on %zu host%s is unknown: %s "
			    "(the command started but did not finish: it timed out, the connection was "
			    "lost or zdm was interrupted, and it may still be running); check %s by hand",
			    nu, nu == 1 ? "" : "s", sb.buf, nu == 1 ? "it" : "them");
			rc = -1;
		} else {
			size_t nok = 0;

			for (size_t k = 0; k < n; k++)
				nok += ok[k];
			/* the command ran nowhere (refused host keys, no connection):
			 * nothing of it stays */
			res->undo_said = nok > 0 ? ZDM_UNDO_LEFT : ZDM_UNDO_NOTHING;
			if (nok > 0)
				snprintf(res->undo_why, sizeof res->undo_why, "no undo command: what the "
				    "command changed on %zu host%s is left in place", nok, nok == 1 ? "" : "s");
			else
				snprintf(res->undo_why, sizeof res->undo_why,
				    "the command succeeded on no host");
		}
		sb_release(&sb);
		goto out;
	}
	ssh_opts(p, &o, &kh);
	command = sshc_build_command(json_is_array(u) ? u : NULL, json_string_value(u),
	    json_object_get(p, "env"));
	fan_init(&f, ctx, p, n, nb, true);
	for (size_t b = nb; b-- > 0 && rc == 0;) {
		size_t m = 0, bfail = 0, all = 0;

		for (size_t k = 0; k < n; k++)
			if (bat[k] == b && (ok[k] || unk[k])) {
				all++;
				if (!undone[k])
					sel[m++] = k;
			}
		if (m == 0)
			continue;
		f.batch = b;
		f.size = all;
		f.done = all - m;
		f.failed = 0;
		run_batch(&f, &o, tg, sel, m, command);
		fan_line(&f, true);
		for (size_t k = 0; k < m; k++) {
			json_t *r = f.recs[sel[k]];

			if (r == NULL || !json_is_true(json_object_get(r, "ok")))
				bfail++;
		}
		if (zdm_interrupted) {
			res->interrupted = true;
			zdm_fail(res, "interrupted while undoing batch %zu/%zu", b + 1, nb);
			rc = -1;
		} else if (bfail > 0) {
			struct sbuf sb;

			sb_init(&sb);
			failed_text(&sb, f.recs, sel, m);
			zdm_fail(res, "undo failed on %zu of %zu host%s of batch %zu/%zu (earlier batches not "
			    "undone; zdm rollback tries again, skipping hosts already undone): %s", bfail, m,
			    m == 1 ? "" : "s", b + 1, nb, sb.buf);
			sb_release(&sb);
			rc = -1;
		}
	}
	outs = json_object();
	for (size_t k = 0; k < n; k++)
		if (f.recs[k] != NULL)
			json_object_set(outs, tg[k].label, f.recs[k]);
	res->outputs = json_pack("{s:o}", "undo", outs);
	for (size_t k = 0; k < n; k++)
		json_decref(f.recs[k]);
	free(f.recs);
	free(command);
	free(kh);
out:
	free(sel);
	free(bat);
	free(ok);
	free(unk);
	free(undone);
	free(sizes);
	ssh_free_targets(tg, n);
	return rc;
}

const struct zdm_step_type zdm_step_ssh = {
	.name = "ssh",
	.description = "run a command on remote hosts over SSH, in batches with a failure budget",
	ZDM_PARAMS(ssh_params),
	.validate = ssh_validate, .plan = ssh_plan, .run = ssh_run, .undo = ssh_undo,
	.check = ssh_check,
	.can_undo = ssh_can_undo,
};
