//! `stats` and `list`, and what they share with `export`: a row as text or JSON.

use crate::db::{self, Row};
use crate::decode::{self, Proto};
use crate::fail::{out, sql, Res};
use crate::human;
use base64::Engine;
use nmq_outbox::store::now_ms;
use rusqlite::params;
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;

/// queued, inflight or released (see `list --help`).
pub fn state(row: &Row) -> &'static str {
    if row.released != 0 {
        "released"
    } else if row.packet_id != 0 {
        "inflight"
    } else {
        "queued"
    }
}

/// One row as JSON; `data` adds payload_b64 and packet_b64 (export).
pub fn row_json(bridge: &str, row: &Row, mqtt: Proto, data: bool) -> Value {
    let d = decode::publish(&row.data, mqtt);
    let mut v = json!({
        "bridge": bridge,
        "seq": row.seq,
        "qos": row.qos,
        "packet_id": row.packet_id,
        "dup": row.packet_id != 0 || d.as_ref().is_ok_and(|p| p.dup),
        "released": row.released != 0,
        "state": state(row),
        "enqueued_at": row.enqueued_at,
        "expires_at": row.expires_at,
        "bytes": row.data.len(),
    });
    if let Ok(p) = &d {
        v["mqtt_version"] = json!(p.version);
    }
    publish_fields(&mut v, &row.data, &d, data);
    v
}

/// Adds what the stored PUBLISH `bytes` (decoded as `d`) says to the JSON object `v`: topic,
/// retain, payload_bytes (or topic null and decode_error); with `data` also payload_b64 and
/// packet_b64 (the lossless part an export needs).
pub fn publish_fields(
    v: &mut Value,
    bytes: &[u8],
    d: &Result<decode::Publish, String>,
    data: bool,
) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let m = v.as_object_mut().expect("object");
    match d {
        Ok(p) => {
            m.insert("topic".into(), json!(p.topic));
            m.insert("retain".into(), json!(p.retain));
            m.insert("payload_bytes".into(), json!(p.payload.len()));
            if data {
                m.insert(
                    "payload_b64".into(),
                    json!(b64.encode(&bytes[p.payload.clone()])),
                );
            }
        }
        Err(why) => {
            m.insert("topic".into(), Value::Null);
            m.insert("decode_error".into(), json!(why));
        }
    }
    if data {
        m.insert("packet_b64".into(), json!(b64.encode(bytes)));
    }
}

/// Aligned columns; `right[i]` right-aligns column i.
pub fn table(w: &mut impl Write, head: &[&str], right: &[bool], rows: &[Vec<String>]) -> Res<()> {
    let mut width: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |w: &mut dyn Write, cells: &[String]| -> std::io::Result<()> {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let last = i + 1 == cells.len();
            let pad = width[i].saturating_sub(c.chars().count());
            if right.get(i).copied().unwrap_or(false) {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            } else {
                s.push_str(c);
                if !last {
                    s.push_str(&" ".repeat(pad));
                }
            }
            if !last {
                s.push_str("  ");
            }
        }
        writeln!(w, "{}", s.trim_end())
    };
    let head: Vec<String> = head.iter().map(|s| s.to_string()).collect();
    line(w, &head).map_err(out)?;
    for r in rows {
        line(w, r).map_err(out)?;
    }
    Ok(())
}

struct BridgeStats {
    name: String,
    messages: i64,
    bytes: i64,
    inflight: i64,
    released: i64,
    expired: i64,
    qos: [i64; 3],
    oldest: Option<i64>,
    first_seq: Option<i64>,
    last_seq: Option<i64>,
    dead: u64,
}

