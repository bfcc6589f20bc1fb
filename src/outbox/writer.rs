//! The group commit: the writer thread, commits (by callers or the writer), the WAL
//! checkpoint, a full disk, a database file deleted while open. What they find to log is noted
//! and logged once no lock of ours is held (the log callback's promise).

use super::*;

/// Pending acks and packet ids of the replay (deletes and binds) that start a commit at once.
/// They do not count toward `group_commit_count` (which counts messages): they ride with the
/// next commit of appends, or the `group_commit_ms` timer, or this many of them. A crash can
/// lose only acks of that window, and then resends those rows (duplicates, never a loss). Issue
/// 11: a drain committed every 50 messages (a bind and a delete each), and the writer thread's
/// commits were the outbox's extra CPU per message (benches/README.md, "replay profile").
pub(super) const ACKS_DUE: usize = 4096;

/// Data of pending inserts that starts a commit at once (like `group_commit_count` rows)...
pub(super) const PENDING_BYTES_DUE: u64 = crate::store::RESERVE_BYTES / 8;

/// While the disk is full, how often a commit tries to put the reserve back.
pub(super) const RESERVE_RETRY: Duration = Duration::from_secs(1);

/// `caller_commits`: the writer checkpoints the WAL after this many commits (SQLite's own
/// autocheckpoint runs at 1000 pages; a commit of the mode writes one to three).
pub(super) const CHECKPOINT_COMMITS: u32 = 300;

