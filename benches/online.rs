//! The online path (link up, backlog empty), each against a baseline from the same run:
//! 1. `decide()` per call (what the bridge adds to each publish when the link is healthy)
//!    against the plain copy of a 100 B payload the bridge does anyway;
//! 2. one message stored and replayed (append, lease, bind, ack, all committed) against the
//!    same work done with raw rusqlite (insert, select, delete in batched transactions).
//!
//! cargo bench --bench online     (NMQ_BENCH_N=<messages>)

use nmq_outbox::{AckKind, Config, Decision, NewMessage, Outbox};
use rusqlite::{params, Connection};
use std::hint::black_box;
use std::time::Instant;

fn ns_per(n: u64, t: Instant) -> f64 {
    t.elapsed().as_nanos() as f64 / n as f64
}

fn main() {
    let n: u64 = std::env::var("NMQ_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let base = std::env::var("NMQ_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into());
    let dir = std::path::Path::new(&base).join(format!("nmq-outbox-online-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ob = Outbox::open(Config::new(dir.join("o.db"), "online")).unwrap();
    ob.link_up(0).unwrap();
    let payload = vec![0x5Au8; 100];

    // 1. decide() on the healthy path, against copying the payload (the bridge's own work).
    let t = Instant::now();
    for _ in 0..n {
        assert_eq!(black_box(ob.decide(1).unwrap()), Decision::SendNow);
    }
    let decide = ns_per(n, t);
    let t = Instant::now();
    for _ in 0..n {
        black_box(black_box(&payload).to_vec());
    }
    let copy = ns_per(n, t);

    // 2. Store and replay one message at a time, committed, against raw rusqlite.
    let m = n / 10;
    let t = Instant::now();
    let mut pid = 1u16;
    for _ in 0..m {
        ob.append(&NewMessage {
            qos: 1,
            expiry_secs: 0,
            data: &payload,
        })
        .unwrap();
        let r = ob.lease().unwrap().unwrap();
        ob.bind(r.seq, pid).unwrap();
        ob.ack(pid, AckKind::PubAck, 0).unwrap();
        pid = pid % 65535 + 1;
    }
    ob.flush().unwrap();
    let ours = ns_per(m, t);

    let mut conn = Connection::open(dir.join("raw.db")).unwrap();
    let _: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .unwrap();
    conn.execute_batch(
        "PRAGMA synchronous=NORMAL;
         CREATE TABLE msg(bridge_id INTEGER NOT NULL, seq INTEGER NOT NULL,
         qos INTEGER NOT NULL, expires_at INTEGER NOT NULL, enqueued_at INTEGER NOT NULL,
         packet_id INTEGER NOT NULL DEFAULT 0, data BLOB NOT NULL,
         PRIMARY KEY(bridge_id, seq)) WITHOUT ROWID;",
    )
    .unwrap();
    let t = Instant::now();
    let mut seq = 0i64;
    // The same work: each message inserted, read back, deleted; committed every 100 writes.
    while (seq as u64) < m {
        let tx = conn.transaction().unwrap();
        for _ in 0..50 {
            if seq as u64 == m {
                break;
            }
            seq += 1;
            tx.prepare_cached("INSERT INTO msg VALUES (1, ?1, 1, 0, 0, 0, ?2)")
                .unwrap()
                .execute(params![seq, &payload])
                .unwrap();
            let d: Vec<u8> = tx
                .prepare_cached("SELECT data FROM msg WHERE bridge_id = 1 AND seq = ?1")
                .unwrap()
                .query_row(params![seq], |r| r.get(0))
                .unwrap();
            black_box(d);
            tx.prepare_cached("DELETE FROM msg WHERE bridge_id = 1 AND seq = ?1")
                .unwrap()
                .execute(params![seq])
                .unwrap();
        }
        tx.commit().unwrap();
    }
    let raw = ns_per(m, t);

    println!("online path, link up, 100 B payloads");
    println!("| what | ns per message | baseline (same run) | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| decide() on the healthy path | {decide:.0} | copy of the payload: {copy:.0} | {:.2} |",
        decide / copy
    );
    println!(
        "| store + replay (append, lease, bind, ack) | {ours:.0} | raw rusqlite insert+select+delete: {raw:.0} | {:.2} |",
        ours / raw
    );
    drop(ob);
    let _ = std::fs::remove_dir_all(&dir);
}
