//! The outbox logic: routing of new messages, the replay window, packet ids, acks, limits,
//! expiry and counters. Pure Rust; storage is in `store`, the C ABI in `ffi`.
//!
//! Thread safety: [`Outbox`] is `Send + Sync`; every method may be called from any thread.
//! No method calls back into the caller except the log sink of the config.

use crate::config::{Config, FullPolicy};
use crate::error::{Error, Result};
use crate::files::{self, FileState};
use crate::log::Logger;
use crate::notify::Notifier;
use crate::store::{copy_bytes, now_ms, Batch, Row, Store, Written};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::os::fd::RawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod adopt;
mod import;
mod insert;
mod packet_ids;
mod qos0;
mod readahead;
mod refusal;
mod registry;
mod remote;
mod replay;
mod state;
mod trim;
mod types;
mod watch;
mod writer;
#[cfg(test)]
mod writer_tests;

pub use packet_ids::RowKind;
pub use registry::{close_all, exit_all, stats_all};
use state::{Flight, State};
pub use types::*;
pub use watch::{CommitHook, Committer};
pub(crate) use writer::on_writer_thread;
use writer::ACKS_DUE;

/// Pending appends beyond `group_commit_count * BACKPRESSURE` (or pending acks beyond
/// `ACKS_DUE * BACKPRESSURE`) make `append` commit inline.
const BACKPRESSURE: usize = 8;
/// ...and beyond which `append` commits inline: accepted rows not yet on disk always fit in
/// the reserve released when the disk fills.
const PENDING_BYTES_MAX: u64 = crate::store::RESERVE_BYTES / 4;

/// Locks a mutex whatever an earlier panic left: every update under these locks keeps the
/// state usable (counters saturate), so a caught panic never leaves a handle dead.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Shared {
    cfg: Config,
    log: Logger,
    state: Mutex<State>,
    /// Wakes the writer thread: new pending writes, or close.
    wake: Condvar,
    /// The connection. Lock order: `db` before `state`.
    db: Mutex<Option<Store>>,
    /// The commit signal, made on the first `commit_fd` call (hosts that never ask pay nothing).
    notify: OnceLock<Notifier>,
    /// Serialises the making of `notify`.
    notify_init: Mutex<()>,
    /// The writer thread, until `close` joins it.
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Told of every commit that advanced `committed_seq`, and of the close (`watch.rs`):
    /// an ack gate's, set once (with its owner's id).
    hook: OnceLock<(usize, CommitHook)>,
}

/// One bridge's durable outbox.
pub struct Outbox {
    shared: Arc<Shared>,
}

fn check_qos(qos: u8) -> Result<()> {
    if qos > 2 {
        return Err(Error::Invalid(format!("QoS {qos} is not 0, 1 or 2")));
    }
    Ok(())
}

