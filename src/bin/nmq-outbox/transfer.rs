//! `export` and `import`: moving a backlog to another gateway.

use crate::db;
use crate::decode::{self, Proto};
use crate::fail::{out, sql, Code, Fail, Res};
use crate::show::row_json;
use base64::Engine;
use nmq_outbox::store::now_ms;
use rusqlite::params;
use serde_json::Value;
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per row (lossless: the stored packet and the row's fields)
    Jsonl,
    /// The stored PUBLISH packets back to back
    Mqtt,
}

/// The file an export writes (`--output`): the rows are the bridge's messages, so a new file
/// is private (0600); an existing one keeps its mode and is truncated.
pub fn create_output(p: &Path) -> Res<std::io::BufWriter<std::fs::File>> {
    let opts = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .clone();
    let f = nmq_outbox::files::open_private(&opts, p).map_err(|e| {
        Fail::new(
            Code::CannotOpen,
            format!("cannot create {}: {e}", p.display()),
        )
    })?;
    Ok(std::io::BufWriter::new(f))
}

pub fn export(
    path: &Path,
    bridge: Option<&str>,
    format: Format,
    output: Option<&Path>,
    mqtt: Proto,
    stdout: &mut impl Write,
) -> Res<()> {
    let path = &db::resolve(path, bridge);
    let db = db::open_read(path)?;
    let bridges = db::select(&db.conn, path, bridge)?;
    if output.is_none() && format == Format::Mqtt && std::io::stdout().is_terminal() {
        return Err(Fail::new(
            Code::Usage,
            "refusing to write binary MQTT packets to a terminal: use --output FILE or a pipe",
        ));
    }
    let mut file;
    let w: &mut dyn Write = match output {
        Some(p) => {
            file = create_output(p)?;
            &mut file
        }
        None => stdout,
    };
    let mut total = 0;
    for b in &bridges {
        total += db::count(&db.conn, b.id)?;
    }
    let pb = db::progress(total, "export");
    let (mut n, mut bytes) = (0u64, 0u64);
    for b in &bridges {
        db::each_row(&db.conn, b.id, 0, |r| {
            match format {
                Format::Jsonl => writeln!(w, "{}", row_json(&b.name, &r, mqtt, true)),
                Format::Mqtt => w.write_all(&r.data),
            }
            .map_err(out)?;
            n += 1;
            bytes += r.data.len() as u64;
            pb.inc(1);
            Ok(true)
        })?;
    }
    w.flush().map_err(out)?;
    pb.finish_and_clear();
    drop(db);
    eprintln!(
        "nmq-outbox: exported {} ({}) from {}",
        crate::human::count(n, "message"),
        crate::human::size(bytes),
        crate::human::count(bridges.len() as u64, "bridge"),
    );
    Ok(())
}

/// One row to import.
#[derive(Debug, Clone, PartialEq)]
pub struct In {
    pub bridge: String,
    pub qos: u8,
    pub enqueued_at: i64,
    pub expires_at: i64,
    pub packet_id: u16,
    pub released: bool,
    pub data: Vec<u8>,
}

fn bad(line: usize, why: impl std::fmt::Display) -> Fail {
    Fail::new(Code::BadInput, format!("input record {line}: {why}"))
}

/// Parses one jsonl record.
pub fn parse_jsonl(line: &str, n: usize, bridge: Option<&str>, keep_state: bool) -> Res<In> {
    let v: Value = serde_json::from_str(line).map_err(|e| bad(n, format!("not JSON: {e}")))?;
    let int = |k: &str| v.get(k).and_then(Value::as_i64);
    let packet = v
        .get("packet_b64")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(n, "no packet_b64 (not an `nmq-outbox export` record)"))?;
    let data = base64::engine::general_purpose::STANDARD
        .decode(packet)
        .map_err(|e| bad(n, format!("packet_b64: {e}")))?;
    let p = decode::publish(&data, Proto::V4).map_err(|e| bad(n, format!("packet_b64: {e}")))?;
    if let Some(q) = int("qos") {
        if q != p.qos as i64 {
            return Err(bad(n, format!("qos {q} but the packet says QoS {}", p.qos)));
        }
    }
    let name = match bridge {
        Some(b) => b.to_string(),
        None => v
            .get("bridge")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(n, "no bridge (give --bridge)"))?
            .to_string(),
    };
    let packet_id = if keep_state {
        int("packet_id").unwrap_or(0)
    } else {
        0
    };
    let released = keep_state && v.get("released").and_then(Value::as_bool).unwrap_or(false);
    if !(0..=65535).contains(&packet_id) {
        return Err(bad(n, format!("packet_id {packet_id}")));
    }
    if released && (p.qos != 2 || packet_id == 0) {
        return Err(bad(n, "released is only for a sent QoS 2 row"));
    }
    let expires_at = int("expires_at").unwrap_or(0);
    Ok(In {
        bridge: name,
        qos: p.qos,
        enqueued_at: int("enqueued_at").unwrap_or_else(now_ms),
        expires_at: expires_at.max(0),
        packet_id: packet_id as u16,
        released,
        data,
    })
}

