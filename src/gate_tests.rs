//! The gate, tested with real outboxes: when an ack goes, in which order, on which thread,
//! and what a closed outbox answers.

use super::*;
use crate::config::Config;
use crate::outbox::NewMessage;
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

fn msg() -> NewMessage<'static> {
    NewMessage {
        qos: 1,
        expiry_secs: 0,
        data: b"\x32\x06\x00\x01t\x00\x01x",
    }
}

/// An outbox in the mode (the caller commits, no timer of its own for appends).
fn outbox(dir: &tempfile::TempDir, name: &str, caller_commits: bool) -> Outbox {
    let mut c = Config::new(dir.path().join(format!("{name}.db")), name);
    c.caller_commits = caller_commits;
    c.group_commit_ms = if caller_commits { 0 } else { 5 };
    Outbox::open(c).unwrap()
}

/// What one call of the callback was given, and on which thread.
type Call = (Vec<GateAck>, Option<String>);

/// A gate whose callback calls (and the sending thread's name) go to a channel.
fn gate() -> (Gate, Receiver<Call>) {
    let (tx, rx) = channel();
    let tx = Mutex::new(tx);
    let g = Gate::new(move |acks: &[GateAck]| {
        let name = std::thread::current().name().map(str::to_string);
        let _ = lock(&tx).send((acks.to_vec(), name));
    })
    .unwrap();
    (g, rx)
}

fn ids(rx: &Receiver<Call>) -> Vec<(u32, u16, u8)> {
    rx.try_iter()
        .flat_map(|(acks, _)| acks)
        .map(|a| (a.pipe, a.packet_id, a.reason))
        .collect()
}

#[test]
fn an_ack_goes_once_the_commit_is_made_in_the_clients_order() {
    let dir = tempfile::tempdir().unwrap();
    let ob = outbox(&dir, "a", true);
    let (g, rx) = gate();
    g.watch(&ob).unwrap();
    for pid in 1..=3 {
        assert!(g.owe(7, pid, 1));
    }
    assert!(g.owe(8, 1, 2));
    // pid 2 is handled first (another worker thread): it waits for pid 1
    let mut p2 = g.begin(7, 2, 1, true);
    p2.took(&ob, ob.append(&msg()).unwrap());
    g.end(p2);
    assert_eq!(ids(&rx), vec![]);
    // another client is not held by client 7
    let p = g.begin(8, 1, 2, false);
    g.end(p); // no outbox took it: at once
    assert_eq!(ids(&rx), vec![(8, 1, 0)]);
    let mut p1 = g.begin(7, 1, 1, true);
    let seq = ob.append(&msg()).unwrap();
    p1.took(&ob, seq);
    g.end(p1);
    assert!(ob.committer().committed().0 >= seq);
    assert_eq!(ids(&rx), vec![(7, 1, 0), (7, 2, 0)]);
    g.end(g.begin(7, 3, 1, true));
    assert_eq!(ids(&rx), vec![(7, 3, 0)]);
    assert_eq!(g.waiting(), (0, 2));
    g.pipe_gone(7);
    g.pipe_gone(8);
    assert_eq!(g.waiting(), (0, 0));
}

#[test]
fn an_ack_waits_for_every_outbox_and_the_writer_releases_it() {
    let dir = tempfile::tempdir().unwrap();
    let a = outbox(&dir, "a", true);
    let b = outbox(&dir, "b", false); // commits on its own writer thread
    let (g, rx) = gate();
    g.watch(&a).unwrap();
    g.watch(&b).unwrap();
    g.watch(&b).unwrap(); // idempotent
    assert!(g.owe(1, 10, 1));
    let mut p = g.begin(1, 10, 1, false);
    p.took(&a, a.append(&msg()).unwrap());
    // a seq b has not given yet: no commit made by end can cover it
    let next = b.append(&msg()).unwrap() + 1;
    p.took(&b, next);
    g.end(p);
    assert_eq!(ids(&rx), vec![], "never before every outbox committed it");
    assert_eq!(g.waiting().0, 1);
    assert_eq!(b.append(&msg()).unwrap(), next);
    // b's writer commits it (group_commit_ms 5), its hook releases the ack, and the gate's
    // thread sends it (the writer goes on committing)
    let (acks, thread) = rx.recv_timeout(WAIT).expect("released by b's commit");
    assert_eq!(acks.len(), 1);
    let ack = acks[0];
    assert_eq!((ack.pipe, ack.packet_id, ack.qos), (1, 10, 1));
    assert_eq!(thread.as_deref(), Some("nmq-outbox-acks"));
    assert!(b.committer().committed().0 >= next);
    assert_eq!(g.waiting().0, 0);
    assert_eq!(g.counts(), (1, 0));
}

#[test]
fn a_refusal_answers_an_mqtt5_publisher_and_leaves_a_311_one_to_the_host() {
    let (g, rx) = gate();
    assert!(g.owe(1, 1, 1));
    assert!(g.owe(1, 2, 2));
    let mut p = g.begin(1, 1, 1, true);
    assert_eq!(p.refused(&Error::NoSpace), Refusal::Answered(0x97));
    g.end(p);
    let mut p = g.begin(1, 2, 2, false);
    assert_eq!(p.refused(&Error::Io("x".into())), Refusal::HostPath);
    g.end(p); // the host's path took it: acked as without the gate
    assert_eq!(ids(&rx), vec![(1, 1, 0x97), (1, 2, 0)]);
}

