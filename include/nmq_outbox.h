/*
 * nmq_outbox.h - C ABI of nmq-outbox, a durable SQLite outbox for NanoMQ's MQTT bridge.
 *
 * This header is the one contract between C and the Rust library. It is written by hand and
 * checked against the Rust side at every build (build.rs runs bindgen on it and the build
 * fails if an export's signature, a struct or a constant disagrees).
 *
 * OWNERSHIP (the one place for these rules)
 *   - nmq_outbox_open() creates a handle; the caller owns it and must pass it to
 *     nmq_outbox_free() exactly once. nmq_outbox_close() commits and closes but does not free:
 *     after it every call on the handle returns NMQ_OUTBOX_ECLOSED, which is safe (except
 *     nmq_outbox_get_stats(), which still gives the last counters).
 *   - Every pointer argument is borrowed for the duration of the call only. Message bytes are
 *     copied; the library never keeps a caller pointer.
 *   - nmq_outbox_lease() fills an nmq_outbox_item whose `data` the library allocated; the caller
 *     releases it with nmq_outbox_item_free() (NULL-safe, idempotent).
 *   - Strings returned by nmq_outbox_strerror() and nmq_outbox_version() are static.
 *
 * THREADS
 *   - A handle is thread-safe: every call except nmq_outbox_free() may run concurrently with any
 *     other call on the same handle. nmq_outbox_free() must be the last call on a handle.
 *   - The library runs one writer thread per open handle (group commit) and, from the first
 *     WAL checkpoint the handle needs (1000 pages written), a checkpoint thread
 *     (nmq-outbox-ckpt) with a SQLite connection of its own, so that a checkpoint's fsyncs do
 *     not hold the commits behind it; with caller_commits = 1 the writer checkpoints instead.
 *     A gate (nmq_outbox_gate_new) has one thread of its own. Nothing else.
 *   - The library never calls back into the host except through the log callback. That callback
 *     may run on any thread, inside any nmq_outbox_* call or on the writer thread, never with a
 *     library lock held. It must not call nmq_outbox_* and must not take a lock that the host
 *     holds while calling the library (a logger's own lock is fine). Hence the library may be
 *     called with the host's locks held (NanoMQ's node->mtx, nng's socket mutex).
 *   - The one other call back: the packet-id question (nmq_outbox_pid_busy_fn) a host passes to
 *     nmq_outbox_nng_lease_bind(); it runs only inside that call, on its thread, with the
 *     outbox's lock held, so it may read the host's state under the locks the host holds
 *     around that call, and must not call nmq_outbox_*.
 *   - Calls block at most for one SQLite transaction (group commit, a lease refill or a flush).
 *
 * ERRORS
 *   Every call returns an nmq_outbox_result: 0 is success, > 0 an informational outcome,
 *   < 0 an error, also written to the log. No call aborts the host: a Rust panic is caught and
 *   returned as NMQ_OUTBOX_EINTERNAL.
 *
 * DURABILITY
 *   nmq_outbox_append() returns once the message is in the group-commit batch. It is on disk
 *   after at most group_commit_count further appends or group_commit_ms milliseconds, or after
 *   nmq_outbox_flush() / nmq_outbox_close() / nmq_outbox_commit() returns OK. While the writer
 *   falls far behind, or after a commit failed, an append commits itself and is refused if
 *   that fails. A crash can lose only that window;
 *   acks (deletes) and packet ids of the replay commit with the next such commit, within
 *   group_commit_ms but at least 20 ms, or once 4096 of them wait: a crash can resend rows
 *   acked within that window (duplicates, never a loss);
 *   stats.committed_seq says which appends are on disk (see ACK AFTER COMMIT below for a host
 *   that acknowledges its publishers only then).
 */
#ifndef NMQ_OUTBOX_H
#define NMQ_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever a struct of this header changes. Set config.abi_version to it. */
#define NMQ_OUTBOX_ABI_VERSION 8

/* Opaque handle: one bridge in one database file. */
typedef struct nmq_outbox nmq_outbox;

typedef enum nmq_outbox_result {
    NMQ_OUTBOX_OK = 0,
    NMQ_OUTBOX_EMPTY = 1,      /* lease: nothing to hand out (empty, link down or window full) */
    NMQ_OUTBOX_NOT_OURS = 2,   /* ack: the packet id is not bound to a row of this outbox */
    NMQ_OUTBOX_PENDING = 3,    /* commit: the writer was checkpointing; it commits the rest */
    NMQ_OUTBOX_EINVAL = -1,    /* NULL pointer, invalid QoS, bad config or argument */
    NMQ_OUTBOX_EABI = -2,      /* config.abi_version differs from NMQ_OUTBOX_ABI_VERSION */
    NMQ_OUTBOX_ETOOBIG = -3,   /* message larger than config.max_message_bytes */
    NMQ_OUTBOX_EFULL = -4,     /* bridge limit reached with NMQ_OUTBOX_REJECT_NEW */
    NMQ_OUTBOX_ENOSPC = -5,    /* disk full: the message was not accepted */
    NMQ_OUTBOX_EIO = -6,       /* other I/O or SQLite error */
    NMQ_OUTBOX_ECORRUPT = -7,  /* database corrupt (at open it is renamed aside instead) */
    NMQ_OUTBOX_ECLOSED = -8,   /* the handle was closed */
    NMQ_OUTBOX_EBUSY = -9,     /* this bridge of this file is already open in this process, or
                                  another process holds the file */
    NMQ_OUTBOX_EINTERNAL = -10, /* bug: a panic was caught; the handle stays usable */
    NMQ_OUTBOX_ENOMEM = -11,   /* memory could not be had; nothing was changed */
    NMQ_OUTBOX_EREFUSED = -12  /* link_up_connack: the CONNACK refused the connection (MQTT 5
                                  reason code >= 0x80, 3.1.1 return code != 0): link down */
} nmq_outbox_result;

typedef enum nmq_outbox_sync {
    NMQ_OUTBOX_SYNC_NORMAL = 0, /* survives a process crash (WAL) */
    NMQ_OUTBOX_SYNC_FULL = 1    /* survives a power loss too; slower */
} nmq_outbox_sync;

typedef enum nmq_outbox_full_policy {
    NMQ_OUTBOX_DROP_OLDEST = 0, /* NanoMQ's behaviour: oldest queued rows go, counted */
    NMQ_OUTBOX_REJECT_NEW = 1   /* the new message is refused with NMQ_OUTBOX_EFULL */
} nmq_outbox_full_policy;

typedef enum nmq_outbox_log_level {
    NMQ_OUTBOX_LOG_ERROR = 1,
    NMQ_OUTBOX_LOG_WARN = 2,
    NMQ_OUTBOX_LOG_INFO = 3,
    NMQ_OUTBOX_LOG_DEBUG = 4
} nmq_outbox_log_level;

/* `message` is valid only during the call. See THREADS above for what the callback may do. */
typedef void (*nmq_outbox_log_fn)(void *ctx, nmq_outbox_log_level level, const char *message);

