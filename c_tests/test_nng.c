/* The nng entry points of nmq_outbox_nng.h with real nng objects (Debian's libnng).
 * Usage: test_nng <scratch dir> */
#include <nng/nng.h>
#include <nng/protocol/pair0/pair.h>

#include "nmq_outbox_nng.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static char dir[256];

/* An encoded PUBLISH: fixed header in the nng header, the rest in the body. */
static nng_msg *publish(int qos, const char *payload, const uint8_t *props, size_t props_len)
{
    uint8_t body[512];
    size_t n = 0;
    body[n++] = 0;
    body[n++] = 5;
    memcpy(body + n, "test1", 5);
    n += 5;
    if (qos > 0) {
        body[n++] = 0x12;
        body[n++] = 0x34;
    }
    if (props != NULL) {
        body[n++] = (uint8_t) props_len;
        memcpy(body + n, props, props_len);
        n += props_len;
    }
    memcpy(body + n, payload, strlen(payload));
    n += strlen(payload);
    uint8_t hdr[2] = {(uint8_t) (0x30 | (qos << 1)), (uint8_t) n};
    nng_msg *m = NULL;
    if (nng_msg_alloc(&m, 0) != 0) {
        return NULL;
    }
    nng_msg_header_append(m, hdr, 2);
    nng_msg_append(m, body, n);
    return m;
}

/* The packet id and DUP flag of an encoded QoS 1/2 PUBLISH (topic "test1"). */
static uint16_t pid_of(nng_msg *m)
{
    const uint8_t *b = nng_msg_body(m);
    return (uint16_t) ((b[7] << 8) | b[8]);
}

static int dup_of(nng_msg *m)
{
    return (*(const uint8_t *) nng_msg_header(m) & 0x08) != 0;
}

/* The Message Expiry Interval of an encoded v5 QoS 1/2 PUBLISH whose first property is it. */
static uint32_t expiry_of(nng_msg *m)
{
    const uint8_t *b = nng_msg_body(m);
    if (b[10] != 0x02) {
        return 0;
    }
    return ((uint32_t) b[11] << 24) | ((uint32_t) b[12] << 16) | ((uint32_t) b[13] << 8) | b[14];
}

/* The encoded bytes (header and body joined) of a message. */
static size_t flat(nng_msg *m, uint8_t *buf, size_t cap)
{
    size_t h = nng_msg_header_len(m), b = nng_msg_len(m);
    if (h + b > cap) {
        return 0;
    }
    memcpy(buf, nng_msg_header(m), h);
    memcpy(buf + h, nng_msg_body(m), b);
    return h + b;
}

static nmq_outbox *open_outbox(const char *name)
{
    char p[300];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    nmq_outbox_config c;
    nmq_outbox_config_init(&c);
    c.path = p;
    c.bridge = "nng";
    c.log_fn = capture_log;
    c.log_level = NMQ_OUTBOX_LOG_DEBUG;
    nmq_outbox *ob = NULL;
    CHECK_RC(nmq_outbox_open(&c, &ob), NMQ_OUTBOX_OK);
    return ob;
}