/// Splits back-to-back MQTT packets into rows of `bridge`.
pub fn parse_mqtt(mut b: &[u8], bridge: &str, mqtt: Proto) -> Res<Vec<In>> {
    let now = now_ms();
    let mut v = Vec::new();
    while !b.is_empty() {
        let n = v.len() + 1;
        let len = decode::packet_len(b)
            .map_err(|e| bad(n, e))?
            .filter(|&l| l <= b.len())
            .ok_or_else(|| bad(n, "truncated packet"))?;
        let (pkt, rest) = b.split_at(len);
        let p = decode::publish(pkt, mqtt).map_err(|e| bad(n, e))?;
        v.push(In {
            bridge: bridge.to_string(),
            qos: p.qos,
            enqueued_at: now,
            expires_at: p
                .expiry_secs
                .filter(|&s| s > 0)
                .map_or(0, |s| now + s as i64 * 1000),
            packet_id: 0,
            released: false,
            data: pkt.to_vec(),
        });
        b = rest;
    }
    Ok(v)
}

#[allow(clippy::too_many_arguments)]
pub fn import(
    path: &Path,
    input: Option<&Path>,
    format: Option<Format>,
    bridge: Option<&str>,
    keep_state: bool,
    mqtt: Proto,
    w: &mut impl Write,
) -> Res<()> {
    let path = &db::resolve(path, bridge);
    let mut raw = Vec::new();
    match input {
        Some(p) if p != Path::new("-") => std::fs::File::open(p)
            .and_then(|mut f| f.read_to_end(&mut raw))
            .map_err(|e| {
                Fail::new(
                    Code::CannotOpen,
                    format!("cannot read {}: {e}", p.display()),
                )
            })?,
        _ => std::io::stdin()
            .read_to_end(&mut raw)
            .map_err(|e| Fail::new(Code::CannotOpen, format!("cannot read stdin: {e}")))?,
    };
    let format = format.unwrap_or(if raw.first() == Some(&b'{') {
        Format::Jsonl
    } else {
        Format::Mqtt
    });
    let rows = match format {
        Format::Jsonl => {
            let mut v = Vec::new();
            for (i, line) in BufReader::new(&raw[..]).lines().enumerate() {
                let line = line.map_err(|e| bad(i + 1, e))?;
                if line.trim().is_empty() {
                    continue;
                }
                v.push(parse_jsonl(&line, i + 1, bridge, keep_state)?);
            }
            v
        }
        Format::Mqtt => {
            let Some(b) = bridge else {
                return Err(Fail::new(
                    Code::Usage,
                    "--format mqtt needs --bridge (raw packets name no bridge)",
                ));
            };
            parse_mqtt(&raw, b, mqtt)?
        }
    };
    drop(raw);
    if !path.exists() {
        // A new file: the library creates it (schema, identity), then closes it.
        let first = rows
            .first()
            .map(|r| r.bridge.clone())
            .or(bridge.map(str::to_string))
            .ok_or_else(|| Fail::new(Code::BadInput, "empty input and no --bridge"))?;
        let mut cfg = nmq_outbox::Config::new(path, first);
        cfg.logger = nmq_outbox::Logger::new(None, nmq_outbox::Level::Error);
        nmq_outbox::Outbox::open(cfg)
            .and_then(|ob| ob.close())
            .map_err(|e| {
                Fail::new(
                    Code::CannotOpen,
                    format!("cannot create {}: {e}", path.display()),
                )
            })?;
    }
    let mut db = db::open_write(path, false)?;
    let tx = db
        .conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| sql("import", e))?;
    // The library's INSERT writes `attempts`: a file of schema 1 gets the column (and the dead
    // letters' table) as the library's open would add them.
    nmq_outbox::store::migrate(&tx).map_err(|e| {
        Fail::new(
            Code::CannotOpen,
            format!("import: cannot bring {} to schema 2: {e}", path.display()),
        )
    })?;
    let mut next = std::collections::HashMap::<String, (i64, i64, u64)>::new();
    let pb = db::progress(rows.len() as u64, "import");
    let imported = rows.len();
    {
        let mut ins = tx
            .prepare(nmq_outbox::store::INSERT_ROW)
            .map_err(|e| sql("import", e))?;
        for r in rows {
            if !next.contains_key(&r.bridge) {
                let id = db::bridge_id_or_create(&tx, &r.bridge)?;
                let max: Option<i64> = tx
                    .query_row(
                        "SELECT max(seq) FROM msg WHERE bridge_id = ?1",
                        params![id],
                        |x| x.get(0),
                    )
                    .map_err(|e| sql("import", e))?;
                next.insert(r.bridge.clone(), (id, max.map_or(1, |m| m.max(0) + 1), 0));
            }
            let e = next.get_mut(&r.bridge).expect("inserted");
            let row = nmq_outbox::store::Row {
                seq: e.1,
                qos: r.qos,
                expires_at: r.expires_at,
                enqueued_at: r.enqueued_at,
                packet_id: r.packet_id,
                released: r.released,
                attempts: 0,
                data: r.data,
            };
            nmq_outbox::store::insert_row(&mut ins, e.0, &row).map_err(|e| sql("import", e))?;
            e.1 += 1;
            e.2 += 1;
            pb.inc(1);
        }
    }
    tx.commit().map_err(|e| sql("import", e))?;
    pb.finish_and_clear();
    drop(db);
    let mut per: Vec<_> = next.into_iter().collect();
    per.sort();
    for (name, (_, last, n)) in per {
        writeln!(
            w,
            "imported {} into bridge {name} of {} (seq {}..{})",
            crate::human::count(n, "message"),
            path.display(),
            last - n as i64,
            last - 1
        )
        .map_err(out)?;
    }
    if imported == 0 {
        writeln!(w, "imported 0 messages (empty input)").map_err(out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::tests::encode;

    #[test]
    fn mqtt_stream_splits_and_reads_v5_expiry() {
        let a = encode(1, "a", 1, None, b"x");
        let b = encode(2, "b", 2, Some(&[0x02, 0, 0, 0, 10]), &[7; 300]);
        let rows = parse_mqtt(&[a.clone(), b.clone()].concat(), "br", Proto::Auto).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].qos, &rows[0].data), (1, &a));
        assert_eq!((rows[1].qos, &rows[1].data), (2, &b));
        assert!(rows[1].expires_at > rows[1].enqueued_at);
        let e = parse_mqtt(&a[..a.len() - 1], "br", Proto::Auto).unwrap_err();
        assert_eq!(e.code, Code::BadInput);
    }

    #[test]
    fn jsonl_record_needs_packet_and_agreeing_qos() {
        let p = base64::engine::general_purpose::STANDARD.encode(encode(1, "t", 5, None, b"x"));
        let ok = format!(r#"{{"bridge":"b","qos":1,"packet_id":5,"packet_b64":"{p}"}}"#);
        let r = parse_jsonl(&ok, 1, None, false).unwrap();
        assert_eq!((r.bridge.as_str(), r.packet_id), ("b", 0));
        assert_eq!(parse_jsonl(&ok, 1, Some("c"), true).unwrap().packet_id, 5);
        let wrong = format!(r#"{{"bridge":"b","qos":2,"packet_b64":"{p}"}}"#);
        assert_eq!(
            parse_jsonl(&wrong, 3, None, false).unwrap_err().code,
            Code::BadInput
        );
        assert!(parse_jsonl(r#"{"bridge":"b"}"#, 1, None, false).is_err());
        assert!(parse_jsonl("nope", 1, None, false).is_err());
    }
}
