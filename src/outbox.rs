//! The outbox logic: routing of new messages, the replay window, packet ids, acks, limits,
//! expiry and counters. Pure Rust; storage is in `store`, the C ABI in `ffi`.
//!
//! Thread safety: [`Outbox`] is `Send + Sync`; every method may be called from any thread.
//! No method calls back into the caller except the log sink of the config.

use crate::config::{Config, FullPolicy};
use crate::error::{Error, Result};
use crate::log::Logger;
use crate::store::{now_ms, Batch, Row, Store, Trim};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
    /// PUBACK or PUBREC with a reason code >= 0x80: deleted, counted in `dropped_rejected`,
    /// not retried. (A PUBCOMP always completes the row.)
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

/// Rows read ahead from disk at once for the replay: at least this many...
const READ_AHEAD_MIN: usize = 256;
/// ...and at most this many (bounds memory during a drain).
const READ_AHEAD_MAX: usize = 512;
/// Pending writes beyond `group_commit_count * BACKPRESSURE` make `append` commit inline.
const BACKPRESSURE: usize = 8;

#[derive(Debug, Clone, Copy)]
struct Flight {
    qos: u8,
    packet_id: u16,
    bytes: u64,
}

/// Everything behind the state lock. Never held while SQLite works or while logging.
struct State {
    closed: bool,
    link_up: bool,
    window: u32,
    next_seq: i64,
    front_seq: i64,
    /// Next seq the replay considers. Rows below it are in flight or gone.
    cursor: i64,
    /// Rows read ahead from disk: seq >= cursor, in order.
    ahead: VecDeque<Row>,
    /// Bumped whenever `cursor`/`ahead` are reset or refilled (detects a stale refill).
    generation: u64,
    inflight: BTreeMap<i64, Flight>,
    by_pid: HashMap<u16, i64>,
    pending: Batch,
    pending_since: Option<Instant>,
    messages: u64,
    bytes: u64,
    committed_seq: i64,
    enqueued: u64,
    acked: u64,
    resent: u64,
    dropped_full: u64,
    dropped_expired: u64,
    dropped_rejected: u64,
    /// The last commit failed; the next append commits inline first.
    write_failed: bool,
    /// A batch taken from `pending` is being written (not yet visible as committed).
    writing: bool,
}

impl State {
    fn reset_cursor(&mut self, to: i64) {
        self.cursor = self.cursor.min(to);
        self.ahead.clear();
        self.generation += 1;
    }

    /// Removes an in-flight row for good (acked or rejected).
    fn finish(&mut self, seq: i64) {
        if let Some(f) = self.inflight.remove(&seq) {
            if f.packet_id != 0 {
                self.by_pid.remove(&f.packet_id);
            }
            self.messages -= 1;
            self.bytes -= f.bytes;
            // Acked before its insert was committed: it never needs to touch the disk.
            if !self.remove_pending_insert(seq) {
                self.push_delete(seq);
            }
            // After a replay reset the row may also sit in the read-ahead: it must not go again.
            if let Ok(i) = self.ahead.binary_search_by_key(&seq, |r| r.seq) {
                self.ahead.remove(i);
            }
        }
    }

    /// Drops a not yet committed insert; false when it is not pending.
    fn remove_pending_insert(&mut self, seq: i64) -> bool {
        match self.pending.inserts.iter().position(|r| r.seq == seq) {
            Some(i) => {
                self.pending.inserts.remove(i);
                true
            }
            None => false,
        }
    }

    /// The next row to replay when it can only be in the pending batch: every committed row
    /// was handed out (the cursor is past `committed_seq`) and no batch is being written.
    fn next_pending(&self) -> Option<Row> {
        if self.writing || self.cursor <= self.committed_seq {
            return None;
        }
        self.pending
            .inserts
            .iter()
            .find(|r| r.seq >= self.cursor && !self.inflight.contains_key(&r.seq))
            .cloned()
    }

