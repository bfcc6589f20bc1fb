/* Every export of nmq_outbox.h, with its error paths, from C. Usage: test_outbox <scratch dir> */
#include "nmq_outbox.h"

#include <dirent.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static char dir[256];

static void path_in(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", dir, name);
}

static nmq_outbox_config config(const char *path, const char *bridge)
{
    nmq_outbox_config c;
    nmq_outbox_config_init(&c);
    c.path = path;
    c.bridge = bridge;
    c.group_commit_ms = 2;
    c.log_fn = capture_log;
    c.log_level = NMQ_OUTBOX_LOG_DEBUG;
    return c;
}

static const uint8_t *u8(const char *s)
{
    return (const uint8_t *) s;
}

static void test_strings(void)
{
    int codes[] = {NMQ_OUTBOX_OK, NMQ_OUTBOX_EMPTY, NMQ_OUTBOX_NOT_OURS, NMQ_OUTBOX_PENDING,
                   NMQ_OUTBOX_EINVAL, NMQ_OUTBOX_EABI, NMQ_OUTBOX_ETOOBIG, NMQ_OUTBOX_EFULL, NMQ_OUTBOX_ENOSPC,
                   NMQ_OUTBOX_EIO, NMQ_OUTBOX_ECORRUPT, NMQ_OUTBOX_ECLOSED, NMQ_OUTBOX_EBUSY,
                   NMQ_OUTBOX_EINTERNAL, NMQ_OUTBOX_ENOMEM, NMQ_OUTBOX_EREFUSED};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        const char *s = nmq_outbox_strerror((nmq_outbox_result) codes[i]);
        CHECK(s != NULL && strcmp(s, "unknown result code") != 0);
    }
    CHECK(strcmp(nmq_outbox_strerror((nmq_outbox_result) 99), "unknown result code") == 0);
    CHECK(strcmp(nmq_outbox_strerror((nmq_outbox_result) -99), "unknown result code") == 0);
    CHECK(strlen(nmq_outbox_version()) > 0);
}

static void test_config_errors(void)
{
    char p[300];
    path_in(p, sizeof p, "cfg.db");
    nmq_outbox *ob = (nmq_outbox *) 0x1;
    nmq_outbox_config_init(NULL); /* ignored, no crash */

    nmq_outbox_config c = config(p, "b");
    CHECK(c.abi_version == NMQ_OUTBOX_ABI_VERSION);
    CHECK(c.window == 32 && c.group_commit_count == 100 && c.caller_commits == 0);
    CHECK(c.dead_letter_limit == 1000 && c.max_attempts == 3 && c.backoff_ms == 1000);

    CHECK_RC(nmq_outbox_open(NULL, &ob), NMQ_OUTBOX_EINVAL);
    CHECK(ob == NULL);
    CHECK_RC(nmq_outbox_open(&c, NULL), NMQ_OUTBOX_EINVAL);

    c.abi_version = 999; /* the layout cannot be trusted: logged on stderr */
    CHECK_RC(nmq_outbox_open(&c, &ob), NMQ_OUTBOX_EABI);
    CHECK(ob == NULL);
    c = config(p, "b");
    c.path = NULL;
    CHECK_RC(nmq_outbox_open(&c, &ob), NMQ_OUTBOX_EINVAL);
    c = config(p, NULL);
    CHECK_RC(nmq_outbox_open(&c, &ob), NMQ_OUTBOX_EINVAL);
    c = config(p, "");
    CHECK_RC(nmq_outbox_open(&c, &ob), NMQ_OUTBOX_EINVAL);
    int before = log_count();
    c = config(p, "b");
    c.sync = (nmq_outbox_sync) 7;
    CHECK_RC(nmq_outbox_open(&c, &ob), NMQ_OUTBOX_EINVAL);
    CHECK(log_count() > before); /* logged through the configured callback */
    c = config(p, "b");
    c.full_policy = (nmq_outbox_full_policy) 5;
    CHECK_RC(nmq_outbox_open(&c, &ob), NMQ_OUTBOX_EINVAL);
    c = config(p, "b");
    c.log_level = (nmq_outbox_log_level) 42;
    CHECK_RC(nmq_outbox_open(&c, &ob), NMQ_OUTBOX_EINVAL);
    c = config(p, "b");
    c.caller_commits = 2; /* 0 or 1 */
    CHECK_RC(nmq_outbox_open(&c, &ob), NMQ_OUTBOX_EINVAL);
    c = config("/nonexistent-dir/x/y.db", "b");
    CHECK_RC(nmq_outbox_open(&c, &ob), NMQ_OUTBOX_EIO);
    CHECK(ob == NULL);
}

static void test_null_handle(void)
{
    nmq_outbox_decision d;
    nmq_outbox_item it;
    nmq_outbox_stats st;
    nmq_outbox_ack_outcome o;
    CHECK_RC(nmq_outbox_close(NULL), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_flush(NULL), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_link_up(NULL, 0), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_link_down(NULL), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_link_down_reason(NULL, 0x87, 1), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_link_up_connack(NULL, 5, u8("\x20\x02\x00\x00"), 4, NULL),
             NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_decide(NULL, 1, &d), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_append(NULL, 1, 0, u8("x"), 1, NULL), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_requeue_front(NULL, 1, 0, 0, u8("x"), 1, NULL), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_lease(NULL, &it), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_bind(NULL, 1, 1), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_unlease(NULL, 1), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_ack(NULL, 1, NMQ_OUTBOX_PUBACK, 0, &o), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_get_stats(NULL, &st), NMQ_OUTBOX_EINVAL);
    int up = -1;
    CHECK_RC(nmq_outbox_link_is_up(NULL, &up), NMQ_OUTBOX_EINVAL);
    CHECK(up == -1);
    nmq_outbox_free(NULL);
    nmq_outbox_item_free(NULL);
}

