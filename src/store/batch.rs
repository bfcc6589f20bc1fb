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

/// The SELECT of one bridge's rows (`?1` bridge id) with seq >= `?2`, at most `?3` (negative:
/// all), in FIFO order, in the column order [`StoredRow::from_sql`] reads. The one read of a
/// row, shared by the store and the `nmq-outbox` tool.
pub const SELECT_ROWS: &str = concat!(
    "SELECT seq, qos, expires_at, enqueued_at, packet_id, released, attempts, data ",
    "FROM msg WHERE bridge_id = ?1 AND seq >= ?2 ORDER BY seq LIMIT ?3"
);
/// [`SELECT_ROWS`] for a file of schema 1 (before `msg.attempts`: every row has 0), which the
/// tool reads without migrating it.
pub const SELECT_ROWS_SCHEMA1: &str = concat!(
    "SELECT seq, qos, expires_at, enqueued_at, packet_id, released, 0, data ",
    "FROM msg WHERE bridge_id = ?1 AND seq >= ?2 ORDER BY seq LIMIT ?3"
);
/// The column of `data` in [`SELECT_ROWS`].
pub const DATA_COLUMN: usize = 7;
/// The INSERT of one row ([`insert_row`]).
pub const INSERT_ROW: &str = concat!(
    "INSERT INTO msg(bridge_id, seq, qos, expires_at, enqueued_at, packet_id, released, ",
    "data, attempts) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
);

/// Writes `row` of bridge `bridge_id` with `stmt`, a statement prepared from [`INSERT_ROW`].
pub fn insert_row(
    stmt: &mut rusqlite::Statement<'_>,
    bridge_id: i64,
    row: &Row,
) -> rusqlite::Result<usize> {
    stmt.execute(rusqlite::params![
        bridge_id,
        row.seq,
        row.qos,
        row.expires_at,
        row.enqueued_at,
        row.packet_id,
        row.released,
        row.data,
        row.attempts
    ])
}

/// One row as the file holds it, its integers unchecked (a damaged or hand-edited file may
/// hold any value; `nmq-outbox check` reports them). [`StoredRow::into_row`] checks them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRow {
    pub seq: i64,
    pub qos: i64,
    pub expires_at: i64,
    pub enqueued_at: i64,
    pub packet_id: i64,
    pub released: i64,
    pub attempts: i64,
    pub data: Vec<u8>,
}

impl StoredRow {
    /// The row of a result of [`SELECT_ROWS`]; `data` is the blob of column [`DATA_COLUMN`],
    /// copied by the caller (who decides how: fallibly, or not at all beyond a limit).
    pub fn from_sql(r: &rusqlite::Row<'_>, data: Vec<u8>) -> rusqlite::Result<StoredRow> {
        Ok(StoredRow {
            seq: r.get(0)?,
            qos: r.get(1)?,
            expires_at: r.get(2)?,
            enqueued_at: r.get(3)?,
            packet_id: r.get(4)?,
            released: r.get(5)?,
            attempts: r.get(6)?,
            data,
        })
    }

    /// The row, its integers converted as SQLite's own conversion does (a value out of range
    /// of the field is [`rusqlite::Error::IntegralValueOutOfRange`]; released is "not 0").
    pub fn into_row(self) -> rusqlite::Result<Row> {
        let bad = |col: usize, v: i64| rusqlite::Error::IntegralValueOutOfRange(col, v);
        Ok(Row {
            seq: self.seq,
            qos: u8::try_from(self.qos).map_err(|_| bad(1, self.qos))?,
            expires_at: self.expires_at,
            enqueued_at: self.enqueued_at,
            packet_id: u16::try_from(self.packet_id).map_err(|_| bad(4, self.packet_id))?,
            released: self.released != 0,
            attempts: u32::try_from(self.attempts).map_err(|_| bad(6, self.attempts))?,
            data: self.data,
        })
    }
}

impl From<&Row> for StoredRow {
    fn from(r: &Row) -> StoredRow {
        StoredRow {
            seq: r.seq,
            qos: r.qos as i64,
            expires_at: r.expires_at,
            enqueued_at: r.enqueued_at,
            packet_id: r.packet_id as i64,
            released: r.released as i64,
            attempts: r.attempts as i64,
            data: r.data.clone(),
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
