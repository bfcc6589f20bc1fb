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

/// What the host did with a message around the outbox, counted by `Outbox::count_event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostEvent {
    /// A QoS 0 message that could not go now (no link, no free lane) was dropped: QoS 0 is
    /// not stored (`store_qos0` off). Counted in `dropped_qos0`.
    Qos0Dropped,
    /// A message this outbox refused (disk full, too big, closed) was sent on the host's own
    /// path instead. Counted in `fallbacks`.
    Fallback,
}

/// Counters and gauges of one bridge: declared once, in `src/counters.rs`.
pub use crate::counters::Stats;