static void test_flow(void)
{
    char p[300];
    path_in(p, sizeof p, "flow.db");
    nmq_outbox_config c = config(p, "bridge1");
    c.max_message_bytes = 64;
    c.window = 8;
    nmq_outbox *ob = NULL;
    CHECK_RC(nmq_outbox_open(&c, &ob), NMQ_OUTBOX_OK);
    CHECK(ob != NULL);

    nmq_outbox *dup = NULL;
    CHECK_RC(nmq_outbox_open(&c, &dup), NMQ_OUTBOX_EBUSY);
    CHECK(dup == NULL);

    nmq_outbox_decision d = NMQ_OUTBOX_SEND_NOW;
    CHECK_RC(nmq_outbox_decide(ob, 1, &d), NMQ_OUTBOX_OK);
    CHECK(d == NMQ_OUTBOX_STORE); /* link down */
    CHECK_RC(nmq_outbox_decide(ob, 3, &d), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_decide(ob, 1, NULL), NMQ_OUTBOX_EINVAL);

    int64_t seq = 0;
    CHECK_RC(nmq_outbox_append(ob, 1, 0, u8("one"), 3, &seq), NMQ_OUTBOX_OK);
    CHECK(seq == 1);
    CHECK_RC(nmq_outbox_append(ob, 2, 0, u8("two"), 3, NULL), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_append(ob, 1, 0, u8("three"), 5, NULL), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_append(ob, 1, 0, u8("four"), 4, NULL), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_append(ob, 3, 0, u8("bad"), 3, NULL), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_append(ob, 1, 0, NULL, 3, NULL), NMQ_OUTBOX_EINVAL);
    uint8_t big[65];
    memset(big, 'x', sizeof big);
    CHECK_RC(nmq_outbox_append(ob, 1, 0, big, sizeof big, NULL), NMQ_OUTBOX_ETOOBIG);
    CHECK_RC(nmq_outbox_requeue_front(ob, 3, 0, 5, u8("bad"), 3, NULL), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_requeue_front(ob, 1, 0, 5, NULL, 3, NULL), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_requeue_front(ob, 1, 0, 5, big, sizeof big, NULL), NMQ_OUTBOX_ETOOBIG);
    seq = -1;
    CHECK_RC(nmq_outbox_append(ob, 3, 0, u8("bad"), 3, &seq), NMQ_OUTBOX_EINVAL);
    CHECK(seq == -1); /* an error writes no seq */

    nmq_outbox_item it;
    CHECK_RC(nmq_outbox_lease(ob, &it), NMQ_OUTBOX_EMPTY); /* link down */
    CHECK(it.data == NULL);
    CHECK_RC(nmq_outbox_lease(ob, NULL), NMQ_OUTBOX_EINVAL);

    int up = -1;
    CHECK_RC(nmq_outbox_link_is_up(ob, &up), NMQ_OUTBOX_OK);
    CHECK(up == 0);
    CHECK_RC(nmq_outbox_link_is_up(ob, NULL), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_link_up(ob, 0), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_link_is_up(ob, &up), NMQ_OUTBOX_OK);
    CHECK(up == 1);
    CHECK_RC(nmq_outbox_decide(ob, 1, &d), NMQ_OUTBOX_OK);
    CHECK(d == NMQ_OUTBOX_STORE); /* backlog first */

    /* QoS 1: PUBACK deletes. */
    CHECK_RC(nmq_outbox_lease(ob, &it), NMQ_OUTBOX_OK);
    CHECK(it.len == 3 && memcmp(it.data, "one", 3) == 0 && it.qos == 1 && it.dup == 0);
    int64_t s1 = it.seq;
    nmq_outbox_item_free(&it);
    CHECK(it.data == NULL);
    nmq_outbox_item_free(&it); /* idempotent */
    CHECK_RC(nmq_outbox_bind(ob, s1, 0), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_bind(ob, 12345, 9), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_bind(ob, s1, 10), NMQ_OUTBOX_OK);
    nmq_outbox_ack_outcome o = NMQ_OUTBOX_ACK_REJECTED;
    CHECK_RC(nmq_outbox_ack(ob, 10, (nmq_outbox_ack_type) 9, 0, &o), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_ack(ob, 10, NMQ_OUTBOX_PUBACK, 0, &o), NMQ_OUTBOX_OK);
    CHECK(o == NMQ_OUTBOX_ACK_DONE);
    CHECK_RC(nmq_outbox_ack(ob, 10, NMQ_OUTBOX_PUBACK, 0, &o), NMQ_OUTBOX_NOT_OURS);

    /* QoS 2: PUBREC keeps, PUBCOMP deletes. */
    CHECK_RC(nmq_outbox_lease(ob, &it), NMQ_OUTBOX_OK);
    CHECK(it.qos == 2 && memcmp(it.data, "two", 3) == 0);
    CHECK_RC(nmq_outbox_bind(ob, it.seq, 11), NMQ_OUTBOX_OK);
    nmq_outbox_item_free(&it);
    CHECK_RC(nmq_outbox_ack(ob, 11, NMQ_OUTBOX_PUBREC, 0, &o), NMQ_OUTBOX_OK);
    CHECK(o == NMQ_OUTBOX_ACK_PROGRESS);
    CHECK_RC(nmq_outbox_ack(ob, 11, NMQ_OUTBOX_PUBCOMP, 0, NULL), NMQ_OUTBOX_OK);

    /* Rejected by the remote: a dead letter, counted. */
    CHECK_RC(nmq_outbox_lease(ob, &it), NMQ_OUTBOX_OK);
    CHECK(memcmp(it.data, "three", 5) == 0);
    CHECK_RC(nmq_outbox_bind(ob, it.seq, 12), NMQ_OUTBOX_OK);
    nmq_outbox_item_free(&it);
    CHECK_RC(nmq_outbox_ack(ob, 12, NMQ_OUTBOX_PUBACK, 0x87, &o), NMQ_OUTBOX_OK);
    CHECK(o == NMQ_OUTBOX_ACK_REJECTED);

    /* Unlease puts "four" back; a direct send lost at a cut goes before it. */
    CHECK_RC(nmq_outbox_lease(ob, &it), NMQ_OUTBOX_OK);
    int64_t s4 = it.seq;
    nmq_outbox_item_free(&it);
    CHECK_RC(nmq_outbox_unlease(ob, s4), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_unlease(ob, s4), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_requeue_front(ob, 1, 0, 21, u8("direct"), 6, &seq), NMQ_OUTBOX_OK);
    CHECK(seq < s4);
    CHECK_RC(nmq_outbox_lease(ob, &it), NMQ_OUTBOX_OK);
    CHECK(it.len == 6 && memcmp(it.data, "direct", 6) == 0);
    CHECK(it.packet_id == 21 && it.dup == 1);
    CHECK_RC(nmq_outbox_bind(ob, it.seq, 13), NMQ_OUTBOX_OK);
    nmq_outbox_item_free(&it);

    nmq_outbox_stats st;
    CHECK_RC(nmq_outbox_get_stats(ob, NULL), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_get_stats(ob, &st), NMQ_OUTBOX_OK);
    CHECK(st.messages == 2 && st.inflight == 1 && st.acked == 2 && st.dropped_rejected == 1);
    CHECK(st.dead_letters == 1 && st.dead_lettered == 1 && st.backing_off == 0);
    CHECK(st.enqueued == 5 && st.link_up == 1 && st.window == 8);

    /* Link down: "direct" goes back, and comes again with its packet id and DUP. */
    CHECK_RC(nmq_outbox_link_down(ob), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_link_is_up(ob, &up), NMQ_OUTBOX_OK);
    CHECK(up == 0);
    CHECK_RC(nmq_outbox_lease(ob, &it), NMQ_OUTBOX_EMPTY);
    CHECK_RC(nmq_outbox_link_up(ob, 1), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_lease(ob, &it), NMQ_OUTBOX_OK);
    CHECK(memcmp(it.data, "direct", 6) == 0 && it.dup == 1 && it.packet_id == 13);
    nmq_outbox_item_free(&it);
    CHECK_RC(nmq_outbox_lease(ob, &it), NMQ_OUTBOX_EMPTY); /* Receive Maximum 1 */

    CHECK_RC(nmq_outbox_flush(ob), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_close(ob), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_close(ob), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_append(ob, 1, 0, u8("late"), 4, NULL), NMQ_OUTBOX_ECLOSED);
    CHECK_RC(nmq_outbox_lease(ob, &it), NMQ_OUTBOX_ECLOSED);
    CHECK_RC(nmq_outbox_decide(ob, 1, &d), NMQ_OUTBOX_ECLOSED);
    CHECK_RC(nmq_outbox_get_stats(ob, &st), NMQ_OUTBOX_OK); /* the last counters */
    CHECK(st.link_up == 1 && st.window == 1);
    CHECK_RC(nmq_outbox_sent(ob, s4), NMQ_OUTBOX_ECLOSED);
    CHECK_RC(nmq_outbox_drop(ob, s4, NMQ_OUTBOX_DROP_MALFORMED), NMQ_OUTBOX_ECLOSED);
    CHECK_RC(nmq_outbox_flush(ob), NMQ_OUTBOX_ECLOSED);
    CHECK_RC(nmq_outbox_link_up(ob, 0), NMQ_OUTBOX_ECLOSED);
    CHECK_RC(nmq_outbox_link_is_up(ob, &up), NMQ_OUTBOX_ECLOSED);
    CHECK_RC(nmq_outbox_ack(ob, 1, NMQ_OUTBOX_PUBACK, 0, &o), NMQ_OUTBOX_ECLOSED);
    CHECK_RC(nmq_outbox_link_down(ob), NMQ_OUTBOX_ECLOSED);
    CHECK_RC(nmq_outbox_requeue_front(ob, 1, 0, 7, u8("late"), 4, NULL), NMQ_OUTBOX_ECLOSED);
    CHECK_RC(nmq_outbox_bind(ob, s4, 30), NMQ_OUTBOX_ECLOSED);
    CHECK_RC(nmq_outbox_unlease(ob, s4), NMQ_OUTBOX_ECLOSED);
    CHECK(it.data == NULL && it.len == 0); /* a failed lease leaves a zeroed item */
    nmq_outbox_item_free(&it);             /* freeing a zeroed item is a no-op */
    nmq_outbox_free(ob);

    /* Reopen: the two rows left come back in order. */
    ob = NULL;
    CHECK_RC(nmq_outbox_open(&c, &ob), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_link_up(ob, 0), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_lease(ob, &it), NMQ_OUTBOX_OK);
    CHECK(memcmp(it.data, "direct", 6) == 0);
    nmq_outbox_item_free(&it);
    CHECK_RC(nmq_outbox_lease(ob, &it), NMQ_OUTBOX_OK);
    CHECK(memcmp(it.data, "four", 4) == 0);
    nmq_outbox_item_free(&it);
    nmq_outbox_free(ob); /* free without close: closes */
}

/* QoS 2: once PUBREC came, the row is handed out again (after a link loss or a restart) with
 * released = 1 and its packet id, so the host sends PUBREL, not the PUBLISH. */
/* Issue 8 item 8: a length of SIZE_MAX built an invalid slice before the length was checked
 * (undefined behaviour; the debug library aborted). Item 9: QoS 0 completes with sent().
 * Item 10: a row that cannot be sent is dropped and counted. */
