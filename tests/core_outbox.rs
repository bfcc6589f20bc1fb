//! Plain Rust tests of the outbox logic and its SQLite store (no FFI, no network).

use nmq_outbox::{
    AckKind, AckOutcome, Config, Decision, Error, FullPolicy, Level, Logger, NewMessage, Outbox,
};
use std::path::Path;
use std::sync::{Arc, Mutex};

fn cfg(path: &Path, bridge: &str) -> Config {
    let mut c = Config::new(path, bridge);
    c.group_commit_ms = 5;
    c
}

fn msg(qos: u8, data: &[u8]) -> NewMessage<'_> {
    NewMessage {
        qos,
        expiry_secs: 0,
        data,
    }
}

fn append_n(ob: &Outbox, qos: u8, range: std::ops::Range<u32>) -> Vec<i64> {
    range
        .map(|i| ob.append(&msg(qos, format!("m{i}").as_bytes())).unwrap())
        .collect()
}

/// Leases, binds and acks everything; returns the payloads in the order they were leased.
fn drain(ob: &Outbox) -> Vec<String> {
    let mut out = Vec::new();
    let mut pid = 1u16;
    for _ in 0..100_000 {
        let Some(row) = ob.lease().unwrap() else {
            break;
        };
        ob.bind(row.seq, pid).unwrap();
        out.push(String::from_utf8(row.data.clone()).unwrap());
        let kinds: &[AckKind] = if row.qos == 2 {
            &[AckKind::PubRec, AckKind::PubComp]
        } else {
            &[AckKind::PubAck]
        };
        for k in kinds {
            ob.ack(pid, *k, 0).unwrap();
        }
        pid = pid % 65535 + 1;
    }
    out
}

fn names(r: std::ops::Range<u32>) -> Vec<String> {
    r.map(|i| format!("m{i}")).collect()
}

#[test]
fn decide_sends_now_only_when_link_up_and_nothing_held() {
    let dir = tempfile::tempdir().unwrap();
    let ob = Outbox::open(cfg(&dir.path().join("o.db"), "b")).unwrap();
    assert_eq!(ob.decide(1).unwrap(), Decision::Store, "link down");
    ob.link_up(0).unwrap();
    assert_eq!(ob.decide(1).unwrap(), Decision::SendNow);
    ob.append(&msg(1, b"x")).unwrap();
    assert_eq!(ob.decide(1).unwrap(), Decision::Store, "backlog exists");
    assert!(matches!(ob.decide(3), Err(Error::Invalid(_))));
    assert!(matches!(ob.append(&msg(3, b"x")), Err(Error::Invalid(_))));
}

#[test]
fn reopen_resumes_every_committed_row_in_order_inflight_back_to_queued() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.db");
    {
        let ob = Outbox::open(cfg(&path, "b")).unwrap();
        append_n(&ob, 1, 0..50);
        ob.link_up(0).unwrap();
        // Two rows in flight, one acked, when the process goes away.
        let a = ob.lease().unwrap().unwrap();
        let b = ob.lease().unwrap().unwrap();
        ob.bind(a.seq, 10).unwrap();
        ob.bind(b.seq, 11).unwrap();
        assert_eq!(ob.ack(10, AckKind::PubAck, 0).unwrap(), AckOutcome::Done);
        ob.close().unwrap();
        assert_eq!(ob.lease(), Err(Error::Closed));
        // The counters stay readable after close.
        assert_eq!(ob.stats().unwrap().acked, 1);
    }
    let ob = Outbox::open(cfg(&path, "b")).unwrap();
    let st = ob.stats().unwrap();
    assert_eq!(st.messages, 49);
    ob.link_up(0).unwrap();
    let first = ob.lease().unwrap().unwrap();
    assert_eq!(first.data, b"m1", "the unacked in-flight row comes first");
    assert!(first.dup, "it was sent before");
    assert_eq!(first.packet_id, 11, "with its packet id, for DUP resend");
    ob.bind(first.seq, first.packet_id).unwrap();
    ob.ack(11, AckKind::PubAck, 0).unwrap();
    assert_eq!(drain(&ob), names(2..50));
    assert_eq!(ob.stats().unwrap().messages, 0);
}

