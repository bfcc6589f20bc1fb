//! The group commit, tested: when acks ride with appends, the timers, caller commits, the
//! checkpoint, a panic under the state lock.

use super::writer::CHECKPOINT_COMMITS;
use super::*;

const ONE_HOUR_MS: u32 = 3_600_000;

fn qos1(data: &[u8]) -> NewMessage<'_> {
    NewMessage {
        qos: 1,
        expiry_secs: 0,
        data,
    }
}

/// Seqs of this file's rows on disk (a second, read-only connection: committed rows only).
fn seqs_on_disk(path: &std::path::Path) -> Vec<i64> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut q = conn.prepare("SELECT seq FROM msg ORDER BY seq").unwrap();
    let rows = q.query_map([], |r| r.get(0)).unwrap();
    rows.map(|r| r.unwrap()).collect()
}

/// Leases, binds and acknowledges `n` rows (packet ids from 1).
fn deliver(ob: &Outbox, n: u16) -> Vec<i64> {
    let mut seqs = Vec::new();
    for pid in 1..=n {
        let r = ob.lease().unwrap().expect("a row to lease");
        ob.bind(r.seq, pid).unwrap();
        seqs.push(r.seq);
    }
    for pid in 1..=n {
        assert_eq!(ob.ack(pid, AckKind::PubAck, 0).unwrap(), AckOutcome::Done);
    }
    seqs
}

/// An outbox on a fresh file (`set` tunes its config) holding `n` committed QoS 1 rows,
/// link up, its writer thread idle (done with whatever it did for those rows: it waits,
/// nothing is pending). The directory lives as long as the returned guard.
fn open_with_rows(
    n: usize,
    set: impl FnOnce(&mut Config),
) -> (tempfile::TempDir, std::path::PathBuf, Outbox) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.db");
    let mut c = Config::new(&path, "b");
    set(&mut c);
    let ob = Outbox::open(c).unwrap();
    for _ in 0..n {
        ob.append(&qos1(b"x")).unwrap();
    }
    ob.flush().unwrap();
    nudge_writer(&ob);
    ob.link_up(0).unwrap();
    (dir, path, ob)
}

/// Waits on the commit descriptor (an event) until `seq` is committed. The poll timeout
/// only turns a hang into a failure.
fn await_commit_of(ob: &Outbox, seq: i64) {
    let mut p = libc::pollfd {
        fd: ob.commit_fd().unwrap(),
        events: libc::POLLIN,
        revents: 0,
    };
    while ob.committed_seq() < seq {
        // SAFETY: one valid pollfd.
        assert_eq!(unsafe { libc::poll(&mut p, 1, 120_000) }, 1, "no commit");
    }
}

/// Waits until the writer thread has looked at the state since the last notify (it clears
/// `kicked` there, under the state lock it keeps until it waits or commits what is due).
/// The bound only turns a hang into a failure.
fn await_writer_looked(ob: &Outbox) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while lock(&ob.shared.state).kicked {
        assert!(Instant::now() < deadline, "the writer never looked");
        std::thread::yield_now();
    }
}

/// Wakes the writer thread (as its timer or any notify would) and waits until it has looked
/// at the state: whatever it was doing before (a commit) is over.
fn nudge_writer(ob: &Outbox) {
    lock(&ob.shared.state).kicked = true;
    ob.shared.wake.notify_one();
    await_writer_looked(ob);
}

/// Waits until the writer thread waits on its timer (for a batch not yet due); returns its
/// deadline. The bound only turns a hang into a failure.
fn await_writer_armed(ob: &Outbox) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(d) = lock(&ob.shared.state).writer_deadline {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "the writer never armed its timer"
        );
        std::thread::yield_now();
    }
}

/// Waits (an event: the writer took the batch and committed it) until no write is pending.
/// The bound only turns a hang into a failure.
fn await_committed(ob: &Outbox) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        {
            let st = lock(&ob.shared.state);
            if st.pending.is_empty() && !st.writing {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the pending writes were never committed"
        );
        std::thread::yield_now();
    }
}

