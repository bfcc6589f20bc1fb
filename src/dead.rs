//! Dead letters (issue 20): rows the remote refused for good (a PUBACK/PUBREC with a reason
//! code of 0x80 or above, a packet larger than its Maximum Packet Size, a message it closes
//! the connection on `max_attempts` times). They leave the queue (never replayed) but stay in the file, in
//! the `dead` table, with why, when and after how many attempts, until an operator puts them
//! back in the queue or purges them (`nmq-outbox dead ...`), or the bridge's
//! `dead_letter_limit` pushes the oldest out (counted and logged: never a silent loss).
//!
//! The SQL of dead letters, over a connection: the store's commits and the command line
//! (which opens the file itself) both go through it.

use crate::error::{Error, Result};
use rusqlite::{params, Connection, OptionalExtension};

/// The table (schema version 2). Seqs stay unique per bridge across `msg` and `dead`, so a
/// dead letter goes back to its place in the FIFO.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS dead(
    bridge_id   INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    qos         INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    enqueued_at INTEGER NOT NULL,
    attempts    INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    reason_code INTEGER,
    dead_at     INTEGER NOT NULL,
    data        BLOB NOT NULL,
    PRIMARY KEY(bridge_id, seq)
) WITHOUT ROWID;
";

/// Why a row became a dead letter (the `reason` column).
pub mod reason {
    /// The remote answered PUBACK/PUBREC with a reason code >= 0x80 (not 0x97).
    pub const REJECTED: &str = "rejected";
    /// The PUBLISH as sent is larger than the remote's Maximum Packet Size.
    pub const PACKET_TOO_LARGE: &str = "packet_too_large";
    /// The remote closed the connection `max_attempts` times while this row was alone in
    /// flight (with a DISCONNECT reason code, or right after its send).
    pub const REFUSED_BY_CLOSE: &str = "refused_by_close";
}

/// One dead letter as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub seq: i64,
    pub qos: u8,
    /// Unix ms; 0 = never.
    pub expires_at: i64,
    pub enqueued_at: i64,
    /// Times the remote closed the connection on it (see `max_attempts`).
    pub attempts: u32,
    /// One of [`reason`].
    pub reason: String,
    /// The MQTT reason code of the refusal, when there was one.
    pub reason_code: Option<u8>,
    /// Unix ms when it became a dead letter.
    pub dead_at: i64,
    pub data: Vec<u8>,
}

/// A row of `msg` to become a dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Burial {
    pub seq: i64,
    pub reason: &'static str,
    pub reason_code: Option<u8>,
    pub attempts: u32,
    /// Unix ms.
    pub at: i64,
}

/// Whether the file has the table (a file of schema version 1, read by the command line,
/// has none: no dead letters).
pub fn exists(conn: &Connection) -> Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'dead'",
            [],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Moves row `b.seq` of the bridge from the queue to the dead letters. False when it is not
/// in the queue (gone meanwhile).
pub fn bury(conn: &Connection, bridge_id: i64, b: &Burial) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "INSERT OR REPLACE INTO dead(bridge_id, seq, qos, expires_at, enqueued_at, attempts,
             reason, reason_code, dead_at, data)
             SELECT bridge_id, seq, qos, expires_at, enqueued_at, ?3, ?4, ?5, ?6, data
             FROM msg WHERE bridge_id = ?1 AND seq = ?2",
        )?
        .execute(params![
            bridge_id,
            b.seq,
            b.attempts,
            b.reason,
            b.reason_code,
            b.at
        ])?;
    if n > 0 {
        conn.prepare_cached("DELETE FROM msg WHERE bridge_id = ?1 AND seq = ?2")?
            .execute(params![bridge_id, b.seq])?;
    }
    Ok(n > 0)
}

/// Deletes the oldest dead letters of the bridge beyond `limit` (0 = none kept); returns
/// (seq, reason) of each, for the count and the log.
pub fn trim(conn: &Connection, bridge_id: i64, limit: u64) -> Result<Vec<(i64, String)>> {
    let over = count(conn, bridge_id)?.saturating_sub(limit);
    if over == 0 {
        return Ok(Vec::new());
    }
    let gone: Vec<(i64, String)> = conn
        .prepare_cached(
            "SELECT seq, reason FROM dead WHERE bridge_id = ?1 ORDER BY dead_at, seq LIMIT ?2",
        )?
        .query_map(params![bridge_id, over.min(i64::MAX as u64) as i64], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut del = conn.prepare_cached("DELETE FROM dead WHERE bridge_id = ?1 AND seq = ?2")?;
    for (seq, _) in &gone {
        del.execute(params![bridge_id, seq])?;
    }
    Ok(gone)
}

/// How many dead letters the bridge has (0 without the table).
pub fn count(conn: &Connection, bridge_id: i64) -> Result<u64> {
    if !exists(conn)? {
        return Ok(0);
    }
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM dead WHERE bridge_id = ?1",
        params![bridge_id],
        |r| r.get(0),
    )?;
    Ok(n.max(0) as u64)
}

