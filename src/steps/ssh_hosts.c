/*
 * ssh_hosts.c - the ssh step's hosts, batches and failure budgets: the host
 * list (a list or a string of hosts), batch sizes as counts or percentages
 * of the hosts, and max_fail as a count or a percentage of a batch
 * (ssh_hosts.h).
 */
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "net/sshc.h"
#include "steps/ssh_hosts.h"

/* a count or "N%": sets *n / *pct; 0 ok, -1 bad */
int
ssh_count_or_pct(const json_t *v, long *n, long *pct, long min, long max_pct)
{
	*n = -1;
	*pct = -1;
	if (json_is_integer(v)) {
		if (json_integer_value(v) < min || json_integer_value(v) > SSH_MAX_HOSTS)
			return -1;
		*n = (long)json_integer_value(v);
		return 0;
	}
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		char *end;
		long p = strtol(s, &end, 10);

		if (end == s || strcmp(end, "%") != 0 || p < (min > 0 ? 1 : 0) || p > max_pct)
			return -1;
		*pct = p;
		return 0;
	}
	return -1;
}

/* the batches' sizes for nhosts hosts; returns the number of batches */
size_t
ssh_plan_batches(const json_t *spec, size_t nhosts, size_t **sizes)
{
	size_t nb = 0, left = nhosts, k = 0;
	size_t *v = xcalloc(nhosts ? nhosts : 1, sizeof *v);

	while (left > 0) {
		const json_t *s = json_is_array(spec) ?
		    json_array_get(spec, k < json_array_size(spec) ? k : json_array_size(spec) - 1) : spec;
		long n, pct;
		size_t sz;

		if (ssh_count_or_pct(s, &n, &pct, 1, 100) != 0)
			n = (long)nhosts;
		sz = n > 0 ? (size_t)n : (size_t)pct * nhosts / 100;
		if (sz < 1)
			sz = 1;
		if (sz > left)
			sz = left;
		v[nb++] = sz;
		left -= sz;
		k++;
	}
	*sizes = v;
	return nb;
}

/* the failures a batch of `size` hosts may have */
size_t
ssh_budget(const json_t *spec, size_t size)
{
	long n, pct;

	if (ssh_count_or_pct(spec, &n, &pct, 0, 100) != 0)
		return 0;
	return n >= 0 ? (size_t)n : (size_t)pct * size / 100;
}

/* hosts from a list or a "a, b c" string; NULL list on error */
json_t *
ssh_host_list(const json_t *hosts)
{
	json_t *out = json_array();

	if (json_is_array(hosts)) {
		json_decref(out);
		return json_incref((json_t *)hosts);
	}
	if (json_is_string(hosts)) {
		char *s = xstrdup(json_string_value(hosts)), *save = NULL, *tok;

		for (tok = strtok_r(s, ", \t\n", &save); tok != NULL; tok = strtok_r(NULL, ", \t\n", &save))
			json_array_append_new(out, json_string(tok));
		free(s);
	}
	return out;
}

/* parse every host; NULL (and *err) on the first bad one */
struct sshc_target *
ssh_targets(const json_t *p, size_t *n, char **err)
{
	json_t *hl = ssh_host_list(json_object_get(p, "hosts")), *v;
	const char *user = json_string_value(json_object_get(p, "user"));
	char *def_user = user ? xstrdup(user) : sshc_default_user();
	int port = (int)json_integer_value(json_object_get(p, "port"));
	struct sshc_target *t = xcalloc(json_array_size(hl) + 1, sizeof *t);
	size_t i;

	*n = 0;
	json_array_foreach(hl, i, v) {
		if (!json_is_string(v)) {
			seterr(err, "host %zu is not a string", i + 1);
			goto bad;
		}
		if (sshc_parse_target(json_string_value(v), def_user, port, &t[i], err) != 0)
			goto bad;
		for (size_t k = 0; k < i; k++)
			if (strcmp(t[k].label, t[i].label) == 0) {
				seterr(err, "host '%s' is listed twice", t[i].label);
				*n = i + 1;
				goto bad;
			}
		*n = i + 1;
	}
	json_decref(hl);
	free(def_user);
	return t;
bad:
	for (size_t k = 0; k < *n; k++)
		sshc_target_release(&t[k]);
	free(t);
	json_decref(hl);
	free(def_user);
	*n = 0;
	return NULL;
}

void
ssh_free_targets(struct sshc_target *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sshc_target_release(&t[i]);
	free(t);
}