/// Issue 11 item 3: acks and packet ids do not count toward group_commit_count (which made
/// a drain commit every 50 messages); they ride with the next commit of appends.
#[test]
fn acks_do_not_count_toward_group_commit_count_and_ride_with_the_next_append_commit() {
    let (_dir, path, ob) = open_with_rows(4, |c| {
        c.group_commit_count = 2;
        c.group_commit_ms = ONE_HOUR_MS;
    });
    let acked = deliver(&ob, 2);
    // Four writes (2 binds, 2 deletes) >= group_commit_count: no commit is due for them.
    {
        let st = lock(&ob.shared.state);
        assert_eq!((st.pending.deletes.len(), st.pending.binds.len()), (2, 2));
    }
    assert_eq!(seqs_on_disk(&path).len(), 4);
    // Two appends make the batch due: the acks are committed with them.
    ob.commit_fd().unwrap(); // exists before the appends: their commit signals it
    let a = ob.append(&qos1(b"y")).unwrap();
    let b = ob.append(&qos1(b"z")).unwrap();
    await_commit_of(&ob, b);
    let disk = seqs_on_disk(&path);
    assert!(
        acked.iter().all(|s| !disk.contains(s)),
        "acks committed: {disk:?}"
    );
    assert!(disk.contains(&a) && disk.contains(&b));
    assert_eq!(disk.len(), 4);
    ob.close().unwrap();
}

/// The bound for acks alone: the group_commit_ms timer, as for every write.
#[test]
fn acks_alone_are_committed_by_the_group_commit_timer() {
    let (_dir, path, ob) = open_with_rows(3, |c| c.group_commit_ms = 20);
    let acked = deliver(&ob, 2);
    await_committed(&ob);
    let disk = seqs_on_disk(&path);
    assert_eq!(disk.len(), 1);
    assert!(acked.iter().all(|s| !disk.contains(s)));
    ob.close().unwrap();
}

/// Issue 13: with commits at once (group_commit_ms = 0, the ack-after-commit mode) acks
/// alone wait for the next append (or `ack_linger_ms`) instead of a commit each, and the
/// next append still commits at once, with them.
#[test]
fn with_commits_at_once_acks_wait_for_the_next_append_which_commits_at_once() {
    let (_dir, path, ob) = open_with_rows(3, |c| {
        c.group_commit_ms = 0;
        c.ack_linger_ms = ONE_HOUR_MS;
    });
    let acked = deliver(&ob, 2);
    assert_eq!(seqs_on_disk(&path).len(), 3, "acks alone committed");
    let before = ob.committed_seq();
    ob.commit_fd().unwrap();
    let seq = ob.append(&qos1(b"y")).unwrap();
    // at once: no flush, the writer commits the append (and the acks with it)
    await_commit_of(&ob, seq);
    assert!(before < seq);
    await_committed(&ob);
    let disk = seqs_on_disk(&path);
    assert_eq!(disk.len(), 2, "{disk:?}");
    assert!(disk.contains(&seq) && acked.iter().all(|s| !disk.contains(s)));
    ob.close().unwrap();
}

/// ...and acks alone still reach the disk, after ack_linger_ms (its default, 20 ms).
#[test]
fn with_commits_at_once_acks_alone_are_committed_after_the_linger() {
    let (_dir, path, ob) = open_with_rows(3, |c| c.group_commit_ms = 0);
    let acked = deliver(&ob, 2);
    await_committed(&ob);
    let disk = seqs_on_disk(&path);
    assert_eq!(disk.len(), 1);
    assert!(acked.iter().all(|s| !disk.contains(s)));
    ob.close().unwrap();
}

/// Issue 13, caller_commits: appends do not wake the writer (its timer is an hour away
/// here, and nothing commits them by themselves); `commit` commits them on the caller's
/// thread, and leaves the acks and packet ids to the writer's linger commit.
#[test]
fn with_caller_commits_commit_commits_the_appends_and_leaves_the_acks_to_the_writer() {
    let (_dir, path, ob) = open_with_rows(3, |c| {
        c.group_commit_ms = 0;
        c.ack_linger_ms = ONE_HOUR_MS;
        c.caller_commits = true;
    });
    let acked = deliver(&ob, 2);
    // The acks woke the writer: it waits on its (hour-long) linger for them. Before it
    // has looked, the append below would be due to it (group_commit_ms = 0).
    await_writer_armed(&ob);
    let seq = ob.append(&qos1(b"y")).unwrap();
    assert!(!lock(&ob.shared.state).kicked, "the append woke the writer");
    assert!(ob.committed_seq() < seq);
    assert!(ob.commit().unwrap(), "not committed");
    assert!(ob.committed_seq() >= seq);
    let disk = seqs_on_disk(&path);
    assert_eq!(disk.len(), 4, "{disk:?}");
    assert!(disk.contains(&seq) && acked.iter().all(|s| disk.contains(s)));
    {
        let st = lock(&ob.shared.state);
        assert_eq!((st.pending.messages(), st.pending.acks()), (0, 4));
        assert!(st.pending_since.is_some(), "the acks lost their bound");
    }
    // no append pending: a commit leaves the acks alone
    assert!(ob.commit().unwrap());
    assert_eq!(lock(&ob.shared.state).pending.acks(), 4);
    ob.flush().unwrap();
    let disk = seqs_on_disk(&path);
    assert_eq!(disk.len(), 2, "{disk:?}");
    assert!(acked.iter().all(|s| !disk.contains(s)));
    ob.close().unwrap();
    assert_eq!(ob.commit(), Err(Error::Closed));
}