static void test_lengths_qos0_drop(void)
{
    char p[300];
    path_in(p, sizeof p, "edges.db");
    nmq_outbox_config c = config(p, "edges");
    c.max_message_bytes = 64;
    nmq_outbox *ob = NULL;
    CHECK_RC(nmq_outbox_open(&c, &ob), NMQ_OUTBOX_OK);
    static const uint8_t byte = 1;
    CHECK_RC(nmq_outbox_append(ob, 1, 0, &byte, SIZE_MAX, NULL), NMQ_OUTBOX_ETOOBIG);
    CHECK_RC(nmq_outbox_append(ob, 1, 0, &byte, (size_t)PTRDIFF_MAX + 1, NULL), NMQ_OUTBOX_ETOOBIG);
    CHECK_RC(nmq_outbox_requeue_front(ob, 1, 0, 5, &byte, SIZE_MAX, NULL), NMQ_OUTBOX_ETOOBIG);
    CHECK_RC(nmq_outbox_append(ob, 1, 0, NULL, SIZE_MAX, NULL), NMQ_OUTBOX_ETOOBIG);
    CHECK_RC(nmq_outbox_append(ob, 1, 0, NULL, 65, NULL), NMQ_OUTBOX_ETOOBIG);
    CHECK_RC(nmq_outbox_append(ob, 1, 0, NULL, 64, NULL), NMQ_OUTBOX_EINVAL);

    int64_t s0 = 0, s1 = 0, s2 = 0;
    CHECK_RC(nmq_outbox_append(ob, 0, 0, u8("zero"), 4, &s0), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_append(ob, 1, 0, u8("bad"), 3, &s1), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_append(ob, 1, 0, u8("good"), 4, &s2), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_link_up(ob, 0), NMQ_OUTBOX_OK);
    nmq_outbox_item it;
    CHECK_RC(nmq_outbox_lease(ob, &it), NMQ_OUTBOX_OK);
    CHECK(it.seq == s0 && it.qos == 0 && it.packet_id == 0);
    CHECK_RC(nmq_outbox_bind(ob, it.seq, 7), NMQ_OUTBOX_EINVAL); /* QoS 0 has no packet id */
    CHECK_RC(nmq_outbox_sent(ob, it.seq), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_sent(ob, it.seq), NMQ_OUTBOX_EINVAL);
    nmq_outbox_item_free(&it);
    /* written, not yet confirmed (QOS 0): a PINGRESP to a later PINGREQ confirms it */
    int due = 0;
    CHECK_RC(nmq_outbox_ping_due(ob, &due), NMQ_OUTBOX_OK);
    CHECK(due == 1);
    CHECK_RC(nmq_outbox_ping_sent(ob), NMQ_OUTBOX_OK);
    uint64_t confirmed = 0;
    CHECK_RC(nmq_outbox_pong(ob, &confirmed), NMQ_OUTBOX_OK);
    CHECK(confirmed == 1);
    CHECK_RC(nmq_outbox_lease(ob, &it), NMQ_OUTBOX_OK);
    CHECK(it.seq == s1);
    CHECK_RC(nmq_outbox_sent(ob, it.seq), NMQ_OUTBOX_EINVAL); /* QoS 1: needs its ack */
    CHECK_RC(nmq_outbox_drop(ob, it.seq, (nmq_outbox_drop_reason)99), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_drop(ob, it.seq, NMQ_OUTBOX_DROP_MALFORMED), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_drop(ob, it.seq, NMQ_OUTBOX_DROP_MALFORMED), NMQ_OUTBOX_EINVAL);
    nmq_outbox_item_free(&it);
    CHECK_RC(nmq_outbox_lease(ob, &it), NMQ_OUTBOX_OK);
    CHECK(it.seq == s2 && it.len == 4 && memcmp(it.data, "good", 4) == 0);
    nmq_outbox_item_free(&it);
    nmq_outbox_stats st;
    CHECK_RC(nmq_outbox_get_stats(ob, &st), NMQ_OUTBOX_OK);
    CHECK(st.messages == 1 && st.acked == 1 && st.dropped_malformed == 1 && st.inflight == 1);
    CHECK(st.refused_nospace == 0 && st.dropped_unwritten == 0 && st.space_low == 0);
    /* The counters as JSON and Prometheus text, into caller buffers. */
    char small[8], big[8192];
    size_t need = 0;
    CHECK_RC(nmq_outbox_stats_json(ob, small, sizeof small, &need), NMQ_OUTBOX_ETOOBIG);
    CHECK(need > sizeof small && need < sizeof big);
    CHECK_RC(nmq_outbox_stats_json(ob, big, sizeof big, &need), NMQ_OUTBOX_OK);
    CHECK(strlen(big) + 1 == need);
    CHECK(strncmp(big, "{\"bridge\":\"edges\",\"file\":\"", 22) == 0);
    CHECK(strstr(big, "\"messages\":1,") != NULL);
    CHECK(strstr(big, "\"malformed\":1,") != NULL);
    CHECK_RC(nmq_outbox_stats_json(ob, big, sizeof big, NULL), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_stats_json(ob, NULL, 0, &need), NMQ_OUTBOX_ETOOBIG);
    nmq_outbox *const obs[1] = {ob};
    CHECK_RC(nmq_outbox_stats_prometheus(obs, 1, big, sizeof big, &need), NMQ_OUTBOX_OK);
    CHECK(strstr(big, "nanomq_bridge_outbox_messages{bridge=\"edges\"} 1\n") != NULL);
    CHECK(strstr(big, "# TYPE nanomq_bridge_outbox_dropped_total counter\n") != NULL);
    nmq_outbox *const nulls[1] = {NULL};
    CHECK_RC(nmq_outbox_stats_prometheus(nulls, 1, big, sizeof big, &need), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_stats_prometheus(NULL, 0, big, sizeof big, &need), NMQ_OUTBOX_OK);
    uint64_t imported = 99;
    CHECK_RC(nmq_outbox_import_stock(ob, "/nonexistent/mqtt_client.db", "edges", &imported),
             NMQ_OUTBOX_OK);
    CHECK(imported == 0);
    CHECK_RC(nmq_outbox_import_stock(ob, NULL, "edges", &imported), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_import_stock(ob, "/x", NULL, NULL), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_sent(NULL, 1), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_drop(NULL, 1, NMQ_OUTBOX_DROP_MALFORMED), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_close(ob), NMQ_OUTBOX_OK);
    nmq_outbox_free(ob);
}

static void test_released(void)
{
    char p[300];
    path_in(p, sizeof p, "released.db");
    nmq_outbox_config c = config(p, "b");
    nmq_outbox *ob = NULL;
    nmq_outbox_item it;
    nmq_outbox_ack_outcome o;
    CHECK_RC(nmq_outbox_open(&c, &ob), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_append(ob, 2, 0, u8("q2"), 2, NULL), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_link_up(ob, 0), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_lease(ob, &it), NMQ_OUTBOX_OK);
    CHECK(it.released == 0);
    CHECK_RC(nmq_outbox_bind(ob, it.seq, 9), NMQ_OUTBOX_OK);
    nmq_outbox_item_free(&it);
    CHECK_RC(nmq_outbox_ack(ob, 9, NMQ_OUTBOX_PUBREC, 0, &o), NMQ_OUTBOX_OK);
    CHECK(o == NMQ_OUTBOX_ACK_PROGRESS);
    nmq_outbox_free(ob);
    ob = NULL;
    CHECK_RC(nmq_outbox_open(&c, &ob), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_link_up(ob, 0), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_lease(ob, &it), NMQ_OUTBOX_OK);
    CHECK(it.released == 1 && it.packet_id == 9 && it.dup == 1);
    CHECK_RC(nmq_outbox_bind(ob, it.seq, 9), NMQ_OUTBOX_OK);
    nmq_outbox_item_free(&it);
    /* 0x92 on the PUBCOMP answering the resumed PUBREL: completed, not rejected. */
    CHECK_RC(nmq_outbox_ack(ob, 9, NMQ_OUTBOX_PUBCOMP, 0x92, &o), NMQ_OUTBOX_OK);
    CHECK(o == NMQ_OUTBOX_ACK_DONE);
    nmq_outbox_free(ob);
}

static void test_reject_new(void)
{
    char p[300];
    path_in(p, sizeof p, "full.db");
    nmq_outbox_config c = config(p, "b");
    c.max_messages = 2;
    c.full_policy = NMQ_OUTBOX_REJECT_NEW;
    nmq_outbox *ob = NULL;
    CHECK_RC(nmq_outbox_open(&c, &ob), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_append(ob, 1, 0, u8("a"), 1, NULL), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_append(ob, 1, 0, u8("b"), 1, NULL), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_append(ob, 1, 0, u8("c"), 1, NULL), NMQ_OUTBOX_EFULL);
    nmq_outbox_stats st;
    CHECK_RC(nmq_outbox_get_stats(ob, &st), NMQ_OUTBOX_OK);
    CHECK(st.messages == 2 && st.dropped_full == 1);
    nmq_outbox_free(ob);
}

/* Ack after commit: the commit descriptor wakes a poller after a commit, committed_seq drains
 * it, refused appends get a reason code for the publisher. */
