//! Ingest while offline: msg/s into the outbox (link down, so every message is appended),
//! against a raw rusqlite batched insert of the same rows into the same schema, with the same
//! PRAGMAs (WAL, same `synchronous`), the same batch size and a cached prepared statement,
//! measured in the same run. The clock stops when everything is committed: `flush()` is inside
//! the timed region. Every case runs in a fresh directory; runs of the outbox and of the
//! baseline alternate, and the median of the repetitions is reported.
//!
//! cargo bench --bench ingest
//!   NMQ_BENCH_N     messages per 100 B case (default 1 000 000; the 4 KiB cases use N/20)
//!   NMQ_BENCH_REPS  repetitions per case (default 3)
//!   NMQ_BENCH_DIR   where the files go (default /var/tmp, a real disk; not tmpfs)

#[path = "common/mod.rs"]
mod common;

use common::*;
use nmq_outbox::{Config, NewMessage, Outbox, SyncMode};
use rusqlite::params;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Goal for NORMAL, 100 B: at least this many msg/s...
const GOAL_RATE: f64 = 100_000.0;
/// ...and every case within this factor of the raw insert.
const GOAL_RATIO: f64 = 2.0;

/// Wall-clock rate and CPU time (all threads) of one timed run.
#[derive(Clone, Copy)]
struct Run {
    rate: f64,
    cpu_us: f64,
}

fn timed(n: usize, body: impl FnOnce()) -> Run {
    let (cpu0, t) = (cpu_secs(), Instant::now());
    body();
    let wall = t.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu0;
    Run {
        rate: n as f64 / wall,
        cpu_us: cpu * 1e6 / n as f64,
    }
}

fn outbox_run(n: usize, size: usize, sync: SyncMode, batch: u32) -> Run {
    let dir = fresh_dir("ingest");
    let mut c = Config::new(dir.path().join("outbox.db"), "bench");
    c.sync = sync;
    c.group_commit_count = batch;
    let ob = Outbox::open(c).unwrap();
    let payload = vec![0x5Au8; size];
    let run = timed(n, || {
        for _ in 0..n {
            ob.append(&NewMessage {
                qos: 1,
                expiry_secs: 0,
                data: &payload,
            })
            .unwrap();
        }
        ob.flush().unwrap();
    });
    let st = ob.stats().unwrap();
    assert_eq!(st.messages, n as u64);
    assert_eq!(st.committed_seq, n as i64);
    ob.close().unwrap();
    run
}

fn raw_run(n: usize, size: usize, sync: SyncMode, batch: u32) -> Run {
    let dir = fresh_dir("ingest-raw");
    let mut conn = raw_conn(
        dir.path(),
        match sync {
            SyncMode::Normal => "NORMAL",
            SyncMode::Full => "FULL",
        },
    );
    let payload = vec![0x5Au8; size];
    timed(n, || {
        let mut seq = 0i64;
        while (seq as usize) < n {
            let tx = conn.transaction().unwrap();
            {
                let mut ins = tx
                    .prepare_cached(
                        "INSERT INTO msg(bridge_id, seq, qos, expires_at, enqueued_at,
                         packet_id, released, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    )
                    .unwrap();
                for _ in 0..batch {
                    if seq as usize == n {
                        break;
                    }
                    seq += 1;
                    // The outbox stamps every row with the clock too.
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap()
                        .as_millis() as i64;
                    ins.execute(params![1, seq, 1, 0, now, 0, false, &payload])
                        .unwrap();
                }
            }
            tx.commit().unwrap();
        }
    })
}

fn main() {
    let n = env_u64("NMQ_BENCH_N", 1_000_000).max(1000) as usize;
    let reps = env_u64("NMQ_BENCH_REPS", 3).max(1) as usize;
    let base = base_dir();
    println!("ingest while offline (link down: every message appended), QoS 1");
    println!("machine: {}", machine());
    println!(
        "files: fresh directory per run under {} on {}; median of {reps} runs, alternating",
        base.display(),
        filesystem_of(&base)
    );
    // Warm-up: code, allocator, file system.
    outbox_run(n / 20, 100, SyncMode::Normal, 100);
    raw_run(n / 20, 100, SyncMode::Normal, 100);

    println!(
        "| sync | payload | batch | messages | outbox msg/s | raw msg/s | raw/outbox | \
         CPU us/msg outbox | CPU us/msg raw | goal | result |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut misses = 0;
    for (size, count) in [(100usize, n), (4096, n / 20)] {
        for sync in [SyncMode::Normal, SyncMode::Full] {
            for batch in [100u32, 1000] {
                let (mut ours, mut raw) = (Vec::new(), Vec::new());
                for rep in 0..reps {
                    if rep % 2 == 0 {
                        ours.push(outbox_run(count, size, sync, batch));
                        raw.push(raw_run(count, size, sync, batch));
                    } else {
                        raw.push(raw_run(count, size, sync, batch));
                        ours.push(outbox_run(count, size, sync, batch));
                    }
                }
                let o = median(ours.iter().map(|r| r.rate).collect());
                let r = median(raw.iter().map(|r| r.rate).collect());
                let o_cpu = median(ours.iter().map(|r| r.cpu_us).collect());
                let r_cpu = median(raw.iter().map(|r| r.cpu_us).collect());
                let ratio = r / o;
                let headline = sync == SyncMode::Normal && size == 100;
                let (goal, ok) = if headline {
                    (
                        format!(">= {GOAL_RATE:.0}/s, raw/outbox <= {GOAL_RATIO}"),
                        o >= GOAL_RATE && ratio <= GOAL_RATIO,
                    )
                } else {
                    (format!("raw/outbox <= {GOAL_RATIO}"), ratio <= GOAL_RATIO)
                };
                misses += usize::from(!ok);
                println!(
                    "| {sync:?} | {size} B | {batch} | {count} | {o:.0} | {r:.0} | {ratio:.2} | \
                     {o_cpu:.2} | {r_cpu:.2} | {goal} | {} |",
                    verdict(ok)
                );
            }
        }
    }
    println!(
        "(raw/outbox > 1: the outbox is slower. CPU is user+system of all threads: the outbox \
         commits on its writer thread while the caller appends.)"
    );
    println!("{misses} case(s) missed the goal");
}
