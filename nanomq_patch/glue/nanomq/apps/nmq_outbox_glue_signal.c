// nmq_outbox_glue_signal.c: nmq-outbox's glue in NanoMQ's nanomq/apps/broker.c (NMQ_OUTBOX builds):
// B5: the exit signals' pipe and thread that close every outbox.
// Written once for every NanoMQ line: nanomq_patch/apply.sh copies it next to the file, which
// includes it where its file-local types and functions are known. Not compiled on its own.

#include <pthread.h>
#include <fcntl.h>
#include <unistd.h>

// B5: the signal handler only records the first exit signal and writes a byte to a pipe
// (async-signal-safe); nmq_sig_thread, started before the handler is installed, reads it and,
// in normal thread context, commits and closes every outbox and takes the stock exit path
// (log, exit()). A second exit signal meanwhile takes the stock path in the handler.
static int          nmq_sig_pipe[2] = { -1, -1 };
static volatile int nmq_sig_num     = 0; // the exit signal taken, 0 while none

static bool
nmq_sig_exits(int signum)
{
	return (signum == SIGINT || signum == SIGABRT || signum == SIGSEGV ||
	    signum == SIGILL || signum == SIGTERM);
}

static void *
nmq_sig_thread(void *arg)
{
	char    c;
	ssize_t n;
	int     signum;

	(void) arg;
	do {
		n = read(nmq_sig_pipe[0], &c, 1);
	} while (n < 0 && errno == EINTR);
	if (n != 1) {
		return (NULL);
	}
	signum = __atomic_load_n(&nmq_sig_num, __ATOMIC_SEQ_CST);
	log_error("signal signumber: %d received!\n", signum);
	// alarm() bounds a close blocked by a lock a crashed (SIGSEGV, SIGABRT) thread holds
	alarm(5);
	nmq_outbox_exit_all();
	if (signum == SIGINT || signum == SIGABRT || signum == SIGSEGV) {
		exit(EXIT_FAILURE);
	}
	exit(EXIT_SUCCESS);
	return (NULL);
}

// Before the handlers are installed: the pipe and the thread. Without them (logged) the
// handler takes the stock path, and atexit() still closes the outboxes.
static void
nmq_sig_init(void)
{
	pthread_t      thr;
	pthread_attr_t attr;
	sigset_t       all, old;

	if (pipe(nmq_sig_pipe) != 0) {
		log_error("outbox: no signal pipe (%s): exit signals close the outboxes in "
		          "the handler", strerror(errno));
		nmq_sig_pipe[0] = nmq_sig_pipe[1] = -1;
		return;
	}
	(void) fcntl(nmq_sig_pipe[0], F_SETFD, FD_CLOEXEC);
	(void) fcntl(nmq_sig_pipe[1], F_SETFD, FD_CLOEXEC);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	// the thread takes no signal: the handler never interrupts the close it does
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rv = pthread_create(&thr, &attr, nmq_sig_thread, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (rv != 0) {
		log_error("outbox: no signal thread (%s): exit signals close the outboxes in "
		          "the handler", strerror(rv));
		close(nmq_sig_pipe[0]);
		close(nmq_sig_pipe[1]);
		nmq_sig_pipe[0] = nmq_sig_pipe[1] = -1;
	}
}
