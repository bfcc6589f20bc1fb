//! SQLite storage of the outbox: schema, the group-commit write of a batch, reads in FIFO
//! order, per-bridge trimming, and the quarantine of a corrupt file.
//!
//! One database file may hold several bridges; every row is keyed by (bridge_id, seq) and every
//! statement filters on this handle's bridge_id, so one bridge never touches another's rows.

use crate::config::{Config, SyncMode};
use crate::error::{Error, Result};
use crate::log::Logger;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The schema (also used by the benchmarks' raw-SQLite baselines, so they insert the same rows).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS bridge(
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS msg(
    bridge_id   INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    qos         INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    enqueued_at INTEGER NOT NULL,
    packet_id   INTEGER NOT NULL DEFAULT 0,
    released    INTEGER NOT NULL DEFAULT 0,
    data        BLOB NOT NULL,
    PRIMARY KEY(bridge_id, seq)
) WITHOUT ROWID;
";

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
    pub data: Vec<u8>,
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
}

impl Batch {
    pub fn len(&self) -> usize {
        self.inserts.len() + self.deletes.len() + self.binds.len() + self.releases.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Puts `self` (older) before `newer`, keeping each list in order.
    pub fn prepend_to(mut self, newer: &mut Batch) {
        self.inserts.append(&mut newer.inserts);
        self.deletes.append(&mut newer.deletes);
        self.binds.append(&mut newer.binds);
        self.releases.append(&mut newer.releases);
        *newer = self;
    }
}

/// How much a write must trim (drop_oldest), and which rows it must not touch.
#[derive(Debug, Default)]
pub struct Trim {
    pub messages: u64,
    pub bytes: u64,
    pub skip: HashSet<i64>,
}

/// What a bridge holds at open.
#[derive(Debug, Default, Clone, Copy)]
pub struct Resume {
    pub messages: u64,
    pub bytes: u64,
    pub min_seq: Option<i64>,
    pub max_seq: Option<i64>,
}

pub struct Store {
    conn: Connection,
    bridge_id: i64,
}

impl Store {
    /// Opens the file for `cfg.bridge`. A corrupt file is renamed aside and a fresh one opened.
    pub fn open(cfg: &Config, log: &Logger) -> Result<(Store, Resume)> {
        match Self::try_open(cfg) {
            Err(Error::Corrupt(why)) => {
                let aside = quarantine(&cfg.path)?;
                log.error(&format!(
                    "database {} is corrupt ({why}); renamed to {} and starting a fresh store",
                    cfg.path.display(),
                    aside.display()
                ));
                Self::try_open(cfg)
            }
            other => other,
        }
    }

