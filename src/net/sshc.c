/*
 * sshc.c - the libssh2 client layer (sshc.h): non-blocking sessions driven
 * by poll with deadlines, run on a small thread pool, one session per host.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pwd.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libssh2.h>
#include <openssl/evp.h>

#include "base/proc.h"
#include "base/redact.h"
#include "base/util.h"
#include "net/sshc.h"
#include "zdm/step.h"

#define SSHC_SLICE_MS 200	/* longest single poll: signals and deadlines are seen this fast */
#define SSHC_BYE_MS 1000	/* time given to a polite disconnect */

/* ---- one session ------------------------------------------------------------ */

enum { SW_OK = 0, SW_TIMEOUT = 1, SW_INTR = 2 };
/* the last cap bytes of a stream, in memory that grows as data arrives
 * (never more than cap + 1 bytes): linear until cap bytes came, then a
 * ring whose oldest byte is at head; tail_finish() makes it one string */
struct tail {
	char *buf;
	size_t size;		/* bytes allocated, NUL excluded */
	size_t len;		/* bytes kept, <= cap */
	size_t head;		/* full ring: index of the oldest byte */
	bool trunc;		/* bytes were dropped from the head */
};

struct conn {
	struct sshc_job *j;
	const struct sshc_opts *o;
	int fd;
	LIBSSH2_SESSION *s;
	LIBSSH2_CHANNEL *ch;
	int64_t t0;
	int64_t deadline;	/* the phase's deadline (connect, then command) */
	struct tail tout, terr;	/* stdout and stderr kept so far */
	bool authed;		/* past connect_timeout's phase */
};

static int64_t
min_deadline(int64_t a, int64_t b)
{
	if (a == 0)
		return b;
	if (b == 0)
		return a;
	return a < b ? a : b;
}

/* wait (one poll slice at most) for the socket in the direction libssh2 is
 * blocked on */
static int
waitsock(struct conn *c)
{
	struct pollfd p = { .fd = c->fd };
	int dir = c->s ? libssh2_session_block_directions(c->s) : 0;
	int64_t now = zdm_now_ms(), t = SSHC_SLICE_MS;

	if (zdm_interrupted)
		return SW_INTR;
	if (c->deadline != 0 && now >= c->deadline)
		return SW_TIMEOUT;
	if (c->deadline != 0 && c->deadline - now < t)
		t = c->deadline - now;
	if (dir & LIBSSH2_SESSION_BLOCK_INBOUND)
		p.events |= POLLIN;
	if (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND)
		p.events |= POLLOUT;
	if (p.events == 0)
		p.events = POLLIN;
#ifdef TCP_QUICKACK
	/* ACK what libssh2 has read now: sshd keeps Nagle on until a command
	 * starts, so a small packet it sends behind another (the channel-open
	 * confirmation behind its host-keys notice) waits for our ACK, which
	 * Linux would delay up to 40 ms.  Not sticky: set before each wait. */
	{
		int one = 1;

		(void)setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
	}
#endif
	(void)poll(&p, 1, (int)t);
	return SW_OK;
}

static const char *
last_error(struct conn *c)
{
	char *m = NULL;

	if (c->s == NULL)
		return "no session";
	libssh2_session_last_error(c->s, &m, NULL, 0);
	return m && *m ? m : "unknown libssh2 error";
}

