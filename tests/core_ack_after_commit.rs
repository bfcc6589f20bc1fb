//! Ack after commit (issue 13): the commit descriptor, `committed_seq` and refused appends.
//! A host acknowledges its publisher once `committed_seq() >= seq`; these tests check that the
//! descriptor wakes it after a commit, that every seq up to the committed one is on disk, and
//! that a refused append is reported at once with a reason code for the publisher, and (with
//! `ack_order`) that two outboxes and one client give acks in publish order.

use nmq_outbox::ffi::{code, sys};
use nmq_outbox::{AckKind, Config, Error, FullPolicy, NewMessage, Outbox};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn msg(data: &[u8]) -> NewMessage<'_> {
    NewMessage {
        qos: 1,
        expiry_secs: 0,
        data,
    }
}

/// A handle whose writer never commits on its own (only `flush` does).
fn manual(path: &Path) -> Outbox {
    let mut c = Config::new(path, "b");
    c.group_commit_ms = 600_000;
    c.group_commit_count = 100_000;
    Outbox::open(c).unwrap()
}

/// Whether `fd` is readable within `ms` (0: now).
fn readable(fd: i32, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd on the stack.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    n == 1 && p.revents & libc::POLLIN != 0
}

/// Rows of bridge "b" on disk with seq in lo..=hi, read through a second SQLite connection.
fn on_disk(path: &Path, lo: i64, hi: i64) -> i64 {
    let db =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    db.query_row(
        "SELECT count(*) FROM msg WHERE seq BETWEEN ?1 AND ?2",
        [lo, hi],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn the_descriptor_is_readable_after_a_commit_and_drained_by_committed_seq() {
    let dir = tempfile::tempdir().unwrap();
    let ob = manual(&dir.path().join("o.db"));
    let fd = ob.commit_fd().unwrap();
    assert_eq!(ob.commit_fd().unwrap(), fd, "one descriptor per handle");
    assert!(!readable(fd, 0), "nothing committed yet");
    let seq = ob.append(&msg(b"a")).unwrap();
    assert!(ob.committed_seq() < seq, "not committed before a commit");
    assert!(!readable(fd, 0), "an append alone does not signal");
    ob.flush().unwrap();
    assert!(readable(fd, 0), "readable after the commit");
    assert!(readable(fd, 0), "stays readable until drained");
    assert!(ob.committed_seq() >= seq);
    assert!(!readable(fd, 0), "drained by committed_seq");
    // A commit that advances nothing (nothing pending) does not signal.
    ob.flush().unwrap();
    assert!(!readable(fd, 0));
    // Several appends, one commit: one wake-up releases them all.
    let seqs: Vec<i64> = (0..10).map(|_| ob.append(&msg(b"x")).unwrap()).collect();
    ob.flush().unwrap();
    assert!(readable(fd, 0));
    let c = ob.committed_seq();
    assert!(seqs.iter().all(|s| *s <= c), "{seqs:?} <= {c}");
    // After close the last value stays readable.
    ob.close().unwrap();
    assert_eq!(ob.committed_seq(), c);
}

#[test]
fn the_writer_signals_on_its_own_timer() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::new(dir.path().join("o.db"), "b");
    c.group_commit_ms = 5;
    let ob = Outbox::open(c).unwrap();
    let fd = ob.commit_fd().unwrap();
    let seq = ob.append(&msg(b"a")).unwrap();
    // Awaiting the event; the bound only keeps a broken build from hanging.
    assert!(readable(fd, 30_000), "no commit signal");
    assert!(ob.committed_seq() >= seq);
}

#[test]
fn every_seq_up_to_committed_is_on_disk_while_appends_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.db");
    let mut c = Config::new(&path, "b");
    c.group_commit_ms = 2;
    c.group_commit_count = 50;
    let ob = Arc::new(Outbox::open(c).unwrap());
    let fd = ob.commit_fd().unwrap();
    let first = ob.committed_seq() + 1;
    let done = Arc::new(AtomicBool::new(false));
    // Halfway the appender waits for our first check: one is made while appends go on
    // however the threads are scheduled (the bound only turns a hang into a failure).
    let (checked_tx, checked) = std::sync::mpsc::sync_channel::<()>(1);
    let writer = {
        let (ob, done) = (Arc::clone(&ob), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut last = 0;
            for i in 0..3000u32 {
                last = ob.append(&msg(format!("m{i}").as_bytes())).unwrap();
                if i == 1499 {
                    checked
                        .recv_timeout(Duration::from_secs(60))
                        .expect("no check while appending");
                }
            }
            done.store(true, Ordering::SeqCst);
            last
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut checks = 0;
    let mut seen = first - 1;
    while !done.load(Ordering::SeqCst) && Instant::now() < deadline {
        if !readable(fd, 1000) {
            continue;
        }
        let c = ob.committed_seq();
        assert!(c >= seen, "committed_seq went back: {c} < {seen}");
        seen = c;
        if c >= first {
            assert_eq!(
                on_disk(&path, first, c),
                c - first + 1,
                "rows {first}..={c}"
            );
            checks += 1;
            let _ = checked_tx.try_send(());
        }
    }
    let last = writer.join().unwrap();
    ob.flush().unwrap();
    let c = ob.committed_seq();
    assert!(c >= last);
    assert_eq!(on_disk(&path, first, c), c - first + 1);
    assert!(checks > 0, "no commit was seen while appending");
    // Reopened, the file holds them all.
    drop(ob);
    let ob = Outbox::open(Config::new(&path, "b")).unwrap();
    assert_eq!(ob.stats().unwrap().messages, 3000);
    assert_eq!(ob.committed_seq(), last);
}

#[test]
fn refused_appends_are_reported_at_once_with_a_reason_code() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::new(dir.path().join("o.db"), "b");
    c.full_policy = FullPolicy::RejectNew;
    c.max_messages = 2;
    c.max_message_bytes = 16;
    c.group_commit_ms = 600_000;
    c.group_commit_count = 100_000;
    let ob = Outbox::open(c).unwrap();
    let a = ob.append(&msg(b"1")).unwrap();
    let b = ob.append(&msg(b"2")).unwrap();
    let full = ob.append(&msg(b"3")).unwrap_err();
    assert_eq!(full, Error::Full);
    let big = ob.append(&msg(&[0u8; 17])).unwrap_err();
    assert!(matches!(big, Error::TooBig { .. }), "{big:?}");
    let reason = |e: &Error| nmq_outbox::ffi::nmq_outbox_mqtt_reason(code(e));
    assert_eq!(reason(&full), 0x97, "quota exceeded");
    assert_eq!(reason(&big), 0x97);
    assert_eq!(reason(&Error::NoSpace), 0x97);
    assert_eq!(reason(&Error::Io("x".into())), 0x80);
    assert_eq!(reason(&Error::Closed), 0x80);
    assert_eq!(
        nmq_outbox::ffi::nmq_outbox_mqtt_reason(sys::NMQ_OUTBOX_OK),
        0
    );
    // The refused ones took no seq: the next commit releases exactly the accepted two.
    ob.flush().unwrap();
    assert_eq!(ob.committed_seq(), b);
    assert_eq!(b, a + 1);
    assert_eq!(ob.stats().unwrap().dropped_full, 1);
}

#[test]
fn a_row_delivered_before_its_commit_still_releases_its_ack() {
    let dir = tempfile::tempdir().unwrap();
    let ob = manual(&dir.path().join("o.db"));
    let fd = ob.commit_fd().unwrap();
    ob.link_up(0).unwrap();
    let seq = ob.append(&msg(b"a")).unwrap();
    let row = ob.lease().unwrap().expect("the pending row is handed out");
    assert_eq!(row.seq, seq);
    ob.bind(seq, 7).unwrap();
    ob.ack(7, AckKind::PubAck, 0).unwrap();
    // Never written (acknowledged first), yet resolved: the publisher's ack must not hang.
    assert!(ob.committed_seq() < seq);
    ob.flush().unwrap();
    assert!(readable(fd, 0));
    assert!(ob.committed_seq() >= seq);
}

#[test]
fn one_consumer_sees_every_seq_of_many_appending_threads() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::new(dir.path().join("o.db"), "b");
    c.group_commit_ms = 2;
    let ob = Arc::new(Outbox::open(c).unwrap());
    let fd = ob.commit_fd().unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let ob = Arc::clone(&ob);
            std::thread::spawn(move || {
                (0..500)
                    .map(|i| ob.append(&msg(format!("{t}-{i}").as_bytes())).unwrap())
                    .max()
                    .unwrap()
            })
        })
        .collect();
    let max = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .max()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while ob.committed_seq() < max && Instant::now() < deadline {
        readable(fd, 1000);
    }
    assert!(
        ob.committed_seq() >= max,
        "every append was committed and signalled"
    );
}

