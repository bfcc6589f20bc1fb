//! Memory: resident set of a process with an open outbox, empty, then with a 1 000 000-message
//! backlog (100 B each, committed), then while draining it with the link up (lease, bind, ack;
//! no network). Goal: flat, the backlog lives on disk: every point under 10 MB apart. Also the
//! drain rate of that local loop: the outbox's own ceiling without a network.
//!
//! The RSS comes from /proc/self/statm and includes SQLite's page cache (2 MB by default).
//!
//! cargo bench --bench memory
//!   NMQ_BENCH_N    backlog in messages (default 1 000 000)
//!   NMQ_BENCH_DIR  where the file goes (default /var/tmp, a real disk)

#[path = "common/mod.rs"]
mod common;

use common::*;
use nmq_outbox::{AckKind, AckOutcome, Config, NewMessage, Outbox};
use std::time::Instant;

const GOAL_MB: f64 = 10.0;

fn file_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum()
}

fn main() {
    let n = env_u64("NMQ_BENCH_N", 1_000_000).max(1);
    let sample_every = (n / 100).max(1);
    let dir = fresh_dir("memory");
    println!("memory with a {n}-message backlog (100 B each, QoS 1), one process");
    println!("machine: {}", machine());
    println!(
        "file: {} on {}; synchronous NORMAL, group commit 100, window 32",
        dir.path().display(),
        filesystem_of(dir.path())
    );

    let before = rss_bytes();
    let ob = Outbox::open(Config::new(dir.path().join("outbox.db"), "memory")).unwrap();
    let empty = rss_bytes();

    let payload = [0x5Au8; 100];
    let mut peak_append = empty;
    let t = Instant::now();
    for i in 1..=n {
        ob.append(&NewMessage {
            qos: 1,
            expiry_secs: 0,
            data: &payload,
        })
        .unwrap();
        if i % sample_every == 0 {
            peak_append = peak_append.max(rss_bytes());
        }
    }
    ob.flush().unwrap();
    let ingest = n as f64 / t.elapsed().as_secs_f64();
    let full = rss_bytes();
    let db_size = file_bytes(dir.path());
    assert_eq!(ob.stats().unwrap().messages, n);

    ob.link_up(0).unwrap();
    let mut peak_drain = full;
    let mut pid = 1u16;
    let mut drained = 0u64;
    let cpu0 = cpu_secs();
    let t = Instant::now();
    while let Some(r) = ob.lease().unwrap() {
        ob.bind(r.seq, pid).unwrap();
        assert_eq!(ob.ack(pid, AckKind::PubAck, 0).unwrap(), AckOutcome::Done);
        pid = pid % 65535 + 1;
        drained += 1;
        if drained % sample_every == 0 {
            peak_drain = peak_drain.max(rss_bytes());
        }
    }
    ob.flush().unwrap();
    let drain_secs = t.elapsed().as_secs_f64();
    let drain_cpu_us = (cpu_secs() - cpu0) * 1e6 / n as f64;
    let drain = drained as f64 / drain_secs;
    let after = rss_bytes();
    assert_eq!(drained, n);
    assert_eq!(ob.stats().unwrap().messages, 0);
    ob.close().unwrap();

    println!("| point | RSS MiB | vs empty outbox |");
    println!("|---|---|---|");
    println!(
        "| process before open | {:.1} | {:+.1} MiB |",
        mib(before),
        mib(before) - mib(empty)
    );
    println!("| open, empty backlog | {:.1} | - |", mib(empty));
    let row = |name: &str, v: u64| {
        println!(
            "| {name} | {:.1} | {:+.1} MiB |",
            mib(v),
            mib(v) - mib(empty)
        );
    };
    row("peak while appending", peak_append);
    row(&format!("{n} messages committed"), full);
    row("peak while draining", peak_drain);
    row("drained", after);
    let points = [empty, peak_append, full, peak_drain, after];
    let spread = points.iter().max().unwrap() - points.iter().min().unwrap();
    let spread_mb = spread as f64 / 1e6;
    println!(
        "spread over the points: {:.1} MiB ({spread_mb:.1} MB); goal under {GOAL_MB} MB: {}",
        mib(spread),
        verdict(spread_mb < GOAL_MB)
    );
    println!(
        "backlog on disk: {:.1} MiB (database + WAL); RSS during the backlog is {:.1}% of it",
        mib(db_size),
        100.0 * (full.saturating_sub(empty)) as f64 / db_size as f64
    );
    println!(
        "append {ingest:.0} msg/s (flushed); local drain, lease + bind + ack, no network: \
         {drain:.0} msg/s ({drain_secs:.2} s for {n}; {drain_cpu_us:.2} us CPU per message, \
         all threads)"
    );
}
