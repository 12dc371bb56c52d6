/*
 * ci.c - zdm as a CI stage: the --output json event stream, GitHub
 * Actions annotations and the --junit report.
 *
 * The event stream (schema in docs/ci.md, "v": ZDM_EVENT_SCHEMA) is one
 * JSON object per line on stdout: every journal record as it reaches disk
 * (with "v" added), plus events that are not journal records because no
 * run exists yet or any more: "validation.error" and the final "exit".
 * Text for people goes to stderr while stdout carries the stream.
 *
 * Annotations follow GitHub's "workflow commands" syntax
 * (docs.github.com/en/actions/using-workflow-commands-for-github-actions):
 *   ::error file=F,line=L,col=C,title=T::MESSAGE
 * with the message's `%`, CR and LF escaped as %25, %0D, %0A, and property
 * values additionally `:` as %3A and `,` as %2C (the escaping the runner
 * undoes, as in @actions/core's command.ts escapeData/escapeProperty).
 */
#include <stdlib.h>
#include <string.h>

#include "base/redact.h"
#include "base/util.h"
#include "core/observer.h"
#include "core/runbook.h"
#include "core/runstate.h"
#include "report/ci.h"
#include "report/junit.h"

bool ci_json_stdout;

void
ci_emit(json_t *ev)
{
	json_t *out = json_object();
	const char *k;
	json_t *v;
	char *line;

	/* "v" first, then the record's own fields in their order */
	json_object_set_new(out, "v", json_integer(ZDM_EVENT_SCHEMA));
	if (json_object_get(ev, "ts") == NULL) {
		char ts[32];

		now_iso8601(ts, sizeof ts);
		json_object_set_new(out, "ts", json_string(ts));
	}
	json_object_foreach(ev, k, v)
		if (strcmp(k, "v") != 0)
			json_object_set(out, k, v);
	json_decref(ev);
	redact_json(out);
	line = json_dumps(out, JSON_COMPACT);
	json_decref(out);
	if (line == NULL)
		return;
	fputs(line, stdout);
	fputc('\n', stdout);
	fflush(stdout);
	free(line);
}

bool
ci_github(void)
{
	const char *g = getenv("GITHUB_ACTIONS");

	return g != NULL && strcmp(g, "true") == 0;
}

static void
gh_escape(struct sbuf *sb, const char *s, bool prop)
{
	for (; s != NULL && *s != '\0'; s++) {
		switch (*s) {
		case '%': sb_adds(sb, "%25"); break;
		case '\r': sb_adds(sb, "%0D"); break;
		case '\n': sb_adds(sb, "%0A"); break;
		case ':': sb_adds(sb, prop ? "%3A" : ":"); break;
		case ',': sb_adds(sb, prop ? "%2C" : ","); break;
		default: sb_addc(sb, *s);
		}
	}
}

void
ci_annotate(const char *level, const char *file, int line, int col,
    const char *title, const char *msg)
{
	struct sbuf sb;
	char *m, *t;
	const char *sep = " ";

	if (!ci_github())
		return;
	m = redact_str(msg != NULL ? msg : "");
	t = title != NULL ? redact_str(title) : NULL;
	sb_init(&sb);
	sb_addf(&sb, "::%s", level);
	if (file != NULL) {
		sb_adds(&sb, " file=");
		gh_escape(&sb, file, true);
		sep = ",";
	}
	if (line > 0) {
		sb_addf(&sb, "%sline=%d", sep, line);
		sep = ",";
	}
	if (col > 0) {
		sb_addf(&sb, "%scol=%d", sep, col);
		sep = ",";
	}
	if (t != NULL) {
		sb_addf(&sb, "%stitle=", sep);
		gh_escape(&sb, t, true);
	}
	sb_adds(&sb, "::");
	gh_escape(&sb, m, false);
	sb_addc(&sb, '\n');
	fputs(sb.buf, ci_json_stdout ? stderr : stdout);
	fflush(ci_json_stdout ? stderr : stdout);
	sb_release(&sb);
	free(m);
	free(t);
}

void
ci_json_observe(void *self, const struct run_event *ev)
{
	json_t *rec;

	if (ev->kind == OBS_OUTPUT && self != NULL) {
		/* -v: what the step's command printed, as it came (redacted) */
		ci_emit(json_pack("{s:s,s:s,s:s,s:s}", "event", "output", "step", ev->output.step,
		    "stream", ev->output.stream, "line", ev->output.text));
		return;
	}
	if (ev->kind != OBS_RECORD_LINE)
		return;
	rec = json_loads(ev->line, 0, NULL);
	if (rec != NULL)
		ci_emit(rec);
}

/* at the step's place in the runbook */
static void
annotate_step(const struct run_event *ev, const char *level, const char *step, const char *title,
    const char *msg)
{
	const struct runbook *rb = ev->rb;
	const struct rb_step *s = NULL;

	for (size_t i = 0; step != NULL && i < rb->nsteps && s == NULL; i++)
		if (strcmp(rb->steps[i].id, step) == 0)
			s = &rb->steps[i];
	/* a step brought by include: is annotated in its own file */
	ci_annotate(level, s && s->node && s->node->file ? s->node->file : rb->path,
	    s && s->node ? s->node->line : 0,
	    s && s->node ? s->node->col : 0, title, msg);
}