#[test]
fn window_limits_inflight_and_receive_maximum_caps_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(&dir.path().join("o.db"), "b");
    c.window = 8;
    let ob = Outbox::open(c).unwrap();
    append_n(&ob, 1, 0..20);
    assert!(ob.lease().unwrap().is_none(), "no lease while link down");
    ob.link_up(5).unwrap();
    let mut leased = Vec::new();
    while let Some(r) = ob.lease().unwrap() {
        leased.push(r);
    }
    assert_eq!(leased.len(), 5, "Receive Maximum 5 caps window 8");
    assert_eq!(ob.stats().unwrap().inflight, 5);
    ob.bind(leased[0].seq, 1).unwrap();
    ob.ack(1, AckKind::PubAck, 0).unwrap();
    let next = ob.lease().unwrap().unwrap();
    assert_eq!(next.data, b"m5", "one slot freed, next in order");
    assert!(ob.lease().unwrap().is_none());
}

#[test]
fn qos2_is_deleted_on_pubcomp_not_pubrec() {
    let dir = tempfile::tempdir().unwrap();
    let ob = Outbox::open(cfg(&dir.path().join("o.db"), "b")).unwrap();
    ob.append(&msg(2, b"q2")).unwrap();
    ob.link_up(0).unwrap();
    let r = ob.lease().unwrap().unwrap();
    ob.bind(r.seq, 7).unwrap();
    assert_eq!(
        ob.ack(7, AckKind::PubAck, 0).unwrap(),
        AckOutcome::NotOurs,
        "PUBACK does not fit a QoS 2 row"
    );
    assert_eq!(ob.ack(7, AckKind::PubRec, 0).unwrap(), AckOutcome::Progress);
    assert_eq!(ob.stats().unwrap().messages, 1, "kept until PUBCOMP");
    assert_eq!(ob.ack(7, AckKind::PubComp, 0).unwrap(), AckOutcome::Done);
    let st = ob.stats().unwrap();
    assert_eq!((st.messages, st.acked, st.inflight), (0, 1, 0));
    assert_eq!(ob.ack(7, AckKind::PubComp, 0).unwrap(), AckOutcome::NotOurs);
}

#[test]
fn qos2_pubrec_survives_a_restart_and_pubcomp_always_completes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.db");
    {
        let ob = Outbox::open(cfg(&path, "b")).unwrap();
        append_n(&ob, 2, 0..2);
        ob.link_up(0).unwrap();
        let r = ob.lease().unwrap().unwrap();
        assert!(!r.released);
        ob.bind(r.seq, 5).unwrap();
        assert_eq!(ob.ack(5, AckKind::PubRec, 0).unwrap(), AckOutcome::Progress);
        // In the same process, after a link loss, the row comes back released.
        ob.link_down().unwrap();
        ob.link_up(0).unwrap();
        let again = ob.lease().unwrap().unwrap();
        assert_eq!(
            (again.packet_id, again.dup, again.released),
            (5, true, true)
        );
        ob.close().unwrap();
    }
    // After a restart too: resume with PUBREL on id 5, never a second PUBLISH.
    let ob = Outbox::open(cfg(&path, "b")).unwrap();
    ob.link_up(0).unwrap();
    let r = ob.lease().unwrap().unwrap();
    assert_eq!((r.packet_id, r.dup, r.released), (5, true, true));
    ob.bind(r.seq, 5).unwrap();
    // 0x92 "packet identifier not found": the remote had completed it; not a rejection.
    assert_eq!(ob.ack(5, AckKind::PubComp, 0x92).unwrap(), AckOutcome::Done);
    let st = ob.stats().unwrap();
    assert_eq!((st.acked, st.dropped_rejected, st.messages), (1, 0, 1));
    let next = ob.lease().unwrap().unwrap();
    assert!(!next.released, "the other QoS 2 row never got a PUBREC");
}

