//! The online path (link up, backlog empty), each number against a baseline from the same run:
//! 1. `decide()` per call: what the bridge adds to every publish while the link is healthy;
//! 2. end to end in memory per message: `decide()` -> SendNow plus the copy of the 100 B
//!    payload the bridge makes anyway, against a loop doing nothing but that copy;
//! 3. the replay round trip, one message at a time (append, lease, bind, ack, all committed at
//!    the end), against raw rusqlite insert + select + delete of the same row, committed every
//!    50 messages (100 writes, the default group commit);
//! 4. the replay of a committed backlog, in chunks of 100 (append 100, flush, then lease, bind,
//!    ack each, flush), against raw rusqlite (insert 100, commit, select each, delete 100,
//!    commit).
//!
//! Each case is repeated and the median reported (the runs of the outbox and the baseline
//! alternate).
//!
//! cargo bench --bench online
//!   NMQ_BENCH_N     messages for the replay cases (default 200 000; decide() runs 50 N calls)
//!   NMQ_BENCH_REPS  repetitions (default 5)
//!   NMQ_BENCH_DIR   where the files go (default /var/tmp, a real disk)

#[path = "common/mod.rs"]
mod common;

use common::*;
use nmq_outbox::{AckKind, AckOutcome, Config, Decision, NewMessage, Outbox};
use rusqlite::params;
use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

const CHUNK: u64 = 100;

fn ns_per(n: u64, body: impl FnOnce()) -> f64 {
    let t = Instant::now();
    body();
    t.elapsed().as_nanos() as f64 / n as f64
}

const MSG: NewMessage<'static> = NewMessage {
    qos: 1,
    expiry_secs: 0,
    data: &[0x5A; 100],
};

/// An open outbox with the link up and an empty backlog.
fn online_outbox(dir: &Path) -> Outbox {
    let ob = Outbox::open(Config::new(dir.join("outbox.db"), "online")).unwrap();
    ob.link_up(0).unwrap();
    ob
}

fn next_pid(pid: &mut u16) -> u16 {
    let p = *pid;
    *pid = p % 65535 + 1;
    p
}

/// Lease, bind and ack one row with the link up.
fn replay_one(ob: &Outbox, pid: &mut u16) {
    let r = ob.lease().unwrap().expect("a row to replay");
    let p = next_pid(pid);
    ob.bind(r.seq, p).unwrap();
    assert_eq!(ob.ack(p, AckKind::PubAck, 0).unwrap(), AckOutcome::Done);
    black_box(r.data);
}

fn outbox_one_at_a_time(dir: &Path, m: u64) -> f64 {
    let ob = online_outbox(dir);
    let mut pid = 1;
    let ns = ns_per(m, || {
        for _ in 0..m {
            ob.append(&MSG).unwrap();
            replay_one(&ob, &mut pid);
        }
        ob.flush().unwrap();
    });
    assert_eq!(ob.stats().unwrap().messages, 0);
    ob.close().unwrap();
    ns
}

fn outbox_chunks(dir: &Path, m: u64) -> f64 {
    let ob = online_outbox(dir);
    let mut pid = 1;
    let ns = ns_per(m, || {
        for _ in 0..m / CHUNK {
            for _ in 0..CHUNK {
                ob.append(&MSG).unwrap();
            }
            ob.flush().unwrap();
            for _ in 0..CHUNK {
                replay_one(&ob, &mut pid);
            }
            ob.flush().unwrap();
        }
    });
    assert_eq!(ob.stats().unwrap().messages, 0);
    ob.close().unwrap();
    ns
}

const INSERT: &str =
    "INSERT INTO msg(bridge_id, seq, qos, expires_at, enqueued_at, packet_id, data)
                      VALUES (1, ?1, 1, 0, 0, 0, ?2)";
const SELECT: &str = "SELECT data FROM msg WHERE bridge_id = 1 AND seq = ?1";
const DELETE: &str = "DELETE FROM msg WHERE bridge_id = 1 AND seq = ?1";

fn raw_one_at_a_time(dir: &Path, m: u64) -> f64 {
    let mut conn = raw_conn(dir, "NORMAL");
    ns_per(m, || {
        let mut seq = 0i64;
        while (seq as u64) < m {
            let tx = conn.transaction().unwrap();
            for _ in 0..50 {
                if seq as u64 == m {
                    break;
                }
                seq += 1;
                tx.prepare_cached(INSERT)
                    .unwrap()
                    .execute(params![seq, MSG.data])
                    .unwrap();
                let d: Vec<u8> = tx
                    .prepare_cached(SELECT)
                    .unwrap()
                    .query_row(params![seq], |r| r.get(0))
                    .unwrap();
                black_box(d);
                tx.prepare_cached(DELETE)
                    .unwrap()
                    .execute(params![seq])
                    .unwrap();
            }
            tx.commit().unwrap();
        }
    })
}

