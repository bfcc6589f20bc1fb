// nmq_outbox_glue_client.c: nmq-outbox's glue in NanoMQ's nng/src/mqtt/protocol/mqtt/mqtt_client.c (NMQ_OUTBOX builds):
// N1-N7: the MQTT client's replay, acks, link up/down and the store of sends without a pipe.
// Written once for every NanoMQ line: nanomq_patch/apply.sh copies it next to the file, which
// includes it where its file-local types and functions are known. Not compiled on its own.

/*
 * nmq-outbox glue: the durable outbox of the bridge (see nmq_outbox.h). Unless noted, every
 * function below runs with s->mtx held. Rows replayed from the outbox are not in sent_unack:
 * the library chooses their packet ids and keeps their map (PACKET IDS in nmq_outbox.h), and
 * their acks go to it (nmq_outbox_nng_ack).
 */
// The including client may adapt it (NanoNNG's QUIC client, mqtt_quic_client.c, does):
// NMQ_OB_NNI_PIPE(p)   its pipe's nni_pipe (default p->pipe)
// NMQ_OB_SOCK_PIPE(s)  the socket's current pipe (default s->mqtt_pipe)
// NMQ_OB_STORE_ONLY    its bridge sends no QoS 1/2 PUBLISH directly (every one is stored and
//                      replayed): nothing of the outbox is ever in sent_unack, whose values
//                      need not be aios; requeueing direct sends (N2/N3) compiles to nothing
#ifndef NMQ_OB_NNI_PIPE
#define NMQ_OB_NNI_PIPE(p) ((p)->pipe)
#endif
#ifndef NMQ_OB_SOCK_PIPE
#define NMQ_OB_SOCK_PIPE(s) ((s)->mqtt_pipe)
#endif

// Asked by the library before it gives a row an id: whether the socket has it in flight.
static int
nmq_ob_pid_busy(void *arg, uint16_t pid)
{
	mqtt_sock_t *s = arg;

	return (nni_id_get(&s->sent_unack, pid) != NULL);
}

// Whether `pid` is an outbox row's: the socket gives it to none of its own sends meanwhile.
static bool
nmq_ob_pid_bound(mqtt_sock_t *s, uint16_t pid)
{
	int bound = 0;

	return (s->outbox != NULL &&
	    nmq_outbox_packet_id_bound(s->outbox, pid, &bound) == NMQ_OUTBOX_OK && bound != 0);
}

// A QoS 1/2 PUBLISH the outbox refused (or a socket detached from it still held) is freed by
// the stock code: counted in the outbox's lost_fallback_send (issue 8 item 13).
static void
nmq_ob_lost(mqtt_sock_t *s, nni_msg *msg)
{
	nmq_outbox *ob = s->outbox != NULL ? s->outbox : s->ob_gone;

	if (ob != NULL && msg != NULL &&
	    nni_mqtt_msg_get_packet_type(msg) == NNG_MQTT_PUBLISH &&
	    nni_mqtt_msg_get_publish_qos(msg) > 0) {
		log_warn("outbox: a message it refused is lost on the stock path");
		nmq_outbox_count_lost(ob, NMQ_OUTBOX_LOST_SEND_FAILED, 1);
	}
}

#ifndef NMQ_OB_STORE_ONLY
static void
nmq_ob_lost_unack(void *key, void *val, void *arg)
{
	NNI_ARG_UNUSED(key);
	nmq_ob_lost(arg, nni_aio_get_msg(val));
}
#endif

// A forward sent on a closed socket: stored in the outbox it had (N1's way: the aio finishes
// with 0). False when it is not the outbox's to keep (no outbox, not a PUBLISH it takes, or the
// outbox refused it: then counted as lost on the stock path, which drops it).
static bool
nmq_ob_store_closed(mqtt_sock_t *s, nni_aio *aio)
{
	nmq_outbox *ob;
	nni_msg    *msg;
	bool        kept = false;

	nni_mtx_lock(&s->mtx);
	ob  = s->outbox != NULL ? s->outbox : s->ob_gone;
	msg = nni_aio_get_msg(aio);
	if (ob != NULL && msg != NULL &&
	    nni_mqtt_msg_get_packet_type(msg) == NNG_MQTT_PUBLISH &&
	    (nni_mqtt_msg_get_publish_qos(msg) > 0 || s->retry_qos_0)) {
		kept = nmq_outbox_nng_store_aio(ob, aio, s->mqtt_ver) == NMQ_OUTBOX_OK;
		if (!kept) {
			nmq_ob_lost(s, msg);
		}
	}
	nni_mtx_unlock(&s->mtx);
	return (kept);
}