    fn push_delete(&mut self, seq: i64) {
        self.pending.deletes.push(seq);
        self.pending_since.get_or_insert_with(Instant::now);
    }

    /// Whether the writer thread must be woken after a write was added: it starts a batch
    /// (the writer then arms its timer) or fills one. Other writes wake nobody.
    fn writer_due(&self, count: u32) -> bool {
        let n = self.pending.len();
        n == 1 || n >= count as usize
    }

    fn take_trim(&self, cfg: &Config) -> Trim {
        if cfg.full_policy != FullPolicy::DropOldest {
            return Trim::default();
        }
        let over_m = if cfg.max_messages > 0 {
            self.messages.saturating_sub(cfg.max_messages)
        } else {
            0
        };
        let over_b = if cfg.max_bytes > 0 {
            self.bytes.saturating_sub(cfg.max_bytes)
        } else {
            0
        };
        if over_m == 0 && over_b == 0 {
            return Trim::default();
        }
        Trim {
            messages: over_m,
            bytes: over_b,
            skip: self.inflight.keys().copied().collect(),
        }
    }
}

struct Shared {
    cfg: Config,
    log: Logger,
    state: Mutex<State>,
    /// Wakes the writer thread: new pending writes, or close.
    wake: Condvar,
    /// The connection. Lock order: `db` before `state`.
    db: Mutex<Option<Store>>,
    registry_key: (PathBuf, String),
}

/// One bridge's durable outbox.
pub struct Outbox {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

fn registry() -> &'static Mutex<HashSet<(PathBuf, String)>> {
    static OPEN: OnceLock<Mutex<HashSet<(PathBuf, String)>>> = OnceLock::new();
    OPEN.get_or_init(|| Mutex::new(HashSet::new()))
}

fn registry_key(cfg: &Config) -> (PathBuf, String) {
    let p = &cfg.path;
    let abs = match (p.parent(), p.file_name()) {
        (Some(dir), Some(name)) => {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            std::fs::canonicalize(dir)
                .map(|d| d.join(name))
                .unwrap_or_else(|_| p.clone())
        }
        _ => p.clone(),
    };
    (abs, cfg.bridge.clone())
}

fn check_qos(qos: u8) -> Result<()> {
    if qos > 2 {
        return Err(Error::Invalid(format!("QoS {qos} is not 0, 1 or 2")));
    }
    Ok(())
}

impl Outbox {
    /// Opens (or creates) the database and resumes every committed row of this bridge in order;
    /// rows in flight at the last close or crash become queued again. A corrupt file is renamed
    /// aside (`<path>.corrupt-<unix secs>`) and a fresh store is opened, with an error logged.
    pub fn open(cfg: Config) -> Result<Outbox> {
        let cfg = cfg.validate()?;
        let log = cfg.logger.clone();
        let key = registry_key(&cfg);
        if !registry().lock()?.insert(key.clone()) {
            return Err(Error::Busy(format!(
                "bridge {:?} of {} is already open in this process",
                cfg.bridge,
                cfg.path.display()
            )));
        }
        let (store, resume) = match Store::open(&cfg, &log) {
            Ok(x) => x,
            Err(e) => {
                registry().lock()?.remove(&key);
                return Err(e);
            }
        };
        let next_seq = resume.max_seq.map_or(1, |m| m.max(0) + 1);
        let state = State {
            closed: false,
            link_up: false,
            window: cfg.window,
            next_seq,
            front_seq: resume.min_seq.unwrap_or(next_seq),
            cursor: i64::MIN,
            ahead: VecDeque::new(),
            generation: 0,
            inflight: BTreeMap::new(),
            by_pid: HashMap::new(),
            pending: Batch::default(),
            pending_since: None,
            messages: resume.messages,
            bytes: resume.bytes,
            committed_seq: next_seq - 1,
            enqueued: 0,
            acked: 0,
            resent: 0,
            dropped_full: 0,
            dropped_expired: 0,
            dropped_rejected: 0,
            write_failed: false,
            writing: false,
        };
        if resume.messages > 0 {
            log.info(&format!(
                "bridge {:?}: resuming {} stored messages ({} bytes)",
                cfg.bridge, resume.messages, resume.bytes
            ));
        }
        let shared = Arc::new(Shared {
            cfg,
            log,
            state: Mutex::new(state),
            wake: Condvar::new(),
            db: Mutex::new(Some(store)),
            registry_key: key,
        });
        let worker = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("nmq-outbox-writer".into())
            .spawn(move || worker.writer_loop())
            .map_err(|e| Error::Io(format!("cannot start the writer thread: {e}")));
        let writer = match writer {
            Ok(w) => w,
            Err(e) => {
                registry().lock()?.remove(&shared.registry_key);
                return Err(e);
            }
        };
        Ok(Outbox {
            shared,
            writer: Mutex::new(Some(writer)),
        })
    }

