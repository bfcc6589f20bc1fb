//! Issue 20, library side: what a remote's CONNACK and refusals do to the replay (plain Rust,
//! no network; the scripted remote of `tests/remote.rs` drives the same over TCP).

use nmq_outbox::mqtt::{parse_connack_packet, Connack};
use nmq_outbox::{Config, Error, NewMessage, Outbox};
use std::path::Path;

fn cfg(path: &Path) -> Config {
    let mut c = Config::new(path, "b");
    c.group_commit_ms = 5;
    c
}

fn varint(mut v: usize, out: &mut Vec<u8>) {
    loop {
        let mut b = (v & 0x7f) as u8;
        v >>= 7;
        if v > 0 {
            b |= 0x80;
        }
        out.push(b);
        if v == 0 {
            return;
        }
    }
}

/// An MQTT 5 PUBLISH on `topic` (empty properties), packet id 1 for QoS > 0.
fn publish(topic: &str, qos: u8, retain: bool, payload: &[u8]) -> Vec<u8> {
    let mut body = (topic.len() as u16).to_be_bytes().to_vec();
    body.extend_from_slice(topic.as_bytes());
    if qos > 0 {
        body.extend_from_slice(&[0, 1]);
    }
    body.push(0); // property length
    body.extend_from_slice(payload);
    let mut out = vec![0x30 | (qos << 1) | retain as u8];
    varint(body.len(), &mut out);
    out.extend(body);
    out
}

/// An MQTT 5 CONNACK with these properties.
fn connack(session_present: bool, reason: u8, props: &[u8]) -> Connack {
    let mut body = vec![session_present as u8, reason];
    varint(props.len(), &mut body);
    body.extend_from_slice(props);
    let mut pk = vec![0x20];
    varint(body.len(), &mut pk);
    pk.extend(body);
    parse_connack_packet(&pk, 5).unwrap()
}

fn append(ob: &Outbox, qos: u8, data: &[u8]) -> i64 {
    ob.append(&NewMessage {
        qos,
        expiry_secs: 0,
        data,
    })
    .unwrap()
}

/// A refused connection is not a link up.
#[test]
fn a_refused_connack_leaves_the_link_down() {
    let dir = tempfile::tempdir().unwrap();
    let ob = Outbox::open(cfg(&dir.path().join("o.db"))).unwrap();
    append(&ob, 1, &publish("t", 1, false, b"x"));
    let r = ob.link_up_connack(&connack(false, 0x87, &[0x1F, 0, 2, b'n', b'o']));
    assert!(matches!(&r, Err(Error::Refused(s)) if s.contains("0x87") && s.contains("no")));
    assert!(!ob.stats().unwrap().link_up);
    assert!(ob.lease().unwrap().is_none());
    let mut pk = vec![0x20, 2, 0, 5];
    let c311 = parse_connack_packet(&pk, 4).unwrap();
    assert!(matches!(ob.link_up_connack(&c311), Err(Error::Refused(_))));
    pk[3] = 0;
    ob.link_up_connack(&parse_connack_packet(&pk, 4).unwrap())
        .unwrap();
    assert!(ob.lease().unwrap().is_some());
    // Receive Maximum caps the window.
    ob.link_up_connack(&connack(true, 0, &[0x21, 0, 3]))
        .unwrap();
    assert_eq!(ob.stats().unwrap().window, 3);
}