// Queues a packet on the pipe. With an outbox nothing is ever dropped from the queue: when
// it is full it grows (it holds at most the outbox window, the direct sends of the bridge
// lanes and the acks the remote's own window allows). Non-zero when it cannot take `msg`.
static int
nmq_ob_lmq_put(mqtt_sock_t *s, mqtt_pipe_t *p, nni_msg *msg)
{
	size_t cap = nni_lmq_cap(&p->send_messages);

	if (s->outbox != NULL && nni_lmq_full(&p->send_messages) && cap < 0x10000) {
		if (nni_lmq_resize(&p->send_messages, cap * 2) != 0) {
			log_error("outbox: pipe send queue cannot grow past %zu", cap);
		} else {
			log_warn("outbox: pipe busy, send queue grown to %zu", cap * 2);
		}
	}
	return (nni_lmq_put(&p->send_messages, msg));
}

// Sends on the pipe, or queues behind what is being sent.
static int
nmq_ob_send(mqtt_sock_t *s, mqtt_pipe_t *p, nni_msg *msg)
{
	if (!p->busy) {
		p->busy = true;
		nni_aio_set_msg(&p->send_aio, msg);
		nni_pipe_send(NMQ_OB_NNI_PIPE(p), &p->send_aio);
		return (0);
	}
	return (nmq_ob_lmq_put(s, p, msg));
}

// N4: windowed replay, run at pipe start, after every ack and on each timer tick. The library
// hands out each row ready to send, its packet id chosen and bound (a PUBLISH with the
// remaining Message Expiry, a PUBREL for a QoS 2 row whose PUBREC came, or a QoS 0 PUBLISH),
// and says what it is; its acks go to the library (nmq_ob_ack).
static void
nmq_ob_replay_rows(mqtt_sock_t *s, mqtt_pipe_t *p)
{
	nni_msg             *msg;
	nmq_outbox_bound_row row;

	if (s->outbox == NULL || p == NULL || nni_atomic_get_bool(&p->closed)) {
		return;
	}
	for (int n = 0; n < NNG_MAX_SEND_LMQ; n++) {
		if (nni_lmq_len(&p->send_messages) >= NNG_MAX_SEND_LMQ / 2 ||
		    nmq_outbox_nng_lease_bind(s->outbox, s->mqtt_ver, nmq_ob_pid_busy,
		        s, &msg, &row) != NMQ_OUTBOX_OK) {
			return;
		}
		if (row.kind != NMQ_OUTBOX_ROW_PUBREL) {
			// what the transport reads of a PUBLISH (v5 send quota)
			nni_mqtt_msg_proto_data_alloc(msg);
			nni_mqtt_msg_set_packet_type(msg, NNG_MQTT_PUBLISH);
			nni_mqtt_msg_set_publish_qos(msg, row.qos);
		}
		nni_msg_set_timestamp(msg, nni_clock());
		if (nmq_ob_send(s, p, msg) != 0) {
			nni_msg_free(msg);
			nmq_outbox_unlease(s->outbox, row.seq);
			return;
		}
		if (row.kind == NMQ_OUTBOX_ROW_QOS0) {
			// no packet id, no ack: once the pipe has it (sent or queued on this
			// connection, in order) it waits for a PINGRESP or a later ack to
			// confirm it (nmq_ob_ping)
			(void) nmq_outbox_sent(s->outbox, row.seq);
		}
	}
}

// QoS 0 rows the replay wrote wait for a confirmation: a PINGREQ behind them, whose PINGRESP
// (mqtt_recv_cb) tells the outbox that the remote read them. Queued behind what the pipe
// holds, so that it follows them on the wire.
static void
nmq_ob_ping(mqtt_sock_t *s, mqtt_pipe_t *p)
{
	int due = 0;

	if (s->outbox == NULL || p == NULL || nni_atomic_get_bool(&p->closed) ||
	    p->pingmsg == NULL || nmq_outbox_ping_due(s->outbox, &due) != NMQ_OUTBOX_OK ||
	    due == 0) {
		return;
	}
	nni_msg_clone(p->pingmsg);
	if (nmq_ob_send(s, p, p->pingmsg) != 0) {
		nni_msg_free(p->pingmsg);
		return;
	}
	(void) nmq_outbox_ping_sent(s->outbox);
}