static void test_publish_store_and_lease(void)
{
    nmq_outbox *ob = open_outbox("pub.db");
    nng_socket sock;
    CHECK(nng_pair0_open(&sock) == 0);
    nng_aio *lane = NULL;
    CHECK(nng_aio_alloc(&lane, NULL, NULL) == 0);

    /* Link down: STORE, the message is consumed (ASan/valgrind would see a leak otherwise). */
    nng_msg *m = publish(1, "hello", NULL, 0);
    nng_msg *orig = publish(1, "hello", NULL, 0);
    nmq_outbox_decision d = NMQ_OUTBOX_SEND_NOW;
    CHECK_RC(nmq_outbox_nng_publish(ob, lane, 0, 1000, 4, m, &d), NMQ_OUTBOX_OK);
    CHECK(d == NMQ_OUTBOX_STORE);

    /* Not a PUBLISH: EINVAL, and the message stays ours (freed below, no double free). */
    nng_msg *bad = NULL;
    nng_msg_alloc(&bad, 0);
    uint8_t puback[2] = {0x40, 2};
    nng_msg_header_append(bad, puback, 2);
    nng_msg_append(bad, "\x00\x01", 2);
    CHECK_RC(nmq_outbox_nng_publish(ob, lane, 0, 1000, 4, bad, &d), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_nng_requeue(ob, bad, 4, 0), NMQ_OUTBOX_EINVAL);
    nng_msg_free(bad);
    CHECK_RC(nmq_outbox_nng_publish(ob, lane, 0, 1000, 4, NULL, &d), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_nng_publish(NULL, lane, 0, 1000, 4, orig, &d), NMQ_OUTBOX_EINVAL);

    /* Replay: the lease rebuilds the bytes that were stored, with the packet id field as a
     * placeholder (0) until the bind writes the chosen one. */
    nng_msg *out = NULL;
    int64_t seq = 0;
    uint16_t prev = 99;
    uint8_t rel = 9;
    CHECK_RC(nmq_outbox_nng_lease(ob, 4, &out, &seq, &prev, &rel), NMQ_OUTBOX_EMPTY); /* down */
    CHECK(out == NULL);
    CHECK_RC(nmq_outbox_link_up(ob, 0), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_nng_lease(ob, 9, &out, &seq, &prev, &rel), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_nng_lease(ob, 4, &out, &seq, &prev, &rel), NMQ_OUTBOX_OK);
    CHECK(out != NULL && seq == 1 && prev == 0 && rel == 0);
    CHECK(nng_msg_header_len(out) == nng_msg_header_len(orig));
    CHECK(memcmp(nng_msg_header(out), nng_msg_header(orig), nng_msg_header_len(orig)) == 0);
    CHECK(nng_msg_len(out) == nng_msg_len(orig));
    CHECK(pid_of(out) == 0);
    CHECK(memcmp(nng_msg_body(out), nng_msg_body(orig), 7) == 0); /* topic */
    CHECK(memcmp((char *) nng_msg_body(out) + 9, (char *) nng_msg_body(orig) + 9,
                 nng_msg_len(orig) - 9) == 0);
    CHECK_RC(nmq_outbox_nng_bind(ob, seq, 0, out), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_nng_bind(ob, seq, 7, NULL), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_nng_bind(ob, seq, 7, out), NMQ_OUTBOX_OK);
    CHECK(pid_of(out) == 7 && !dup_of(out)); /* a fresh id: no DUP */
    nng_msg_free(out);
    nng_msg_free(orig);
    CHECK_RC(nmq_outbox_ack(ob, 7, NMQ_OUTBOX_PUBACK, 0, NULL), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_nng_lease(ob, 4, &out, &seq, &prev, &rel), NMQ_OUTBOX_EMPTY);
    CHECK_RC(nmq_outbox_nng_lease(ob, 4, NULL, &seq, &prev, &rel), NMQ_OUTBOX_EINVAL);

    /* Link up, nothing held, lane free: SEND_NOW puts the message on the lane and the caller
     * sends it. The pair socket has no peer, so the send times out and, by nng's rule, the
     * message is back in the aio for the caller. */
    m = publish(1, "direct", NULL, 0);
    CHECK_RC(nmq_outbox_nng_publish(ob, lane, 0, 50, 4, m, NULL), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_nng_publish(ob, lane, 0, 50, 4, m, &d), NMQ_OUTBOX_OK);
    CHECK(d == NMQ_OUTBOX_SEND_NOW);
    CHECK(nng_aio_get_msg(lane) == m);
    nng_send_aio(sock, lane);
    nng_aio_wait(lane);
    CHECK(nng_aio_result(lane) == NNG_ETIMEDOUT);
    nng_msg *back = nng_aio_get_msg(lane);
    CHECK(back == m);
    /* The cut: the direct message goes back to the outbox, at the head. */
    CHECK_RC(nmq_outbox_nng_requeue(ob, back, 4, 1), NMQ_OUTBOX_EINVAL); /* QoS 1: no PUBREC */
    CHECK_RC(nmq_outbox_nng_requeue(ob, back, 4, 0), NMQ_OUTBOX_OK);
    nng_aio_set_msg(lane, NULL);

    /* Lane busy: STORE even with the link up. */
    m = publish(2, "busy", NULL, 0);
    CHECK_RC(nmq_outbox_nng_publish(ob, lane, 1, 50, 4, m, &d), NMQ_OUTBOX_OK);
    CHECK(d == NMQ_OUTBOX_STORE);
    CHECK_RC(nmq_outbox_nng_lease(ob, 4, &out, &seq, &prev, &rel), NMQ_OUTBOX_OK);
    CHECK(memcmp((char *) nng_msg_body(out) + nng_msg_len(out) - 6, "direct", 6) == 0);
    CHECK(prev == 0x1234 && rel == 0); /* the id it was sent with, for a DUP resend */
    CHECK(pid_of(out) == 0x1234 && !dup_of(out));
    CHECK_RC(nmq_outbox_nng_bind(ob, seq, 0x1234, out), NMQ_OUTBOX_OK);
    CHECK(pid_of(out) == 0x1234 && dup_of(out)); /* same id again: DUP */
    nng_msg_free(out);
    CHECK_RC(nmq_outbox_nng_lease(ob, 4, &out, NULL, NULL, NULL), NMQ_OUTBOX_OK);
    CHECK(memcmp((char *) nng_msg_body(out) + nng_msg_len(out) - 4, "busy", 4) == 0);
    nng_msg_free(out);

    nng_aio_free(lane);
    nng_close(sock);
    nmq_outbox_free(ob);
}

static void test_store_aio(void)
{
    nmq_outbox *ob = open_outbox("aio.db");
    nng_aio *aio = NULL;
    CHECK(nng_aio_alloc(&aio, NULL, NULL) == 0);

    /* N1: the aio is finished with 0 and its message taken: the lane is never left busy. */
    nng_aio_set_msg(aio, publish(1, "offline", NULL, 0));
    CHECK(nng_aio_begin(aio));
    CHECK_RC(nmq_outbox_nng_store_aio(ob, aio, 4), NMQ_OUTBOX_OK);
    nng_aio_wait(aio);
    CHECK(nng_aio_result(aio) == 0);
    CHECK(nng_aio_get_msg(aio) == NULL);

    /* No message: EINVAL, the aio is left to the caller, who finishes it. */
    CHECK(nng_aio_begin(aio));
    CHECK_RC(nmq_outbox_nng_store_aio(ob, aio, 4), NMQ_OUTBOX_EINVAL);
    nng_aio_finish(aio, NNG_ECLOSED);
    nng_aio_wait(aio);
    CHECK(nng_aio_result(aio) == NNG_ECLOSED);
    CHECK_RC(nmq_outbox_nng_store_aio(ob, NULL, 4), NMQ_OUTBOX_EINVAL);

    /* MQTT 5 with a Message Expiry Interval of 3600 s: the remaining expiry is handed out. */
    uint8_t props[] = {0x02, 0, 0, 0x0e, 0x10};
    nng_aio_set_msg(aio, publish(2, "v5", props, sizeof props));
    CHECK(nng_aio_begin(aio));
    CHECK_RC(nmq_outbox_nng_store_aio(ob, aio, 5), NMQ_OUTBOX_OK);
    nng_aio_wait(aio);
    /* A v5 packet parsed as v3.1.1 is still a PUBLISH; with a bad version it is refused. */
    nng_msg *m = publish(1, "x", NULL, 0);
    nng_aio_set_msg(aio, m);
    CHECK(nng_aio_begin(aio));
    CHECK_RC(nmq_outbox_nng_store_aio(ob, aio, 9), NMQ_OUTBOX_EINVAL);
    nng_aio_finish(aio, NNG_EINVAL);
    nng_aio_wait(aio);
    CHECK(nng_aio_get_msg(aio) == m);
    nng_msg_free(m);
    nng_aio_set_msg(aio, NULL);

    CHECK_RC(nmq_outbox_link_up(ob, 0), NMQ_OUTBOX_OK);
    nmq_outbox_item it;
    CHECK_RC(nmq_outbox_lease(ob, &it), NMQ_OUTBOX_OK);
    CHECK(it.qos == 1 && it.expiry_secs == 0);
    nmq_outbox_item_free(&it);
    CHECK_RC(nmq_outbox_lease(ob, &it), NMQ_OUTBOX_OK);
    CHECK(it.qos == 2 && it.expiry_secs > 3590 && it.expiry_secs <= 3600);
    nmq_outbox_item_free(&it);

    nng_aio_free(aio);
    nmq_outbox_free(ob);
}

