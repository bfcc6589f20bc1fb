//! G2 durability: a child process appends as fast as it can and reports `committed_seq`; the
//! parent SIGKILLs it mid-stream, reopens the file and checks that every reported row is there,
//! in order, with no gap. Three rounds on the same file: appends continue after each kill.
//!
//! The child is this same test binary, re-run with `NMQ_KILL_CHILD_DB` set.

use nmq_outbox::{AckKind, Config, NewMessage, Outbox};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "NMQ_KILL_CHILD_DB";

fn config(path: &str) -> Config {
    let mut c = Config::new(path, "kill");
    c.group_commit_count = 100;
    c.group_commit_ms = 5;
    c
}

/// The child's body. Appends "<seq>" payloads and prints "COMMITTED <seq>" lines. A no-op when
/// run as an ordinary test.
#[test]
fn child_appender() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let ob = Outbox::open(config(&path)).unwrap();
    let mut out = std::io::stdout().lock();
    let start = Instant::now();
    let mut last = i64::MIN;
    // Rows are never deleted across rounds, so the next seq is the row count + 1.
    let mut next = ob.stats().unwrap().messages as i64 + 1;
    // Bounded: the parent kills us long before this ends.
    while start.elapsed() < Duration::from_secs(60) {
        for _ in 0..100 {
            // Row payload = its own seq, so the parent can check every row it finds.
            let data = next.to_string();
            let seq = ob
                .append(&NewMessage {
                    qos: 1,
                    expiry_secs: 0,
                    data: data.as_bytes(),
                })
                .unwrap();
            assert_eq!(seq, next);
            next += 1;
        }
        let committed = ob.stats().unwrap().committed_seq;
        if committed != last {
            writeln!(out, "COMMITTED {committed}").unwrap();
            out.flush().unwrap();
            last = committed;
        }
    }
}

fn run_child_and_kill(path: &str, min_new: i64, floor: i64) -> i64 {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "child_appender",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut reported = floor;
    let deadline = Instant::now() + Duration::from_secs(60);
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("COMMITTED ") {
            reported = n.trim().parse().unwrap();
            if reported >= floor + min_new {
                break;
            }
        }
        assert!(Instant::now() < deadline, "child too slow");
    }
    // SIGKILL, mid-stream: the child is still appending.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        reported >= floor + min_new,
        "child reported only {reported}"
    );
    reported
}

/// Reads every row back in FIFO order (and acks it, to empty the store).
fn read_all(path: &str) -> Vec<i64> {
    let ob = Outbox::open(config(path)).unwrap();
    ob.link_up(0).unwrap();
    let mut seqs = Vec::new();
    let mut pid = 1u16;
    while let Some(r) = ob.lease().unwrap() {
        assert_eq!(
            r.data,
            r.seq.to_string().into_bytes(),
            "payload of row {}",
            r.seq
        );
        seqs.push(r.seq);
        ob.bind(r.seq, pid).unwrap();
        ob.ack(pid, AckKind::PubAck, 0).unwrap();
        pid = pid % 65535 + 1;
    }
    ob.close().unwrap();
    seqs
}

#[test]
fn sigkill_loses_no_reported_commit() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kill.db");
    let path = path.to_str().unwrap();
    let mut floor = 0;
    for round in 0..3 {
        let reported = run_child_and_kill(path, 20_000, floor);
        // Check without consuming: reopen, count, close; then the next round appends more.
        let ob = Outbox::open(config(path)).unwrap();
        let st = ob.stats().unwrap();
        ob.close().unwrap();
        assert!(
            st.messages as i64 >= reported,
            "round {round}: {} rows on disk, child reported {reported} committed",
            st.messages
        );
        floor = st.messages as i64;
    }
    let seqs = read_all(path);
    let n = seqs.len() as i64;
    assert!(n >= floor);
    assert_eq!(
        seqs,
        (1..=n).collect::<Vec<_>>(),
        "every row present, in order, no gap"
    );
}
