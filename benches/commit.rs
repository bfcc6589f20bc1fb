//! Ack after commit (issue 13): append-to-commit latency as a host sees it, waiting on the
//! commit descriptor (`commit_fd`) and reading `committed_seq`, against a raw rusqlite insert
//! with its own commit per message (same PRAGMAs, same schema), measured in the same run.
//! Two loads: one message at a time (each waits for its commit), and a window of 32 messages
//! in flight (a publisher with 32 unacknowledged messages; the throughput is printed too).
//!
//! cargo bench --bench commit
//!   NMQ_BENCH_N     messages per window-32 case (default 5 000; one at a time: N/10, at least 50)
//!   NMQ_BENCH_REPS  repetitions (default 3; runs alternate, medians reported)
//!   NMQ_BENCH_DIR   where the files go (default /var/tmp, a real disk)

#[path = "common/mod.rs"]
mod common;

use common::*;
use nmq_outbox::{Config, NewMessage, Outbox};
use rusqlite::params;
use std::collections::VecDeque;
use std::time::Instant;

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn wait_readable(fd: i32) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd on the stack. The bound only keeps a broken build from hanging.
    unsafe { libc::poll(&mut p, 1, 10_000) };
}

/// (latencies in ms, msg/s) of `n` appends with `window` in flight, group commit `ms`.
fn outbox_case(n: usize, window: usize, ms: u32, caller: bool) -> (Vec<f64>, f64) {
    let dir = fresh_dir("commit");
    let mut c = Config::new(dir.path().join("o.db"), "bench");
    c.group_commit_ms = ms;
    c.caller_commits = caller;
    let ob = Outbox::open(c).unwrap();
    let fd = ob.commit_fd().unwrap();
    let payload = vec![0x5Au8; 100];
    let mut lat = Vec::with_capacity(n);
    let mut inflight: VecDeque<(i64, Instant)> = VecDeque::new();
    let t0 = Instant::now();
    let mut sent = 0;
    while lat.len() < n {
        while sent < n && inflight.len() < window {
            let seq = ob
                .append(&NewMessage {
                    qos: 1,
                    expiry_secs: 0,
                    data: &payload,
                })
                .unwrap();
            inflight.push_back((seq, Instant::now()));
            sent += 1;
            if caller {
                // as the patched NanoMQ does after each PUBLISH (OK or PENDING)
                ob.commit().unwrap();
            }
        }
        wait_readable(fd);
        let committed = ob.committed_seq();
        let now = Instant::now();
        while inflight.front().is_some_and(|(s, _)| *s <= committed) {
            let (_, t) = inflight.pop_front().unwrap();
            lat.push((now - t).as_secs_f64() * 1000.0);
        }
    }
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    (lat, rate)
}

/// The baseline: insert and commit each message on its own (a host that commits per message).
fn raw_case(n: usize) -> (Vec<f64>, f64) {
    let dir = fresh_dir("commit-raw");
    let conn = raw_conn(dir.path(), "NORMAL");
    let payload = vec![0x5Au8; 100];
    let mut lat = Vec::with_capacity(n);
    let t0 = Instant::now();
    for seq in 1..=n as i64 {
        let t = Instant::now();
        conn.prepare_cached(
            "INSERT INTO msg(bridge_id, seq, qos, expires_at, enqueued_at, packet_id, released,
             data) VALUES (1, ?1, 1, 0, 0, 0, 0, ?2)",
        )
        .unwrap()
        .execute(params![seq, payload])
        .unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    (lat, n as f64 / t0.elapsed().as_secs_f64())
}

/// An outbox case: (group_commit_ms, caller_commits); `None` in its place is the baseline.
type Case = (u32, bool);

fn main() {
    let n = env_u64("NMQ_BENCH_N", 5_000) as usize;
    let reps = env_u64("NMQ_BENCH_REPS", 3).max(1) as usize;
    println!("{}", machine());
    println!(
        "files on {}, {n} messages of 100 B per window-32 case ({} one at a time), {reps} \
         repetitions\n",
        filesystem_of(&base_dir()),
        (n / 10).max(50)
    );
    let cases: [(&str, usize, Option<Case>); 9] = [
        (
            "outbox, group commit 20 ms, one at a time",
            1,
            Some((20, false)),
        ),
        (
            "outbox, group commit 1 ms, one at a time",
            1,
            Some((1, false)),
        ),
        (
            "outbox, group commit 0 ms (at once), one at a time",
            1,
            Some((0, false)),
        ),
        (
            "outbox, 0 ms + caller commits (the mode), one at a time",
            1,
            Some((0, true)),
        ),
        (
            "outbox, group commit 20 ms, window 32",
            32,
            Some((20, false)),
        ),
        ("outbox, group commit 1 ms, window 32", 32, Some((1, false))),
        (
            "outbox, group commit 0 ms (at once), window 32",
            32,
            Some((0, false)),
        ),
        (
            "outbox, 0 ms + caller commits (the mode), window 32",
            32,
            Some((0, true)),
        ),
        ("raw rusqlite, commit per message (baseline)", 1, None),
    ];
    let mut res: Vec<Vec<(f64, f64, f64)>> = vec![Vec::new(); cases.len()];
    for _ in 0..reps {
        for (i, (_, window, ms)) in cases.iter().enumerate() {
            // one at a time, each waits up to the whole window: fewer messages
            let n = if *window == 1 { (n / 10).max(50) } else { n };
            let (mut lat, rate) = match ms {
                Some((ms, caller)) => outbox_case(n, *window, *ms, *caller),
                None => raw_case(n),
            };
            res[i].push((pct(&mut lat, 0.5), pct(&mut lat, 0.99), rate));
        }
    }
    println!("| case | append-to-commit p50 | p99 | msg/s |");
    println!("|---|---|---|---|");
    for (i, (name, _, _)) in cases.iter().enumerate() {
        let m = |f: fn(&(f64, f64, f64)) -> f64| median(res[i].iter().map(f).collect());
        println!(
            "| {name} | {:.2} ms | {:.2} ms | {:.0} |",
            m(|r| r.0),
            m(|r| r.1),
            m(|r| r.2)
        );
    }
}