/* QoS 2 resumed with PUBREL: after PUBREC, a link loss gives the row back as released and
 * the lease hands out PUBREL on the same packet id, never the PUBLISH again (issue 8 item 14).
 * A direct send whose PUBREC came is requeued with released = 1 and resumed the same way. */
static void test_released_rows_resume_with_pubrel(void)
{
    nmq_outbox *ob = open_outbox("rel.db");
    nng_aio *lane = NULL;
    CHECK(nng_aio_alloc(&lane, NULL, NULL) == 0);
    nmq_outbox_decision d;
    CHECK_RC(nmq_outbox_nng_publish(ob, lane, 0, 50, 5, publish(2, "q2", (const uint8_t *) "", 0), &d),
             NMQ_OUTBOX_OK);
    CHECK(d == NMQ_OUTBOX_STORE);
    CHECK_RC(nmq_outbox_link_up(ob, 0), NMQ_OUTBOX_OK);
    nng_msg *out = NULL;
    int64_t seq = 0, seq1;
    uint16_t prev = 1;
    uint8_t rel = 1;
    CHECK_RC(nmq_outbox_nng_lease(ob, 5, &out, &seq, &prev, &rel), NMQ_OUTBOX_OK);
    CHECK(prev == 0 && rel == 0 && (*(uint8_t *) nng_msg_header(out) & 0xf6) == 0x34);
    seq1 = seq;
    CHECK_RC(nmq_outbox_nng_bind(ob, seq, 0x0101, out), NMQ_OUTBOX_OK);
    nng_msg_free(out);
    nmq_outbox_ack_outcome o;
    CHECK_RC(nmq_outbox_ack(ob, 0x0101, NMQ_OUTBOX_PUBREC, 0, &o), NMQ_OUTBOX_OK);
    CHECK(o == NMQ_OUTBOX_ACK_PROGRESS);
    /* PUBCOMP lost with the link. */
    CHECK_RC(nmq_outbox_link_down(ob), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_link_up(ob, 0), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_nng_lease(ob, 5, &out, &seq, &prev, &rel), NMQ_OUTBOX_OK);
    CHECK(seq == seq1 && prev == 0x0101 && rel == 1);
    CHECK(nng_msg_header_len(out) == 2 && nng_msg_len(out) == 2);
    CHECK(memcmp(nng_msg_header(out), "\x62\x02", 2) == 0);
    CHECK(memcmp(nng_msg_body(out), "\x01\x01", 2) == 0);
    /* A PUBREL resumes on its own id only. */
    CHECK_RC(nmq_outbox_nng_bind(ob, seq, 0x0202, out), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_nng_bind(ob, seq, 0x0101, out), NMQ_OUTBOX_OK);
    CHECK(memcmp(nng_msg_header(out), "\x62\x02", 2) == 0);
    nng_msg_free(out);
    CHECK_RC(nmq_outbox_ack(ob, 0x0101, NMQ_OUTBOX_PUBCOMP, 0, &o), NMQ_OUTBOX_OK);
    CHECK(o == NMQ_OUTBOX_ACK_DONE);

    /* N2/N3: a direct QoS 2 send (packet id 0x1234) whose PUBREC came, then its cancel. */
    CHECK_RC(nmq_outbox_nng_requeue(ob, publish(2, "direct2", NULL, 0), 4, 1), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_nng_lease(ob, 4, &out, &seq, &prev, &rel), NMQ_OUTBOX_OK);
    CHECK(prev == 0x1234 && rel == 1);
    CHECK(memcmp(nng_msg_header(out), "\x62\x02", 2) == 0);
    CHECK(memcmp(nng_msg_body(out), "\x12\x34", 2) == 0);
    /* Not released (no PUBREC yet): the PUBLISH again, same id, DUP. */
    nng_msg *m2 = NULL;
    int64_t seq2 = 0;
    CHECK_RC(nmq_outbox_nng_requeue(ob, publish(2, "direct3", NULL, 0), 4, 0), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_nng_lease(ob, 4, &m2, &seq2, &prev, &rel), NMQ_OUTBOX_OK);
    CHECK(prev == 0x1234 && rel == 0 && (*(uint8_t *) nng_msg_header(m2) & 0xf0) == 0x30);
    /* Both rows carry 0x1234 (two requeues of one id); the outbox binds it to one at a time. */
    CHECK_RC(nmq_outbox_nng_bind(ob, seq, 0x1234, out), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_nng_bind(ob, seq2, 0x1234, m2), NMQ_OUTBOX_EINVAL);
    CHECK(pid_of(m2) == 0x1234 && !dup_of(m2)); /* unchanged on error */
    CHECK_RC(nmq_outbox_nng_bind(ob, seq2, 0x2000, m2), NMQ_OUTBOX_OK);
    CHECK(pid_of(m2) == 0x2000 && !dup_of(m2));
    /* A PUBREL handed to bind of another row: that row is not changed either. */
    CHECK_RC(nmq_outbox_nng_bind(ob, seq2, 0x2001, out), NMQ_OUTBOX_EINVAL);
    nng_msg_free(out);
    nng_msg_free(m2);

    nng_aio_free(lane);
    nmq_outbox_free(ob);
}

