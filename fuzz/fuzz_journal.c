/*
 * fuzz_journal.c - libFuzzer harness: the input is a journal file, read and
 * verified as resume, rollback, status and `zdm audit verify` read it.
 * Whatever the bytes, zdm must report damage, never crash or leak.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/journal.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[] = "/tmp/zdm-fuzz-journal-XXXXXX";
static int fd = -1;
static FILE *devnull;

static void
cleanup(void)
{
	unlink(path);
	fclose(devnull);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fd = mkstemp(path);
	devnull = fopen("/dev/null", "w");
	if (fd < 0 || devnull == NULL)
		abort();
	atexit(cleanup);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct jlog log;
	char *err = NULL;

	if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	if (journal_read(path, &log, &err) == 0)
		jlog_release(&log);
	free(err);
	journal_verify(path, devnull, devnull);
	return 0;
}
