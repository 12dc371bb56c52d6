/*
 * embedded.c - finding a built-in file by its path (the table itself is
 * generated: scripts/embed.sh).
 */
#include <stddef.h>
#include <string.h>

#include "cli/embedded.h"

const char *
embedded_text(const char *path)
{
	for (const struct embedded *e = embedded_files; e->path != NULL; e++)
		if (strcmp(e->path, path) == 0)
			return e->text;
	return NULL;
}
