//! The `nmq-outbox` command against files made by the library: output (human and --json) and
//! exit codes, a file held open by a writer in another process, a corrupt file, a foreign
//! SQLite file, a newer schema, a missing bridge, purge, export/import, check.
//!
//! The writer in another process is this same test binary, re-run with `NMQ_CLI_WRITER_DB` set.

use nmq_outbox::{AckKind, Config, NewMessage, Outbox};
use rusqlite::Connection;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_nmq-outbox");
const WRITER_ENV: &str = "NMQ_CLI_WRITER_DB";

/// An MQTT 3.1.1 PUBLISH as NanoMQ stores it (packet id field 0: assigned when sent).
fn publish(qos: u8, topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = (topic.len() as u16).to_be_bytes().to_vec();
    body.extend_from_slice(topic.as_bytes());
    if qos > 0 {
        body.extend_from_slice(&[0, 0]);
    }
    body.extend_from_slice(payload);
    let mut out = vec![0x30 | (qos << 1)];
    nmq_outbox::mqtt::encode_varint(body.len(), &mut out);
    out.extend(body);
    out
}

fn quiet(path: &Path, bridge: &str) -> Config {
    let mut c = Config::new(path, bridge);
    c.logger = nmq_outbox::Logger::new(None, nmq_outbox::Level::Error);
    c
}

fn append(ob: &Outbox, qos: u8, topic: &str, payload: &[u8]) -> i64 {
    ob.append(&NewMessage {
        qos,
        expiry_secs: 0,
        data: &publish(qos, topic, payload),
    })
    .unwrap()
}