typedef struct nmq_outbox_config {
    uint32_t abi_version;        /* NMQ_OUTBOX_ABI_VERSION */
    const char *path;            /* database file (UTF-8); our own file, not mqtt_client.db.
                                    A directory (existing, or ending in '/') gives one file per
                                    bridge: <dir>/nmq_outbox-<bridge>.db (bytes outside
                                    [A-Za-z0-9._-] become '_', plus -<8 hex> of a hash of the
                                    name when any was replaced) */
    const char *bridge;          /* bridge name (UTF-8), the partition key of every row */
    uint64_t max_messages;       /* per-bridge limit in messages; 0 = unlimited */
    uint64_t max_bytes;          /* per-bridge limit in stored bytes; 0 = unlimited */
    uint32_t max_message_bytes;  /* largest message accepted; 0 = 268435455 (MQTT's maximum);
                                    capped at what SQLite stores in a row (logged) */
    uint32_t group_commit_count; /* commit after this many appends (and QoS 2 PUBRECs);
                                    0 = 100, 1 = every append; acks ride along (DURABILITY) */
    uint32_t group_commit_ms;    /* commit pending writes after this long; default 20;
                                    0 = at once (writes that come during a commit go into
                                    the next one: for a host that acks after the commit);
                                    acks alone wait up to 20 ms for an append to ride with */
    uint32_t window;             /* replay in-flight window; 0 = 32; capped by Receive Maximum */
    nmq_outbox_sync sync;
    nmq_outbox_full_policy full_policy;
    nmq_outbox_log_fn log_fn;    /* NULL = log to stderr */
    void *log_ctx;               /* passed to log_fn as is */
    nmq_outbox_log_level log_level; /* most verbose level passed to log_fn */
    uint32_t caller_commits;     /* 1: the host commits its appends itself with
                                    nmq_outbox_commit(), on its own thread, outside its own
                                    locks, instead of the writer thread being woken for them
                                    (for a host that acks after the commit: no hand-over to
                                    the writer and back). Appends then wake the writer only
                                    when a batch is due by group_commit_count or size; acks
                                    alone stay the writer's. 0 (default): the writer commits */
    uint32_t dead_letter_limit;  /* dead letters kept per bridge; beyond it the oldest is
                                    deleted, counted in stats.dropped_dead_letters and logged
                                    with its reason. 0 = 1000 */
    uint32_t max_attempts;       /* a row alone in flight when the remote closed the connection
                                    on it this many times (REFUSALS) becomes a dead letter.
                                    0 = 3 */
    uint32_t backoff_ms;         /* first back-off after a transient refusal (quota exceeded,
                                    server busy); doubled per refusal in a row, at most 60
                                    times it. 0 = 1000 */
    uint32_t store_qos0;         /* 1: every QoS 0 message goes through the outbox (decide:
                                    always STORE), so that none is lost in a cut (QOS 0;
                                    NanoMQ's retry_qos_0). 0 (default): QoS 0 goes out
                                    directly while the link is up and nothing is held */
} nmq_outbox_config;

typedef enum nmq_outbox_decision {
    NMQ_OUTBOX_SEND_NOW = 0, /* link up, nothing held, window has room: send directly */
    NMQ_OUTBOX_STORE = 1     /* call nmq_outbox_append(); the outbox will replay it in order */
} nmq_outbox_decision;

typedef enum nmq_outbox_ack_type {
    NMQ_OUTBOX_PUBACK = 4,
    NMQ_OUTBOX_PUBREC = 5,
    NMQ_OUTBOX_PUBCOMP = 7
} nmq_outbox_ack_type;

typedef enum nmq_outbox_ack_outcome {
    NMQ_OUTBOX_ACK_DONE = 0,     /* acknowledged: the row is deleted */
    NMQ_OUTBOX_ACK_PROGRESS = 1, /* PUBREC of a QoS 2 row: kept until PUBCOMP */
    NMQ_OUTBOX_ACK_REJECTED = 2, /* PUBACK/PUBREC reason >= 0x80 (not 0x97): the row is a dead
                                    letter (kept, not replayed; DEAD LETTERS), counted in
                                    dropped_rejected; a PUBCOMP always completes the row */
    NMQ_OUTBOX_ACK_RETRY = 3     /* PUBACK/PUBREC 0x97 (quota exceeded): the row is queued again
                                    at its place, sent as a new PUBLISH after a back-off
                                    (stats.backoffs). Like DONE and REJECTED the exchange is
                                    over: the packet id is free */
} nmq_outbox_ack_outcome;

/* A row handed out for sending. `data` belongs to the library until nmq_outbox_item_free(). */
typedef struct nmq_outbox_item {
    int64_t seq;           /* position in the bridge's FIFO; pass to bind/unlease */
    uint8_t qos;
    uint8_t dup;           /* 1: sent before; set DUP if you reuse packet_id */
    uint16_t packet_id;    /* packet id of the last send, 0 = never sent */
    uint32_t expiry_secs;  /* remaining MQTT 5 Message Expiry Interval, 0 = none */
    uint8_t *data;         /* the bytes given to nmq_outbox_append() */
    size_t len;
    uint8_t released;      /* QoS 2: PUBREC already came for packet_id: send PUBREL on it, not
                              the PUBLISH again (which the remote could deliver twice) */
} nmq_outbox_item;

/* What a row handed out by nmq_outbox_nng_lease_bind() is on the wire. */
typedef enum nmq_outbox_row_kind {
    NMQ_OUTBOX_ROW_PUBLISH = 0, /* a QoS 1/2 PUBLISH, bound to packet_id; its ack completes it */
    NMQ_OUTBOX_ROW_PUBREL = 1,  /* a PUBREL on packet_id (QoS 2, PUBREC came); PUBCOMP ends it */
    NMQ_OUTBOX_ROW_QOS0 = 2     /* a QoS 0 PUBLISH, no packet id: nmq_outbox_sent() once written */
} nmq_outbox_row_kind;

/* A row handed out with its packet id chosen and bound (nmq_outbox_nng_lease_bind). */
typedef struct nmq_outbox_bound_row {
    int64_t seq;        /* for nmq_outbox_unlease() (send failed) and nmq_outbox_sent() */
    uint16_t packet_id; /* bound and written into the packet; 0 for NMQ_OUTBOX_ROW_QOS0 */
    uint8_t qos;        /* the QoS it goes out with (the remote's Maximum QoS applied) */
    uint8_t kind;       /* nmq_outbox_row_kind */
    uint8_t dup;        /* 1: a PUBLISH sent before on packet_id (DUP is set in it) */
} nmq_outbox_bound_row;

/* Asked by the outbox before it binds `packet_id` to a row: nonzero when the host has that id in
 * flight on its own (a direct send, a SUBSCRIBE). Called on the caller's thread, inside the
 * call that was given it, with the outbox's lock held: it must not call into the library. */
typedef int (*nmq_outbox_pid_busy_fn)(void *arg, uint16_t packet_id);

