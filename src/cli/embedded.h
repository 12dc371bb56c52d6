/*
 * embedded.h - files of the repository built into zdm (scripts/embed.sh
 * writes the table at build time): the runbook templates of zdm init
 * (templates/NAME.yml) and the shell completions of zdm completion
 * (completion/zdm.bash, completion/_zdm).
 */
#ifndef ZDM_CLI_EMBEDDED_H
#define ZDM_CLI_EMBEDDED_H

struct embedded {
	const char *path;	/* as in the repository: "templates/rolling-ssh.yml" */
	const char *text;
};

/* ends with { NULL, NULL } */
extern const struct embedded embedded_files[];

/* the text of PATH, or NULL when it was not built in */
const char *embedded_text(const char *path);

#endif
