/*
 * nmq_outbox_nng.h - nng-facing entry points of nmq-outbox, for NanoMQ's bridge (bridge.c) and
 * NanoNNG's MQTT client (mqtt_client.c). Include <nng/nng.h> first.
 *
 * These calls take nng objects and follow nng's ownership rule: a call that returns
 * NMQ_OUTBOX_OK consumed the message it was given (stored a copy and freed it, or handed it to
 * nng_send_aio); a call that returns an error left the message with the caller, untouched.
 * They use only nng API present in both NanoNNG and upstream nng >= 1.5 (nng_msg_header,
 * nng_msg_header_len, nng_msg_body, nng_msg_len, nng_msg_alloc, nng_msg_header_append,
 * nng_msg_append, nng_msg_free, nng_aio_get_msg, nng_aio_set_msg, nng_aio_set_timeout, nng_aio_finish), all of
 * them through pointers only, so the library does not depend on the layout of nng's structs.
 *
 * Messages are encoded MQTT PUBLISH packets: the fixed header in the nng header, the variable
 * header and payload in the body (what nng_mqtt_msg_encode / nng_mqttv5_msg_encode produce).
 * The QoS is read from the fixed header; `proto_ver` 5 also reads the Message Expiry Interval
 * property. A message that is not a well-formed PUBLISH gives NMQ_OUTBOX_EINVAL.
 *
 * Threads: as in nmq_outbox.h. These calls may run with NanoMQ's node->mtx or the nng socket
 * mutex held; they never call back into the host except the log callback, nng_aio_finish
 * (N1; the aio's callback then runs on an nng thread, as usual) and the packet-id question
 * given to nmq_outbox_nng_lease_bind() (inside that call only).
 */
#ifndef NMQ_OUTBOX_NNG_H
#define NMQ_OUTBOX_NNG_H

#include "nmq_outbox.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Hook B2 (bridge_pub_handler): route one encoded PUBLISH of this bridge.
 * SEND_NOW when nmq_outbox_decide() says so and `lane_busy` is 0: the message is put on `lane`
 * (nng_aio_set_msg) with `timeout_ms` (cancel_timeout; 0 means none: nng_aio_set_timeout gets
 * NNG_DURATION_INFINITE, since a zero timeout fails the send at once); the caller then calls
 * nng_send_aio(sock, lane) itself. (No nng_socket crosses this ABI: its layout differs between
 * NanoNNG and upstream nng.)
 * STORE otherwise: a copy is appended to the outbox and the message is freed.
 * *decision must not be NULL. On error the message stays with the caller, off the lane. */
nmq_outbox_result nmq_outbox_nng_publish(nmq_outbox *ob, nng_aio *lane, int lane_busy,
                                         nng_duration timeout_ms, uint8_t proto_ver,
                                         nng_msg *msg, nmq_outbox_decision *decision);

/* Hook B2 with ack after commit (see ACK AFTER COMMIT in nmq_outbox.h): stores a copy of the
 * encoded PUBLISH at the tail of the outbox, never sending it directly (the replay sends it),
 * and frees it; *seq (may be NULL) gets its seq: acknowledge the local publisher once
 * nmq_outbox_committed_seq() >= *seq. On error the message stays with the caller, and
 * nmq_outbox_mqtt_reason() gives the reason code for the publisher. */
nmq_outbox_result nmq_outbox_nng_append(nmq_outbox *ob, uint8_t proto_ver, nng_msg *msg,
                                        int64_t *seq);

/* Hook B2 with the ACK GATE (nmq_outbox.h): stores a copy of the encoded PUBLISH at the tail
 * of ob (never sent directly: the replay sends it), frees it and notes ob and its seq in a
 * (nmq_outbox_gate_took). A refusal answers an MQTT 5 publisher (nmq_outbox_gate_refused:
 * logged, the message freed, not forwarded) and OK is returned: the message is consumed either
 * way. Another result (the refusal, for an MQTT 3.1.1 publisher; EINVAL for NULL): the message
 * stays with the caller, for its own path. Thread-safe; the ack used by one thread at a time. */
nmq_outbox_result nmq_outbox_nng_gate_append(nmq_outbox_gate_ack *a, nmq_outbox *ob,
                                             uint8_t proto_ver, nng_msg *msg);

/* Hook N1 (mqtt_ctx_send with no pipe): stores the aio's message in the outbox, frees it,
 * clears the aio's message and finishes the aio with 0, so the lane is never left busy.
 * On error nothing is changed: the caller finishes the aio with an error as before. */