typedef struct nmq_outbox_stats {
    uint64_t messages;         /* rows held: queued + in flight */
    uint64_t bytes;            /* their data bytes */
    uint64_t inflight;         /* rows handed out, not yet acknowledged */
    uint64_t enqueued;         /* accepted since open */
    uint64_t acked;            /* deleted on PUBACK/PUBCOMP (QoS 0: once confirmed, QOS 0) since open */
    uint64_t resent;           /* handed out again after a link loss, unlease or restart */
    uint64_t dropped_full;     /* dropped by the limit policy (drop_oldest, or refused) */
    uint64_t dropped_expired;  /* expired before they could be sent */
    uint64_t dropped_rejected; /* acknowledged with a reason code >= 0x80 */
    uint64_t dropped_malformed; /* could not be sent as stored (nmq_outbox_drop), or refused by
                                   SQLite at commit (key collision); each one logged */
    uint64_t dropped_unwritten; /* accepted, but the final commit at close failed (disk full,
                                   file lost): never on disk; logged */
    uint64_t refused_nospace;  /* appends refused with NMQ_OUTBOX_ENOSPC (the caller kept them) */
    uint64_t oldest_age_ms;    /* age of the oldest held row, 0 when empty */
    int64_t committed_seq;     /* every append with seq <= this is on disk */
    uint32_t window;           /* effective window */
    uint8_t link_up;
    uint8_t space_low;         /* 1: the disk was full and the reserve is spent; appends are
                                  refused with ENOSPC until the reserve can be put back */
    uint64_t lost_fallback_queue; /* refused by the outbox, then lost on the host's own path:
                                     its fallback queue was full (nmq_outbox_count_lost) */
    uint64_t lost_fallback_send;  /* ... or its fallback send failed (nmq_outbox_count_lost) */
    uint64_t qos_downgraded;   /* rows handed out at a lower QoS than stored: the remote's
                                  Maximum QoS (nmq_outbox_link_up_connack) */
    uint64_t retain_cleared;   /* rows sent with RETAIN cleared: the remote has no retained
                                  messages (Retain Available 0) */
    uint64_t dead_letters;     /* gauge: dead letters kept in the file now (DEAD LETTERS) */
    uint64_t dead_lettered;    /* rows made dead letters since open */
    uint64_t dropped_dead_letters; /* the oldest dead letters deleted beyond
                                      config.dead_letter_limit (each logged with its reason) */
    uint64_t backoffs;         /* transient refusals that made the replay back off */
    uint8_t backing_off;       /* 1: the replay waits for a back-off to pass (lease: EMPTY) */
    uint8_t probing;           /* 1: the replay sends one row at a time (REFUSALS) */
    uint64_t acks_ignored;     /* acks that matched no row in flight (NOT_OURS: an unknown
                                  packet id, a second ack, the wrong type for the QoS sent) */
    uint64_t dropped_qos0;     /* QoS 0 messages the host dropped: they could not go now (no
                                  link, no free lane) and QoS 0 is not stored (store_qos0 0)
                                  (nmq_outbox_count_event) */
    uint64_t fallbacks;        /* messages the outbox refused (ENOSPC, EIO, ECLOSED, ETOOBIG)
                                  that the host sent on its own path (nmq_outbox_count_event);
                                  those it then lost there: lost_fallback_* */
} nmq_outbox_stats;

/* What a CONNACK said, as nmq_outbox_link_up_connack() parsed it: for the host's log and its
 * own business (keep alive). A property the remote did not send has its MQTT default. */
typedef struct nmq_outbox_connack {
    uint8_t proto_ver;          /* 3, 4 or 5, as given */
    uint8_t reason_code;        /* MQTT 5 Reason Code, or the 3.1.1 Connect Return Code */
    uint8_t session_present;    /* 1: the remote kept our session */
    uint8_t maximum_qos;        /* 0, 1 or 2 (absent: 2) */
    uint8_t retain_available;   /* absent: 1 */
    uint8_t has_server_keep_alive;       /* 1: server_keep_alive was sent */
    uint8_t has_session_expiry_interval; /* 1: session_expiry_interval was sent */
    uint16_t receive_maximum;   /* absent: 65535 */
    uint16_t topic_alias_maximum; /* absent: 0. The outbox sends no topic alias: informational */
    uint16_t server_keep_alive; /* the keep alive the host must use instead of its own (MQTT 5
                                   3.2.2.3.14): the host's business, the outbox ignores it */
    uint32_t maximum_packet_size; /* absent: 0 (no limit but MQTT's own) */
    uint32_t session_expiry_interval;
} nmq_outbox_connack;

typedef enum nmq_outbox_drop_reason {
    NMQ_OUTBOX_DROP_MALFORMED = 1 /* the row does not decode or encode as a PUBLISH */
} nmq_outbox_drop_reason;

typedef enum nmq_outbox_lost_reason {
    NMQ_OUTBOX_LOST_QUEUE_FULL = 1, /* the host's fallback queue was full and dropped it
                                       (NanoMQ's ctx_msgs drops its oldest) */
    NMQ_OUTBOX_LOST_SEND_FAILED = 2 /* the host's fallback send failed and freed it (no link and
                                       nowhere to keep it, ack timeout, socket closed) */
} nmq_outbox_lost_reason;

typedef enum nmq_outbox_event {
    NMQ_OUTBOX_EVENT_QOS0_DROPPED = 1, /* a QoS 0 message dropped by the host: stats.dropped_qos0 */
    NMQ_OUTBOX_EVENT_FALLBACK = 2      /* a refused message sent on the host's path: stats.fallbacks */
} nmq_outbox_event;

/* DEAD LETTERS (issue 20). A row the remote refuses for good is not deleted: it becomes a dead
 * letter, kept in the file (table `dead`: its bytes, QoS, times, the reason, the MQTT reason
 * code if any, attempts, when), out of the replay, counted (stats.dead_letters now,
 * stats.dead_lettered since open; JSON "dead_letters"/"dead_lettered", Prometheus
 * nanomq_bridge_outbox_dead_letters and _dead_lettered_total). Reasons: "rejected" (a
 * PUBACK/PUBREC reason code >= 0x80 but 0x97, also counted in dropped_rejected),
 * "packet_too_large" (above the CONNACK's Maximum Packet Size), "refused_by_close" (the remote
 * closed the connection max_attempts times on it, REFUSALS). At most
 * config.dead_letter_limit are kept: beyond it the oldest is deleted, counted in
 * stats.dropped_dead_letters (JSON "dropped":{"dead_letters"}, Prometheus
 * reason="dead_letters") and logged with its reason: never a silent loss. An operator lists,
 * exports, puts back in the queue (at their place in the FIFO, as never sent) or purges them
 * with `nmq-outbox dead list|export|requeue|purge` (see its --help); requeue and purge refuse
 * a file a running NanoMQ holds. The file's schema is version 2 (older files are migrated
 * at open; a library of schema 1 refuses a file of schema 2). */

/* Fills *cfg with the defaults and abi_version. path and bridge stay NULL: set them. */
void nmq_outbox_config_init(nmq_outbox_config *cfg);

/* Opens (or creates) the file and resumes this bridge's committed rows in order; rows that were
 * in flight become queued. Logs (INFO) "nmq-outbox <version>: bridge <name> -> <file>, <N>
 * messages waiting". A corrupt file is renamed to "<path>.corrupt-<unix secs>" and a fresh one
 * is opened, with an error logged (unless other bridges of this process have it open: then
 * ECORRUPT, and the file stays). The process holds an OS lock (flock) on the file while any
 * handle on it is open: another process gets EBUSY. Beside the file the library keeps
 * "<file>-reserve" (2 MiB), given up when the disk fills so that acks can still commit.
 * Every file the library creates (the file, its -wal, -shm and -reserve, a .corrupt- copy) is
 * 0600 and a directory it creates 0700, whatever the umask; an existing outbox file (or side
 * file) this process's user owns that group or others can access is tightened to owner only at
 * open, with one WARN line; another user's is left as it is, with a WARN line.
 * On success *out is a new handle; on error *out is set to NULL. */