    /// Commits everything pending and stops the writer thread. Idempotent; afterwards every
    /// other call returns `Error::Closed`.
    pub fn close(&self) -> Result<()> {
        let sh = &self.shared;
        {
            let mut st = sh.state.lock()?;
            if st.closed {
                return Ok(());
            }
            st.closed = true;
        }
        sh.wake.notify_all();
        if let Some(w) = self.writer.lock()?.take() {
            let _ = w.join();
        }
        // An error is returned, not logged: the caller (or Drop) reports it once.
        let res = sh.flush_inner();
        sh.db.lock()?.take();
        registry().lock()?.remove(&sh.registry_key);
        res
    }

    /// Commits every pending write now.
    pub fn flush(&self) -> Result<()> {
        self.shared.check_open()?;
        self.shared.flush_inner()
    }

    /// The link is up (after a successful CONNACK). `receive_maximum` 0 = not announced.
    pub fn link_up(&self, receive_maximum: u16) -> Result<()> {
        let sh = &self.shared;
        let mut st = sh.lock_open()?;
        st.link_up = true;
        st.window = match receive_maximum {
            0 => sh.cfg.window,
            rm => sh.cfg.window.min(rm as u32),
        };
        Ok(())
    }

    /// The link is down: every row in flight returns to the head of the queue in order.
    pub fn link_down(&self) -> Result<()> {
        let mut st = self.shared.lock_open()?;
        st.link_up = false;
        st.inflight.clear();
        st.by_pid.clear();
        st.reset_cursor(i64::MIN);
        Ok(())
    }

    /// Send now only when the link is up, nothing is held and the window has room.
    pub fn decide(&self, qos: u8) -> Result<Decision> {
        check_qos(qos)?;
        let st = self.shared.lock_open()?;
        Ok(
            if st.link_up && st.messages == 0 && (st.inflight.len() as u32) < st.window {
                Decision::SendNow
            } else {
                Decision::Store
            },
        )
    }

    /// Appends at the tail. Returns the row's seq. Durable after the next group commit.
    pub fn append(&self, msg: &NewMessage<'_>) -> Result<i64> {
        self.shared
            .insert(msg.qos, msg.expiry_secs, Cow::Borrowed(msg.data), None)
    }

    /// Puts a message that was sent directly and lost its link back at the head, before every
    /// held row. For several such messages call it newest first. `packet_id` is the id it was
    /// sent with (0 if none): the replay hands it out again with DUP, so a remote session that
    /// still holds that id (QoS 2) sees a duplicate, not a new message. Returns its seq.
    pub fn requeue_front(&self, msg: &NewMessage<'_>, packet_id: u16) -> Result<i64> {
        self.shared.insert(
            msg.qos,
            msg.expiry_secs,
            Cow::Borrowed(msg.data),
            Some((packet_id, false)),
        )
    }

