// nmq_outbox_glue_bridge.c: nmq-outbox's glue in NanoMQ's nanomq/bridge.c (NMQ_OUTBOX builds):
// B1-B3, B7: the outbox of a bridge (open, attach, handover), its counters and log, ack after commit.
// Written once for every NanoMQ line: nanomq_patch/apply.sh copies it next to the file, which
// includes it where its file-local types and functions are known. Not compiled on its own.

#include "nmq_outbox_nng.h"
#include "nng/protocol/mqtt/nmq_mqtt.h"
#include <limits.h>
#include <poll.h>

// Counts `n` host events on the outbox (QoS 0 dropped, a refusal sent on the stock path) and
// returns the total (n = 0 reads it): a counter of the library, in its JSON and Prometheus.
static unsigned long long
bridge_outbox_event(nmq_outbox *ob, nmq_outbox_event what, uint64_t n)
{
	uint64_t total = 0;
	(void) nmq_outbox_count_event(ob, what, n, &total);
	return ((unsigned long long) total);
}

// The outbox's view of the link (up from CONNACK to the pipe's close), asked per QoS 0
// forward: it never waits for the writer's commit (nmq_outbox_get_stats would read the file).
static bool
bridge_outbox_link_up(nmq_outbox *ob)
{
	int up = 0;
	return (nmq_outbox_link_is_up(ob, &up) == NMQ_OUTBOX_OK && up);
}

// Set while this thread closes a bridge's old socket in bridge_reload(): the REST API holds
// node->mtx there, and the close finishes the lanes' aios synchronously on this thread
// (mqtt_close_unack_aio_cb), so bridge_send_cb/bridge_resend_cb must not lock it again
// (stock: "pthread_mutex_lock: Resource deadlock avoided", abort at the first reload).
static _Thread_local bool bridge_closing_old = false;

// B2 fallback: the outbox refused a message NanoMQ already acknowledged to its publisher
// (disk full, I/O error, closed during shutdown, too big): it takes the stock path, counted.
static void
bridge_outbox_refused(conf_bridge_node *node, nmq_outbox *ob, nmq_outbox_result rv)
{
	unsigned long long n = bridge_outbox_event(ob, NMQ_OUTBOX_EVENT_FALLBACK, 1);

	log_warn("bridge [%s]: outbox refused a message (%s): sent on the stock path "
	         "(%llu so far)",
	    node->name, nmq_outbox_strerror(rv), n);
}

// A message the outbox refused took the stock path and is lost there (ctx_msgs full or
// flushed by a reload, a failed resend): counted in the outbox's stats, with its reason
// (issue 8 item 13).
void
bridge_outbox_count_lost(conf_bridge_node *node, nmq_outbox_lost_reason why, uint64_t n)
{
	bridge_param *bp = node->bridge_arg;

	if (bp != NULL && bp->outbox != NULL && n > 0) {
		nmq_outbox_count_lost(bp->outbox, why, n);
	}
}

// A REST reload disables the bridge (node->enable) while it swaps the socket, and stock
// bridge_pub_handler skips a disabled bridge: a message acknowledged to its publisher in that
// window was never forwarded nor counted. With an outbox it waits for node->mtx instead and
// is stored (issue 8 item 18). Set before node->enable goes false, cleared after the reload.
void
bridge_outbox_set_reloading(conf_bridge_node *node, int on)
{
	bridge_param *bp = node->bridge_arg;

	if (bp != NULL) {
		__atomic_store_n(&bp->nmq_reloading, on, __ATOMIC_SEQ_CST);
	}
}

static bool
bridge_outbox_reloading(conf_bridge_node *node)
{
	bridge_param *bp = node->bridge_arg;

	return (bp != NULL && bp->outbox != NULL &&
	    __atomic_load_n(&bp->nmq_reloading, __ATOMIC_SEQ_CST) != 0);
}

static void
bridge_outbox_log(void *ctx, nmq_outbox_log_level level, const char *message)
{
	const char *name = ctx;

	if (level == NMQ_OUTBOX_LOG_ERROR) {
		log_error("bridge [%s] outbox: %s", name, message);
	} else if (level == NMQ_OUTBOX_LOG_WARN) {
		log_warn("bridge [%s] outbox: %s", name, message);
	} else if (level == NMQ_OUTBOX_LOG_INFO) {
		log_info("bridge [%s] outbox: %s", name, message);
	} else {
		log_debug("bridge [%s] outbox: %s", name, message);
	}
}