/* The replayed PUBLISH carries the remaining Message Expiry Interval, not the original one
 * (MQTT 5 3.3.2.3.3, issue 8 item 17): the row's remaining seconds (here 100, stored through
 * the plain API with a packet that says 3600) are written into the packet, and added to a
 * packet that has no such property. */
static void test_remaining_expiry_on_replay(void)
{
    nmq_outbox *ob = open_outbox("exp.db");
    uint8_t props[] = {0x02, 0, 0, 0x0e, 0x10}; /* 3600 s */
    uint8_t buf[512];
    nng_msg *m = publish(1, "exp", props, sizeof props);
    size_t n = flat(m, buf, sizeof buf);
    CHECK(n > 0);
    CHECK_RC(nmq_outbox_append(ob, 1, 100, buf, n, NULL), NMQ_OUTBOX_OK);
    nng_msg_free(m);
    m = publish(1, "noexp", (const uint8_t *) "", 0);
    size_t n2 = flat(m, buf, sizeof buf);
    CHECK_RC(nmq_outbox_append(ob, 1, 50, buf, n2, NULL), NMQ_OUTBOX_OK);
    nng_msg_free(m);
    /* Stored through the nng path: the expiry comes from the packet itself. */
    CHECK_RC(nmq_outbox_nng_requeue(ob, publish(2, "v5", props, sizeof props), 5, 0),
             NMQ_OUTBOX_OK);

    CHECK_RC(nmq_outbox_link_up(ob, 0), NMQ_OUTBOX_OK);
    nng_msg *out = NULL;
    int64_t seq = 0;
    CHECK_RC(nmq_outbox_nng_lease(ob, 5, &out, &seq, NULL, NULL), NMQ_OUTBOX_OK);
    CHECK(expiry_of(out) > 3590 && expiry_of(out) <= 3600);
    nng_msg_free(out);
    CHECK_RC(nmq_outbox_nng_lease(ob, 5, &out, &seq, NULL, NULL), NMQ_OUTBOX_OK);
    CHECK(expiry_of(out) == 100);
    CHECK(nng_msg_len(out) == n - 2);
    nng_msg_free(out);
    CHECK_RC(nmq_outbox_nng_lease(ob, 5, &out, &seq, NULL, NULL), NMQ_OUTBOX_OK);
    CHECK(expiry_of(out) == 50);       /* the property was added... */
    CHECK(nng_msg_len(out) == n2 - 2 + 5); /* ...and the lengths re-encoded */
    CHECK(*(uint8_t *) nng_msg_body(out) == 0 && ((uint8_t *) nng_msg_body(out))[9] == 5);
    CHECK(((uint8_t *) nng_msg_header(out))[1] == nng_msg_len(out));
    CHECK(memcmp((char *) nng_msg_body(out) + nng_msg_len(out) - 5, "noexp", 5) == 0);
    nng_msg_free(out);
    nmq_outbox_free(ob);
}

/* A row that makes no packet (issue 8 item 10: written through the plain API with other
 * bytes, or damaged) is dropped, counted and logged, and the lease goes on to the next row
 * instead of returning EINVAL forever. */
static void test_malformed_row_dropped(void)
{
    nmq_outbox *ob = open_outbox("bad.db");
    CHECK_RC(nmq_outbox_append(ob, 1, 0, (const uint8_t *) "not a packet", 12, NULL),
             NMQ_OUTBOX_OK);
    uint8_t puback[] = {0x40, 2, 0, 1};
    CHECK_RC(nmq_outbox_append(ob, 2, 0, puback, sizeof puback, NULL), NMQ_OUTBOX_OK);
    uint8_t buf[512];
    nng_msg *m = publish(1, "good", NULL, 0);
    size_t n = flat(m, buf, sizeof buf);
    nng_msg_free(m);
    CHECK_RC(nmq_outbox_append(ob, 2, 0, buf, n, NULL), NMQ_OUTBOX_OK); /* QoS differs */
    CHECK_RC(nmq_outbox_append(ob, 1, 0, buf, n, NULL), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_link_up(ob, 0), NMQ_OUTBOX_OK);
    int before = log_count();
    nng_msg *out = NULL;
    int64_t seq = 0;
    CHECK_RC(nmq_outbox_nng_lease(ob, 4, &out, &seq, NULL, NULL), NMQ_OUTBOX_OK);
    CHECK(seq == 4);
    CHECK(log_count() >= before + 3);
    CHECK(strstr(log_last, "dropped") != NULL || strstr(log_last, "malformed") != NULL);
    nmq_outbox_stats st;
    CHECK_RC(nmq_outbox_get_stats(ob, &st), NMQ_OUTBOX_OK);
    CHECK(st.messages == 1 && st.inflight == 1);
    CHECK(st.dropped_malformed == 3 && st.dropped_rejected == 0);
    CHECK_RC(nmq_outbox_nng_bind(ob, seq, 3, out), NMQ_OUTBOX_OK);
    nng_msg_free(out);
    CHECK_RC(nmq_outbox_ack(ob, 3, NMQ_OUTBOX_PUBACK, 0, NULL), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_nng_lease(ob, 4, &out, &seq, NULL, NULL), NMQ_OUTBOX_EMPTY);
    nmq_outbox_free(ob);
}

/* Ack after commit, hook B2: the PUBLISH is stored (never sent directly, even with the link
 * up and nothing held), its seq is given, and a commit reaches it. */
