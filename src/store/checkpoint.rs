//! WAL checkpoints off the commit path.
//!
//! SQLite's autocheckpoint runs a passive checkpoint inside the commit that brings the WAL to
//! 1000 pages: that commit waits for two fsyncs (the WAL's, then the database's), and so does
//! every commit behind it. With `ack_after_commit`, every publisher's ack waits behind it too
//! (issue 21 item 4: about 20 of 3 200 commits took 6 to 9 ms each, a fifth of the run's time,
//! and the publishers' windows stood still meanwhile).
//!
//! Here a thread of the store's own, with a connection of its own, runs that checkpoint while
//! the writer goes on committing: in WAL mode a checkpoint and a writer run side by side. The
//! WAL starts again from its beginning only at a write that finds every frame copied into the
//! database, so the writer finishes the job: once the thread's checkpoint leaves fewer than
//! [`FINISH`] frames, the writer checkpoints those itself (little to sync) and its next commit
//! restarts the WAL. Whatever the thread manages, at [`CAP`] frames the writer checkpoints, as
//! SQLite would: the WAL stays bounded.
//!
//! The thread starts at the first checkpoint the store needs (an idle store has none). It holds
//! no lock of the library while it checkpoints or logs, and it is joined when the store closes.

use crate::config::SyncMode;
use crate::error::{Error, Result};
use crate::log::Logger;
use rusqlite::{ffi, Connection};
use std::ffi::{c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// WAL frames (pages) at which a checkpoint starts: SQLite's autocheckpoint default.
pub const START: i64 = 1000;
/// Frames the thread's checkpoint may leave for the writer's own (the writer syncs them).
pub const FINISH: i64 = 100;
/// Frames at which the writer checkpoints whatever the thread did (a bound on the WAL:
/// 8 000 pages of 4 KiB are 32 MiB).
pub const CAP: i64 = 8000;

/// What the writer does after a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Nothing,
    /// Ask the thread for a checkpoint.
    Ask,
    /// Checkpoint on the writer's connection (short, or the bound is reached).
    Here,
}

/// The thread's checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Thread {
    Idle,
    Running,
    /// Done: this many frames of the WAL are in the database (a failed or busy checkpoint
    /// counts as none).
    Done(i64),
}

/// When to checkpoint where (the decisions alone, for tests).
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub thread: Thread,
    /// WAL frames when the thread was last asked.
    asked_at: i64,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            thread: Thread::Idle,
            asked_at: 0,
        }
    }
}

impl Plan {
    /// After a commit that left `frames` in the WAL. `thread_ok`: the thread can be asked (it
    /// could be started); without it the writer checkpoints at [`START`], as SQLite would.
    pub fn after_commit(&mut self, frames: i64, thread_ok: bool) -> Step {
        let step = match self.thread {
            // the bound holds even while the thread's checkpoint hangs (a disk that takes
            // seconds per fsync, or a thread gone): the writer's try returns at once when the
            // thread holds SQLite's checkpoint lock
            Thread::Running if frames >= CAP => return Step::Here,
            Thread::Running => Step::Nothing,
            _ if frames >= CAP || (!thread_ok && frames >= START) => Step::Here,
            _ if !thread_ok => Step::Nothing,
            Thread::Idle if frames >= START => Step::Ask,
            Thread::Idle => Step::Nothing,
            // the WAL started again meanwhile: what was copied belonged to the old one
            Thread::Done(copied) if frames < copied => {
                self.thread = Thread::Idle;
                return self.after_commit(frames, thread_ok);
            }
            Thread::Done(copied) if frames - copied < FINISH => Step::Here,
            // more to copy: again, once the WAL grew since the last ask (a reader that holds
            // the WAL back must not turn every commit into a checkpoint)
            Thread::Done(_) if frames.saturating_sub(self.asked_at) >= FINISH => Step::Ask,
            Thread::Done(_) => Step::Nothing,
        };
        match step {
            Step::Ask => {
                self.thread = Thread::Running;
                self.asked_at = frames;
            }
            Step::Here => self.thread = Thread::Idle,
            Step::Nothing => {}
        }
        step
    }
}

