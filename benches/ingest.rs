//! Ingest while offline: msg/s into the outbox (link down, so every message is appended),
//! against a raw rusqlite batched insert of the same rows into the same schema with the same
//! PRAGMAs and batch size, measured in the same run. The clock stops when everything is
//! committed (`flush()` is inside the timed region).
//!
//! cargo bench --bench ingest            (NMQ_BENCH_N=<messages> to change the count)
//! Files go to $NMQ_BENCH_DIR or /var/tmp (a real disk, not tmpfs).

use nmq_outbox::{Config, NewMessage, Outbox, SyncMode};
use rusqlite::{params, Connection};
use std::path::{Path, PathBuf};
use std::time::Instant;

const GOAL_MSGS: f64 = 100_000.0;
const GOAL_RATIO: f64 = 2.0;

fn fresh_dir(name: &str) -> PathBuf {
    let base = std::env::var("NMQ_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into());
    let dir = Path::new(&base).join(format!("nmq-outbox-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn outbox_rate(n: usize, size: usize, sync: SyncMode, batch: u32) -> f64 {
    let dir = fresh_dir("ob");
    let mut c = Config::new(dir.join("o.db"), "bench");
    c.sync = sync;
    c.group_commit_count = batch;
    let ob = Outbox::open(c).unwrap();
    let payload = vec![0x5Au8; size];
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
    let rate = n as f64 / t.elapsed().as_secs_f64();
    assert_eq!(ob.stats().unwrap().messages, n as u64);
    drop(ob);
    let _ = std::fs::remove_dir_all(&dir);
    rate
}

/// The same rows, schema and PRAGMAs, inserted in batches of `batch` with a cached statement.
fn raw_rate(n: usize, size: usize, sync: SyncMode, batch: u32) -> f64 {
    let dir = fresh_dir("raw");
    let mut conn = Connection::open(dir.join("raw.db")).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    conn.execute_batch(match sync {
        SyncMode::Normal => "PRAGMA synchronous=NORMAL",
        SyncMode::Full => "PRAGMA synchronous=FULL",
    })
    .unwrap();
    conn.execute_batch(
        "CREATE TABLE msg(bridge_id INTEGER NOT NULL, seq INTEGER NOT NULL,
         qos INTEGER NOT NULL, expires_at INTEGER NOT NULL, enqueued_at INTEGER NOT NULL,
         packet_id INTEGER NOT NULL DEFAULT 0, data BLOB NOT NULL,
         PRIMARY KEY(bridge_id, seq)) WITHOUT ROWID",
    )
    .unwrap();
    let payload = vec![0x5Au8; size];
    let t = Instant::now();
    let mut seq = 0i64;
    while (seq as usize) < n {
        let tx = conn.transaction().unwrap();
        {
            let mut ins = tx
                .prepare_cached("INSERT INTO msg VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
                .unwrap();
            for _ in 0..batch {
                if seq as usize == n {
                    break;
                }
                seq += 1;
                ins.execute(params![1, seq, 1, 0, 1_700_000_000_000i64, 0, &payload])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    drop(conn);
    let _ = std::fs::remove_dir_all(&dir);
    rate
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    let n: usize = std::env::var("NMQ_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    println!("ingest while offline, {n} messages per case, 2-core machine, files on a real disk");
    println!(
        "{:<7} {:>7} {:>6} {:>12} {:>12} {:>9}  goal",
        "sync", "payload", "batch", "outbox/s", "raw/s", "raw/ours"
    );
    for (size, sizes_n) in [(100usize, n), (4096, n / 4)] {
        for sync in [SyncMode::Normal, SyncMode::Full] {
            for batch in [100u32, 1000] {
                // Warm-up of the file system and caches, then the measured pair.
                let _ = outbox_rate(sizes_n / 10, size, sync, batch);
                let ours = outbox_rate(sizes_n, size, sync, batch);
                let raw = raw_rate(sizes_n, size, sync, batch);
                let ratio = raw / ours;
                let goal = if sync == SyncMode::Normal && size == 100 {
                    let ok = ours >= GOAL_MSGS && ratio <= GOAL_RATIO;
                    format!(
                        ">= {GOAL_MSGS:.0}/s and raw/ours <= {GOAL_RATIO}: {}",
                        if ok { "PASS" } else { "MISS" }
                    )
                } else {
                    format!(
                        "raw/ours <= {GOAL_RATIO}: {}",
                        if ratio <= GOAL_RATIO { "PASS" } else { "MISS" }
                    )
                };
                println!(
                    "{:<7} {:>6}B {:>6} {:>12.0} {:>12.0} {:>9.2}  {}",
                    format!("{sync:?}"),
                    size,
                    batch,
                    ours,
                    raw,
                    ratio,
                    goal
                );
            }
        }
    }
}