static void test_append_gives_seq(void)
{
    nmq_outbox *ob = open_outbox("append.db");
    CHECK_RC(nmq_outbox_link_up(ob, 0), NMQ_OUTBOX_OK);
    int64_t seq = 0, seq2 = 0, committed = 0;
    nng_msg *m = publish(1, "hello", NULL, 0);
    CHECK_RC(nmq_outbox_nng_append(ob, 4, m, &seq), NMQ_OUTBOX_OK); /* consumed */
    m = publish(2, "again", NULL, 0);
    CHECK_RC(nmq_outbox_nng_append(ob, 4, m, &seq2), NMQ_OUTBOX_OK);
    CHECK(seq2 == seq + 1);
    m = publish(1, "x", NULL, 0);
    CHECK_RC(nmq_outbox_nng_append(ob, 4, m, NULL), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_nng_append(ob, 4, NULL, &seq), NMQ_OUTBOX_EINVAL);
    nng_msg *bad = NULL;
    nng_msg_alloc(&bad, 0);
    uint8_t puback[2] = {0x40, 2};
    nng_msg_header_append(bad, puback, 2);
    nng_msg_append(bad, "\x00\x01", 2);
    nmq_outbox_result rv = nmq_outbox_nng_append(ob, 4, bad, &seq);
    CHECK_RC(rv, NMQ_OUTBOX_EINVAL); /* stays ours */
    CHECK(nmq_outbox_mqtt_reason(rv) == 0x80);
    nng_msg_free(bad);
    CHECK_RC(nmq_outbox_flush(ob), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_committed_seq(ob, &committed), NMQ_OUTBOX_OK);
    CHECK(committed >= seq2 + 1);
    nmq_outbox_stats st;
    CHECK_RC(nmq_outbox_get_stats(ob, &st), NMQ_OUTBOX_OK);
    CHECK(st.messages == 3 && st.inflight == 0);
    nmq_outbox_free(ob);
}

/* Issue 20: NanoNNG's CONNACK message (fixed header in the nng header, the rest in the body)
 * brings the link up; it stays the caller's. */
static void test_link_up_from_connack_msg(void)
{
    nmq_outbox *ob = open_outbox("connack.db");
    nmq_outbox_connack ack;
    nng_msg *m = NULL;
    CHECK(nng_msg_alloc(&m, 0) == 0);
    uint8_t hdr[2] = {0x20, 6};
    uint8_t body[6] = {0x00, 0x00, 0x03, 0x21, 0x00, 0x02}; /* new session, Receive Maximum 2 */
    nng_msg_header_append(m, hdr, 2);
    nng_msg_append(m, body, 6);
    CHECK_RC(nmq_outbox_nng_link_up(ob, m, 5, &ack), NMQ_OUTBOX_OK);
    CHECK(ack.session_present == 0 && ack.receive_maximum == 2);
    CHECK(nng_msg_len(m) == 6 && nng_msg_header_len(m) == 2); /* untouched */
    nmq_outbox_stats st;
    CHECK_RC(nmq_outbox_get_stats(ob, &st), NMQ_OUTBOX_OK);
    CHECK(st.link_up == 1 && st.window == 2);
    CHECK_RC(nmq_outbox_nng_link_up(ob, m, 4, &ack), NMQ_OUTBOX_EINVAL); /* 3.1.1: 2 bytes */
    CHECK_RC(nmq_outbox_nng_link_up(ob, NULL, 5, &ack), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_nng_link_up(NULL, m, 5, &ack), NMQ_OUTBOX_EINVAL);
    nng_msg_free(m);

    /* Maximum QoS 1: a stored QoS 2 PUBLISH is leased as QoS 1 (its fixed header says so)
     * and its PUBACK completes it. */
    CHECK_RC(nmq_outbox_link_down(ob), NMQ_OUTBOX_OK);
    nng_msg *q2 = publish(2, "two", (const uint8_t *) "", 0);
    CHECK_RC(nmq_outbox_nng_requeue(ob, q2, 5, 0), NMQ_OUTBOX_OK);
    CHECK(nng_msg_alloc(&m, 0) == 0);
    uint8_t hdr1[2] = {0x20, 5};
    uint8_t body1[5] = {0x01, 0x00, 0x02, 0x24, 0x01}; /* session present, Maximum QoS 1 */
    nng_msg_header_append(m, hdr1, 2);
    nng_msg_append(m, body1, 5);
    CHECK_RC(nmq_outbox_nng_link_up(ob, m, 5, &ack), NMQ_OUTBOX_OK);
    CHECK(ack.maximum_qos == 1 && ack.session_present == 1);
    nng_msg_free(m);
    nng_msg *out = NULL;
    int64_t seq = 0;
    uint16_t prev = 0;
    uint8_t rel = 9;
    CHECK_RC(nmq_outbox_nng_lease(ob, 5, &out, &seq, &prev, &rel), NMQ_OUTBOX_OK);
    CHECK(out != NULL && (*(const uint8_t *) nng_msg_header(out) & 0x06) == 0x02 && rel == 0);
    CHECK_RC(nmq_outbox_nng_bind(ob, seq, prev != 0 ? prev : 77, out), NMQ_OUTBOX_OK);
    nmq_outbox_ack_outcome o = NMQ_OUTBOX_ACK_REJECTED;
    CHECK_RC(nmq_outbox_ack(ob, prev != 0 ? prev : 77, NMQ_OUTBOX_PUBACK, 0, &o), NMQ_OUTBOX_OK);
    CHECK(o == NMQ_OUTBOX_ACK_DONE);
    nng_msg_free(out);
    CHECK_RC(nmq_outbox_get_stats(ob, &st), NMQ_OUTBOX_OK);
    CHECK(st.messages == 0 && st.qos_downgraded == 1);
    nmq_outbox_free(ob);
}

/* N2/N3 at a link loss: the direct sends still open go back in the order they were first sent,
 * by packet id (wrapping), whatever order the host found them in. */
