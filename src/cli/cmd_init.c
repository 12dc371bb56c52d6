/*
 * cmd_init.c - zdm init: print or write a starter runbook from a template
 * built into zdm (templates/NAME.yml), one that validates as written: what
 * to change is in vars: (with defaults) and comments, secrets come from
 * the environment.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/util.h"
#include "cli/cli.h"
#include "cli/embedded.h"

static const struct {
	const char *name, *about;
} templates[] = {
	{ "blue-green-nginx", "health-gate green, switch an nginx upstream to it, watch the site" },
	{ "canary-haproxy", "shift HAProxy weights to green 10% -> 50% -> 100%, gated on Prometheus" },
	{ "postgres-move", "move a PostgreSQL database by logical replication, then switch" },
	{ "rolling-ssh", "run a command over SSH on many hosts in batches, a canary first" },
};
#define NTEMPLATES (sizeof templates / sizeof templates[0])

void
init_template_names(FILE *f)
{
	for (size_t i = 0; i < NTEMPLATES; i++)
		fprintf(f, "%s\n", templates[i].name);
}

/* write TEXT to a new file PATH (never over one); 0, or -1 after saying why */
static int
write_new(const char *path, const char *text, const char *tname)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	size_t len = strlen(text), off = 0;

	if (fd < 0) {
		if (errno == EEXIST)
			fprintf(stderr, "zdm init: --output '%s': the file exists; not overwritten "
			    "(remove it or give another name)\n", path);
		else
			fprintf(stderr, "zdm init: --output '%s': %s\n", path, strerror(errno));
		return -1;
	}
	while (off < len) {
		ssize_t w = write(fd, text + off, len - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			fprintf(stderr, "zdm init: --output '%s': %s\n", path, strerror(errno));
			close(fd);
			unlink(path);
			return -1;
		}
		off += (size_t)w;
	}
	if (close(fd) != 0) {
		fprintf(stderr, "zdm init: --output '%s': %s\n", path, strerror(errno));
		unlink(path);
		return -1;
	}
	fprintf(stderr, "%s: written from template %s; change its vars, then zdm validate %s\n", path,
	    tname, path);
	return 0;
}

int
cmd_init(const struct cmd *cmd, struct cli *c)
{
	const char *name = c->argc > 0 ? c->argv[0] : "blue-green-nginx";
	const char *names[NTEMPLATES + 1], *text;
	char path[128];
	size_t i;

	if (c->list) {
		if (c->argc > 0 || c->output_file != NULL) {
			fprintf(stderr, "zdm init: --list takes no TEMPLATE and no --output\n");
			return ZDM_EXIT_USAGE;
		}
		for (i = 0; i < NTEMPLATES; i++)
			printf("%-18s %s\n", templates[i].name, templates[i].about);
		return ZDM_EXIT_OK;
	}
	for (i = 0; i < NTEMPLATES && strcmp(templates[i].name, name) != 0; i++)
		names[i] = templates[i].name;
	if (i == NTEMPLATES) {
		struct sbuf sb;
		const char *s;

		sb_init(&sb);
		names[NTEMPLATES] = NULL;
		s = did_you_mean(name, names);
		for (i = 0; i < NTEMPLATES; i++)
			sb_addf(&sb, "%s%s", i ? ", " : "", templates[i].name);
		fprintf(stderr, "zdm init: unknown template '%s'%s%s%s; the templates: %s (zdm init --list)\n",
		    name, s ? " (did you mean '" : "", s ? s : "", s ? "'?)" : "", sb.buf);
		sb_release(&sb);
		return ZDM_EXIT_USAGE;
	}
	snprintf(path, sizeof path, "templates/%s.yml", name);
	text = embedded_text(path);
	if (text == NULL) {
		fprintf(stderr, "zdm init: template '%s' was not built into this zdm\n", name);
		return ZDM_EXIT_USAGE;
	}
	if (c->output_file == NULL) {
		fputs(text, stdout);
		return ZDM_EXIT_OK;
	}
	if (c->output_file[0] == '\0') {
		fprintf(stderr, "zdm init: --output needs a file name\n");
		return ZDM_EXIT_USAGE;
	}
	return write_new(c->output_file, text, name) == 0 ? ZDM_EXIT_OK : ZDM_EXIT_USAGE;
}
