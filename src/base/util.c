/*
 * util.c - allocation, strings, durations, paths, hashing helpers.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "base/util.h"
#include "zdm/step.h"

void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL) {
		fputs("zdm: out of memory\n", stderr);
		abort();
	}
	return p;
}

void *
xcalloc(size_t n, size_t m)
{
	void *p = calloc(n ? n : 1, m ? m : 1);

	if (p == NULL) {
		fputs("zdm: out of memory\n", stderr);
		abort();
	}
	return p;
}

void *
xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (q == NULL) {
		fputs("zdm: out of memory\n", stderr);
		abort();
	}
	return q;
}

char *
xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *
xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *
xvasprintf(const char *fmt, va_list ap)
{
	va_list aq;
	int n;
	char *p, c;

	va_copy(aq, ap);
	n = vsnprintf(&c, 1, fmt, aq);
	va_end(aq);
	if (n < 0)
		return xstrdup("(format error)");
	p = xmalloc((size_t)n + 1);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	return p;
}

char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *p;

	va_start(ap, fmt);
	p = xvasprintf(fmt, ap);
	va_end(ap);
	return p;
}

int
seterr(char **err, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || *err != NULL)
		return -1;
	va_start(ap, fmt);
	*err = xvasprintf(fmt, ap);
	va_end(ap);
	return -1;
}

int64_t
zdm_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- sbuf ---- */

void
sb_init(struct sbuf *sb)
{
	sb->cap = 64;
	sb->len = 0;
	sb->buf = xmalloc(sb->cap);
	sb->buf[0] = '\0';
}

void
sb_add(struct sbuf *sb, const void *p, size_t n)
{
	if (sb->len + n + 1 > sb->cap) {
		while (sb->len + n + 1 > sb->cap)
			sb->cap *= 2;
		sb->buf = xrealloc(sb->buf, sb->cap);
	}
	memcpy(sb->buf + sb->len, p, n);
	sb->len += n;
	sb->buf[sb->len] = '\0';
}

void
sb_adds(struct sbuf *sb, const char *s)
{
	sb_add(sb, s, strlen(s));
}

void
sb_addc(struct sbuf *sb, char c)
{
	sb_add(sb, &c, 1);
}

void
sb_addf(struct sbuf *sb, const char *fmt, ...)
{
	va_list ap;
	char *p;

	va_start(ap, fmt);
	p = xvasprintf(fmt, ap);
	va_end(ap);
	sb_adds(sb, p);
	free(p);
}

char *
sb_detach(struct sbuf *sb)
{
	char *p = sb->buf;

	sb->buf = NULL;
	sb->len = sb->cap = 0;
	return p;
}

void
sb_release(struct sbuf *sb)
{
	free(sb->buf);
	sb->buf = NULL;
	sb->len = sb->cap = 0;
}

/* ---- durations ---- */

int
parse_duration(const char *s, int64_t *ms)
{
	int64_t total = 0;
	const char *p = s;

	if (s == NULL || *s == '\0')
		return -1;
	while (*p != '\0') {
		char *end;
		double v;
		int64_t unit;

		if (!(*p >= '0' && *p <= '9'))
			return -1;
		errno = 0;
		v = strtod(p, &end);
		if (errno != 0 || end == p || v < 0)
			return -1;
		p = end;
		if (strncmp(p, "ms", 2) == 0) {
			unit = 1;
			p += 2;
		} else if (*p == 's') {
			unit = 1000;
			p++;
		} else if (*p == 'm') {
			unit = 60 * 1000;
			p++;
		} else if (*p == 'h') {
			unit = 3600 * 1000;
			p++;
		} else {
			return -1;
		}
		if (v * (double)unit > (double)INT64_MAX / 2)
			return -1;
		total += (int64_t)(v * (double)unit + 0.5);
	}
	*ms = total;
	return 0;
}

