//! `check`: SQLite's integrity check plus the outbox's own invariants.

use crate::db;
use crate::decode::{self, Proto};
use crate::fail::{out, sql, Code, Res};
use crate::human;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

/// Lines printed per kind of problem before "... and N more".
const SHOW: usize = 10;

#[derive(Default)]
struct Found {
    /// kind -> (count, first lines)
    problems: Vec<(String, u64, Vec<String>)>,
    warnings: Vec<(String, u64, Vec<String>)>,
}

impl Found {
    fn add(list: &mut Vec<(String, u64, Vec<String>)>, kind: &str, line: String) {
        let at = match list.iter().position(|p| p.0 == kind) {
            Some(i) => i,
            None => {
                list.push((kind.to_string(), 0, Vec::new()));
                list.len() - 1
            }
        };
        let e = &mut list[at];
        e.1 += 1;
        if e.2.len() < SHOW {
            e.2.push(line);
        }
    }
    fn problem(&mut self, kind: &str, line: String) {
        Self::add(&mut self.problems, kind, line)
    }
    fn warning(&mut self, kind: &str, line: String) {
        Self::add(&mut self.warnings, kind, line)
    }
}

/// Returns Ok(true) when nothing is wrong.
pub fn run(path: &Path, quick: bool, json_out: bool, mqtt: Proto, w: &mut impl Write) -> Res<bool> {
    let mut f = Found::default();
    let quarantined = db::quarantined(path);
    if let Some(secs) = quarantined {
        f.problem(
            "quarantined",
            format!(
                "a quarantined file: the library found it corrupt and renamed it aside at {} \
                 (the bridge then started a fresh file under the original name)",
                human::utc(secs * 1000)
            ),
        );
    }
    let mut rows_seen = 0u64;
    let mut bridges_seen = 0usize;
    let mut integrity = Vec::new();
    match db::open_read(path) {
        Ok(db) => match scan(&db, quick, mqtt, &mut f, &mut integrity) {
            Ok((r, b)) => (rows_seen, bridges_seen) = (r, b),
            Err(e) if e.code == Code::Corrupt => f.problem("corrupt", e.msg),
            Err(e) => return Err(e),
        },
        Err(e) if e.code == Code::Corrupt => f.problem("corrupt", e.msg),
        Err(e) => return Err(e),
    }
    let ok = f.problems.is_empty();
    if json_out {
        let list = |l: &[(String, u64, Vec<String>)]| -> Value {
            l.iter()
                .map(|(k, n, lines)| json!({"kind": k, "count": n, "first": lines}))
                .collect()
        };
        let v = json!({
            "file": path.display().to_string(),
            "ok": ok,
            "quarantined": quarantined.is_some(),
            "integrity": if integrity.is_empty() { json!(null) } else { json!(integrity) },
            "rows": rows_seen,
            "bridges": bridges_seen,
            "problems": list(&f.problems),
            "warnings": list(&f.warnings),
        });
        writeln!(w, "{v}").map_err(out)?;
        return Ok(ok);
    }
    writeln!(w, "file:       {}", path.display()).map_err(out)?;
    if !integrity.is_empty() {
        let check = if quick {
            "quick_check"
        } else {
            "integrity_check"
        };
        writeln!(w, "{check}: {}", integrity.join("; ")).map_err(out)?;
    }
    writeln!(
        w,
        "invariants: {rows_seen} rows in {bridges_seen} bridge{} read",
        if bridges_seen == 1 { "" } else { "s" }
    )
    .map_err(out)?;
    for (label, l) in [("problem", &f.problems), ("warning", &f.warnings)] {
        for (_, n, lines) in l {
            for line in lines {
                writeln!(w, "{label}: {line}").map_err(out)?;
            }
            if *n > lines.len() as u64 {
                writeln!(
                    w,
                    "{label}: ... and {} more like this",
                    *n - lines.len() as u64
                )
                .map_err(out)?;
            }
        }
    }
    let np: u64 = f.problems.iter().map(|p| p.1).sum();
    let nw: u64 = f.warnings.iter().map(|p| p.1).sum();
    writeln!(
        w,
        "result:     {}",
        match (np, nw) {
            (0, 0) => "ok".to_string(),
            (0, n) => format!("ok, {n} warning{}", if n == 1 { "" } else { "s" }),
            (n, _) => format!("{n} problem{}", if n == 1 { "" } else { "s" }),
        }
    )
    .map_err(out)?;
    Ok(ok)
}

