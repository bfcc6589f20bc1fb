//! Issue 20, library side: what a remote's CONNACK and refusals do to the replay (plain Rust,
//! no network; the scripted remote of `tests/remote.rs` drives the same over TCP).

use nmq_outbox::mqtt::{parse_connack_packet, parse_publish, split_packet, Connack};
use nmq_outbox::{AckKind, AckOutcome, Config, Error, NewMessage, Outbox};
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

fn qos_of(data: &[u8]) -> u8 {
    let (h, b) = split_packet(data).unwrap();
    parse_publish(h, b, 5).unwrap().qos
}

/// Issue 20: a remote with Maximum QoS 1 (AWS IoT Core, Azure Event Grid). The transport sent
/// a replayed QoS 2 row at QoS 1, the remote answered PUBACK, the outbox ignored it ("PubAck
/// for packet id N of a QoS 2 row") and the row stayed in flight for good: the window jammed.
/// Now the lease hands the row out at QoS 1 (item and bytes) and the PUBACK completes it.
#[test]
fn maximum_qos_1_sends_qos2_rows_at_qos1_and_their_puback_completes_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(&dir.path().join("o.db"));
    c.window = 2;
    let ob = Outbox::open(c).unwrap();
    for i in 0..5u8 {
        append(&ob, 2, &publish("t/q2", 2, false, &[i]));
    }
    ob.link_up_connack(&connack(true, 0, &[0x24, 1])).unwrap();
    let mut pid = 1;
    let mut delivered = Vec::new();
    while let Some(row) = ob.lease().unwrap() {
        assert_eq!(row.qos, 1, "handed out at Maximum QoS");
        assert_eq!(qos_of(&row.data), 1, "and so say its bytes");
        ob.bind(row.seq, pid).unwrap();
        assert_eq!(ob.ack(pid, AckKind::PubAck, 0).unwrap(), AckOutcome::Done);
        delivered.push(*row.data.last().unwrap());
        pid += 1;
    }
    assert_eq!(delivered, vec![0, 1, 2, 3, 4], "no jam, nothing lost");
    let s = ob.stats().unwrap();
    assert_eq!((s.messages, s.inflight, s.acked), (0, 0, 5));
    assert_eq!(s.qos_downgraded, 5);
}