static void test_requeue_unacked_in_send_order(void)
{
    nmq_outbox *ob = open_outbox("order.db");
    /* sent as 65534, 65535, 1, 2 (the client gives 3 next); found in another order */
    const uint16_t pids[4] = {2, 65535, 1, 65534};
    const char *names[4] = {"d", "b", "c", "a"};
    nng_msg *msgs[5];
    uint8_t rel[5] = {0, 0, 0, 0, 0}, taken[5] = {9, 9, 9, 9, 9};
    for (int i = 0; i < 4; i++) {
        msgs[i] = publish(1, names[i], NULL, 0);
        uint8_t *b = nng_msg_body(msgs[i]);
        b[7] = (uint8_t) (pids[i] >> 8);
        b[8] = (uint8_t) pids[i];
    }
    msgs[4] = publish(0, "qos0", NULL, 0); /* QoS 0 is no open exchange: but kept in line */
    CHECK_RC(nmq_outbox_nng_requeue_unacked(NULL, msgs, rel, 5, 3, 4, 0, taken), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_nng_requeue_unacked(ob, NULL, rel, 5, 3, 4, 0, taken), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_nng_requeue_unacked(ob, msgs, rel, 0, 3, 4, 0, taken), NMQ_OUTBOX_OK);
    CHECK(taken[0] == 9);
    rel[1] = 1; /* QoS 1 cannot be released: refused, left with the caller */
    CHECK_RC(nmq_outbox_nng_requeue_unacked(ob, msgs, rel, 5, 3, 4, 0, taken), NMQ_OUTBOX_OK);
    CHECK(taken[0] == 1 && taken[1] == 0 && taken[2] == 1 && taken[3] == 1 && taken[4] == 1);
    nng_msg_free(msgs[1]);
    CHECK_RC(nmq_outbox_link_up(ob, 0), NMQ_OUTBOX_OK);
    const char *want[4] = {"a", "c", "d", "qos0"};
    for (int i = 0; i < 4; i++) {
        nng_msg *out = NULL;
        int64_t seq = 0;
        uint16_t prev = 0;
        CHECK_RC(nmq_outbox_nng_lease(ob, 4, &out, &seq, &prev, NULL), NMQ_OUTBOX_OK);
        size_t len = nng_msg_len(out), w = strlen(want[i]);
        CHECK(len >= w && memcmp((uint8_t *) nng_msg_body(out) + len - w, want[i], w) == 0);
        nng_msg_free(out);
    }
    nmq_outbox_free(ob);
}

/* B2 with cancel_timeout 0 (NanoMQ: no timeout): the lane gets no timeout. Given 0 as is, nng
 * fails the send at once (NNG_ETIMEDOUT) and the stock path frees the message. Here a pair0
 * socket without a peer holds the send until it is cancelled. */
static void test_publish_cancel_timeout_zero_is_no_timeout(void)
{
    nmq_outbox *ob = open_outbox("ct0.db");
    nng_socket sock;
    CHECK(nng_pair0_open(&sock) == 0);
    nng_aio *lane = NULL;
    CHECK(nng_aio_alloc(&lane, NULL, NULL) == 0);
    CHECK_RC(nmq_outbox_link_up(ob, 0), NMQ_OUTBOX_OK);
    nmq_outbox_decision d;
    CHECK_RC(nmq_outbox_nng_publish(ob, lane, 0, 0, 4, publish(1, "t0", NULL, 0), &d), NMQ_OUTBOX_OK);
    CHECK(d == NMQ_OUTBOX_SEND_NOW);
    nng_send_aio(sock, lane);
    nng_aio_cancel(lane);
    nng_aio_wait(lane);
    CHECK(nng_aio_result(lane) == NNG_ECANCELED);
    nng_msg_free(nng_aio_get_msg(lane));
    nng_aio_set_msg(lane, NULL);
    /* a nonzero cancel_timeout stays as given: 1 ms expires */
    CHECK_RC(nmq_outbox_nng_publish(ob, lane, 0, 1, 4, publish(1, "t1", NULL, 0), &d), NMQ_OUTBOX_OK);
    CHECK(d == NMQ_OUTBOX_SEND_NOW);
    nng_send_aio(sock, lane);
    nng_aio_wait(lane);
    CHECK(nng_aio_result(lane) == NNG_ETIMEDOUT);
    nng_msg_free(nng_aio_get_msg(lane));
    nng_aio_free(lane);
    nng_close(sock);
    nmq_outbox_free(ob);
}

/* N2 on a live connection (cancel timeout): the open direct sends stay in flight on it, bound
 * to their packet ids, not sent again; their acks complete them; a cut sends them again. */
static void test_requeue_unacked_kept_in_flight(void)
{
    nmq_outbox *ob = open_outbox("adopt.db");
    CHECK_RC(nmq_outbox_link_up(ob, 0), NMQ_OUTBOX_OK);
    nng_msg *msgs[2] = {publish(2, "q2", NULL, 0), publish(1, "q1", NULL, 0)};
    uint8_t *b = nng_msg_body(msgs[1]);
    b[8] = 0x35; /* packet id 0x1235, sent after 0x1234 */
    uint8_t rel[2] = {1, 0}, taken[2] = {0, 0};
    CHECK_RC(nmq_outbox_nng_requeue_unacked(ob, msgs, rel, 2, 0x1236, 4, 1, taken), NMQ_OUTBOX_OK);
    CHECK(taken[0] == 2 && taken[1] == 2);
    nng_msg *out = NULL;
    CHECK_RC(nmq_outbox_nng_lease(ob, 4, &out, NULL, NULL, NULL), NMQ_OUTBOX_EMPTY);
    nmq_outbox_ack_outcome o;
    CHECK_RC(nmq_outbox_ack(ob, 0x1235, NMQ_OUTBOX_PUBACK, 0, &o), NMQ_OUTBOX_OK);
    CHECK(o == NMQ_OUTBOX_ACK_DONE);
    /* the cut: the released QoS 2 one resumes with PUBREL on its id */
    CHECK_RC(nmq_outbox_link_down(ob), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_link_up(ob, 0), NMQ_OUTBOX_OK);
    uint16_t prev = 0;
    uint8_t r = 0;
    CHECK_RC(nmq_outbox_nng_lease(ob, 4, &out, NULL, &prev, &r), NMQ_OUTBOX_OK);
    CHECK(prev == 0x1234 && r == 1);
    nng_msg_free(out);
    nmq_outbox_free(ob);
}