static int readable(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
    return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

static void test_ack_after_commit(void)
{
    char p[300];
    path_in(p, sizeof p, "ackafter.db");
    nmq_outbox_config c = config(p, "b");
    c.max_messages = 3;
    c.full_policy = NMQ_OUTBOX_REJECT_NEW;
    nmq_outbox *ob = NULL;
    CHECK_RC(nmq_outbox_open(&c, &ob), NMQ_OUTBOX_OK);
    int fd = -1, fd2 = -2;
    int64_t committed = -1, seq = 0, seq2 = 0;
    CHECK_RC(nmq_outbox_commit_fd(ob, &fd), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_commit_fd(ob, &fd2), NMQ_OUTBOX_OK);
    CHECK(fd >= 0 && fd == fd2);
    CHECK_RC(nmq_outbox_commit_fd(ob, NULL), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_commit_fd(NULL, &fd2), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_committed_seq(ob, NULL), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_committed_seq(NULL, &committed), NMQ_OUTBOX_EINVAL);
    CHECK(!readable(fd, 0));

    /* The writer's own timer commits (group_commit_ms 2): wait for the event. One append at a
     * time: one commit, one signal, however late the timer fires (two appends in a row could
     * be split by it, and the second commit's signal come after the drain). The bound only
     * keeps a broken build from hanging. */
    CHECK_RC(nmq_outbox_append(ob, 1, 0, u8("a"), 1, &seq), NMQ_OUTBOX_OK);
    CHECK(readable(fd, 30000));
    CHECK_RC(nmq_outbox_committed_seq(ob, &committed), NMQ_OUTBOX_OK);
    CHECK(committed >= seq);
    CHECK(!readable(fd, 0));
    CHECK_RC(nmq_outbox_append(ob, 2, 0, u8("b"), 1, &seq2), NMQ_OUTBOX_OK);
    CHECK(readable(fd, 30000));
    CHECK_RC(nmq_outbox_committed_seq(ob, &committed), NMQ_OUTBOX_OK);
    CHECK(committed >= seq2 && seq2 == seq + 1);
    CHECK(!readable(fd, 0));

    /* Refused: reported at once, no seq, and the reason code for the publisher's ack. */
    nmq_outbox_result rv = nmq_outbox_append(ob, 1, 0, u8("c"), 1, NULL);
    CHECK_RC(rv, NMQ_OUTBOX_OK);
    rv = nmq_outbox_append(ob, 1, 0, u8("d"), 1, &seq);
    CHECK_RC(rv, NMQ_OUTBOX_EFULL);
    CHECK(nmq_outbox_mqtt_reason(rv) == 0x97);
    CHECK(nmq_outbox_mqtt_reason(NMQ_OUTBOX_ENOSPC) == 0x97);
    CHECK(nmq_outbox_mqtt_reason(NMQ_OUTBOX_ETOOBIG) == 0x97);
    CHECK(nmq_outbox_mqtt_reason(NMQ_OUTBOX_EIO) == 0x80);
    CHECK(nmq_outbox_mqtt_reason(NMQ_OUTBOX_ECLOSED) == 0x80);
    CHECK(nmq_outbox_mqtt_reason(NMQ_OUTBOX_OK) == 0);

    /* After close: the last value, the descriptor still valid (never signalled again). */
    CHECK_RC(nmq_outbox_close(ob), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_committed_seq(ob, &committed), NMQ_OUTBOX_OK);
    CHECK(committed == seq2 + 1);
    CHECK(!readable(fd, 0));
    nmq_outbox_free(ob);

    /* Reopened: every committed row is there. */
    ob = NULL;
    CHECK_RC(nmq_outbox_open(&c, &ob), NMQ_OUTBOX_OK);
    nmq_outbox_stats st;
    CHECK_RC(nmq_outbox_get_stats(ob, &st), NMQ_OUTBOX_OK);
    CHECK(st.messages == 3 && st.committed_seq == committed);
    nmq_outbox_free(ob);

    /* caller_commits (what the host sets with group_commit_ms 0): the append is pending
     * until nmq_outbox_commit() commits it on this thread, the descriptor signalled too. */
    path_in(p, sizeof p, "ackafter-caller.db");
    c = config(p, "b");
    c.group_commit_ms = 0;
    c.caller_commits = 1;
    ob = NULL;
    CHECK_RC(nmq_outbox_open(&c, &ob), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_commit_fd(ob, &fd), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_append(ob, 1, 0, u8("e"), 1, &seq), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_commit(ob), NMQ_OUTBOX_OK);
    CHECK(readable(fd, 0));
    CHECK_RC(nmq_outbox_committed_seq(ob, &committed), NMQ_OUTBOX_OK);
    CHECK(committed >= seq);
    CHECK_RC(nmq_outbox_commit(NULL), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_close(ob), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_commit(ob), NMQ_OUTBOX_ECLOSED);
    nmq_outbox_free(ob);
}

/* ACK ORDER: a ready ack behind one that waits stays queued; pop gives them oldest first. */
static void test_ack_order(void)
{
    nmq_outbox_ack_order *q = nmq_outbox_ack_order_new();
    nmq_outbox_pub_ack a;
    CHECK(q != NULL);
    CHECK_RC(nmq_outbox_ack_order_push(q, 10, 1), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_ack_order_push(q, 11, 2), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_ack_order_push(q, 12, 1), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_ack_order_push(q, 13, 0), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_ack_order_ready(q, 12, 0), NMQ_OUTBOX_OK);    /* no forward */
    CHECK_RC(nmq_outbox_ack_order_ready(q, 11, 0x97), NMQ_OUTBOX_OK); /* refused */
    CHECK_RC(nmq_outbox_ack_order_ready(q, 99, 0), NMQ_OUTBOX_NOT_OURS);
    CHECK_RC(nmq_outbox_ack_order_pop(q, &a), NMQ_OUTBOX_EMPTY);     /* 10 waits */
    CHECK_RC(nmq_outbox_ack_order_ready(q, 10, 0), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_ack_order_pop(q, &a), NMQ_OUTBOX_OK);
    CHECK(a.packet_id == 10 && a.qos == 1 && a.reason == 0);
    CHECK_RC(nmq_outbox_ack_order_pop(q, &a), NMQ_OUTBOX_OK);
    CHECK(a.packet_id == 11 && a.qos == 2 && a.reason == 0x97);
    CHECK_RC(nmq_outbox_ack_order_pop(q, &a), NMQ_OUTBOX_OK);
    CHECK(a.packet_id == 12 && a.qos == 1 && a.reason == 0);
    CHECK_RC(nmq_outbox_ack_order_pop(q, &a), NMQ_OUTBOX_EMPTY);
    CHECK_RC(nmq_outbox_ack_order_pop(q, NULL), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_ack_order_push(NULL, 1, 1), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_ack_order_push(q, 14, 1), NMQ_OUTBOX_OK); /* freed unsent */
    nmq_outbox_ack_order_free(q);
    nmq_outbox_ack_order_free(NULL);
}

/* The ack gate through the C ABI: the callback gets each ack once, after the commit, in the
 * client's order; a refusal answers an MQTT 5 publisher and leaves a 3.1.1 one to the host; a
 * closed outbox answers what it did not commit. */
static pthread_mutex_t gate_mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static uint32_t gate_got[16][3];
static int gate_n;

static void gate_send(void *ctx, const nmq_outbox_gate_reply *acks, size_t n)
{
    CHECK(ctx == (void *) &gate_n);
    CHECK(acks != NULL && n >= 1);
    pthread_mutex_lock(&gate_mtx);
    for (size_t i = 0; i < n; i++) {
        CHECK(acks[i].qos == 1 || acks[i].qos == 2);
        if (gate_n < 16) {
            gate_got[gate_n][0] = acks[i].pipe;
            gate_got[gate_n][1] = acks[i].packet_id;
            gate_got[gate_n][2] = acks[i].reason;
        }
        gate_n++;
    }
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mtx);
}

static int gate_count(void)
{
    pthread_mutex_lock(&gate_mtx);
    int n = gate_n;
    pthread_mutex_unlock(&gate_mtx);
    return n;
}

/* Waits (bounded: a broken build must not hang) until the callback had n acks. */
static int gate_wait(int n)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += 30;
    pthread_mutex_lock(&gate_mtx);
    while (gate_n < n && pthread_cond_timedwait(&gate_cv, &gate_mtx, &t) == 0)
        ;
    int got = gate_n;
    pthread_mutex_unlock(&gate_mtx);
    return got >= n;
}

static int gate_is(int i, uint32_t pipe, uint32_t packet_id, uint32_t reason)
{
    return gate_got[i][0] == pipe && gate_got[i][1] == packet_id && gate_got[i][2] == reason;
}

