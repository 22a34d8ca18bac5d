/*
 * l4stb_ratesched: apply a bottleneck rate schedule to a dummynet pipe at absolute times.
 *
 * Usage: l4stb_ratesched SCHEDULE [IPFW]
 *
 * SCHEDULE holds one step per line, "AT_US PIPE BW DELAY_MS" (AT_US: microseconds after the helper starts,
 * non-decreasing; BW: ipfw's bandwidth word, e.g. 8Mbit/s; lines starting with '#' are skipped), written by
 * l4stb.providers.freebsd.plans.rate_schedule_file. Every deadline is computed from one start time read from CLOCK_MONOTONIC and
 * slept to with clock_nanosleep(TIMER_ABSTIME) (FreeBSD sys/kern/kern_time.c kern_clock_nanosleep: CLOCK_MONOTONIC
 * with TIMER_ABSTIME), so the time each `ipfw pipe N config` takes never shifts the steps after it. For each step
 * it prints "l4stb-rate AT_US APPLIED_US DONE_US BW RC": when ipfw was started and when it finished, in
 * microseconds after the start, and its exit status. IPFW defaults to /sbin/ipfw (a test passes a stand-in).
 * It stops at the first step whose ipfw fails, with that step's exit status.
 */

#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_LINE 256
#define MAX_WORD 32

static int64_t
now_us(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return ((int64_t)(t.tv_sec - t0->tv_sec) * 1000000 + (t.tv_nsec - t0->tv_nsec) / 1000);
}

static void
sleep_until(const struct timespec *t0, int64_t at_us)
{
	struct timespec when;
	int error;

	when.tv_sec = t0->tv_sec + (time_t)(at_us / 1000000);
	when.tv_nsec = t0->tv_nsec + (long)(at_us % 1000000) * 1000;
	if (when.tv_nsec >= 1000000000L) {
		when.tv_sec++;
		when.tv_nsec -= 1000000000L;
	}
	do
		error = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &when, NULL);
	while (error == EINTR);
}

/* A word of letters, digits and '/' only (an ipfw bandwidth such as 8Mbit/s): nothing a shell would read. */
static int
plain_word(const char *w)
{
	size_t i, n = strlen(w);

	if (n == 0 || n >= MAX_WORD)
		return (0);
	for (i = 0; i < n; i++)
		if (!((w[i] >= '0' && w[i] <= '9') || (w[i] >= 'a' && w[i] <= 'z') ||
		    (w[i] >= 'A' && w[i] <= 'Z') || w[i] == '/'))
			return (0);
	return (1);
}

static int
run_ipfw(const char *ipfw, const char *pipe, const char *bw, const char *delay)
{
	char *argv[] = { (char *)"ipfw", (char *)"-q", (char *)"pipe", (char *)pipe, (char *)"config",
	    (char *)"bw", (char *)bw, (char *)"delay", (char *)delay, NULL };
	pid_t pid;
	int status;

	pid = fork();
	if (pid < 0)
		return (127);
	if (pid == 0) {
		execv(ipfw, argv);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return (127);
	return (WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}

int
main(int argc, char **argv)
{
	char line[MAX_LINE], bw[MAX_WORD], pipe_s[MAX_WORD], delay_s[MAX_WORD];
	const char *ipfw = argc > 2 ? argv[2] : "/sbin/ipfw";
	long long at_us, last_us = 0, pipe_n, delay_n;
	struct timespec t0, wall;
	int64_t applied, done;
	unsigned long lineno = 0, steps = 0;
	FILE *f;
	int rc, n;

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: l4stb_ratesched SCHEDULE [IPFW]\n");
		return (2);
	}
	f = fopen(argv[1], "r");
	if (f == NULL) {
		perror(argv[1]);
		return (2);
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	clock_gettime(CLOCK_REALTIME, &wall);
	printf("# l4stb_ratesched: start %lld.%06ld (UTC epoch), times in us after it (CLOCK_MONOTONIC)\n",
	    (long long)wall.tv_sec, wall.tv_nsec / 1000);
	fflush(stdout);
	while (fgets(line, sizeof(line), f) != NULL) {
		lineno++;
		if (line[0] == '#' || line[0] == '\n')
			continue;
		n = sscanf(line, "%lld %lld %31s %lld", &at_us, &pipe_n, bw, &delay_n);
		if (n != 4 || at_us < last_us || pipe_n < 1 || pipe_n > 65535 || delay_n < 0 ||
		    delay_n > 10000 || !plain_word(bw)) {
			fprintf(stderr, "%s:%lu: not a step \"AT_US PIPE BW DELAY_MS\" in time order\n", argv[1], lineno);
			return (2);
		}
		last_us = at_us;
		snprintf(pipe_s, sizeof(pipe_s), "%lld", pipe_n);
		snprintf(delay_s, sizeof(delay_s), "%lld", delay_n);
		sleep_until(&t0, at_us);
		applied = now_us(&t0);
		rc = run_ipfw(ipfw, pipe_s, bw, delay_s);
		done = now_us(&t0);
		printf("l4stb-rate %lld %lld %lld %s %d\n", at_us, (long long)applied, (long long)done, bw, rc);
		fflush(stdout);
		steps++;
		if (rc != 0) {
			fprintf(stderr, "step %lu: %s -q pipe %s config bw %s delay %s exited %d\n", steps, ipfw,
			    pipe_s, bw, delay_s, rc);
			return (rc);
		}
	}
	fclose(f);
	return (0);
}
