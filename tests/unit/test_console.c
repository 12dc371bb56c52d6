/*
 * Unit tests of the console's pieces: display widths and cuts
 * (report/term.c term_fit) and the lines a command prints as they come
 * (base/proc.c on_line).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/proc.h"
#include "base/util.h"
#include "report/term.h"

#define CHECK(cond, what) do { if (cond) printf("ok - %s\n", what); \
	else { printf("not ok - %s\n", what); fails++; } } while (0)

struct got {
	struct sbuf b;
};

static void
on_line(void *arg, int stream, const char *line)
{
	struct got *g = arg;

	sb_addf(&g->b, "%d:%s|", stream, line);
}

int
unit_console(void)
{
	int fails = 0;
	size_t w, n;

	n = term_fit("hello", 80, &w);
	CHECK(n == 5 && w == 5, "term_fit: ASCII fits whole");
	n = term_fit("hello", 3, &w);
	CHECK(n == 3 && w == 3, "term_fit: ASCII cut at the width");
	/* 移 and 行 are two columns each, three bytes each */
	n = term_fit("a移行b", 4, &w);
	CHECK(n == 4 && w == 3, "term_fit: a wide character that would pass the width is left out whole");
	n = term_fit("a移行b", 5, &w);
	CHECK(n == 7 && w == 5, "term_fit: wide characters count two columns");
	n = term_fit("— x", 2, &w);
	CHECK(n == 4 && w == 2, "term_fit: an em dash is one column of three bytes");
	n = term_fit("\033[32mok\033[0m", 2, &w);
	CHECK(n == strlen("\033[32mok\033[0m") && w == 2, "term_fit: colour sequences take no column");
	n = term_fit("a\xff" "b", 2, &w);
	CHECK(n == 2 && w == 2, "term_fit: a stray byte is one column");
	n = term_fit("a\tb", 80, &w);
	CHECK(w == 10, "term_fit: a tab counts eight");

	{
		struct got g;
		struct proc_opts o;
		struct proc_result r;
		char *err = NULL;

		sb_init(&g.b);
		memset(&o, 0, sizeof o);
		o.shell = "printf 'one\\ntwo\\n'; printf 'e1\\n' >&2; printf 'last'";
		o.on_line = on_line;
		o.line_arg = &g;
		CHECK(proc_run(&o, &r, &err) == 0, "proc_run with on_line runs");
		CHECK(strstr(g.b.buf, "1:one|1:two|") != NULL && strstr(g.b.buf, "2:e1|") != NULL &&
		    strstr(g.b.buf, "1:last|") != NULL && strlen(g.b.buf) == strlen("1:one|1:two|2:e1|1:last|"),
		    "on_line: each line once, the last one without its newline too");
		CHECK(strcmp(r.out, "one\ntwo\nlast") == 0, "on_line: the captured output is unchanged");
		proc_result_release(&r);
		sb_release(&g.b);
	}
	return fails;
}
