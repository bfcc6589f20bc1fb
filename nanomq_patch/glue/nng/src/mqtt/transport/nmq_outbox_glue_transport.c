// nmq_outbox_glue_transport.c: nmq-outbox's glue in NanoNNG's MQTT TCP and TLS transports
// (src/mqtt/transport/tcp/mqtt_tcp.c, tls/mqtt_tls.c; NMQ_OUTBOX builds): the bridge's connect
// timeout, NNG_OPT_MQTT_CONNECT_TIMEOUT on the dialer (the value: nmq_outbox_connect_timeout_ms,
// set by bridge.c). Written once for both transports and every NanoMQ line:
// nanomq_patch/apply.sh copies it next to them, each includes it. Not compiled on its own.

// The option's setter: copies the duration into the endpoint's field under its lock.
static int
nmq_ob_set_connect_timeout(
    nni_mtx *mtx, nni_duration *timeout, const void *v, size_t sz, nni_opt_type t)
{
	nni_duration tmp;
	int          rv;

	if ((rv = nni_copyin_ms(&tmp, v, sz, t)) == 0) {
		nni_mtx_lock(mtx);
		*timeout = tmp;
		nni_mtx_unlock(mtx);
	}
	return (rv);
}

// Before the dial: a SYN into a silent path is retried by the kernel for minutes, with growing
// gaps; bound the attempt, so that the next one starts soon after the path is back (<= 0: none).
static void
nmq_ob_connect_bound(nni_aio *connaio, nni_duration timeout)
{
	nni_aio_set_timeout(connaio, timeout > 0 ? timeout : NNG_DURATION_INFINITE);
}

// The dial failed with rv: a timeout of ours is said as such.
static void
nmq_ob_connect_failed(int rv, const char *host, nni_duration timeout)
{
	if (rv == NNG_ETIMEDOUT) {
		log_warn("connect to %s timed out after %d ms", host, (int) timeout);
	}
}