#[test]
fn a_closed_outbox_answers_what_it_did_not_commit() {
    let dir = tempfile::tempdir().unwrap();
    let ob = outbox(&dir, "a", true);
    let (g, rx) = gate();
    g.watch(&ob).unwrap();
    for pid in 1..=3 {
        assert!(g.owe(5, pid, 1));
    }
    assert!(g.owe(6, 1, 1));
    let last = ob.append(&msg()).unwrap();
    // pid 1 (MQTT 3.1.1) and client 6 (MQTT 5) wait for seqs the outbox never gives
    let mut p = g.begin(5, 1, 1, false);
    p.took(&ob, last + 1);
    g.end(p);
    let mut p = g.begin(6, 1, 1, true);
    p.took(&ob, last + 1);
    g.end(p);
    // pid 2: committed, but behind pid 1
    let mut p = g.begin(5, 2, 1, false);
    p.took(&ob, last);
    g.end(p);
    assert_eq!(ids(&rx), vec![]);
    ob.close().unwrap();
    let mut got = ids(&rx);
    got.sort();
    assert_eq!(got, vec![(5, 2, 0), (6, 1, REASON_CLOSED)]);
    assert_eq!(g.counts(), (2, 1));
    // later acks of client 5 are not held by the one never sent
    g.end(g.begin(5, 3, 1, false));
    assert_eq!(ids(&rx), vec![(5, 3, 0)]);
    // a closed outbox cannot be watched
    assert_eq!(g.watch(&ob), Err(Error::Closed));
}

#[test]
fn an_outbox_is_watched_by_one_gate() {
    let dir = tempfile::tempdir().unwrap();
    let ob = outbox(&dir, "a", true);
    let (g, _rx) = gate();
    let (h, _rx2) = gate();
    g.watch(&ob).unwrap();
    assert!(matches!(h.watch(&ob), Err(Error::Busy(_))));
}

#[test]
fn the_callback_may_call_the_gate_and_acks_of_many_threads_keep_each_clients_order() {
    let dir = tempfile::tempdir().unwrap();
    let ob = Arc::new(outbox(&dir, "a", true));
    let (tx, rx) = channel();
    let tx = Mutex::new(tx);
    let slot: Arc<Mutex<Option<Gate>>> = Arc::new(Mutex::new(None));
    let s2 = Arc::clone(&slot);
    let g = Gate::new(move |acks: &[GateAck]| {
        // no lock of the gate is held: the callback may use it
        if let Some(g) = lock(&s2).as_ref() {
            let _ = g.waiting();
        }
        for a in acks {
            let _ = lock(&tx).send(*a);
        }
    })
    .unwrap();
    *lock(&slot) = Some(g.clone());
    g.watch(&ob).unwrap();
    const CLIENTS: u32 = 4;
    const N: u16 = 200;
    for pid in 1..=N {
        for c in 0..CLIENTS {
            assert!(g.owe(c, pid, 1));
        }
    }
    let threads: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (g, ob) = (g.clone(), Arc::clone(&ob));
            std::thread::spawn(move || {
                // each client's PUBLISHes are handled from the last to the first
                for pid in (1..=N).rev() {
                    let mut p = g.begin(c, pid, 1, true);
                    p.took(&ob, ob.append(&msg()).unwrap());
                    g.end(p);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // acks held by a commit that came during the writer's checkpoint go with the writer's
    // commit after it (on its thread): wait for every ack
    let mut per: HashMap<u32, Vec<u16>> = HashMap::new();
    for _ in 0..CLIENTS * N as u32 {
        let a = rx.recv_timeout(WAIT).expect("every ack is sent");
        per.entry(a.pipe).or_default().push(a.packet_id);
    }
    for c in 0..CLIENTS {
        assert_eq!(per[&c], (1..=N).collect::<Vec<_>>(), "client {c}");
    }
    assert_eq!(g.waiting().0, 0);
    *lock(&slot) = None;
}

#[test]
fn what_one_writer_commit_releases_goes_in_one_call_on_the_gates_thread() {
    let dir = tempfile::tempdir().unwrap();
    let ob = outbox(&dir, "a", false); // the writer commits 5 ms after the first append
    let (g, rx) = gate();
    g.watch(&ob).unwrap();
    for pid in 1..=3 {
        assert!(g.owe(9, pid, 1));
    }
    for pid in 1..=3 {
        let mut p = g.begin(9, pid, 1, false);
        p.took(&ob, ob.append(&msg()).unwrap());
        g.end(p);
    }
    let mut calls = Vec::new();
    let mut n = 0;
    while n < 3 {
        let (acks, thread) = rx
            .recv_timeout(WAIT)
            .expect("released by the writer's commit");
        assert_eq!(thread.as_deref(), Some("nmq-outbox-acks"));
        n += acks.len();
        calls.push(acks.iter().map(|a| a.packet_id).collect::<Vec<_>>());
    }
    assert_eq!(calls.concat(), vec![1, 2, 3], "in the client's order");
    // the three appends came within the writer's 5 ms: one commit released them, one call
    // sent them (a slower machine may split them: never reorder them)
    assert!(calls.len() <= 3);
    assert_eq!(g.counts(), (3, 0));
}

#[test]
fn the_gates_thread_ends_with_the_last_clone_and_the_callback_is_let_go() {
    let alive = Arc::new(());
    let held = Arc::clone(&alive);
    let g = Gate::new(move |_: &[GateAck]| {
        let _ = &held;
    })
    .unwrap();
    let g2 = g.clone();
    drop(g);
    assert_eq!(Arc::strong_count(&alive), 2, "a clone keeps the gate");
    drop(g2);
    // the thread was joined and its reference to the gate dropped: the callback is gone
    assert_eq!(Arc::strong_count(&alive), 1);
}
