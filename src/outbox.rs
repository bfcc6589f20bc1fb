//! The outbox logic: routing of new messages, the replay window, packet ids, acks, limits,
//! expiry and counters. Pure Rust; storage is in `store`, the C ABI in `ffi`.
//!
//! Thread safety: [`Outbox`] is `Send + Sync`; every method may be called from any thread.
//! No method calls back into the caller except the log sink of the config.

use crate::config::Config;
use crate::error::Result;

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
    /// Reason code >= 0x80: deleted, counted in `dropped_rejected`, not retried.
    Rejected,
    /// The packet id is not bound to a row of this outbox (a direct send, or stale).
    NotOurs,
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
    /// Rows deleted on ack since open.
    pub acked: u64,
    /// Rows handed out again (after a link loss, an unlease, or a restart).
    pub resent: u64,
    pub dropped_full: u64,
    pub dropped_expired: u64,
    pub dropped_rejected: u64,
    /// Milliseconds since the oldest held row was accepted (0 when empty).
    pub oldest_age_ms: u64,
    /// Every row appended with a seq <= this is committed to disk.
    pub committed_seq: i64,
    pub link_up: bool,
    /// Effective window (config window capped by Receive Maximum).
    pub window: u32,
}

/// One bridge's durable outbox.
pub struct Outbox {
    _cfg: Config,
}

impl Outbox {
    /// Opens (or creates) the database and resumes every committed row of this bridge in order;
    /// rows in flight at the last close or crash become queued again. A corrupt file is renamed
    /// aside (`<path>.corrupt-<unix secs>`) and a fresh store is opened, with an error logged.
    pub fn open(cfg: Config) -> Result<Outbox> {
        let _ = cfg;
        todo!()
    }
    /// Commits everything pending and stops the writer thread. Idempotent; afterwards every
    /// other call returns `Error::Closed`.
    pub fn close(&self) -> Result<()> {
        todo!()
    }
    /// Commits every pending write now.
    pub fn flush(&self) -> Result<()> {
        todo!()
    }
    /// The link is up (after a successful CONNACK). `receive_maximum` 0 = not announced.
    pub fn link_up(&self, receive_maximum: u16) -> Result<()> {
        let _ = receive_maximum;
        todo!()
    }
    /// The link is down: every row in flight returns to the head of the queue in order.
    pub fn link_down(&self) -> Result<()> {
        todo!()
    }
    /// Send now only when the link is up, nothing is held and the window has room.
    pub fn decide(&self, qos: u8) -> Result<Decision> {
        let _ = qos;
        todo!()
    }
    /// Appends at the tail. Returns the row's seq. Durable after the next group commit.
    pub fn append(&self, msg: &NewMessage<'_>) -> Result<i64> {
        let _ = msg;
        todo!()
    }
    /// Puts a message that was sent directly and lost its link back at the head, before every
    /// held row. For several such messages call it newest first. Returns its seq.
    pub fn requeue_front(&self, msg: &NewMessage<'_>) -> Result<i64> {
        let _ = msg;
        todo!()
    }
    /// The next row in FIFO order, if the link is up and the window has room.
    pub fn lease(&self) -> Result<Option<Leased>> {
        todo!()
    }
    /// Binds the packet id the row was sent with.
    pub fn bind(&self, seq: i64, packet_id: u16) -> Result<()> {
        let _ = (seq, packet_id);
        todo!()
    }
    /// The send of a leased row failed locally: it goes back to the queue at its place.
    pub fn unlease(&self, seq: i64) -> Result<()> {
        let _ = seq;
        todo!()
    }
    /// An acknowledgement from the remote.
    pub fn ack(&self, packet_id: u16, kind: AckKind, reason: u8) -> Result<AckOutcome> {
        let _ = (packet_id, kind, reason);
        todo!()
    }
    pub fn stats(&self) -> Result<Stats> {
        todo!()
    }
}