impl Outbox {
    /// Opens (or creates) the database and resumes every committed row of this bridge in order;
    /// rows in flight at the last close or crash become queued again. When `cfg.path` is a
    /// directory the file is `<dir>/nmq_outbox-<bridge>.db` (see [`files::db_file_for`]).
    /// A corrupt file is renamed aside (`<path>.corrupt-<unix secs>`) and a fresh store is
    /// opened, with an error logged. [`Error::Busy`] when this bridge of this file is open in
    /// this process already, or another process holds the file.
    pub fn open(cfg: Config) -> Result<Outbox> {
        let mut cfg = cfg.validate()?;
        let dir = cfg.path.clone();
        cfg.path = files::resolve(&cfg.path, &cfg.bridge);
        let per_bridge = cfg.path != dir;
        let log = cfg.logger.clone();
        let (mut store, mut resume) = Store::open(&cfg, &log)?;
        // One file per bridge replaced one file shared by all bridges (`<dir>/nmq_outbox.db`):
        // a new per-bridge file first takes this bridge's rows from there.
        let legacy = dir.join(files::LEGACY_FILE);
        if per_bridge && resume.max_seq.is_none() && legacy.is_file() {
            match store.adopt_legacy(&legacy, &cfg.bridge, &log) {
                Ok(0) => {}
                Ok(n) => {
                    resume = store.resume()?;
                    log.info(&format!(
                        "bridge {:?}: moved {n} messages from the shared file {} to {}",
                        cfg.bridge,
                        legacy.display(),
                        cfg.path.display()
                    ));
                }
                Err(e) => log.error(&format!(
                    "bridge {:?}: its messages in {} could not be moved to {} (they stay \
                     there): {e}",
                    cfg.bridge,
                    legacy.display(),
                    cfg.path.display()
                )),
            }
        }
        if cfg.max_message_bytes as usize > store.max_row() {
            log.warn(&format!(
                "max_message_bytes {} is above what SQLite stores in a row; using {}",
                cfg.max_message_bytes,
                store.max_row()
            ));
            cfg.max_message_bytes = store.max_row().min(u32::MAX as usize) as u32;
        }
        let space_low = !store.has_reserve();
        let next_seq = resume.max_seq.map_or(1, |m| m.max(0) + 1);
        let state = State {
            closed: false,
            exiting: false,
            link_up: false,
            window: cfg.window,
            next_seq,
            front_seq: resume.min_seq.unwrap_or(next_seq).min(next_seq),
            cursor: i64::MIN,
            ahead: VecDeque::new(),
            generation: 0,
            inflight: BTreeMap::new(),
            by_pid: HashMap::new(),
            next_pid: packet_ids::FIRST_PACKET_ID,
            pending: Batch::default(),
            pending_bytes: 0,
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
            dropped_malformed: 0,
            dropped_unwritten: 0,
            refused_nospace: 0,
            lost_fallback_queue: 0,
            lost_fallback_send: 0,
            dropped_qos0: 0,
            fallbacks: 0,
            write_failed: false,
            space_low,
            last_reserve_try: space_low.then(Instant::now),
            writing: false,
            kicked: false,
            writer_deadline: None,
            commits_unchecked: 0,
            checkpoint_due: false,
            checkpoints: 0,
            checkpointing: false,
            limits: remote::Limits::default(),
            learned_max_qos: 2,
            qos_downgraded: 0,
            retain_cleared: 0,
            dead_letters: resume.dead,
            dead_lettered: 0,
            dropped_dead_letters: 0,
            backoffs: 0,
            backoff_until: None,
            backoff_step: 0,
            probe: false,
            probe_until: i64::MIN,
            last_send: None,
            last_ack: None,
            acks_ignored: 0,
            send_no: 0,
            ping_marks: VecDeque::new(),
            ping_lost_track: false,
        };
        let shown = std::fs::canonicalize(&cfg.path).unwrap_or_else(|_| cfg.path.clone());
        log.info(&format!(
            "nmq-outbox {}: bridge {} -> {}, {} messages waiting",
            env!("CARGO_PKG_VERSION"),
            cfg.bridge,
            shown.display(),
            resume.messages
        ));
        if space_low {
            log.warn(&format!(
                "bridge {:?}: no room for the {} byte reserve beside {}: every message is \
                 committed before it is accepted until there is",
                cfg.bridge,
                crate::store::RESERVE_BYTES,
                shown.display()
            ));
        }
        let shared = Arc::new(Shared {
            cfg,
            log,
            state: Mutex::new(state),
            wake: Condvar::new(),
            db: Mutex::new(Some(store)),
            notify: OnceLock::new(),
            notify_init: Mutex::new(()),
            writer: Mutex::new(None),
            hook: OnceLock::new(),
        });
        let worker = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("nmq-outbox-writer".into())
            .spawn(move || worker.writer_loop())
            .map_err(|e| Error::Io(format!("cannot start the writer thread: {e}")))?;
        *lock(&shared.writer) = Some(writer);
        registry::register(&shared);
        Ok(Outbox { shared })
    }

