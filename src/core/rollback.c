/*
 * rollback.c - undo the steps of a run (rollback.h).
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "base/proc.h"
#include "base/redact.h"
#include "base/util.h"
#include "core/events.h"
#include "core/rollback.h"
#include "core/run.h"
#include "zdm/step.h"

struct undo_item {
	size_t i;
	long seq;
};

static int
by_seq_desc(const void *a, const void *b)
{
	const struct undo_item *x = a, *y = b;

	return x->seq < y->seq ? 1 : x->seq > y->seq ? -1 : 0;
}

/* step I is among what a rollback undoes (or decides about): it succeeded,
 * it started and its end is unknown, or it failed having recorded what its
 * type's undo needs.  A failed step is undone only from what its type
 * recorded (undo_data returned with the failure, or the snapshot from before
 * it acted): a runbook's own undo: is written for a step that completed. */
static bool
to_undo(const struct run *r, size_t i)
{
	const struct stepstate *ss = &r->ss[i];
	const struct rb_step *rs = &r->rb->steps[i];

	if (ss->ust == U_SUCCEEDED || ss->ust == U_SKIPPED)
		return false;
	return ss->st == S_SUCCEEDED || ss->st == S_STARTED ||
	    (ss->st == S_FAILED && (ss->undo_data != NULL ||
	    (ss->snapshot != NULL && rs->undo == NULL && rs->type && rs->type->undo)));
}

/* it has an undo to run: its own undo:, or its type's (not read-only) */
static bool
undoable(const struct rb_step *s)
{
	bool has_undo = s->undo != NULL || (s->type && s->type->undo != NULL);

	return has_undo && !(s->read_only && s->undo == NULL);
}

/* what its type's undo puts back: its undo_data, or for a step with no
 * undo: of its own, the snapshot from before it acted; NULL if neither */
static const json_t *
undo_data_of(const struct run *r, size_t i)
{
	const struct rb_step *s = &r->rb->steps[i];
	const struct stepstate *ss = &r->ss[i];

	if (ss->undo_data != NULL)
		return ss->undo_data;
	return s->undo == NULL && s->type && s->type->undo ? ss->snapshot : NULL;
}

enum undo_doubt
undo_doubt(const struct run *r, size_t i)
{
	const struct rb_step *s = &r->rb->steps[i];
	const struct stepstate *ss = &r->ss[i];

	if (!to_undo(r, i) || !undoable(s))
		return UD_NONE;
	/* an undo in doubt is asked about as such, even when its step was
	 * in doubt too: that question was answered when the undo started */
	if (ss->ust == U_STARTED)
		return s->idempotent ? UD_NONE : UD_UNDO;
	/* a step in doubt with a snapshot is put back exactly, without asking:
	 * restoring the state from before is right whether or not it acted */
	if (ss->st == S_STARTED && undo_data_of(r, i) == NULL)
		return UD_STEP;
	return UD_NONE;
}

size_t
left_in_place(const struct run *r, const char ***ids)
{
	size_t n = 0;

	*ids = xcalloc(r->rb->nsteps + 1, sizeof **ids);
	for (size_t i = 0; i < r->rb->nsteps; i++)
		if (r->ss[i].undone == RS_LEFT_IN_PLACE)
			(*ids)[n++] = r->rb->steps[i].id;
	return n;
}

enum run_outcome
rolled_back(struct run *r, struct run_event *ev, enum verdict vd, json_t *extra)
{
	const char **ids;
	size_t n = left_in_place(r, &ids);
	enum run_outcome code = n > 0 ? RUN_LEFT_IN_PLACE : vd == VD_UNDONE ? RUN_OK : RUN_ROLLED_BACK;

	ev->end.verdict = vd;
	ev->end.left = ids;
	ev->end.nleft = n;
	run_ended(r, ev);
	if (n > 0) {
		json_t *a = json_array();

		for (size_t i = 0; i < n; i++) {
			json_array_append_new(a, json_string(ids[i]));
			if (r->o->left_out != NULL)
				json_array_append_new(r->o->left_out, json_string(ids[i]));
		}
		json_object_set_new(extra, "left_in_place", a);
	}
	free(ids);
	return run_finish(r, "rolled_back", code, extra);
}

