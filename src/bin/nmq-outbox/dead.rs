//! `dead list|export|requeue|purge`: the dead letters of a bridge (rows the remote refused for
//! good, kept in the file). Rows are read and written through the library's own code
//! (`nmq_outbox::dead`), inside this command's transaction and under its lock.

use crate::db;
use crate::decode::{self, Proto};
use crate::fail::{out, sql, Code, Fail, Res};
use crate::human;
use crate::show::table;
use nmq_outbox::dead::DeadLetter;
use nmq_outbox::store::now_ms;
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;

/// A library error met on `what`.
fn lib(what: &str, e: nmq_outbox::Error) -> Fail {
    match e {
        nmq_outbox::Error::Corrupt(s) => Fail::new(Code::Corrupt, format!("{what}: corrupt: {s}")),
        e => Fail::new(Code::CannotOpen, format!("{what}: {e}")),
    }
}

/// The reason code as text: "0x87", or "-".
fn code_text(c: Option<u8>) -> String {
    c.map_or("-".into(), |c| format!("0x{c:02x}"))
}

/// One dead letter as JSON; `data` adds payload_b64 and packet_b64 (export: what `import`
/// reads, so an export can go back into a queue).
fn dead_json(bridge: &str, d: &DeadLetter, mqtt: Proto, data: bool) -> Value {
    let p = decode::publish(&d.data, mqtt);
    let mut v = json!({
        "bridge": bridge,
        "seq": d.seq,
        "qos": d.qos,
        "reason": d.reason,
        "reason_code": d.reason_code,
        "attempts": d.attempts,
        "enqueued_at": d.enqueued_at,
        "expires_at": d.expires_at,
        "dead_at": d.dead_at,
        "bytes": d.data.len(),
    });
    crate::show::publish_fields(&mut v, &d.data, &p, data);
    v
}

/// (bridge name, its dead letters) of the bridges chosen, read in the file's one snapshot.
fn read_all(path: &Path, bridge: Option<&str>, limit: u64) -> Res<Vec<(String, Vec<DeadLetter>)>> {
    let path = &db::resolve(path, bridge);
    let db = db::open_read(path)?;
    let mut all = Vec::new();
    for b in db::select(&db.conn, path, bridge)? {
        let v = nmq_outbox::dead::list(&db.conn, b.id, limit).map_err(|e| lib("dead", e))?;
        all.push((b.name, v));
    }
    Ok(all)
}

pub fn list(
    path: &Path,
    bridge: Option<&str>,
    limit: u64,
    json_out: bool,
    mqtt: Proto,
    w: &mut impl Write,
) -> Res<()> {
    let all = read_all(path, bridge, limit)?;
    if json_out {
        let v: Vec<Value> = all
            .iter()
            .flat_map(|(b, v)| v.iter().map(move |d| dead_json(b, d, mqtt, false)))
            .collect();
        return writeln!(w, "{}", Value::Array(v)).map_err(out);
    }
    let now = now_ms();
    let many = all.len() > 1;
    let mut rows = Vec::new();
    for (b, v) in &all {
        for d in v {
            let p = decode::publish(&d.data, mqtt);
            let mut cells = vec![
                d.seq.to_string(),
                d.qos.to_string(),
                human::size(d.data.len() as u64),
                human::age(now - d.dead_at),
                d.reason.clone(),
                code_text(d.reason_code),
                d.attempts.to_string(),
                match &p {
                    Ok(p) => p.topic.clone(),
                    Err(why) => format!("? (not a PUBLISH: {why})"),
                },
            ];
            if many {
                cells.insert(0, b.clone());
            }
            rows.push(cells);
        }
    }
    let mut head = vec![
        "SEQ", "QOS", "BYTES", "DEAD FOR", "REASON", "CODE", "ATTEMPTS", "TOPIC",
    ];
    let mut right = vec![true, true, true, true, false, false, true, false];
    if many {
        head.insert(0, "BRIDGE");
        right.insert(0, false);
    }
    table(w, &head, &right, &rows)
}

