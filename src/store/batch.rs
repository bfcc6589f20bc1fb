//! What the store writes and reads: a row, and a batch of pending writes (inserts, binds,
//! releases, deletes, dead letters) committed together.

use super::*;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub seq: i64,
    pub qos: u8,
    /// Unix ms after which the row must not be sent; 0 = never.
    pub expires_at: i64,
    /// Unix ms when the row was accepted.
    pub enqueued_at: i64,
    /// Packet id of the last send, 0 = never sent.
    pub packet_id: u16,
    /// QoS 2: the remote answered PUBREC; the exchange resumes with PUBREL, not a PUBLISH.
    pub released: bool,
    /// Times the remote closed the connection while this row was alone in flight.
    pub attempts: u32,
    pub data: Vec<u8>,
}

impl Row {
    /// This row's metadata with other data (a copy made fallibly by the caller).
    pub fn with_data(&self, data: Vec<u8>) -> Row {
        Row {
            seq: self.seq,
            qos: self.qos,
            expires_at: self.expires_at,
            enqueued_at: self.enqueued_at,
            packet_id: self.packet_id,
            released: self.released,
            attempts: self.attempts,
            data,
        }
    }
}

/// Writes collected for one group commit.
#[derive(Debug, Default)]
pub struct Batch {
    pub inserts: Vec<Row>,
    /// Rows acknowledged, rejected or expired.
    pub deletes: Vec<i64>,
    /// (seq, packet id) of rows sent.
    pub binds: Vec<(i64, u16)>,
    /// QoS 2 rows whose PUBREC came.
    pub releases: Vec<i64>,
    /// The remote has no session for us (CONNACK Session Present 0): every row of the bridge
    /// is to be sent again as a new PUBLISH (packet id 0, not released). Applied before every
    /// other write of the batch (inserts, binds, releases), which belong to the new session.
    pub reset_all: bool,
    /// (seq, attempts) of rows the remote closed the connection on.
    pub attempts: Vec<(i64, u32)>,
    /// Rows that become dead letters.
    pub buries: Vec<crate::dead::Burial>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.inserts.len()
            + self.deletes.len()
            + self.binds.len()
            + self.releases.len()
            + self.reset_all as usize
            + self.attempts.len()
            + self.buries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Writes a crash could lose (appends, QoS 2 PUBRECs): what `group_commit_count` counts.
    pub fn messages(&self) -> usize {
        self.inserts.len() + self.releases.len()
    }
    /// Writes a crash only makes resend (acks, packet ids of the replay, a session reset, the
    /// attempts and dead letters of refused rows: such a row is sent, and refused, again).
    pub fn acks(&self) -> usize {
        self.deletes.len()
            + self.binds.len()
            + self.reset_all as usize
            + self.attempts.len()
            + self.buries.len()
    }
    /// Forgets the remote session of every row: the packet ids and PUBRECs of this batch
    /// (older than the reset) go, and the reset is applied to the rows on disk.
    pub fn reset_session(&mut self) {
        self.binds.clear();
        self.releases.clear();
        for r in &mut self.inserts {
            r.packet_id = 0;
            r.released = false;
        }
        self.reset_all = true;
    }
    /// Puts `self` (older) before `newer`, keeping each list in order.
    pub fn prepend_to(mut self, newer: &mut Batch) {
        if newer.reset_all {
            // the reset came after every write of `self`
            self.reset_session();
        }
        self.reset_all |= newer.reset_all;
        self.inserts.append(&mut newer.inserts);
        self.deletes.append(&mut newer.deletes);
        self.binds.append(&mut newer.binds);
        self.releases.append(&mut newer.releases);
        self.attempts.append(&mut newer.attempts);
        self.buries.append(&mut newer.buries);
        *newer = self;
    }
}