// Ack after commit (bridges.mqtt.cache.ack_after_commit = true): the broker no longer acks a
// local client's QoS 1/2 PUBLISH on arrival; the library's gate (NanoNNG nmq_pub_ack_gate,
// nmq_outbox_gate_*) decides when each ack goes and sends it (its callback,
// nmq_pub_acks_send): this file only tells it which outbox took the message with which seq
// (bridge_ack_begin/append/end).

// B1 with ack_after_commit, right after the open: this outbox's commits release acks; the
// first one switches the broker's own acks off. -1 when it cannot take part: the caller
// closes the outbox (opened for this mode it would leave its commits to a caller).
static int
bridge_ack_enable(conf_bridge_node *node, nmq_outbox *ob)
{
	nmq_outbox_result rv = NMQ_OUTBOX_ENOMEM;

	if (nmq_pub_ack_gate() == NULL ||
	    (rv = nmq_outbox_gate_watch(nmq_pub_ack_gate(), ob)) != NMQ_OUTBOX_OK) {
		log_error("bridge [%s]: ack_after_commit not available (%s): the bridge keeps "
		          "the stock cache", node->name, nmq_outbox_strerror(rv));
		return (-1);
	}
	nmq_pub_ack_defer(1);
	log_info("bridge [%s]: local publishers are acked after the outbox commit "
	         "(ack_after_commit)", node->name);
	return (0);
}

// WORK state, a local client's PUBLISH handled: note the ack it is owed (mode on, QoS > 0).
void
bridge_ack_begin(nano_work *work)
{
	work->ob_ack = NULL;
	if (!nmq_pub_ack_deferred() || work->proto != PROTO_MQTT_BROKER ||
	    work->pub_packet == NULL || work->pub_packet->fixed_header.qos == 0) {
		return;
	}
	work->ob_ack = nmq_outbox_gate_begin(nmq_pub_ack_gate(), nng_msg_get_pipe(work->msg).id,
	    work->pub_packet->var_header.publish.packet_id,
	    work->pub_packet->fixed_header.qos, work->proto_ver == MQTT_PROTOCOL_VERSION_v5);
}

// B2: a message just stored while the link is up goes out now when nothing in flight would
// bring the ack (or PINGRESP) that runs the replay: the library decides, the client's replay
// runs under its socket lock. Under load the remote's acks drive the replay instead.
static void
bridge_outbox_kick(conf_bridge_node *node, nmq_outbox *ob)
{
	int due = 0;

	if (nmq_outbox_replay_due(ob, &due) == NMQ_OUTBOX_OK && due) {
		nng_socket_set_bool(*(nng_socket *) node->sock, NNG_OPT_MQTT_OUTBOX_KICK, true);
	}
}

// B2 on an MQTT over QUIC bridge (mqtt-quic://): NanoNNG's QUIC client sends a direct PUBLISH
// on one of two streams at random and drops it at cancel_timeout, so every QoS 1/2 forward is
// stored instead, and the client's replay sends the rows in order on the connection's main
// stream (issue 22). A hybrid bridge too, whatever its current transport: its socket is
// replaced at every switch under the publish path, and its lanes (bridge_aio) have no
// callback that would drain ctx_msgs. QoS 0 takes the B2 path of the other transports.
static bool
bridge_outbox_store_only(conf_bridge_node *node)
{
	bridge_param *bp = node->bridge_arg;

	return ((bp != NULL && bp->nmq_hybrid) ||
	    (node->address != NULL && strncmp(node->address, "mqtt-quic://", 12) == 0));
}

// Stores a forward at the tail of the outbox (bridge_outbox_store_only) and frees it; the
// replay sends it. 0 when the outbox took it; -1: the stock path takes it (counted).
static int
bridge_outbox_append(conf_bridge_node *node, nmq_outbox *ob, nng_msg *msg)
{
	nmq_outbox_result rv;

	rv = nmq_outbox_nng_append(ob, node->proto_ver, msg, NULL);
	if (rv == NMQ_OUTBOX_OK) {
		bridge_outbox_kick(node, ob);
		return (0);
	}
	bridge_outbox_refused(node, ob, rv);
	return (-1);
}

// B2 in this mode: stores the forward in the outbox and notes it in the gate. 0 when the
// outbox took it (or refused it for an MQTT 5 client, which then gets the reason code);
// -1: the stock path takes it.
static int
bridge_ack_append(nano_work *work, conf_bridge_node *node, nmq_outbox *ob, nng_msg *msg)
{
	nmq_outbox_result rv;

	rv = nmq_outbox_nng_gate_append(work->ob_ack, ob, node->proto_ver, msg);
	if (rv == NMQ_OUTBOX_OK) {
		bridge_outbox_kick(node, ob);
		return (0);
	}
	bridge_outbox_refused(node, ob, rv);
	return (-1);
}