nmq_outbox_result nmq_outbox_open(const nmq_outbox_config *cfg, nmq_outbox **out);

/* Commits what is pending and stops the writer thread. Idempotent. NULL gives EINVAL. */
nmq_outbox_result nmq_outbox_close(nmq_outbox *ob);

/* Closes if needed and frees the handle. NULL is a no-op. Must be the last call on `ob`.
 * A failed final commit is logged with the number of accepted messages lost. */
void nmq_outbox_free(nmq_outbox *ob);

/* Commits every pending write before returning. */
nmq_outbox_result nmq_outbox_flush(nmq_outbox *ob);

/* The link came up (successful CONNACK). receive_maximum: the CONNACK's Receive Maximum,
 * 0 if absent. Replay may start right after. Session present assumed and no other limit known
 * (rows go as they are stored): for hosts that cannot pass the CONNACK; prefer
 * nmq_outbox_link_up_connack(). */
nmq_outbox_result nmq_outbox_link_up(nmq_outbox *ob, uint16_t receive_maximum);

/* A CONNACK arrived: the raw packet (`len` bytes at `packet`, the fixed header followed by the
 * rest; borrowed for the call) of a connection of MQTT version `proto_ver` (3, 4 or 5). It
 * decides, as a careful client must:
 *   - accepted (MQTT 5 reason code < 0x80, 3.1.1 return code 0): the link is up and the replay
 *     may start; the window is min(config.window, Receive Maximum);
 *     refused: NMQ_OUTBOX_EREFUSED (logged with the reason) and the link stays down;
 *   - Session Present 1: the exchanges resume (released QoS 2 rows with PUBREL, rows in flight
 *     with their packet id and DUP). Session Present 0 (the remote has no state for us, e.g.
 *     MQTT 5 without Session Expiry Interval): every row in flight and every released QoS 2
 *     row is sent again as a new PUBLISH (packet_id 0, dup 0, released 0 at the lease): a
 *     possible duplicate at the remote, never a loss;
 *   - Maximum QoS (absent: 2): nmq_outbox_lease() hands each row out to be sent at
 *     min(its QoS, Maximum QoS): item.qos says so and, when the row's bytes are a PUBLISH, so
 *     do they (the QoS bits of the fixed header; to QoS 0 the packet id is taken out). The
 *     ack expected is the one of that QoS (a PUBACK completes a QoS 2 row sent at QoS 1; a
 *     row sent at QoS 0 completes with nmq_outbox_sent()). The stored row keeps its QoS and
 *     is sent at it again after a CONNACK that allows it. Counted in stats.qos_downgraded;
 *   - Maximum Packet Size: a row whose PUBLISH as sent (with the Message Expiry the replay
 *     adds) is larger is never sent (MQTT 5 3.1.2.24): it becomes a dead letter
 *     ("packet_too_large", see DEAD LETTERS) and the replay goes on with the next row;
 *   - Retain Available 0 (a PUBLISH with RETAIN set is a protocol error for such a server,
 *     0x9A): the row is sent with RETAIN cleared (delivered to current subscribers, not
 *     retained), counted in stats.retain_cleared; the stored row keeps its flag;
 *   - Topic Alias Maximum: the outbox sends no topic alias; Server Keep Alive: the host's
 *     business (in *out). Both only reported.
 * A malformed or truncated packet, an unknown property or a forbidden value gives EINVAL
 * (logged: which) and changes nothing. A CONNACK while the link was up ends that connection
 * first (as nmq_outbox_link_down()). *out (may be NULL) gets what was parsed (zeroed on EINVAL).
 * `ob` and `out` are borrowed. Thread-safe. */
nmq_outbox_result nmq_outbox_link_up_connack(nmq_outbox *ob, uint8_t proto_ver,
                                             const uint8_t *packet, size_t len,
                                             nmq_outbox_connack *out);

/* The link went down: rows in flight go back to the head of the queue in their order. An
 * ordinary outage: for a host that cannot tell why (prefer nmq_outbox_link_down_reason()). */
nmq_outbox_result nmq_outbox_link_down(nmq_outbox *ob);

/* REFUSALS (issue 20). A remote that refuses a message may close the connection instead of
 * answering it (a DISCONNECT with a reason code; MQTT 3.1.1 servers just close). Such a
 * message must not block the ones behind it forever, so the host says why the link went down:
 * `had_disconnect` nonzero when the remote sent a DISCONNECT, `disconnect_reason` its reason
 * code (0 when none). Rows in flight go back to the head of the queue (as
 * nmq_outbox_link_down()), and:
 *   - a refusal: a DISCONNECT with 0x80 0x81 0x82 0x83 0x87 0x90 0x94 0x95 0x99 0x9A 0x9B, or
 *     a close without DISCONNECT within 3 s of a send with no ack since. A row that was alone
 *     in flight gets an attempt; after config.max_attempts (default 3) it becomes a dead
 *     letter ("refused_by_close", the reason code kept) and the replay goes on. With several
 *     rows in flight (or none: the host's direct send may be the culprit; it comes back
 *     through nmq_outbox_requeue_front) the next connections probe: the window is 1 (and
 *     nmq_outbox_decide() says STORE) until every row that was in flight at that close is
 *     acknowledged or a dead letter, so that the culprit is alone in flight when the remote
 *     closes again. A close without DISCONNECT counts an
 *     attempt only while probing: an ordinary outage (no DISCONNECT, the link lost while idle
 *     or during a normal window) never counts attempts. A row sent at QoS 2 alone in flight
 *     at a DISCONNECT 0x9B (QoS not supported), or at a close without DISCONNECT on an MQTT
 *     3.1.1 connection (which has no other way to refuse QoS 2), counts no attempt: the
 *     remote is taken as Maximum QoS 1 from then on (every QoS 2 row is sent at QoS 1, as
 *     under a CONNACK's Maximum QoS 1, counted in stats.qos_downgraded, logged) until the
 *     handle is closed; if it closes again on that row at QoS 1, attempts count;
 *   - a transient refusal: a DISCONNECT with 0x89 Server busy, 0x93 Receive Maximum
 *     exceeded, 0x96 Message rate too high, 0x97 Quota exceeded, 0x9F Connection rate
 *     exceeded (and PUBACK/PUBREC 0x97, NMQ_OUTBOX_ACK_RETRY): the replay backs off for
 *     config.backoff_ms (default 1 s), doubled for each such refusal in a row up to 60 times
 *     it, reset by an acknowledged row. Meanwhile nmq_outbox_lease() gives EMPTY and
 *     nmq_outbox_decide() STORE; the host's replay tick (its timer) calls lease again. Never
 *     an attempt, never a dead letter;
 *   - any other reason (0x00 normal, 0x8B server shutting down, 0x8D keep alive timeout,
 *     0x8E session taken over, 0x98 administrative action, ...): an ordinary outage.
 * stats.probing, stats.backing_off and stats.backoffs say what is going on; each decision is
 * logged. `ob` is borrowed. Thread-safe. */
nmq_outbox_result nmq_outbox_link_down_reason(nmq_outbox *ob, uint8_t disconnect_reason,
                                              int had_disconnect);

/* For a new message of QoS `qos`: NMQ_OUTBOX_SEND_NOW only when the link is up, nothing is held
 * and the window has room; NMQ_OUTBOX_STORE otherwise. */