/// Bridge "emqx1": seq 1 QoS 2 released (PUBREC came), seq 2 QoS 1 in flight (pid 12),
/// seq 3..5 queued (test1 x2 QoS 1, test2 QoS 2 with a 1 h expiry). Bridge "aws": 3 queued
/// QoS 1 on sensors/{a,b,c}.
fn sample(dir: &Path) -> PathBuf {
    let path = dir.join("nmq_outbox.db");
    {
        let ob = Outbox::open(quiet(&path, "emqx1")).unwrap();
        append(&ob, 2, "test3", b"released one");
        append(&ob, 1, "test1", b"in flight");
        append(&ob, 1, "test1", b"queued 1");
        append(&ob, 1, "test1", b"queued 2");
        ob.append(&NewMessage {
            qos: 2,
            expiry_secs: 3600,
            data: &publish(2, "test2", b"expires in 1h"),
        })
        .unwrap();
        ob.link_up(0).unwrap();
        let a = ob.lease().unwrap().unwrap();
        ob.bind(a.seq, 11).unwrap();
        let b = ob.lease().unwrap().unwrap();
        ob.bind(b.seq, 12).unwrap();
        ob.ack(11, AckKind::PubRec, 0).unwrap();
        ob.close().unwrap();
    }
    {
        let ob = Outbox::open(quiet(&path, "aws")).unwrap();
        for t in ["sensors/a", "sensors/b", "sensors/c"] {
            append(&ob, 1, t, t.as_bytes());
        }
        ob.close().unwrap();
    }
    path
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn run_in(args: &[&str], input: &[u8]) -> Output {
    let mut c = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(input).unwrap();
    c.wait_with_output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Runs the command and checks its exit code; returns stdout.
fn expect(args: &[&str], code: i32) -> String {
    let o = run(args);
    let (out, err) = text(&o);
    assert_eq!(
        o.status.code(),
        Some(code),
        "{args:?}\nstdout: {out}\nstderr: {err}"
    );
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    out
}

/// Runs a failing command: exit `code`, one line on stderr naming `needle`, nothing on stdout.
fn expect_fail(args: &[&str], code: i32, needle: &str) {
    let o = run(args);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(code), "{args:?}\nstderr: {err}");
    assert!(out.is_empty(), "{args:?}: stdout {out}");
    assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
    assert!(err.starts_with("nmq-outbox: "), "{err}");
    assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
}

fn json(args: &[&str]) -> Value {
    serde_json::from_str(&expect(args, 0)).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn help_for_every_command_documents_exit_codes() {
    for sub in [
        vec!["--help"],
        vec!["stats", "--help"],
        vec!["list", "--help"],
        vec!["export", "--help"],
        vec!["import", "--help"],
        vec!["purge", "--help"],
        vec!["check", "--help"],
    ] {
        let out = expect(&sub, 0);
        assert!(out.contains("Exit codes:"), "{sub:?}: {out}");
        assert!(out.contains("8  the file is held by a running process"));
    }
    assert!(expect(&["stats", "--help"], 0).contains("packet_id != 0"));
    expect(&["--version"], 0);
    // Usage errors are clap's: exit 2.
    assert_eq!(run(&["stats"]).status.code(), Some(2));
    assert_eq!(run(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(
        run(&["purge", "x.db", "--bridge", "b"]).status.code(),
        Some(2)
    );
    assert_eq!(
        run(&["purge", "x.db", "--bridge", "b", "--older-than", "2 hours"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn stats_human_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample(dir.path());
    let out = expect(&["stats", s(&path)], 0);
    assert!(out.contains("schema version"), "{out}");
    assert!(out.contains("held:    no"), "{out}");
    assert!(out.contains("waiting: 8 messages"), "{out}");
    let emqx = out.lines().find(|l| l.starts_with("emqx1")).unwrap();
    let cols: Vec<&str> = emqx.split_whitespace().collect();
    // BRIDGE MESSAGES BYTES(2 words) IN FLIGHT RELEASED EXPIRED QOS OLDEST(1-2 words) SEQ DROPPED
    assert_eq!(&cols[..2], &["emqx1", "5"], "{emqx}");
    assert_eq!(&cols[4..8], &["2", "1", "0", "0/3/2"], "{emqx}");
    assert!(emqx.ends_with("1..5  -"), "{emqx}");

    let v = json(&["stats", s(&path), "--json"]);
    assert_eq!(v["held_by"], serde_json::json!([]));
    assert_eq!(v["quarantined"], false);
    let b = v["bridges"].as_array().unwrap();
    assert_eq!(b.len(), 2);
    assert_eq!(b[0]["name"], "aws");
    assert_eq!(b[0]["messages"], 3);
    assert_eq!(b[0]["in_flight"], 0);
    assert_eq!(b[1]["name"], "emqx1");
    assert_eq!(b[1]["messages"], 5);
    assert_eq!(b[1]["in_flight"], 2);
    assert_eq!(b[1]["released"], 1);
    assert_eq!(b[1]["dropped"], Value::Null);
    let bytes: u64 = Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT sum(length(data)) FROM msg JOIN bridge ON bridge.id = bridge_id
             WHERE name = 'emqx1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(b[1]["bytes"], bytes);
    assert!(b[1]["oldest_age_ms"].as_i64().unwrap() >= 0);
    let one = json(&["stats", s(&path), "--json", "--bridge", "aws"]);
    assert_eq!(one["bridges"].as_array().unwrap().len(), 1);
}

#[test]
fn list_decodes_the_stored_publish() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample(dir.path());
    let out = expect(&["list", s(&path), "--bridge", "emqx1"], 0);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("SEQ"), "{out}");
    assert_eq!(lines.len(), 6, "{out}");
    assert!(
        lines[1].contains("released") && lines[1].ends_with("test3"),
        "{out}"
    );
    assert!(lines[1].contains(" 11 "), "packet id: {out}");
    assert!(
        lines[2].contains("inflight") && lines[2].contains(" 12 "),
        "{out}"
    );
    assert!(
        lines[3].contains("queued") && lines[3].ends_with("test1"),
        "{out}"
    );
    assert!(
        lines[5].contains("59m") && lines[5].ends_with("test2"),
        "{out}"
    );
    assert!(lines[3].contains("8 B"), "payload size: {out}");

    let v = json(&["list", s(&path), "--json"]);
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 8);
    assert_eq!(rows[0]["bridge"], "aws");
    assert_eq!(rows[0]["topic"], "sensors/a");
    let r1 = rows.iter().find(|r| r["topic"] == "test3").unwrap();
    assert_eq!(
        (&r1["qos"], &r1["state"], &r1["released"], &r1["dup"]),
        (&2.into(), &"released".into(), &true.into(), &true.into())
    );
    assert_eq!(r1["payload_bytes"], "released one".len());
    let r2 = rows
        .iter()
        .find(|r| r["seq"] == 2 && r["bridge"] == "emqx1");
    assert_eq!(r2.unwrap()["packet_id"], 12);

    let o = run(&["list", s(&path), "--bridge", "emqx1", "--limit", "2"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(err.contains("first 2 of 5 rows"), "{err}");
}

#[test]
fn bad_input_gets_one_line_and_its_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample(dir.path());
    for cmd in ["stats", "list", "export", "check"] {
        let missing = dir.path().join("nope.db");
        expect_fail(&[cmd, s(&missing)], 3, "No such file");
    }
    expect_fail(
        &["list", s(&path), "--bridge", "b9"],
        7,
        "no bridge \"b9\" (bridges: aws, emqx1)",
    );
    expect_fail(&["stats", s(&path), "--bridge", "b9"], 7, "no bridge");
    expect_fail(
        &["purge", s(&path), "--bridge", "b9", "--all"],
        7,
        "no bridge",
    );

    // A foreign SQLite database.
    let foreign = dir.path().join("foreign.db");
    Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    for cmd in ["stats", "list", "export", "check"] {
        expect_fail(&[cmd, s(&foreign)], 4, "not an outbox file");
    }
    expect_fail(
        &["purge", s(&foreign), "--bridge", "b", "--all"],
        4,
        "not an outbox file",
    );
    expect_fail(
        &["import", s(&foreign), "--bridge", "b", "-i", s(&foreign)],
        9,
        "record 1",
    );
    // Another application's id.
    let other = dir.path().join("other.db");
    Connection::open(&other)
        .unwrap()
        .execute_batch("PRAGMA application_id = 1234; CREATE TABLE t(x);")
        .unwrap();
    expect_fail(&["stats", s(&other)], 4, "application_id 0x000004d2");
    // Not SQLite at all; empty; a directory.
    let txt = dir.path().join("notes.txt");
    std::fs::write(&txt, "hello, this is not a database at all\n").unwrap();
    expect_fail(&["stats", s(&txt)], 4, "not a SQLite database");
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, "").unwrap();
    expect_fail(&["list", s(&empty)], 4, "empty file");
    expect_fail(&["stats", s(dir.path())], 3, "is a directory");
    // None of this touched the foreign files.
    assert_eq!(
        std::fs::read(&txt).unwrap(),
        b"hello, this is not a database at all\n"
    );

    // A newer schema.
    let newer = dir.path().join("newer.db");
    std::fs::copy(&path, &newer).unwrap();
    Connection::open(&newer)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99; PRAGMA application_id = 1852666223;")
        .unwrap();
    for cmd in ["stats", "list", "export", "check"] {
        expect_fail(
            &[cmd, s(&newer)],
            6,
            "newer schema 99, this tool reads up to 2",
        );
    }
    expect_fail(
        &["purge", s(&newer), "--bridge", "aws", "--all"],
        6,
        "newer schema 99",
    );
}

/// Overwrites the pages of the msg table (not page 1) with garbage.
fn corrupt_copy(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap();
    let mut b = std::fs::read(to).unwrap();
    assert!(b.len() >= 4096 * 3, "{} bytes", b.len());
    let page = u16::from_be_bytes([b[16], b[17]]) as usize;
    for x in &mut b[page..] {
        *x = 0xA5;
    }
    std::fs::write(to, b).unwrap();
}

#[test]
fn corrupt_and_quarantined_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample(dir.path());
    let bad = dir.path().join("bad.db");
    corrupt_copy(&path, &bad);
    expect_fail(&["stats", s(&bad)], 5, "corrupt");
    expect_fail(&["list", s(&bad)], 5, "corrupt");
    let out = expect(&["check", s(&bad)], 1);
    assert!(out.contains("problem: "), "{out}");
    assert!(out.contains("corrupt"), "{out}");
    let v: Value = serde_json::from_str(&expect(&["check", s(&bad), "--json"], 1)).unwrap();
    assert_eq!(v["ok"], false);

    // The name the library gives a file it put aside.
    let aside = dir.path().join("nmq_outbox.db.corrupt-1796172067");
    std::fs::copy(&path, &aside).unwrap();
    let out = expect(&["check", s(&aside)], 1);
    assert!(out.contains("quarantined file"), "{out}");
    assert!(out.contains("2026-12-02 00:41:07Z"), "{out}");
    let v = json(&["stats", s(&aside), "--json"]);
    assert_eq!(v["quarantined"], true);
    assert!(expect(&["stats", s(&aside)], 0).contains("a quarantined file"));

    // A healthy file.
    let out = expect(&["check", s(&path)], 0);
    assert!(out.contains("integrity_check: ok"), "{out}");
    assert!(out.contains("8 rows in 2 bridges"), "{out}");
    assert!(out.ends_with("result:     ok\n"), "{out}");
    assert_eq!(json(&["check", s(&path), "--json", "--quick"])["ok"], true);
}

#[test]
fn check_finds_planted_invariant_violations() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample(dir.path());
    let planted = dir.path().join("planted.db");
    let plant = |sql: &str, needle: &str| {
        std::fs::copy(&path, &planted).unwrap();
        Connection::open(&planted)
            .unwrap()
            .execute_batch(sql)
            .unwrap();
        let o = run(&["check", s(&planted)]);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{sql}\n{out}{err}");
        assert!(out.contains(needle), "{sql}: {out} lacks {needle}");
        assert!(out.contains("result:     1 problem"), "{out}");
    };
    let db = Connection::open(&path).unwrap();
    let e = "bridge_id = (SELECT id FROM bridge WHERE name = 'emqx1')";
    plant(
        &format!("UPDATE msg SET qos = 5 WHERE seq = 3 AND {e}"),
        "bridge emqx1 seq 3: qos 5 is not 0, 1 or 2",
    );
    plant(
        &format!("UPDATE msg SET released = 1 WHERE seq = 4 AND {e}"),
        "released, but qos 1 packet_id 0",
    );
    plant(
        &format!("UPDATE msg SET qos = 2 WHERE seq = 4 AND {e}"),
        "row qos 2 but the stored PUBLISH says QoS 1",
    );
    plant(
        &format!("UPDATE msg SET data = substr(data, 1, 5) WHERE seq = 3 AND {e}"),
        "damaged PUBLISH",
    );
    plant(
        &format!("UPDATE msg SET expires_at = 5 WHERE seq = 3 AND {e}"),
        "expires_at 5 before enqueued_at",
    );
    plant(
        "INSERT INTO msg VALUES (77, 1, 1, 0, 1, 0, 0, x'30', 0)",
        "1 rows belong to no bridge",
    );
    // Opaque bytes (the plain C API) are a warning, not a problem.
    db.execute_batch(&format!(
        "UPDATE msg SET data = x'00112233' WHERE seq = 3 AND {e}"
    ))
    .unwrap();
    let out = expect(&["check", s(&path)], 0);
    assert!(
        out.contains("warning: ") && out.contains("not an MQTT PUBLISH"),
        "{out}"
    );
    assert!(out.contains("result:     ok, 1 warning"), "{out}");
}

#[test]
fn purge_older_than_topic_all_and_dry_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample(dir.path());
    // Make emqx1's first three rows three hours old.
    Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE msg SET enqueued_at = enqueued_at - 3 * 3600 * 1000 WHERE seq <= 3
             AND bridge_id = (SELECT id FROM bridge WHERE name = 'emqx1')",
            [],
        )
        .unwrap();
    let out = expect(
        &[
            "purge",
            s(&path),
            "--bridge",
            "emqx1",
            "--older-than",
            "2h",
            "--dry-run",
        ],
        0,
    );
    assert!(out.starts_with("would remove 3 messages"), "{out}");
    assert!(
        out.contains("seq 1..3, 2 of them sent and unacknowledged; 5 left"),
        "{out}"
    );
    let out = expect(
        &["purge", s(&path), "--bridge", "emqx1", "--older-than", "2h"],
        0,
    );
    assert!(out.starts_with("removed 3 messages"), "{out}");
    assert!(out.contains("; 2 left"), "{out}");
    let v = json(&["list", s(&path), "--bridge", "emqx1", "--json"]);
    let seqs: Vec<i64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [4, 5]);

    let out = expect(
        &["purge", s(&path), "--bridge", "aws", "--topic", "sensors/+"],
        0,
    );
    assert!(out.starts_with("removed 3 messages"), "{out}");
    let out = expect(
        &["purge", s(&path), "--bridge", "emqx1", "--topic", "test2"],
        0,
    );
    assert!(
        out.contains("removed 1 message") && out.contains("seq 5..5"),
        "{out}"
    );
    let out = expect(&["purge", s(&path), "--bridge", "emqx1", "--all"], 0);
    assert!(
        out.contains("removed 1 message") && out.contains("0 left"),
        "{out}"
    );
    let v = json(&["stats", s(&path), "--json"]);
    assert_eq!(v["bridges"][0]["messages"], 0);
    assert_eq!(v["bridges"][1]["messages"], 0);
    // The library reopens the purged file and goes on after the last seq.
    let ob = Outbox::open(quiet(&path, "emqx1")).unwrap();
    assert_eq!(ob.stats().unwrap().messages, 0);
    assert!(append(&ob, 1, "test1", b"after purge") > 0);
    ob.close().unwrap();
}