void
fmt_duration(int64_t ms, char *out, size_t n)
{
	if (ms < 1000)
		snprintf(out, n, "%lldms", (long long)ms);
	else if (ms < 60000)
		snprintf(out, n, "%.1fs", (double)ms / 1000.0);
	else if (ms < 3600000)
		snprintf(out, n, "%lldm%llds", (long long)(ms / 60000),
		    (long long)(ms % 60000 / 1000));
	else
		snprintf(out, n, "%lldh%lldm", (long long)(ms / 3600000),
		    (long long)(ms % 3600000 / 60000));
}

void
now_iso8601(char *out, size_t n)
{
	/* the seconds are formatted again only when they change (a journal
	 * record takes one of these) */
	static _Thread_local time_t sec = -1;
	static _Thread_local char buf[32];
	struct timespec ts;
	long msec;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (ts.tv_sec != sec) {
		struct tm tm;

		gmtime_r(&ts.tv_sec, &tm);
		if (strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm) == 0)
			buf[0] = '\0';
		sec = ts.tv_sec;
	}
	msec = ts.tv_nsec / 1000000;
	if (n == 0)
		return;
	if (strlen(buf) + 6 > n) {
		out[0] = '\0';
		return;
	}
	n = strlen(buf);
	memcpy(out, buf, n);
	out[n] = '.';
	out[n + 1] = (char)('0' + msec / 100);
	out[n + 2] = (char)('0' + msec / 10 % 10);
	out[n + 3] = (char)('0' + msec % 10);
	out[n + 4] = 'Z';
	out[n + 5] = '\0';
}

void
sha256_base64(const void *p, size_t n, char out[45])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (EVP_Digest(p, n, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
		abort();	/* SHA-256 is always there */
	EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen);
}

int
sha256_file(const char *path, char out[65], char **err)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	unsigned char buf[65536];
	EVP_MD_CTX *ctx;
	ssize_t r;
	int fd, rc = -1;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return seterr(err, "cannot read '%s': %s", path, strerror(errno));
	ctx = EVP_MD_CTX_new();
	if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		seterr(err, "sha256: cannot initialise digest");
		goto out;
	}
	for (;;) {
		r = read(fd, buf, sizeof buf);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			seterr(err, "cannot read '%s': %s", path, strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		EVP_DigestUpdate(ctx, buf, (size_t)r);
	}
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	for (unsigned int i = 0; i < mdlen; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	rc = 0;
out:
	EVP_MD_CTX_free(ctx);
	close(fd);
	return rc;
}

static size_t
edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t *prev, *cur, d;

	if (la > 64 || lb > 64)
		return 99;
	prev = xcalloc(lb + 1, sizeof *prev);
	cur = xcalloc(lb + 1, sizeof *cur);
	for (size_t j = 0; j <= lb; j++)
		prev[j] = j;
	for (size_t i = 1; i <= la; i++) {
		cur[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
			size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);

			cur[j] = del < ins ? del : ins;
			if (sub < cur[j])
				cur[j] = sub;
		}
		memcpy(prev, cur, (lb + 1) * sizeof *prev);
	}
	d = prev[lb];
	free(prev);
	free(cur);
	return d;
}

const char *
did_you_mean(const char *word, const char *const *cands)
{
	const char *best = NULL;
	size_t bestd = (size_t)-1, lim;

	lim = strlen(word) / 3 + 1;
	if (lim > 3)
		lim = 3;
	for (size_t i = 0; cands[i] != NULL; i++) {
		size_t d = edit_distance(word, cands[i]);

		if (d < bestd) {
			bestd = d;
			best = cands[i];
		}
	}
	return bestd <= lim ? best : NULL;
}

int
mkdir_p(const char *path, int mode)
{
	char *p = xstrdup(path);
	int rc = 0;

	for (char *s = p + 1; *s != '\0'; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, (mode_t)mode) != 0 && errno != EEXIST) {
			rc = -1;
			break;
		}
		*s = '/';
	}
	if (rc == 0 && mkdir(p, (mode_t)mode) != 0 && errno != EEXIST)
		rc = -1;
	free(p);
	return rc;
}

