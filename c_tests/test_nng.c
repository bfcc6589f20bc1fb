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
    CHECK_RC(nmq_outbox_nng_requeue(ob, bad, 4), NMQ_OUTBOX_EINVAL);
    nng_msg_free(bad);
    CHECK_RC(nmq_outbox_nng_publish(ob, lane, 0, 1000, 4, NULL, &d), NMQ_OUTBOX_EINVAL);
    CHECK_RC(nmq_outbox_nng_publish(NULL, lane, 0, 1000, 4, orig, &d), NMQ_OUTBOX_EINVAL);

    /* Replay: the lease rebuilds exactly the bytes that were stored. */
    nng_msg *out = NULL;
    int64_t seq = 0;
    uint16_t prev = 99;
    CHECK_RC(nmq_outbox_nng_lease(ob, &out, &seq, &prev), NMQ_OUTBOX_EMPTY); /* link down */
    CHECK(out == NULL);
    CHECK_RC(nmq_outbox_link_up(ob, 0), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_nng_lease(ob, &out, &seq, &prev), NMQ_OUTBOX_OK);
    CHECK(out != NULL && seq == 1 && prev == 0);
    CHECK(nng_msg_header_len(out) == nng_msg_header_len(orig));
    CHECK(memcmp(nng_msg_header(out), nng_msg_header(orig), nng_msg_header_len(orig)) == 0);
    CHECK(nng_msg_len(out) == nng_msg_len(orig));
    CHECK(memcmp(nng_msg_body(out), nng_msg_body(orig), nng_msg_len(orig)) == 0);
    nng_msg_free(out);
    nng_msg_free(orig);
    CHECK_RC(nmq_outbox_bind(ob, seq, 7), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_ack(ob, 7, NMQ_OUTBOX_PUBACK, 0, NULL), NMQ_OUTBOX_OK);
    CHECK_RC(nmq_outbox_nng_lease(ob, &out, &seq, &prev), NMQ_OUTBOX_EMPTY);
    CHECK_RC(nmq_outbox_nng_lease(ob, NULL, &seq, &prev), NMQ_OUTBOX_EINVAL);

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
    CHECK_RC(nmq_outbox_nng_requeue(ob, back, 4), NMQ_OUTBOX_OK);
    nng_aio_set_msg(lane, NULL);

    /* Lane busy: STORE even with the link up. */
    m = publish(2, "busy", NULL, 0);
    CHECK_RC(nmq_outbox_nng_publish(ob, lane, 1, 50, 4, m, &d), NMQ_OUTBOX_OK);
    CHECK(d == NMQ_OUTBOX_STORE);
    CHECK_RC(nmq_outbox_nng_lease(ob, &out, &seq, &prev), NMQ_OUTBOX_OK);
    CHECK(memcmp((char *) nng_msg_body(out) + nng_msg_len(out) - 6, "direct", 6) == 0);
    CHECK(prev == 0x1234); /* the id it was sent with, for a DUP resend */
    nng_msg_free(out);
    CHECK_RC(nmq_outbox_nng_lease(ob, &out, NULL, NULL), NMQ_OUTBOX_OK);
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

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s <scratch dir>\n", argv[0]);
        return 2;
    }
    snprintf(dir, sizeof dir, "%s", argv[1]);
    test_publish_store_and_lease();
    test_store_aio();
    nng_fini(); /* joins nng's own threads, so valgrind sees no stack of theirs */
    return report(argv[0]);
}
