/*
 * step.c - the helpers the step contract gives every step type
 * (include/zdm/step.h): zdm_fail, zdm_note, zdm_progress, zdm_output,
 * zdm_is_expr and zdm_result_release.  zdm_diag is with the parameter checks (runbook.c).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/redact.h"
#include "base/util.h"
#include "zdm/step.h"

void
zdm_fail(struct zdm_result *res, const char *fmt, ...)
{
	va_list ap;

	if (res->err[0] != '\0')
		return;
	va_start(ap, fmt);
	vsnprintf(res->err, sizeof res->err, fmt, ap);
	va_end(ap);
	if (res->err[0] == '\0')
		snprintf(res->err, sizeof res->err, "failed");
}

void
zdm_result_release(struct zdm_result *res)
{
	json_decref(res->outputs);
	json_decref(res->undo_data);
	res->outputs = NULL;
	res->undo_data = NULL;
}

bool
zdm_is_expr(const json_t *v)
{
	const char *s, *e;

	if (!json_is_string(v))
		return false;
	s = json_string_value(v);
	while (*s == ' ')
		s++;
	if (strncmp(s, "${{", 3) != 0)
		return false;
	e = strstr(s, "}}");
	if (e == NULL)
		return false;
	e += 2;
	while (*e == ' ')
		e++;
	return *e == '\0';
}

void
zdm_note(struct zdm_ctx *ctx, const char *event, json_t *data)
{
	if (ctx == NULL || ctx->note == NULL) {
		json_decref(data);
		return;
	}
	ctx->note(ctx, event, data);
}

int
zdm_await(struct zdm_ctx *ctx, int64_t ms, json_t **decision)
{
	*decision = NULL;
	if (ctx == NULL || ctx->await == NULL || ms <= 0)
		return 0;
	return ctx->await(ctx, ms, decision);
}

const char *
zdm_promoted(struct zdm_ctx *ctx)
{
	return ctx != NULL && ctx->promoted != NULL ? ctx->promoted(ctx) : NULL;
}

void
zdm_progress(struct zdm_ctx *ctx, const char *fmt, ...)
{
	va_list ap;
	char *m;

	if (ctx == NULL || ctx->progress == NULL)
		return;
	va_start(ap, fmt);
	m = xvasprintf(fmt, ap);
	va_end(ap);
	ctx->progress(ctx, m);
	free(m);
}

bool
zdm_output(struct zdm_ctx *ctx, const char *stream, const char *line)
{
	char *r;

	if (ctx == NULL || ctx->output == NULL)
		return false;
	r = redact_str(line);
	ctx->output(ctx, stream, r);
	free(r);
	return true;
}