/// A writer that found a batch due waits for the store; when a caller's commit took that
/// batch meanwhile, what is pending after it is another batch with its own bound: acks
/// alone stay until ack_linger_ms. (The writer committed them at once: a commit their
/// bound did not call for, and what made the test above fail now and then.)
#[test]
fn a_writer_whose_due_batch_a_caller_committed_leaves_the_acks_behind_it() {
    let (_dir, path, ob) = open_with_rows(3, |c| {
        c.group_commit_ms = 0;
        c.ack_linger_ms = ONE_HOUR_MS;
        c.caller_commits = true;
    });
    let acked = deliver(&ob, 2);
    await_writer_armed(&ob);
    // A caller's commit is running (it holds the store) when the writer wakes and finds
    // an append due (group_commit_ms = 0): the writer waits for the store.
    let running = lock(&ob.shared.db);
    let seq = ob.append(&qos1(b"y")).unwrap();
    nudge_writer(&ob);
    assert_eq!(lock(&ob.shared.state).writer_deadline, None, "not due");
    // The running commit takes the append; then the writer has the store.
    ob.shared.flush_locked(running, true).unwrap();
    assert!(ob.committed_seq() >= seq);
    await_writer_looked(&ob);
    let st = lock(&ob.shared.state);
    assert_eq!(
        (st.pending.messages(), st.pending.acks()),
        (0, 4),
        "the writer committed the acks within their linger"
    );
    assert!(st.writer_deadline.is_some(), "the linger is not armed");
    drop(st);
    let disk = seqs_on_disk(&path);
    assert_eq!(disk.len(), 4, "{disk:?}");
    assert!(disk.contains(&seq) && acked.iter().all(|s| disk.contains(s)));
    ob.close().unwrap();
}

/// ...and the acks a caller's commit left behind are the writer's within ack_linger_ms,
/// also when their batch began with an append (the writer was told of nothing then).
#[test]
fn with_caller_commits_acks_behind_an_append_are_committed_by_the_writer() {
    let (_dir, path, ob) = open_with_rows(3, |c| {
        c.group_commit_ms = 0;
        c.ack_linger_ms = 20;
        c.caller_commits = true;
    });
    await_committed(&ob);
    // the batch begins with an append, then the acks
    let seq = ob.append(&qos1(b"y")).unwrap();
    let acked = deliver(&ob, 2);
    assert!(ob.commit().unwrap());
    assert!(ob.committed_seq() >= seq);
    await_committed(&ob);
    let disk = seqs_on_disk(&path);
    assert_eq!(disk.len(), 2, "{disk:?}");
    assert!(acked.iter().all(|s| !disk.contains(s)));
    ob.close().unwrap();
}

/// ...a `commit` that finds the writer checkpointing (the store's lock held for an
/// fsync) returns at once and wakes the writer, which commits the rest after it; each
/// time: a notify is never marked sent without being sent.
#[test]
fn with_caller_commits_a_commit_during_a_checkpoint_leaves_the_rest_to_the_writer() {
    let (_dir, path, ob) = open_with_rows(0, |c| {
        c.group_commit_ms = 0;
        c.caller_commits = true;
    });
    ob.commit_fd().unwrap();
    for round in 0..3 {
        let seq = {
            let _running = lock(&ob.shared.db);
            lock(&ob.shared.state).checkpointing = true;
            let seq = ob.append(&qos1(b"y")).unwrap();
            assert!(
                !ob.commit().unwrap(),
                "round {round}: committed under the lock"
            );
            lock(&ob.shared.state).checkpointing = false;
            seq
        };
        await_commit_of(&ob, seq);
        let own = ob.append(&qos1(b"z")).unwrap();
        assert!(ob.commit().unwrap(), "round {round}");
        assert!(ob.committed_seq() >= own, "round {round}");
    }
    assert_eq!(seqs_on_disk(&path).len(), 6);
    ob.close().unwrap();
}