char *
path_join(const char *a, const char *b)
{
	size_t la = strlen(a);

	if (b[0] == '/')
		return xstrdup(b);
	if (la > 0 && a[la - 1] == '/')
		return xasprintf("%s%s", a, b);
	return xasprintf("%s/%s", a, b);
}

char *
path_dirname(const char *p)
{
	const char *s = strrchr(p, '/');

	if (s == NULL)
		return xstrdup(".");
	if (s == p)
		return xstrdup("/");
	return xstrndup(p, (size_t)(s - p));
}

char *
path_abs(const char *p)
{
	char *r = realpath(p, NULL);
	char cwd[PATH_MAX];

	if (r != NULL) {
		char *x = xstrdup(r);

		free(r);
		return x;
	}
	if (p[0] == '/' || getcwd(cwd, sizeof cwd) == NULL)
		return xstrdup(p);
	return path_join(cwd, p);
}

/* a JSON string of s; bytes that are not UTF-8 become U+FFFD (jansson
 * refuses invalid UTF-8, and command or HTTP output may be anything) */
json_t *
json_text(const char *s, size_t n)
{
	json_t *v = json_stringn(s, n);
	struct sbuf sb;
	size_t i = 0;

	if (v != NULL)
		return v;
	sb_init(&sb);
	while (i < n) {
		unsigned char c = (unsigned char)s[i];
		size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 :
		    (c >> 3) == 30 ? 4 : 0;
		json_t *probe = len && i + len <= n ? json_stringn(s + i, len) : NULL;

		if (probe != NULL) {
			sb_add(&sb, s + i, len);
			json_decref(probe);
			i += len;
		} else {
			sb_adds(&sb, "\xef\xbf\xbd");
			i++;
		}
	}
	v = json_stringn(sb.buf, sb.len);
	sb_release(&sb);
	return v != NULL ? v : json_string("");
}

static int
digits(const char **p, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return -1;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return 0;
}

/*
 * "2026-11-01" (midnight UTC), "2026-11-01T10:00", "2026-11-01T10:00:05",
 * with ".123" fractions and "Z" / "+02:00" / "-0530" zones (no zone = UTC;
 * ' ' may stand for 'T') -> ms since the epoch.  -1 on anything else,
 * including dates that do not exist (2026-02-30).  zdm runs --since, zdm audit
 * export --since and the journal's own times (ts) too.
 */
int
parse_time(const char *s, int64_t *ms)
{
	const char *p = s;
	struct tm tm, back;
	int y, mo, d, h = 0, mi = 0, sec = 0, frac = 0, fdig = 0, off = 0;
	time_t t;

	memset(&tm, 0, sizeof tm);
	if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' ||
	    digits(&p, 2, &d))
		return -1;
	if (*p == 'T' || *p == 't' || *p == ' ') {
		p++;
		if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi))
			return -1;
		if (*p == ':') {
			p++;
			if (digits(&p, 2, &sec))
				return -1;
			if (*p == '.' || *p == ',') {
				p++;
				while (*p >= '0' && *p <= '9') {
					if (fdig < 3) {
						frac = frac * 10 + (*p - '0');
						fdig++;
					}
					p++;
				}
				if (fdig == 0)
					return -1;
				while (fdig < 3) {
					frac *= 10;
					fdig++;
				}
			}
		}
		if (*p == 'Z' || *p == 'z') {
			p++;
		} else if (*p == '+' || *p == '-') {
			int sign = *p++ == '-' ? -1 : 1, oh, om;

			if (digits(&p, 2, &oh))
				return -1;
			if (*p == ':')
				p++;
			if (digits(&p, 2, &om) || oh > 23 || om > 59)
				return -1;
			off = sign * (oh * 60 + om);
		}
	}
	if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
		return -1;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec > 59 ? 59 : sec;
	t = timegm(&tm);
	if (t == (time_t)-1 || gmtime_r(&t, &back) == NULL || back.tm_mday != d ||
	    back.tm_mon != mo - 1)
		return -1;	/* 2026-02-30 normalises to March: not a date */
	*ms = ((int64_t)t - (int64_t)off * 60) * 1000 + frac;
	return 0;
}
