/*
 * actor.c - who and what started a run: audit_actor() (login and uid from
 * the OS, SUDO_USER, CI identity from the CI's own variables) and
 * audit_provenance() (host, git commit of the runbook, clean or not), as
 * recorded in run.started and run.resumed (docs/audit.md).
 */
#include <errno.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/proc.h"
#include "base/util.h"
#include "core/actor.h"
#include "zdm/step.h"

#define GIT_TIMEOUT_MS 5000

/* recorded when set and non-empty; the list is in docs/audit.md */
const char *const audit_env_vars[] = {
	"ZDM_ACTOR", "SUDO_USER",
	/* GitHub Actions */
	"GITHUB_ACTOR", "GITHUB_TRIGGERING_ACTOR", "GITHUB_REPOSITORY", "GITHUB_RUN_ID",
	"GITHUB_RUN_ATTEMPT", "GITHUB_SHA", "GITHUB_REF", "GITHUB_WORKFLOW",
	"GITHUB_SERVER_URL",
	/* GitLab CI */
	"GITLAB_USER_LOGIN", "CI_PROJECT_PATH", "CI_PIPELINE_ID", "CI_JOB_ID", "CI_JOB_URL",
	"CI_COMMIT_SHA", "CI_COMMIT_REF_NAME",
	/* Buildkite, CircleCI, Jenkins */
	"BUILDKITE_BUILD_CREATOR", "BUILDKITE_BUILD_URL", "CIRCLE_USERNAME",
	"CIRCLE_BUILD_URL", "BUILD_USER_ID", "BUILD_URL", "JOB_NAME", "BUILD_NUMBER",
	NULL,
};

static const char *
env_set(const char *name)
{
	const char *v = getenv(name);

	return v != NULL && *v != '\0' ? v : NULL;
}

/* the best single name of who acts, in this order (malloc'd) */
char *
audit_who(void)
{
	static const char *const who_vars[] = {
		"ZDM_ACTOR", "GITHUB_TRIGGERING_ACTOR", "GITHUB_ACTOR", "GITLAB_USER_LOGIN",
		"BUILDKITE_BUILD_CREATOR", "CIRCLE_USERNAME", "BUILD_USER_ID", "SUDO_USER", NULL,
	};
	struct passwd *pw;

	for (size_t i = 0; who_vars[i] != NULL; i++)
		if (env_set(who_vars[i]) != NULL)
			return xstrdup(env_set(who_vars[i]));
	pw = getpwuid(getuid());
	if (pw != NULL && pw->pw_name != NULL)
		return xstrdup(pw->pw_name);
	return xstrdup(env_set("LOGNAME") != NULL ? env_set("LOGNAME") : "unknown");
}