nmq_outbox_result nmq_outbox_nng_store_aio(nmq_outbox *ob, nng_aio *aio, uint8_t proto_ver);

/* Hooks N2/N3 (send cancelled, pipe closed): gives back an in-flight PUBLISH that was sent
 * directly, at the head of the queue (before every stored row). For several, call newest first.
 * Its packet id is kept: the replay hands it out as prev_packet_id, to resend with DUP.
 * `released` nonzero: the remote already answered PUBREC for that packet id (QoS 2 only, else
 * EINVAL), so the replay resumes it with PUBREL on that id and never sends the PUBLISH again.
 * Consumes the message on OK. */
nmq_outbox_result nmq_outbox_nng_requeue(nmq_outbox *ob, nng_msg *msg, uint8_t proto_ver,
                                         int released);

/* Hooks N2/N3 for every direct send still open on a connection at once: msgs[0..n) (each with
 * released[i] as in nmq_outbox_nng_requeue) go back to the head of the queue in the order they
 * were first sent, the oldest first in line. That order comes from their packet ids: a client
 * hands them out in increasing order (wrapping after 65535) and a resend keeps its id, so the
 * oldest is the one furthest behind `next_packet_id`, the id the client gives next (NanoNNG's
 * next_packet_id; a timestamp would not do: NanoNNG's resend rewrites it).
 * keep_in_flight nonzero: the connection is alive (the host only stopped waiting, e.g. its
 * cancel timeout): each message stays in flight on it, bound to its packet id, and is not sent
 * again while the link stays up (its PUBACK, or PUBREC and PUBCOMP, complete it; the host
 * passes those acks to nmq_outbox_ack); a link loss requeues it like any row in flight (DUP,
 * same id). Sending it again instead would make a QoS 2 message a new one at the remote once
 * the first exchange completed. Not possible (link down for the outbox, id bound to another
 * row): requeued. Call it where the host's replay cannot run meanwhile.
 * taken[i] is set to 1 (requeued) or 2 (in flight) for each message consumed, 0 for one left
 * with the caller (not a PUBLISH of `proto_ver`, or refused by the outbox: logged). msgs,
 * released and taken are arrays of n, borrowed; n 0 is OK. EINVAL (nothing done) for a NULL
 * array or a NULL message. Thread-safe. */
nmq_outbox_result nmq_outbox_nng_requeue_unacked(nmq_outbox *ob, nng_msg *const *msgs,
                                                 const uint8_t *released, size_t n,
                                                 uint16_t next_packet_id, uint8_t proto_ver,
                                                 int keep_in_flight, uint8_t *taken);

/* Hook N4 (replay), step 1: the next row as a new nng_msg (fixed header in the nng header, the
 * rest in the body), ready to send but for its packet id:
 *   - a QoS 1/2 PUBLISH: the stored packet with DUP cleared, its packet id field set to
 *     *prev_packet_id (0 = never sent: a placeholder), and with `proto_ver` 5 the Message
 *     Expiry Interval set to the time that remains (MQTT 5 3.3.2.3.3; added if the stored
 *     packet has none but the row expires);
 *   - *released = 1: a PUBREL for *prev_packet_id (a QoS 2 row whose PUBREC came, before a
 *     link loss, a cancel or a restart): the exchange resumes with it (MQTT 5 4.4);
 *   - a QoS 0 PUBLISH (stored under retry_qos_0): send it, then nmq_outbox_sent(*seq).
 * Then pick the packet id (a released row must keep *prev_packet_id; otherwise reuse it when
 * free, or take a fresh one) and call nmq_outbox_nng_bind(). *seq is the row's seq (for
 * nmq_outbox_nng_bind, nmq_outbox_unlease, nmq_outbox_sent). seq, prev_packet_id and released
 * may be NULL. A row that does not make such a packet (damaged, written through
 * nmq_outbox_append with other bytes, not a PUBLISH of its QoS under `proto_ver`) is dropped,
 * counted and logged, and the next row is taken. The caller owns *out on OK.
 * NMQ_OUTBOX_EMPTY when there is nothing to send now (link down, window full, no row). */
nmq_outbox_result nmq_outbox_nng_lease(nmq_outbox *ob, uint8_t proto_ver, nng_msg **out,
                                       int64_t *seq, uint16_t *prev_packet_id,
                                       uint8_t *released);