// WAIT state, after the bridges: the gate sends the ack now (no outbox took it, one refused
// it, all have committed it) or once the commits of those outboxes' writers have.
void
bridge_ack_end(nano_work *work)
{
	nmq_outbox_gate_end(work->ob_ack);
	work->ob_ack = NULL;
}

static int bridge_outbox_handover(nng_socket *sock, conf_bridge_node *node, bridge_param *arg);

// B1: opens the outbox of this bridge once (it outlives socket reloads and hybrid switches) as
// <cache.mounted_file_path or cwd>/nmq_outbox-<bridge>.db. Returns 0 when arg->outbox is
// open; -1: the stock cache stays in use (a bridge without a cache block, or an outbox that
// cannot be opened).
static int
bridge_outbox_open(conf_bridge_node *node, bridge_param *arg)
{
	nmq_outbox_config cfg;
	nmq_outbox_result rv;
	char              path[PATH_MAX];
	const char       *dir;
	bool              ack_mode;

	if (node->sqlite == NULL || !node->sqlite->enable) {
		return (-1);
	}
	if (arg->outbox == NULL) {
		dir = node->sqlite->mounted_file_path;
		if (dir == NULL || dir[0] == '\0') {
			dir = ".";
		}
		snprintf(path, sizeof(path), "%s%s", dir, // a directory: the library uses
		    dir[strlen(dir) - 1] == '/' ? "" : "/"); // nmq_outbox-<bridge>.db in it
		nmq_outbox_config_init(&cfg);
		cfg.path               = path;
		cfg.bridge             = node->name;
		cfg.max_messages       = node->sqlite->disk_cache_size;
		cfg.group_commit_count = node->sqlite->flush_mem_threshold;
		cfg.window             = node->outbox_window; // 0: the library's 32
		// dead letters and refusals (issue 20); 0: the library's 1000, 3, 1000 ms
		cfg.dead_letter_limit  = node->outbox_dead_letter_limit;
		cfg.max_attempts       = node->outbox_max_attempts;
		cfg.backoff_ms         = node->outbox_backoff_ms;
		cfg.log_fn             = bridge_outbox_log;
		// the outbox outlives this node's strings (a reload frees and parses them again)
		cfg.log_ctx            = strdup(node->name);
		if (cfg.log_ctx == NULL) {
			cfg.log_ctx = (void *) "?";
		}
		cfg.log_level          = NMQ_OUTBOX_LOG_INFO;
		// retry_qos_0: QoS 0 too is kept until the remote has read it (QOS 0)
		cfg.store_qos0         = node->retry_qos_0 ? 1 : 0;
		ack_mode = node->sqlite->ack_after_commit;
		if (ack_mode) {
			// publishers wait for the commit: the writer commits at once (0 ms),
			// batching what arrives while a commit runs, instead of a 20 ms window;
			// its commit releases the acks in it (the gate's commit hook, on the
			// writer's thread): no commit on a worker, no hand-over back
			cfg.group_commit_ms = 0;
		}
		if ((rv = nmq_outbox_open(&cfg, &arg->outbox)) != NMQ_OUTBOX_OK) {
			log_error("bridge [%s]: outbox %s not opened (%s), using "
			          "the stock cache",
			    node->name, path, nmq_outbox_strerror(rv));
			arg->outbox = NULL;
			return (-1);
		}
		if (ack_mode && bridge_ack_enable(node, arg->outbox) != 0) {
			nmq_outbox_free(arg->outbox);
			arg->outbox = NULL;
			return (-1);
		}
		// B5: at exit every outbox commits and closes (the library knows them all)
		static int closes_at_exit = 0;
		if (__atomic_exchange_n(&closes_at_exit, 1, __ATOMIC_SEQ_CST) == 0) {
			atexit(nmq_outbox_exit_all);
		}
		log_info("bridge [%s]: durable outbox %s, window %u%s, dead letters kept %u%s, "
		         "max attempts %u%s, backoff %u ms%s", node->name, path,
		    node->outbox_window ? node->outbox_window : 32,
		    node->outbox_window ? " (outbox_window)" : "",
		    node->outbox_dead_letter_limit ? node->outbox_dead_letter_limit : 1000,
		    node->outbox_dead_letter_limit ? " (outbox_dead_letter_limit)" : "",
		    node->outbox_max_attempts ? node->outbox_max_attempts : 3,
		    node->outbox_max_attempts ? " (outbox_max_attempts)" : "",
		    node->outbox_backoff_ms ? node->outbox_backoff_ms : 1000,
		    node->outbox_backoff_ms ? " (outbox_backoff)" : "");
		// B1: take over what a stock NanoMQ left for this bridge in its own cache
		// (NanoNNG's mqtt_client.db in the same directory): appended in order, then
		// removed there, so it is imported once; the library logs the count
		char     stock[PATH_MAX];
		uint64_t imported = 0;
		snprintf(stock, sizeof(stock), "%s%smqtt_client.db", dir,
		    dir[strlen(dir) - 1] == '/' ? "" : "/");
		if ((rv = nmq_outbox_import_stock(arg->outbox, stock, node->name, &imported)) !=
		    NMQ_OUTBOX_OK) {
			log_error("bridge [%s]: stock cache %s not taken over (%s); its rows stay "
			          "there", node->name, stock, nmq_outbox_strerror(rv));
		} else if (imported > 0) {
			log_warn("bridge [%s]: %llu messages of the stock cache %s are now in the "
			         "outbox", node->name, (unsigned long long) imported, stock);
		}
	}
	return (0);
}