void
ci_annotations_observe(void *self, const struct run_event *ev)
{
	static const char *const failed[] = {
		[FAIL_DRY_RUN] = "zdm: dry run: step failed",
		[FAIL_PAUSE] = "zdm: step failed; run paused",
		[FAIL_ABORT] = "zdm: step failed; run aborted, nothing undone",
		[FAIL_ROLLBACK] = "zdm: step failed",
	};
	const char *step = ev->kind == OBS_RUN_ENDED ? ev->end.step : NULL;
	char *m;

	switch (ev->kind) {
	case OBS_FAILURE:
		if (ev->failure.aborted_by != NULL)
			annotate_step(ev, "warning", ev->failure.step, "zdm: aborted (zdm abort); rolling back",
			    ev->failure.why);
		else if (ev->failure.drill)
			annotate_step(ev, "notice", ev->failure.step, ev->failure.policy == FAIL_PAUSE ?
			    "zdm: drill: forced failure after this step (it succeeded); run paused" :
			    ev->failure.policy == FAIL_ABORT ?
			    "zdm: drill: forced failure after this step (it succeeded); run aborted" :
			    "zdm: drill: forced failure after this step (it succeeded)", ev->failure.why);
		else
			annotate_step(ev, "error", ev->failure.step, failed[ev->failure.policy],
			    ev->failure.why);
		break;
	case OBS_ROLLBACK_STOPPED:
		annotate_step(ev, "error", ev->rb->steps[ev->step.i].id, "zdm: undo failed",
		    ev->step.text);
		break;
	case OBS_WAITING:
		if (ev->wait.first) {
			char d[32];

			fmt_duration((ev->wait.left_ms + 999) / 1000 * 1000, d, sizeof d);
			m = xasprintf("waiting for approval of %s (zdm approve %s %s), %s left; "
			    "without a decision by then the run pauses", ev->wait.step, ev->run_id,
			    ev->wait.step, d);
			annotate_step(ev, "notice", ev->wait.step, "zdm: waiting for approval", m);
			free(m);
		}
		break;
	case OBS_RUN_ENDED:
		switch (ev->end.verdict) {
		case VD_UNDONE:
		case VD_ROLLED_BACK:
			if (ev->end.nleft > 0) {
				m = left_text(ev->end.left, ev->end.nleft);
				annotate_step(ev, "error", step, "zdm: rolled back, changes left in place", m);
				free(m);
				for (size_t k = 0; k < ev->end.nleft; k++)
					annotate_step(ev, "warning", ev->end.left[k], "zdm: left in place",
					    "this step changed things and has no undo: the rollback left its "
					    "change in place");
			} else if (ev->end.verdict == VD_ROLLED_BACK && ev->end.aborted_by != NULL) {
				annotate_step(ev, "warning", step, "zdm: aborted, rolled back", ev->end.why);
			} else if (ev->end.verdict == VD_ROLLED_BACK) {
				annotate_step(ev, "warning", step, "zdm: rolled back", "every completed step "
				    "with an undo was undone; the system is back where it started");
			}
			break;
		case VD_WAITING_APPROVAL:
			m = xasprintf("waiting for approval: zdm approve %s %s, then zdm resume %s",
			    ev->run_id, step, ev->run_id);
			annotate_step(ev, "warning", step, "zdm: approval needed", m);
			free(m);
			break;
		case VD_PAUSE_ASKED:
			annotate_step(ev, "warning", step, "zdm: paused (zdm pause)", ev->end.why);
			break;
		case VD_UNDECIDED:
			annotate_step(ev, "warning", step, "zdm: paused, a person decides", ev->end.why);
			break;
		case VD_IN_DOUBT:
			for (size_t k = 0; k < ev->end.ndoubts; k++) {
				const struct doubt *d = &ev->end.doubts[k];

				m = xasprintf("%s started but its end was not recorded; check it by hand, "
				    "then zdm %s %s --in-doubt %s=retry|skip", d->undo ? "its undo" : "it",
				    ev->end.rolling_back ? "rollback" : "resume", ev->run_id, d->step);
				annotate_step(ev, "error", d->step, d->undo ? "zdm: undo in doubt" :
				    "zdm: step in doubt", m);
				free(m);
			}
			break;
		default:
			break;
		}
		break;
	default:
		break;
	}
}

void
ci_junit_observe(void *self, const struct run_event *ev)
{
	const char *file = self;
	char *err = NULL;

	if (ev->kind != OBS_CLOSED || ev->closed.journal == NULL || ev->closed.store == NULL)
		return;
	if (junit_write(file, ev->rb, ev->closed.store, ev->closed.journal, &err) != 0) {
		fprintf(stderr, "zdm: --junit %s: %s\n", file, err);
		free(err);
	}
}