fn export_lines(path: &Path, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["export", s(path)];
    args.extend_from_slice(extra);
    expect(&args, 0)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The fields that survive a move to another gateway (not seq, not the session state).
fn portable(v: &Value) -> Value {
    let mut v = v.clone();
    for k in ["seq", "packet_id", "released", "dup", "state"] {
        v.as_object_mut().unwrap().remove(k);
    }
    v
}

#[test]
fn export_import_roundtrip() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample(dir.path());
    let before = export_lines(&path, &[]);
    assert_eq!(before.len(), 8);
    assert!(before
        .iter()
        .all(|r| r["packet_b64"].is_string() && r["payload_b64"].is_string()));
    assert_eq!(
        before[0]["payload_b64"], "c2Vuc29ycy9h",
        "base64 of sensors/a"
    );
    let jsonl = expect(&["export", s(&path)], 0);

    // Into a new file: every row, in order, the session state cleared.
    let moved = dir.path().join("moved.db");
    let o = run_in(&["import", s(&moved)], jsonl.as_bytes());
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(
        out.contains("imported 5 messages into bridge emqx1"),
        "{out}"
    );
    assert!(out.contains("imported 3 messages into bridge aws"), "{out}");
    let after = export_lines(&moved, &[]);
    assert_eq!(
        after.iter().map(portable).collect::<Vec<_>>(),
        before.iter().map(portable).collect::<Vec<_>>()
    );
    assert!(after
        .iter()
        .all(|r| r["packet_id"] == 0 && r["released"] == false));
    // The library reads the imported file: the rows come out in order.
    let ob = Outbox::open(quiet(&moved, "emqx1")).unwrap();
    ob.link_up(0).unwrap();
    let topics: Vec<u8> = std::iter::from_fn(|| ob.lease().unwrap())
        .map(|l| l.data[0])
        .collect();
    assert_eq!(topics.len(), 5);
    ob.close().unwrap();

    // --keep-state into a third file: everything equal but seq; then appended after it.
    let kept = dir.path().join("kept.db");
    let input = dir.path().join("backlog.jsonl");
    std::fs::write(&input, &jsonl).unwrap();
    expect(&["import", s(&kept), "--keep-state", "-i", s(&input)], 0);
    let strip_seq = |v: &Value| {
        let mut v = v.clone();
        v.as_object_mut().unwrap().remove("seq");
        v
    };
    assert_eq!(
        export_lines(&kept, &[])
            .iter()
            .map(strip_seq)
            .collect::<Vec<_>>(),
        before.iter().map(strip_seq).collect::<Vec<_>>()
    );
    let out = expect(&["import", s(&kept), "--bridge", "aws", "-i", s(&input)], 0);
    assert!(
        out.contains("imported 8 messages into bridge aws") && out.contains("seq 4..11"),
        "{out}"
    );

    // mqtt: raw packets back to back, into a named bridge.
    let raw = dir.path().join("emqx1.mqtt");
    expect(
        &[
            "export",
            s(&path),
            "--bridge",
            "emqx1",
            "--format",
            "mqtt",
            "-o",
            s(&raw),
        ],
        0,
    );
    let packets: Vec<String> = before[3..]
        .iter()
        .map(|r| r["packet_b64"].as_str().unwrap().to_string())
        .collect();
    let fromraw = dir.path().join("fromraw.db");
    expect(&["import", s(&fromraw), "--bridge", "b2", "-i", s(&raw)], 0);
    let again: Vec<String> = export_lines(&fromraw, &[])
        .iter()
        .map(|r| r["packet_b64"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(again, packets);

    // Bad input: nothing imported, one line, exit 9.
    let o = run_in(&["import", s(&fromraw)], b"{\"bridge\":\"b2\"}\n");
    assert_eq!(o.status.code(), Some(9), "{:?}", text(&o));
    let o = run_in(&["import", s(&fromraw), "--bridge", "b2"], b"\x32\x09\x00");
    assert_eq!(o.status.code(), Some(9), "{:?}", text(&o));
    assert_eq!(export_lines(&fromraw, &[]).len(), 5);
    let o = run_in(&["import", s(&fromraw), "--format", "mqtt"], b"");
    assert_eq!(o.status.code(), Some(2), "--format mqtt without --bridge");
}

#[test]
fn reads_never_change_a_file_nobody_holds() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample(dir.path());
    let before = std::fs::read(&path).unwrap();
    for args in [
        vec!["stats"],
        vec!["list"],
        vec!["export"],
        vec!["check"],
        vec!["purge", "--bridge", "emqx1", "--all", "--dry-run"],
    ] {
        let mut a = vec![args[0], s(&path)];
        a.extend_from_slice(&args[1..]);
        expect(&a, 0);
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "database bytes unchanged"
    );
    let wal = format!("{}-wal", path.display());
    let len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(len, 0, "{wal} stays empty");
}

/// The writer in another process: opens the outbox, appends 10 messages every few ms with a
/// flush (a commit), prints "ready <pid>" after its first commit. No-op as an ordinary test.
#[test]
fn child_writer() {
    let Ok(path) = std::env::var(WRITER_ENV) else {
        return;
    };
    let ob = Outbox::open(quiet(Path::new(&path), "emqx1")).unwrap();
    let mut out = std::io::stdout().lock();
    let start = Instant::now();
    let mut first = true;
    // Bounded: the parent kills us long before this ends.
    while start.elapsed() < Duration::from_secs(300) {
        for i in 0..10 {
            append(&ob, 1, "live/topic", format!("payload {i}").as_bytes());
        }
        ob.flush().unwrap();
        if first {
            writeln!(out, "ready {}", std::process::id()).unwrap();
            out.flush().unwrap();
            first = false;
        }
        // pacing only: a steady stream of commits
        std::thread::sleep(Duration::from_millis(2));
    }
}

struct Writer {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    pid: u32,
}

impl Writer {
    fn start(path: &Path) -> Writer {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_writer", "--nocapture", "--test-threads=1"])
            .env(WRITER_ENV, path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut w = Writer {
            child,
            lines,
            pid: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while w.pid == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            let l = w.lines.recv_timeout(left).expect("writer says ready");
            // The test harness may put "test child_writer ... " before it.
            if let Some(at) = l.find("ready ") {
                w.pid = l[at + 6..].trim().parse().unwrap();
            }
        }
        w
    }
}

/// Waits (bounded: the bound only turns a hang into a failure) until `done` holds.
fn await_that(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_file_held_by_a_writer_in_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample(dir.path());
    let w = Writer::start(&path);

    // Reads work beside the writer, and see a growing backlog.
    let a = json(&["stats", s(&path), "--json"]);
    assert_eq!(a["held_by"], serde_json::json!([w.pid]), "{a}");
    let n = |v: &Value| v["bridges"][1]["messages"].as_i64().unwrap();
    assert!(n(&a) > 5, "{a}");
    let out = expect(&["stats", s(&path)], 0);
    assert!(
        out.contains(&format!("held:    yes, pid {}", w.pid)),
        "{out}"
    );
    let count = || n(&json(&["stats", s(&path), "--json"]));
    await_that("the writer kept committing while we read", || {
        count() > n(&a)
    });
    for _ in 0..3 {
        let listed = json(&["list", s(&path), "--json", "--limit", "0"]);
        assert!(listed.as_array().unwrap().len() > 8);
        let exported = export_lines(&path, &["--bridge", "emqx1"]);
        let seqs: Vec<i64> = exported
            .iter()
            .map(|r| r["seq"].as_i64().unwrap())
            .collect();
        assert!(
            seqs.windows(2).all(|p| p[0] < p[1]),
            "one snapshot, in order"
        );
        expect(&["check", s(&path)], 0);
    }
    // A reader holding its snapshot never blocks the writer: an export stalled on a full pipe
    // (1000 rows of JSON are far more than the pipe and the buffers hold: it cannot end before
    // we read) is still open while the writer commits. Events, not a time limit.
    await_that("the writer reached 1000 rows", || count() >= 1000);
    let mut export = Command::new(BIN)
        .args(["export", s(&path), "--bridge", "emqx1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(export.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap(); // it has its snapshot: it writes the rows
    let before = count();
    await_that("the writer committed beside the open export", || {
        count() > before
    });
    assert!(export.try_wait().unwrap().is_none(), "the export ended");
    let rest: Vec<String> = out.lines().map(Result::unwrap).collect();
    assert!(export.wait().unwrap().success());
    let seqs: Vec<i64> = std::iter::once(&first)
        .chain(&rest)
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert!(seqs.windows(2).all(|p| p[0] < p[1]), "in order");
    assert!(
        seqs.len() as i64 <= before,
        "one snapshot, from before the writer's commits: {} rows, {before} then",
        seqs.len()
    );

    // Writes refuse the held file, unless --force.
    expect_fail(
        &["purge", s(&path), "--bridge", "aws", "--all"],
        8,
        &format!("held by a running process (pid {})", w.pid),
    );
    let o = run_in(
        &["import", s(&path), "--bridge", "aws"],
        &publish(1, "x", b"y"),
    );
    assert_eq!(o.status.code(), Some(8), "{:?}", text(&o));
    let o = run(&["purge", s(&path), "--bridge", "aws", "--all", "--force"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.starts_with("removed 3 messages"), "{out}");
    assert!(err.contains("warning") && err.contains("--force"), "{err}");
    assert_eq!(
        json(&["stats", s(&path), "--json", "--bridge", "aws"])["bridges"][0]["messages"],
        0
    );
    drop(w);
}

/// Sets the flag when dropped (also while a panic unwinds).
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// `stats` names the process holding the file while other locks come and go. /proc/locks was
/// read in small pieces (read_to_string's first read is 32 bytes) and the kernel lists it a
/// few records per read, resuming by position: a lock listed before the holder's that went
/// away between two reads made its line skipped (held_by [], and a purge refusal without the
/// pid: a_file_held_by_a_writer_in_another_process failed so, 1 run in 50 under load).
#[test]
fn held_by_names_the_holder_while_other_locks_come_and_go() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample(dir.path());
    let ob = Outbox::open(quiet(&path, "emqx1")).unwrap(); // this process holds the file
    let stop = AtomicBool::new(false);
    let seen: Vec<Value> = std::thread::scope(|sc| {
        let _stop = SetOnDrop(&stop);
        for i in 0..8 {
            let p = dir.path().join(format!("churn{i}"));
            std::fs::write(&p, b"").unwrap();
            let stop = &stop;
            sc.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let f = std::fs::File::open(&p).unwrap();
                    // SAFETY: flock on a descriptor we own; its close releases the lock.
                    assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
                }
            });
        }
        (0..200)
            .map(|_| json(&["stats", s(&path), "--json"])["held_by"].clone())
            .collect()
    });
    let me = serde_json::json!([std::process::id()]);
    let missed: Vec<&Value> = seen.iter().filter(|v| **v != me).collect();
    assert!(
        missed.is_empty(),
        "{} of 200 did not name this process ({me}): {:?}",
        missed.len(),
        missed.first()
    );
    ob.close().unwrap();
}

#[test]
fn list_on_a_closed_pipe_is_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.db");
    let ob = Outbox::open(quiet(&path, "b")).unwrap();
    for i in 0..5000 {
        append(&ob, 1, "t", format!("{i}").as_bytes());
    }
    ob.close().unwrap();
    let mut c = Command::new(BIN)
        .args(["list", s(&path), "--limit", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 10];
    c.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let o = c.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(o.status.code(), Some(0), "{err}");
}

#[test]
fn a_directory_of_per_bridge_files() {
    let dir = tempfile::tempdir().unwrap();
    for b in ["emqx1", "aws"] {
        let ob = Outbox::open(quiet(dir.path(), b)).unwrap();
        append(&ob, 1, b, b"x");
        ob.close().unwrap();
    }
    expect_fail(
        &["stats", s(dir.path())],
        3,
        "is a directory (nmq_outbox-aws.db, nmq_outbox-emqx1.db): name one file, or give --bridge",
    );
    let v = json(&["stats", s(dir.path()), "--bridge", "aws", "--json"]);
    assert!(
        v["file"].as_str().unwrap().ends_with("nmq_outbox-aws.db"),
        "{v}"
    );
    assert_eq!(v["bridges"][0]["messages"], 1);
    let out = expect(&["purge", s(dir.path()), "--bridge", "emqx1", "--all"], 0);
    assert!(out.starts_with("removed 1 message "), "{out}");
    expect_fail(
        &["list", s(dir.path()), "--bridge", "nope"],
        3,
        "nmq_outbox-nope.db",
    );
}

/// A WAL file nobody holds, read by a user who can create no -shm beside it: one clear line.
/// Needs root (to become nobody); skipped otherwise.
#[test]
fn a_reader_who_cannot_create_the_shm_file_is_told_why() {
    use std::os::unix::fs::PermissionsExt;
    let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    let setpriv = Command::new("setpriv").arg("--version").output().is_ok();
    if !root || !setpriv {
        eprintln!("skipped: needs root and setpriv");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = sample(dir.path());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            BIN,
            "stats",
        ])
        .arg(&path)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("needs its -shm file"), "{err}");
    // As the owner it works.
    expect(&["stats", s(&path)], 0);
}