struct Shared {
    plan: Plan,
    /// The thread is to checkpoint.
    asked: bool,
    stop: bool,
    /// The thread could not start or open its connection: the writer checkpoints.
    broken: bool,
    /// Checkpoints the thread ran.
    runs: u64,
}

impl Shared {
    /// The thread cannot checkpoint (not started, or no connection): the writer does, as
    /// SQLite would, and nothing is asked of the thread any more.
    fn give_up(&mut self) {
        self.broken = true;
        self.asked = false;
        self.plan.thread = Thread::Idle;
    }
}

struct Inner {
    st: Mutex<Shared>,
    wake: Condvar,
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The checkpoint thread of one store, and the WAL frame count its writer connection reports.
pub struct Checkpointer {
    /// Frames in the WAL after the last commit, from SQLite's WAL hook. Boxed: the hook
    /// holds its address until the connection closes or the hook is removed.
    frames: Box<AtomicI64>,
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
    sync: SyncMode,
    log: Logger,
    bridge: String,
}

/// SQLite's WAL hook (after every commit on the connection, with no SQLite mutex of ours held):
/// notes the frame count of the main database's WAL (an attached one, `adopt_legacy`'s, is
/// not ours to count). Replaces SQLite's autocheckpoint, which is that hook too.
unsafe extern "C" fn wal_frames(
    arg: *mut c_void,
    _db: *mut ffi::sqlite3,
    name: *const c_char,
    frames: c_int,
) -> c_int {
    // SAFETY: SQLite passes the schema's NUL-terminated name, valid during the call.
    if name.is_null() || unsafe { std::ffi::CStr::from_ptr(name) }.to_bytes() != b"main" {
        return ffi::SQLITE_OK;
    }
    // SAFETY: `arg` is the address of a Checkpointer's boxed counter, set by `install` and
    // removed (`uninstall`) or its connection closed before the box is freed.
    unsafe { (*(arg as *const AtomicI64)).store(frames as i64, Ordering::Relaxed) };
    ffi::SQLITE_OK
}

impl Checkpointer {
    pub fn new(path: &Path, sync: SyncMode, log: &Logger, bridge: &str) -> Self {
        Checkpointer {
            frames: Box::new(AtomicI64::new(0)),
            inner: Arc::new(Inner {
                st: Mutex::new(Shared {
                    plan: Plan::default(),
                    asked: false,
                    stop: false,
                    broken: false,
                    runs: 0,
                }),
                wake: Condvar::new(),
            }),
            thread: None,
            path: path.to_path_buf(),
            sync,
            log: log.clone(),
            bridge: bridge.to_string(),
        }
    }

    /// A new checkpointer for the same file (the store's connection was opened again). This
    /// one is dropped: its thread ends.
    pub fn fresh(self) -> Checkpointer {
        Checkpointer::new(&self.path, self.sync, &self.log, &self.bridge)
    }

    /// Takes the WAL hook of `conn` (SQLite's autocheckpoint is off from now on). `conn` must
    /// be closed, or [`Checkpointer::uninstall`] called, before this checkpointer is dropped.
    pub fn install(&self, conn: &Connection) {
        let arg = &*self.frames as *const AtomicI64 as *mut c_void;
        // SAFETY: a valid open connection; `arg` outlives the hook (see above).
        unsafe { ffi::sqlite3_wal_hook(conn.handle(), Some(wal_frames), arg) };
    }

    /// Gives the WAL hook of `conn` back (no hook, no autocheckpoint).
    pub fn uninstall(conn: &Connection) {
        // SAFETY: a valid open connection; removing a hook frees nothing.
        unsafe { ffi::sqlite3_wal_hook(conn.handle(), None, std::ptr::null_mut()) };
    }

