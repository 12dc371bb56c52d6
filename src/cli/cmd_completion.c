/*
 * cmd_completion.c - zdm completion bash|zsh: print the completion script
 * built into zdm (completion/zdm.bash, completion/_zdm).  The scripts ask
 * zdm itself for the candidates (zdm __complete, cmd_complete.c).
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/embedded.h"

int
cmd_completion(const struct cmd *cmd, struct cli *c)
{
	const char *shell = c->argv[0], *path = strcmp(shell, "bash") == 0 ? "completion/zdm.bash" :
	    strcmp(shell, "zsh") == 0 ? "completion/_zdm" : NULL;
	const char *text = path ? embedded_text(path) : NULL;

	if (path == NULL) {
		fprintf(stderr, "zdm completion: '%s': no such shell; use bash or zsh\n", shell);
		return ZDM_EXIT_USAGE;
	}
	if (text == NULL) {
		fprintf(stderr, "zdm completion: the %s script was not built into this zdm\n", shell);
		return ZDM_EXIT_USAGE;
	}
	fputs(text, stdout);
	return ZDM_EXIT_OK;
}