static void test_ack_gate(void)
{
    char p[300];
    path_in(p, sizeof p, "gate.db");
    nmq_outbox_config c = config(p, "b");
    c.group_commit_ms = 0;
    c.caller_commits = 1;
    nmq_outbox *ob = NULL, *other = NULL;
    CHECK_RC(nmq_outbox_open(&c, &ob), NMQ_OUTBOX_OK);
    nmq_outbox_gate *g = NULL, *h = NULL;
    CHECK_RC(nmq_outbox_gate_new(NULL, NULL, &g), NMQ_OUTBOX_EINVAL);
    CHECK(g == NULL);
    CHECK_RC(nmq_outbox_gate_new(gate_send, &gate_n, NULL), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_gate_new(gate_send, &gate_n, &g), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_gate_new(gate_send, &gate_n, &h), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_gate_watch(g, ob), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_gate_watch(g, ob), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_gate_watch(h, ob), NMQ_OUTBOX_EBUSY);
    CHECK_RC(nmq_outbox_gate_watch(NULL, ob), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_gate_watch(g, NULL), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_gate_owe(g, 1, 1, 0), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_gate_owe(NULL, 1, 1, 1), NMQ_OUTBOX_EINVAL);
    CHECK(nmq_outbox_gate_begin(g, 1, 1, 3, 1) == NULL);
    CHECK(nmq_outbox_gate_begin(NULL, 1, 1, 1, 1) == NULL);
    nmq_outbox_gate_end(NULL);
    nmq_outbox_gate_pipe_gone(NULL, 1);

    /* client 1 sends 1, 2, 3, 4; they are handled 2, 1, 3, 4 */
    for (uint16_t pid = 1; pid <= 4; pid++)
        CHECK_RC(nmq_outbox_gate_owe(g, 1, pid, pid == 3 ? 2 : 1), NMQ_OUTBOX_OK);
    int64_t seq = 0;
    nmq_outbox_gate_ack *a = nmq_outbox_gate_begin(g, 1, 2, 1, 0);
    CHECK(a != NULL);
    CHECK_RC(nmq_outbox_append(ob, 1, 0, u8("m2"), 2, &seq), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_gate_took(a, ob, seq), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_gate_took(NULL, ob, seq), NMQ_OUTBOX_EINVAL);
    nmq_outbox_gate_end(a); /* committed, but 1 is owed first */
    CHECK(gate_count() == 0);
    a = nmq_outbox_gate_begin(g, 1, 1, 1, 1); /* MQTT 5, refused: 0x97 */
    CHECK_RC(nmq_outbox_gate_refused(a, NMQ_OUTBOX_ENOSPC), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_gate_refused(a, NMQ_OUTBOX_OK), NMQ_OUTBOX_EINVAL);
    nmq_outbox_gate_end(a);
    CHECK(gate_count() == 2);
    CHECK(gate_is(0, 1, 1, 0x97) && gate_is(1, 1, 2, 0));
    a = nmq_outbox_gate_begin(g, 1, 3, 2, 0); /* MQTT 3.1.1, refused: the host's path */
    CHECK_RC(nmq_outbox_gate_refused(a, NMQ_OUTBOX_EIO), NMQ_OUTBOX_EIO);
    nmq_outbox_gate_end(a);
    CHECK(gate_count() == 3 && gate_is(2, 1, 3, 0));

    /* 4 waits for a seq the outbox never commits; client 2 (MQTT 5) too; closing answers */
    CHECK_RC(nmq_outbox_gate_owe(g, 2, 9, 1), NMQ_OUTBOX_OK);
    a = nmq_outbox_gate_begin(g, 1, 4, 1, 0);
    CHECK_RC(nmq_outbox_gate_took(a, ob, seq + 1), NMQ_OUTBOX_OK);
    nmq_outbox_gate_end(a);
    a = nmq_outbox_gate_begin(g, 2, 9, 1, 1);
    CHECK_RC(nmq_outbox_gate_took(a, ob, seq + 1), NMQ_OUTBOX_OK);
    nmq_outbox_gate_end(a);
    CHECK(gate_count() == 3);
    CHECK_RC(nmq_outbox_close(ob), NMQ_OUTBOX_OK);
    CHECK(gate_wait(4));
    CHECK(gate_count() == 4 && gate_is(3, 2, 9, 0x80)); /* 3.1.1: nothing, it resends */
    CHECK_RC(nmq_outbox_gate_watch(g, ob), NMQ_OUTBOX_ECLOSED);

    /* an owed ack the host will not handle goes now, in order */
    CHECK_RC(nmq_outbox_gate_owe(g, 3, 1, 1), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_gate_ack_now(g, 3, 1, 1, 0), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_gate_ack_now(g, 3, 1, 0, 0), NMQ_OUTBOX_EINVAL);
    CHECK(gate_count() == 5 && gate_is(4, 3, 1, 0));

    /* the writer thread's commit releases an ack end could not (another outbox) */
    path_in(p, sizeof p, "gate2.db");
    c = config(p, "b2");
    c.group_commit_ms = 2;
    CHECK_RC(nmq_outbox_open(&c, &other), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_gate_watch(g, other), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_append(other, 1, 0, u8("x"), 1, &seq), NMQ_OUTBOX_OK);
    a = nmq_outbox_gate_begin(g, 4, 1, 1, 0);
    CHECK_RC(nmq_outbox_gate_took(a, other, seq + 1), NMQ_OUTBOX_OK);
    nmq_outbox_gate_end(a);
    CHECK(gate_count() == 5);
    CHECK_RC(nmq_outbox_append(other, 1, 0, u8("y"), 1, &seq), NMQ_OUTBOX_OK);
    CHECK(gate_wait(6));
    CHECK(gate_count() == 6 && gate_is(5, 4, 1, 0));
    nmq_outbox_gate_pipe_gone(g, 1);
    nmq_outbox_gate_pipe_gone(g, 3);
    nmq_outbox_free(other);
    nmq_outbox_free(ob);
    nmq_outbox_gate_free(g);
    nmq_outbox_gate_free(h);
    nmq_outbox_gate_free(NULL);
}

static void test_corrupt_file(void)
{
    char p[300];
    path_in(p, sizeof p, "corrupt.db");
    FILE *f = fopen(p, "wb");
    CHECK(f != NULL);
    for (int i = 0; i < 4096; i++) {
        fputc(0xA5, f);
    }
    fclose(f);
    pthread_mutex_lock(&log_mtx);
    int errors_before = log_errors;
    pthread_mutex_unlock(&log_mtx);

    nmq_outbox_config c = config(p, "b");
    nmq_outbox *ob = NULL;
    CHECK_RC(nmq_outbox_open(&c, &ob), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_append(ob, 1, 0, u8("fresh"), 5, NULL), NMQ_OUTBOX_OK);
    nmq_outbox_free(ob);

    pthread_mutex_lock(&log_mtx);
    CHECK(log_errors > errors_before);
    CHECK(strstr(log_last_error, "corrupt") != NULL);
    pthread_mutex_unlock(&log_mtx);
    int aside = 0;
    DIR *dp = opendir(dir);
    struct dirent *e;
    while (dp && (e = readdir(dp)) != NULL) {
        if (strncmp(e->d_name, "corrupt.db.corrupt-", 19) == 0) {
            aside++;
        }
    }
    if (dp) {
        closedir(dp);
    }
    CHECK(aside == 1);
}

/* An empty payload is a message like any other: it is stored, leased and acked. */
static void test_empty_message(void)
{
    char p[300];
    path_in(p, sizeof p, "empty.db");
    nmq_outbox_config c = config(p, "b");
    nmq_outbox *ob = NULL;
    CHECK_RC(nmq_outbox_open(&c, &ob), NMQ_OUTBOX_OK);
    int64_t seq = 0;
    CHECK_RC(nmq_outbox_append(ob, 1, 0, NULL, 0, &seq), NMQ_OUTBOX_OK);
    CHECK(seq > 0);
    CHECK_RC(nmq_outbox_link_up(ob, 0), NMQ_OUTBOX_OK);
    nmq_outbox_item it;
    CHECK_RC(nmq_outbox_lease(ob, &it), NMQ_OUTBOX_OK);
    CHECK(it.seq == seq && it.len == 0);
    nmq_outbox_item_free(&it);
    CHECK(it.data == NULL && it.len == 0 && it.seq == 0);
    nmq_outbox_item_free(&it);
    CHECK_RC(nmq_outbox_bind(ob, seq, 1), NMQ_OUTBOX_OK);
    nmq_outbox_ack_outcome o = NMQ_OUTBOX_ACK_REJECTED;
    CHECK_RC(nmq_outbox_ack(ob, 1, NMQ_OUTBOX_PUBACK, 0, &o), NMQ_OUTBOX_OK);
    CHECK(o == NMQ_OUTBOX_ACK_DONE);
    nmq_outbox_free(ob);
}

/* Integers outside every enum the library reads from C give EINVAL (never UB), and leave the
 * handle usable. */
static void test_bad_enums(void)
{
    char p[300];
    path_in(p, sizeof p, "enums.db");
    nmq_outbox_config c = config(p, "b");
    nmq_outbox *ob = NULL;
    int bad[] = {-1, 0, 1, 2, 3, 6, 8, 255, 0x7fffffff};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        nmq_outbox_config b = config(p, "b");
        b.sync = (nmq_outbox_sync) bad[i];
        if (bad[i] != NMQ_OUTBOX_SYNC_NORMAL && bad[i] != NMQ_OUTBOX_SYNC_FULL) {
            CHECK_RC(nmq_outbox_open(&b, &ob), NMQ_OUTBOX_EINVAL);
            CHECK(ob == NULL);
        }
        b = config(p, "b");
        b.full_policy = (nmq_outbox_full_policy) bad[i];
        if (bad[i] != NMQ_OUTBOX_DROP_OLDEST && bad[i] != NMQ_OUTBOX_REJECT_NEW) {
            CHECK_RC(nmq_outbox_open(&b, &ob), NMQ_OUTBOX_EINVAL);
            CHECK(ob == NULL);
        }
        b = config(p, "b");
        b.log_level = (nmq_outbox_log_level) bad[i];
        if (bad[i] < NMQ_OUTBOX_LOG_ERROR || bad[i] > NMQ_OUTBOX_LOG_DEBUG) {
            CHECK_RC(nmq_outbox_open(&b, &ob), NMQ_OUTBOX_EINVAL);
            CHECK(ob == NULL);
        }
    }
    CHECK_RC(nmq_outbox_open(&c, &ob), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_append(ob, 1, 0, u8("x"), 1, NULL), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_link_up(ob, 0), NMQ_OUTBOX_OK);
    nmq_outbox_item it;
    CHECK_RC(nmq_outbox_lease(ob, &it), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_bind(ob, it.seq, 40), NMQ_OUTBOX_OK);
    nmq_outbox_item_free(&it);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        nmq_outbox_ack_outcome o = NMQ_OUTBOX_ACK_REJECTED;
        CHECK_RC(nmq_outbox_ack(ob, 40, (nmq_outbox_ack_type) bad[i], 0, &o), NMQ_OUTBOX_EINVAL);
        CHECK(o == NMQ_OUTBOX_ACK_REJECTED); /* not written on error */
    }
    nmq_outbox_decision d;
    for (int q = 3; q <= 255; q += 84) {
        CHECK_RC(nmq_outbox_decide(ob, (uint8_t) q, &d), NMQ_OUTBOX_EINVAL);
    }
    nmq_outbox_stats st;
    CHECK_RC(nmq_outbox_get_stats(ob, &st), NMQ_OUTBOX_OK);
    CHECK(st.messages == 1 && st.inflight == 1);
    CHECK_RC(nmq_outbox_ack(ob, 40, NMQ_OUTBOX_PUBACK, 0, NULL), NMQ_OUTBOX_OK);
    nmq_outbox_free(ob);
}