/// ...appends still wake the writer once a batch is due by count (a caller that never
/// commits loses nothing: the writer's bounds stay).
#[test]
fn with_caller_commits_a_batch_due_by_count_is_still_the_writers() {
    let (_dir, path, ob) = open_with_rows(0, |c| {
        c.group_commit_ms = ONE_HOUR_MS;
        c.group_commit_count = 3;
        c.caller_commits = true;
    });
    ob.commit_fd().unwrap();
    let mut last = 0;
    for _ in 0..3 {
        last = ob.append(&qos1(b"y")).unwrap();
    }
    await_commit_of(&ob, last);
    assert_eq!(seqs_on_disk(&path).len(), 3);
    ob.close().unwrap();
}

/// ...behind any other running commit (a caller's, the writer's acks) a `commit` waits
/// for it and returns committed: one group commit without a hand-over. Eight threads
/// append and commit at once; every one of them returns with its append on disk.
#[test]
fn with_caller_commits_concurrent_commits_wait_for_each_other_and_all_return_committed() {
    let (_dir, path, ob) = open_with_rows(0, |c| {
        c.group_commit_ms = ONE_HOUR_MS;
        c.ack_linger_ms = ONE_HOUR_MS;
        c.caller_commits = true;
    });
    let running = lock(&ob.shared.db);
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let seq = ob.append(&qos1(b"y")).unwrap();
                    let done = ob.commit().unwrap();
                    (seq, done, ob.committed_seq())
                })
            })
            .collect();
        drop(running);
        for h in hs {
            let (seq, done, committed) = h.join().unwrap();
            assert!(done && committed >= seq, "{seq}: {done} at {committed}");
        }
    });
    assert_eq!(seqs_on_disk(&path).len(), 8);
    ob.close().unwrap();
}

/// ...and a commit that fails (another connection holds the write lock: SQLITE_BUSY after
/// the 5 s busy timeout) gives the error and keeps the writes; the writer commits them
/// once the lock is gone.
#[test]
fn with_caller_commits_a_failed_commit_keeps_the_writes_for_the_writer() {
    let (_dir, path, ob) = open_with_rows(0, |c| {
        c.group_commit_ms = 0;
        c.caller_commits = true;
    });
    ob.commit_fd().unwrap();
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let seq = ob.append(&qos1(b"y")).unwrap();
    assert!(
        ob.commit().is_err(),
        "committed through another's write lock"
    );
    assert!(ob.committed_seq() < seq);
    other.execute_batch("ROLLBACK").unwrap();
    drop(other);
    await_commit_of(&ob, seq);
    assert_eq!(seqs_on_disk(&path), vec![seq]);
    ob.close().unwrap();
}

/// ...the WAL checkpoint (an fsync) is the writer thread's, after CHECKPOINT_COMMITS
/// commits: a caller's commit never runs one (SQLite's autocheckpoint is off).
#[test]
fn with_caller_commits_the_writer_checkpoints_the_wal() {
    let (_dir, _path, ob) = open_with_rows(0, |c| {
        c.group_commit_ms = 0;
        c.caller_commits = true;
    });
    assert_eq!(
        lock(&ob.shared.db).as_ref().unwrap().autocheckpoint_pages(),
        0
    );
    for _ in 0..CHECKPOINT_COMMITS - 1 {
        ob.append(&qos1(b"y")).unwrap();
        assert!(ob.commit().unwrap());
    }
    assert_eq!(lock(&ob.shared.state).checkpoints, 0);
    assert!(!lock(&ob.shared.state).checkpoint_due);
    ob.append(&qos1(b"y")).unwrap();
    assert!(ob.commit().unwrap());
    let deadline = Instant::now() + Duration::from_secs(120);
    while lock(&ob.shared.state).checkpoints == 0 {
        assert!(Instant::now() < deadline, "the writer never checkpointed");
        std::thread::yield_now();
    }
    assert_eq!(lock(&ob.shared.state).commits_unchecked, 0);
    // without the mode the store's checkpoint thread checkpoints (`store::checkpoint`; the
    // WAL hook is its, SQLite's autocheckpoint is off)
    let (_d, _p, plain) = open_with_rows(0, |_| {});
    let db = lock(&plain.shared.db);
    assert!(db.as_ref().unwrap().checkpointer().is_some());
    assert_eq!(db.as_ref().unwrap().autocheckpoint_pages(), 0);
    drop(db);
    ob.close().unwrap();
}