/* QOS 0: a written QoS 0 row waits for a PINGRESP to a later PINGREQ; an idle link asks for a
 * replay when a row is stored. */
static void test_qos0_confirmed_by_pingresp(void)
{
    char p[300];
    snprintf(p, sizeof p, "%s/%s", dir, "qos0.db");
    nmq_outbox_config c;
    nmq_outbox_config_init(&c);
    CHECK(c.store_qos0 == 0);
    c.path = p;
    c.bridge = "nng";
    c.store_qos0 = 1;
    nmq_outbox *ob = NULL;
    CHECK_RC(nmq_outbox_open(&c, &ob), NMQ_OUTBOX_OK);
    nng_aio *lane = NULL;
    CHECK(nng_aio_alloc(&lane, NULL, NULL) == 0);
    CHECK_RC(nmq_outbox_link_up(ob, 0), NMQ_OUTBOX_OK);
    int due = -1;
    CHECK_RC(nmq_outbox_replay_due(ob, &due), NMQ_OUTBOX_OK);
    CHECK(due == 0);
    nmq_outbox_decision d;
    CHECK_RC(nmq_outbox_nng_publish(ob, lane, 0, 50, 4, publish(0, "z", NULL, 0), &d), NMQ_OUTBOX_OK);
    CHECK(d == NMQ_OUTBOX_STORE); /* never directly with store_qos0 */
    CHECK_RC(nmq_outbox_replay_due(ob, &due), NMQ_OUTBOX_OK);
    CHECK(due == 1);
    nng_msg *out = NULL;
    int64_t seq = 0;
    CHECK_RC(nmq_outbox_nng_lease(ob, 4, &out, &seq, NULL, NULL), NMQ_OUTBOX_OK);
    nng_msg_free(out);
    CHECK_RC(nmq_outbox_sent(ob, seq), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_ping_due(ob, &due), NMQ_OUTBOX_OK);
    CHECK(due == 1);
    CHECK_RC(nmq_outbox_ping_due(ob, NULL), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_ping_sent(ob), NMQ_OUTBOX_OK);
    nmq_outbox_stats st;
    CHECK_RC(nmq_outbox_get_stats(ob, &st), NMQ_OUTBOX_OK);
    CHECK(st.messages == 1 && st.inflight == 1);
    uint64_t n = 0;
    CHECK_RC(nmq_outbox_pong(ob, &n), NMQ_OUTBOX_OK);
    CHECK(n == 1);
    CHECK_RC(nmq_outbox_pong(ob, NULL), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_get_stats(ob, &st), NMQ_OUTBOX_OK);
    CHECK(st.messages == 0 && st.acked == 1);
    CHECK_RC(nmq_outbox_pong(NULL, NULL), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_ping_sent(NULL), NMQ_OUTBOX_EINVAL);
    nng_aio_free(lane);
    nmq_outbox_free(ob);
}

/* PACKET IDS: the host's ids in flight, as a busy callback would read them from its own map. */
struct host_ids {
    uint16_t busy[4];
    int asked;
};

static int host_busy(void *arg, uint16_t pid)
{
    struct host_ids *h = arg;
    h->asked++;
    for (int i = 0; i < 4; i++) {
        if (h->busy[i] == pid) {
            return 1;
        }
    }
    return 0;
}

/* An ack as the transport receives it: fixed header in the nng header, the rest in the body. */
static nng_msg *ack_msg(uint8_t type, uint16_t pid, int reason)
{
    nng_msg *m = NULL;
    uint8_t hdr[2] = {(uint8_t) (type << 4), (uint8_t) (reason < 0 ? 2 : 3)};
    uint8_t body[3] = {(uint8_t) (pid >> 8), (uint8_t) pid, (uint8_t) reason};
    CHECK(nng_msg_alloc(&m, 0) == 0);
    nng_msg_header_append(m, hdr, 2);
    nng_msg_append(m, body, reason < 0 ? 2 : 3);
    return m;
}

/* N4 in one step and N5 from the raw ack: the library picks the packet id (skipping the ids
 * the host has busy and its own), says what the row is (PUBLISH, PUBREL, QoS 0), reads acks. */