#[test]
fn group_commit_ms_zero_commits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::new(dir.path().join("o.db"), "b");
    c.group_commit_ms = 0;
    let ob = Outbox::open(c).unwrap();
    let fd = ob.commit_fd().unwrap();
    for i in 0..200u32 {
        let seq = ob.append(&msg(format!("m{i}").as_bytes())).unwrap();
        // Awaited, one commit at a time; the bound only keeps a broken build from hanging.
        while ob.committed_seq() < seq {
            assert!(readable(fd, 30_000), "no commit for seq {seq}");
        }
    }
    assert_eq!(ob.stats().unwrap().messages, 200);
}

/// The host's loop with two bridges (bridge.c's queue, N10's per-client order): a message both
/// outboxes took is acknowledged once both have committed it, a message no outbox took is
/// ready at once, and the client's acks leave in the order of its PUBLISHes.
#[test]
fn two_outboxes_and_the_ack_order_release_acks_in_publish_order() {
    use nmq_outbox::ack_order::AckOrder;
    let dir = tempfile::tempdir().unwrap();
    let a = manual(&dir.path().join("a.db"));
    let b = manual(&dir.path().join("b.db"));
    let mut order = AckOrder::new();
    // packet id 1: both bridges; 2: no bridge; 3: bridge b only
    for id in 1..=3 {
        assert!(order.push(id, 1));
    }
    let waits: Vec<(u16, Option<i64>, Option<i64>)> = vec![
        (
            1,
            Some(a.append(&msg(b"1")).unwrap()),
            Some(b.append(&msg(b"1")).unwrap()),
        ),
        (3, None, Some(b.append(&msg(b"3")).unwrap())),
    ];
    assert!(order.ready(2, 0)); // no outbox took it: ready at once
    let mut sent = Vec::new();
    let release = |order: &mut AckOrder, done: &mut Vec<u16>| {
        let (ca, cb) = (a.committed_seq(), b.committed_seq());
        for (id, sa, sb) in &waits {
            let ok = sa.map_or(true, |s| s <= ca) && sb.map_or(true, |s| s <= cb);
            if ok && !done.contains(id) && order.ready(*id, 0) {
                done.push(*id);
            }
        }
        std::iter::from_fn(|| order.pop())
            .map(|x| x.packet_id)
            .collect::<Vec<_>>()
    };
    let mut done = Vec::new();
    assert_eq!(release(&mut order, &mut done), Vec::<u16>::new());
    b.flush().unwrap(); // 3 is on b's disk, 1 waits for a: nothing may go (2 and 3 behind 1)
    assert_eq!(release(&mut order, &mut done), Vec::<u16>::new());
    a.flush().unwrap();
    sent.extend(release(&mut order, &mut done));
    assert_eq!(sent, vec![1, 2, 3]);
    assert!(order.is_empty());
}
