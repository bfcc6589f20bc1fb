// nmq_outbox_glue_broker.c: nmq-outbox's glue in NanoMQ's nng/src/sp/protocol/mqtt/nmq_mqtt.c (NMQ_OUTBOX builds):
// N10: the ack gate of the broker side (made once), deferred acks, and the send of an ack the gate released.
// Written once for every NanoMQ line: nanomq_patch/apply.sh copies it next to the file, which
// includes it where its file-local types and functions are known. Not compiled on its own.

// Ack after commit: the library's gate decides when a QoS 1/2 PUBLISH is acked, in each
// client's order (nmq_outbox_gate_*); its callback sends the ack (nmq_pub_ack_send).
static int              nmq_ack_defer = 0;
static nmq_outbox_gate *nmq_ack_gate  = NULL; // made once, never freed

static int nmq_pub_acks_send(const nmq_outbox_gate_reply *acks, size_t n);

// The gate's callback: acks[0..n) in their order, each client's run of them at once.
static void
nmq_pub_ack_gate_send(void *ctx, const nmq_outbox_gate_reply *acks, size_t n)
{
	(void) ctx;
	size_t i = 0;
	while (i < n) {
		size_t j = i + 1;
		while (j < n && acks[j].pipe == acks[i].pipe) {
			j++;
		}
		int rv = nmq_pub_acks_send(&acks[i], j - i);
		if (rv != 0) {
			log_debug("ack after commit: %zu ack(s) to pipe %u not sent (%d)", j - i,
			    acks[i].pipe, rv);
		}
		i = j;
	}
}

