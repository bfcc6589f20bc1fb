//! Model-based property test of the outbox: random interleavings of append, requeue_front,
//! lease, bind, ack (PUBACK/PUBREC/PUBCOMP, with rejections), QoS 0 sent, PINGREQ and PINGRESP,
//! drop of a leased row, unlease, link loss, flush and reopen, checked against a plain model
//! after every step:
//! - G1/G3: the rows held are exactly those accepted and not yet acknowledged or rejected (a
//!   written QoS 0 row: not yet confirmed by an ack of a later packet or a PINGRESP to a later
//!   PINGREQ);
//! - G4: between two resets of the replay (link loss, unlease, requeue, reopen) rows are handed
//!   out in strictly increasing FIFO order, and a final drain hands out every held row in order.

use nmq_outbox::{AckKind, AckOutcome, Config, NewMessage, Outbox};
use proptest::prelude::*;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
enum Op {
    Append(u8),
    Requeue(u8),
    Lease,
    /// Ack the n-th bound in-flight row (modulo), with a rejecting reason or not.
    Ack(usize, bool),
    Unlease(usize),
    /// A leased QoS 0 row was written (the n-th, modulo).
    Sent(usize),
    /// A leased row cannot be sent: dropped (the n-th of all leased rows, modulo).
    Drop(usize),
    /// The host wrote a PINGREQ; a PINGRESP came.
    Ping,
    Pong,
    LinkDown,
    LinkUp(u16),
    Flush,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..=2).prop_map(Op::Append),
        1 => (0u8..=2).prop_map(Op::Requeue),
        4 => Just(Op::Lease),
        4 => (0usize..8, prop::bool::weighted(0.1)).prop_map(|(i, r)| Op::Ack(i, r)),
        1 => (0usize..8).prop_map(Op::Unlease),
        2 => (0usize..8).prop_map(Op::Sent),
        1 => (0usize..8).prop_map(Op::Drop),
        1 => Just(Op::Ping),
        1 => Just(Op::Pong),
        1 => Just(Op::LinkDown),
        1 => (0u16..6).prop_map(Op::LinkUp),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
    ]
}

struct Model {
    /// seq -> (qos, payload) of every row held.
    held: BTreeMap<i64, (u8, String)>,
    /// seq -> (packet id, qos, pubrec seen) of rows bound in flight.
    bound: BTreeMap<i64, (u16, u8, bool)>,
    /// Writes on the connection: seq -> write number of bound rows and of written QoS 0 rows
    /// (awaiting a confirmation); the write number at each PINGREQ awaiting its PINGRESP, and
    /// whether too many were outstanding to keep track.
    send_no: u64,
    sent_no: BTreeMap<i64, u64>,
    written: BTreeMap<i64, u64>,
    marks: std::collections::VecDeque<u64>,
    lost_track: bool,
    leased_unbound: Vec<i64>,
    last_leased: Option<i64>,
    next_pid: u16,
    counter: u32,
    /// seq -> packet id of the last send: a row handed out again must carry it, with DUP.
    last_pid: BTreeMap<i64, u16>,
}

fn open(path: &std::path::Path) -> Outbox {
    let mut c = Config::new(path, "model");
    c.group_commit_count = 7;
    c.group_commit_ms = 1;
    c.window = 4;
    Outbox::open(c).unwrap()
}

fn reset(m: &mut Model) {
    m.bound.clear();
    m.leased_unbound.clear();
    m.last_leased = None;
    m.sent_no.clear();
    m.written.clear();
    m.marks.clear();
    m.lost_track = false;
}