fn raw_chunks(dir: &Path, m: u64) -> f64 {
    let mut conn = raw_conn(dir, "NORMAL");
    ns_per(m, || {
        let mut seq = 0i64;
        for _ in 0..m / CHUNK {
            let first = seq + 1;
            let tx = conn.transaction().unwrap();
            for _ in 0..CHUNK {
                seq += 1;
                tx.prepare_cached(INSERT)
                    .unwrap()
                    .execute(params![seq, MSG.data])
                    .unwrap();
            }
            tx.commit().unwrap();
            for s in first..=seq {
                let d: Vec<u8> = conn
                    .prepare_cached(SELECT)
                    .unwrap()
                    .query_row(params![s], |r| r.get(0))
                    .unwrap();
                black_box(d);
            }
            let tx = conn.transaction().unwrap();
            for s in first..=seq {
                tx.prepare_cached(DELETE)
                    .unwrap()
                    .execute(params![s])
                    .unwrap();
            }
            tx.commit().unwrap();
        }
    })
}

/// Median ns per message of `ours` and `base`, alternating which one runs first.
fn pair(reps: u64, mut ours: impl FnMut() -> f64, mut base: impl FnMut() -> f64) -> (f64, f64) {
    let (mut o, mut b) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        if rep % 2 == 0 {
            o.push(ours());
            b.push(base());
        } else {
            b.push(base());
            o.push(ours());
        }
    }
    (median(o), median(b))
}

fn main() {
    let m = (env_u64("NMQ_BENCH_N", 200_000) / CHUNK).max(1) * CHUNK;
    let calls = m * 50;
    let reps = env_u64("NMQ_BENCH_REPS", 5).max(1);
    let base = base_dir();
    println!("online path: link up, empty backlog, QoS 1, 100 B payloads");
    println!("machine: {}", machine());
    println!(
        "files: fresh directory per run under {} on {}; synchronous NORMAL, group commit 100; \
         median of {reps} runs",
        base.display(),
        filesystem_of(&base)
    );

    // 1 and 2: decide() alone, decide() + copy, copy alone.
    let dir = fresh_dir("online");
    let ob = online_outbox(dir.path());
    let decide_alone = |n: u64| {
        ns_per(n, || {
            for _ in 0..n {
                assert_eq!(black_box(&ob).decide(1).unwrap(), Decision::SendNow);
            }
        })
    };
    let decide_and_copy = |n: u64| {
        ns_per(n, || {
            for _ in 0..n {
                if black_box(&ob).decide(1).unwrap() == Decision::SendNow {
                    black_box(black_box(MSG.data).to_vec());
                }
            }
        })
    };
    let copy_alone = |n: u64| {
        ns_per(n, || {
            for _ in 0..n {
                black_box(black_box(MSG.data).to_vec());
            }
        })
    };
    decide_and_copy(calls / 10);
    copy_alone(calls / 10);
    let decide = median((0..reps).map(|_| decide_alone(calls)).collect());
    let (e2e, copy) = pair(reps, || decide_and_copy(calls), || copy_alone(calls));
    ob.close().unwrap();
    drop(dir);

    // 3 and 4: the replay path against raw rusqlite.
    let fresh = |f: fn(&Path, u64) -> f64| move || f(fresh_dir("online").path(), m);
    let (one, raw_one) = pair(reps, fresh(outbox_one_at_a_time), fresh(raw_one_at_a_time));
    let (chunk, raw_chunk) = pair(reps, fresh(outbox_chunks), fresh(raw_chunks));

    println!("| what | outbox ns/msg | baseline (same run) | baseline ns/msg | outbox/baseline |");
    println!("|---|---|---|---|---|");
    println!(
        "| decide() per call ({calls} calls) | {decide:.1} | - | - | - |\n\
         | decide() -> SendNow + payload copy | {e2e:.1} | payload copy alone | {copy:.1} | \
         {:.2} |\n\
         | replay one at a time: append, lease, bind, ack ({m} msgs) | {one:.0} | \
         raw insert + select + delete, commit per 50 msgs | {raw_one:.0} | {:.2} |\n\
         | replay committed chunks of {CHUNK}: append, flush, lease, bind, ack, flush | \
         {chunk:.0} | raw insert {CHUNK}, commit, select each, delete {CHUNK}, commit | \
         {raw_chunk:.0} | {:.2} |",
        e2e / copy,
        one / raw_one,
        chunk / raw_chunk
    );
    println!(
        "decide() adds {:.1} ns per message on the healthy path ({:.1}% of {:.0} ns, \
         one payload copy)",
        e2e - copy,
        100.0 * (e2e - copy) / copy,
        copy
    );
}
