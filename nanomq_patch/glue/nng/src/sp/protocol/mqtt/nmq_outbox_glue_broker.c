// nmq_outbox_glue_broker.c: nmq-outbox's glue in NanoMQ's nng/src/sp/protocol/mqtt/nmq_mqtt.c (NMQ_OUTBOX builds):
// N10: the ack gate of the broker side (made once), deferred acks, and the send of an ack the gate released.
// Written once for every NanoMQ line: nanomq_patch/apply.sh copies it next to the file, which
// includes it where its file-local types and functions are known. Not compiled on its own.

// Ack after commit: the library's gate decides when a QoS 1/2 PUBLISH is acked, in each
// client's order (nmq_outbox_gate_*); its callback sends the acks (nmq_pub_acks_send).
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

// A client's acks[0..n) (n >= 1) in one message: one socket write. The first packet's fixed
// header is the message's header, the rest follow its packet id (and reason code) in the
// body: the transports send any message but a PUBLISH as header and body, and give an MQTT 5
// client one unit of receive quota back per PUBACK the message carries (nano_msg_quota_back,
// N11). An MQTT 5 ack carries its reason code unless it is 0 (success): remaining length 2
// or 3, no properties. p->lk held.
static int
nmq_pub_acks_put(nano_pipe *p, const nmq_outbox_gate_reply *acks, size_t n, bool v5)
{
	nni_msg *msg;
	int      rv;

	if ((rv = nni_msg_alloc(&msg, 0)) != 0) {
		return (rv);
	}
	for (size_t i = 0; i < n && rv == 0; i++) {
		bool    rc   = v5 && acks[i].reason != 0;
		uint8_t b[5] = { acks[i].qos == 2 ? CMD_PUBREC : CMD_PUBACK, rc ? 3 : 2,
			(uint8_t) (acks[i].packet_id >> 8), (uint8_t) acks[i].packet_id,
			acks[i].reason };
		size_t  len  = rc ? 5 : 4;
		if (i > 0) {
			rv = nni_msg_append(msg, b, len);
		} else if ((rv = nni_msg_header_append(msg, b, 2)) == 0) {
			rv = nni_msg_append(msg, b + 2, len - 2);
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

// acks[0..n) of one client, in order, in one message (the gate's callback; takes the pipe's
// lock: called with no lock of the broker held). NNG_ECLOSED when that client is gone (it
// resends after reconnecting, as for any unacknowledged message).
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
	} else {
		rv = nmq_pub_acks_put(
		    p, acks, n, p->conn_param->pro_ver == MQTT_PROTOCOL_VERSION_v5);
	}
	nni_mtx_unlock(&p->lk);
	nni_pipe_rele(npipe);
	return (rv);
}