    /// `append` (`front` None) or `requeue_front` of bytes the caller already owns: no copy.
    /// `front` is (packet id, released): released = the remote answered PUBREC for that id
    /// (QoS 2), so the replay resumes the row with PUBREL.
    #[cfg(feature = "nng")]
    pub(crate) fn insert_owned(
        &self,
        qos: u8,
        expiry_secs: u32,
        data: Vec<u8>,
        front: Option<(u16, bool)>,
    ) -> Result<i64> {
        self.shared
            .insert(qos, expiry_secs, Cow::Owned(data), front)
    }

    /// The logger of this handle (the C layer logs every error it returns through it).
    pub fn logger(&self) -> &Logger {
        &self.shared.log
    }

    /// The bridge name of this handle.
    pub fn bridge(&self) -> &str {
        &self.shared.cfg.bridge
    }

    /// The next row in FIFO order, if the link is up and the window has room.
    pub fn lease(&self) -> Result<Option<Leased>> {
        let sh = &self.shared;
        for _ in 0..4 {
            let generation = {
                let mut st = sh.lock_open()?;
                if !st.link_up || st.inflight.len() as u32 >= st.window {
                    return Ok(None);
                }
                if st.messages <= st.inflight.len() as u64 {
                    return Ok(None);
                }
                let now = now_ms();
                while let Some(row) = st.ahead.pop_front().or_else(|| st.next_pending()) {
                    st.cursor = row.seq + 1;
                    if st.inflight.contains_key(&row.seq) {
                        continue;
                    }
                    if row.expires_at != 0 && now >= row.expires_at {
                        st.messages -= 1;
                        st.bytes -= row.data.len() as u64;
                        st.dropped_expired += 1;
                        if !st.remove_pending_insert(row.seq) {
                            st.push_delete(row.seq);
                        }
                        continue;
                    }
                    let dup = row.packet_id != 0;
                    if dup {
                        st.resent += 1;
                    }
                    st.inflight.insert(
                        row.seq,
                        Flight {
                            qos: row.qos,
                            packet_id: 0,
                            bytes: row.data.len() as u64,
                        },
                    );
                    let expiry_secs = if row.expires_at == 0 {
                        0
                    } else {
                        (((row.expires_at - now) + 999) / 1000).clamp(1, u32::MAX as i64) as u32
                    };
                    return Ok(Some(Leased {
                        seq: row.seq,
                        qos: row.qos,
                        packet_id: row.packet_id,
                        dup,
                        released: row.released,
                        expiry_secs,
                        data: row.data,
                    }));
                }
                st.generation
            };
            if !sh.refill(generation)? {
                return Ok(None);
            }
        }
        Ok(None)
    }

    /// Binds the packet id the row was sent with.
    pub fn bind(&self, seq: i64, packet_id: u16) -> Result<()> {
        if packet_id == 0 {
            return Err(Error::Invalid("packet id 0".into()));
        }
        let mut st = self.shared.lock_open()?;
        if let Some(&other) = st.by_pid.get(&packet_id) {
            if other != seq {
                return Err(Error::Invalid(format!(
                    "packet id {packet_id} is bound to row {other}, still in flight"
                )));
            }
        }
        let Some(f) = st.inflight.get_mut(&seq) else {
            return Err(Error::Invalid(format!("row {seq} is not in flight")));
        };
        let old = std::mem::replace(&mut f.packet_id, packet_id);
        if old != 0 && old != packet_id {
            st.by_pid.remove(&old);
        }
        st.by_pid.insert(packet_id, seq);
        match st.pending.inserts.iter_mut().find(|r| r.seq == seq) {
            Some(r) => r.packet_id = packet_id,
            None => st.pending.binds.push((seq, packet_id)),
        }
        st.pending_since.get_or_insert_with(Instant::now);
        let wake = st.writer_due(self.shared.cfg.group_commit_count);
        drop(st);
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(())
    }

    /// The send of a leased row failed locally: it goes back to the queue at its place.
    pub fn unlease(&self, seq: i64) -> Result<()> {
        let mut st = self.shared.lock_open()?;
        let Some(f) = st.inflight.remove(&seq) else {
            return Err(Error::Invalid(format!("row {seq} is not in flight")));
        };
        if f.packet_id != 0 {
            st.by_pid.remove(&f.packet_id);
        }
        st.reset_cursor(seq);
        Ok(())
    }

