/*
 * exec - run a local command: an argv list (no shell) or a `shell:` string
 * (/bin/sh -c).  The command runs in its own process group; on timeout the
 * group gets SIGTERM, then SIGKILL after kill_grace.  stdout and stderr are
 * captured (redacted, up to output_limit bytes each) into the outputs.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/proc.h"
#include "base/util.h"
#include "steps/builtin.h"
#include "zdm/step.h"

static const struct zdm_param exec_params[] = {
	{ "command", ZDM_T_LIST, false, NULL, "argv list, run without a shell: [systemctl, restart, app]" },
	{ "shell", ZDM_T_STRING, false, NULL, "a command line for /bin/sh -c (instead of command)" },
	{ "env", ZDM_T_MAP, false, NULL, "extra environment variables" },
	{ "cwd", ZDM_T_PATH, false, NULL, "working directory (default: zdm's current directory)" },
	{ "stdin", ZDM_T_STRING, false, NULL, "text written to the command's stdin (default: /dev/null)" },
	{ "expect_exit", ZDM_T_LIST, false, "[0]", "exit codes that count as success" },
	{ "output_limit", ZDM_T_INT, false, "65536", "bytes of stdout and of stderr kept in outputs" },
	{ "kill_grace", ZDM_T_DURATION, false, "\"5s\"", "time between SIGTERM and SIGKILL on timeout" },
};

static void
exec_validate(const struct zdm_step_type *t, const json_t *p, struct zdm_diag *d)
{
	json_t *cmd = json_object_get(p, "command"), *sh = json_object_get(p, "shell");
	json_t *ee = json_object_get(p, "expect_exit"), *v;
	size_t i;

	if ((cmd == NULL) == (sh == NULL)) {
		zdm_diag(d, NULL, "exec needs exactly one of 'command' (argv list) or 'shell' (string)");
		return;
	}
	if (cmd != NULL && json_is_array(cmd)) {
		if (json_array_size(cmd) == 0)
			zdm_diag(d, "command", "empty command");
		json_array_foreach(cmd, i, v)
			if (!json_is_string(v) && !json_is_number(v) && !zdm_is_expr(v))
				zdm_diag(d, "command", "argument %zu must be a string", i + 1);
	}
	if (sh != NULL && json_is_string(sh) && json_string_length(sh) == 0)
		zdm_diag(d, "shell", "empty shell command");
	if (ee != NULL && json_is_array(ee)) {
		json_array_foreach(ee, i, v)
			if (!zdm_is_expr(v) && (!json_is_integer(v) || json_integer_value(v) < 0 ||
			    json_integer_value(v) > 255))
				zdm_diag(d, "expect_exit", "exit codes are whole numbers from 0 to 255");
	}
	v = json_object_get(p, "output_limit");
	if (json_is_integer(v) && (json_integer_value(v) < 1 || json_integer_value(v) > (64 << 20)))
		zdm_diag(d, "output_limit", "must be from 1 to 67108864 bytes");
}

/* argv from the list; numbers become their text */
static char **
make_argv(const json_t *cmd)
{
	size_t n = json_array_size(cmd), i;
	char **argv = xcalloc(n + 1, sizeof *argv);
	json_t *v;

	json_array_foreach(cmd, i, v) {
		if (json_is_string(v))
			argv[i] = xstrdup(json_string_value(v));
		else
			argv[i] = json_dumps(v, JSON_ENCODE_ANY);
	}
	return argv;
}

static void
free_argv(char **argv)
{
	for (size_t i = 0; argv[i] != NULL; i++)
		free(argv[i]);
	free(argv);
}

static char *
exec_plan(const struct zdm_step_type *t, const json_t *p)
{
	json_t *cmd = json_object_get(p, "command"), *cwd = json_object_get(p, "cwd");
	struct sbuf sb;
	size_t i;
	json_t *v;

	sb_init(&sb);
	if (json_is_array(cmd)) {
		sb_adds(&sb, "run");
		json_array_foreach(cmd, i, v) {
			/* a number (from ${{ each }}) is the argument it becomes */
			char *num = json_is_number(v) || json_is_boolean(v) ?
			    json_dumps(v, JSON_ENCODE_ANY) : NULL;
			const char *s = json_is_string(v) ? json_string_value(v) : num ? num : "?";

			if (strpbrk(s, " \t'\"$") != NULL || *s == '\0')
				sb_addf(&sb, " '%s'", s);
			else
				sb_addf(&sb, " %s", s);
			free(num);
		}
	} else {
		sb_addf(&sb, "run sh -c '%s'", json_string_value(json_object_get(p, "shell")));
	}
	if (json_is_string(cwd))
		sb_addf(&sb, " in %s", json_string_value(cwd));
	return sb_detach(&sb);
}