/* RUN_OK when every undo is done */
enum run_outcome
undo_steps(struct run *r)
{
	struct undo_item *items = xcalloc(r->rb->nsteps, sizeof *items);
	size_t n = 0;
	bool need_person = false, lazy = false;
	int bad;
	enum run_outcome rc = RUN_OK;
	struct run_event ev = { 0 };

	for (size_t i = 0; i < r->rb->nsteps; i++) {
		const struct stepstate *ss = &r->ss[i];

		if (to_undo(r, i)) {
			items[n].i = i;
			items[n].seq = ss->st == S_STARTED ? ss->start_seq :
			    ss->st == S_FAILED ? LONG_MAX - (long)(r->rb->nsteps - i) : ss->done_seq;
			n++;
		}
	}
	qsort(items, n, sizeof *items, by_seq_desc);
	ev.kind = OBS_ROLLBACK_STARTED;
	ev.count = n;
	run_emit(r, &ev);
	for (size_t k = 0; k < n && rc == RUN_OK; k++) {
		size_t i = items[k].i;
		struct rb_step *s = &r->rb->steps[i];
		struct stepstate *ss = &r->ss[i];
		const struct zdm_step_type *ut = s->undo ? s->undo->type : s->type;
		enum in_doubt said = run_answer(r, s->id);
		int max = s->retries + 1;
		bool done = false;

		if (zdm_interrupted) {
			rc = RUN_PAUSED;
			break;
		}
		if (!undoable(s)) {
			bool ro = s->read_only;	/* its type's, or read_only: true */
			const char *why = ro ? "read-only: nothing to undo" :
			    "no undo: the type has none and the step sets none; the change is left in place";
			enum rs_undone what = ro ? RS_NOTHING_TO_UNDO : RS_LEFT_IN_PLACE;

			/*
			 * Lazily durable (one fdatasync for a run of them, not one
			 * each): an undo.skipped here records a decision that
			 * nothing is to be done, and nothing is done on the
			 * strength of it.  The next record that precedes an act
			 * (undo.started) is durable with all written before it,
			 * and the batch is synced before this loop ends.  A crash
			 * that loses the tail of a batch loses only decisions the
			 * next rollback makes again, the same way: nothing
			 * happened in the world in between.
			 */
			store_set_lazy(r->w, true);
			lazy = true;
			bad = jrec(r, ev_name(EV_UNDO_SKIPPED), s->id, 0, json_pack("{s:s,s:s}", "reason",
			    why, "outcome", rs_undone_word(what)));
			store_set_lazy(r->w, false);
			if (bad) {
				rc = RUN_NEEDS_PERSON;
				break;
			}
			ss->ust = U_SKIPPED;
			ss->undone = what;
			undo_ended(r, i, ro ? UNDO_NOTHING : UNDO_LEFT, -1, ro ? NULL : why);
			continue;
		}
		const json_t *udata = undo_data_of(r, i);

		switch (undo_doubt(r, i)) {
		case UD_UNDO:
			if (said == IN_DOUBT_RETRY)
				break;
			if (said == IN_DOUBT_SKIP) {
				const char *why = "undo in doubt, taken as done by --in-doubt skip";

				if (jrec(r, ev_name(EV_UNDO_SKIPPED), s->id, 0, json_pack("{s:s,s:b,s:s}",
				    "reason", why, "in_doubt", true, "outcome", rs_undone_word(RS_UNDONE)))) {
					rc = RUN_NEEDS_PERSON;
					break;
				}
				ss->ust = U_SKIPPED;
				ss->undone = RS_UNDONE;
				undo_ended(r, i, UNDO_SKIPPED, -1, why);
				continue;
			}
			/* not asked before (a caller that does, as zdm rollback
			 * does, never gets here): stop and ask */
			{
				struct doubt d = { s->id, ut ? ut->name : "?", true, false,
				    ss->undo_attempts, IN_DOUBT_ASK };

				memset(&ev, 0, sizeof ev);
				ev.end.verdict = VD_IN_DOUBT;
				ev.end.rolling_back = true;
				ev.end.doubts = &d;
				ev.end.ndoubts = 1;
				run_ended(r, &ev);
			}
			rc = RUN_IN_DOUBT;
			break;
		case UD_STEP:
			if (said == IN_DOUBT_RETRY)
				break;
			{
				bool skip = said == IN_DOUBT_SKIP;
				const char *why = skip ? "in doubt, taken as not done by --in-doubt skip: "
				    "nothing to undo" : ss->interrupted ?
				    "in doubt: a signal stopped it part-way and it recorded no undo_data; "
				    "check it by hand, then zdm rollback --in-doubt STEP=retry (run its undo) or "
				    "STEP=skip (it did not take effect)" :
				    "in doubt: it started but its end was not recorded, so there is no undo_data; "
				    "check it by hand, then zdm rollback --in-doubt STEP=retry (run its undo) or "
				    "STEP=skip (it did not take effect)";

				/* not undone and not decided: undo.failed, so the
				 * next `zdm rollback` asks again instead of calling
				 * it done */
				json_t *d = json_pack("{s:s,s:b}", skip ? "reason" : "error", why, "in_doubt", true);

				if (skip)
					json_object_set_new(d, "outcome", json_string(rs_undone_word(RS_NOTHING_TO_UNDO)));
				if (jrec(r, skip ? ev_name(EV_UNDO_SKIPPED) : ev_name(EV_UNDO_FAILED), s->id, 0, d)) {
					rc = RUN_NEEDS_PERSON;
					break;
				}
				ss->ust = skip ? U_SKIPPED : U_FAILED;
				if (skip)
					ss->undone = RS_NOTHING_TO_UNDO;
				undo_ended(r, i, skip ? UNDO_SKIPPED : UNDO_NOT_DONE, -1, why);
				if (!skip)
					need_person = true;
			}
			continue;
		case UD_NONE:
			break;
		}
		if (rc != RUN_OK)
			break;
		for (int a = 0; a < max && !done; a++) {
			struct zdm_ctx ctx;
			struct zdm_result res;
			json_t *params, *notes;
			char *err = NULL;
			int64_t t0 = zdm_now_ms(), tmo;
			int attempt = ++ss->undo_attempts, urc;

			/* the undo sees its own step's outputs */
			params = s->undo ?
			    runbook_params(r->rb, s->undo->node, s->undo->type, s->undo->with,
			    s->undo->with_node, &err) :
			    runbook_params(r->rb, s->node, s->type, s->with, s->with_node, &err);
			if (params == NULL) {
				if (jrec(r, ev_name(EV_UNDO_FAILED), s->id, attempt, json_pack("{s:s}", "error", err)) != 0)
					rc = RUN_NEEDS_PERSON;
				undo_ended(r, i, UNDO_FAILED, -1, err);
				free(err);
				break;
			}
			if (jrec(r, ev_name(EV_UNDO_STARTED), s->id, attempt, json_pack("{s:s}", "uses",
			    ut->name)) != 0) {
				json_decref(params);
				rc = RUN_NEEDS_PERSON;
				break;
			}
			ss->ust = U_STARTED;
			run_ctx_init(r, &ctx, s->id, attempt);
			ctx.undoing = true;
			memset(&res, 0, sizeof res);
			tmo = s->undo && s->undo->timeout_ms ? s->undo->timeout_ms : s->timeout_ms;
			ctx.deadline_ms = t0 + tmo;
			notes = ss->notes != NULL ? json_copy(ss->notes) : NULL;
			ctx.notes = notes;
			if (s->undo != NULL)
				urc = ut->run(ut, &ctx, params, &res);
			else
				urc = ut->undo(ut, &ctx, params, udata, &res);
			json_decref(params);
			json_decref(notes);
			if (res.interrupted) {
				zdm_result_release(&res);
				rc = RUN_PAUSED;
				break;
			}
			if (urc == 0) {
				enum rs_undone what = res.undo_said == ZDM_UNDO_LEFT ? RS_LEFT_IN_PLACE :
				    res.undo_said == ZDM_UNDO_NOTHING ? RS_NOTHING_TO_UNDO : RS_UNDONE;
				char *why = what != RS_UNDONE && res.undo_why[0] ? redact_str(res.undo_why) : NULL;
				json_t *d = json_pack("{s:I,s:s}", "duration_ms",
				    (json_int_t)(zdm_now_ms() - t0), "outcome", rs_undone_word(what));

				if (why != NULL)
					json_object_set_new(d, "reason", json_string(why));
				if (jrec(r, ev_name(EV_UNDO_SUCCEEDED), s->id, attempt, d) != 0) {
					free(why);
					run_error(r, "the undo of step '%s' ran but could not be recorded; "
					    "the journal will show it in doubt", s->id);
					zdm_result_release(&res);
					rc = RUN_NEEDS_PERSON;
					break;
				}
				ss->ust = U_SUCCEEDED;
				ss->undone = what;
				undo_ended(r, i, what == RS_LEFT_IN_PLACE ? UNDO_LEFT : what == RS_NOTHING_TO_UNDO ?
				    UNDO_NOTHING : UNDO_DONE, zdm_now_ms() - t0, why);
				free(why);
				done = true;
			} else {
				char *msg = redact_str(res.err);

				if (jrec(r, ev_name(EV_UNDO_FAILED), s->id, attempt, json_pack("{s:s,s:b}",
				    "error", msg, "will_retry", a + 1 < max)) != 0) {
					free(msg);
					zdm_result_release(&res);
					rc = RUN_NEEDS_PERSON;
					break;
				}
				ss->ust = U_FAILED;
				undo_ended(r, i, UNDO_FAILED, zdm_now_ms() - t0, msg);
				if (a + 1 >= max) {
					memset(&ev, 0, sizeof ev);
					ev.kind = OBS_ROLLBACK_STOPPED;
					ev.step.i = i;
					ev.step.text = msg;
					run_emit(r, &ev);
				}
				free(msg);
				if (a + 1 < max && zdm_sleep_ms(backoff_delay(s, a + 1)) != 0) {
					zdm_result_release(&res);
					rc = RUN_PAUSED;
					break;
				}
			}
			zdm_result_release(&res);
		}
		if (rc == RUN_OK && !done) {
			/* stop here: undoing earlier steps on top of a state we
			 * failed to restore can make things worse */
			rc = RUN_NEEDS_PERSON;
		}
	}
	free(items);
	if (lazy) {
		char *err = NULL;

		if (store_sync(r->w, &err) != 0) {
			run_error(r, "journal %s: %s", store_writer_ref(r->w), err);
			free(err);
			rc = RUN_NEEDS_PERSON;
		}
	}
	if (rc == RUN_OK && need_person)
		rc = RUN_NEEDS_PERSON;
	return rc;
}