nmq_outbox_result nmq_outbox_decide(nmq_outbox *ob, uint8_t qos, nmq_outbox_decision *out);

/* Copies `len` bytes at the tail of the queue. *seq_out (may be NULL) gets the row's seq.
 * QoS 0, 1 or 2 (a QoS 0 row completes with nmq_outbox_sent(), not an ack). After a failed
 * commit the message is committed before OK is returned; while stats.space_low is set (disk
 * full) it is refused with ENOSPC and the host keeps it. */
nmq_outbox_result nmq_outbox_append(nmq_outbox *ob, uint8_t qos, uint32_t expiry_secs,
                                    const uint8_t *data, size_t len, int64_t *seq_out);

/* Puts a message that was sent directly and lost its link back at the head of the queue,
 * before every held row. Call it for such messages newest first, so the oldest ends first.
 * packet_id: the id it was sent with (0 = none). The replay hands it out again with dup = 1, so
 * a remote session that still holds the id (QoS 2) sees a duplicate, never a new message. */
nmq_outbox_result nmq_outbox_requeue_front(nmq_outbox *ob, uint8_t qos, uint32_t expiry_secs,
                                           uint16_t packet_id, const uint8_t *data, size_t len,
                                           int64_t *seq_out);

/* Hands out the next row in FIFO order. NMQ_OUTBOX_EMPTY when there is none to send now (empty,
 * link down or window full). On OK release item->data with nmq_outbox_item_free(). */
nmq_outbox_result nmq_outbox_lease(nmq_outbox *ob, nmq_outbox_item *item);

/* Frees item->data and zeroes the item. NULL, or an item already freed, is a no-op. */
void nmq_outbox_item_free(nmq_outbox_item *item);

/* The leased row `seq` was sent with `packet_id` (1..65535). */
nmq_outbox_result nmq_outbox_bind(nmq_outbox *ob, int64_t seq, uint16_t packet_id);

/* The send of leased row `seq` failed locally: it is queued again at its place. */
nmq_outbox_result nmq_outbox_unlease(nmq_outbox *ob, int64_t seq);

/* QOS 0 (issue 20). A QoS 0 row has no ack, and a connection that died silently swallows what
 * was written into it before the keepalive notices. So a QoS 0 row written to the connection
 * (nmq_outbox_sent) stays in flight, counted in the window, until the remote is known to have
 * read past it: an ack of a row the outbox sent after it on the same connection, or the
 * PINGRESP to a PINGREQ written after it (the replay asks for one: nmq_outbox_ping_due). Only
 * then is it deleted (stats.acked). When the link goes down first it goes back to the head
 * of the queue with the rows in flight and is sent again: a possible duplicate, never a loss.
 * The host tells the outbox of every PINGREQ it writes on the connection, its own keepalive's
 * too (nmq_outbox_ping_sent), and of every PINGRESP (nmq_outbox_pong): PINGRESPs answer
 * PINGREQs in order, so each confirms what was written before its PINGREQ. */

/* Leased QoS 0 row `seq` was written to the connection (or queued on it, in order): it waits
 * for a confirmation (QOS 0). EINVAL for a row that is not leased or not QoS 0. */
nmq_outbox_result nmq_outbox_sent(nmq_outbox *ob, int64_t seq);

/* 1 in *due when the host should write a PINGREQ now (then call nmq_outbox_ping_sent): QoS 0
 * rows written on this connection wait for a confirmation, and no PINGREQ is outstanding. 0
 * otherwise (the link is down, nothing waits, or a PINGRESP is awaited). Thread-safe. */
nmq_outbox_result nmq_outbox_ping_due(nmq_outbox *ob, int *due);

/* A PINGREQ was written to the connection (the replay's, or the host's keepalive): the next
 * PINGRESP not yet matched confirms every QoS 0 row written before it. Thread-safe. */
nmq_outbox_result nmq_outbox_ping_sent(nmq_outbox *ob);

/* A PINGRESP arrived: the QoS 0 rows written before its PINGREQ are deleted (*confirmed, may be
 * NULL, gets how many). A PINGRESP with no PINGREQ recorded confirms nothing. Thread-safe. */
nmq_outbox_result nmq_outbox_pong(nmq_outbox *ob, uint64_t *confirmed);

/* 1 in *due when the host should run its replay now: the link is up, rows wait, no back-off
 * holds them, and nothing in flight will bring an ack or a PINGRESP that runs it (nothing
 * sent awaits one). Call it after storing a message while the link is up (a STORE decision,
 * an append): a replay that runs after every ack then needs no other kick, and an idle link
 * sends a stored message at once instead of at the next timer tick. Thread-safe. */
nmq_outbox_result nmq_outbox_replay_due(nmq_outbox *ob, int *due);

/* *up (not NULL) gets 1 while the link is up (from nmq_outbox_link_up*() to
 * nmq_outbox_link_down*()), else 0. Reads the outbox's state alone and never waits for a commit
 * (nmq_outbox_get_stats() reads the file: it waits behind the writer's transaction): for a
 * question asked per message, e.g. whether to forward a QoS 0 message without retry_qos_0.
 * `ob` is borrowed. Thread-safe. */
nmq_outbox_result nmq_outbox_link_is_up(nmq_outbox *ob, int *up);

/* Leased row `seq` cannot be sent as it is stored (it does not decode as a PUBLISH, or cannot be
 * encoded): deleted, counted in stats.dropped_malformed and logged; the replay goes on with
 * the next row. EINVAL for a row that is not leased. */
nmq_outbox_result nmq_outbox_drop(nmq_outbox *ob, int64_t seq, nmq_outbox_drop_reason reason);

/* An acknowledgement arrived. *outcome (may be NULL) tells what it did. NMQ_OUTBOX_NOT_OURS when
 * no row of this outbox is bound to packet_id. */
nmq_outbox_result nmq_outbox_ack(nmq_outbox *ob, uint16_t packet_id, nmq_outbox_ack_type type,
                                 uint8_t reason_code, nmq_outbox_ack_outcome *outcome);

/* PACKET IDS: the outbox chooses the packet ids of its rows (nmq_outbox_nng_lease_bind) and
 * is their one map. *bound (not NULL) gets 1 when `packet_id` is bound to a row of this outbox
 * in flight: the host gives it to none of its own sends then (and routes its acks to the
 * outbox: nmq_outbox_nng_ack). `ob` is borrowed. Thread-safe. */
nmq_outbox_result nmq_outbox_packet_id_bound(nmq_outbox *ob, uint16_t packet_id, int *bound);

/* `n` messages this outbox refused (ENOSPC, EIO, ECLOSED, ETOOBIG: the host kept them) were
 * then lost on the host's own path for `reason`: added (saturating) to stats.lost_fallback_queue
 * or stats.lost_fallback_send, shown in nmq_outbox_stats_json() ("dropped": "fallback_queue",
 * "fallback_send") and nmq_outbox_stats_prometheus() (reason="fallback_queue" /
 * "fallback_send"). Works after nmq_outbox_close() too. EINVAL for an unknown reason.
 * `ob` is borrowed. Thread-safe. */
nmq_outbox_result nmq_outbox_count_lost(nmq_outbox *ob, nmq_outbox_lost_reason reason,
                                        uint64_t n);