// N4: the rows ready to send, then a PINGREQ if QoS 0 rows await a confirmation.
static void
nmq_ob_replay(mqtt_sock_t *s, mqtt_pipe_t *p)
{
	nmq_ob_replay_rows(s, p);
	nmq_ob_ping(s, p);
}

// N5: an ack (PUBACK, PUBREC, PUBCOMP) whose packet id is an outbox row's goes to the outbox,
// which reads the raw packet (type, id, reason code) and deletes the row on PUBACK (QoS 1) or
// PUBCOMP (QoS 2). True when the id was the outbox's. The id stays the outbox's until the row
// is done: an ack that does not fit the row (e.g. a PUBACK for a QoS 2 row) is ignored, so
// that the PUBREC/PUBCOMP that follow still reach the outbox. *rc gets the ack's reason code
// (0 before MQTT 5), also when the id is not the outbox's.
static bool
nmq_ob_ack(mqtt_sock_t *s, nni_msg *msg, uint8_t *rc)
{
	*rc = 0;
	return (s->outbox != NULL &&
	    nmq_outbox_nng_ack(s->outbox, msg, (uint8_t) s->mqtt_ver, NULL, rc) ==
	        NMQ_OUTBOX_OK);
}

#ifndef NMQ_OB_STORE_ONLY
// A direct send the remote refused (MQTT 5 PUBACK or PUBREC with a reason code >= 0x80) goes
// back to the head of the outbox instead of being freed by the stock path: the replay sends
// it once more, and the outbox keeps it as a dead letter when the remote refuses it again (or
// sends it on after a transient refusal, 0x97). True when the outbox took it (its aio is
// finished with NNG_ECANCELED, which frees the bridge lane). `rc`: the ack's reason code.
static bool
nmq_ob_refused_direct(mqtt_sock_t *s, uint8_t rc, uint16_t pid)
{
	nni_aio *aio;

	if (s->outbox == NULL || rc < 0x80 ||
	    (aio = nni_id_get(&s->sent_unack, pid)) == NULL) {
		return (false);
	}
	if (nmq_outbox_nng_requeue(s->outbox, nni_aio_get_msg(aio), s->mqtt_ver, 0) !=
	    NMQ_OUTBOX_OK) {
		return (false);
	}
	log_warn("outbox: the remote refused a direct send (0x%02x): back to the outbox", rc);
	nni_id_remove(&s->sent_unack, pid);
	nni_id_remove(&s->ob_rec, pid);
	nni_aio_set_msg(aio, NULL);
	nni_aio_set_prov_data(aio, NULL);
	nni_aio_finish_error(aio, NNG_ECANCELED);
	return (true);
}

struct nmq_ob_list {
	nni_aio **aio;
	nni_msg **msg;
	uint16_t *pid;
	uint8_t  *rel;
	uint8_t  *taken;
	size_t    n;
	size_t    cap;
};

static void
nmq_ob_collect(void *key, void *val, void *arg)
{
	struct nmq_ob_list *l   = arg;
	nni_aio            *aio = val;
	nni_msg            *msg = nni_aio_get_msg(aio);

	NNI_ARG_UNUSED(key);
	if (l->n < l->cap && msg != NULL &&
	    nni_mqtt_msg_get_packet_type(msg) == NNG_MQTT_PUBLISH &&
	    nni_mqtt_msg_get_publish_qos(msg) > 0) {
		l->aio[l->n++] = aio;
	}
}