    /// Frames in the WAL after the last commit.
    pub fn frames(&self) -> i64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// Checkpoints the thread ran.
    pub fn runs(&self) -> u64 {
        lock(&self.inner.st).runs
    }

    /// After a commit on the writer's connection: asks the thread, or says to checkpoint here.
    /// With the line to log when the thread could not start (the caller holds the store: it
    /// logs once no lock is held).
    pub fn after_commit(&mut self) -> (Step, Option<String>) {
        let frames = self.frames();
        let mut st = lock(&self.inner.st);
        let thread_ok = !st.broken;
        let step = st.plan.after_commit(frames, thread_ok);
        if step != Step::Ask {
            return (step, None);
        }
        st.asked = true;
        drop(st);
        if self.thread.is_some() {
            self.inner.wake.notify_one();
            return (Step::Nothing, None);
        }
        match self.start() {
            Ok(h) => {
                self.thread = Some(h);
                (Step::Nothing, None)
            }
            Err(e) => {
                lock(&self.inner.st).give_up();
                let note = format!(
                    "cannot start the checkpoint thread ({e}); the writer checkpoints the WAL \
                     itself"
                );
                (Step::Here, Some(note))
            }
        }
    }

    fn start(&self) -> Result<JoinHandle<()>> {
        let inner = self.inner.clone();
        let (path, sync, log, bridge) = (
            self.path.clone(),
            self.sync,
            self.log.clone(),
            self.bridge.clone(),
        );
        std::thread::Builder::new()
            .name("nmq-outbox-ckpt".into())
            .spawn(move || run(&inner, &path, sync, &log, &bridge))
            .map_err(|e| Error::Io(format!("cannot start a thread: {e}")))
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        lock(&self.inner.st).stop = true;
        self.inner.wake.notify_all();
        if let Some(h) = self.thread.take() {
            let _ = h.join();
        }
    }
}

/// The thread's connection: the store's file and `synchronous` (a checkpoint's fsyncs follow it).
fn connect(path: &Path, sync: SyncMode) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_millis(
        crate::config::DEFAULT_BUSY_TIMEOUT_MS as u64,
    ))?;
    conn.execute_batch(sync.pragma())?;
    conn.execute_batch("PRAGMA wal_autocheckpoint=0;")?;
    Ok(conn)
}

/// A passive checkpoint (copies what no reader still needs, never waits for one): the frames
/// of the WAL now in the database (0 when busy).
pub(super) fn checkpoint(conn: &Connection) -> Result<i64> {
    let copied: i64 = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(2))?;
    Ok(copied.max(0))
}

/// The checkpoint thread: a checkpoint per ask, until the store closes. Logs a failure once
/// (and when checkpoints work again), with no lock held.
fn run(inner: &Inner, path: &Path, sync: SyncMode, log: &Logger, bridge: &str) {
    let conn = match connect(path, sync) {
        Ok(c) => c,
        Err(e) => {
            lock(&inner.st).give_up();
            log.warn(&format!(
                "bridge {bridge:?}: the checkpoint thread cannot open the database ({e}); the \
                 writer checkpoints the WAL itself"
            ));
            return;
        }
    };
    let mut failing = false;
    loop {
        let mut st = lock(&inner.st);
        while !st.asked && !st.stop {
            st = inner.wake.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        if st.stop {
            return;
        }
        st.asked = false;
        drop(st);
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| checkpoint(&conn)))
            .unwrap_or_else(|_| Err(Error::Io("a checkpoint panicked (a bug)".into())));
        let mut st = lock(&inner.st);
        st.runs = st.runs.saturating_add(1);
        st.plan.thread = Thread::Done(*res.as_ref().unwrap_or(&0));
        drop(st);
        match res {
            Err(e) if !failing => {
                failing = true;
                log.warn(&format!("bridge {bridge:?}: WAL checkpoint failed: {e}"));
            }
            Ok(_) if failing => {
                failing = false;
                log.info(&format!("bridge {bridge:?}: WAL checkpoints work again"));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
#[path = "checkpoint_tests.rs"]
mod tests;