/* Counts `n` host events `what` (saturating) and writes the new total to *total (may be NULL):
 * stats.dropped_qos0 (JSON "dropped_qos0", Prometheus nanomq_bridge_outbox_dropped_total
 * {reason="qos0"}) or stats.fallbacks (JSON "fallbacks", Prometheus
 * nanomq_bridge_outbox_fallbacks_total); n = 0 reads the total. Works after nmq_outbox_close()
 * too. EINVAL for an unknown event. `ob` is borrowed. Thread-safe. */
nmq_outbox_result nmq_outbox_count_event(nmq_outbox *ob, nmq_outbox_event what, uint64_t n,
                                         uint64_t *total);

/* Writes the counters of this bridge to *out. Also after nmq_outbox_close() (the last values). */
nmq_outbox_result nmq_outbox_get_stats(nmq_outbox *ob, nmq_outbox_stats *out);

/* Takes over the rows stock NanoMQ left for bridge `config_name` in its own cache file `path`
 * (NanoNNG's mqtt_client.db): appended in order (sent-but-unacknowledged first), committed,
 * then deleted there; rows that are not a PUBLISH are counted in dropped_malformed and deleted.
 * Other bridges' rows are not touched. A missing file or bridge imports nothing (OK).
 * *imported (may be NULL) gets the count. A crash between the commit and the delete imports
 * those rows again at the next call (duplicates, never a loss). */
nmq_outbox_result nmq_outbox_import_stock(nmq_outbox *ob, const char *path,
                                          const char *config_name, uint64_t *imported);

/* This bridge's counters as one JSON object (for NanoMQ's REST API), e.g.
 * {"bridge":"emqx1","file":"/var/lib/nanomq/nmq_outbox-emqx1.db","link_up":true,"messages":812,
 *  "bytes":81200,"inflight":32,"oldest_age_ms":95500,"enqueued":1170,"acked":358,"resent":3,
 *  "dropped":{"full":0,"expired":0,"rejected":0,"malformed":0,"unwritten":0,
 *             "fallback_queue":0,"fallback_send":0,"dead_letters":0},
 *  "refused_nospace":0,"space_low":false,"window":32,"committed_seq":1170,
 *  "qos_downgraded":0,"retain_cleared":0,"dead_letters":0,"dead_lettered":0,"backoffs":0,
 *  "backing_off":false,"probing":false,"acks_ignored":0}
 * ("dropped"."dead_letters": the oldest dead letters deleted beyond the limit; the top-level
 * "dead_letters": the dead letters kept now)
 * written NUL-terminated into buf (cap bytes, caller-owned). *len (not NULL) gets the bytes
 * needed, NUL included; when cap is smaller nothing is written and ETOOBIG is returned. */
nmq_outbox_result nmq_outbox_stats_json(nmq_outbox *ob, char *buf, size_t cap, size_t *len);

/* The counters of the n handles in obs (a caller-owned array, no NULL entry) in Prometheus'
 * text format: families nanomq_bridge_outbox_{messages,bytes,inflight,oldest_age_seconds,
 * link_up,dead_letters,backing_off,probing} (gauges),
 * _{enqueued,acked,resent,qos_downgraded,retain_cleared,dead_lettered,backoffs,acks_ignored,
 * fallbacks}_total and _dropped_total{reason=...} (counters; reasons full, expired, rejected,
 * malformed, unwritten, fallback_queue, fallback_send, dead_letters, refused_nospace, qos0),
 * each sample labelled bridge="<name>". Buffer rule as nmq_outbox_stats_json(). */

/* As nmq_outbox_stats_prometheus() for every handle of this process not yet freed (open or
 * closed), in the order they were opened: the host keeps no list. No handle: OK and "". */
nmq_outbox_result nmq_outbox_stats_prometheus_all(char *buf, size_t cap, size_t *len);

/* Commits and closes every handle of this process that is open (nmq_outbox_close() on each),
 * and logs each one's counters at INFO on its own log callback ("outbox at exit: {...}", the
 * JSON of nmq_outbox_stats_json()). For the host's exit: may be given to atexit(), called from
 * a thread that handles exit signals (not from a signal handler: it takes locks), and called
 * again (a handle closed before is neither closed nor logged again). Handles stay allocated and owned by
 * their callers. Thread-safe. */
void nmq_outbox_close_all(void);

/* For the host's exit (signal thread, atexit()), instead of nmq_outbox_close_all(): commits
 * every open handle and, from then on, has each append (and requeue) commit before it returns,
 * so that a message the host accepts while it exits is on disk when the host has it accepted;
 * the handles stay open (the writer and the replay go on until the process ends; SQLite's WAL
 * keeps what was committed). Logs each one's counters at INFO on its own log callback ("outbox
 * at exit: {...}") at every call: a second call gives the last counters. Not from a signal
 * handler (it takes locks). Handles stay owned by their callers. Thread-safe. */
void nmq_outbox_exit_all(void);
nmq_outbox_result nmq_outbox_stats_prometheus(nmq_outbox *const *obs, size_t n, char *buf,
                                              size_t cap, size_t *len);

/* ACK AFTER COMMIT (issue 13): a host that acknowledges its own publishers only once their
 * message is on disk appends it (nmq_outbox_append, or nmq_outbox_nng_append), keeps the seq it
 * got, and acknowledges when nmq_outbox_committed_seq() reaches that seq. A refused append
 * (error result) is reported at once; nmq_outbox_mqtt_reason() maps it to the reason code for
 * the publisher's PUBACK/PUBREC. The library never calls the host for this: the host polls the
 * commit descriptor (or the committed seq on its own timer). Appends are numbered in the order
 * they were accepted, so one commit releases every message in it. Such a host opens the
 * outbox with group_commit_ms = 0 and caller_commits = 1, and after its appends (outside its
 * own locks) calls nmq_outbox_commit(): NMQ_OUTBOX_OK means they are committed and can be
 * acked at once; otherwise the descriptor tells when. ACK GATE below does all of this for the
 * host (and keeps each client's order): a host using it needs none of the calls here.
 *
 * *fd gets a descriptor (an eventfd on Linux, the read end of a non-blocking pipe elsewhere)
 * that becomes readable after each commit that advanced the committed seq, and stays readable
 * until nmq_outbox_committed_seq() drains it. The library owns it: never read, write or close
 * it; it stays open until nmq_outbox_free() (after nmq_outbox_close() it is never signalled
 * again). It is made on the first call; every call gives the same descriptor. One consumer per
 * handle: a second thread draining it can take the wake-up of the first (each must then read
 * the committed seq anyway, which is always safe). Thread-safe. */
nmq_outbox_result nmq_outbox_commit_fd(nmq_outbox *ob, int *fd);

/* Commits the pending appends (and PUBRECs) on the calling thread; acks and packet ids stay
 * for the writer's commit (within max(group_commit_ms, 20 ms)). Behind a commit that is
 * running (another thread's nmq_outbox_commit(), the writer's acks) it waits for that one,
 * then commits what came meanwhile or finds its appends committed by it: a group commit with
 * no hand-over between threads. Never behind the writer's WAL checkpoint (an fsync): then the
 * writer is woken to commit the rest right after it and the call returns NMQ_OUTBOX_PENDING
 * (the commit descriptor tells when). NMQ_OUTBOX_OK: every append made before the call is
 * committed (nmq_outbox_committed_seq() covers it); an error: the commit failed, the writes
 * stay pending (nothing is lost) and the writer retries them. For a host with
 * config.caller_commits = 1; any host may call it. Blocks for about two commits (no fsync with
 * NMQ_OUTBOX_SYNC_NORMAL). Thread-safe. */