/* outputs are JSON strings: bytes that are not UTF-8 become U+FFFD */
static void
chomp_set(json_t *out, const char *key, const char *s, size_t n)
{
	json_t *v;

	if (n > 0 && s[n - 1] == '\n')
		n--;
	v = json_text(s, n);
	json_object_set_new(out, key, v);
}

static const char *
last_line(const char *s, size_t n, size_t *len)
{
	const char *e;

	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' '))
		n--;
	e = s + n;
	while (e > s && e[-1] != '\n')
		e--;
	*len = (size_t)(s + n - e);
	if (*len > 300)
		*len = 300;
	return e;
}

/* each line the command prints, for zdm run -v (redacted by zdm_output) */
static void
exec_line(void *arg, int stream, const char *line)
{
	zdm_output(arg, stream == 1 ? "stdout" : "stderr", line);
}

static int
exec_run(const struct zdm_step_type *t, struct zdm_ctx *ctx, const json_t *p,
    struct zdm_result *res)
{
	struct proc_opts o;
	struct proc_result r;
	json_t *cmd = json_object_get(p, "command"), *ee = json_object_get(p, "expect_exit"), *v;
	json_t *env;
	char **argv = NULL, *err = NULL;
	bool ok = false;
	size_t i;

	memset(&o, 0, sizeof o);
	if (json_is_array(cmd)) {
		argv = make_argv(cmd);
		o.argv = argv;
	} else {
		o.shell = json_string_value(json_object_get(p, "shell"));
	}
	/* ZDM_STEP_TAG: a resume after zdm was killed finds this command
	 * (and what it started) by it while it still runs */
	env = json_is_object(json_object_get(p, "env")) ? json_copy(json_object_get(p, "env")) :
	    json_object();
	if (ctx->run_id != NULL && ctx->step_id != NULL) {
		size_t rl = strlen(ctx->run_id), sl = strlen(ctx->step_id);
		char *tag = xmalloc(rl + sl + 2);

		memcpy(tag, ctx->run_id, rl);
		tag[rl] = '/';
		memcpy(tag + rl + 1, ctx->step_id, sl + 1);
		json_object_set_new(env, "ZDM_STEP_TAG", json_string(tag));
		free(tag);
	}
	o.env = env;
	o.cwd = json_string_value(json_object_get(p, "cwd"));
	o.stdin_data = json_string_value(json_object_get(p, "stdin"));
	o.deadline_ms = ctx->deadline_ms;
	o.kill_grace_ms = json_integer_value(json_object_get(p, "kill_grace"));
	o.cap = (size_t)json_integer_value(json_object_get(p, "output_limit"));
	o.on_line = exec_line;
	o.line_arg = ctx;
	if (proc_run(&o, &r, &err) != 0) {
		zdm_fail(res, "%s", err);
		free(err);
		if (argv)
			free_argv(argv);
		json_decref(env);
		return -1;
	}
	if (argv)
		free_argv(argv);
	json_decref(env);
	res->outputs = json_object();
	json_object_set_new(res->outputs, "exit_code", json_integer(r.exit_code));
	chomp_set(res->outputs, "stdout", r.out, r.out_len);
	chomp_set(res->outputs, "stderr", r.err, r.err_len);
	if (r.out_trunc)
		json_object_set_new(res->outputs, "stdout_truncated", json_true());
	if (r.err_trunc)
		json_object_set_new(res->outputs, "stderr_truncated", json_true());
	json_object_set_new(res->outputs, "duration_ms", json_integer(r.duration_ms));
	if (r.timed_out) {
		char d[32];

		res->timed_out = true;
		fmt_duration(r.duration_ms, d, sizeof d);
		zdm_fail(res, "timed out after %s; the command's process group was stopped (SIGTERM, then SIGKILL)", d);
	} else if (r.interrupted) {
		res->interrupted = true;
		zdm_fail(res, "interrupted; the command's process group was stopped");
	} else if (r.exit_code < 0 && r.term_signal == 0) {
		zdm_fail(res, "ended, but zdm could not see how (its exit status was lost)");
	} else if (r.exit_code < 0) {
		zdm_fail(res, "killed by signal %d (%s)", r.term_signal, strsignal(r.term_signal));
	} else {
		json_array_foreach(ee, i, v)
			if (json_is_integer(v) && json_integer_value(v) == r.exit_code)
				ok = true;
		if (!ok) {
			size_t ll;
			const char *l = last_line(r.err, r.err_len, &ll);

			if (ll == 0)
				l = last_line(r.out, r.out_len, &ll);
			if (ll > 0)
				zdm_fail(res, "exited with %d: %.*s", r.exit_code, (int)ll, l);
			else
				zdm_fail(res, "exited with %d", r.exit_code);
		}
	}
	proc_result_release(&r);
	return ok ? 0 : -1;
}

