/*
 * socket.c - zdm.socket: one request and its reply over a unix socket or
 * a TCP connection, for plugins that drive a text admin interface (HAProxy's
 * runtime API, docs/lb.md).  Transport only: zdm sends the text as given and
 * hands back what the peer wrote until it closed; the protocol (commands,
 * replies) lives in the plugin.
 *
 *   zdm.socket(address, text [, opts]) -> reply [, true] | nil, message
 *
 *   address  "unix:/path", "/path" (a unix socket), or "HOST:PORT" / "[V6]:PORT"
 *            (TCP; HOST through getaddrinfo, the first address that connects)
 *   opts     timeout   ms for the whole exchange (connect, send, read), 1 to
 *                      10^12, default 5000; the step's deadline applies anyway
 *            cap       bytes of reply kept, 1 to 64 MiB, default 1 MiB; past it
 *                      the reply is cut and a second value `true` is returned
 *                      (a reply of exactly cap bytes is whole if the peer then
 *                      closes before the timeout)
 *            read_only boolean, default false: the plugin's promise that the
 *                      text only reads (`show servers state`); allows the call
 *                      in validate() and plan(), which must change nothing
 *
 * The exchange: connect (non-blocking, bounded), send the whole text, shut
 * down the write side (the peer sees end of input: HAProxy's non-interactive
 * mode answers and closes), then read until the peer closes or the cap.
 * Every wait is a poll() bounded by the earlier of the call's timeout and the
 * step's deadline (lua/lib.h); after a step deadline or a signal the call
 * raises (lhx_check) as zdm.exec does.  The reply is redacted (secrets read
 * as ***) and so ends at its first NUL byte.
 *
 * Errors are returned, not raised: "connect unix:/run/x.sock: No such file or
 * directory", "connect 127.0.0.1:9: Connection refused", "127.0.0.1:9999:
 * no reply within 5000 ms".  Bad arguments raise (luaL_check*).
 *
 * The socket and the reply buffer live in a full userdata with __gc and
 * __close, so an error raised part-way (memory, the deadline) frees them.
 */

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "base/proc.h"
#include "base/redact.h"
#include "lua/lib.h"
#include "zdm/step.h"

#define SOCK_MT "zdm.socket.conn"
#define SOCK_DEFAULT_TIMEOUT_MS 5000
#define SOCK_DEFAULT_CAP (1024 * 1024)
#define SOCK_MAX_CAP (64 * 1024 * 1024)
#define SOCK_MAX_TIMEOUT_MS 1000000000000LL

struct conn {
	int fd;
	char *buf;	/* the reply read so far (cap + 1 bytes) */
	char *red;	/* its redacted copy */
};

static void
conn_release(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->buf);
	c->buf = NULL;
	free(c->red);
	c->red = NULL;
}

static int
conn_gc(lua_State *L)
{
	conn_release(luaL_checkudata(L, 1, SOCK_MT));
	return 0;
}

/* non-blocking connect to one address; 0 ok, else -1 with msg set */
static int
connect_one(struct conn *c, int family, const struct sockaddr *sa, socklen_t len,
    int64_t deadline, const char *what, char *msg, size_t msz)
{
	int err = 0, r;
	socklen_t elen = sizeof err;

	c->fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		snprintf(msg, msz, "socket for %s: %s", what, strerror(errno));
		return -1;
	}
	if (connect(c->fd, sa, len) == 0)
		return 0;
	if (errno != EINPROGRESS) {
		snprintf(msg, msz, "connect %s: %s", what, strerror(errno));
		goto fail;
	}
	r = zdm_poll_fd(c->fd, POLLOUT, deadline);
	if (r == 0) {
		snprintf(msg, msz, "connect %s: no connection within the timeout", what);
		goto fail;
	}
	if (r < 0 || getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0) {
		snprintf(msg, msz, "connect %s: %s", what, strerror(errno));
		goto fail;
	}
	if (err != 0) {
		snprintf(msg, msz, "connect %s: %s", what, strerror(err));
		goto fail;
	}
	return 0;
fail:
	close(c->fd);
	c->fd = -1;
	return -1;
}

