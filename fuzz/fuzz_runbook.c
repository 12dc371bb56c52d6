/*
 * fuzz_runbook.c - libFuzzer harness: the input is a runbook file, loaded and
 * checked as `zdm validate` does (YAML, schema, params, expressions, the
 * plugins' validate()).  Any crash, leak or sanitizer report is a bug.
 */
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/ynode.h"
#include "core/plugin_path.h"
#include "core/registry.h"
#include "core/runbook.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[] = "/tmp/zdm-fuzz-runbook-XXXXXX";
static int fd = -1;
static char **pp;
static struct registry *reg;

static void
cleanup(void)
{
	unlink(path);
	registry_free(reg);
	plugin_path_free(pp);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fd = mkstemp(path);
	if (fd < 0)
		abort();
	pp = plugin_path_build(NULL, NULL);	/* ZDM_PLUGIN_PATH: the plugins' validate() too */
	reg = registry_new((const char *const *)pp);
	atexit(cleanup);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct yerrs e = { 0 };
	struct rb_opts o = { 0 };
	struct runbook *rb;

	if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	rb = runbook_load(path, reg, &o, &e);
	if (rb != NULL)
		runbook_free(rb);
	yerrs_release(&e);
	return 0;
}