struct nmq_outbox_gate *
nmq_pub_ack_gate(void)
{
	nmq_outbox_gate *g = __atomic_load_n(&nmq_ack_gate, __ATOMIC_ACQUIRE);
	if (g == NULL && nmq_outbox_gate_new(nmq_pub_ack_gate_send, NULL, &g) == NMQ_OUTBOX_OK) {
		nmq_outbox_gate *none = NULL;
		if (!__atomic_compare_exchange_n(&nmq_ack_gate, &none, g, false,
		        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
			nmq_outbox_gate_free(g);
			g = none;
		}
	}
	return (g);
}

void
nmq_pub_ack_defer(int on)
{
	__atomic_store_n(&nmq_ack_defer, on && nmq_pub_ack_gate() != NULL ? 1 : 0,
	    __ATOMIC_SEQ_CST);
}

int
nmq_pub_ack_deferred(void)
{
	return (__atomic_load_n(&nmq_ack_defer, __ATOMIC_RELAXED));
}

// Sends ack on p now, or queues it behind what p sends. p->lk held.
static int
nmq_pub_ack_queue(nano_pipe *p, nni_msg *ack)
{
	if (!p->busy) {
		p->busy = true;
		nni_aio_set_msg(&p->aio_send, ack);
		nni_pipe_send(p->pipe, &p->aio_send);
	} else if (nni_lmq_full(&p->rlmq) &&
	    nano_nni_lmq_resize(&p->rlmq, nni_lmq_cap(&p->rlmq) * 2) != 0) {
		log_warn("ack after commit: ack lost (busy pipe %u)", p->id);
		nni_msg_free(ack);
		return (NNG_ENOMEM);
	} else if (nni_lmq_put(&p->rlmq, ack) != 0) {
		nni_msg_free(ack);
		return (NNG_ENOMEM);
	}
	return (0);
}

// Builds a PUBACK/PUBREC as the transports do (broker_tcp.c, CMD_PUBLISH) and sends it on
// p (or queues it behind what p sends). p->lk held.
static int
nmq_pub_ack_put(nano_pipe *p, uint8_t qos, uint16_t packet_id, uint8_t reason_code)
{
	nni_msg *ack;
	uint8_t  cmd = qos == 2 ? CMD_PUBREC : CMD_PUBACK;
	int      rv;

	if ((rv = nni_msg_alloc(&ack, 0)) != 0) {
		return (rv);
	}
	nni_msg_set_cmd_type(ack, cmd);
	nni_mqtt_msgack_encode(
	    ack, packet_id, reason_code, NULL, p->conn_param->pro_ver);
	nni_mqtt_pubres_header_encode(ack, cmd);
	return (nmq_pub_ack_queue(p, ack));
}

// An MQTT 3.1.1 client's acks[0..n) (n >= 2) in one message: one socket write. The first
// packet's fixed header is the message's header, the rest follow its packet id in the body
// (the transports send any message but a PUBLISH as header and body; MQTT 3.1.1 has no
// receive quota to give back per PUBACK). p->lk held.
static int
nmq_pub_acks_put_v311(nano_pipe *p, const nmq_outbox_gate_reply *acks, size_t n)
{
	nni_msg *msg;
	int      rv;

	if ((rv = nni_msg_alloc(&msg, 0)) != 0) {
		return (rv);
	}
	for (size_t i = 0; i < n && rv == 0; i++) {
		uint8_t b[4] = { acks[i].qos == 2 ? CMD_PUBREC : CMD_PUBACK, 2,
			(uint8_t) (acks[i].packet_id >> 8), (uint8_t) acks[i].packet_id };
		if (i > 0) {
			rv = nni_msg_append(msg, b, 4);
		} else if ((rv = nni_msg_header_append(msg, b, 2)) == 0) {
			rv = nni_msg_append(msg, b + 2, 2);
		}
	}
	if (rv != 0) {
		nni_msg_free(msg);
		return (rv);
	}
	nni_msg_set_cmd_type(msg, acks[0].qos == 2 ? CMD_PUBREC : CMD_PUBACK);
	return (nmq_pub_ack_queue(p, msg));
}

// Finds the broker pipe of a client (held: nni_pipe_rele).
static int
nmq_pub_ack_pipe(uint32_t pipe_id, nni_pipe **npipe, nano_pipe **p)
{
	if (nni_pipe_find(npipe, pipe_id) != 0) {
		return (NNG_ECLOSED);
	}
	// a broker pipe only (the id comes from a PUBLISH of a broker client)
	if ((*npipe)->p_proto_ops.pipe_init != nano_pipe_init ||
	    (*p = (*npipe)->p_proto_data) == NULL) {
		nni_pipe_rele(*npipe);
		return (NNG_EINVAL);
	}
	return (0);
}

// acks[0..n) of one client, in order: an MQTT 3.1.1 client's in one message, an MQTT 5
// client's one message each (its transport gives a receive quota back per PUBACK message).
static int
nmq_pub_acks_send(const nmq_outbox_gate_reply *acks, size_t n)
{
	nni_pipe  *npipe;
	nano_pipe *p;
	int        rv;

	for (size_t i = 0; i < n; i++) {
		if (acks[i].qos == 0 || acks[i].qos > 2) {
			return (NNG_EINVAL);
		}
	}
	if ((rv = nmq_pub_ack_pipe(acks[0].pipe, &npipe, &p)) != 0) {
		return (rv);
	}
	nni_mtx_lock(&p->lk);
	if (nni_atomic_get_bool(&p->closed) || p->conn_param == NULL) {
		rv = NNG_ECLOSED;
	} else if (n >= 2 && p->conn_param->pro_ver != MQTT_PROTOCOL_VERSION_v5) {
		rv = nmq_pub_acks_put_v311(p, acks, n);
	} else {
		for (size_t i = 0; i < n && rv == 0; i++) {
			rv = nmq_pub_ack_put(p, acks[i].qos, acks[i].packet_id, acks[i].reason);
		}
	}
	nni_mtx_unlock(&p->lk);
	nni_pipe_rele(npipe);
	return (rv);
}

// Sends the ack now (the gate decided when, and keeps each client's order).
int
nmq_pub_ack_send(uint32_t pipe_id, uint8_t qos, uint16_t packet_id,
    uint8_t reason_code)
{
	nmq_outbox_gate_reply a = { .pipe = pipe_id, .packet_id = packet_id, .qos = qos,
		.reason = reason_code };
	return (nmq_pub_acks_send(&a, 1));
}
