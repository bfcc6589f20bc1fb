/* Tiny test helpers for the C tests: CHECK counts, reports file:line, never aborts. */
#ifndef NMQ_CHECK_H
#define NMQ_CHECK_H

#include <pthread.h>
#include <stdio.h>
#include <string.h>

static int checks_passed, checks_failed;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (cond) {                                                                  \
            checks_passed++;                                                         \
        } else {                                                                     \
            checks_failed++;                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                            \
    } while (0)

#define CHECK_RC(call, want)                                                           \
    do {                                                                               \
        nmq_outbox_result rc_ = (call);                                                \
        if (rc_ == (want)) {                                                           \
            checks_passed++;                                                           \
        } else {                                                                       \
            checks_failed++;                                                           \
            fprintf(stderr, "%s:%d: %s returned %d (%s), wanted %s\n", __FILE__,       \
                    __LINE__, #call, (int) rc_, nmq_outbox_strerror(rc_), #want);      \
        }                                                                              \
    } while (0)

/* Log lines received through the callback (from any thread). */
static pthread_mutex_t log_mtx = PTHREAD_MUTEX_INITIALIZER;
static int log_errors, log_lines;
static char log_last[512];       /* the last line, any level */
static char log_last_error[512]; /* the last NMQ_OUTBOX_LOG_ERROR line */

static inline void capture_log(void *ctx, nmq_outbox_log_level level, const char *msg)
{
    (void) ctx;
    pthread_mutex_lock(&log_mtx);
    log_lines++;
    if (level == NMQ_OUTBOX_LOG_ERROR) {
        log_errors++;
        snprintf(log_last_error, sizeof(log_last_error), "%s", msg);
    }
    snprintf(log_last, sizeof(log_last), "%s", msg);
    pthread_mutex_unlock(&log_mtx);
}

static inline int log_count(void)
{
    pthread_mutex_lock(&log_mtx);
    int n = log_lines;
    pthread_mutex_unlock(&log_mtx);
    return n;
}

/* The closing line, "<program>: N passed, M failed"; the exit status of main. */
static inline int report(const char *argv0)
{
    const char *name = strrchr(argv0, '/');
    name = name ? name + 1 : argv0;
    printf("%s: %d passed, %d failed\n", name, checks_passed, checks_failed);
    return checks_failed == 0 ? 0 : 1;
}

#endif