    /// An acknowledgement from the remote.
    pub fn ack(&self, packet_id: u16, kind: AckKind, reason: u8) -> Result<AckOutcome> {
        let sh = &self.shared;
        let mut st = sh.lock_open()?;
        let Some(&seq) = st.by_pid.get(&packet_id) else {
            return Ok(AckOutcome::NotOurs);
        };
        let qos = st.inflight[&seq].qos;
        let fits = matches!(
            (qos, kind),
            (1, AckKind::PubAck) | (2, AckKind::PubRec) | (2, AckKind::PubComp)
        );
        if !fits {
            drop(st);
            sh.log.warn(&format!(
                "bridge {:?}: {kind:?} for packet id {packet_id} of a QoS {qos} row, ignored",
                sh.cfg.bridge
            ));
            return Ok(AckOutcome::NotOurs);
        }
        // A PUBCOMP ends the exchange whatever its reason code: 0x92 (packet id not found)
        // answers a resumed PUBREL whose message the remote had already completed.
        let outcome = if reason >= 0x80 && kind != AckKind::PubComp {
            st.finish(seq);
            st.dropped_rejected += 1;
            AckOutcome::Rejected
        } else if kind == AckKind::PubRec {
            // Durable, so that after a restart the exchange resumes with PUBREL.
            match st.pending.inserts.iter_mut().find(|r| r.seq == seq) {
                Some(r) => r.released = true,
                None => st.pending.releases.push(seq),
            }
            st.pending_since.get_or_insert_with(Instant::now);
            AckOutcome::Progress
        } else {
            st.finish(seq);
            st.acked += 1;
            AckOutcome::Done
        };
        let wake = st.writer_due(sh.cfg.group_commit_count);
        drop(st);
        if wake {
            sh.wake.notify_one();
        }
        if outcome == AckOutcome::Rejected {
            sh.log.warn(&format!(
                "bridge {:?}: remote rejected packet id {packet_id} with reason 0x{reason:02x}; dropped",
                sh.cfg.bridge
            ));
        }
        Ok(outcome)
    }

    pub fn stats(&self) -> Result<Stats> {
        let sh = &self.shared;
        let db_oldest = {
            let mut db = sh.db.lock()?;
            match db.as_mut() {
                Some(store) => store.oldest_enqueued_at()?,
                None => return Err(Error::Closed),
            }
        };
        let st = sh.lock_open()?;
        let pending_oldest = st.pending.inserts.iter().map(|r| r.enqueued_at).min();
        let oldest = match (db_oldest, pending_oldest) {
            _ if st.messages == 0 => None,
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(Stats {
            messages: st.messages,
            bytes: st.bytes,
            inflight: st.inflight.len() as u64,
            enqueued: st.enqueued,
            acked: st.acked,
            resent: st.resent,
            dropped_full: st.dropped_full,
            dropped_expired: st.dropped_expired,
            dropped_rejected: st.dropped_rejected,
            oldest_age_ms: oldest.map_or(0, |t| (now_ms() - t).max(0) as u64),
            committed_seq: st.committed_seq,
            link_up: st.link_up,
            window: st.window,
        })
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        // Nobody is left to return an error to: log it.
        if let Err(e) = self.close() {
            self.shared.log.error(&format!(
                "close: final commit failed, pending writes lost: {e}"
            ));
        }
    }
}

impl Shared {
    fn lock_open(&self) -> Result<MutexGuard<'_, State>> {
        let st = self.state.lock()?;
        if st.closed {
            return Err(Error::Closed);
        }
        Ok(st)
    }

    fn check_open(&self) -> Result<()> {
        self.lock_open().map(drop)
    }