#[test]
fn rejected_ack_deletes_and_counts_without_retry() {
    let dir = tempfile::tempdir().unwrap();
    let ob = Outbox::open(cfg(&dir.path().join("o.db"), "b")).unwrap();
    append_n(&ob, 1, 0..2);
    ob.link_up(0).unwrap();
    let r = ob.lease().unwrap().unwrap();
    ob.bind(r.seq, 3).unwrap();
    assert_eq!(
        ob.ack(3, AckKind::PubAck, 0x87).unwrap(),
        AckOutcome::Rejected
    );
    let st = ob.stats().unwrap();
    assert_eq!((st.dropped_rejected, st.messages), (1, 1));
    ob.link_down().unwrap();
    ob.link_up(0).unwrap();
    assert_eq!(drain(&ob), names(1..2), "the rejected row is not retried");
}

#[test]
fn link_down_returns_inflight_rows_to_the_head_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let ob = Outbox::open(cfg(&dir.path().join("o.db"), "b")).unwrap();
    append_n(&ob, 1, 0..10);
    ob.link_up(0).unwrap();
    for pid in 1..=4u16 {
        let r = ob.lease().unwrap().unwrap();
        ob.bind(r.seq, pid).unwrap();
    }
    ob.ack(2, AckKind::PubAck, 0).unwrap(); // m1 acked; m0, m2, m3 in flight
    ob.link_down().unwrap();
    assert_eq!(ob.stats().unwrap().inflight, 0);
    assert_eq!(ob.ack(1, AckKind::PubAck, 0).unwrap(), AckOutcome::NotOurs);
    ob.link_up(0).unwrap();
    let again: Vec<_> = (0..3).map(|_| ob.lease().unwrap().unwrap()).collect();
    let data: Vec<_> = again.iter().map(|r| r.data.clone()).collect();
    assert_eq!(data, vec![b"m0".to_vec(), b"m2".to_vec(), b"m3".to_vec()]);
    assert!(again.iter().all(|r| r.dup));
    assert_eq!(
        again.iter().map(|r| r.packet_id).collect::<Vec<_>>(),
        vec![1, 3, 4]
    );
    assert_eq!(ob.stats().unwrap().resent, 3);
    for r in &again {
        ob.bind(r.seq, r.packet_id).unwrap();
        ob.ack(r.packet_id, AckKind::PubAck, 0).unwrap();
    }
    assert_eq!(drain(&ob), names(4..10));
}

#[test]
fn unlease_puts_the_row_back_at_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let ob = Outbox::open(cfg(&dir.path().join("o.db"), "b")).unwrap();
    append_n(&ob, 1, 0..3);
    ob.link_up(0).unwrap();
    let a = ob.lease().unwrap().unwrap();
    let b = ob.lease().unwrap().unwrap();
    ob.unlease(a.seq).unwrap();
    assert!(matches!(ob.unlease(a.seq), Err(Error::Invalid(_))));
    assert_eq!(ob.lease().unwrap().unwrap().data, b"m0");
    assert_eq!(
        ob.lease().unwrap().unwrap().data,
        b"m2",
        "m1 still in flight"
    );
    assert!(matches!(ob.bind(b.seq, 0), Err(Error::Invalid(_))));
}

#[test]
fn packet_id_bound_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ob = Outbox::open(cfg(&dir.path().join("o.db"), "b")).unwrap();
    append_n(&ob, 1, 0..2);
    ob.link_up(0).unwrap();
    let a = ob.lease().unwrap().unwrap();
    let b = ob.lease().unwrap().unwrap();
    ob.bind(a.seq, 9).unwrap();
    assert!(matches!(ob.bind(b.seq, 9), Err(Error::Invalid(_))));
    assert!(matches!(ob.bind(12345, 10), Err(Error::Invalid(_))));
}

#[test]
fn requeue_front_goes_before_the_backlog_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let ob = Outbox::open(cfg(&dir.path().join("o.db"), "b")).unwrap();
    append_n(&ob, 1, 10..13);
    // Direct sends d0, d1 lost at the cut: given back newest first.
    ob.requeue_front(&msg(1, b"d1"), 41).unwrap();
    ob.requeue_front(&msg(1, b"d0"), 40).unwrap();
    ob.link_up(0).unwrap();
    let first = ob.lease().unwrap().unwrap();
    assert_eq!(
        (first.packet_id, first.dup),
        (40, true),
        "resent with its id and DUP"
    );
    ob.unlease(first.seq).unwrap();
    let got = drain(&ob);
    assert_eq!(got, vec!["d0", "d1", "m10", "m11", "m12"]);
}

