//! What the outbox's API speaks in: a decision, a message in, a row out, acks, losses, the
//! counters.

/// Where a new message should go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Link up, nothing held, window has room: send it directly.
    SendNow,
    /// Append it to the outbox; it will be replayed in order.
    Store,
}

/// A message handed to the outbox. The bytes are copied.
#[derive(Debug, Clone, Copy)]
pub struct NewMessage<'a> {
    /// 0, 1 or 2.
    pub qos: u8,
    /// MQTT 5 Message Expiry Interval in seconds, 0 = never expires.
    pub expiry_secs: u32,
    /// Opaque bytes, usually the encoded MQTT PUBLISH.
    pub data: &'a [u8],
}

/// A row handed out for (re)sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leased {
    /// The row's position in the bridge's FIFO.
    pub seq: i64,
    pub qos: u8,
    /// The packet id this row was last sent with (0 = never sent). Reuse it with DUP set when the
    /// remote session persists (needed for QoS 2 exactly-once).
    pub packet_id: u16,
    /// True when the row was handed out before (set DUP when reusing `packet_id`).
    pub dup: bool,
    /// QoS 2 only: the remote already answered PUBREC for `packet_id`. Resume the exchange
    /// with PUBREL on that id; sending the PUBLISH again could deliver it twice (MQTT 5, 4.4).
    pub released: bool,
    /// Remaining Message Expiry Interval in seconds (0 = no expiry).
    pub expiry_secs: u32,
    pub data: Vec<u8>,
}

/// The acknowledgement packet types, with their MQTT packet type numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckKind {
    PubAck = 4,
    PubRec = 5,
    PubComp = 7,
}

/// What an ack did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// The row is acknowledged and deleted (PUBACK for QoS 1, PUBCOMP for QoS 2).
    Done,
    /// PUBREC for a QoS 2 row: the row stays until PUBCOMP.
    Progress,
    /// PUBACK or PUBREC with a reason code >= 0x80 (but 0x97): the row is a dead letter (kept
    /// in the file, not replayed), counted in `dropped_rejected` and `dead_lettered`. (A
    /// PUBCOMP always completes the row.)
    Rejected,
    /// PUBACK or PUBREC 0x97 (quota exceeded): the row is queued again at its place, to be
    /// sent as a new PUBLISH once the back-off passed. The packet id is free.
    Retry,
    /// The packet id is not bound to a row of this outbox (a direct send, or stale).
    NotOurs,
}

/// Where the host lost a message this outbox had refused (see `Outbox::count_lost`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostReason {
    /// The host's fallback queue was full and dropped it (NanoMQ's `ctx_msgs`).
    QueueFull,
    /// The host's fallback send failed and the message was freed.
    SendFailed,
}

/// Counters and gauges of one bridge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Rows held (queued or in flight) and their data bytes.
    pub messages: u64,
    pub bytes: u64,
    /// Rows handed out and not yet acknowledged.
    pub inflight: u64,
    /// Rows accepted since open.
    pub enqueued: u64,
    /// Rows deleted on ack since open (PUBACK, PUBCOMP; for QoS 0: written to the link).
    pub acked: u64,
    /// Rows handed out again (after a link loss, an unlease, or a restart).
    pub resent: u64,
    pub dropped_full: u64,
    pub dropped_expired: u64,
    pub dropped_rejected: u64,
    /// Rows that cannot be stored or sent as they are: dropped by the host (`drop_row`, e.g. a
    /// row that does not split into a PUBLISH) or refused by SQLite at commit (key collision).
    pub dropped_malformed: u64,
    /// Accepted rows that never reached the disk: the final commit at close failed (disk
    /// full, file lost). Also logged.
    pub dropped_unwritten: u64,
    /// Appends refused with `NoSpace` (the caller kept the message).
    pub refused_nospace: u64,
    /// Messages this outbox refused that the host then lost on its own path (`count_lost`):
    /// its fallback queue was full (NanoMQ's `ctx_msgs` drops its oldest)...
    pub lost_fallback_queue: u64,
    /// ...or its fallback send failed (no link and nowhere to keep it, timeout, socket closed).
    pub lost_fallback_send: u64,
    /// Milliseconds since the oldest held row was accepted (0 when empty).
    pub oldest_age_ms: u64,
    /// Every row appended with a seq <= this is committed to disk.
    pub committed_seq: i64,
    pub link_up: bool,
    /// Effective window (config window capped by Receive Maximum).
    pub window: u32,
    /// The disk was found full and the reserve is spent: appends are refused with `NoSpace`
    /// (the space left is for the drain's acks) until the reserve can be put back.
    pub space_low: bool,
    /// Rows handed out at a lower QoS than stored (the remote's Maximum QoS).
    pub qos_downgraded: u64,
    /// Rows sent with RETAIN cleared: the remote has no retained messages (Retain Available 0).
    pub retain_cleared: u64,
    /// Dead letters kept in the file now (rows the remote refused for good: not replayed).
    pub dead_letters: u64,
    /// Rows made dead letters since open.
    pub dead_lettered: u64,
    /// The oldest dead letters deleted beyond `dead_letter_limit` (each logged with its reason).
    pub dropped_dead_letters: u64,
    /// Transient refusals (PUBACK/PUBREC 0x97, a DISCONNECT for quota or load) that made the
    /// replay back off.
    pub backoffs: u64,
    /// The replay waits for a back-off to pass (`lease` gives nothing until then).
    pub backing_off: bool,
    /// The replay sends one row at a time, to find a row the remote refuses by closing the
    /// connection (until a row is acknowledged).
    pub probing: bool,
    /// Acks given to the outbox that matched no row of it in flight (NOT_OURS: an unknown
    /// packet id, a second ack, an ack of the wrong type; with hosts that pass the acks of
    /// their direct sends too, those as well).
    pub acks_ignored: u64,
}
