//! When to checkpoint where, and the checkpoint thread on a real store.

use super::*;
use crate::config::Config;
use crate::store::{Batch, Row, Store};
use std::time::{Duration, Instant};

#[test]
fn below_start_nothing_at_start_the_thread_is_asked_and_while_it_runs_nothing_else() {
    let mut p = Plan::default();
    assert_eq!(p.after_commit(START - 1, true), Step::Nothing);
    assert_eq!(p.after_commit(START, true), Step::Ask);
    assert_eq!(p.thread, Thread::Running);
    assert_eq!(p.after_commit(START + 500, true), Step::Nothing);
}

#[test]
fn at_the_bound_the_writer_tries_even_while_the_thread_runs_and_the_thread_still_reports() {
    let mut p = Plan::default();
    assert_eq!(p.after_commit(START, true), Step::Ask);
    // a hanging checkpoint (or a thread gone) does not lift the bound
    assert_eq!(p.after_commit(CAP, true), Step::Here);
    assert_eq!(p.thread, Thread::Running);
    assert_eq!(p.after_commit(CAP + 1, true), Step::Here);
    // the writer's try restarted the WAL; the thread's result, when it comes, is of the old one
    assert_eq!(p.after_commit(4, true), Step::Nothing);
    p.thread = Thread::Done(START);
    assert_eq!(p.after_commit(6, true), Step::Nothing);
    assert_eq!(p.thread, Thread::Idle);
}

#[test]
fn the_writer_finishes_what_the_thread_left_when_it_is_little_and_the_wal_starts_again() {
    let mut p = Plan::default();
    assert_eq!(p.after_commit(START, true), Step::Ask);
    p.thread = Thread::Done(START);
    assert_eq!(p.after_commit(START + FINISH - 1, true), Step::Here);
    assert_eq!(p.thread, Thread::Idle);
    // the next commits are in the restarted WAL
    assert_eq!(p.after_commit(3, true), Step::Nothing);
}

#[test]
fn when_the_thread_left_much_it_is_asked_again_once_the_wal_grew() {
    let mut p = Plan::default();
    assert_eq!(p.after_commit(START, true), Step::Ask);
    // a reader held frames back: the checkpoint copied few of them
    p.thread = Thread::Done(10);
    assert_eq!(p.after_commit(START + FINISH - 1, true), Step::Nothing);
    assert_eq!(p.after_commit(START + FINISH, true), Step::Ask);
    assert_eq!(p.thread, Thread::Running);
    // a failed or busy checkpoint copied nothing: the same
    p.thread = Thread::Done(0);
    assert_eq!(p.after_commit(START + FINISH + 1, true), Step::Nothing);
    assert_eq!(p.after_commit(START + 2 * FINISH, true), Step::Ask);
}

#[test]
fn a_wal_that_started_again_since_the_thread_checkpointed_is_a_new_one() {
    let mut p = Plan::default();
    assert_eq!(p.after_commit(START, true), Step::Ask);
    p.thread = Thread::Done(START + 40);
    assert_eq!(p.after_commit(5, true), Step::Nothing);
    assert_eq!(p.thread, Thread::Idle);
    assert_eq!(p.after_commit(START, true), Step::Ask);
}

#[test]
fn at_the_bound_the_writer_checkpoints_whatever_the_thread_did() {
    let mut p = Plan::default();
    assert_eq!(p.after_commit(START, true), Step::Ask);
    p.thread = Thread::Done(0);
    assert_eq!(p.after_commit(CAP, true), Step::Here);
    assert_eq!(p.thread, Thread::Idle);
    // a WAL past the bound without any ask (a commit of many pages) too
    let mut q = Plan::default();
    assert_eq!(q.after_commit(CAP + 10, true), Step::Here);
}

#[test]
fn without_the_thread_the_writer_checkpoints_at_start_as_sqlite_would() {
    let mut p = Plan::default();
    assert_eq!(p.after_commit(START - 1, false), Step::Nothing);
    assert_eq!(p.after_commit(START, false), Step::Here);
    assert_eq!(p.thread, Thread::Idle);
}

fn row(seq: i64) -> Row {
    Row {
        seq,
        qos: 1,
        expires_at: 0,
        enqueued_at: 0,
        packet_id: 0,
        released: false,
        attempts: 0,
        data: vec![b'x'; 2000],
    }
}

/// Commits of one row each until `done` says so (a bound of time turns a hang into a failure).
fn commit_until(store: &mut Store, seq: &mut i64, mut done: impl FnMut(&Store) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done(store) {
        assert!(Instant::now() < deadline, "not reached in time");
        *seq += 1;
        let b = Batch {
            inserts: vec![row(*seq)],
            // the row before is acked: the queue stays one row long (seq 0 is none)
            deletes: vec![*seq - 1],
            ..Batch::default()
        };
        store.write(&b).unwrap();
    }
}

