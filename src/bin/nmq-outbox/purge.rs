//! `purge`: remove a bridge's rows (older than, on a topic, or all), under the library's flock.

use crate::db;
use crate::decode::{self, Proto};
use crate::fail::{out, sql, Res};
use crate::human;
use nmq_outbox::store::now_ms;
use rusqlite::params;
use std::io::Write;
use std::path::Path;

pub struct Args {
    pub bridge: String,
    pub older_than_ms: Option<i64>,
    pub topic: Option<String>,
    pub all: bool,
    pub force: bool,
    pub dry_run: bool,
    pub mqtt: Proto,
}

pub fn run(path: &Path, a: &Args, w: &mut impl Write) -> Res<()> {
    let path = &db::resolve(path, Some(&a.bridge));
    let mut db = db::open_write(path, a.force)?;
    // IMMEDIATE: the write lock from the start (with --force a running writer may commit
    // between a deferred read and our first delete, and that upgrade would fail at once).
    let tx = db
        .conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| sql("purge", e))?;
    let b = db::select(&tx, path, Some(&a.bridge))?.remove(0);
    let before = db::count(&tx, b.id)?;
    let cutoff = a.older_than_ms.map(|d| now_ms() - d);
    // The rows to remove, in FIFO order: (seq, bytes, in flight).
    let mut doomed: Vec<(i64, u64, bool)> = Vec::new();
    let mut unreadable = 0u64;
    let pb = db::progress(before, "select");
    db::each_row(&tx, b.id, 0, |r| {
        pb.inc(1);
        let mut hit = a.all;
        if !a.all {
            hit = cutoff.map_or(true, |c| r.enqueued_at < c);
            if let Some(filter) = &a.topic {
                hit &= match decode::publish(&r.data, a.mqtt) {
                    Ok(p) => decode::topic_matches(filter, &p.topic),
                    Err(_) => {
                        unreadable += 1;
                        false
                    }
                };
            }
        }
        if hit {
            doomed.push((r.seq, r.data.len() as u64, r.packet_id != 0));
        }
        Ok(true)
    })?;
    pb.finish_and_clear();
    if !a.dry_run && !doomed.is_empty() {
        let pb = db::progress(doomed.len() as u64, "purge");
        if a.all {
            tx.execute("DELETE FROM msg WHERE bridge_id = ?1", params![b.id])
                .map_err(|e| sql("purge", e))?;
        } else {
            let mut del = tx
                .prepare("DELETE FROM msg WHERE bridge_id = ?1 AND seq = ?2")
                .map_err(|e| sql("purge", e))?;
            for (seq, _, _) in &doomed {
                del.execute(params![b.id, seq])
                    .map_err(|e| sql("purge", e))?;
                pb.inc(1);
            }
        }
        pb.finish_and_clear();
    }
    tx.commit().map_err(|e| sql("purge", e))?;
    drop(db);
    let n = doomed.len() as u64;
    let bytes: u64 = doomed.iter().map(|d| d.1).sum();
    let inflight = doomed.iter().filter(|d| d.2).count();
    let verb = if a.dry_run { "would remove" } else { "removed" };
    let range = match (doomed.first(), doomed.last()) {
        (Some(f), Some(l)) => format!(", seq {}..{}", f.0, l.0),
        _ => String::new(),
    };
    writeln!(
        w,
        "{verb} {} ({}) from bridge {}{range}{}; {} left",
        human::count(n, "message"),
        human::size(bytes),
        b.name,
        if inflight > 0 {
            format!(", {inflight} of them sent and unacknowledged")
        } else {
            String::new()
        },
        if a.dry_run { before } else { before - n },
    )
    .map_err(out)?;
    if unreadable > 0 {
        writeln!(
            w,
            "kept {unreadable} rows whose data is not a readable PUBLISH (no topic to match)"
        )
        .map_err(out)?;
    }
    Ok(())
}