json_t *
audit_actor(void)
{
	json_t *a = json_object();
	struct passwd *pw = getpwuid(getuid());
	const char *login = pw != NULL ? pw->pw_name : "?";
	const char *ci = NULL;
	char *who = audit_who();
	char host[256] = "";

	json_object_set_new(a, "login", json_string(login));
	json_object_set_new(a, "uid", json_integer((json_int_t)getuid()));
	for (size_t i = 0; audit_env_vars[i] != NULL; i++) {
		const char *v = env_set(audit_env_vars[i]);

		if (v != NULL)
			json_object_set_new(a, audit_env_vars[i], json_text(v, strlen(v)));
	}
	json_object_set_new(a, "who", json_text(who, strlen(who)));
	free(who);

	if (env_set("GITHUB_ACTIONS") || env_set("GITHUB_RUN_ID") || env_set("GITHUB_ACTOR"))
		ci = "github-actions";
	else if (env_set("GITLAB_CI") || env_set("GITLAB_USER_LOGIN") || env_set("CI_JOB_URL"))
		ci = "gitlab-ci";
	else if (env_set("BUILDKITE"))
		ci = "buildkite";
	else if (env_set("CIRCLECI"))
		ci = "circleci";
	else if (env_set("JENKINS_URL"))
		ci = "jenkins";
	else if (env_set("CI"))
		ci = "ci";
	if (ci != NULL) {
		char *url = NULL;

		json_object_set_new(a, "ci", json_string(ci));
		/* where a reviewer clicks to see the job that ran it */
		if (strcmp(ci, "github-actions") == 0 && env_set("GITHUB_REPOSITORY") &&
		    env_set("GITHUB_RUN_ID"))
			url = xasprintf("%s/%s/actions/runs/%s", env_set("GITHUB_SERVER_URL") ?
			    env_set("GITHUB_SERVER_URL") : "https://github.com",
			    env_set("GITHUB_REPOSITORY"), env_set("GITHUB_RUN_ID"));
		else if (env_set("CI_JOB_URL"))
			url = xstrdup(env_set("CI_JOB_URL"));
		else if (env_set("BUILDKITE_BUILD_URL"))
			url = xstrdup(env_set("BUILDKITE_BUILD_URL"));
		else if (env_set("CIRCLE_BUILD_URL"))
			url = xstrdup(env_set("CIRCLE_BUILD_URL"));
		else if (env_set("BUILD_URL"))
			url = xstrdup(env_set("BUILD_URL"));
		if (url != NULL)
			json_object_set_new(a, "ci_url", json_text(url, strlen(url)));
		free(url);
	}
	if (gethostname(host, sizeof host - 1) != 0)
		snprintf(host, sizeof host, "?");
	json_object_set_new(a, "host", json_text(host, strlen(host)));
	json_object_set_new(a, "pid", json_integer((json_int_t)getpid()));
	return a;
}

/* run git with args in dir; its stdout (malloc'd, trailing newline cut) or NULL */
static char *
git_out(const char *dir, const char *a1, const char *a2, const char *a3, const char *a4)
{
	char *argv[] = { "git", "-C", (char *)dir, (char *)a1, (char *)a2, (char *)a3,
	    (char *)a4, NULL };
	struct proc_opts o;
	struct proc_result r;
	char *err = NULL, *out = NULL;

	memset(&o, 0, sizeof o);
	memset(&r, 0, sizeof r);
	o.argv = argv;
	o.deadline_ms = zdm_now_ms() + GIT_TIMEOUT_MS;
	o.kill_grace_ms = 500;
	o.cap = 64 * 1024;
	if (proc_run(&o, &r, &err) != 0) {
		free(err);	/* no git: no provenance from it */
		return NULL;
	}
	if (r.exit_code == 0 && !r.timed_out) {
		size_t n = r.out_len;

		while (n > 0 && (r.out[n - 1] == '\n' || r.out[n - 1] == '\r'))
			n--;
		out = xstrndup(r.out, n);
	}
	proc_result_release(&r);
	return out;
}

void
audit_provenance(json_t *d, const char *abspath)
{
	char host[256] = "";
	char *dir = path_dirname(abspath), *base, *root, *head, *st;
	const char *slash = strrchr(abspath, '/');

	if (gethostname(host, sizeof host - 1) != 0)
		snprintf(host, sizeof host, "?");
	json_object_set_new(d, "host", json_text(host, strlen(host)));
	base = xstrdup(slash != NULL ? slash + 1 : abspath);
	root = git_out(dir, "rev-parse", "--show-toplevel", NULL, NULL);
	head = root != NULL ? git_out(dir, "rev-parse", "--verify", "HEAD", NULL) : NULL;
	if (root != NULL) {
		json_t *g = json_object();
		const char *state = "clean";

		json_object_set_new(g, "root", json_text(root, strlen(root)));
		json_object_set_new(g, "commit", head != NULL ? json_string(head) : json_null());
		/* "?? file": not in git; anything else: differs from HEAD */
		st = git_out(dir, "status", "--porcelain", "--", base);
		if (st == NULL)
			state = "unknown";
		else if (strncmp(st, "??", 2) == 0)
			state = "untracked";
		else if (*st != '\0')
			state = "modified";
		else if (head == NULL)
			state = "untracked";
		json_object_set_new(g, "runbook", json_string(state));
		free(st);
		json_object_set_new(d, "git", g);
	}
	free(head);
	free(root);
	free(base);
	free(dir);
}