fn wal_bytes(path: &std::path::Path) -> u64 {
    let mut p = path.as_os_str().to_owned();
    p.push("-wal");
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

#[test]
fn the_thread_checkpoints_and_the_wal_starts_again_within_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::new(dir.path().join("o.db"), "b");
    let (mut store, _) = Store::open(&cfg, &Logger::default()).unwrap();
    let mut seq = 0;
    // the thread starts at the first checkpoint, not before
    assert!(store.checkpointer().unwrap().thread.is_none());
    let mut high = 0;
    let mut restarts = 0;
    commit_until(&mut store, &mut seq, |s| {
        let f = s.checkpointer().unwrap().frames();
        if f < high {
            restarts += 1;
        }
        high = f;
        restarts >= 3
    });
    let c = store.checkpointer().unwrap();
    assert!(c.runs() >= 3, "the thread ran {} checkpoints", c.runs());
    // the WAL file (as large as it ever was: SQLite writes over it from its start) stayed
    // within the bound
    let page = 4096 + 24;
    let w = wal_bytes(&cfg.path);
    assert!(w < CAP as u64 * page, "WAL {w} bytes, {} frames", w / page);
    // everything committed is there: the last row
    assert_eq!(store.resume().unwrap().messages, 1);
    drop(store);
    assert_eq!(
        wal_bytes(&cfg.path),
        0,
        "the last close checkpoints and removes the WAL"
    );
}

#[test]
fn a_reader_holding_the_wal_back_does_not_turn_commits_into_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::new(dir.path().join("o.db"), "b");
    let (mut store, _) = Store::open(&cfg, &Logger::default()).unwrap();
    let mut seq = 0;
    // a reader (`nmq-outbox` beside NanoMQ) in a long read transaction, from the start
    let reader = Connection::open(&cfg.path).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let n: i64 = reader
        .query_row("SELECT count(*) FROM msg", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
    commit_until(&mut store, &mut seq, |s| {
        s.checkpointer().unwrap().frames() >= START + 20 * FINISH
    });
    let c = store.checkpointer().unwrap();
    // asked at START and then once per FINISH frames at most (plus one in flight)
    assert!(
        c.runs() <= 22,
        "{} checkpoints for {} frames",
        c.runs(),
        c.frames()
    );
    // the reader lets go: the WAL starts again
    drop(reader);
    let mut high = store.checkpointer().unwrap().frames();
    commit_until(&mut store, &mut seq, |s| {
        let f = s.checkpointer().unwrap().frames();
        let restarted = f < high;
        high = f;
        restarted
    });
}

#[test]
fn caller_commits_keep_the_writers_checkpoint_and_no_thread() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(dir.path().join("o.db"), "b");
    cfg.caller_commits = true;
    let (store, _) = Store::open(&cfg, &Logger::default()).unwrap();
    assert!(store.checkpointer().is_none());
    assert_eq!(store.autocheckpoint_pages(), 0);
}

#[test]
fn a_file_restored_after_its_deletion_gets_a_new_checkpointer_on_the_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::new(dir.path().join("o.db"), "b");
    let (mut store, _) = Store::open(&cfg, &Logger::default()).unwrap();
    let mut seq = 0;
    commit_until(&mut store, &mut seq, |s| {
        s.checkpointer().unwrap().runs() >= 1
    });
    std::fs::remove_file(&cfg.path).unwrap();
    store.restore_file("b").unwrap();
    assert!(store.checkpointer().unwrap().thread.is_none());
    let mut high = 0;
    commit_until(&mut store, &mut seq, |s| {
        let c = s.checkpointer().unwrap();
        let restarted = c.frames() < high && c.runs() >= 1;
        high = c.frames();
        restarted
    });
    assert_eq!(store.resume().unwrap().messages, 1);
}

#[test]
fn the_frames_counted_are_the_main_databases_not_an_attached_ones() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::new(dir.path().join("o.db"), "b");
    let (mut store, _) = Store::open(&cfg, &Logger::default()).unwrap();
    let mut seq = 0;
    commit_until(&mut store, &mut seq, |s| {
        s.checkpointer().unwrap().frames() >= 3
    });
    let main = store.checkpointer().unwrap().frames();
    // an attached WAL database (as `adopt_legacy` attaches the old shared file)
    let other = dir.path().join("other.db");
    Connection::open(&other)
        .unwrap()
        .query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
        .unwrap();
    store
        .conn
        .execute("ATTACH ?1 AS legacy", [other.to_string_lossy()])
        .unwrap();
    store
        .conn
        .execute_batch(
            "CREATE TABLE legacy.t(x BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
             INSERT INTO legacy.t SELECT zeroblob(4000) FROM n;",
        )
        .unwrap();
    assert_eq!(store.checkpointer().unwrap().frames(), main);
    store.conn.execute_batch("DETACH legacy").unwrap();
}