thread_local! {
    /// This thread is an outbox's writer thread.
    static ON_WRITER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the calling thread is an outbox's writer thread (what its commits release is sent
/// by another thread: `crate::gate`).
pub(crate) fn on_writer_thread() -> bool {
    ON_WRITER.with(|w| w.get())
}

/// What a commit did: written (with the rows SQLite refused), or failed with what is unwritten.
pub(super) enum Commit {
    Done(Written),
    Failed(Error, Batch),
}

impl State {
    /// Whether the writer thread must be woken after a write was added: it starts a batch
    /// (the writer then arms its `group_commit_ms` timer, which bounds every write of it) or
    /// makes one due (`commit_due`). Other writes, and writes while a notify is still unseen,
    /// wake nobody.
    ///
    /// With `group_commit_ms` below `ack_linger_ms`, the first append of a batch that held
    /// acks alone wakes the writer too: its timer is shorter than the acks' (`commit_after`).
    pub(super) fn writer_due(&mut self, cfg: &Config) -> bool {
        if self.kicked {
            return false;
        }
        let p = &self.pending;
        let due = self.commit_due(cfg.group_commit_count);
        let start = if cfg.caller_commits {
            // the caller commits appends (Outbox::commit); acks alone are the writer's
            p.messages() == 0 && p.len() == 1
        } else {
            let first_message =
                cfg.group_commit_ms < cfg.ack_linger_ms && p.messages() == 1 && p.len() > 1;
            p.len() == 1 || first_message
        };
        if !due && !start {
            return false;
        }
        // A writer waiting on a timer that fires before this batch's bound re-reads the state
        // then by itself (its batch was committed by a caller meanwhile).
        if !due
            && self
                .writer_deadline
                .is_some_and(|d| d <= Instant::now() + self.commit_after(cfg))
        {
            return false;
        }
        self.kicked = true;
        true
    }

    /// How long after its first write the pending batch is committed at the latest:
    /// `group_commit_ms` once it holds an append or a PUBREC (what a crash could lose), else
    /// (acks and packet ids alone: a crash only resends) `max(group_commit_ms, ack_linger_ms)`.
    pub(super) fn commit_after(&self, cfg: &Config) -> Duration {
        let p = &self.pending;
        let ms = if p.messages() == 0 {
            cfg.group_commit_ms.max(cfg.ack_linger_ms)
        } else {
            cfg.group_commit_ms
        };
        Duration::from_millis(ms as u64)
    }

    /// Whether the writer thread is to commit the pending batch now: due by its size
    /// (`commit_due`), or its bound (`commit_after` from its first write) has passed.
    pub(super) fn writer_may_commit(&self, cfg: &Config) -> bool {
        self.pending_since.is_some_and(|t| {
            self.commit_due(cfg.group_commit_count) || t.elapsed() >= self.commit_after(cfg)
        })
    }

    /// Whether the pending batch is to be committed now, before its timer: `count` messages
    /// (appends and QoS 2 PUBRECs), `ACKS_DUE` acks and packet ids, or `PENDING_BYTES_DUE`.
    pub(super) fn commit_due(&self, count: u32) -> bool {
        let p = &self.pending;
        p.messages() >= count as usize
            || p.acks() >= ACKS_DUE
            || self.pending_bytes >= PENDING_BYTES_DUE
    }
}

impl Shared {
    /// Commits the pending batch, after the drop_oldest trim. On error the batch stays pending,
    /// except that on a full disk its acks, binds and deletes are committed without its
    /// inserts (the drain goes on, and frees space).
    pub(super) fn flush_inner(&self) -> Result<()> {
        self.flush_locked(lock(&self.db), false)
    }

    /// `Outbox::commit` during the writer's checkpoint: commits on the caller's thread unless
    /// the store is held (`None`). Like every caller's commit (`messages_only`) it commits the
    /// appends and PUBRECs (what a crash could lose) and leaves the acks and
    /// packet ids to the writer's `ack_linger_ms` commit: a commit then writes the last page
    /// of the table alone, and the acks go in bulk (with the binds of rows acked meanwhile
    /// never written at all).
    pub(super) fn try_flush(&self) -> Option<Result<()>> {
        match self.db.try_lock() {
            Ok(db) => Some(self.flush_locked(db, true)),
            Err(TryLockError::Poisoned(p)) => Some(self.flush_locked(p.into_inner(), true)),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Commits the pending batch (`messages_only`: its appends and PUBRECs, the rest stays
    /// pending with its bound and the writer armed for it).
    pub(super) fn flush_locked(
        &self,
        mut db: MutexGuard<'_, Option<Store>>,
        messages_only: bool,
    ) -> Result<()> {
        let Some(store) = db.as_mut() else {
            return Err(Error::Closed);
        };
        let mut arm_writer = false;
        // What to log, once no lock of ours is held (the log callback's promise).
        let mut notes = Vec::new();
        let trimmed = match self
            .check_file(store, &mut notes)
            .and_then(|()| self.trim(store))
        {
            Ok(n) => n,
            Err(e) => {
                // Appends commit inline (and are refused) until a commit succeeds again.
                lock(&self.state).write_failed = true;
                drop(db);
                self.log_notes(notes);
                return Err(e);
            }
        };
        let (batch, high) = {
            let mut st = lock(&self.state);
            // Every append below next_seq is now in this batch, on disk already, or gone
            // (acknowledged, dropped or expired before a commit): `high` is what a successful
            // commit makes resolved (`committed_seq`).
            let high = st.next_seq - 1;
            // A session reset goes with the releases that follow it (never after them).
            let messages_only = messages_only && st.pending.acks() > 0 && !st.pending.reset_all;
            if st.pending.is_empty() || (messages_only && st.pending.messages() == 0) {
                if !messages_only {
                    st.pending_since = None;
                }
                let advanced = high > st.committed_seq;
                st.committed_seq = st.committed_seq.max(high);
                let committed = st.committed_seq;
                drop(st);
                drop(db);
                if advanced {
                    self.signal_commit(committed);
                }
                self.log_trim(trimmed);
                self.log_notes(notes);
                return Ok(());
            }
            st.writing = true;
            st.pending_bytes = 0;
            let batch = if messages_only {
                // the acks keep their batch's start (their bound); the writer must be armed
                // for them: it may have been told of nothing (the batch began with an append)
                if !st.kicked && st.writer_deadline.is_none() {
                    st.kicked = true;
                    arm_writer = true;
                }
                let p = &mut st.pending;
                Batch {
                    inserts: std::mem::take(&mut p.inserts),
                    releases: std::mem::take(&mut p.releases),
                    ..Batch::default()
                }
            } else {
                st.pending_since = None;
                std::mem::take(&mut st.pending)
            };
            (batch, high)
        };
        let res = match store.write(&batch) {
            Err(Error::NoSpace) => self.write_full_disk(store, batch, &mut notes),
            Ok(w) => Commit::Done(w),
            Err(e) => Commit::Failed(e, batch),
        };
        let mut st = lock(&self.state);
        st.writing = false;
        let mut advanced = false;
        let mut committed = st.committed_seq;
        let mut wake_writer = false;
        let out = match res {
            Commit::Done(written) => {
                st.write_failed = false;
                if self.cfg.caller_commits {
                    st.commits_unchecked = st.commits_unchecked.saturating_add(1);
                    if st.commits_unchecked >= CHECKPOINT_COMMITS && !st.checkpoint_due {
                        st.checkpoint_due = true;
                        wake_writer = true;
                    }
                }
                let before = st.committed_seq;
                // `high` covers every insert of the batch (their seqs are below next_seq; rows
                // put back at the front have lower ones), and the rows SQLite refused
                // (counted in dropped_malformed) are resolved too.
                st.committed_seq = st.committed_seq.max(high);
                advanced = st.committed_seq > before;
                committed = st.committed_seq;
                self.take_refused(&mut st, written, &mut notes);
                if st.space_low
                    && st
                        .last_reserve_try
                        .map_or(true, |t| t.elapsed() >= RESERVE_RETRY)
                {
                    st.last_reserve_try = Some(Instant::now());
                    drop(st);
                    let back = store.restore_reserve();
                    st = lock(&self.state);
                    if back {
                        st.space_low = false;
                        notes.push((false, "disk space is back; reserve restored".to_string()));
                    }
                }
                Ok(())
            }
            Commit::Failed(e, unwritten) => {
                st.write_failed = true;
                if e == Error::NoSpace {
                    st.space_low = true;
                }
                unwritten.prepend_to(&mut st.pending);
                st.pending_bytes = st.pending.inserts.iter().map(|r| r.data.len() as u64).sum();
                st.pending_since.get_or_insert_with(Instant::now);
                notes.push((
                    true,
                    format!(
                        "commit failed, {} writes kept in memory: {e}",
                        st.pending.len()
                    ),
                ));
                Err(e)
            }
        };
        drop(st);
        drop(db);
        if advanced {
            self.signal_commit(committed);
        }
        if wake_writer || arm_writer {
            self.wake.notify_one();
        }
        self.log_trim(trimmed);
        self.log_notes(notes);
        out
    }

    /// Logs what a commit noted (error or warning), with no lock of ours held.
    pub(super) fn log_notes(&self, notes: Vec<(bool, String)>) {
        for (error, n) in notes {
            let line = format!("bridge {:?}: {n}", self.cfg.bridge);
            if error {
                self.log.error(&line)
            } else {
                self.log.warn(&line)
            }
        }
    }

    /// `caller_commits`: the WAL checkpoint SQLite would run inside a commit (an fsync with
    /// `sync = Normal`), on the writer thread instead of a caller's. A failure is logged; the
    /// next one is due after as many commits again.
    pub(super) fn checkpoint(&self) {
        lock(&self.state).checkpointing = true;
        let mut db = lock(&self.db);
        let Some(store) = db.as_mut() else {
            lock(&self.state).checkpointing = false;
            return;
        };
        let res = catch_unwind(AssertUnwindSafe(|| store.checkpoint()));
        drop(db);
        let mut st = lock(&self.state);
        st.checkpointing = false;
        st.commits_unchecked = 0;
        st.checkpoints = st.checkpoints.saturating_add(1);
        drop(st);
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.log.warn(&format!(
                "bridge {:?}: WAL checkpoint failed: {e}",
                self.cfg.bridge
            )),
            Err(_) => self.log.error(&format!(
                "bridge {:?}: a WAL checkpoint panicked (a bug)",
                self.cfg.bridge
            )),
        }
    }

    /// The disk is full. First the reserve is given back and the whole batch tried again; if
    /// that fails too, what frees space (acks, deletes, binds) is committed alone. Returns what
    /// was written with the batch it belongs to, or the error with what was not written.
    pub(super) fn write_full_disk(
        &self,
        store: &mut Store,
        batch: Batch,
        notes: &mut Vec<(bool, String)>,
    ) -> Commit {
        let released = store.release_reserve();
        {
            let mut st = lock(&self.state);
            st.space_low = true;
            st.last_reserve_try = Some(Instant::now());
        }
        if released {
            notes.push((
                true,
                "disk full; reserve released for the messages already accepted and the \
                 drain's acks; new messages are refused until space returns"
                    .to_string(),
            ));
            match store.write(&batch) {
                Ok(w) => return Commit::Done(w),
                Err(Error::NoSpace) => {}
                Err(e) => return Commit::Failed(e, batch),
            }
        }
        let mut rest = batch;
        let inserts = Batch {
            inserts: std::mem::take(&mut rest.inserts),
            ..Batch::default()
        };
        if rest.is_empty() {
            return Commit::Failed(Error::NoSpace, inserts);
        }
        match store.write(&rest) {
            Ok(_) => Commit::Failed(Error::NoSpace, inserts),
            Err(e) => {
                let mut all = rest;
                all.inserts = inserts.inserts;
                Commit::Failed(e, all)
            }
        }
    }

    /// Rows SQLite refused at commit: gone, counted, logged.
    pub(super) fn take_refused(
        &self,
        st: &mut State,
        written: Written,
        notes: &mut Vec<(bool, String)>,
    ) {
        st.take_dead(&written, notes);
        if let Some(n) = written.note {
            notes.push((false, n));
        }
        for (seq, bytes, why) in written.refused {
            st.vanish(seq, bytes);
            st.dropped_malformed = st.dropped_malformed.saturating_add(1);
            notes.push((
                true,
                format!("row {seq} refused by SQLite ({why}); dropped, the rest was committed"),
            ));
        }
    }

    /// The path must still name the file being written: a deleted file (or directory) keeps
    /// working on its open inode and would be gone, with every row, at the next open. It is
    /// written back from the open copy; when that cannot be done the commit fails.
    pub(super) fn check_file(
        &self,
        store: &mut Store,
        notes: &mut Vec<(bool, String)>,
    ) -> Result<()> {
        let state = store.file_state();
        if state == FileState::Present {
            return Ok(());
        }
        let path = store.path().display().to_string();
        let what = match state {
            FileState::Gone => "was deleted",
            _ => "was replaced by another file",
        };
        if state == FileState::Gone && !store.shared() {
            notes.push((
                true,
                format!("database {path} {what} while open; writing it back from the open copy"),
            ));
            return match store.restore_file(&self.cfg.bridge) {
                Ok(()) => {
                    notes.push((false, format!("{path} restored")));
                    Ok(())
                }
                Err(e) => Err(Error::Io(format!(
                    "database {path} {what} while open and could not be restored: {e}"
                ))),
            };
        }
        Err(Error::Io(format!(
            "database {path} {what} while open; its rows are kept in the open copy and in \
             memory, and new messages are refused until it is back"
        )))
    }

    /// The writer thread's commit of the batch it found due. It waits for the store first, and
    /// a caller's commit may have taken that batch meanwhile (`Outbox::commit`, `flush`, an
    /// inline commit): what is pending then is a later batch with its own bound, left for the
    /// next turn of the loop (acks alone were committed at once, within their
    /// `ack_linger_ms`). After a checkpoint everything pending is committed (a caller's commit
    /// during it left its appends to the writer).
    pub(super) fn writer_commit(&self, checkpointed: bool) -> Result<()> {
        let db = lock(&self.db);
        if !checkpointed && !lock(&self.state).writer_may_commit(&self.cfg) {
            return Ok(());
        }
        self.flush_locked(db, false)
    }

    /// The group-commit thread: commits when `group_commit_count` messages (or `ACKS_DUE` acks
    /// and packet ids, see `State::commit_due`) are pending or the oldest pending write is
    /// `group_commit_ms` old (acks and packet ids alone: `State::commit_after`). Backs off after a failed commit. A panic
    /// in a commit is caught and logged; the thread goes on.
    pub(super) fn writer_loop(&self) {
        ON_WRITER.with(|w| w.set(true));
        let mut failures = 0u64;
        loop {
            let mut st = lock(&self.state);
            if failures > 0 {
                let backoff = Duration::from_millis(100 * failures.min(10));
                st = match self.wake.wait_timeout(st, backoff) {
                    Ok((g, _)) => g,
                    Err(p) => p.into_inner().0,
                };
            }
            loop {
                if st.closed {
                    return;
                }
                // Whatever was notified is seen now: a later write that makes the batch due
                // notifies again.
                st.kicked = false;
                st.writer_deadline = None;
                if st.checkpoint_due || st.writer_may_commit(&self.cfg) {
                    break;
                }
                st = match st.pending_since {
                    None => self.wake.wait(st).unwrap_or_else(|p| p.into_inner()),
                    Some(t) => {
                        let left = st.commit_after(&self.cfg).saturating_sub(t.elapsed());
                        st.writer_deadline = Some(Instant::now() + left);
                        match self.wake.wait_timeout(st, left) {
                            Ok((g, _)) => g,
                            Err(p) => p.into_inner().0,
                        }
                    }
                };
            }
            st.writer_deadline = None;
            let checkpoint = std::mem::take(&mut st.checkpoint_due);
            drop(st);
            if checkpoint {
                self.checkpoint();
            }
            match catch_unwind(AssertUnwindSafe(|| self.writer_commit(checkpoint))) {
                Ok(Ok(())) => failures = 0,
                Ok(Err(Error::Closed)) => return,
                Ok(Err(_)) => failures += 1,
                Err(_) => {
                    self.log.error(&format!(
                        "bridge {:?}: a commit panicked (a bug); retrying",
                        self.cfg.bridge
                    ));
                    failures += 1;
                }
            }
        }
    }
}
