//! SQLite storage of the outbox: schema, the group-commit write of a batch, reads in FIFO
//! order, per-bridge trimming, and the quarantine of a corrupt file.
//!
//! A database file holds one bridge by default (a directory as the configured path gives one file
//! per bridge, see `files::db_file_for`); a file given explicitly may hold several bridges:
//! every row is keyed by (bridge_id, seq) and every statement filters on this handle's
//! bridge_id, so one bridge never touches another's rows.

use crate::config::{Config, SyncMode};
use crate::error::{Error, Result};
use crate::files::{self, Claim, FileState};
use crate::log::Logger;
use rusqlite::ffi::ErrorCode;
use rusqlite::limits::Limit;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod batch;
pub mod checkpoint;
mod disk;
mod schema;
pub use batch::*;
use checkpoint::{Checkpointer, Step};
use disk::{quarantine, repair_side_files};
use schema::query_resume;
pub use schema::{migrate, APPLICATION_ID, SCHEMA, SCHEMA_VERSION};

/// What a bridge holds at open.
#[derive(Debug, Default, Clone, Copy)]
pub struct Resume {
    pub messages: u64,
    pub bytes: u64,
    /// Seqs of the queue and of the dead letters (seqs are unique across both).
    pub min_seq: Option<i64>,
    pub max_seq: Option<i64>,
    /// Dead letters.
    pub dead: u64,
}

pub struct Store {
    // Field order matters: the connection is closed before the checkpointer (whose counter
    // its WAL hook holds) and its thread's connection, and both before the claim releases
    // the file.
    conn: Connection,
    /// The WAL checkpoints off the commit path (`checkpoint`); None for `caller_commits`.
    ckpt: Option<Checkpointer>,
    claim: Claim,
    path: PathBuf,
    bridge_id: i64,
    sync: SyncMode,
    /// The WAL is checkpointed at 1000 pages (SQLite's default), by the checkpoint thread
    /// (`ckpt`) while the writer goes on. Off for `caller_commits`: the writer thread
    /// checkpoints (`checkpoint`), never a caller.
    autocheckpoint: bool,
    /// The largest row SQLite stores (SQLITE_LIMIT_LENGTH), less room for the other columns.
    max_row: usize,
    /// The reserve file is in place (see [`RESERVE_BYTES`]).
    reserve: bool,
    /// Dead letters kept at most (the oldest go beyond it).
    dead_limit: u64,
}

/// Rows of a batch SQLite refused (a key collision, a row above its length limit): they were
/// left out, the rest of the batch was committed.
#[derive(Debug, Default)]
pub struct Written {
    pub refused: Vec<(i64, u64, String)>,
    /// Dead letters deleted beyond the limit: (seq, their reason).
    pub dead_dropped: Vec<(i64, String)>,
    /// Rows to bury that were no longer in the queue.
    pub unburied: u64,
    /// A warning to log once no lock is held (the checkpoint thread could not start).
    pub note: Option<String>,
}

/// Space kept beside the database (`<db>-reserve`) and given up when the disk is full, so that
/// the acks and deletes of a drain can still commit.
pub const RESERVE_BYTES: u64 = 2 * 1024 * 1024;

/// Columns besides `data`, as an upper bound of their encoded size.
const ROW_OVERHEAD: usize = 128;

impl Store {
    /// Opens the file for `cfg.bridge` (`cfg.path` is a file path, already resolved). A corrupt
    /// file is renamed aside and a fresh one opened, unless another handle of this process has
    /// it open (then [`Error::Corrupt`]: its rows are not ours to move).
    pub fn open(cfg: &Config, log: &Logger) -> Result<(Store, Resume)> {
        let claim = Claim::take(&cfg.path, &cfg.bridge)?;
        if !claim.shared() {
            repair_side_files(&cfg.path, log);
        }
        let opened = match Self::try_open(cfg, claim, log) {
            Err((Error::Corrupt(why), claim)) => {
                if claim.shared() {
                    return Err(Error::Corrupt(format!(
                        "{} ({why}); other bridges of this process have the file open, so it \
                         is left in place",
                        cfg.path.display()
                    )));
                }
                let aside = quarantine(&cfg.path)?;
                log.error(&format!(
                    "database {} is corrupt ({why}); renamed to {} and starting a fresh store",
                    cfg.path.display(),
                    aside.display()
                ));
                // What can be saved of the bridge's messages is in the copy.
                files::tighten(&aside, log);
                // The claim is on the renamed file, which no connection has open any more.
                drop(claim);
                let claim = Claim::take(&cfg.path, &cfg.bridge)?;
                Self::try_open(cfg, claim, log).map_err(|(e, _)| e)
            }
            other => other.map_err(|(e, _)| e),
        };
        // Now known to be an outbox file (a file of another program was refused above).
        if opened.is_ok() {
            files::tighten(&cfg.path, log);
        }
        opened
    }