nmq_outbox_result nmq_outbox_commit(nmq_outbox *ob);

/* Drains the commit descriptor (if one was made), then *seq gets the committed seq: every
 * append with seq <= *seq is on disk, or is gone for good and counted before a commit wrote it
 * (delivered to the remote, dropped by drop_oldest or expiry, refused by SQLite at commit:
 * dropped_malformed). Rows put back with nmq_outbox_requeue_front() are not appends and are
 * not covered. Also after nmq_outbox_close() (the last value). Thread-safe; never blocks on a
 * commit (it takes only the state lock). */
nmq_outbox_result nmq_outbox_committed_seq(nmq_outbox *ob, int64_t *seq);

/* The MQTT 5 PUBACK/PUBREC reason code for the result of an append: 0x00 for OK (and any
 * result >= 0), 0x97 "quota exceeded" for EFULL, ENOSPC and ETOOBIG, 0x80 "unspecified error"
 * for every other error. Thread-safe. */
uint8_t nmq_outbox_mqtt_reason(nmq_outbox_result result);

/* A duration of a configuration file, the way NanoMQ writes them, as milliseconds: optional
 * spaces or tabs, one or more ASCII digits, optional spaces or tabs, an optional unit "ms",
 * "s", "m", "h" or "d" (lower case; none = ms), optional spaces or tabs. No sign, no fraction.
 * Examples: "500" and "500ms" = 500, "5s" = 5000, "2m" = 120000, "1h" = 3600000. The number and
 * the unit are multiplied without overflow (a value beyond 64 bits is refused, never wrapped)
 * before the result is compared with max_ms (inclusive).
 * On OK *out_ms gets the value. EINVAL when text or out_ms is NULL (logged), and when text is
 * not such a duration or is above max_ms: then nothing is logged (the caller names the key in
 * its own error line) and *out_ms is left untouched. Independent of any handle. `text` and
 * `out_ms` are borrowed. Thread-safe. */
nmq_outbox_result nmq_outbox_parse_duration_ms(const char *text, uint64_t max_ms,
                                               uint64_t *out_ms);

/* The connect timeout of a bridge's dialer in ms, for NNG_OPT_MQTT_CONNECT_TIMEOUT: from the
 * configured value (bridges.mqtt.<name>.connect_timeout, in ms) and the bridge's keepalive in
 * seconds. configured_ms < 0 (the key absent): 1.5 x keepalive, at least 5000 and at most
 * 30000; 0: none (the kernel's SYN retries, as stock); > 0: taken as it is, capped at
 * INT32_MAX (nng_duration). Never negative. Pure: no handle, no log. Thread-safe. */
int32_t nmq_outbox_connect_timeout_ms(int64_t configured_ms, uint32_t keepalive_s);

/* The wait in ms before a bridge dials again after `failures` dials in a row that failed at
 * once (0 for the first failure): 100 ms, doubled per failure, capped at max_ms (the bridge's
 * backoff_max in ms; 0: 5000). Never 0. For a hybrid bridge, whose switch thread otherwise goes
 * round its addresses without a pause during an outage. Pure: no handle, no log. Thread-safe. */
uint32_t nmq_outbox_retry_backoff_ms(uint32_t failures, uint32_t max_ms);

/* ACK ORDER (issue 13): MQTT (3.1.1 and 5, section 4.6) wants a client's PUBACKs/PUBRECs in
 * the order of its PUBLISHes, but deferred acks become ready in any order (two outboxes commit
 * independently, a message no bridge forwards is ready at once, worker threads finish one
 * client's messages out of order). One nmq_outbox_ack_order per client connection keeps them
 * in order: push each deferred QoS 1/2 PUBLISH where the connection receives it (wire order),
 * mark it ready when its ack may go, then send every ack pop gives (the ready ones at the
 * front, oldest first; a ready ack behind one that waits stays queued).
 * Not thread-safe: the caller serialises all calls on one queue (e.g. the connection's lock).
 * Independent of any nmq_outbox handle. */
typedef struct nmq_outbox_ack_order nmq_outbox_ack_order;

typedef struct nmq_outbox_pub_ack {
    uint16_t packet_id;
    uint8_t qos;    /* 1: PUBACK, 2: PUBREC */
    uint8_t reason; /* MQTT 5 reason code, 0 = success */
} nmq_outbox_pub_ack;

/* A new, empty queue, owned by the caller (free it with nmq_outbox_ack_order_free), or NULL
 * when memory could not be had. */
nmq_outbox_ack_order *nmq_outbox_ack_order_new(void);

/* Frees q and the acks still in it (they are never sent). NULL is a no-op. */
void nmq_outbox_ack_order_free(nmq_outbox_ack_order *q);

/* A QoS 1/2 PUBLISH with this packet id arrived; its ack waits for
 * nmq_outbox_ack_order_ready(). EINVAL for NULL or a QoS other than 1/2; EFULL when 65535 are
 * pending (nothing queued: the caller acks it itself). */
nmq_outbox_result nmq_outbox_ack_order_push(nmq_outbox_ack_order *q, uint16_t packet_id,
                                            uint8_t qos);

/* The ack of packet_id may go, with reason: marks the oldest pending, not yet ready entry of
 * that packet id. NOT_OURS when there is none (the caller may send that ack itself). EINVAL
 * for NULL. */
nmq_outbox_result nmq_outbox_ack_order_ready(nmq_outbox_ack_order *q, uint16_t packet_id,
                                             uint8_t reason);

/* OK: *out (caller-owned) gets the oldest ack, which was ready and leaves the queue; EMPTY:
 * the queue is empty or its oldest ack is not ready. EINVAL for NULL. */
nmq_outbox_result nmq_outbox_ack_order_pop(nmq_outbox_ack_order *q, nmq_outbox_pub_ack *out);