    /// Commits everything pending and stops the writer thread. Idempotent; afterwards every
    /// other call returns `Error::Closed` (`stats` still answers, with the last counters).
    /// Accepted rows the final commit could not write are counted in `dropped_unwritten`.
    pub fn close(&self) -> Result<()> {
        self.shared.close()
    }

    /// Commits every pending write now.
    pub fn flush(&self) -> Result<()> {
        self.shared.check_open()?;
        self.shared.flush_inner()
    }

    /// The link is up (after a successful CONNACK). `receive_maximum` 0 = not announced.
    /// Session present assumed, and no other limit known: for hosts that do not pass the
    /// CONNACK ([`Outbox::link_up_connack`] does).
    pub fn link_up(&self, receive_maximum: u16) -> Result<()> {
        let sh = &self.shared;
        let mut st = sh.lock_open()?;
        st.link_up = true;
        st.limits = remote::Limits::default().learned(st.learned_max_qos);
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
        st.drop_flight();
        Ok(())
    }

    /// Whether the link is up (from `link_up` to `link_down`). Reads the state alone: never
    /// waits for a commit (which holds the store), unlike [`Outbox::stats`]. The host asks it
    /// for every QoS 0 forward without `retry_qos_0`.
    pub fn link_is_up(&self) -> Result<bool> {
        Ok(self.shared.lock_open()?.link_up)
    }

    /// Send now only when the link is up, nothing is held and the window has room.
    pub fn decide(&self, qos: u8) -> Result<Decision> {
        check_qos(qos)?;
        let st = self.shared.lock_open()?;
        Ok(if st.may_send_now(qos, &self.shared.cfg) {
            Decision::SendNow
        } else {
            Decision::Store
        })
    }

    /// Appends at the tail. Returns the row's seq. Durable after the next group commit. After
    /// a failed commit the message is committed before this returns; while the disk is full
    /// (`Stats::space_low`) it is refused with `NoSpace`.
    pub fn append(&self, msg: &NewMessage<'_>) -> Result<i64> {
        self.shared
            .insert(msg.qos, msg.expiry_secs, Cow::Borrowed(msg.data), None)
    }

    /// Puts a message that was sent directly and lost its link back at the head, before every
    /// held row. For several such messages call it newest first. `packet_id` is the id it was
    /// sent with (0 if none): the replay hands it out again with DUP, so a remote session that
    /// still holds that id (QoS 2) sees a duplicate, not a new message. Returns its seq.
    pub fn requeue_front(&self, msg: &NewMessage<'_>, packet_id: u16) -> Result<i64> {
        self.requeue(msg, packet_id, false)
    }

    /// `requeue_front`, for a QoS 2 message whose PUBREC may already have come (`released`):
    /// the replay then hands it out as released, to be resumed with PUBREL on `packet_id`.
    pub fn requeue(&self, msg: &NewMessage<'_>, packet_id: u16, released: bool) -> Result<i64> {
        if released && (msg.qos != 2 || packet_id == 0) {
            return Err(Error::Invalid(
                "only a QoS 2 message with its packet id can be released".into(),
            ));
        }
        self.shared.insert(
            msg.qos,
            msg.expiry_secs,
            Cow::Borrowed(msg.data),
            Some((packet_id, released)),
        )
    }

    /// `append` (`front` None) or `requeue` of bytes the caller already owns: no copy.
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

    /// The database file (resolved: a directory in the config gives the per-bridge file).
    pub fn path(&self) -> &std::path::Path {
        &self.shared.cfg.path
    }

    /// The largest message `append` accepts (the config's, capped by what SQLite stores).
    pub fn max_message_bytes(&self) -> usize {
        self.shared.cfg.max_message_bytes as usize
    }