/// A writer waiting on its timer is not notified for a batch whose bound is later (it
/// re-reads the state when the timer fires): the acks that start a batch after a caller
/// committed the one the timer was armed for cost no wake-up. Asserted as an order of
/// bounds (the armed timer fires before the new batch's bound), not by waiting for it.
#[test]
fn a_writer_waiting_on_its_timer_is_not_woken_for_a_later_batch() {
    let (_dir, path, ob) = open_with_rows(4, |c| {
        c.group_commit_ms = 0;
        c.ack_linger_ms = ONE_HOUR_MS;
        c.caller_commits = true;
    });
    // an ack starts a batch: the writer is woken and arms the linger
    deliver(&ob, 1);
    let armed = await_writer_armed(&ob);
    // a caller's flush takes that batch (the writer is not told: its timer stays armed);
    // the next ack starts a batch and needs no notify
    ob.flush().unwrap();
    deliver(&ob, 1);
    {
        let st = lock(&ob.shared.state);
        assert!(!st.kicked, "notified a writer with its timer armed");
        assert_eq!(st.writer_deadline, Some(armed), "the writer was woken");
        let bound = st.pending_since.expect("a batch") + st.commit_after(&ob.shared.cfg);
        assert!(
            armed <= bound,
            "the timer fires after the new batch's bound"
        );
    }
    // when the timer fires (here: any wake-up, the same re-read) the writer arms the new
    // batch's bound: it is not lost
    nudge_writer(&ob);
    assert!(lock(&ob.shared.state).writer_deadline.is_some());
    assert_eq!(lock(&ob.shared.state).pending.acks(), 2);
    ob.flush().unwrap();
    assert_eq!(seqs_on_disk(&path).len(), 2);
    ob.close().unwrap();
}

/// ...and the memory bound: ACKS_DUE acks and packet ids commit at once, timer or not.
#[test]
fn acks_alone_are_committed_once_acks_due_are_pending() {
    let half = (ACKS_DUE / 2) as u16;
    let (_dir, path, ob) = open_with_rows(half as usize + 1, |c| {
        c.group_commit_ms = ONE_HOUR_MS;
        c.window = ACKS_DUE as u32;
    });
    // One short of due: nothing commits.
    deliver(&ob, half - 1);
    assert_eq!(seqs_on_disk(&path).len(), half as usize + 1);
    let r = ob.lease().unwrap().unwrap();
    ob.bind(r.seq, half).unwrap();
    assert_eq!(ob.ack(half, AckKind::PubAck, 0).unwrap(), AckOutcome::Done);
    await_committed(&ob);
    assert_eq!(seqs_on_disk(&path).len(), 1);
    ob.close().unwrap();
}

/// Issue 8 item 1: a panic with the state lock held (a debug build's counter underflow)
/// poisoned the lock: every later call returned EINTERNAL and the bridge could not be
/// opened again for the life of the process.
#[test]
fn a_panic_under_the_state_lock_leaves_the_handle_usable_and_the_bridge_reopenable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.db");
    let ob = Outbox::open(Config::new(&path, "b")).unwrap();
    let sh = Arc::clone(&ob.shared);
    let _ = std::thread::spawn(move || {
        let _held = sh.state.lock().unwrap();
        panic!("a bug under the lock");
    })
    .join();
    assert!(ob.shared.state.is_poisoned());
    let m = NewMessage {
        qos: 1,
        expiry_secs: 0,
        data: b"x",
    };
    ob.append(&m).unwrap();
    ob.link_up(0).unwrap();
    let r = ob.lease().unwrap().unwrap();
    ob.bind(r.seq, 1).unwrap();
    assert_eq!(ob.ack(1, AckKind::PubAck, 0).unwrap(), AckOutcome::Done);
    assert_eq!(ob.stats().unwrap().acked, 1);
    ob.close().unwrap();
    drop(ob);
    let ob = Outbox::open(Config::new(&path, "b")).expect("the bridge opens again");
    ob.close().unwrap();
}