// N2/N3: every direct QoS 1/2 PUBLISH still unacknowledged goes to the outbox, with its packet
// id and whether its PUBREC came; its aio finishes with `err`, which frees the bridge lane.
// `live` false (N3, the connection is gone): back to the head of the queue in the order first
// sent (the library orders them by packet id), resent by the replay with DUP (a released one
// resumed with PUBREL, never published again). `live` true (N2 on a connection still up): each
// stays in flight on it, bound to its packet id by the outbox, so its acks reach it and it
// is not sent again (a second PUBLISH of a QoS 2 message whose first exchange the transport
// completes would be a new message at the remote). A message the outbox refuses stays in
// sent_unack (stock behaviour).
static void
nmq_ob_requeue_unacked(mqtt_sock_t *s, int err, bool live)
{
	struct nmq_ob_list l;
	size_t             sz;

	l.n   = 0;
	l.cap = nni_id_count(&s->sent_unack);
	sz    = l.cap * (sizeof(nni_aio *) + sizeof(nni_msg *) + sizeof(uint16_t) + 2);
	if (s->outbox == NULL || l.cap == 0 || (l.aio = nni_alloc(sz)) == NULL) {
		return;
	}
	l.msg   = (nni_msg **) (l.aio + l.cap);
	l.pid   = (uint16_t *) (l.msg + l.cap);
	l.rel   = (uint8_t *) (l.pid + l.cap);
	l.taken = l.rel + l.cap;
	nni_id_map_foreach2(&s->sent_unack, nmq_ob_collect, &l);
	for (size_t i = 0; i < l.n; i++) {
		l.msg[i] = nni_aio_get_msg(l.aio[i]);
		l.pid[i] = nni_mqtt_msg_get_publish_packet_id(l.msg[i]);
		l.rel[i] = nni_id_get(&s->ob_rec, l.pid[i]) != NULL;
	}
	if (nmq_outbox_nng_requeue_unacked(s->outbox, (nng_msg *const *) l.msg, l.rel, l.n,
	        (uint16_t) nni_atomic_get(&s->next_packet_id), (uint8_t) s->mqtt_ver, live,
	        l.taken) != NMQ_OUTBOX_OK) {
		nni_free(l.aio, sz);
		return;
	}
	for (size_t i = 0; i < l.n; i++) {
		nni_aio *aio = l.aio[i];

		if (!l.taken[i]) {
			continue;
		}
		// the outbox took (and freed) the message: the aio gives it up
		nni_id_remove(&s->sent_unack, l.pid[i]);
		nni_id_remove(&s->ob_rec, l.pid[i]);
		nni_aio_set_msg(aio, NULL);
		nni_aio_set_prov_data(aio, NULL);
		nni_aio_finish_error(aio, err);
	}
	nni_free(l.aio, sz);
}

#else
// NMQ_OB_STORE_ONLY: no direct send is ever the outbox's
static void
nmq_ob_requeue_unacked(mqtt_sock_t *s, int err, bool live)
{
	NNI_ARG_UNUSED(s);
	NNI_ARG_UNUSED(err);
	NNI_ARG_UNUSED(live);
}
#endif

// The link is gone: rows in flight return to the head of the outbox (nmq_outbox_link_down),
// and so do the direct sends still unacknowledged.
#define NMQ_OB_CLOSE_UNKNOWN 0    // the transport closed (EOF, error): the library judges
#define NMQ_OB_CLOSE_DISCONNECT 1 // the remote sent DISCONNECT (s->disconnect_code)
#define NMQ_OB_CLOSE_KEEPALIVE 2  // our keepalive gave up on a silent remote

static void
nmq_ob_link_down(mqtt_sock_t *s, int err)
{
	if (s->outbox == NULL) {
		return;
	}
	if (err == NNG_ECONNSHUT) {
		// the connection ended: the library learns why (a refusal of the message in
		// flight, a transient one that backs off, or an ordinary outage)
		if (s->ob_close == NMQ_OB_CLOSE_DISCONNECT) {
			nmq_outbox_link_down_reason(s->outbox, s->ob_reason, 1);
		} else if (s->ob_close == NMQ_OB_CLOSE_KEEPALIVE) {
			nmq_outbox_link_down_reason(s->outbox, 0x8D, 1); // Keep Alive timeout
		} else {
			nmq_outbox_link_down_reason(s->outbox, 0, 0);
		}
		s->ob_close = NMQ_OB_CLOSE_UNKNOWN;
	} else {
		nmq_outbox_link_down(s->outbox);
	}
	nmq_ob_requeue_unacked(s, err, false);
}

// N4, link up: the CONNACK decides what the replay sends (nmq_outbox_nng_link_up: Session
// Present, Maximum QoS, Maximum Packet Size, Receive Maximum, Retain Available), then the
// replay starts. `connack` is the transport's CONNACK message, borrowed. A CONNACK that does
// not parse (logged by the library) still brings the link up, with the defaults (session
// present assumed, no limit but the window): the bridge keeps forwarding. A refusal never
// gets here (the transport starts no pipe for it).
static void
nmq_ob_link_up(mqtt_sock_t *s, mqtt_pipe_t *p, nni_msg *connack)
{
	nmq_outbox_result rv;

	if (s->outbox == NULL) {
		return;
	}
	s->ob_close = NMQ_OB_CLOSE_UNKNOWN;
	rv = nmq_outbox_nng_link_up(
	    s->outbox, (nng_msg *) connack, (uint8_t) s->mqtt_ver, NULL);
	if (rv == NMQ_OUTBOX_EINVAL) {
		log_warn("outbox: CONNACK not parsed: link up with the defaults");
		rv = nmq_outbox_link_up(s->outbox, 0);
	}
	if (rv != NMQ_OUTBOX_OK) {
		log_warn("outbox: CONNACK not taken (%s): no replay on this connection",
		    nmq_outbox_strerror(rv));
		return;
	}
	nmq_ob_replay(s, p);
}

