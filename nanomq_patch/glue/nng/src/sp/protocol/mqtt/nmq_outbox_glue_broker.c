// nmq_outbox_glue_broker.c: nmq-outbox's glue in NanoMQ's nng/src/sp/protocol/mqtt/nmq_mqtt.c (NMQ_OUTBOX builds):
// N10: the ack gate of the broker side (made once), deferred acks, and the send of an ack the gate released.
// Written once for every NanoMQ line: nanomq_patch/apply.sh copies it next to the file, which
// includes it where its file-local types and functions are known. Not compiled on its own.

// Ack after commit: the library's gate decides when a QoS 1/2 PUBLISH is acked, in each
// client's order (nmq_outbox_gate_*); its callback sends the ack (nmq_pub_ack_send).
static int              nmq_ack_defer = 0;
static nmq_outbox_gate *nmq_ack_gate  = NULL; // made once, never freed

static void
nmq_pub_ack_gate_send(void *ctx, uint32_t pipe, uint8_t qos, uint16_t pid, uint8_t reason)
{
	(void) ctx;
	int rv = nmq_pub_ack_send(pipe, qos, pid, reason);
	if (rv != 0) {
		log_debug("ack after commit: ack of %u to pipe %u not sent (%d)", pid, pipe, rv);
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
	if (!p->busy) {
		p->busy = true;
		nni_aio_set_msg(&p->aio_send, ack);
		nni_pipe_send(p->pipe, &p->aio_send);
	} else if (nni_lmq_full(&p->rlmq) &&
	    nano_nni_lmq_resize(&p->rlmq, nni_lmq_cap(&p->rlmq) * 2) != 0) {
		log_warn("ack after commit: ack of %u lost (busy pipe %u)",
		    packet_id, p->id);
		nni_msg_free(ack);
		return (NNG_ENOMEM);
	} else if (nni_lmq_put(&p->rlmq, ack) != 0) {
		nni_msg_free(ack);
		return (NNG_ENOMEM);
	}
	return (0);
}

// Sends the ack now (the gate decided when, and keeps each client's order).
int
nmq_pub_ack_send(uint32_t pipe_id, uint8_t qos, uint16_t packet_id,
    uint8_t reason_code)
{
	nni_pipe      *npipe;
	nano_pipe     *p;
	int            rv = 0;

	if (qos == 0 || qos > 2) {
		return (NNG_EINVAL);
	}
	if (nni_pipe_find(&npipe, pipe_id) != 0) {
		return (NNG_ECLOSED);
	}
	// a broker pipe only (the id comes from a PUBLISH of a broker client)
	if (npipe->p_proto_ops.pipe_init != nano_pipe_init ||
	    (p = npipe->p_proto_data) == NULL) {
		nni_pipe_rele(npipe);
		return (NNG_EINVAL);
	}
	nni_mtx_lock(&p->lk);
	if (nni_atomic_get_bool(&p->closed) || p->conn_param == NULL) {
		rv = NNG_ECLOSED;
	} else {
		rv = nmq_pub_ack_put(p, qos, packet_id, reason_code);
	}
	nni_mtx_unlock(&p->lk);
	nni_pipe_rele(npipe);
	return (rv);
}
