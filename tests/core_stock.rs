//! Takeover of the cache stock NanoMQ left for a bridge (NanoNNG's `mqtt_client.db`, schema and
//! serialization of `src/supplemental/mqtt/mqtt_qos_db.c`, identical in 0.24.6 and 0.25.x).

use nmq_outbox::{AckKind, Config, Outbox};
use rusqlite::{params, Connection};
use std::path::Path;

/// NanoNNG's tables, as `mqtt_qos_db.c` creates them.
const STOCK_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS t_client_msg (id INTEGER PRIMARY KEY AUTOINCREMENT,
  packet_id INTEGER NOT NULL, pipe_id INTEGER NOT NULL, data BLOB, info_id INTEGER NOT NULL,
  proto_ver TINYINT DEFAULT 4, ts DATETIME DEFAULT CURRENT_TIMESTAMP );
CREATE TABLE IF NOT EXISTS t_client_offline_msg (id INTEGER PRIMARY KEY AUTOINCREMENT,
  data BLOB, info_id INTEGER NOT NULL, proto_ver TINYINT DEFAULT 4,
  ts DATETIME DEFAULT CURRENT_TIMESTAMP );
CREATE TABLE IF NOT EXISTS t_client_info (id INTEGER PRIMARY KEY AUTOINCREMENT,
  config_name TEXT NOT NULL UNIQUE, client_id TEXT , proto_name TEXT , proto_ver TINY INT ,
  ts DATETIME DEFAULT CURRENT_TIMESTAMP );
";

/// An encoded MQTT 3.1.1 PUBLISH (QoS 1) of `payload` on `topic`, as (fixed header, rest).
fn publish(topic: &str, payload: &str, pid: u16) -> (Vec<u8>, Vec<u8>) {
    let mut rest = Vec::new();
    rest.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    rest.extend_from_slice(topic.as_bytes());
    rest.extend_from_slice(&pid.to_be_bytes());
    rest.extend_from_slice(payload.as_bytes());
    (vec![0x32, rest.len() as u8], rest)
}

/// `nni_mqtt_msg_serialize`: u32 BE header length, header, u32 BE body length, body, u64 time,
/// u64 aio address.
fn serialize(h: &[u8], b: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&(h.len() as u32).to_be_bytes());
    v.extend_from_slice(h);
    v.extend_from_slice(&(b.len() as u32).to_be_bytes());
    v.extend_from_slice(b);
    v.extend_from_slice(&1234u64.to_ne_bytes());
    v.extend_from_slice(&0u64.to_ne_bytes());
    v
}

fn stock_db(path: &Path) -> Connection {
    let c = Connection::open(path).unwrap();
    c.execute_batch(STOCK_SCHEMA).unwrap();
    for name in ["emqx1", "other"] {
        c.execute(
            "INSERT INTO t_client_info(config_name, client_id, proto_name, proto_ver)
             VALUES (?1, 'c', 'MQTT', 4)",
            params![name],
        )
        .unwrap();
    }
    c
}

fn info_id(c: &Connection, name: &str) -> i64 {
    c.query_row(
        "SELECT id FROM t_client_info WHERE config_name = ?1",
        params![name],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn rows_stock_nanomq_left_are_taken_over_in_order_and_removed_there() {
    let dir = tempfile::tempdir().unwrap();
    let stock = dir.path().join("mqtt_client.db");
    let c = stock_db(&stock);
    let (me, other) = (info_id(&c, "emqx1"), info_id(&c, "other"));
    // Two sent but unacknowledged, then the offline queue (with one malformed blob).
    for (i, pid) in [(1, 11u16), (2, 12)] {
        let (h, b) = publish("test1", &format!("sent{i}"), pid);
        c.execute(
            "INSERT INTO t_client_msg(packet_id, pipe_id, data, info_id, proto_ver)
             VALUES (?1, 7, ?2, ?3, 4)",
            params![pid, serialize(&h, &b), me],
        )
        .unwrap();
    }
    for i in 1..=3 {
        let (h, b) = publish("test2", &format!("off{i}"), 0);
        c.execute(
            "INSERT INTO t_client_offline_msg(data, info_id, proto_ver) VALUES (?1, ?2, 4)",
            params![serialize(&h, &b), me],
        )
        .unwrap();
        if i == 2 {
            c.execute(
                "INSERT INTO t_client_offline_msg(data, info_id, proto_ver) VALUES (x'0102', ?1, 4)",
                params![me],
            )
            .unwrap();
        }
    }
    let (h, b) = publish("test3", "not-mine", 0);
    c.execute(
        "INSERT INTO t_client_offline_msg(data, info_id, proto_ver) VALUES (?1, ?2, 4)",
        params![serialize(&h, &b), other],
    )
    .unwrap();
    drop(c);

    let ob = Outbox::open(Config::new(dir.path(), "emqx1")).unwrap();
    assert_eq!(ob.import_stock(&stock, "emqx1").unwrap(), 5);
    let s = ob.stats().unwrap();
    assert_eq!((s.messages, s.dropped_malformed), (5, 1));
    // Again: nothing left for this bridge; the other bridge's row is still there.
    assert_eq!(ob.import_stock(&stock, "emqx1").unwrap(), 0);
    assert_eq!(
        ob.import_stock(&dir.path().join("none.db"), "emqx1")
            .unwrap(),
        0
    );
    let c = Connection::open(&stock).unwrap();
    let left: i64 = c
        .query_row(
            "SELECT (SELECT count(*) FROM t_client_msg) + (SELECT count(*) FROM t_client_offline_msg)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 1, "only the other bridge's row is left");
    ob.link_up(0).unwrap();
    let mut got = Vec::new();
    let mut pid = 1;
    while let Some(r) = ob.lease().unwrap() {
        let payload = String::from_utf8_lossy(&r.data[2 + 2 + 5 + 2..]).to_string();
        got.push(payload);
        ob.bind(r.seq, pid).unwrap();
        ob.ack(pid, AckKind::PubAck, 0).unwrap();
        pid += 1;
    }
    assert_eq!(got, ["sent1", "sent2", "off1", "off2", "off3"]);
}

#[test]
fn a_file_without_the_stock_tables_or_the_bridge_imports_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("foreign.db");
    Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE x(a)")
        .unwrap();
    let ob = Outbox::open(Config::new(dir.path(), "emqx1")).unwrap();
    assert_eq!(ob.import_stock(&foreign, "emqx1").unwrap(), 0);
    let stock = dir.path().join("mqtt_client.db");
    drop(stock_db(&stock));
    assert_eq!(ob.import_stock(&stock, "nobody").unwrap(), 0);
}