// MQTT 5 4.3.3: a PUBREC with a reason code >= 0x80 ends the QoS 2 exchange, no PUBREL
// follows it. The transport builds a PUBREL for every PUBREC; a remote answers one for an
// exchange it refused as a protocol error and closes the connection (mosquitto 2.0.20), so
// it is dropped here. `msg` is the received packet, still undecoded. Returns the ack to send.
static nni_msg *
nmq_ob_pubrel_filter(mqtt_sock_t *s, nni_msg *msg, nni_msg *ack_msg)
{
	if (ack_msg == NULL || msg == NULL || s->mqtt_ver != MQTT_PROTOCOL_VERSION_v5 ||
	    nni_msg_header_len(msg) < 1 || nni_msg_len(msg) < 3 ||
	    (*(uint8_t *) nni_msg_header(msg) & 0xf0) != 0x50 ||
	    ((uint8_t *) nni_msg_body(msg))[2] < 0x80) {
		return (ack_msg);
	}
	nni_msg_free(ack_msg);
	return (NULL);
}

// The ack to a received packet `msg` (its raw bytes: header and body as received), sent on
// the pipe or queued behind what it is sending (in order with the replayed rows). `ack` is
// the transport's (TCP, TLS: one for each PUBLISH, PUBREC and PUBREL received), or NULL for
// a PUBREC: its PUBREL is built here (NanoNNG's QUIC transport leaves them to a client with
// an outbox, mqtt_quic.c nmq_pubrel). No PUBREL for a PUBREC that refuses
// (nmq_ob_pubrel_filter). Takes `ack`. False when the ack was dropped (not built, or the
// pipe's queue could not take it).
static bool
nmq_ob_send_ack(mqtt_sock_t *s, mqtt_pipe_t *p, nni_msg *msg, nni_msg *ack)
{
	if (ack == NULL && msg != NULL && nni_msg_header_len(msg) >= 1 &&
	    (*(uint8_t *) nni_msg_header(msg) & 0xf0) == 0x50 && nni_msg_len(msg) >= 2) {
		uint8_t hdr[2] = { 0x62, 0x02 }; // PUBREL, remaining length 2: the packet id

		if (nni_msg_alloc(&ack, 0) != 0) {
			log_warn("outbox: no memory for a PUBREL");
			return (false);
		}
		nni_msg_header_append(ack, hdr, 2);
		nni_msg_append(ack, nni_msg_body(msg), 2);
	}
	if ((ack = nmq_ob_pubrel_filter(s, msg, ack)) == NULL) {
		return (true);
	}
	if (nmq_ob_send(s, p, ack) != 0) {
		log_warn("Warning! ack msg lost due to busy socket");
		nni_msg_free(ack);
		return (false);
	}
	return (true);
}

// N7: sets the outbox handle. NULL detaches: what this socket holds goes back to the outbox
// first (nmq_outbox_link_down: only while no other socket drives the same handle). A bridge
// reload detaches the old socket before the new one attaches.
static int
mqtt_sock_set_outbox(void *arg, const void *v, size_t sz, nni_opt_type t)
{
	mqtt_sock_t *s = arg;
	void        *ob;
	int          rv;

	if ((rv = nni_copyin_ptr(&ob, v, sz, t)) != 0) {
		return (rv);
	}
	nni_mtx_lock(&s->mtx);
	if (ob == NULL) {
		nmq_ob_link_down(s, NNG_ECLOSED);
		s->ob_gone = s->outbox;
	}
	s->outbox = ob;
	nni_mtx_unlock(&s->mtx);
	return (0);
}

// Ack after commit: the bridge stored a message while the link may be up (never sent
// directly in that mode): replay now rather than at the next ack or timer tick.
static int
mqtt_sock_set_outbox_kick(void *arg, const void *v, size_t sz, nni_opt_type t)
{
	mqtt_sock_t *s = arg;

	NNI_ARG_UNUSED(v);
	NNI_ARG_UNUSED(sz);
	NNI_ARG_UNUSED(t);
	nni_mtx_lock(&s->mtx);
	if (s->outbox != NULL && NMQ_OB_SOCK_PIPE(s) != NULL) {
		nmq_ob_replay(s, NMQ_OB_SOCK_PIPE(s));
	}
	nni_mtx_unlock(&s->mtx);
	return (0);
}