/// The smallest and largest seq of the bridge's dead letters.
pub fn seq_range(conn: &Connection, bridge_id: i64) -> Result<(Option<i64>, Option<i64>)> {
    if !exists(conn)? {
        return Ok((None, None));
    }
    Ok(conn.query_row(
        "SELECT min(seq), max(seq) FROM dead WHERE bridge_id = ?1",
        params![bridge_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}

/// The bridge's dead letters in FIFO order (seq), at most `limit` (0 = all).
pub fn list(conn: &Connection, bridge_id: i64, limit: u64) -> Result<Vec<DeadLetter>> {
    if !exists(conn)? {
        return Ok(Vec::new());
    }
    let limit = if limit == 0 {
        -1
    } else {
        limit.min(i64::MAX as u64) as i64
    };
    let mut q = conn.prepare_cached(
        "SELECT seq, qos, expires_at, enqueued_at, attempts, reason, reason_code, dead_at, data
         FROM dead WHERE bridge_id = ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = q.query_map(params![bridge_id, limit], |r| {
        Ok(DeadLetter {
            seq: r.get(0)?,
            qos: r.get(1)?,
            expires_at: r.get(2)?,
            enqueued_at: r.get(3)?,
            attempts: r.get(4)?,
            reason: r.get(5)?,
            reason_code: r.get(6)?,
            dead_at: r.get(7)?,
            data: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The seqs `which` names (None = every dead letter of the bridge) that are dead letters.
fn chosen(conn: &Connection, bridge_id: i64, which: Option<&[i64]>) -> Result<Vec<i64>> {
    if !exists(conn)? {
        return Ok(Vec::new());
    }
    let all: Vec<i64> = conn
        .prepare_cached("SELECT seq FROM dead WHERE bridge_id = ?1 ORDER BY seq")?
        .query_map(params![bridge_id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(match which {
        None => all,
        Some(w) => all.into_iter().filter(|s| w.contains(s)).collect(),
    })
}

/// Puts dead letters back in the queue (`which`: these seqs, None = all), each at its place
/// in the FIFO (its seq), or at the tail when a row took that seq meanwhile; as never sent
/// (packet id 0, not released, 0 attempts). Returns the seqs they have now. Run it in the
/// caller's transaction, with the file held (a running bridge reads them at its next open).
pub fn requeue(conn: &Connection, bridge_id: i64, which: Option<&[i64]>) -> Result<Vec<i64>> {
    let mut out = Vec::new();
    for seq in chosen(conn, bridge_id, which)? {
        let taken = conn
            .query_row(
                "SELECT 1 FROM msg WHERE bridge_id = ?1 AND seq = ?2",
                params![bridge_id, seq],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        let to = if taken {
            let top: Option<i64> = conn.query_row(
                "SELECT max(s) FROM (SELECT max(seq) AS s FROM msg WHERE bridge_id = ?1
                 UNION ALL SELECT max(seq) FROM dead WHERE bridge_id = ?1)",
                params![bridge_id],
                |r| r.get(0),
            )?;
            top.unwrap_or(0)
                .checked_add(1)
                .ok_or_else(|| Error::Invalid("no seq left".into()))?
        } else {
            seq
        };
        conn.execute(
            "INSERT INTO msg(bridge_id, seq, qos, expires_at, enqueued_at, packet_id, released,
             attempts, data)
             SELECT bridge_id, ?3, qos, expires_at, enqueued_at, 0, 0, 0, data
             FROM dead WHERE bridge_id = ?1 AND seq = ?2",
            params![bridge_id, seq, to],
        )?;
        conn.execute(
            "DELETE FROM dead WHERE bridge_id = ?1 AND seq = ?2",
            params![bridge_id, seq],
        )?;
        out.push(to);
    }
    Ok(out)
}

/// Deletes dead letters (`which`: these seqs, None = all); returns the seqs deleted.
pub fn purge(conn: &Connection, bridge_id: i64, which: Option<&[i64]>) -> Result<Vec<i64>> {
    let seqs = chosen(conn, bridge_id, which)?;
    let mut del = conn.prepare_cached("DELETE FROM dead WHERE bridge_id = ?1 AND seq = ?2")?;
    for s in &seqs {
        del.execute(params![bridge_id, s])?;
    }
    Ok(seqs)
}