/* set the job's error (first wins) */
static void jerr(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
jerr(struct conn *c, const char *fmt, ...)
{
	va_list ap;

	if (c->j->error != NULL)
		return;
	va_start(ap, fmt);
	c->j->error = xvasprintf(fmt, ap);
	va_end(ap);
}

/* a configured limit as a runbook writes it: "1s", "2m", else "1.5s" */
static void
limit_text(int64_t ms, char *d, size_t n)
{
	if (ms > 0 && ms % 60000 == 0)
		snprintf(d, n, "%lldm", (long long)(ms / 60000));
	else if (ms > 0 && ms % 1000 == 0)
		snprintf(d, n, "%llds", (long long)(ms / 1000));
	else
		fmt_duration(ms, d, n);
}

/* say why a wait ended; returns -1 */
static int
wait_failed(struct conn *c, int w, const char *doing)
{
	char d[32];

	if (w == SW_INTR) {
		c->j->interrupted = true;
		jerr(c, "interrupted while %s", doing);
	} else {
		/* name the limit that ended the wait (as configured, not as
		 * measured): the connect timeout, the host's, or the step's */
		c->j->timed_out = true;
		if (!c->authed && c->deadline == c->t0 + c->o->connect_timeout_ms) {
			limit_text(c->o->connect_timeout_ms, d, sizeof d);
			jerr(c, "timed out after %s (connect timeout) while %s", d, doing);
		} else if (c->j->timeout_ms > 0 && c->deadline == c->t0 + c->j->timeout_ms) {
			limit_text(c->j->timeout_ms, d, sizeof d);
			jerr(c, "timed out after %s (host timeout) while %s", d, doing);
		} else {
			jerr(c, "timed out (the step's deadline passed) while %s", doing);
		}
	}
	return -1;
}

/* non-blocking TCP connect to any address of the host, bounded by the deadline */
static int
tcp_connect(struct conn *c)
{
	struct addrinfo hints, *ai = NULL, *a;
	char port[16];
	int rc, last = 0;

	memset(&hints, 0, sizeof hints);
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_family = AF_UNSPEC;
	snprintf(port, sizeof port, "%d", c->j->t->port);
	rc = getaddrinfo(c->j->t->host, port, &hints, &ai);
	if (rc != 0) {
		jerr(c, "cannot resolve '%s': %s", c->j->t->host, gai_strerror(rc));
		return -1;
	}
	for (a = ai; a != NULL; a = a->ai_next) {
		int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);

		if (fd < 0) {
			last = errno;
			continue;
		}
		if (connect(fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
			last = errno;
			close(fd);
			continue;
		}
		for (;;) {
			struct pollfd p = { .fd = fd, .events = POLLOUT };
			int64_t now = zdm_now_ms(), t = SSHC_SLICE_MS;
			int soerr = 0;
			socklen_t sl = sizeof soerr;

			if (zdm_interrupted || (c->deadline != 0 && now >= c->deadline)) {
				close(fd);
				freeaddrinfo(ai);
				c->fd = -1;
				return wait_failed(c, zdm_interrupted ? SW_INTR : SW_TIMEOUT, "connecting");
			}
			if (c->deadline != 0 && c->deadline - now < t)
				t = c->deadline - now;
			if (poll(&p, 1, (int)t) <= 0)
				continue;
			if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
				soerr = errno;
			if (soerr != 0) {
				last = soerr;
				close(fd);
				fd = -1;
			}
			break;
		}
		if (fd >= 0) {
			int one = 1;

			/* SSH writes small packets back to back (NEWKEYS then
			 * SERVICE_REQUEST, CHANNEL_CLOSE then DISCONNECT): with
			 * Nagle's algorithm the second waits for the first's ACK,
			 * which the server delays up to 40 ms (Linux TCP_DELACK_MIN) */
			(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
			c->fd = fd;
			freeaddrinfo(ai);
			return 0;
		}
	}
	freeaddrinfo(ai);
	jerr(c, "cannot connect to port %d: %s (is sshd running there?)", c->j->t->port,
	    strerror(last ? last : ECONNREFUSED));
	return -1;
}

/* "SHA256:base64" of a raw key blob, as OpenSSH prints it */
static void
fingerprint(const unsigned char *blob, size_t len, char out[64])
{
	unsigned char md[32];
	unsigned int mdlen = 0;
	unsigned char b64[64];
	int n;

	EVP_Digest(blob, len, md, &mdlen, EVP_sha256(), NULL);
	n = EVP_EncodeBlock(b64, md, (int)mdlen);
	while (n > 0 && b64[n - 1] == '=')
		n--;
	snprintf(out, 64, "SHA256:%.*s", n, (const char *)b64);
}

/* fingerprint of a base64 key as stored in known_hosts */
static void
fingerprint_b64(const char *b64, char out[64])
{
	size_t l = strlen(b64), pad = 0;
	unsigned char *raw = xmalloc(l / 4 * 3 + 4);
	int n;

	while (pad < l && b64[l - 1 - pad] == '=')
		pad++;
	n = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)l);
	if (n < 0) {
		snprintf(out, 64, "(unreadable key)");
	} else {
		fingerprint(raw, (size_t)n - (pad < 3 ? pad : 0), out);
	}
	free(raw);
}