static void test_lease_bind_and_raw_acks(void)
{
    nmq_outbox *ob = open_outbox("leasebind.db");
    CHECK_RC(nmq_outbox_append(ob, 1, 0, (const uint8_t *) "x", 1, NULL), NMQ_OUTBOX_OK);
    nng_msg *m = publish(1, "q1", NULL, 0);
    CHECK_RC(nmq_outbox_nng_append(ob, 4, m, NULL), NMQ_OUTBOX_OK);
    m = publish(2, "q2", NULL, 0);
    CHECK_RC(nmq_outbox_nng_append(ob, 4, m, NULL), NMQ_OUTBOX_OK);
    m = publish(0, "q0", NULL, 0);
    CHECK_RC(nmq_outbox_nng_append(ob, 4, m, NULL), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_flush(ob), NMQ_OUTBOX_OK);
    nng_msg *out = NULL;
    nmq_outbox_bound_row row;
    struct host_ids h = {{0x8000, 0x8001, 0, 0}, 0};
    CHECK_RC(nmq_outbox_nng_lease_bind(ob, 4, host_busy, &h, &out, &row), NMQ_OUTBOX_EMPTY);
    CHECK(out == NULL); /* link down */
    CHECK_RC(nmq_outbox_link_up(ob, 0), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_nng_lease_bind(ob, 4, host_busy, &h, NULL, &row), NMQ_OUTBOX_EINVAL);
    /* Row 1 ("x") is no PUBLISH: dropped; row 2 is the QoS 1 PUBLISH, on the first id free. */
    CHECK_RC(nmq_outbox_nng_lease_bind(ob, 4, host_busy, &h, &out, &row), NMQ_OUTBOX_OK);
    CHECK(row.kind == NMQ_OUTBOX_ROW_PUBLISH && row.qos == 1 && row.dup == 0);
    CHECK(row.packet_id == 0x8002 && pid_of(out) == 0x8002 && h.asked == 3);
    int bound = 0;
    CHECK_RC(nmq_outbox_packet_id_bound(ob, 0x8002, &bound), NMQ_OUTBOX_OK);
    CHECK(bound == 1);
    CHECK_RC(nmq_outbox_packet_id_bound(ob, 0x8000, &bound), NMQ_OUTBOX_OK);
    CHECK(bound == 0);
    CHECK_RC(nmq_outbox_packet_id_bound(ob, 1, NULL), NMQ_OUTBOX_EINVAL);
    nng_msg_free(out);
    /* Row 3, QoS 2; no busy callback: the library's own map alone. */
    CHECK_RC(nmq_outbox_nng_lease_bind(ob, 4, NULL, NULL, &out, &row), NMQ_OUTBOX_OK);
    CHECK(row.kind == NMQ_OUTBOX_ROW_PUBLISH && row.qos == 2 && row.packet_id == 0x8003);
    int64_t q2 = row.seq;
    nng_msg_free(out);
    /* Row 4, QoS 0: no packet id. */
    CHECK_RC(nmq_outbox_nng_lease_bind(ob, 4, host_busy, &h, &out, &row), NMQ_OUTBOX_OK);
    CHECK(row.kind == NMQ_OUTBOX_ROW_QOS0 && row.qos == 0 && row.packet_id == 0);
    CHECK((*(uint8_t *) nng_msg_header(out) & 0xf6) == 0x30);
    nng_msg_free(out);
    CHECK_RC(nmq_outbox_sent(ob, row.seq), NMQ_OUTBOX_OK);

    /* Acks from the raw packet: the host's own id is not the outbox's (nothing counted). */
    nmq_outbox_ack_outcome o = NMQ_OUTBOX_ACK_DONE;
    uint8_t rc = 0xff;
    nng_msg *a = ack_msg(4, 0x8000, -1);
    CHECK_RC(nmq_outbox_nng_ack(ob, a, 4, &o, &rc), NMQ_OUTBOX_NOT_OURS);
    CHECK(rc == 0);
    nng_msg_free(a);
    a = ack_msg(5, 0x8003, 0); /* PUBREC, v5 reason 0 */
    CHECK_RC(nmq_outbox_nng_ack(ob, a, 5, &o, &rc), NMQ_OUTBOX_OK);
    CHECK(o == NMQ_OUTBOX_ACK_PROGRESS && rc == 0);
    nng_msg_free(a);
    a = ack_msg(6, 0x8003, -1); /* a PUBREL is no ack */
    CHECK_RC(nmq_outbox_nng_ack(ob, a, 5, &o, &rc), NMQ_OUTBOX_EINVAL);
    nng_msg_free(a);
    CHECK_RC(nmq_outbox_nng_ack(ob, NULL, 5, &o, &rc), NMQ_OUTBOX_EINVAL);
    a = ack_msg(4, 0x8002, 0x87); /* PUBACK refused (v5): the row becomes a dead letter */
    CHECK_RC(nmq_outbox_nng_ack(ob, a, 5, &o, &rc), NMQ_OUTBOX_OK);
    CHECK(o == NMQ_OUTBOX_ACK_REJECTED && rc == 0x87);
    nng_msg_free(a);
    CHECK_RC(nmq_outbox_packet_id_bound(ob, 0x8002, &bound), NMQ_OUTBOX_OK);
    CHECK(bound == 0);

    /* After a link loss the QoS 2 row resumes with PUBREL on its own id; while the host has
     * that id busy nothing is bound (EMPTY, the row stays queued). */
    CHECK_RC(nmq_outbox_link_down(ob), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_link_up(ob, 0), NMQ_OUTBOX_OK);
    h.busy[2] = 0x8003;
    CHECK_RC(nmq_outbox_nng_lease_bind(ob, 4, host_busy, &h, &out, &row), NMQ_OUTBOX_EMPTY);
    CHECK(out == NULL);
    h.busy[2] = 0;
    CHECK_RC(nmq_outbox_nng_lease_bind(ob, 4, host_busy, &h, &out, &row), NMQ_OUTBOX_OK);
    CHECK(row.kind == NMQ_OUTBOX_ROW_PUBREL && row.seq == q2 && row.packet_id == 0x8003);
    CHECK(memcmp(nng_msg_header(out), "\x62\x02", 2) == 0);
    nng_msg_free(out);
    a = ack_msg(7, 0x8003, -1);
    CHECK_RC(nmq_outbox_nng_ack(ob, a, 5, &o, NULL), NMQ_OUTBOX_OK);
    CHECK(o == NMQ_OUTBOX_ACK_DONE);
    nng_msg_free(a);
    nmq_outbox_free(ob);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s <scratch dir>\n", argv[0]);
        return 2;
    }
    snprintf(dir, sizeof dir, "%s", argv[1]);
    test_publish_store_and_lease();
    test_store_aio();
    test_released_rows_resume_with_pubrel();
    test_remaining_expiry_on_replay();
    test_malformed_row_dropped();
    test_append_gives_seq();
    test_link_up_from_connack_msg();
    test_requeue_unacked_in_send_order();
    test_requeue_unacked_kept_in_flight();
    test_publish_cancel_timeout_zero_is_no_timeout();
    test_qos0_confirmed_by_pingresp();
    test_lease_bind_and_raw_acks();
    nng_fini(); /* joins nng's own threads, so valgrind sees no stack of theirs */
    return report(argv[0]);
}