    /// The host lost `n` messages that this outbox had refused (`NoSpace`, `Io`, `Closed`,
    /// `TooBig`) on its own fallback path: counted by reason (saturating), so that every message
    /// is acknowledged or counted. Also after `close` (the counters stay readable).
    pub fn count_lost(&self, reason: LostReason, n: u64) {
        let mut st = lock(&self.shared.state);
        let c = match reason {
            LostReason::QueueFull => &mut st.lost_fallback_queue,
            LostReason::SendFailed => &mut st.lost_fallback_send,
        };
        *c = c.saturating_add(n);
    }

    /// Counts `n` host events of kind `what` (see [`HostEvent`]) and returns the new total.
    /// Works on a closed handle too (a refusal at shutdown takes the host's path).
    pub fn count_event(&self, what: HostEvent, n: u64) -> u64 {
        let mut st = lock(&self.shared.state);
        let c = match what {
            HostEvent::Qos0Dropped => &mut st.dropped_qos0,
            HostEvent::Fallback => &mut st.fallbacks,
        };
        *c = c.saturating_add(n);
        *c
    }

    /// Commits the pending appends and PUBRECs on the calling thread (acks and packet ids
    /// stay the writer's, `ack_linger_ms`). Behind a running commit (another caller's, the
    /// writer's acks) it waits for it, then commits what came meanwhile or finds its appends
    /// committed: a group commit without a hand-over. Never behind the writer's checkpoint
    /// (an fsync): then the writer is woken to commit the rest after it, `Ok(false)` (the
    /// commit descriptor tells when). `Ok(true)`: every append made before the call is
    /// committed (`committed_seq` covers it). An error: the commit failed, the writes stay
    /// pending and the writer retries them. For a host with `caller_commits` (its appends do
    /// not wake the writer); any host may call it.
    pub fn commit(&self) -> Result<bool> {
        self.shared.commit()
    }

    /// Ack after commit (issue 13): a descriptor that becomes readable when a commit advanced
    /// [`Outbox::committed_seq`]; reading that seq drains it. Owned by the handle (closed when
    /// it is dropped): never close or read it yourself. Made on the first call; later calls
    /// give the same descriptor. Also after `close` (then it is never signalled again).
    pub fn commit_fd(&self) -> Result<RawFd> {
        let sh = &self.shared;
        if let Some(n) = sh.notify.get() {
            return Ok(n.fd());
        }
        let _g = lock(&sh.notify_init);
        if let Some(n) = sh.notify.get() {
            return Ok(n.fd());
        }
        let n = Notifier::new()?;
        let fd = n.fd();
        let _ = sh.notify.set(n);
        Ok(fd)
    }

    /// Drains the commit descriptor (when one was made), then returns the committed seq:
    /// every append whose seq is <= it is on disk, or is gone for good and counted (delivered
    /// to the remote, dropped by `drop_oldest` or expiry, refused by SQLite at commit) before a
    /// commit wrote it. Appends are numbered in the order they were accepted, so one commit
    /// releases every seq up to it. Also after `close` (the last value).
    pub fn committed_seq(&self) -> i64 {
        if let Some(n) = self.shared.notify.get() {
            n.drain();
        }
        lock(&self.shared.state).committed_seq
    }

    /// The counters. Also after `close` (the last values; `oldest_age_ms` is then 0).
    pub fn stats(&self) -> Result<Stats> {
        self.shared.stats()
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        // Nobody is left to return an error to: log it.
        if let Err(e) = self.close() {
            let lost = lock(&self.shared.state).dropped_unwritten;
            self.shared.log.error(&format!(
                "close: final commit failed, {lost} accepted messages lost: {e}"
            ));
        }
    }
}