pub fn export(
    path: &Path,
    bridge: Option<&str>,
    output: Option<&Path>,
    json_out: bool,
    mqtt: Proto,
    stdout: &mut impl Write,
) -> Res<()> {
    let all = read_all(path, bridge, 0)?;
    let mut file;
    let w: &mut dyn Write = match output {
        Some(p) => {
            file = crate::transfer::create_output(p)?;
            &mut file
        }
        None => stdout,
    };
    let items = all
        .iter()
        .flat_map(|(b, v)| v.iter().map(move |d| dead_json(b, d, mqtt, true)));
    let mut n = 0u64;
    if json_out {
        let v: Vec<Value> = items.collect();
        n = v.len() as u64;
        writeln!(w, "{}", Value::Array(v)).map_err(out)?;
    } else {
        for v in items {
            writeln!(w, "{v}").map_err(out)?;
            n += 1;
        }
    }
    w.flush().map_err(out)?;
    eprintln!(
        "nmq-outbox: exported {} from {}",
        human::count(n, "dead letter"),
        human::count(all.len() as u64, "bridge"),
    );
    Ok(())
}

/// What `requeue` and `purge` work on.
pub struct Change {
    pub bridge: String,
    /// None: every dead letter of the bridge.
    pub seqs: Option<Vec<i64>>,
    pub force: bool,
    pub dry_run: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Requeue,
    Purge,
}

/// Puts dead letters back in the queue, or deletes them, in one transaction under the
/// library's lock (a file a running NanoMQ holds is refused unless `force`).
pub fn change(path: &Path, op: Op, c: &Change, w: &mut impl Write) -> Res<()> {
    let path = &db::resolve(path, Some(&c.bridge));
    let mut db = db::open_write(path, c.force)?;
    let tx = db
        .conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| sql("dead", e))?;
    let b = db::select(&tx, path, Some(&c.bridge))?.remove(0);
    let have: Vec<i64> = nmq_outbox::dead::list(&tx, b.id, 0)
        .map_err(|e| lib("dead", e))?
        .iter()
        .map(|d| d.seq)
        .collect();
    if let Some(want) = &c.seqs {
        let missing: Vec<String> = want
            .iter()
            .filter(|s| !have.contains(s))
            .map(|s| s.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(Fail::new(
                Code::NoDeadLetter,
                format!(
                    "bridge {}: no dead letter with seq {} (nmq-outbox dead list)",
                    b.name,
                    missing.join(", ")
                ),
            ));
        }
    }
    let which = c.seqs.as_deref();
    let chosen: Vec<i64> = match which {
        Some(w) => have.iter().copied().filter(|s| w.contains(s)).collect(),
        None => have.clone(),
    };
    let mut moved = Vec::new();
    if !c.dry_run && !chosen.is_empty() {
        moved = match op {
            Op::Requeue => nmq_outbox::dead::requeue(&tx, b.id, which),
            Op::Purge => nmq_outbox::dead::purge(&tx, b.id, which),
        }
        .map_err(|e| lib("dead", e))?;
    }
    tx.commit().map_err(|e| sql("dead", e))?;
    drop(db);
    let verb = match (op, c.dry_run) {
        (Op::Requeue, false) => "put back in the queue",
        (Op::Requeue, true) => "would put back in the queue",
        (Op::Purge, false) => "deleted",
        (Op::Purge, true) => "would delete",
    };
    let seqs: Vec<String> = chosen.iter().map(|s| s.to_string()).collect();
    let tail = match op {
        Op::Requeue if !c.dry_run && moved != chosen => {
            let now: Vec<String> = moved.iter().map(|s| s.to_string()).collect();
            format!(" (now seq {}: their seq was taken)", now.join(", "))
        }
        Op::Requeue => " as never sent, each at its place in the FIFO".to_string(),
        Op::Purge => String::new(),
    };
    writeln!(
        w,
        "{verb} {} of bridge {}{}{tail}; {} left",
        human::count(chosen.len() as u64, "dead letter"),
        b.name,
        if seqs.is_empty() {
            String::new()
        } else {
            format!(" (seq {})", seqs.join(", "))
        },
        have.len() - if c.dry_run { 0 } else { chosen.len() },
    )
    .map_err(out)
}