/* Issue 8 item 13: a message the outbox refused and the host then lost on its own fallback
 * path is counted by reason, shown in the stats, the JSON and Prometheus, also after close. */
static void test_count_lost(void)
{
    char p[300];
    path_in(p, sizeof p, "lost.db");
    nmq_outbox_config c = config(p, "b");
    nmq_outbox *ob = NULL;
    nmq_outbox_stats st;
    char buf[8192];
    size_t need = 0;
    CHECK_RC(nmq_outbox_count_lost(NULL, NMQ_OUTBOX_LOST_QUEUE_FULL, 1), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_open(&c, &ob), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_get_stats(ob, &st), NMQ_OUTBOX_OK);
    CHECK(st.lost_fallback_queue == 0 && st.lost_fallback_send == 0);
    CHECK_RC(nmq_outbox_count_lost(ob, NMQ_OUTBOX_LOST_QUEUE_FULL, 3), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_count_lost(ob, NMQ_OUTBOX_LOST_SEND_FAILED, 1), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_count_lost(ob, (nmq_outbox_lost_reason) 0, 1), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_count_lost(ob, (nmq_outbox_lost_reason) 3, 1), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_get_stats(ob, &st), NMQ_OUTBOX_OK);
    CHECK(st.lost_fallback_queue == 3 && st.lost_fallback_send == 1);
    CHECK(st.messages == 0 && st.enqueued == 0); /* never the outbox's own rows */
    CHECK_RC(nmq_outbox_stats_json(ob, buf, sizeof buf, &need), NMQ_OUTBOX_OK);
    CHECK(strstr(buf, "\"fallback_queue\":3,\"fallback_send\":1,") != NULL);
    CHECK_RC(nmq_outbox_stats_prometheus(&ob, 1, buf, sizeof buf, &need), NMQ_OUTBOX_OK);
    CHECK(strstr(buf, "nanomq_bridge_outbox_dropped_total{bridge=\"b\",reason=\"fallback_send\"} 1\n") != NULL);
    CHECK_RC(nmq_outbox_close(ob), NMQ_OUTBOX_OK);
    /* the B2 fallback also serves messages refused with ECLOSED at shutdown */
    CHECK_RC(nmq_outbox_count_lost(ob, NMQ_OUTBOX_LOST_SEND_FAILED, UINT64_MAX), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_get_stats(ob, &st), NMQ_OUTBOX_OK);
    CHECK(st.lost_fallback_send == UINT64_MAX); /* saturates */
    nmq_outbox_free(ob);
}

/* Issue 21: the host's own events (QoS 0 dropped, refusals sent around the outbox) are library
 * counters, in the stats, the JSON and Prometheus; the library knows every open handle: the
 * Prometheus text of all of them, and close_all at exit with each one's counters logged. */
static void test_events_and_registry(void)
{
    char p1[300], p2[300];
    path_in(p1, sizeof p1, "ev1.db");
    path_in(p2, sizeof p2, "ev2.db");
    nmq_outbox_config c1 = config(p1, "ev-a"), c2 = config(p2, "ev-b");
    nmq_outbox *a = NULL, *b = NULL;
    nmq_outbox_stats st;
    char buf[16384];
    size_t need = 0;
    uint64_t total = 0;
    CHECK_RC(nmq_outbox_count_event(NULL, NMQ_OUTBOX_EVENT_FALLBACK, 1, &total), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_open(&c1, &a), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_open(&c2, &b), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_count_event(a, NMQ_OUTBOX_EVENT_QOS0_DROPPED, 2, &total), NMQ_OUTBOX_OK);
    CHECK(total == 2);
    CHECK_RC(nmq_outbox_count_event(a, NMQ_OUTBOX_EVENT_QOS0_DROPPED, 1, NULL), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_count_event(b, NMQ_OUTBOX_EVENT_FALLBACK, 5, &total), NMQ_OUTBOX_OK);
    CHECK(total == 5);
    CHECK_RC(nmq_outbox_count_event(b, (nmq_outbox_event) 9, 1, NULL), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_get_stats(a, &st), NMQ_OUTBOX_OK);
    CHECK(st.dropped_qos0 == 3 && st.fallbacks == 0);
    CHECK_RC(nmq_outbox_stats_json(b, buf, sizeof buf, &need), NMQ_OUTBOX_OK);
    CHECK(strstr(buf, "\"dropped_qos0\":0,\"fallbacks\":5}") != NULL);
    /* every open handle, in the order opened, without a list of the host's */
    CHECK_RC(nmq_outbox_stats_prometheus_all(NULL, 0, &need), NMQ_OUTBOX_ETOOBIG);
    CHECK_RC(nmq_outbox_stats_prometheus_all(buf, sizeof buf, &need), NMQ_OUTBOX_OK);
    CHECK(strstr(buf, "nanomq_bridge_outbox_dropped_total{bridge=\"ev-a\",reason=\"qos0\"} 3\n") != NULL);
    CHECK(strstr(buf, "nanomq_bridge_outbox_fallbacks_total{bridge=\"ev-b\"} 5\n") != NULL);
    CHECK(strstr(buf, "bridge=\"ev-a\"") < strstr(buf, "bridge=\"ev-b\""));
    /* at exit: both closed, each one's counters logged */
    int before = log_count();
    nmq_outbox_close_all();
    CHECK(log_count() >= before + 2);
    pthread_mutex_lock(&log_mtx);
    CHECK(strstr(log_last, "outbox at exit: {\"bridge\":\"ev-b\"") == log_last);
    pthread_mutex_unlock(&log_mtx);
    CHECK_RC(nmq_outbox_flush(a), NMQ_OUTBOX_ECLOSED);
    CHECK_RC(nmq_outbox_flush(b), NMQ_OUTBOX_ECLOSED);
    nmq_outbox_close_all(); /* again: harmless */
    nmq_outbox_free(a);
    nmq_outbox_free(b);
    /* at the host's exit: an append while it exits is accepted and committed at return */
    nmq_outbox *e = NULL;
    int64_t seq = 0;
    CHECK_RC(nmq_outbox_open(&c1, &e), NMQ_OUTBOX_OK);
    before = log_count();
    nmq_outbox_exit_all();
    CHECK(log_count() >= before + 1);
    CHECK_RC(nmq_outbox_append(e, 1, 0, u8("late"), 4, &seq), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_get_stats(e, &st), NMQ_OUTBOX_OK);
    CHECK(st.committed_seq >= seq && st.messages == 1);
    nmq_outbox_exit_all(); /* again (atexit after the signal thread): harmless */
    nmq_outbox_free(e);
    /* freed handles leave the registry */
    CHECK_RC(nmq_outbox_stats_prometheus_all(buf, sizeof buf, &need), NMQ_OUTBOX_OK);
    CHECK(strstr(buf, "ev-a") == NULL && strstr(buf, "ev-b") == NULL);
}

/* Several threads append while one drains: the handle is thread-safe, nothing is lost. */
#define WRITERS 4
#define PER_WRITER 500

static atomic_int writers_done;

static void *writer(void *arg)
{
    nmq_outbox *ob = arg;
    char buf[32];
    void *rv = NULL;
    for (int i = 0; i < PER_WRITER; i++) {
        int n = snprintf(buf, sizeof buf, "w%d", i);
        if (nmq_outbox_append(ob, 1, 0, u8(buf), (size_t) n, NULL) != NMQ_OUTBOX_OK) {
            rv = (void *) 1;
            break;
        }
    }
    atomic_fetch_add(&writers_done, 1);
    return rv;
}

