//! Memory: resident set of a process with an open outbox, empty, then with a 1 000 000-message
//! backlog (100 B each, committed), then while draining it with the link up (lease, bind, ack;
//! no network). Goal: flat, the backlog lives on disk: under 10 MB apart. Also prints the drain
//! rate of that local loop, the outbox's own ceiling without a network.
//!
//! cargo bench --bench memory     (NMQ_BENCH_N=<messages>, NMQ_BENCH_DIR=<dir>)

use nmq_outbox::{AckKind, Config, NewMessage, Outbox};
use std::time::Instant;

/// Resident set in bytes, from /proc/self/statm.
fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn mb(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn main() {
    let n: u64 = std::env::var("NMQ_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let base = std::env::var("NMQ_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into());
    let dir = std::path::Path::new(&base).join(format!("nmq-outbox-mem-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    let ob = Outbox::open(Config::new(dir.join("o.db"), "mem")).unwrap();
    let empty = rss();
    let payload = [0x5Au8; 100];
    let t = Instant::now();
    for _ in 0..n {
        ob.append(&NewMessage {
            qos: 1,
            expiry_secs: 0,
            data: &payload,
        })
        .unwrap();
    }
    ob.flush().unwrap();
    let ingest = n as f64 / t.elapsed().as_secs_f64();
    let full = rss();

    ob.link_up(0).unwrap();
    let t = Instant::now();
    let mut peak = full;
    let mut pid = 1u16;
    let mut drained = 0u64;
    while let Some(r) = ob.lease().unwrap() {
        ob.bind(r.seq, pid).unwrap();
        ob.ack(pid, AckKind::PubAck, 0).unwrap();
        pid = pid % 65535 + 1;
        drained += 1;
        if drained % 50_000 == 0 {
            peak = peak.max(rss());
        }
    }
    ob.flush().unwrap();
    let drain = drained as f64 / t.elapsed().as_secs_f64();
    let after = rss();
    assert_eq!(drained, n);

    println!("memory with a {n}-message backlog (100 B each), files in {base}");
    println!("| point | RSS MB | vs empty |");
    println!("|---|---|---|");
    println!("| empty outbox | {:.1} | - |", mb(empty));
    let row =
        |name: &str, v: u64| println!("| {name} | {:.1} | {:+.1} MB |", mb(v), mb(v) - mb(empty));
    row("backlog committed", full);
    row("peak while draining", peak);
    row("drained", after);
    let worst = full.max(peak).max(after).saturating_sub(empty);
    println!(
        "goal: under 10 MB apart: {:.1} MB: {}",
        mb(worst),
        if worst < 10 * 1024 * 1024 {
            "PASS"
        } else {
            "MISS"
        }
    );
    println!("ingest {ingest:.0} msg/s; local drain (lease+bind+ack, no network) {drain:.0} msg/s");
    drop(ob);
    let _ = std::fs::remove_dir_all(&dir);
}