// B1: opens the outbox of this bridge once (bridge_outbox_open) and hands it to the client
// socket (in a reload: later, bridge_outbox_handover, once nothing of the reload can fail).
// Returns 0 when the socket uses the outbox; otherwise the stock cache stays in use.
static int
bridge_outbox_attach(nng_socket *sock, conf_bridge_node *node, bridge_param *arg)
{
	if (bridge_outbox_open(node, arg) != 0) {
		return (-1);
	}
	if (arg->sock != NULL && arg->sock != sock) {
		// reload: the old socket keeps the outbox until the new one cannot fail any
		// more (bridge_outbox_handover, from bridge_tcp_reload)
		return (0);
	}
	return (bridge_outbox_handover(sock, node, arg));
}

// B1 of a reload: moves the outbox from the bridge's old socket (arg->sock) to `sock`. Called
// by bridge_tcp_reload once no step of the reload can fail but the dialer's start: the old
// socket gives back what it holds first, then the new one takes it. Returns 0, or -1 when
// `sock` takes no outbox (then the old socket keeps it).
static int
bridge_outbox_handover(nng_socket *sock, conf_bridge_node *node, bridge_param *arg)
{
	if (arg->sock != NULL && arg->sock != sock) {
		// the old socket gives back what it holds first
		nng_socket_set_ptr(*arg->sock, NNG_OPT_MQTT_OUTBOX, NULL);
	}
	nng_socket_set_bool(*sock, NNG_OPT_MQTT_RETRY_QOS_0, node->retry_qos_0);
	if (nng_socket_set_ptr(*sock, NNG_OPT_MQTT_OUTBOX, arg->outbox) != 0) {
		log_error("bridge [%s]: the socket takes no outbox", node->name);
		if (arg->sock != NULL && arg->sock != sock) {
			nng_socket_set_ptr(*arg->sock, NNG_OPT_MQTT_OUTBOX, arg->outbox);
		}
		return (-1);
	}
	return (0);
}

// B1 of a hybrid bridge (hybrid_bridging), before its switch thread (bridge.c hybrid_cb)
// starts: at every disconnect that thread opens a new socket for the next address of its list
// (mqtt-tcp, tls or mqtt-quic) and closes the old one. The bridge keeps one outbox across
// them (opened with its first socket, bridge_outbox_open, handed over at each switch,
// bridge_outbox_hybrid_switch), stores every QoS 1/2 forward in it (bridge_outbox_store_only)
// and the replay of whichever socket is up sends them.
static void
bridge_outbox_hybrid_init(conf_bridge_node *node, bridge_param *arg)
{
	arg->nmq_hybrid = 1;
	// the socket broker.c allocated for the bridge is never opened (each switch opens its
	// own): no old socket to give the outbox back nor to close at the first switch (stock
	// closes the uninitialised id it holds)
	arg->sock = NULL;
	// the publish path and the REST API find the bridge's outbox
	node->bridge_arg = arg;
}

