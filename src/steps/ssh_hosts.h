/*
 * ssh_hosts.h - the ssh step's hosts, batches and failure budgets
 * (ssh_hosts.c), for steps/ssh.c.
 */
#ifndef ZDM_STEPS_SSH_HOSTS_H
#define ZDM_STEPS_SSH_HOSTS_H

#include <stddef.h>

#include <jansson.h>

#include "net/sshc.h"

#define SSH_MAX_HOSTS 10000

/* a count or "N%" (from min to SSH_MAX_HOSTS, or 1..max_pct %): sets *n or
 * *pct; 0 ok, -1 bad */
int ssh_count_or_pct(const json_t *v, long *n, long *pct, long min, long max_pct);
/* the batches' sizes for nhosts hosts (malloc'd in *sizes); returns how many */
size_t ssh_plan_batches(const json_t *spec, size_t nhosts, size_t **sizes);
/* the failures a batch of `size` hosts may have (max_fail) */
size_t ssh_budget(const json_t *spec, size_t size);
/* hosts from a list or an "a, b c" string (new reference); NULL on error */
json_t *ssh_host_list(const json_t *hosts);
/* the step's params' hosts parsed; NULL (and *err) on the first bad one */
struct sshc_target *ssh_targets(const json_t *p, size_t *n, char **err);
void ssh_free_targets(struct sshc_target *t, size_t n);

#endif