    /// Appends (`front` None) or puts at the head with the packet id it was sent with and
    /// whether its PUBREC came (QoS 2 only).
    fn insert(
        &self,
        qos: u8,
        expiry_secs: u32,
        data: Cow<'_, [u8]>,
        front: Option<(u16, bool)>,
    ) -> Result<i64> {
        check_qos(qos)?;
        if let Some((pid, true)) = front {
            if qos != 2 || pid == 0 {
                return Err(Error::Invalid(format!(
                    "released needs a QoS 2 message with a packet id (QoS {qos}, id {pid})"
                )));
            }
        }
        let len = data.len();
        let max = self.cfg.max_message_bytes as usize;
        if len > max {
            return Err(Error::TooBig { len, max });
        }
        // Backpressure: when the writer cannot keep up, or the last commit failed (disk full),
        // commit inline and refuse the message if that fails: nothing is accepted that cannot
        // be stored, and a full disk is reported at once.
        let limit = self.cfg.group_commit_count as usize * BACKPRESSURE;
        let mut st = self.lock_open()?;
        if st.write_failed || st.pending.len() >= limit {
            drop(st);
            self.flush_inner()?;
            st = self.lock_open()?;
        }
        if self.cfg.full_policy == FullPolicy::RejectNew {
            let c = &self.cfg;
            if (c.max_messages > 0 && st.messages >= c.max_messages)
                || (c.max_bytes > 0 && st.bytes + len as u64 > c.max_bytes)
            {
                st.dropped_full += 1;
                return Err(Error::Full);
            }
        }
        let now = now_ms();
        let seq = if front.is_some() {
            st.front_seq -= 1;
            let s = st.front_seq;
            st.reset_cursor(s);
            s
        } else {
            let s = st.next_seq;
            st.next_seq += 1;
            s
        };
        st.pending.inserts.push(Row {
            seq,
            qos,
            expires_at: if expiry_secs == 0 {
                0
            } else {
                now + expiry_secs as i64 * 1000
            },
            enqueued_at: now,
            packet_id: front.map_or(0, |f| f.0),
            released: front.is_some_and(|f| f.1),
            data: data.into_owned(),
        });
        st.pending_since.get_or_insert_with(Instant::now);
        st.messages += 1;
        st.bytes += len as u64;
        st.enqueued += 1;
        let wake = st.writer_due(self.cfg.group_commit_count);
        drop(st);
        if wake {
            self.wake.notify_one();
        }
        Ok(seq)
    }

    /// Commits the pending batch (and trims). On error the batch stays pending.
    fn flush_inner(&self) -> Result<()> {
        let mut db = self.db.lock()?;
        let Some(store) = db.as_mut() else {
            return Err(Error::Closed);
        };
        let (batch, trim) = {
            let mut st = self.state.lock()?;
            let trim = st.take_trim(&self.cfg);
            if st.pending.is_empty() && trim.messages == 0 && trim.bytes == 0 {
                return Ok(());
            }
            st.pending_since = None;
            st.writing = true;
            (std::mem::take(&mut st.pending), trim)
        };
        match store.write(&batch, &trim) {
            Ok(dropped) => {
                let mut st = self.state.lock()?;
                st.write_failed = false;
                st.writing = false;
                if let Some(max) = batch.inserts.iter().map(|r| r.seq).max() {
                    st.committed_seq = st.committed_seq.max(max);
                }
                if !dropped.is_empty() {
                    let gone: HashSet<i64> = dropped.iter().map(|d| d.0).collect();
                    st.ahead.retain(|r| !gone.contains(&r.seq));
                    for (_, b) in &dropped {
                        st.messages -= 1;
                        st.bytes -= b;
                    }
                    st.dropped_full += dropped.len() as u64;
                }
                drop(st);
                drop(db);
                if !dropped.is_empty() {
                    self.log.warn(&format!(
                        "bridge {:?}: limit reached, dropped the {} oldest messages",
                        self.cfg.bridge,
                        dropped.len()
                    ));
                }
                Ok(())
            }
            Err(e) => {
                let mut st = self.state.lock()?;
                st.write_failed = true;
                st.writing = false;
                let newer = &mut st.pending;
                batch.prepend_to(newer);
                st.pending_since.get_or_insert_with(Instant::now);
                drop(st);
                drop(db);
                self.log.error(&format!(
                    "bridge {:?}: commit failed, {} writes kept in memory: {e}",
                    self.cfg.bridge,
                    self.state.lock().map(|s| s.pending.len()).unwrap_or(0)
                ));
                Err(e)
            }
        }
    }