pub fn stats(path: &Path, bridge: Option<&str>, json_out: bool, w: &mut impl Write) -> Res<()> {
    let path = &db::resolve(path, bridge);
    let db = db::open_read(path)?;
    let now = now_ms();
    let mut all = Vec::new();
    for b in db::select(&db.conn, path, bridge)? {
        let s = db
            .conn
            .query_row(
                "SELECT count(*), coalesce(sum(length(data)), 0),
                        coalesce(sum(packet_id != 0), 0), coalesce(sum(released != 0), 0),
                        coalesce(sum(expires_at != 0 AND expires_at <= ?2), 0),
                        coalesce(sum(qos = 0), 0), coalesce(sum(qos = 1), 0),
                        coalesce(sum(qos = 2), 0), min(enqueued_at), min(seq), max(seq)
                 FROM msg WHERE bridge_id = ?1",
                params![b.id, now],
                |r| {
                    Ok(BridgeStats {
                        name: b.name.clone(),
                        messages: r.get(0)?,
                        bytes: r.get(1)?,
                        inflight: r.get(2)?,
                        released: r.get(3)?,
                        expired: r.get(4)?,
                        qos: [r.get(5)?, r.get(6)?, r.get(7)?],
                        oldest: r.get(8)?,
                        first_seq: r.get(9)?,
                        last_seq: r.get(10)?,
                        dead: 0,
                    })
                },
            )
            .map_err(|e| sql("stats", e))?;
        let mut s = s;
        s.dead = nmq_outbox::dead::count(&db.conn, b.id)
            .map_err(|e| crate::fail::Fail::new(crate::fail::Code::CannotOpen, e.to_string()))?;
        all.push(s);
    }
    let file_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let wal_bytes = db::side_size(path, "-wal");
    let holders = db::holders(path);
    let quarantined = db::quarantined(path);
    drop(db.conn);
    if json_out {
        let bridges: Vec<Value> = all
            .iter()
            .map(|s| {
                json!({
                    "name": s.name,
                    "messages": s.messages,
                    "bytes": s.bytes,
                    "in_flight": s.inflight,
                    "released": s.released,
                    "expired": s.expired,
                    "qos0": s.qos[0], "qos1": s.qos[1], "qos2": s.qos[2],
                    "oldest_enqueued_at": s.oldest,
                    "oldest_age_ms": s.oldest.map(|t| (now - t).max(0)),
                    "first_seq": s.first_seq,
                    "last_seq": s.last_seq,
                    "dead_letters": s.dead,
                    "dropped": Value::Null,
                })
            })
            .collect();
        let v = json!({
            "file": path.display().to_string(),
            "file_bytes": file_bytes,
            "wal_bytes": wal_bytes.unwrap_or(0),
            "schema_version": db.ident.user_version,
            "application_id": db.ident.application_id,
            "held_by": holders,
            "quarantined": quarantined.is_some(),
            "bridges": bridges,
        });
        writeln!(w, "{v}").map_err(out)?;
        return Ok(());
    }
    let held = match &holders {
        Some(p) if p.is_empty() => "no".to_string(),
        Some(p) => format!(
            "yes, pid {}",
            p.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => "unknown (/proc/locks unreadable)".to_string(),
    };
    writeln!(w, "file:    {}", path.display()).map_err(out)?;
    if let Some(secs) = quarantined {
        writeln!(
            w,
            "note:    a quarantined file: renamed aside as corrupt at {}",
            human::utc(secs * 1000)
        )
        .map_err(out)?;
    }
    writeln!(
        w,
        "size:    {} (WAL {}{}), schema version {}",
        human::size(file_bytes),
        wal_bytes.map_or("none".to_string(), human::size),
        db::side_size(path, "-reserve").map_or(String::new(), |r| format!(
            ", disk reserve {}",
            human::size(r)
        )),
        db.ident.user_version
    )
    .map_err(out)?;
    writeln!(w, "held:    {held}").map_err(out)?;
    let total: i64 = all.iter().map(|s| s.messages).sum();
    let total_bytes: i64 = all.iter().map(|s| s.bytes).sum();
    writeln!(
        w,
        "waiting: {}, {} in {}",
        human::count(total, "message"),
        human::size(total_bytes as u64),
        human::count(all.len() as u64, "bridge"),
    )
    .map_err(out)?;
    let dead: u64 = all.iter().map(|s| s.dead).sum();
    if dead > 0 {
        writeln!(
            w,
            "dead:    {} (refused by the remote, kept: nmq-outbox dead list)",
            human::count(dead, "dead letter")
        )
        .map_err(out)?;
    }
    if all.is_empty() {
        return Ok(());
    }
    writeln!(w).map_err(out)?;
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.messages.to_string(),
                human::size(s.bytes as u64),
                s.inflight.to_string(),
                s.released.to_string(),
                s.expired.to_string(),
                format!("{}/{}/{}", s.qos[0], s.qos[1], s.qos[2]),
                s.oldest.map_or("-".into(), |t| human::age(now - t)),
                match (s.first_seq, s.last_seq) {
                    (Some(a), Some(b)) => format!("{a}..{b}"),
                    _ => "-".into(),
                },
                "-".into(),
            ]
        })
        .collect();
    table(
        w,
        &[
            "BRIDGE",
            "MESSAGES",
            "BYTES",
            "IN FLIGHT",
            "RELEASED",
            "EXPIRED",
            "QOS 0/1/2",
            "OLDEST",
            "SEQ",
            "DROPPED",
        ],
        &[
            false, true, true, true, true, true, true, true, false, false,
        ],
        &rows,
    )
}