/// Bridge "emqx1" of a fresh file: seq 1 and 3 refused by the remote (PUBACK 0x87, PUBREC
/// 0x90: dead letters), seq 2 delivered, seq 4 queued.
fn with_dead_letters(dir: &Path) -> PathBuf {
    let path = dir.join("dead.db");
    let ob = Outbox::open(quiet(&path, "emqx1")).unwrap();
    append(&ob, 1, "deny/a", b"one");
    append(&ob, 1, "ok", b"two");
    append(&ob, 2, "deny/b", b"three");
    append(&ob, 1, "later", b"four");
    ob.link_up(0).unwrap();
    for (pid, kind, reason) in [
        (1, AckKind::PubAck, 0x87),
        (2, AckKind::PubAck, 0),
        (3, AckKind::PubRec, 0x90),
    ] {
        let r = ob.lease().unwrap().unwrap();
        ob.bind(r.seq, pid).unwrap();
        ob.ack(pid, kind, reason).unwrap();
    }
    ob.close().unwrap();
    path
}

#[test]
fn dead_letters_list_export_requeue_purge() {
    let dir = tempfile::tempdir().unwrap();
    let path = with_dead_letters(dir.path());
    for sub in ["list", "export", "requeue", "purge"] {
        let out = expect(&["dead", sub, "--help"], 0);
        assert!(
            out.contains("Exit codes:") && out.contains("dead letter"),
            "{out}"
        );
        assert!(out.contains("10  dead requeue/purge"), "{out}");
    }
    assert!(expect(&["dead", "--help"], 0).contains("requeue"));
    // list: human and JSON
    let out = expect(&["dead", "list", s(&path)], 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("SEQ") && lines[0].contains("REASON"),
        "{out}"
    );
    assert!(
        lines[1].contains("rejected") && lines[1].contains("0x87"),
        "{out}"
    );
    assert!(lines[1].trim_end().ends_with("deny/a"), "{out}");
    assert!(lines[2].contains("0x90") && lines[2].trim_end().ends_with("deny/b"));
    let v = json(&["dead", "list", s(&path), "--json"]);
    let a = v.as_array().unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!(
        (a[0]["seq"].as_i64(), a[0]["reason_code"].as_i64()),
        (Some(1), Some(0x87))
    );
    assert_eq!(
        (a[1]["seq"].as_i64(), a[1]["qos"].as_i64()),
        (Some(3), Some(2))
    );
    assert_eq!(a[1]["reason"], "rejected");
    assert_eq!(
        json(&["stats", s(&path), "--json"])["bridges"][0]["dead_letters"],
        2
    );
    assert!(expect(&["stats", s(&path)], 0).contains("dead:    2 dead letters"));
    assert!(expect(&["check", s(&path)], 0).ends_with("result:     ok\n"));
    // export: lossless, one object per line (what import reads), or one array
    let out = expect(&["dead", "export", s(&path)], 0);
    let rows: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    use base64::Engine;
    let pkt = base64::engine::general_purpose::STANDARD
        .decode(rows[0]["packet_b64"].as_str().unwrap())
        .unwrap();
    assert_eq!(pkt, publish(1, "deny/a", b"one"));
    let arr = json(&["dead", "export", s(&path), "--json"]);
    assert_eq!(arr.as_array().unwrap().len(), 2);
    // requeue: by seq; an unknown seq changes nothing (exit 10)
    expect_fail(
        &["dead", "requeue", s(&path), "-b", "emqx1", "--seq", "3,99"],
        10,
        "no dead letter with seq 99",
    );
    assert_eq!(
        json(&["dead", "list", s(&path), "--json"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let out = expect(
        &["dead", "requeue", s(&path), "-b", "emqx1", "--seq", "3"],
        0,
    );
    assert!(out.contains("put back in the queue 1 dead letter"), "{out}");
    assert!(out.contains("1 left"), "{out}");
    let q = json(&["list", s(&path), "--json"]);
    let seqs: Vec<i64> = q
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, vec![3, 4], "back at its place");
    assert_eq!(q[0]["state"], "queued");
    // purge: dry run, then for good
    let out = expect(
        &["dead", "purge", s(&path), "-b", "emqx1", "--all", "-n"],
        0,
    );
    assert!(
        out.contains("would delete 1 dead letter") && out.contains("1 left"),
        "{out}"
    );
    let out = expect(&["dead", "purge", s(&path), "-b", "emqx1", "--all"], 0);
    assert!(
        out.contains("deleted 1 dead letter") && out.contains("0 left"),
        "{out}"
    );
    assert_eq!(
        json(&["dead", "list", s(&path), "--json"]),
        serde_json::json!([])
    );
    assert!(expect(&["check", s(&path)], 0).ends_with("result:     ok\n"));
    // the library resumes the requeued row first
    let ob = Outbox::open(quiet(&path, "emqx1")).unwrap();
    assert_eq!(ob.stats().unwrap().dead_letters, 0);
    ob.link_up(0).unwrap();
    let r = ob.lease().unwrap().unwrap();
    assert_eq!((r.seq, r.qos, r.packet_id), (3, 2, 0));
    // a held file is refused (exit 8)
    expect_fail(
        &["dead", "purge", s(&path), "-b", "emqx1", "--all"],
        8,
        "held",
    );
    drop(ob);
    // usage errors: --seq or --all, not both
    assert_eq!(
        run(&["dead", "purge", s(&path), "-b", "emqx1"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        run(&[
            "dead",
            "purge",
            s(&path),
            "-b",
            "emqx1",
            "--all",
            "--seq",
            "1"
        ])
        .status
        .code(),
        Some(2)
    );
    // a schema 1 file has no dead letters
    let v1 = dir.path().join("v1.db");
    std::fs::copy(sample(dir.path()), &v1).unwrap();
    let c = Connection::open(&v1).unwrap();
    c.execute_batch("DROP TABLE dead; PRAGMA user_version = 1;")
        .unwrap();
    drop(c);
    assert_eq!(
        json(&["dead", "list", s(&v1), "--json"]),
        serde_json::json!([])
    );
    let out = expect(&["dead", "purge", s(&v1), "-b", "emqx1", "--all"], 0);
    assert!(out.contains("deleted 0 dead letters"), "{out}");
}

/// Issue 20: what the command writes holds messages too. Under umask 022 a new export file
/// (rows, dead letters) and a new outbox made by import are 0600; an output file that was
/// already there keeps its mode (it is the operator's).
#[test]
fn export_files_and_imported_outboxes_are_0600() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let path = sample(dir.path());
    let dead = with_dead_letters(dir.path());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let run022 = |args: &[&str]| {
        let mut c = Command::new(BIN);
        c.args(args).stdin(Stdio::null());
        // SAFETY: umask is async-signal-safe and touches no memory.
        unsafe {
            c.pre_exec(|| {
                libc::umask(0o022);
                Ok(())
            });
        }
        let o = c.output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{args:?}: {:?}", text(&o));
    };
    let jsonl = dir.path().join("rows.jsonl");
    let raw = dir.path().join("rows.mqtt");
    let dl = dir.path().join("dead.jsonl");
    let moved = dir.path().join("moved.db");
    run022(&["export", s(&path), "-o", s(&jsonl)]);
    run022(&[
        "export",
        s(&path),
        "-b",
        "aws",
        "--format",
        "mqtt",
        "-o",
        s(&raw),
    ]);
    run022(&["dead", "export", s(&dead), "-o", s(&dl)]);
    run022(&["import", s(&moved), "-i", s(&jsonl)]);
    for p in [&jsonl, &raw, &dl, &moved] {
        assert_eq!(format!("{:o}", mode(p)), "600", "{}", p.display());
    }
    let theirs = dir.path().join("theirs.jsonl");
    std::fs::write(&theirs, b"old").unwrap();
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o640)).unwrap();
    run022(&["export", s(&path), "-o", s(&theirs)]);
    assert_eq!(format!("{:o}", mode(&theirs)), "640");
}

/// Every row of `bridge` as the library's store reads it (its one SELECT and row mapping).
fn stored_rows(path: &Path, bridge: &str) -> Vec<nmq_outbox::store::StoredRow> {
    let c = Connection::open(path).unwrap();
    let id: i64 = c
        .query_row("SELECT id FROM bridge WHERE name = ?1", [bridge], |r| {
            r.get(0)
        })
        .unwrap();
    let mut st = c.prepare(nmq_outbox::store::SELECT_ROWS).unwrap();
    let mut rows = st.query(rusqlite::params![id, i64::MIN, -1]).unwrap();
    let mut out = Vec::new();
    while let Some(r) = rows.next().unwrap() {
        let data: Vec<u8> = r.get(nmq_outbox::store::DATA_COLUMN).unwrap();
        out.push(nmq_outbox::store::StoredRow::from_sql(r, data).unwrap());
    }
    out
}

/// Every row the outbox hands out after a reopen, in order (then released again).
fn leased_rows(path: &Path, bridge: &str) -> Vec<nmq_outbox::Leased> {
    let ob = Outbox::open(quiet(path, bridge)).unwrap();
    ob.link_up(0).unwrap();
    let v: Vec<_> = std::iter::from_fn(|| ob.lease().unwrap()).collect();
    ob.close().unwrap();
    v
}

/// Issue 21: the tool writes and reads rows through the store's code. A row the outbox wrote
/// is exported as it is stored, and imported (--keep-state) into a new file it is the same row
/// (but its seq) for the store and for the replay: qos, expiry, accepted-at, packet id,
/// PUBREC, attempts, bytes.
#[test]
fn a_row_imported_by_the_tool_is_the_row_the_outbox_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample(dir.path());
    let mut src = stored_rows(&path, "emqx1");
    assert_eq!(src.len(), 5);
    // The tool reads what the outbox wrote: its export holds the stored fields.
    for (line, row) in export_lines(&path, &["--bridge", "emqx1"]).iter().zip(&src) {
        assert_eq!(line["seq"], row.seq);
        assert_eq!(line["qos"], row.qos);
        assert_eq!(line["packet_id"], row.packet_id);
        assert_eq!(line["released"], row.released != 0);
        assert_eq!(line["enqueued_at"], row.enqueued_at);
        assert_eq!(line["expires_at"], row.expires_at);
        let packet = line["packet_b64"].as_str().unwrap();
        use base64::Engine;
        let packet = base64::engine::general_purpose::STANDARD
            .decode(packet)
            .unwrap();
        assert_eq!(packet, row.data);
    }
    let jsonl = expect(&["export", s(&path), "--bridge", "emqx1"], 0);
    let input = dir.path().join("rows.jsonl");
    std::fs::write(&input, jsonl).unwrap();
    let moved = dir.path().join("moved.db");
    expect(&["import", s(&moved), "--keep-state", "-i", s(&input)], 0);
    let mut dst = stored_rows(&moved, "emqx1");
    assert!(src.iter().any(|r| r.released == 1 && r.packet_id == 11));
    assert!(src.iter().any(|r| r.expires_at != 0));
    for r in src.iter_mut().chain(dst.iter_mut()) {
        r.seq = 0;
    }
    assert_eq!(dst, src);
    let strip = |v: Vec<nmq_outbox::Leased>| -> Vec<_> {
        v.into_iter()
            .map(|mut l| {
                l.seq = 0;
                l.expiry_secs = l.expiry_secs.min(1);
                l
            })
            .collect()
    };
    let from_outbox = strip(leased_rows(&path, "emqx1"));
    assert_eq!(from_outbox.len(), 5);
    assert_eq!(strip(leased_rows(&moved, "emqx1")), from_outbox);

    // A file of schema 1 (no `attempts`) is read as it is, and an import brings it to the
    // columns the library's INSERT writes.
    let v1 = dir.path().join("v1.db");
    std::fs::copy(&path, &v1).unwrap();
    Connection::open(&v1)
        .unwrap()
        .execute_batch(
            "ALTER TABLE msg DROP COLUMN attempts; DROP TABLE dead; PRAGMA user_version = 1;",
        )
        .unwrap();
    assert_eq!(
        json(&["list", s(&v1), "-b", "emqx1", "--json"])
            .as_array()
            .unwrap()
            .len(),
        5
    );
    expect(&["import", s(&v1), "--bridge", "emqx1", "-i", s(&input)], 0);
    assert_eq!(stored_rows(&v1, "emqx1").len(), 10);
}