static double now_secs(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void test_threads(void)
{
    char p[300];
    path_in(p, sizeof p, "threads.db");
    nmq_outbox_config c = config(p, "b");
    nmq_outbox *ob = NULL;
    CHECK_RC(nmq_outbox_open(&c, &ob), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_link_up(ob, 0), NMQ_OUTBOX_OK);
    pthread_t t[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        pthread_create(&t[i], NULL, writer, ob);
    }
    int drained = 0;
    uint16_t pid = 1;
    /* Drain while the writers append. Once every writer has returned, all their rows are in
     * the outbox, so the first EMPTY after that means all is drained. The deadline only bounds
     * the loop if something hangs (valgrind runs the threads one at a time: slow, not stuck). */
    double deadline = now_secs() + 300;
    while (drained < WRITERS * PER_WRITER && now_secs() < deadline) {
        int done = atomic_load(&writers_done) == WRITERS; /* read before the lease */
        nmq_outbox_item it;
        if (nmq_outbox_lease(ob, &it) != NMQ_OUTBOX_OK) {
            if (done) {
                break;
            }
            sched_yield();
            continue;
        }
        nmq_outbox_bind(ob, it.seq, pid);
        nmq_outbox_item_free(&it);
        if (nmq_outbox_ack(ob, pid, NMQ_OUTBOX_PUBACK, 0, NULL) == NMQ_OUTBOX_OK) {
            drained++;
        }
        pid = (uint16_t) (pid % 65535 + 1);
    }
    for (int i = 0; i < WRITERS; i++) {
        void *rv;
        pthread_join(t[i], &rv);
        CHECK(rv == NULL);
    }
    CHECK(drained == WRITERS * PER_WRITER);
    nmq_outbox_stats st;
    CHECK_RC(nmq_outbox_get_stats(ob, &st), NMQ_OUTBOX_OK);
    CHECK(st.messages == 0 && st.acked == WRITERS * PER_WRITER);
    nmq_outbox_free(ob);
}

/* Issue 20: the raw CONNACK decides the link (accepted or refused), the window (Receive
 * Maximum) and what is parsed for the host. */
static void test_link_up_connack(void)
{
    char p[300];
    path_in(p, sizeof p, "connack.db");
    nmq_outbox_config c = config(p, "b");
    nmq_outbox *ob = NULL;
    nmq_outbox_connack ack;
    nmq_outbox_stats st;
    CHECK_RC(nmq_outbox_open(&c, &ob), NMQ_OUTBOX_OK);
    /* MQTT 5, session present, Receive Maximum 5, Maximum QoS 1, Server Keep Alive 30,
     * Maximum Packet Size 4096, Retain Available 0, Topic Alias Maximum 8 */
    static const uint8_t v5[] = {0x20, 0x17, 0x01, 0x00, 0x14, 0x21, 0x00, 0x05, 0x24, 0x01,
                                 0x13, 0x00, 0x1e, 0x27, 0x00, 0x00, 0x10, 0x00, 0x25, 0x00,
                                 0x22, 0x00, 0x08, 0x11, 0x00};
    CHECK_RC(nmq_outbox_link_up_connack(ob, 5, v5, 23, NULL), NMQ_OUTBOX_EINVAL); /* cut */
    static const uint8_t v5ok[] = {0x20, 0x15, 0x01, 0x00, 0x12, 0x21, 0x00, 0x05, 0x24,
                                   0x01, 0x13, 0x00, 0x1e, 0x27, 0x00, 0x00, 0x10, 0x00,
                                   0x25, 0x00, 0x22, 0x00, 0x08};
    memset(&ack, 0xff, sizeof ack);
    CHECK_RC(nmq_outbox_link_up_connack(ob, 5, v5ok, sizeof v5ok, &ack), NMQ_OUTBOX_OK);
    CHECK(ack.proto_ver == 5 && ack.reason_code == 0 && ack.session_present == 1);
    CHECK(ack.receive_maximum == 5 && ack.maximum_qos == 1 && ack.retain_available == 0);
    CHECK(ack.has_server_keep_alive == 1 && ack.server_keep_alive == 30);
    CHECK(ack.maximum_packet_size == 4096 && ack.topic_alias_maximum == 8);
    CHECK(ack.has_session_expiry_interval == 0);
    CHECK_RC(nmq_outbox_get_stats(ob, &st), NMQ_OUTBOX_OK);
    CHECK(st.link_up == 1 && st.window == 5);
    /* malformed: EINVAL, *out zeroed, nothing changed */
    static const uint8_t unknown[] = {0x20, 0x05, 0x00, 0x00, 0x02, 0x7f, 0x00};
    CHECK_RC(nmq_outbox_link_up_connack(ob, 5, unknown, sizeof unknown, &ack),
             NMQ_OUTBOX_EINVAL);
    CHECK(ack.proto_ver == 0 && ack.receive_maximum == 0);
    CHECK(strstr(log_last, "unknown property 0x7f") != NULL);
    CHECK_RC(nmq_outbox_link_up_connack(ob, 5, NULL, 4, &ack), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_link_up_connack(ob, 9, v5ok, sizeof v5ok, NULL), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_get_stats(ob, &st), NMQ_OUTBOX_OK);
    CHECK(st.link_up == 1 && st.window == 5);
    /* refused: the link is down, and what was parsed is given */
    static const uint8_t refused[] = {0x20, 0x03, 0x00, 0x87, 0x00};
    CHECK_RC(nmq_outbox_link_up_connack(ob, 5, refused, sizeof refused, &ack),
             NMQ_OUTBOX_EREFUSED);
    CHECK(ack.reason_code == 0x87 && ack.session_present == 0);
    CHECK_RC(nmq_outbox_get_stats(ob, &st), NMQ_OUTBOX_OK);
    CHECK(st.link_up == 0);
    /* MQTT 3.1.1: return code 0 accepted, 5 refused; all defaults */
    CHECK_RC(nmq_outbox_link_up_connack(ob, 4, u8("\x20\x02\x00\x05"), 4, &ack),
             NMQ_OUTBOX_EREFUSED);
    CHECK_RC(nmq_outbox_link_up_connack(ob, 4, u8("\x20\x02\x01\x00"), 4, &ack),
             NMQ_OUTBOX_OK);
    CHECK(ack.receive_maximum == 65535 && ack.maximum_qos == 2 && ack.retain_available == 1);
    CHECK_RC(nmq_outbox_get_stats(ob, &st), NMQ_OUTBOX_OK);
    CHECK(st.link_up == 1 && st.window == 32);
    /* Session Present 0: a released QoS 2 row is sent again as a new PUBLISH. */
    nmq_outbox_item it;
    nmq_outbox_ack_outcome o;
    CHECK_RC(nmq_outbox_append(ob, 2, 0, u8("q2"), 2, NULL), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_lease(ob, &it), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_bind(ob, it.seq, 9), NMQ_OUTBOX_OK);
    nmq_outbox_item_free(&it);
    CHECK_RC(nmq_outbox_ack(ob, 9, NMQ_OUTBOX_PUBREC, 0, &o), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_link_down(ob), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_link_up_connack(ob, 4, u8("\x20\x02\x01\x00"), 4, NULL), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_lease(ob, &it), NMQ_OUTBOX_OK);
    CHECK(it.released == 1 && it.packet_id == 9); /* session present: PUBREL */
    nmq_outbox_item_free(&it);
    CHECK_RC(nmq_outbox_link_up_connack(ob, 4, u8("\x20\x02\x00\x00"), 4, NULL), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_lease(ob, &it), NMQ_OUTBOX_OK);
    CHECK(it.released == 0 && it.packet_id == 0 && it.dup == 0 && it.qos == 2);
    nmq_outbox_item_free(&it);
    CHECK_RC(nmq_outbox_close(ob), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_link_up_connack(ob, 4, u8("\x20\x02\x01\x00"), 4, NULL),
             NMQ_OUTBOX_ECLOSED);
    nmq_outbox_free(ob);
}

/* Issue 20: a PUBACK 0x97 (quota exceeded) queues the row again behind a back-off; a
 * rejection keeps it as a dead letter, shown in the JSON and Prometheus counters. */
static void test_ack_refusals(void)
{
    char p[300];
    path_in(p, sizeof p, "refusals.db");
    nmq_outbox_config c = config(p, "b");
    /* long enough that the checks right after the refusal see the back-off even under
     * valgrind; its end is then awaited (polled, bounded), not slept for */
    c.backoff_ms = 2000;
    c.dead_letter_limit = 5;
    nmq_outbox *ob = NULL;
    nmq_outbox_item it;
    nmq_outbox_ack_outcome o;
    nmq_outbox_stats st;
    int64_t a = 0;
    CHECK_RC(nmq_outbox_open(&c, &ob), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_append(ob, 1, 0, u8("a"), 1, &a), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_append(ob, 1, 0, u8("b"), 1, NULL), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_link_up(ob, 0), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_lease(ob, &it), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_bind(ob, it.seq, 5), NMQ_OUTBOX_OK);
    nmq_outbox_item_free(&it);
    CHECK_RC(nmq_outbox_ack(ob, 5, NMQ_OUTBOX_PUBACK, 0x97, &o), NMQ_OUTBOX_OK);
    CHECK(o == NMQ_OUTBOX_ACK_RETRY);
    CHECK_RC(nmq_outbox_lease(ob, &it), NMQ_OUTBOX_EMPTY); /* backing off */
    CHECK_RC(nmq_outbox_get_stats(ob, &st), NMQ_OUTBOX_OK);
    CHECK(st.backoffs == 1 && st.backing_off == 1 && st.messages == 2 && st.dead_letters == 0);
    nmq_outbox_result lr = NMQ_OUTBOX_EMPTY;
    for (int i = 0; i < 3000 && (lr = nmq_outbox_lease(ob, &it)) == NMQ_OUTBOX_EMPTY; i++) {
        usleep(10 * 1000); /* the back-off ends after 2 s: at most 30 s */
    }
    CHECK_RC(lr, NMQ_OUTBOX_OK);
    CHECK(it.seq == a && it.packet_id == 0 && it.dup == 0);
    CHECK_RC(nmq_outbox_bind(ob, it.seq, 6), NMQ_OUTBOX_OK);
    nmq_outbox_item_free(&it);
    CHECK_RC(nmq_outbox_ack(ob, 6, NMQ_OUTBOX_PUBACK, 0x87, &o), NMQ_OUTBOX_OK);
    CHECK(o == NMQ_OUTBOX_ACK_REJECTED);
    CHECK_RC(nmq_outbox_get_stats(ob, &st), NMQ_OUTBOX_OK);
    CHECK(st.dead_letters == 1 && st.dead_lettered == 1 && st.messages == 1);
    char buf[8192];
    size_t need = 0;
    CHECK_RC(nmq_outbox_stats_json(ob, buf, sizeof buf, &need), NMQ_OUTBOX_OK);
    CHECK(strstr(buf, "\"dead_letters\":1,\"dead_lettered\":1,\"backoffs\":1") != NULL);
    nmq_outbox *const obs[1] = {ob};
    CHECK_RC(nmq_outbox_stats_prometheus(obs, 1, buf, sizeof buf, &need), NMQ_OUTBOX_OK);
    CHECK(strstr(buf, "nanomq_bridge_outbox_dead_letters{bridge=\"b\"} 1\n") != NULL);
    nmq_outbox_free(ob);
    /* kept in the file: counted again at the next open */
    ob = NULL;
    CHECK_RC(nmq_outbox_open(&c, &ob), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_get_stats(ob, &st), NMQ_OUTBOX_OK);
    CHECK(st.dead_letters == 1 && st.dead_lettered == 0 && st.messages == 1);
    nmq_outbox_free(ob);
}

/* Issue 20: why the link went down. A DISCONNECT refusal with rows in flight probes (window
 * 1); the row alone in flight when it comes again becomes a dead letter after max_attempts;
 * the probe ends once the rows in flight at the refusal are acked; a transient reason backs
 * off. */
static void test_link_down_reason(void)
{
    char p[300];
    path_in(p, sizeof p, "down.db");
    nmq_outbox_config c = config(p, "b");
    c.window = 3;
    c.max_attempts = 1;
    c.backoff_ms = 2000; /* seen at once even under valgrind; its end awaited, bounded */
    nmq_outbox *ob = NULL;
    nmq_outbox_item it;
    nmq_outbox_stats st;
    nmq_outbox_decision d;
    nmq_outbox_ack_outcome o;
    CHECK_RC(nmq_outbox_open(&c, &ob), NMQ_OUTBOX_OK);
    for (int i = 0; i < 4; i++) {
        CHECK_RC(nmq_outbox_append(ob, 1, 0, u8("m"), 1, NULL), NMQ_OUTBOX_OK);
    }
    CHECK_RC(nmq_outbox_link_up(ob, 0), NMQ_OUTBOX_OK);
    for (uint16_t pid = 1; pid <= 3; pid++) {
        CHECK_RC(nmq_outbox_lease(ob, &it), NMQ_OUTBOX_OK);
        CHECK_RC(nmq_outbox_bind(ob, it.seq, pid), NMQ_OUTBOX_OK);
        nmq_outbox_item_free(&it);
    }
    CHECK_RC(nmq_outbox_link_down_reason(ob, 0x87, 1), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_get_stats(ob, &st), NMQ_OUTBOX_OK);
    CHECK(st.probing == 1 && st.link_up == 0 && st.inflight == 0 && st.dead_letters == 0);
    CHECK_RC(nmq_outbox_link_up(ob, 0), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_decide(ob, 1, &d), NMQ_OUTBOX_OK);
    CHECK(d == NMQ_OUTBOX_STORE);
    CHECK_RC(nmq_outbox_lease(ob, &it), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_bind(ob, it.seq, 4), NMQ_OUTBOX_OK);
    nmq_outbox_item_free(&it);
    CHECK_RC(nmq_outbox_lease(ob, &it), NMQ_OUTBOX_EMPTY); /* window 1 */
    CHECK_RC(nmq_outbox_link_down_reason(ob, 0x87, 1), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_get_stats(ob, &st), NMQ_OUTBOX_OK);
    CHECK(st.dead_letters == 1 && st.messages == 3 && st.probing == 1);
    CHECK_RC(nmq_outbox_link_up(ob, 0), NMQ_OUTBOX_OK);
    /* the other rows in flight at the refusal go one by one; the probe ends with the last */
    for (uint16_t pid = 5; pid <= 6; pid++) {
        CHECK_RC(nmq_outbox_get_stats(ob, &st), NMQ_OUTBOX_OK);
        CHECK(st.probing == 1);
        CHECK_RC(nmq_outbox_lease(ob, &it), NMQ_OUTBOX_OK);
        CHECK_RC(nmq_outbox_bind(ob, it.seq, pid), NMQ_OUTBOX_OK);
        nmq_outbox_item_free(&it);
        CHECK_RC(nmq_outbox_lease(ob, &it), NMQ_OUTBOX_EMPTY);
        CHECK_RC(nmq_outbox_ack(ob, pid, NMQ_OUTBOX_PUBACK, 0, &o), NMQ_OUTBOX_OK);
    }
    CHECK_RC(nmq_outbox_ack(ob, 6, NMQ_OUTBOX_PUBACK, 0, &o), NMQ_OUTBOX_NOT_OURS);
    CHECK_RC(nmq_outbox_get_stats(ob, &st), NMQ_OUTBOX_OK);
    CHECK(st.probing == 0 && st.acks_ignored == 1);
    /* transient: back off */
    CHECK_RC(nmq_outbox_link_down_reason(ob, 0x97, 1), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_link_up(ob, 0), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_lease(ob, &it), NMQ_OUTBOX_EMPTY);
    CHECK_RC(nmq_outbox_get_stats(ob, &st), NMQ_OUTBOX_OK);
    CHECK(st.backing_off == 1 && st.backoffs == 1 && st.probing == 0);
    nmq_outbox_result lr = NMQ_OUTBOX_EMPTY;
    for (int i = 0; i < 3000 && (lr = nmq_outbox_lease(ob, &it)) == NMQ_OUTBOX_EMPTY; i++) {
        usleep(10 * 1000); /* the back-off ends after 2 s: at most 30 s */
    }
    CHECK_RC(lr, NMQ_OUTBOX_OK);
    nmq_outbox_item_free(&it);
    /* an ordinary close (0x8B): nothing more */
    CHECK_RC(nmq_outbox_link_down_reason(ob, 0x8B, 1), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_get_stats(ob, &st), NMQ_OUTBOX_OK);
    CHECK(st.probing == 0 && st.dead_letters == 1);
    CHECK_RC(nmq_outbox_close(ob), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_link_down_reason(ob, 0, 0), NMQ_OUTBOX_ECLOSED);
    nmq_outbox_free(ob);
}

/* nmq_outbox_parse_duration_ms: units, spaces, the bound, values that wrapped in the C parser
 * NanoNNG's conf_ver2.c had (strtoull, then an unchecked multiply), NULLs; *out untouched on
 * every error. */
static void test_parse_duration(void)
{
    const uint64_t hour = 3600000;
    const struct {
        const char *text;
        uint64_t ms;
    } good[] = {{"1500", 1500}, {"1500ms", 1500}, {"5s", 5000}, {"2m", 120000},
                {"1h", 3600000}, {"0", 0},        {" 5 s ", 5000}, {"\t500ms", 500},
                {"60m", 3600000}, {"3600000", 3600000}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        uint64_t ms = 7;
        CHECK_RC(nmq_outbox_parse_duration_ms(good[i].text, hour, &ms), NMQ_OUTBOX_OK);
        CHECK(ms == good[i].ms);
    }
    const char *bad[] = {"18446744073709552s", /* wrapped to 384 ms */
                         "307445734561826m",   /* 8384 ms */
                         "5124095576031h",     /* 2048384 ms */
                         "18446744073709551615h", "18446744073709551616", "3600001", "61m", "2h",
                         "", " ", "-1", "-1s", "+5s", "1.5s", "5S", "5sec", "s", "five", "5 0s"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t ms = 7;
        CHECK_RC(nmq_outbox_parse_duration_ms(bad[i], hour, &ms), NMQ_OUTBOX_EINVAL);
        CHECK(ms == 7);
    }
    uint64_t ms = 7;
    CHECK_RC(nmq_outbox_parse_duration_ms("18446744073709551615", UINT64_MAX, &ms), NMQ_OUTBOX_OK);
    CHECK(ms == UINT64_MAX);
    ms = 7;
    CHECK_RC(nmq_outbox_parse_duration_ms("1", 0, &ms), NMQ_OUTBOX_EINVAL);
    CHECK(ms == 7);
    CHECK_RC(nmq_outbox_parse_duration_ms(NULL, hour, &ms), NMQ_OUTBOX_EINVAL);
    CHECK(ms == 7);
    CHECK_RC(nmq_outbox_parse_duration_ms("5s", hour, NULL), NMQ_OUTBOX_EINVAL);
}

/* The pure rules of the dialers: connect timeout and the wait between failed dials. */
static void test_dial_rules(void)
{
    CHECK(nmq_outbox_connect_timeout_ms(-1, 10) == 15000);
    CHECK(nmq_outbox_connect_timeout_ms(0, 10) == 0);
    CHECK(nmq_outbox_connect_timeout_ms(INT64_MAX, 10) == INT32_MAX);
    CHECK(nmq_outbox_retry_backoff_ms(0, 5000) == 100);
    CHECK(nmq_outbox_retry_backoff_ms(2, 5000) == 400);
    CHECK(nmq_outbox_retry_backoff_ms(UINT32_MAX, 5000) == 5000);
    CHECK(nmq_outbox_retry_backoff_ms(40, UINT32_MAX) == UINT32_MAX);
    CHECK(nmq_outbox_retry_backoff_ms(10, 0) == 5000);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s <scratch dir>\n", argv[0]);
        return 2;
    }
    snprintf(dir, sizeof dir, "%s", argv[1]);
    test_strings();
    test_config_errors();
    test_null_handle();
    test_flow();
    test_lengths_qos0_drop();
    test_released();
    test_reject_new();
    test_ack_after_commit();
    test_ack_order();
    test_ack_gate();
    test_corrupt_file();
    test_empty_message();
    test_bad_enums();
    test_count_lost();
    test_events_and_registry();
    test_threads();
    test_link_up_connack();
    test_ack_refusals();
    test_link_down_reason();
    test_parse_duration();
    test_dial_rules();
    return report(argv[0]);
}