/* connect c to address; 0 ok, else -1 with msg */
static int
sock_connect(struct conn *c, const char *address, int64_t deadline, char *msg, size_t msz)
{
	const char *path = NULL;

	if (strncmp(address, "unix:", 5) == 0)
		path = address + 5;
	else if (address[0] == '/' || address[0] == '.')
		path = address;
	if (path != NULL) {
		struct sockaddr_un sun = { .sun_family = AF_UNIX };
		char what[sizeof sun.sun_path + 8];

		snprintf(what, sizeof what, "unix:%.*s", (int)sizeof sun.sun_path, path);
		if (path[0] == '\0' || strlen(path) >= sizeof sun.sun_path) {
			snprintf(msg, msz, "connect %s: the path must be 1 to %zu bytes",
			    what, sizeof sun.sun_path - 1);
			return -1;
		}
		memcpy(sun.sun_path, path, strlen(path) + 1);
		return connect_one(c, AF_UNIX, (struct sockaddr *)&sun, sizeof sun, deadline,
		    what, msg, msz);
	}

	/* HOST:PORT or [V6]:PORT */
	char host[256];
	const char *colon = strrchr(address, ':'), *h = address;
	size_t hlen;

	if (colon == NULL || colon[1] == '\0') {
		snprintf(msg, msz, "'%s' is neither a unix socket (unix:/path or /path) "
		    "nor HOST:PORT", address);
		return -1;
	}
	hlen = (size_t)(colon - address);
	if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
		h++;
		hlen -= 2;
	}
	if (hlen == 0 || hlen >= sizeof host) {
		snprintf(msg, msz, "'%s': no host before the port", address);
		return -1;
	}
	memcpy(host, h, hlen);
	host[hlen] = '\0';

	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC }, *ai, *a;
	int rc = getaddrinfo(host, colon + 1, &hints, &ai);

	if (rc != 0) {
		snprintf(msg, msz, "connect %s: %s", address, gai_strerror(rc));
		return -1;
	}
	rc = -1;
	for (a = ai; a != NULL && rc != 0; a = a->ai_next)
		rc = connect_one(c, a->ai_family, a->ai_addr, a->ai_addrlen, deadline, address,
		    msg, msz);
	freeaddrinfo(ai);
	return rc;
}

/* send all, shut the write side, read to EOF or cap; 0 ok, -1 with msg */
static int
sock_exchange(struct conn *c, const char *address, const char *text, size_t tlen,
    size_t cap, size_t *got, bool *cut, int64_t deadline, int64_t timeout,
    char *msg, size_t msz)
{
	size_t off = 0;
	int r;

	while (off < tlen) {
		ssize_t n = send(c->fd, text + off, tlen - off, MSG_NOSIGNAL);

		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			snprintf(msg, msz, "send to %s: %s", address, strerror(errno));
			return -1;
		}
		r = zdm_poll_fd(c->fd, POLLOUT, deadline);
		if (r <= 0) {
			snprintf(msg, msz, "send to %s: %s", address,
			    r == 0 ? "timed out" : strerror(errno));
			return -1;
		}
	}
	(void)shutdown(c->fd, SHUT_WR);

	*got = 0;
	*cut = false;
	for (;;) {
		ssize_t n = recv(c->fd, c->buf + *got, cap - *got, 0);

		if (n > 0) {
			*got += (size_t)n;
			if (*got == cap) {
				char one;

				/* exactly cap bytes and then the close is not a cut
				 * reply: wait for the next byte or the close */
				*cut = true;
				if (zdm_poll_fd(c->fd, POLLIN, deadline) == 1 &&
				    recv(c->fd, &one, 1, MSG_PEEK | MSG_DONTWAIT) == 0)
					*cut = false;
				break;
			}
			continue;
		}
		if (n == 0)
			break;
		if (errno != EAGAIN && errno != EINTR) {
			snprintf(msg, msz, "read from %s: %s", address, strerror(errno));
			return -1;
		}
		r = zdm_poll_fd(c->fd, POLLIN, deadline);
		if (r == 0) {
			snprintf(msg, msz, "%s: no complete reply within %lld ms (%zu bytes so far)",
			    address, (long long)timeout, *got);
			return -1;
		}
		if (r < 0) {
			snprintf(msg, msz, "read from %s: %s", address, strerror(errno));
			return -1;
		}
	}
	c->buf[*got] = '\0';
	return 0;
}