/* Hook N4, step 2: binds leased row `seq` to `packet_id` (nmq_outbox_bind) and writes it into
 * `msg` (the message nmq_outbox_nng_lease gave for that row): a PUBLISH gets the packet id,
 * with DUP set when it equals the id it was sent with before (*prev_packet_id); a PUBREL must
 * be given its own packet id. Then send `msg`. The message stays the caller's either way; on
 * error (EINVAL: packet id 0 or bound to another row in flight, a QoS 0 row, a PUBREL with
 * another id, not a message from nmq_outbox_nng_lease) neither the row nor `msg` changed. */
nmq_outbox_result nmq_outbox_nng_bind(nmq_outbox *ob, int64_t seq, uint16_t packet_id,
                                      nng_msg *msg);

/* Hook N4 in one step (nmq_outbox_nng_lease, then the packet id chosen and bound by the
 * library; PACKET IDS in nmq_outbox.h): the next row as a new nng_msg ready to send, and *row
 * what it is, so that the host decodes nothing:
 *   - NMQ_OUTBOX_ROW_PUBLISH: a QoS row->qos PUBLISH with row->packet_id written in (its
 *     previous id, with DUP, when it is free; else the next free id of the outbox's own
 *     counter, which starts at 0x8000 and wraps from 65535 to 1);
 *   - NMQ_OUTBOX_ROW_PUBREL: a PUBREL on the row's own id (never another);
 *   - NMQ_OUTBOX_ROW_QOS0: a QoS 0 PUBLISH (packet_id 0): send it, then nmq_outbox_sent().
 * An id is free when no row of this outbox in flight has it and `busy` (may be NULL: the host
 * keeps no ids of its own) returns 0 for it; `busy` is asked at most 65535 times per call,
 * with `arg`, on this thread, with the outbox's lock held (it must not call the library).
 * The caller owns *out on OK; if the send fails, free it and nmq_outbox_unlease(row->seq).
 * NMQ_OUTBOX_EMPTY when there is nothing to send now (link down, window full, no row), or when
 * no packet id is free for the next row (it stays queued: try again after an ack). Rows that
 * do not make a packet are dropped as in nmq_outbox_nng_lease. Call it where the host's acks
 * for the same outbox cannot run meanwhile (NanoNNG: under the socket mutex). */
nmq_outbox_result nmq_outbox_nng_lease_bind(nmq_outbox *ob, uint8_t proto_ver,
                                            nmq_outbox_pid_busy_fn busy, void *arg,
                                            nng_msg **out, nmq_outbox_bound_row *row);

/* Hook N5: an acknowledgement as received (`ack`: its fixed header in the nng header, the rest
 * in the body; borrowed, never changed). The library reads its type (PUBACK, PUBREC or
 * PUBCOMP), packet id and, with `proto_ver` 5, its reason code (0 when absent), and gives it
 * to the row bound to that id (nmq_outbox_ack). *reason_code (may be NULL) gets the reason
 * code in every case but EINVAL. NMQ_OUTBOX_NOT_OURS: no row of this outbox is bound to the
 * id (the host's own send's ack: the host handles it; nothing counted). NMQ_OUTBOX_OK: the
 * outbox took it, *outcome (may be NULL) tells what it did; an ack of the wrong type for its
 * row is ignored (counted in acks_ignored, *outcome NMQ_OUTBOX_ACK_PROGRESS): the id stays the
 * outbox's until the row is done. NMQ_OUTBOX_EINVAL: not such an ack. Thread-safe. */
nmq_outbox_result nmq_outbox_nng_ack(nmq_outbox *ob, nng_msg *ack, uint8_t proto_ver,
                                     nmq_outbox_ack_outcome *outcome, uint8_t *reason_code);

/* Hook N4, link up (mqtt_recv_cb, case NNG_MQTT_CONNACK): nmq_outbox_link_up_connack() on
 * NanoNNG's CONNACK message, whose nng header is the fixed header and whose body is the rest,
 * as the transport received them. `proto_ver` is the socket's MQTT version (4 or 5). The
 * message is borrowed: never freed nor changed (the caller goes on with it). *out (may be
 * NULL) gets what was parsed. NMQ_OUTBOX_EREFUSED for a refusal (the link stays down),
 * NMQ_OUTBOX_EINVAL for a packet that does not parse (logged; nothing changed). `ob` and `out`
 * are borrowed. Thread-safe. */
nmq_outbox_result nmq_outbox_nng_link_up(nmq_outbox *ob, nng_msg *connack, uint8_t proto_ver,
                                         nmq_outbox_connack *out);

#ifdef __cplusplus
}
#endif

#endif /* NMQ_OUTBOX_NNG_H */