impl Shared {
    /// See [`Outbox::close`].
    fn close(&self) -> Result<()> {
        let sh = self;
        {
            let mut st = lock(&sh.state);
            if st.closed {
                return Ok(());
            }
            st.closed = true;
        }
        sh.wake.notify_all();
        if let Some(w) = lock(&sh.writer).take() {
            let _ = w.join();
        }
        // An error is returned, not logged: the caller (or Drop) reports it once.
        let res = sh.flush_inner();
        if res.is_err() {
            let mut st = lock(&sh.state);
            let lost = st.pending.inserts.len() as u64;
            st.dropped_unwritten = st.dropped_unwritten.saturating_add(lost);
        }
        // The connection closes before the file's claim is released (Store's field order).
        lock(&sh.db).take();
        // An ack gate answers what still waits on this outbox (no lock of ours held).
        let last = lock(&sh.state).committed_seq;
        sh.tell_hook(last, true);
        res
    }

    /// See [`Outbox::stats`].
    fn stats(&self) -> Result<Stats> {
        let sh = self;
        let db_oldest = match lock(&sh.db).as_mut() {
            Some(store) => store.oldest_enqueued_at()?,
            None => None,
        };
        let st = lock(&sh.state);
        let pending_oldest = st.pending.inserts.iter().map(|r| r.enqueued_at).min();
        let oldest = match (db_oldest, pending_oldest) {
            _ if st.messages == 0 || st.closed => None,
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
            dropped_malformed: st.dropped_malformed,
            dropped_unwritten: st.dropped_unwritten,
            refused_nospace: st.refused_nospace,
            lost_fallback_queue: st.lost_fallback_queue,
            lost_fallback_send: st.lost_fallback_send,
            oldest_age_ms: oldest.map_or(0, |t| (now_ms() - t).max(0) as u64),
            committed_seq: st.committed_seq,
            link_up: st.link_up,
            window: st.window,
            space_low: st.space_low,
            qos_downgraded: st.qos_downgraded,
            retain_cleared: st.retain_cleared,
            dead_letters: st.dead_letters,
            dead_lettered: st.dead_lettered,
            dropped_dead_letters: st.dropped_dead_letters,
            backoffs: st.backoffs,
            backing_off: st.backing_off(),
            probing: st.probe,
            acks_ignored: st.acks_ignored,
            dropped_qos0: st.dropped_qos0,
            fallbacks: st.fallbacks,
        })
    }

    fn lock_open(&self) -> Result<MutexGuard<'_, State>> {
        let st = lock(&self.state);
        if st.closed {
            return Err(Error::Closed);
        }
        Ok(st)
    }

    fn check_open(&self) -> Result<()> {
        self.lock_open().map(drop)
    }

    /// After a commit advanced the committed seq to `seq` (no lock of ours held): makes the
    /// commit descriptor readable, when a host asked for it, and tells the hook.
    fn signal_commit(&self, seq: i64) {
        if let Some(n) = self.notify.get() {
            n.signal();
        }
        self.tell_hook(seq, false);
    }

    /// Commits the pending appends on the calling thread (`Outbox::commit`).
    pub(super) fn commit(&self) -> Result<bool> {
        let sh = self;
        let checkpointing = {
            let st = sh.lock_open()?;
            if st.pending.messages() == 0 && !st.writing {
                // nothing of ours to commit (acks are the writer's)
                return Ok(true);
            }
            st.checkpointing
        };
        // Group commit without a hand-over: behind a running commit (a caller's, or the
        // writer's acks) this waits for it, then commits what came meanwhile, or finds it
        // committed by the commit it waited for. Never behind a checkpoint (an fsync).
        let res = if checkpointing {
            sh.try_flush()
        } else {
            Some(sh.flush_locked(lock(&sh.db), true))
        };
        match res {
            Some(Ok(())) => Ok(true),
            Some(Err(e)) => {
                sh.wake.notify_one();
                Err(e)
            }
            None => {
                let mut st = lock(&sh.state);
                let wake = !st.kicked && !st.pending.is_empty();
                st.kicked |= wake;
                drop(st);
                if wake {
                    sh.wake.notify_one();
                }
                Ok(false)
            }
        }
    }

    fn refused(&self, e: &Error) {
        if *e == Error::NoSpace {
            let mut st = lock(&self.state);
            st.refused_nospace = st.refused_nospace.saturating_add(1);
        }
    }
}