/* PROG as execvp would find it (in DIR when it has a slash and is
 * relative, else along PATH): 0, or -1 with why in BUF */
static int
find_program(const char *prog, const char *dir, const char *path, char *buf, size_t n)
{
	struct stat st;

	if (strchr(prog, '/') != NULL) {
		char *full = prog[0] == '/' || dir == NULL ? xstrdup(prog) : xasprintf("%s/%s", dir, prog);
		int rc = 0;

		if (stat(full, &st) != 0)
			snprintf(buf, n, "'%s' does not exist", full), rc = -1;
		else if (!S_ISREG(st.st_mode) || access(full, X_OK) != 0)
			snprintf(buf, n, "'%s' is not an executable file", full), rc = -1;
		free(full);
		return rc;
	}
	for (const char *p = path ? path : "/usr/bin:/bin"; ; p++) {
		const char *e = strchr(p, ':');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		char *full = xasprintf("%.*s/%s", (int)len, len ? p : ".", prog);
		bool ok = stat(full, &st) == 0 && S_ISREG(st.st_mode) && access(full, X_OK) == 0;

		free(full);
		if (ok)
			return 0;
		if (e == NULL)
			break;
		p = e;
	}
	snprintf(buf, n, "'%s' is not found in PATH (%s)", prog, path ? path : "/usr/bin:/bin");
	return -1;
}

/*
 * --dry-run: what can fail before the command runs, checked without
 * running it: the working directory, the program (as execvp finds it, with
 * the step's env PATH if it sets one), and a shell command line's syntax
 * (sh -n, which reads it and runs nothing).
 */
static int
exec_check(const struct zdm_step_type *t, struct zdm_ctx *ctx, const json_t *p,
    struct zdm_result *res)
{
	json_t *cmd = json_object_get(p, "command");
	const char *cwd = json_string_value(json_object_get(p, "cwd"));
	const char *path = json_string_value(json_object_get(json_object_get(p, "env"), "PATH"));
	char why[1024];
	struct stat st;

	(void)t;
	if (path == NULL)
		path = getenv("PATH");
	if (cwd != NULL && (stat(cwd, &st) != 0 || !S_ISDIR(st.st_mode))) {
		zdm_fail(res, "cwd '%s' %s", cwd, errno == ENOENT ? "does not exist" : "is not a directory");
		return -1;
	}
	if (json_is_array(cmd)) {
		const char *prog = json_string_value(json_array_get(cmd, 0));

		if (prog == NULL || find_program(prog, cwd, path, why, sizeof why) != 0) {
			zdm_fail(res, "command: %s", prog ? why : "no program");
			return -1;
		}
		res->outputs = json_pack("{s:s}", "checked", "the program is found and executable"
		    " (not run)");
	} else {
		const char *line = json_string_value(json_object_get(p, "shell"));
		char *const argv[] = { "/bin/sh", "-n", "-c", (char *)(line ? line : ""), NULL };
		struct proc_opts o;
		struct proc_result r;
		char *err = NULL;
		int rc = 0;

		memset(&o, 0, sizeof o);
		o.argv = argv;
		o.cwd = cwd;
		o.deadline_ms = ctx->deadline_ms;
		if (proc_run(&o, &r, &err) != 0) {
			zdm_fail(res, "shell: /bin/sh -n: %s", err);
			free(err);
			return -1;
		}
		if (r.exit_code != 0) {
			size_t l = r.err_len;

			while (l > 0 && (r.err[l - 1] == '\n' || r.err[l - 1] == '\r'))
				l--;
			zdm_fail(res, "shell: /bin/sh finds the command line malformed (sh -n): %.*s",
			    (int)l, r.err);
			rc = -1;
		} else {
			res->outputs = json_pack("{s:s}", "checked", "the shell command line parses (sh -n; "
			    "not run)");
		}
		proc_result_release(&r);
		return rc;
	}
	return 0;
}

const struct zdm_step_type zdm_step_exec = {
	.name = "exec",
	.description = "run a local command (argv or shell), capture its output",
	ZDM_PARAMS(exec_params),
	.validate = exec_validate, .plan = exec_plan, .run = exec_run, .check = exec_check,
};