// A hybrid bridge's dial that failed at once (the client did not start: connection refused,
// no route): stock's switch thread goes straight to the next address, round the list without
// a pause for as long as the outage lasts (12 000 to 61 000 sockets in 25 s, a core busy), and
// each such turn leaves its MQTT client allocated (about 1.3 KB: RSS 8 -> 79 MB in 25 s).
// Frees that client and waits the library's backoff before the next address: 100 ms doubled
// per failure in a row (`failures`, reset by the caller when a client starts), up to the
// bridge's backoff_max. Runs on the switch thread, no lock held.
static void
bridge_hybrid_dial_failed(bridge_param *arg, uint32_t *failures)
{
	conf_bridge_node *node = arg->config;
	uint32_t          ms;

	ms = nmq_outbox_retry_backoff_ms(*failures, (uint32_t) node->backoff_max * 1000);
	if (*failures < UINT32_MAX) {
		(*failures)++;
	}
	if (arg->client != NULL) {
		nng_mqtt_client_free(arg->client, true);
		arg->client = NULL;
	}
	log_warn("bridge [%s]: %s not reached (%u in a row); next address in %u ms",
	    node->name, node->address != NULL ? node->address : "?", *failures, ms);
	nng_msleep(ms);
}

// B1 at a hybrid switch, once the new socket `sock` is ready to dial and before the old one
// (arg->sock; NULL the first time) is replaced and closed: the old socket gives back what it
// holds (rows in flight return to the head of the outbox, resent by the new connection), the
// new one takes the outbox; then node->sock and arg->sock become `sock` under node->mtx, which
// the publish path holds while it reads node->sock (the kick of the replay): it never uses the
// old socket once that is closed and freed. Runs on the switch thread, no lock held.
static void
bridge_outbox_hybrid_switch(nng_socket *sock, conf_bridge_node *node, bridge_param *arg)
{
	if (arg->outbox != NULL) {
		if (arg->sock != NULL && arg->sock != sock) {
			nng_socket_set_ptr(*arg->sock, NNG_OPT_MQTT_OUTBOX, NULL);
		}
		nng_socket_set_bool(*sock, NNG_OPT_MQTT_RETRY_QOS_0, node->retry_qos_0);
		if (nng_socket_set_ptr(*sock, NNG_OPT_MQTT_OUTBOX, arg->outbox) != 0) {
			// not on NanoNNG's MQTT clients (TCP/TLS and QUIC take it): stored
			// messages wait in the outbox for the next switch
			log_error("bridge [%s]: the new socket takes no outbox", node->name);
		} else {
			// debug: a dial that fails at once (the link down) switches again at once
			log_debug("bridge [%s]: outbox handed to the socket of %s", node->name,
			    node->address);
		}
	}
	nng_mtx_lock(node->mtx);
	node->sock = (void *) sock;
	arg->sock  = sock;
	nng_mtx_unlock(node->mtx);
}

// A reload that failed after the handover (the new dialer did not start): the new socket is
// closed, the outbox goes back to the old socket, which the bridge keeps. The old connection
// then replays from its next CONNACK on (the outbox took the handover as a link down).
static void
bridge_outbox_handback(conf_bridge_node *node, bridge_param *arg)
{
	if (arg->outbox != NULL && arg->sock != NULL &&
	    nng_socket_set_ptr(*arg->sock, NNG_OPT_MQTT_OUTBOX, arg->outbox) != 0) {
		log_error("bridge [%s]: the old socket takes its outbox no more", node->name);
	}
}

// Connect timeout of a TCP/TLS bridge's dialer (bridges.mqtt.<name>.connect_timeout): a
// connect into a silent path is aborted after it and retried after the backoff, instead of
// waiting on the kernel's SYN retries (minutes, with gaps of up to 64 s). The library's rule:
// 1.5 x keepalive within 5 s..30 s by default, 0 switches it off (stock behaviour).
// A hybrid bridge sets it on the socket of every switch (B12): logged with its first socket only.
static void
bridge_set_connect_timeout(nng_dialer *dialer, conf_bridge_node *node)
{
	int32_t       ms = nmq_outbox_connect_timeout_ms(node->connect_timeout, node->keepalive);
	bridge_param *bp = node->bridge_arg;

	if (nng_dialer_set_ms(*dialer, NNG_OPT_MQTT_CONNECT_TIMEOUT, (nng_duration) ms) != 0) {
		log_warn("bridge [%s]: its transport takes no connect timeout", node->name);
		return;
	}
	if (ms > 0 && (bp == NULL || !bp->nmq_hybrid || bp->sock == NULL)) {
		log_info("bridge [%s]: connect timeout %lld ms%s", node->name, (long long) ms,
		    node->connect_timeout < 0 ? " (from keepalive)" : "");
	}
}