/// The remote read every write up to `upto`: written QoS 0 rows among them are done.
fn confirm(m: &mut Model, upto: u64) {
    let done: Vec<i64> = m
        .written
        .iter()
        .filter(|(_, &n)| n <= upto)
        .map(|(&s, _)| s)
        .collect();
    for s in done {
        m.written.remove(&s);
        m.held.remove(&s);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        // PROPTEST_CASES overrides, for longer local runs.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48),
        .. ProptestConfig::default()
    })]
    #[test]
    fn outbox_matches_model(ops in prop::collection::vec(op(), 1..80)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let mut ob = open(&path);
        let mut m = Model {
            held: BTreeMap::new(),
            bound: BTreeMap::new(),
            leased_unbound: Vec::new(),
            send_no: 0,
            sent_no: BTreeMap::new(),
            written: BTreeMap::new(),
            marks: Default::default(),
            lost_track: false,
            last_leased: None,
            next_pid: 1,
            counter: 0,
            last_pid: BTreeMap::new(),
        };
        let mut link = false;
        for op in ops {
            match op {
                Op::Append(q) | Op::Requeue(q) => {
                    m.counter += 1;
                    let data = format!("p{}", m.counter);
                    let msg = NewMessage { qos: q, expiry_secs: 0, data: data.as_bytes() };
                    let seq = if matches!(op, Op::Append(_)) {
                        ob.append(&msg).unwrap()
                    } else {
                        let s = ob.requeue_front(&msg, 0).unwrap();
                        prop_assert!(m.held.keys().all(|&k| s < k), "requeue goes first");
                        // The replay restarts at the new head.
                        m.last_leased = None;
                        s
                    };
                    prop_assert!(m.held.insert(seq, (q, data)).is_none());
                }
                Op::Lease => {
                    if let Some(r) = ob.lease().unwrap() {
                        prop_assert!(link);
                        let (q, d) = m.held.get(&r.seq).expect("leased a row not held").clone();
                        prop_assert_eq!(r.qos, q);
                        prop_assert_eq!(r.data, d.into_bytes());
                        prop_assert!(!m.bound.contains_key(&r.seq));
                        let want = m.last_pid.get(&r.seq).copied().unwrap_or(0);
                        prop_assert_eq!((r.packet_id, r.dup), (want, want != 0));
                        if let Some(last) = m.last_leased {
                            prop_assert!(r.seq > last, "FIFO: {} after {}", r.seq, last);
                        }
                        m.last_leased = Some(r.seq);
                        if q == 0 {
                            // No packet id: done once written (Op::Sent).
                            m.leased_unbound.push(r.seq);
                        } else {
                            // Bind right away with a fresh id (as the nng glue does).
                            let pid = m.next_pid;
                            m.next_pid = m.next_pid % 65535 + 1;
                            ob.bind(r.seq, pid).unwrap();
                            m.send_no += 1;
                            m.sent_no.insert(r.seq, m.send_no);
                            m.bound.insert(r.seq, (pid, q, false));
                            m.last_pid.insert(r.seq, pid);
                        }
                    }
                }
                Op::Ack(i, reject) => {
                    if m.bound.is_empty() { continue; }
                    let seq = *m.bound.keys().nth(i % m.bound.len()).unwrap();
                    let (pid, q, rec) = m.bound[&seq];
                    let reason = if reject { 0x80 } else { 0 };
                    let kind = match (q, rec) {
                        (1, _) => AckKind::PubAck,
                        (_, false) => AckKind::PubRec,
                        _ => AckKind::PubComp,
                    };
                    let out = ob.ack(pid, kind, reason).unwrap();
                    let upto = m.sent_no[&seq] - 1;
                    confirm(&mut m, upto);
                    match out {
                        AckOutcome::Progress => {
                            prop_assert!(kind == AckKind::PubRec && !reject);
                            m.bound.get_mut(&seq).unwrap().2 = true;
                        }
                        AckOutcome::Done | AckOutcome::Rejected => {
                            // A PUBCOMP always completes; PUBACK/PUBREC >= 0x80 reject (the
                            // row is a dead letter: out of the queue all the same).
                            prop_assert_eq!(
                                out == AckOutcome::Rejected,
                                reject && kind != AckKind::PubComp
                            );
                            m.bound.remove(&seq);
                            m.sent_no.remove(&seq);
                            m.held.remove(&seq);
                            // The row is gone; a later requeue may reuse its seq.
                            m.last_pid.remove(&seq);
                        }
                        AckOutcome::NotOurs => prop_assert!(false, "ack of a bound row not ours"),
                        AckOutcome::Retry => prop_assert!(false, "0x80 is no quota refusal"),
                    }
                }
                Op::Unlease(i) => {
                    if m.bound.is_empty() { continue; }
                    let seq = *m.bound.keys().nth(i % m.bound.len()).unwrap();
                    ob.unlease(seq).unwrap();
                    m.bound.remove(&seq);
                    m.sent_no.remove(&seq);
                    // The replay restarts at that row; rows still in flight are skipped.
                    m.last_leased = None;
                }
                Op::Sent(i) => {
                    if m.leased_unbound.is_empty() { continue; }
                    let seq = m.leased_unbound.remove(i % m.leased_unbound.len());
                    ob.sent(seq).unwrap();
                    prop_assert!(ob.sent(seq).is_err());
                    m.send_no += 1;
                    m.written.insert(seq, m.send_no);
                }
                Op::Ping => {
                    prop_assert_eq!(
                        ob.ping_due().unwrap(),
                        link && m.marks.is_empty() && !m.lost_track && !m.written.is_empty()
                    );
                    ob.ping_sent().unwrap();
                    if link {
                        if m.marks.len() >= 64 {
                            m.marks.clear();
                            m.lost_track = true;
                        } else if !m.lost_track {
                            m.marks.push_back(m.send_no);
                        }
                    }
                }
                Op::Pong => {
                    let n = ob.pong().unwrap();
                    let before = m.held.len();
                    if let Some(mark) = m.marks.pop_front() {
                        confirm(&mut m, mark);
                    }
                    prop_assert_eq!(n as usize, before - m.held.len());
                }
                Op::Drop(i) => {
                    let leased: Vec<i64> =
                        m.bound.keys().copied().chain(m.leased_unbound.iter().copied()).collect();
                    if leased.is_empty() { continue; }
                    let seq = leased[i % leased.len()];
                    ob.drop_row(seq, "model").unwrap();
                    m.bound.remove(&seq);
                    m.sent_no.remove(&seq);
                    m.leased_unbound.retain(|&s| s != seq);
                    m.held.remove(&seq);
                    m.last_pid.remove(&seq);
                }
                Op::LinkDown => {
                    ob.link_down().unwrap();
                    link = false;
                    reset(&mut m);
                }
                Op::LinkUp(rm) => {
                    ob.link_up(rm).unwrap();
                    link = true;
                }
                Op::Flush => ob.flush().unwrap(),
                Op::Reopen => {
                    ob.close().unwrap();
                    drop(ob);
                    ob = open(&path);
                    link = false;
                    reset(&mut m);
                }
            }
            let st = ob.stats().unwrap();
            prop_assert_eq!(st.messages, m.held.len() as u64);
            prop_assert_eq!(
                st.inflight,
                (m.bound.len() + m.leased_unbound.len() + m.written.len()) as u64
            );
        }
        // Final drain: after a link loss every held row comes out, in FIFO order.
        ob.link_down().unwrap();
        ob.link_up(0).unwrap();
        let mut got = Vec::new();
        for pid in 1u16..=10_000 {
            let Some(r) = ob.lease().unwrap() else {
                // written QoS 0 rows fill the window until a PINGRESP confirms them
                if !ob.ping_due().unwrap() {
                    break;
                }
                ob.ping_sent().unwrap();
                prop_assert!(ob.pong().unwrap() > 0);
                continue;
            };
            got.push(r.seq);
            if r.qos == 0 {
                ob.sent(r.seq).unwrap();
                continue;
            }
            ob.bind(r.seq, pid).unwrap();
            if r.qos == 2 {
                prop_assert_eq!(ob.ack(pid, AckKind::PubRec, 0).unwrap(), AckOutcome::Progress);
                prop_assert_eq!(ob.ack(pid, AckKind::PubComp, 0).unwrap(), AckOutcome::Done);
            } else {
                prop_assert_eq!(ob.ack(pid, AckKind::PubAck, 0).unwrap(), AckOutcome::Done);
            }
        }
        prop_assert_eq!(got, m.held.keys().copied().collect::<Vec<_>>());
        prop_assert_eq!(ob.stats().unwrap().messages, 0);
    }
}