    /// Commits, then reads the next rows after the cursor. False when there is nothing to read.
    fn refill(&self, generation: u64) -> Result<bool> {
        // Rows still in the pending batch must be on disk before the read. Acked rows whose
        // delete is still pending need no commit: they are filtered out below.
        if !self.lock_open()?.pending.inserts.is_empty() {
            self.flush_inner()?;
        }
        let mut db = self.db.lock()?;
        let Some(store) = db.as_mut() else {
            return Err(Error::Closed);
        };
        let (cursor, want) = {
            let st = self.lock_open()?;
            if st.generation != generation {
                return Ok(true);
            }
            let want = (st.window as usize * 4).clamp(READ_AHEAD_MIN, READ_AHEAD_MAX);
            (st.cursor, want)
        };
        let mut rows = store.read_from(cursor, want)?;
        // Installed with the db lock still held: no commit can slip in between.
        let mut st = self.lock_open()?;
        if st.generation != generation || !st.ahead.is_empty() || st.cursor != cursor {
            return Ok(true);
        }
        if rows.is_empty() {
            return Ok(!st.pending.inserts.is_empty());
        }
        // Writes still pending apply to what was read: deletes hide acked rows, binds give
        // the packet id a resend must reuse.
        if !st.pending.deletes.is_empty() {
            let gone: HashSet<i64> = st.pending.deletes.iter().copied().collect();
            rows.retain(|r| !gone.contains(&r.seq));
        }
        if !st.pending.binds.is_empty() {
            let pids: HashMap<i64, u16> = st.pending.binds.iter().copied().collect();
            for r in rows.iter_mut() {
                if let Some(&pid) = pids.get(&r.seq) {
                    r.packet_id = pid;
                }
            }
        }
        if !st.pending.releases.is_empty() {
            let released: HashSet<i64> = st.pending.releases.iter().copied().collect();
            for r in rows.iter_mut() {
                r.released |= released.contains(&r.seq);
            }
        }
        st.ahead = rows.into();
        st.generation += 1;
        Ok(true)
    }

    /// The group-commit thread: commits when `group_commit_count` writes are pending or the
    /// oldest pending write is `group_commit_ms` old. Backs off after a failed commit.
    fn writer_loop(&self) {
        let ms = Duration::from_millis(self.cfg.group_commit_ms as u64);
        let count = self.cfg.group_commit_count as usize;
        let mut failures = 0u64;
        loop {
            let Ok(mut st) = self.state.lock() else {
                return;
            };
            if failures > 0 {
                let backoff = Duration::from_millis(100 * failures.min(10));
                st = match self.wake.wait_timeout(st, backoff) {
                    Ok((g, _)) => g,
                    Err(_) => return,
                };
            }
            loop {
                if st.closed {
                    return;
                }
                let waited = match st.pending_since {
                    None => self.wake.wait(st).ok(),
                    Some(t) => {
                        let left = ms.saturating_sub(t.elapsed());
                        if st.pending.len() >= count || left.is_zero() {
                            break;
                        }
                        self.wake.wait_timeout(st, left).map(|(g, _)| g).ok()
                    }
                };
                st = match waited {
                    Some(g) => g,
                    None => return,
                };
            }
            drop(st);
            match self.flush_inner() {
                Ok(()) => failures = 0,
                Err(Error::Closed) => return,
                Err(_) => failures += 1,
            }
        }
    }
}