static int64_t
opt_int(lua_State *L, int t, const char *name, int64_t def, int64_t lo, int64_t hi)
{
	int64_t v = def;

	if (lua_getfield(L, t, name) != LUA_TNIL) {
		int isnum = 0;

		v = (int64_t)lua_tointegerx(L, -1, &isnum);
		if (!isnum || v < lo || v > hi)
			luaL_error(L, "zdm.socket: '%s' must be a whole number from %lld to %lld",
			    name, (long long)lo, (long long)hi);
	}
	lua_pop(L, 1);
	return v;
}

static int
lua_zdm_socket(lua_State *L)
{
	static const char *const known[] = { "timeout", "cap", "read_only", NULL };
	const char *address = luaL_checkstring(L, 1);
	size_t tlen;
	const char *text = luaL_checklstring(L, 2, &tlen);
	int64_t timeout = SOCK_DEFAULT_TIMEOUT_MS, cap = SOCK_DEFAULT_CAP, deadline, step_dl;
	bool read_only = false, cut = false;
	char msg[600] = "";
	size_t got = 0;
	struct conn *c;
	int rc;

	if (!lua_isnoneornil(L, 3)) {
		luaL_checktype(L, 3, LUA_TTABLE);
		lua_pushnil(L);
		while (lua_next(L, 3) != 0) {
			size_t i = 0;

			lua_pop(L, 1);
			if (lua_type(L, -1) == LUA_TSTRING)
				for (i = 0; known[i] != NULL; i++)
					if (strcmp(known[i], lua_tostring(L, -1)) == 0)
						break;
			if (lua_type(L, -1) != LUA_TSTRING || known[i] == NULL)
				return luaL_error(L, "zdm.socket: unknown option '%s' "
				    "(known: timeout, cap, read_only)", luaL_tolstring(L, -1, NULL));
		}
		timeout = opt_int(L, 3, "timeout", timeout, 1, SOCK_MAX_TIMEOUT_MS);
		cap = opt_int(L, 3, "cap", cap, 1, SOCK_MAX_CAP);
		lua_getfield(L, 3, "read_only");
		read_only = lua_toboolean(L, -1);
		lua_pop(L, 1);
	}
	if (!read_only)
		lhx_may_act(L, "zdm.socket without read_only = true");

	deadline = zdm_now_ms() + timeout;
	step_dl = lhx_deadline_ms(L);
	if (step_dl != 0 && step_dl < deadline)
		deadline = step_dl;

	c = lua_newuserdatauv(L, sizeof *c, 0);
	c->fd = -1;
	c->buf = NULL;
	c->red = NULL;
	luaL_setmetatable(L, SOCK_MT);
	c->buf = malloc((size_t)cap + 1);
	if (c->buf == NULL)
		return luaL_error(L, "zdm.socket: not enough memory for a %lld-byte reply",
		    (long long)cap);

	rc = sock_connect(c, address, deadline, msg, sizeof msg);
	if (rc == 0)
		rc = sock_exchange(c, address, text, tlen, (size_t)cap, &got, &cut, deadline,
		    timeout, msg, sizeof msg);
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	lhx_check(L);	/* the step's deadline or a signal: raise, the userdata frees */
	if (rc != 0) {
		c->red = redact_str(msg);
		lua_pushnil(L);
		lua_pushstring(L, c->red);
		conn_release(c);
		return 2;
	}
	c->red = redact_str(c->buf);
	lua_pushstring(L, c->red);
	conn_release(c);
	if (cut) {
		lua_pushboolean(L, 1);
		return 2;
	}
	return 1;
}

int
luaopen_zdm_socket(lua_State *L)
{
	lhx_resource_lib(L, SOCK_MT, conn_gc, "socket", lua_zdm_socket);
	return 0;
}