    fn try_open(cfg: &Config) -> Result<(Store, Resume)> {
        let conn = Connection::open(&cfg.path)?;
        conn.busy_timeout(Duration::from_millis(
            crate::config::DEFAULT_BUSY_TIMEOUT_MS as u64,
        ))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Io(format!(
                "cannot enable WAL (journal_mode={mode})"
            )));
        }
        let sync = match cfg.sync {
            SyncMode::Normal => "NORMAL",
            SyncMode::Full => "FULL",
        };
        conn.execute_batch(&format!("PRAGMA synchronous={sync};"))?;
        conn.execute_batch(SCHEMA)?;
        conn.execute(
            "INSERT OR IGNORE INTO bridge(name) VALUES (?1)",
            params![cfg.bridge],
        )?;
        let bridge_id: i64 = conn.query_row(
            "SELECT id FROM bridge WHERE name = ?1",
            params![cfg.bridge],
            |r| r.get(0),
        )?;
        // Reads every row of the bridge: also how a damaged table shows up at open.
        let resume = conn.query_row(
            "SELECT count(*), coalesce(sum(length(data)), 0), min(seq), max(seq)
             FROM msg WHERE bridge_id = ?1",
            params![bridge_id],
            |r| {
                Ok(Resume {
                    messages: r.get::<_, i64>(0)? as u64,
                    bytes: r.get::<_, i64>(1)? as u64,
                    min_seq: r.get(2)?,
                    max_seq: r.get(3)?,
                })
            },
        )?;
        Ok((Store { conn, bridge_id }, resume))
    }

    /// Applies one batch in one transaction, then trims. Returns the trimmed rows as
    /// (seq, bytes). On error nothing of the batch is applied.
    pub fn write(&mut self, batch: &Batch, trim: &Trim) -> Result<Vec<(i64, u64)>> {
        let bridge = self.bridge_id;
        let tx = self.conn.transaction()?;
        let mut dropped = Vec::new();
        {
            if !batch.inserts.is_empty() {
                let mut ins = tx.prepare_cached(
                    "INSERT INTO msg(bridge_id, seq, qos, expires_at, enqueued_at, packet_id,
                     released, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?;
                for r in &batch.inserts {
                    ins.execute(params![
                        bridge,
                        r.seq,
                        r.qos,
                        r.expires_at,
                        r.enqueued_at,
                        r.packet_id,
                        r.released,
                        r.data
                    ])?;
                }
            }
            let deleted: HashSet<i64> = batch.deletes.iter().copied().collect();
            if !batch.binds.is_empty() {
                let mut upd = tx.prepare_cached(
                    "UPDATE msg SET packet_id = ?3 WHERE bridge_id = ?1 AND seq = ?2",
                )?;
                for (seq, pid) in &batch.binds {
                    if !deleted.contains(seq) {
                        upd.execute(params![bridge, seq, pid])?;
                    }
                }
            }
            if !batch.releases.is_empty() {
                let mut rel = tx.prepare_cached(
                    "UPDATE msg SET released = 1 WHERE bridge_id = ?1 AND seq = ?2",
                )?;
                for seq in &batch.releases {
                    if !deleted.contains(seq) {
                        rel.execute(params![bridge, seq])?;
                    }
                }
            }
            let mut del = tx.prepare_cached("DELETE FROM msg WHERE bridge_id = ?1 AND seq = ?2")?;
            for seq in &batch.deletes {
                del.execute(params![bridge, seq])?;
            }
            if trim.messages > 0 || trim.bytes > 0 {
                let mut sel = tx.prepare_cached(
                    "SELECT seq, length(data) FROM msg WHERE bridge_id = ?1 ORDER BY seq",
                )?;
                let mut rows = sel.query(params![bridge])?;
                let (mut n, mut b) = (0u64, 0u64);
                while n < trim.messages || b < trim.bytes {
                    let Some(row) = rows.next()? else { break };
                    let seq: i64 = row.get(0)?;
                    if trim.skip.contains(&seq) || deleted.contains(&seq) {
                        continue;
                    }
                    let len = row.get::<_, i64>(1)? as u64;
                    n += 1;
                    b += len;
                    dropped.push((seq, len));
                }
                drop(rows);
                for (seq, _) in &dropped {
                    del.execute(params![bridge, seq])?;
                }
            }
        }
        tx.commit()?;
        Ok(dropped)
    }

    /// Up to `limit` rows with seq >= `from`, in FIFO order.
    pub fn read_from(&mut self, from: i64, limit: usize) -> Result<Vec<Row>> {
        let mut sel = self.conn.prepare_cached(
            "SELECT seq, qos, expires_at, enqueued_at, packet_id, released, data FROM msg
             WHERE bridge_id = ?1 AND seq >= ?2 ORDER BY seq LIMIT ?3",
        )?;
        let rows = sel.query_map(params![self.bridge_id, from, limit as i64], |r| {
            Ok(Row {
                seq: r.get(0)?,
                qos: r.get(1)?,
                expires_at: r.get(2)?,
                enqueued_at: r.get(3)?,
                packet_id: r.get(4)?,
                released: r.get(5)?,
                data: r.get(6)?,
            })
        })?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(Error::from)
    }

    /// When the oldest committed row of the bridge was accepted.
    pub fn oldest_enqueued_at(&mut self) -> Result<Option<i64>> {
        let mut sel = self.conn.prepare_cached(
            "SELECT enqueued_at FROM msg WHERE bridge_id = ?1 ORDER BY seq LIMIT 1",
        )?;
        Ok(sel
            .query_row(params![self.bridge_id], |r| r.get(0))
            .optional()?)
    }
}

/// Renames a corrupt database (and its -wal and -shm files) aside; returns the new name.
fn quarantine(path: &Path) -> Result<PathBuf> {
    let secs = now_ms() / 1000;
    let mut aside = PathBuf::from(format!("{}.corrupt-{secs}", path.display()));
    let mut n = 1;
    while aside.exists() {
        aside = PathBuf::from(format!("{}.corrupt-{secs}-{n}", path.display()));
        n += 1;
    }
    std::fs::rename(path, &aside)
        .map_err(|e| Error::Io(format!("cannot rename corrupt {}: {e}", path.display())))?;
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", path.display()));
        if side.exists() {
            let to = PathBuf::from(format!("{}{suffix}", aside.display()));
            let _ = std::fs::rename(&side, &to);
        }
    }
    Ok(aside)
}