/* ACK GATE (issue 13, issue 21): the whole ack-after-commit decision for a host that
 * acknowledges its local publishers' QoS 1/2 PUBLISHes only once every outbox that took the
 * message has committed it, in each client's PUBLISH order (MQTT 4.6). The host keeps one gate
 * (made once, shared by all threads) and calls, per QoS 1/2 PUBLISH of a local client:
 *   nmq_outbox_gate_owe()   where the connection receives it (the wire's order);
 *   nmq_outbox_gate_begin() when it handles it, then nmq_outbox_gate_took() for every outbox
 *                           that appended it (or nmq_outbox_nng_gate_append(), which appends
 *                           and notes it), nmq_outbox_gate_refused() for one that refused it;
 *   nmq_outbox_gate_end()   when it is done with it (outside its own locks): the ack goes
 *                           now, or once the outboxes' commits reach its seqs.
 * Outboxes that take part are opened with group_commit_ms = 0 (the writer commits at once,
 * batching what arrives while it commits) and registered with nmq_outbox_gate_watch(): their
 * commits release the acks waiting on them, on the committing thread (the writer's, mostly).
 * With caller_commits = 1 nmq_outbox_gate_end() commits them itself on its thread
 * (nmq_outbox_commit) instead: no hand-over to the writer, but a commit per caller (more CPU
 * per message under load). No thread and no descriptor of the host's is needed.
 *
 * Acks are sent by the host's callback `send`, given acks[0..n) (n >= 1) to send in that order:
 * each a PUBACK (qos 1) or PUBREC (qos 2) for packet_id to the client `pipe`, with the MQTT 5
 * reason code `reason` (0: success); the array is borrowed for the call. Acks that follow each
 * other for one client may go in one socket write. It runs on the gate's own thread
 * (nmq-outbox-acks, started by nmq_outbox_gate_new) for what an outbox's writer thread
 * committed, so that the writer goes on committing while they go out; otherwise on the thread
 * that released them: nmq_outbox_gate_end() / nmq_outbox_gate_ack_now(), or a commit on a host
 * thread inside nmq_outbox_commit(), nmq_outbox_flush(), nmq_outbox_close(),
 * nmq_outbox_free(), or an append that commits itself because the writer fell far behind or a
 * commit failed: then under whatever lock the host holds around its append, so the callback
 * must not take a lock the host holds there. Never with a lock of the library held, and one
 * call at a time per gate (one thread sends what is ready, in order, while the others only
 * queue it: each ack is passed exactly once). It may call any function of the library but
 * nmq_outbox_gate_free(); it must not block for long (other acks wait behind it). A panic-free
 * Rust or C function with `ctx` usable from any thread.
 *
 * Rules: an ack is never sent before every outbox that took the message committed it; a
 * refusal answers an MQTT 5 publisher with nmq_outbox_mqtt_reason() of it (the message is not
 * forwarded), while an MQTT 3.1.1 publisher cannot be told: the host then takes its own path
 * (its ack goes as without the gate); a failed commit keeps the ack waiting (the writer
 * retries; the commit that succeeds releases it); an outbox closed without having committed
 * the seq (its final commit failed: counted in stats.dropped_unwritten) answers an MQTT 5
 * publisher with 0x80 and sends an MQTT 3.1.1 publisher nothing (it resends after a
 * reconnect), and the acks behind it in that client's order go on; a client gone
 * (nmq_outbox_gate_pipe_gone) forgets what it was owed. */
typedef struct nmq_outbox_gate nmq_outbox_gate;
typedef struct nmq_outbox_gate_ack nmq_outbox_gate_ack;
/* One ack for the host to send. */
typedef struct nmq_outbox_gate_reply {
    uint32_t pipe;      /* the client */
    uint16_t packet_id;
    uint8_t  qos;       /* 1: PUBACK, 2: PUBREC */
    uint8_t  reason;    /* MQTT 5 reason code, 0: success */
} nmq_outbox_gate_reply;
typedef void (*nmq_outbox_gate_send_fn)(void *ctx, const nmq_outbox_gate_reply *acks,
                                        size_t n);

/* A new gate whose acks go to send(ctx, acks, n) (see above), with its thread; *out gets it,
 * owned by the caller (nmq_outbox_gate_free), or NULL on error (EINVAL for a NULL send or out,
 * EIO when the thread cannot be started). `ctx` is kept until the gate is freed. Thread-safe. */
nmq_outbox_result nmq_outbox_gate_new(nmq_outbox_gate_send_fn send, void *ctx,
                                      nmq_outbox_gate **out);

/* Frees the gate (taken); acks still waiting are never sent. Stops the gate's thread and waits
 * for a callback it is running: once it returns, `send` is never called again. Outboxes it
 * watches stay usable (their commits then release nothing). NULL is a no-op. Must be the last
 * call on g, and no nmq_outbox_gate_ack of it may be live. */
void nmq_outbox_gate_free(nmq_outbox_gate *g);

/* ob's commits release g's acks (both borrowed). Idempotent; EBUSY when another gate watches
 * ob, ECLOSED after its close. Thread-safe. */
nmq_outbox_result nmq_outbox_gate_watch(nmq_outbox_gate *g, nmq_outbox *ob);

/* A QoS 1/2 PUBLISH packet_id of client `pipe` arrived: its ack is owed, in this order. Call
 * it where the connection receives (the wire's order); it may run under the host's
 * connection lock (it never calls the host). EINVAL for a NULL g or a QoS other than 1/2;
 * EFULL when the client already has 65535 owed (nothing noted: its ack goes when ready,
 * unordered). Thread-safe. */
nmq_outbox_result nmq_outbox_gate_owe(nmq_outbox_gate *g, uint32_t pipe, uint16_t packet_id,
                                      uint8_t qos);

/* Client `pipe` is gone: what it was owed is forgotten. NULL g is a no-op. May run under the
 * host's connection lock. Thread-safe. */
void nmq_outbox_gate_pipe_gone(nmq_outbox_gate *g, uint32_t pipe);

/* The ack of a PUBLISH that was owed (nmq_outbox_gate_owe) may go now, with reason, in its
 * client's order (for one the host will not hand to nmq_outbox_gate_begin). Sends with the
 * callback: call it with no lock of the host's that the callback takes. EINVAL for a NULL g
 * or a QoS other than 1/2. Thread-safe. */
nmq_outbox_result nmq_outbox_gate_ack_now(nmq_outbox_gate *g, uint32_t pipe,
                                          uint16_t packet_id, uint8_t qos, uint8_t reason);

/* The host handles the PUBLISH: the ack it is owed, owned by the caller until
 * nmq_outbox_gate_end() (which takes it). mqtt5: the publisher speaks MQTT 5 (a refusal is
 * answered with a reason code). NULL for a NULL g or a QoS other than 1/2 (then ack as without
 * the gate). Thread-safe; the ack itself is used by one thread at a time. */
nmq_outbox_gate_ack *nmq_outbox_gate_begin(nmq_outbox_gate *g, uint32_t pipe,
                                           uint16_t packet_id, uint8_t qos, int mqtt5);

/* ob (borrowed) appended the message as seq (nmq_outbox_append / nmq_outbox_nng_append): the
 * ack waits until ob committed it. EINVAL for NULL. */
nmq_outbox_result nmq_outbox_gate_took(nmq_outbox_gate_ack *a, nmq_outbox *ob, int64_t seq);

/* An outbox refused the message with `why` (an error result of its append). OK: the publisher
 * (MQTT 5) is answered with nmq_outbox_mqtt_reason(why) and the message is not to be forwarded
 * (the host frees it); `why` back: the publisher (MQTT 3.1.1) cannot be told, the host takes its
 * own path with the message. EINVAL for NULL or a `why` that is not an error. */
nmq_outbox_result nmq_outbox_gate_refused(nmq_outbox_gate_ack *a, nmq_outbox_result why);

/* The host is done with the PUBLISH (takes a; NULL is a no-op): the outboxes that took it and
 * have caller_commits = 1 are committed on this thread (nmq_outbox_commit: call it outside the
 * host's own locks), then its ack goes now (no outbox took it, one refused it, all committed
 * it) or when their commits reach its seqs. May call the callback (see above). */
void nmq_outbox_gate_end(nmq_outbox_gate_ack *a);

/* A static, human-readable string for any result code (unknown codes included). */
const char *nmq_outbox_strerror(nmq_outbox_result result);

/* The library version, e.g. "0.1.0". */
const char *nmq_outbox_version(void);

#ifdef __cplusplus
}
#endif

#endif /* NMQ_OUTBOX_H */