static const char *
key_name(int type, int *mask)
{
	switch (type) {
	case LIBSSH2_HOSTKEY_TYPE_RSA: *mask = LIBSSH2_KNOWNHOST_KEY_SSHRSA; return "ssh-rsa";
	case LIBSSH2_HOSTKEY_TYPE_DSS: *mask = LIBSSH2_KNOWNHOST_KEY_SSHDSS; return "ssh-dss";
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: *mask = LIBSSH2_KNOWNHOST_KEY_ECDSA_256; return "ecdsa-sha2-nistp256";
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: *mask = LIBSSH2_KNOWNHOST_KEY_ECDSA_384; return "ecdsa-sha2-nistp384";
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: *mask = LIBSSH2_KNOWNHOST_KEY_ECDSA_521; return "ecdsa-sha2-nistp521";
	case LIBSSH2_HOSTKEY_TYPE_ED25519: *mask = LIBSSH2_KNOWNHOST_KEY_ED25519; return "ssh-ed25519";
	default: *mask = LIBSSH2_KNOWNHOST_KEY_UNKNOWN; return "unknown";
	}
}

/* known_hosts is read, checked and (accept-new) appended under one lock, so
 * two hosts accepted at once both land in the file */
static pthread_mutex_t kh_lock = PTHREAD_MUTEX_INITIALIZER;

