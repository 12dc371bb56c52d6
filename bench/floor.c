/*
 * floor.c - the least a durable exec step can cost, for bench/scale.sh.
 *
 *   floor FILE STEPS [PROGRAM]
 *
 * For each of STEPS steps: append a journal-sized line to FILE and fdatasync
 * it (the "started" record), posix_spawn PROGRAM (default /bin/true) and wait
 * for it, append a second line and fdatasync (the "succeeded" record).  That
 * is what a write-ahead journal of an exec step cannot do without, with no
 * parsing, no JSON, no hashing: the floor zdm run is held against, in wall
 * time and in instructions (callgrind counts this process, not the child).
 *
 * Exits 0 when every step was written, synced and its program exited 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static int append_sync(int fd, const char *line, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, line, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		line += n;
		len -= (size_t)n;
	}
	return fdatasync(fd);
}

int main(int argc, char **argv)
{
	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: floor FILE STEPS [PROGRAM]\n");
		return 2;
	}
	char *end;
	long steps = strtol(argv[2], &end, 10);
	if (*end != '\0' || steps < 1 || steps > 10000000) {
		fprintf(stderr, "floor: STEPS must be 1..10000000\n");
		return 2;
	}
	char *prog = argc == 4 ? argv[3] : "/bin/true";
	int fd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0) {
		perror(argv[1]);
		return 1;
	}
	/* about the size of a step.started / step.succeeded record */
	char line[384];
	memset(line, 'x', sizeof line);
	line[sizeof line - 1] = '\n';

	for (long i = 0; i < steps; i++) {
		if (append_sync(fd, line, sizeof line) != 0) {
			perror("floor: append");
			return 1;
		}
		pid_t pid;
		char *args[] = { prog, NULL };
		int rc = posix_spawn(&pid, prog, NULL, NULL, args, environ);
		if (rc != 0) {
			fprintf(stderr, "floor: posix_spawn %s: %s\n", prog, strerror(rc));
			return 1;
		}
		int st;
		while (waitpid(pid, &st, 0) < 0) {
			if (errno != EINTR) {
				perror("floor: waitpid");
				return 1;
			}
		}
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fprintf(stderr, "floor: %s did not exit 0\n", prog);
			return 1;
		}
		if (append_sync(fd, line, sizeof line) != 0) {
			perror("floor: append");
			return 1;
		}
	}
	if (close(fd) != 0) {
		perror("floor: close");
		return 1;
	}
	return 0;
}