/// The wall clock in ms, as the outbox reads it for expiry.
fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn expired_rows_are_dropped_and_counted_never_sent() {
    let dir = tempfile::tempdir().unwrap();
    let ob = Outbox::open(cfg(&dir.path().join("o.db"), "b")).unwrap();
    let before = wall_ms();
    ob.append(&NewMessage {
        qos: 1,
        expiry_secs: 1,
        data: b"old",
    })
    .unwrap();
    ob.append(&NewMessage {
        qos: 1,
        expiry_secs: 3600,
        data: b"fresh",
    })
    .unwrap();
    // Expiry is wall-clock time: the event to await is the clock passing the old row's
    // expiry (it was appended by `appended`, so it expires by `appended` + 1000 ms).
    let appended = wall_ms();
    while wall_ms() <= appended + 1000 {
        let left = appended + 1001 - wall_ms();
        std::thread::sleep(std::time::Duration::from_millis(left.max(1) as u64));
    }
    ob.link_up(0).unwrap();
    let leasing = wall_ms();
    let r = ob.lease().unwrap().unwrap();
    let leased = wall_ms();
    assert_eq!(r.data, b"fresh");
    // What is left of its hour at the lease, rounded up: bounds from the clock readings
    // around the append and the lease, however long those took.
    let ceil_secs = |ms: i64| ((ms + 999) / 1000) as u32;
    let (lo, hi) = (
        ceil_secs(before + 3_600_000 - leased),
        ceil_secs(appended + 3_600_000 - leasing),
    );
    assert!(
        (lo..=hi).contains(&r.expiry_secs),
        "{} not in {lo}..={hi}",
        r.expiry_secs
    );
    let st = ob.stats().unwrap();
    assert_eq!((st.dropped_expired, st.messages), (1, 1));
}

#[test]
fn drop_oldest_keeps_the_newest_within_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(&dir.path().join("o.db"), "b");
    c.max_messages = 10;
    let ob = Outbox::open(c).unwrap();
    append_n(&ob, 1, 0..25);
    ob.flush().unwrap();
    let st = ob.stats().unwrap();
    assert_eq!((st.messages, st.dropped_full, st.enqueued), (10, 15, 25));
    ob.link_up(0).unwrap();
    assert_eq!(drain(&ob), names(15..25));
}

#[test]
fn byte_limit_and_reject_new() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(&dir.path().join("o.db"), "b");
    c.max_bytes = 100;
    c.full_policy = FullPolicy::RejectNew;
    let ob = Outbox::open(c).unwrap();
    let ten = [7u8; 10];
    for _ in 0..10 {
        ob.append(&msg(1, &ten)).unwrap();
    }
    assert_eq!(ob.append(&msg(1, &ten)), Err(Error::Full));
    let st = ob.stats().unwrap();
    assert_eq!((st.messages, st.bytes, st.dropped_full), (10, 100, 1));
}

#[test]
fn oversized_message_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(&dir.path().join("o.db"), "b");
    c.max_message_bytes = 16;
    let ob = Outbox::open(c).unwrap();
    assert!(matches!(
        ob.append(&msg(1, &[0u8; 17])),
        Err(Error::TooBig { len: 17, max: 16 })
    ));
    assert_eq!(ob.stats().unwrap().messages, 0);
}

#[test]
fn one_bridge_limit_never_deletes_another_bridges_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let mut small = cfg(&path, "small");
    small.max_messages = 5;
    let a = Outbox::open(small).unwrap();
    let b = Outbox::open(cfg(&path, "big")).unwrap();
    append_n(&b, 1, 0..100);
    b.flush().unwrap();
    append_n(&a, 1, 0..50);
    a.flush().unwrap();
    assert_eq!(a.stats().unwrap().messages, 5);
    assert_eq!(a.stats().unwrap().dropped_full, 45);
    assert_eq!(b.stats().unwrap().messages, 100);
    a.close().unwrap();
    b.close().unwrap();
    // And on disk, after reopening both.
    let b = Outbox::open(cfg(&path, "big")).unwrap();
    b.link_up(0).unwrap();
    assert_eq!(drain(&b), names(0..100));
    let a = Outbox::open(cfg(&path, "small")).unwrap();
    a.link_up(0).unwrap();
    assert_eq!(drain(&a), names(45..50));
}