    fn try_open(
        cfg: &Config,
        claim: Claim,
        log: &Logger,
    ) -> std::result::Result<(Store, Resume), (Error, Claim)> {
        let auto = !cfg.caller_commits;
        match Self::connect(&cfg.path, cfg.sync, auto).and_then(|conn| Self::setup(conn, cfg)) {
            Ok((conn, bridge_id, resume, max_row)) => {
                let ckpt = auto.then(|| Checkpointer::new(&cfg.path, cfg.sync, log, &cfg.bridge));
                if let Some(c) = &ckpt {
                    c.install(&conn);
                }
                let mut store = Store {
                    conn,
                    ckpt,
                    claim,
                    path: cfg.path.clone(),
                    bridge_id,
                    sync: cfg.sync,
                    autocheckpoint: auto,
                    max_row,
                    reserve: false,
                    dead_limit: cfg.dead_letter_limit as u64,
                };
                store.reserve = store.make_reserve().is_ok();
                Ok((store, resume))
            }
            Err(e) => Err((e, claim)),
        }
    }

    /// A connection in WAL mode. Switching a fresh file to WAL does not go through the busy
    /// handler: that step is retried within the busy timeout.
    fn connect(path: &Path, sync: SyncMode, autocheckpoint: bool) -> Result<Connection> {
        let conn = Connection::open(path)?;
        let timeout = Duration::from_millis(crate::config::DEFAULT_BUSY_TIMEOUT_MS as u64);
        conn.busy_timeout(timeout)?;
        let start = Instant::now();
        let mode: String = loop {
            match conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)) {
                Err(e)
                    if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy)
                        && start.elapsed() < timeout =>
                {
                    std::thread::sleep(Duration::from_millis(2));
                }
                other => break other?,
            }
        };
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Io(format!(
                "cannot enable WAL (journal_mode={mode})"
            )));
        }
        conn.execute_batch(sync.pragma())?;
        if !autocheckpoint {
            conn.execute_batch("PRAGMA wal_autocheckpoint=0;")?;
        }
        Ok(conn)
    }

    fn setup(conn: Connection, cfg: &Config) -> Result<(Connection, i64, Resume, usize)> {
        // One immediate transaction: a concurrent open of a fresh file waits (busy handler)
        // and then sees the schema complete, never half made.
        conn.execute_batch("BEGIN IMMEDIATE")?;
        match Self::schema(&conn, cfg) {
            Ok(()) => conn.execute_batch("COMMIT")?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
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
        let resume = query_resume(&conn, bridge_id)?;
        let limit = conn.limit(Limit::SQLITE_LIMIT_LENGTH).max(0) as usize;
        Ok((conn, bridge_id, resume, limit.saturating_sub(ROW_OVERHEAD)))
    }

    /// What the bridge holds on disk now.
    pub fn resume(&mut self) -> Result<Resume> {
        query_resume(&self.conn, self.bridge_id)
    }

    /// Moves this bridge's rows out of `legacy`, the one file every bridge shared before files
    /// were per bridge (`<dir>/nmq_outbox.db`), into this (empty) store: same seqs, packet
    /// ids and states, in one transaction over both files (ATTACH). Returns how many moved.
    /// The shared file keeps the other bridges' messages: when it is an outbox file, it is
    /// made private like this one ([`files::tighten`]).
    pub fn adopt_legacy(&mut self, legacy: &Path, bridge: &str, log: &Logger) -> Result<u64> {
        // Held like any outbox file while it is changed (the claim outlives the attachment).
        let _claim = Claim::take(legacy, bridge)?;
        self.conn.execute(
            "ATTACH DATABASE ?1 AS legacy",
            params![legacy.to_string_lossy()],
        )?;
        let moved = self.move_from_legacy(bridge, legacy, log);
        let detached = self.conn.execute_batch("DETACH DATABASE legacy");
        let moved = moved?;
        detached?;
        Ok(moved)
    }

    fn move_from_legacy(&mut self, bridge: &str, legacy: &Path, log: &Logger) -> Result<u64> {
        let ours: i64 = self.conn.query_row(
            "SELECT count(*) FROM legacy.sqlite_master
             WHERE type = 'table' AND name IN ('bridge', 'msg')",
            [],
            |r| r.get(0),
        )?;
        if ours != 2 {
            return Ok(0);
        }
        files::tighten(legacy, log);
        let Some(old_id) = self
            .conn
            .query_row(
                "SELECT id FROM legacy.bridge WHERE name = ?1",
                params![bridge],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
        else {
            return Ok(0);
        };
        let tx = self.conn.transaction()?;
        let moved = tx.execute(
            "INSERT INTO main.msg(bridge_id, seq, qos, expires_at, enqueued_at, packet_id,
             released, data)
             SELECT ?1, seq, qos, expires_at, enqueued_at, packet_id, released, data
             FROM legacy.msg WHERE bridge_id = ?2 ORDER BY seq",
            params![self.bridge_id, old_id],
        )?;
        tx.execute(
            "DELETE FROM legacy.msg WHERE bridge_id = ?1",
            params![old_id],
        )?;
        tx.commit()?;
        Ok(moved as u64)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The largest `data` SQLite can store in one row.
    pub fn max_row(&self) -> usize {
        self.max_row
    }

    /// Applies one batch in one transaction. A row SQLite refuses (key collision, too long) is
    /// left out and returned in [`Written::refused`]; every other row is written. On any other
    /// error nothing of the batch is applied.
    pub fn write(&mut self, batch: &Batch) -> Result<Written> {
        let bridge = self.bridge_id;
        let tx = self.conn.transaction()?;
        let mut out = Written::default();
        {
            // First: every other write of the batch came after the reset (the inserts were
            // reset in memory then), and belongs to the new session.
            if batch.reset_all {
                tx.prepare_cached(
                    "UPDATE msg SET packet_id = 0, released = 0
                     WHERE bridge_id = ?1 AND (packet_id != 0 OR released != 0)",
                )?
                .execute(params![bridge])?;
            }
            if !batch.inserts.is_empty() {
                let mut ins = tx.prepare_cached(INSERT_ROW)?;
                for r in &batch.inserts {
                    let res = insert_row(&mut ins, bridge, r);
                    match res {
                        Ok(_) => {}
                        // Statement-level errors: the transaction goes on without this row.
                        Err(e)
                            if matches!(
                                e.sqlite_error_code(),
                                Some(ErrorCode::ConstraintViolation) | Some(ErrorCode::TooBig)
                            ) =>
                        {
                            out.refused
                                .push((r.seq, r.data.len() as u64, e.to_string()));
                        }
                        Err(e) => return Err(e.into()),
                    }
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
            if !batch.attempts.is_empty() {
                let mut upd = tx.prepare_cached(
                    "UPDATE msg SET attempts = ?3 WHERE bridge_id = ?1 AND seq = ?2",
                )?;
                for (seq, n) in &batch.attempts {
                    if !deleted.contains(seq) {
                        upd.execute(params![bridge, seq, n])?;
                    }
                }
            }
            for b in &batch.buries {
                if !crate::dead::bury(&tx, bridge, b)? {
                    out.unburied += 1;
                }
            }
            if !batch.buries.is_empty() {
                out.dead_dropped = crate::dead::trim(&tx, bridge, self.dead_limit)?;
            }
            if !batch.deletes.is_empty() {
                // Acks come mostly in seq order: a run of consecutive seqs is one statement.
                let mut seqs = batch.deletes.clone();
                seqs.sort_unstable();
                seqs.dedup();
                let mut del =
                    tx.prepare_cached("DELETE FROM msg WHERE bridge_id = ?1 AND seq = ?2")?;
                let mut run = tx.prepare_cached(
                    "DELETE FROM msg WHERE bridge_id = ?1 AND seq >= ?2 AND seq <= ?3",
                )?;
                let mut i = 0;
                while i < seqs.len() {
                    let mut j = i;
                    while j + 1 < seqs.len() && seqs[j].checked_add(1) == Some(seqs[j + 1]) {
                        j += 1;
                    }
                    if i == j {
                        del.execute(params![bridge, seqs[i]])?;
                    } else {
                        run.execute(params![bridge, seqs[i], seqs[j]])?;
                    }
                    i = j + 1;
                }
            }
        }
        tx.commit()?;
        out.note = self.after_commit();
        Ok(out)
    }

    /// The WAL checkpoint a commit may call for (`checkpoint` module): asked of the thread, or
    /// run here when the thread left little or the WAL reached its bound. A failure here is
    /// ignored, as SQLite ignores one of its autocheckpoint: the next commit tries again.
    /// Returns what to log (the thread could not start).
    fn after_commit(&mut self) -> Option<String> {
        let (step, note) = self.ckpt.as_mut()?.after_commit();
        if step == Step::Here {
            let _ = self.checkpoint();
        }
        note
    }

    /// The checkpointer (tests: its frame count and the thread's runs).
    #[cfg(test)]
    pub fn checkpointer(&self) -> Option<&Checkpointer> {
        self.ckpt.as_ref()
    }

    /// `PRAGMA wal_autocheckpoint` of the connection (pages; 0 = off).
    #[cfg(test)]
    pub fn autocheckpoint_pages(&self) -> i64 {
        self.conn
            .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .unwrap()
    }

    /// A passive checkpoint of the WAL into the database file (what SQLite's autocheckpoint
    /// does after a commit): copies what no reader still needs, never waits for one.
    pub fn checkpoint(&mut self) -> Result<()> {
        checkpoint::checkpoint(&self.conn).map(|_| ())
    }

    /// (seq, data length) of up to `limit` rows with seq > `after`, oldest first: the
    /// candidates of a drop_oldest trim.
    pub fn oldest(&mut self, after: i64, limit: usize) -> Result<Vec<(i64, u64)>> {
        let mut sel = self.conn.prepare_cached(
            "SELECT seq, length(data) FROM msg WHERE bridge_id = ?1 AND seq > ?2
             ORDER BY seq LIMIT ?3",
        )?;
        let rows = sel.query_map(params![self.bridge_id, after, limit as i64], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
        })?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(Error::from)
    }

    /// Rows with seq >= `from` in FIFO order: at most `limit` rows, and no more after their
    /// data reached `max_bytes` (at least one row, however large). Also says whether it
    /// stopped early (more rows may follow the last one returned). Memory for each row is
    /// reserved fallibly: when it cannot be had the call fails with [`Error::NoMemory`].
    pub fn read_from(
        &mut self,
        from: i64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<Row>, bool)> {
        let mut sel = self.conn.prepare_cached(SELECT_ROWS)?;
        let mut rows = sel.query(params![self.bridge_id, from, limit as i64])?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while let Some(r) = rows.next()? {
            let blob = r
                .get_ref(DATA_COLUMN)?
                .as_blob()
                .map_err(rusqlite::Error::from)?;
            if !out.is_empty() && bytes.saturating_add(blob.len()) > max_bytes {
                return Ok((out, true));
            }
            bytes = bytes.saturating_add(blob.len());
            out.push(StoredRow::from_sql(r, copy_bytes(blob)?)?.into_row()?);
        }
        let more = out.len() >= limit;
        Ok((out, more))
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

/// A copy of `b` whose memory is reserved fallibly (an allocation failure is an error, not an
/// abort of the host).
pub fn copy_bytes(b: &[u8]) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    v.try_reserve_exact(b.len())
        .map_err(|_| Error::NoMemory(b.len()))?;
    v.extend_from_slice(b);
    Ok(v)
}

#[cfg(test)]
mod batch_tests;