pub fn list(
    path: &Path,
    bridge: Option<&str>,
    limit: u64,
    json_out: bool,
    mqtt: Proto,
    w: &mut impl Write,
) -> Res<()> {
    let path = &db::resolve(path, bridge);
    let db = db::open_read(path)?;
    let bridges = db::select(&db.conn, path, bridge)?;
    let now = now_ms();
    let many = bridges.len() > 1;
    let mut rows = Vec::new();
    let mut json_rows = Vec::new();
    let mut cut = Vec::new();
    for b in &bridges {
        let total = db::count(&db.conn, b.id)?;
        if limit != 0 && total > limit {
            cut.push((b.name.clone(), limit, total));
        }
        db::each_row(&db.conn, b.id, limit, |r| {
            if json_out {
                json_rows.push(row_json(&b.name, &r, mqtt, false));
                return Ok(true);
            }
            let d = decode::publish(&r.data, mqtt);
            let expires = match r.expires_at {
                0 => "-".to_string(),
                t if t <= now => "expired".to_string(),
                t => human::age(t - now),
            };
            let mut cells = vec![
                r.seq.to_string(),
                r.qos.to_string(),
                match &d {
                    Ok(p) => human::size(p.payload.len() as u64),
                    Err(_) => human::size(r.data.len() as u64),
                },
                human::age(now - r.enqueued_at),
                expires,
                r.packet_id.to_string(),
                state(&r).to_string(),
                match &d {
                    Ok(p) => p.topic.clone(),
                    Err(why) => format!("? (not a PUBLISH: {why})"),
                },
            ];
            if many {
                cells.insert(0, b.name.clone());
            }
            rows.push(cells);
            Ok(true)
        })?;
    }
    drop(db);
    if json_out {
        writeln!(w, "{}", Value::Array(json_rows)).map_err(out)?;
    } else {
        let mut head = vec![
            "SEQ", "QOS", "SIZE", "AGE", "EXPIRES", "PID", "STATE", "TOPIC",
        ];
        let mut right = vec![true, true, true, true, true, true, false, false];
        if many {
            head.insert(0, "BRIDGE");
            right.insert(0, false);
        }
        table(w, &head, &right, &rows)?;
    }
    // The note goes to stderr (stdout stays parseable), after the rows.
    w.flush().map_err(out)?;
    for (name, shown, total) in cut {
        eprintln!(
            "nmq-outbox: bridge {name}: first {shown} of {total} rows shown (--limit 0 for all)"
        );
    }
    Ok(())
}