static int
check_host_key(struct conn *c)
{
	const struct sshc_target *t = c->j->t;
	const char *kh = c->o->known_hosts;
	size_t klen = 0;
	int ktype = 0, mask, rc, ret = -1;
	const char *key = libssh2_session_hostkey(c->s, &klen, &ktype), *kname;
	LIBSSH2_KNOWNHOSTS *khs;
	struct libssh2_knownhost *found = NULL;
	char fp[64], oldfp[64], name[300];

	if (key == NULL) {
		jerr(c, "the server sent no host key: %s", last_error(c));
		return -1;
	}
	kname = key_name(ktype, &mask);
	fingerprint((const unsigned char *)key, klen, fp);
	if (t->port == 22)
		snprintf(name, sizeof name, "%s", t->host);
	else
		snprintf(name, sizeof name, "[%s]:%d", t->host, t->port);
	pthread_mutex_lock(&kh_lock);
	khs = libssh2_knownhost_init(c->s);
	if (khs == NULL) {
		jerr(c, "cannot check the host key: %s", last_error(c));
		goto out;
	}
	/* line by line, so a line libssh2 does not understand (a certificate
	 * authority, a security-key type) is skipped instead of failing the file */
	{
		FILE *f = fopen(kh, "re");
		char *line = NULL;
		size_t cap = 0;
		ssize_t ll;

		if (f == NULL && errno != ENOENT) {
			jerr(c, "cannot read known_hosts '%s': %s", kh, strerror(errno));
			goto out;
		}
		while (f != NULL && (ll = getline(&line, &cap, f)) > 0) {
			if (line[0] == '#' || line[0] == '\n' || line[0] == '@')
				continue;
			(void)libssh2_knownhost_readline(khs, line, (size_t)ll,
			    LIBSSH2_KNOWNHOST_FILE_OPENSSH);
		}
		free(line);
		if (f != NULL)
			fclose(f);
	}
	rc = libssh2_knownhost_checkp(khs, t->host, t->port, key, klen,
	    LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | mask, &found);
	switch (rc) {
	case LIBSSH2_KNOWNHOST_CHECK_MATCH:
		ret = 0;
		break;
	case LIBSSH2_KNOWNHOST_CHECK_MISMATCH:
		if (found != NULL && found->key != NULL)
			fingerprint_b64(found->key, oldfp);
		else
			snprintf(oldfp, sizeof oldfp, "(unknown)");
		jerr(c, "HOST KEY CHANGED: %s in %s has %s, the server offered %s %s; refused "
		    "(a changed key is never accepted, whatever host_key_policy says). If the change "
		    "is expected, remove the old key: ssh-keygen -R '%s' -f %s", name, kh, oldfp, kname,
		    fp, name, kh);
		break;
	case LIBSSH2_KNOWNHOST_CHECK_NOTFOUND:
		if (c->o->policy != SSHC_STRICT && c->o->check_only) {
			/* a rehearsal writes nothing: the run will add it */
			c->j->key_new = true;
			ret = 0;
			break;
		}
		if (c->o->policy == SSHC_STRICT) {
			jerr(c, "unknown host key %s %s: %s is not in %s (host_key_policy strict); check the "
			    "fingerprint and add it (ssh-keyscan -p %d %s >> %s) or use host_key_policy: accept-new",
			    kname, fp, name, kh, t->port, t->host, kh);
			break;
		} else {
			char line[16384];
			size_t ll = 0;
			int fd;

			if (libssh2_knownhost_addc(khs, name, NULL, key, klen, NULL, 0,
			    LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | mask, &found) != 0 ||
			    libssh2_knownhost_writeline(khs, found, line, sizeof line - 1, &ll,
			    LIBSSH2_KNOWNHOST_FILE_OPENSSH) != 0) {
				jerr(c, "cannot add the host key to %s: %s", kh, last_error(c));
				break;
			}
			/* one write(2) with O_APPEND: the line lands whole after
			 * whatever others appended */
			fd = open(kh, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
			if (fd < 0 || write(fd, line, ll) != (ssize_t)ll || fsync(fd) != 0) {
				jerr(c, "cannot append the new host key to %s: %s", kh, strerror(errno));
				if (fd >= 0)
					close(fd);
				break;
			}
			close(fd);
			ret = 0;
		}
		break;
	default:
		jerr(c, "cannot check the host key against %s: %s", kh, last_error(c));
		break;
	}
out:
	if (khs != NULL)
		libssh2_knownhost_free(khs);
	pthread_mutex_unlock(&kh_lock);
	return ret;
}

static int
auth_key(struct conn *c)
{
	const struct sshc_target *t = c->j->t;
	int rc, w;

	while ((rc = libssh2_userauth_publickey_fromfile_ex(c->s, t->user,
	    (unsigned int)strlen(t->user), NULL, c->o->key_file, c->o->passphrase)) ==
	    LIBSSH2_ERROR_EAGAIN)
		if ((w = waitsock(c)) != SW_OK)
			return wait_failed(c, w, "authenticating");
	if (rc == 0)
		return 0;
	if (rc == LIBSSH2_ERROR_FILE)
		jerr(c, "cannot use key_file %s: %s (check the file and its passphrase)",
		    c->o->key_file, last_error(c));
	else
		jerr(c, "authentication as '%s' with key_file %s failed: %s (is its public key in "
		    "~%s/.ssh/authorized_keys on the host?)", t->user, c->o->key_file, last_error(c), t->user);
	return -1;
}

static int
auth_agent(struct conn *c)
{
	const struct sshc_target *t = c->j->t;
	LIBSSH2_AGENT *ag;
	struct libssh2_agent_publickey *id = NULL, *prev = NULL;
	int rc, w, ret = -1, tried = 0;

	if (getenv("SSH_AUTH_SOCK") == NULL || *getenv("SSH_AUTH_SOCK") == '\0') {
		jerr(c, "no key_file given and no ssh-agent (SSH_AUTH_SOCK is not set): name a "
		    "key_file, or start ssh-agent and ssh-add the key");
		return -1;
	}
	ag = libssh2_agent_init(c->s);
	if (ag == NULL) {
		jerr(c, "cannot use ssh-agent: %s", last_error(c));
		return -1;
	}
	if (libssh2_agent_connect(ag) != 0 || libssh2_agent_list_identities(ag) != 0) {
		jerr(c, "cannot use ssh-agent at %s: %s", getenv("SSH_AUTH_SOCK"), last_error(c));
		goto out;
	}
	while ((rc = libssh2_agent_get_identity(ag, &id, prev)) == 0) {
		tried++;
		while ((rc = libssh2_agent_userauth(ag, t->user, id)) == LIBSSH2_ERROR_EAGAIN)
			if ((w = waitsock(c)) != SW_OK) {
				wait_failed(c, w, "authenticating with ssh-agent");
				goto out;
			}
		if (rc == 0) {
			ret = 0;
			goto out;
		}
		prev = id;
	}
	jerr(c, "authentication as '%s' failed with all %d key%s of ssh-agent (is one of them in "
	    "~%s/.ssh/authorized_keys on the host?)", t->user, tried, tried == 1 ? "" : "s", t->user);
out:
	libssh2_agent_disconnect(ag);
	libssh2_agent_free(ag);
	return ret;
}

static void
tail_reserve(struct tail *t, size_t need, size_t cap)
{
	size_t sz = t->size ? t->size : 4096;

	if (need <= t->size)
		return;
	while (sz < need)
		sz = sz > SIZE_MAX / 2 ? need : sz * 2;
	if (sz > cap)
		sz = cap;
	t->buf = xrealloc(t->buf, sz + 1);
	t->size = sz;
}

static void
keep_tail(struct tail *t, size_t cap, const char *p, size_t n)
{
	size_t k;

	if (cap == 0 || n == 0)
		return;
	if (n >= cap) {		/* this read alone fills the cap */
		tail_reserve(t, cap, cap);
		t->trunc = t->trunc || n > cap || t->len > 0;
		memcpy(t->buf, p + n - cap, cap);
		t->len = cap;
		t->head = 0;
		return;
	}
	if (t->len < cap) {	/* linear part: fill up to the cap */
		k = cap - t->len < n ? cap - t->len : n;
		tail_reserve(t, t->len + k, cap);
		memcpy(t->buf + t->len, p, k);
		t->len += k;
		p += k;
		n -= k;
	}
	if (n == 0)
		return;
	/* full: overwrite the oldest bytes */
	t->trunc = true;
	k = cap - t->head < n ? cap - t->head : n;
	memcpy(t->buf + t->head, p, k);
	memcpy(t->buf, p + k, n - k);
	t->head = (t->head + n) % cap;
}

static void
reverse(char *a, size_t n)
{
	for (size_t i = 0; i < n / 2; i++) {
		char c = a[i];

		a[i] = a[n - 1 - i];
		a[n - 1 - i] = c;
	}
}

/* hand the tail over as a NUL-terminated string, oldest byte first */
static void
tail_finish(struct tail *t, char **out, size_t *len, bool *trunc)
{
	if (t->head != 0) {	/* rotate in place: no second cap-sized buffer */
		reverse(t->buf, t->head);
		reverse(t->buf + t->head, t->len - t->head);
		reverse(t->buf, t->len);
	}
	if (t->buf != NULL)
		t->buf[t->len] = '\0';
	*out = t->buf;
	*len = t->len;
	*trunc = t->trunc;
	memset(t, 0, sizeof *t);
}

static int
exec_command(struct conn *c)
{
	struct sshc_job *j = c->j;
	int rc, w;
	char buf[16384];

	for (;;) {
		c->ch = libssh2_channel_open_session(c->s);
		if (c->ch != NULL)
			break;
		if (libssh2_session_last_errno(c->s) != LIBSSH2_ERROR_EAGAIN) {
			jerr(c, "cannot open a channel: %s", last_error(c));
			return -1;
		}
		if ((w = waitsock(c)) != SW_OK)
			return wait_failed(c, w, "opening a channel");
	}
	while ((rc = libssh2_channel_exec(c->ch, j->command)) == LIBSSH2_ERROR_EAGAIN)
		if ((w = waitsock(c)) != SW_OK)
			return wait_failed(c, w, "starting the command");
	if (rc != 0) {
		jerr(c, "cannot start the command: %s", last_error(c));
		return -1;
	}
	j->ran = true;
	for (;;) {
		ssize_t n1, n2;
		bool again = false;

		n1 = libssh2_channel_read_ex(c->ch, 0, buf, sizeof buf);
		if (n1 > 0)
			keep_tail(&c->tout, j->cap, buf, (size_t)n1);
		n2 = libssh2_channel_read_ex(c->ch, SSH_EXTENDED_DATA_STDERR, buf, sizeof buf);
		if (n2 > 0)
			keep_tail(&c->terr, j->cap, buf, (size_t)n2);
		if ((n1 < 0 && n1 != LIBSSH2_ERROR_EAGAIN) || (n2 < 0 && n2 != LIBSSH2_ERROR_EAGAIN)) {
			jerr(c, "lost the connection while the command ran: %s", last_error(c));
			return -1;
		}
		if (n1 > 0 || n2 > 0)
			continue;
		if (libssh2_channel_eof(c->ch))
			break;
		again = n1 == LIBSSH2_ERROR_EAGAIN || n2 == LIBSSH2_ERROR_EAGAIN;
		if (again && (w = waitsock(c)) != SW_OK)
			return wait_failed(c, w, "the command ran");
	}
	while ((rc = libssh2_channel_close(c->ch)) == LIBSSH2_ERROR_EAGAIN)
		if ((w = waitsock(c)) != SW_OK)
			return wait_failed(c, w, "closing the channel");
	while ((rc = libssh2_channel_wait_closed(c->ch)) == LIBSSH2_ERROR_EAGAIN)
		if ((w = waitsock(c)) != SW_OK)
			return wait_failed(c, w, "waiting for the exit status");
	{
		char *sig = NULL;
		size_t sl = 0;

		libssh2_channel_get_exit_signal(c->ch, &sig, &sl, NULL, NULL, NULL, NULL);
		if (sig != NULL) {
			j->exit_signal = xstrndup(sig, sl);
			libssh2_free(c->s, sig);
			j->exit_code = -1;
		} else {
			j->exit_code = libssh2_channel_get_exit_status(c->ch);
		}
	}
	return 0;
}

/* end the session: a short polite goodbye, then free everything.  In
 * non-blocking mode libssh2's free calls return EAGAIN while they still
 * have something to send; past the goodbye's deadline (or after a signal)
 * the socket is shut down, so they fail at once and free. */
static void
conn_close(struct conn *c)
{
	int64_t bye = zdm_now_ms() + SSHC_BYE_MS;
	bool cut = false;

	c->deadline = bye;
	for (int i = 0; c->ch != NULL && i < 100; i++) {
		if (libssh2_channel_free(c->ch) != LIBSSH2_ERROR_EAGAIN) {
			c->ch = NULL;
			break;
		}
		if (!cut && (zdm_interrupted || waitsock(c) != SW_OK)) {
			shutdown(c->fd, SHUT_RDWR);
			cut = true;
		}
	}
	if (c->s != NULL && c->fd >= 0 && !cut && !zdm_interrupted)
		while (libssh2_session_disconnect(c->s, "zdm done") == LIBSSH2_ERROR_EAGAIN)
			if (waitsock(c) != SW_OK)
				break;
	for (int i = 0; c->s != NULL && i < 100; i++) {
		if (libssh2_session_free(c->s) != LIBSSH2_ERROR_EAGAIN) {
			c->s = NULL;
			break;
		}
		if (!cut && (zdm_interrupted || waitsock(c) != SW_OK)) {
			if (c->fd >= 0)
				shutdown(c->fd, SHUT_RDWR);
			cut = true;
		}
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

static pthread_once_t sshc_once = PTHREAD_ONCE_INIT;
static int sshc_init_rc;

static void
sshc_init(void)
{
	sshc_init_rc = libssh2_init(0);
	atexit(libssh2_exit);
}

static void
run_job(const struct sshc_opts *o, struct sshc_job *j)
{
	struct conn c = { .j = j, .o = o, .fd = -1 };
	int rc, w;

	c.t0 = zdm_now_ms();
	j->exit_code = -1;
	pthread_once(&sshc_once, sshc_init);
	if (sshc_init_rc != 0) {
		jerr(&c, "libssh2 did not initialise");
		goto done;
	}
	if (j->timeout_ms > 0)
		j->deadline_ms = min_deadline(j->deadline_ms, c.t0 + j->timeout_ms);
	c.deadline = min_deadline(j->deadline_ms, c.t0 + o->connect_timeout_ms);
	if (tcp_connect(&c) != 0)
		goto done;
	c.s = libssh2_session_init();
	if (c.s == NULL) {
		jerr(&c, "cannot create an SSH session");
		goto done;
	}
	libssh2_session_set_blocking(c.s, 0);
	while ((rc = libssh2_session_handshake(c.s, c.fd)) == LIBSSH2_ERROR_EAGAIN)
		if ((w = waitsock(&c)) != SW_OK) {
			wait_failed(&c, w, "waiting for the SSH handshake (no SSH server answering?)");
			goto done;
		}
	if (rc != 0) {
		jerr(&c, "SSH handshake failed: %s", last_error(&c));
		goto done;
	}
	if (check_host_key(&c) != 0)
		goto done;
	if ((o->key_file != NULL ? auth_key(&c) : auth_agent(&c)) != 0)
		goto done;
	c.deadline = j->deadline_ms;
	c.authed = true;
	j->authed = true;
	if (!o->check_only)
		exec_command(&c);
done:
	conn_close(&c);
	tail_finish(&c.tout, &j->out, &j->out_len, &j->out_trunc);
	tail_finish(&c.terr, &j->err, &j->err_len, &j->err_trunc);
	j->duration_ms = zdm_now_ms() - c.t0;
}

void
sshc_job_release(struct sshc_job *j)
{
	free(j->exit_signal);
	free(j->out);
	free(j->err);
	free(j->error);
	j->exit_signal = j->out = j->err = j->error = NULL;
}

/* ---- the pool ---------------------------------------------------------------- */

struct pool {
	const struct sshc_opts *o;
	struct sshc_job *jobs;
	size_t n, next;
	size_t *done;		/* ended jobs, in order */
	size_t ndone, taken;	/* ndone written by workers, taken by the caller */
	pthread_mutex_t mu;
	pthread_cond_t cv;
};

static void *
worker(void *arg)
{
	struct pool *p = arg;

	for (;;) {
		size_t i;

		pthread_mutex_lock(&p->mu);
		if (p->next >= p->n) {
			pthread_mutex_unlock(&p->mu);
			return NULL;
		}
		i = p->next++;
		pthread_mutex_unlock(&p->mu);
		if (zdm_interrupted) {
			p->jobs[i].interrupted = true;
			p->jobs[i].exit_code = -1;
			p->jobs[i].error = xstrdup("interrupted before it started");
		} else {
			run_job(p->o, &p->jobs[i]);
		}
		pthread_mutex_lock(&p->mu);
		p->done[p->ndone++] = i;
		pthread_cond_signal(&p->cv);
		pthread_mutex_unlock(&p->mu);
	}
}

void
sshc_run_all(const struct sshc_opts *o, struct sshc_job *jobs, size_t n,
    int max_parallel, void (*on_done)(size_t i, void *arg), void *arg)
{
	struct pool p = { .o = o, .jobs = jobs, .n = n };
	size_t nt = n < (size_t)(max_parallel > 0 ? max_parallel : 1) ? n :
	    (size_t)(max_parallel > 0 ? max_parallel : 1), started = 0;
	pthread_t *th = xcalloc(nt ? nt : 1, sizeof *th);

	if (n == 0) {
		free(th);
		return;
	}
	p.done = xcalloc(n, sizeof *p.done);
	pthread_mutex_init(&p.mu, NULL);
	pthread_cond_init(&p.cv, NULL);
	for (size_t k = 0; k < nt; k++) {
		if (pthread_create(&th[started], NULL, worker, &p) == 0)
			started++;
	}
	if (started == 0)		/* no thread: run them here, one by one */
		worker(&p);
	pthread_mutex_lock(&p.mu);
	while (p.taken < n) {
		if (p.taken < p.ndone) {
			size_t i = p.done[p.taken++];

			pthread_mutex_unlock(&p.mu);
			if (on_done != NULL)
				on_done(i, arg);
			pthread_mutex_lock(&p.mu);
			continue;
		}
		{
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += SSHC_SLICE_MS * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&p.cv, &p.mu, &ts);
		}
		if (zdm_tick != NULL || zdm_watch != NULL) {
			pthread_mutex_unlock(&p.mu);
			zdm_ticked();
			pthread_mutex_lock(&p.mu);
		}
	}
	pthread_mutex_unlock(&p.mu);
	for (size_t k = 0; k < started; k++)
		pthread_join(th[k], NULL);
	pthread_cond_destroy(&p.cv);
	pthread_mutex_destroy(&p.mu);
	free(p.done);
	free(th);
}