fn scan(
    db: &db::Db,
    quick: bool,
    mqtt: Proto,
    f: &mut Found,
    integrity: &mut Vec<String>,
) -> Res<(u64, usize)> {
    let c = &db.conn;
    if db.ident.user_version < db::SCHEMA_VERSION {
        f.warning(
            "schema",
            format!(
                "schema version {} (written before the file identity; the library upgrades it \
                 to {} at its next open)",
                db.ident.user_version,
                db::SCHEMA_VERSION
            ),
        );
    }
    // 1. SQLite's own check (one call; a spinner would tell nothing more than the wait).
    let pragma = if quick {
        "quick_check"
    } else {
        "integrity_check"
    };
    {
        let mut st = c
            .prepare(&format!("PRAGMA {pragma}"))
            .map_err(|e| sql(pragma, e))?;
        let lines = st
            .query_map([], |r| r.get::<_, String>(0))
            .and_then(|it| it.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| sql(pragma, e))?;
        for l in &lines {
            if l != "ok" {
                f.problem("integrity", format!("{pragma}: {l}"));
            }
        }
        integrity.extend(lines.into_iter().take(SHOW));
    }
    // 2. Columns hold the types the library writes.
    let typed: i64 = c
        .query_row(
            "SELECT count(*) FROM msg WHERE typeof(bridge_id) != 'integer'
               OR typeof(seq) != 'integer' OR typeof(qos) != 'integer'
               OR typeof(expires_at) != 'integer' OR typeof(enqueued_at) != 'integer'
               OR typeof(packet_id) != 'integer' OR typeof(released) != 'integer'
               OR typeof(data) != 'blob'",
            [],
            |r| r.get(0),
        )
        .map_err(|e| sql("check", e))?;
    if typed > 0 {
        f.problem(
            "types",
            format!("{typed} rows hold a value of the wrong type (not written by nmq-outbox)"),
        );
        return Ok((0, 0));
    }
    // 3. Every row belongs to a bridge; names are sane.
    let orphans: i64 = c
        .query_row(
            "SELECT count(*) FROM msg WHERE bridge_id NOT IN (SELECT id FROM bridge)",
            [],
            |r| r.get(0),
        )
        .map_err(|e| sql("check", e))?;
    if orphans > 0 {
        f.problem("orphans", format!("{orphans} rows belong to no bridge"));
    }
    let bridges = db::bridges(c)?;
    let mut rows = 0u64;
    let mut total = 0u64;
    for b in &bridges {
        total += db::count(c, b.id)?;
    }
    let pb = db::progress(total, "check");
    let now = nmq_outbox::store::now_ms();
    for b in &bridges {
        if b.name.is_empty() {
            f.problem("bridge", format!("bridge id {} has an empty name", b.id));
        }
        let counted = db::count(c, b.id)?;
        let mut n = 0u64;
        let mut last: Option<i64> = None;
        let mut pids: HashMap<i64, i64> = HashMap::new();
        let at = |seq: i64| format!("bridge {} seq {seq}", b.name);
        db::each_row(c, b.id, 0, |r| {
            n += 1;
            pb.inc(1);
            if let Some(l) = last {
                if r.seq <= l {
                    f.problem(
                        "order",
                        format!("{}: after seq {l}: FIFO order broken", at(r.seq)),
                    );
                }
            }
            last = Some(r.seq);
            if !(0..=2).contains(&r.qos) {
                f.problem(
                    "qos",
                    format!("{}: qos {} is not 0, 1 or 2", at(r.seq), r.qos),
                );
            }
            if !(0..=65535).contains(&r.packet_id) {
                f.problem(
                    "packet_id",
                    format!("{}: packet_id {} out of range", at(r.seq), r.packet_id),
                );
            }
            if r.released != 0 && r.released != 1 {
                f.problem(
                    "released",
                    format!("{}: released = {} (0 or 1)", at(r.seq), r.released),
                );
            }
            if r.released != 0 && (r.qos != 2 || r.packet_id == 0) {
                f.problem(
                    "released",
                    format!(
                        "{}: released, but qos {} packet_id {} (only a sent QoS 2 row is released)",
                        at(r.seq),
                        r.qos,
                        r.packet_id
                    ),
                );
            }
            if r.packet_id != 0 {
                if let Some(other) = pids.insert(r.packet_id, r.seq) {
                    f.warning(
                        "pid",
                        format!(
                            "{}: packet_id {} also on seq {other}",
                            at(r.seq),
                            r.packet_id
                        ),
                    );
                }
            }
            if r.enqueued_at <= 0 {
                f.problem(
                    "time",
                    format!("{}: enqueued_at {} is not a time", at(r.seq), r.enqueued_at),
                );
            } else if r.enqueued_at > now + 86_400_000 {
                f.warning(
                    "future",
                    format!(
                        "{}: stored in the future ({})",
                        at(r.seq),
                        human::utc(r.enqueued_at)
                    ),
                );
            }
            if r.expires_at < 0 || (r.expires_at != 0 && r.expires_at < r.enqueued_at) {
                f.problem(
                    "time",
                    format!(
                        "{}: expires_at {} before enqueued_at {}",
                        at(r.seq),
                        r.expires_at,
                        r.enqueued_at
                    ),
                );
            }
            match decode::publish(&r.data, mqtt) {
                Ok(p) if (0..=2).contains(&r.qos) && p.qos as i64 != r.qos => f.problem(
                    "data",
                    format!(
                        "{}: row qos {} but the stored PUBLISH says QoS {}",
                        at(r.seq),
                        r.qos,
                        p.qos
                    ),
                ),
                Ok(_) => {}
                // The plain C API (nmq_outbox_append) stores opaque bytes; NanoMQ's hooks
                // store PUBLISH packets. A damaged PUBLISH is a problem, other bytes a note.
                Err(why) if r.data.first().is_some_and(|b| b >> 4 == 3) => {
                    f.problem("data", format!("{}: damaged PUBLISH: {why}", at(r.seq)))
                }
                Err(why) => f.warning(
                    "opaque",
                    format!("{}: data is not an MQTT PUBLISH ({why})", at(r.seq)),
                ),
            }
            Ok(true)
        })?;
        if n != counted {
            f.problem(
                "count",
                format!("bridge {}: count(*) says {counted} rows, {n} read", b.name),
            );
        }
        rows += n;
    }
    pb.finish_and_clear();
    Ok((rows, bridges.len()))
}