#[test]
fn same_bridge_twice_in_one_process_is_busy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.db");
    let a = Outbox::open(cfg(&path, "b")).unwrap();
    assert!(matches!(Outbox::open(cfg(&path, "b")), Err(Error::Busy(_))));
    a.close().unwrap();
    Outbox::open(cfg(&path, "b")).unwrap();
}

#[test]
fn corrupt_file_is_renamed_aside_and_a_fresh_store_opened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.db");
    std::fs::write(&path, vec![0xA5u8; 8192]).unwrap();
    let lines = Arc::new(Mutex::new(Vec::<(Level, String)>::new()));
    let sink = Arc::clone(&lines);
    let mut c = cfg(&path, "b");
    c.logger = Logger::new(
        Some(Arc::new(move |l, m: &str| {
            sink.lock().unwrap().push((l, m.to_string()))
        })),
        Level::Debug,
    );
    let ob = Outbox::open(c).unwrap();
    ob.append(&msg(1, b"after")).unwrap();
    ob.flush().unwrap();
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("o.db.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        std::fs::read(dir.path().join(&aside[0])).unwrap(),
        vec![0xA5u8; 8192],
        "the corrupt file is kept as it was"
    );
    let logged = lines.lock().unwrap();
    assert!(
        logged
            .iter()
            .any(|(l, m)| *l == Level::Error && m.contains("corrupt")),
        "{logged:?}"
    );
}

#[test]
fn closed_handle_refuses_every_call() {
    let dir = tempfile::tempdir().unwrap();
    let ob = Outbox::open(cfg(&dir.path().join("o.db"), "b")).unwrap();
    ob.append(&msg(1, b"x")).unwrap();
    ob.close().unwrap();
    ob.close().unwrap();
    assert_eq!(ob.append(&msg(1, b"y")), Err(Error::Closed));
    assert_eq!(ob.lease(), Err(Error::Closed));
    assert_eq!(ob.decide(1), Err(Error::Closed));
    assert_eq!(ob.link_up(0), Err(Error::Closed));
    assert_eq!(ob.flush(), Err(Error::Closed));
    assert_eq!(ob.ack(1, AckKind::PubAck, 0), Err(Error::Closed));
    drop(ob);
    let ob = Outbox::open(cfg(&dir.path().join("o.db"), "b")).unwrap();
    assert_eq!(
        ob.stats().unwrap().messages,
        1,
        "close committed the pending row"
    );
}

#[test]
fn group_commit_by_time_commits_without_a_flush_call() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(&dir.path().join("o.db"), "b");
    c.group_commit_count = 1000;
    c.group_commit_ms = 10;
    let ob = Outbox::open(c).unwrap();
    let fd = ob.commit_fd().unwrap();
    let seq = ob.append(&msg(1, b"x")).unwrap();
    // The writer thread's timed commit signals the commit descriptor (an event); the poll
    // timeout only turns a hang into a failure.
    while ob.committed_seq() < seq {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd on the stack.
        assert_eq!(
            unsafe { libc::poll(&mut p, 1, 120_000) },
            1,
            "no timed commit"
        );
    }
}

#[test]
fn concurrent_appends_and_drain_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ob = Arc::new(Outbox::open(cfg(&dir.path().join("o.db"), "b")).unwrap());
    ob.link_up(0).unwrap();
    let producer = {
        let ob = Arc::clone(&ob);
        std::thread::spawn(move || append_n(&ob, 1, 0..5000))
    };
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while got.len() < 5000 {
        assert!(std::time::Instant::now() < deadline);
        got.extend(drain(&ob));
    }
    producer.join().unwrap();
    assert_eq!(got, names(0..5000));
}