/// The stored row keeps its QoS: a later CONNACK that allows QoS 2 sends it at QoS 2 again.
#[test]
fn the_stored_row_keeps_its_qos() {
    let dir = tempfile::tempdir().unwrap();
    let ob = Outbox::open(cfg(&dir.path().join("o.db"))).unwrap();
    append(&ob, 2, &publish("t", 2, false, b"x"));
    append(&ob, 1, &publish("t", 1, false, b"y"));
    ob.link_up_connack(&connack(true, 0, &[0x24, 0])).unwrap();
    let a = ob.lease().unwrap().unwrap();
    assert_eq!((a.qos, qos_of(&a.data)), (0, 0));
    let (h, b) = split_packet(&a.data).unwrap();
    assert_eq!(parse_publish(h, b, 5).unwrap().packet_id, 0);
    assert!(
        matches!(ob.bind(a.seq, 3), Err(Error::Invalid(_))),
        "QoS 0: no id"
    );
    ob.link_down().unwrap();
    ob.link_up_connack(&connack(true, 0, &[])).unwrap();
    let a = ob.lease().unwrap().unwrap();
    assert_eq!((a.qos, qos_of(&a.data)), (2, 2));
    let b = ob.lease().unwrap().unwrap();
    assert_eq!((b.qos, qos_of(&b.data)), (1, 1));
    // A row sent at QoS 0 completes when written.
    ob.link_down().unwrap();
    ob.link_up_connack(&connack(true, 0, &[0x24, 0])).unwrap();
    let a = ob.lease().unwrap().unwrap();
    ob.sent(a.seq).unwrap();
    let s = ob.stats().unwrap();
    assert_eq!((s.messages, s.acked), (1, 1));
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

/// Issue 20: a QoS 2 row whose PUBREC came ("released") was resumed with PUBREL after a
/// reconnect also when the CONNACK said the remote has no session (MQTT 5 without Session
/// Expiry Interval: every reconnect is a new session); the remote answered PUBCOMP
/// (mosquitto: success), the row was deleted, and the remote never had the message. With
/// Session Present 0 every row in flight and every released row is sent again as a new
/// PUBLISH (a possible duplicate, never a loss), also after a restart (on disk).
#[test]
fn session_present_0_sends_released_and_inflight_rows_again_as_new_publishes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.db");
    let mut c = cfg(&path);
    c.group_commit_ms = 3_600_000; // nothing commits by itself: the binds stay pending
    let ob = Outbox::open(c.clone()).unwrap();
    let q2 = append(&ob, 2, &publish("t", 2, false, b"released"));
    let q1 = append(&ob, 1, &publish("t", 1, false, b"inflight"));
    let q0 = append(&ob, 1, &publish("t", 1, false, b"queued"));
    ob.flush().unwrap();
    ob.link_up_connack(&connack(false, 0, &[])).unwrap();
    let a = ob.lease().unwrap().unwrap();
    ob.bind(a.seq, 7).unwrap();
    assert_eq!(ob.ack(7, AckKind::PubRec, 0).unwrap(), AckOutcome::Progress);
    ob.flush().unwrap(); // the PUBREC and packet id 7 on disk
    let b = ob.lease().unwrap().unwrap();
    ob.bind(b.seq, 8).unwrap(); // pending: not yet on disk
    ob.link_down().unwrap();

    // Session present: the exchanges resume (PUBREL on 7, DUP on 8).
    ob.link_up_connack(&connack(true, 0, &[])).unwrap();
    let r = ob.lease().unwrap().unwrap();
    assert_eq!((r.seq, r.released, r.packet_id, r.dup), (q2, true, 7, true));
    let r = ob.lease().unwrap().unwrap();
    assert_eq!(
        (r.seq, r.released, r.packet_id, r.dup),
        (q1, false, 8, true)
    );
    ob.link_down().unwrap();

    // No session: everything as new PUBLISHes, in order.
    ob.link_up_connack(&connack(false, 0, &[])).unwrap();
    let got: Vec<_> = std::iter::from_fn(|| ob.lease().unwrap())
        .map(|r| (r.seq, r.qos, r.released, r.packet_id, r.dup))
        .collect();
    assert_eq!(
        got,
        vec![
            (q2, 2, false, 0, false),
            (q1, 1, false, 0, false),
            (q0, 1, false, 0, false)
        ]
    );
    // ...and so it stays after a restart, the reset being on disk.
    ob.close().unwrap();
    drop(ob);
    let ob = Outbox::open(c).unwrap();
    ob.link_up(0).unwrap();
    let r = ob.lease().unwrap().unwrap();
    assert_eq!((r.seq, r.released, r.packet_id), (q2, false, 0));
    let r = ob.lease().unwrap().unwrap();
    assert_eq!((r.seq, r.packet_id), (q1, 0));
    // A PUBLISH, PUBREC, PUBCOMP completes it now.
    ob.bind(q2, 1).unwrap();
    assert_eq!(ob.ack(1, AckKind::PubRec, 0).unwrap(), AckOutcome::Progress);
    assert_eq!(ob.ack(1, AckKind::PubComp, 0).unwrap(), AckOutcome::Done);
}

/// Retain Available 0: a PUBLISH with RETAIN set is a protocol error for such a server (it
/// disconnects with 0x9A, and the row would come back forever). The row is sent with RETAIN
/// cleared (current subscribers get it; the remote retains nothing) and counted; the stored
/// row keeps its flag.
#[test]
fn retain_unavailable_sends_retained_rows_with_retain_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let ob = Outbox::open(cfg(&dir.path().join("o.db"))).unwrap();
    append(&ob, 1, &publish("t", 1, true, b"r"));
    append(&ob, 1, &publish("t", 1, false, b"n"));
    ob.link_up_connack(&connack(true, 0, &[0x25, 0])).unwrap();
    let a = ob.lease().unwrap().unwrap();
    let b = ob.lease().unwrap().unwrap();
    assert_eq!((a.data[0] & 1, b.data[0] & 1), (0, 0));
    assert_eq!(ob.stats().unwrap().retain_cleared, 1);
    ob.link_down().unwrap();
    ob.link_up_connack(&connack(true, 0, &[])).unwrap();
    let a = ob.lease().unwrap().unwrap();
    assert_eq!(a.data[0] & 1, 1, "the stored row kept RETAIN");
    assert_eq!(ob.stats().unwrap().retain_cleared, 1);
}
