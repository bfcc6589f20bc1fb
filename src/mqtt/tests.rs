//! Tests of the PUBLISH parser, the resend shaping and the packet helpers.

use super::*;

fn encode_varint(v: usize) -> Vec<u8> {
    let mut out = Vec::new();
    super::encode_varint(v, &mut out);
    out
}

/// Builds (header, body) of a PUBLISH.
fn publish(qos: u8, v5_props: Option<&[u8]>, payload: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut body = vec![0, 5];
    body.extend_from_slice(b"test1");
    if qos > 0 {
        body.extend_from_slice(&[0x12, 0x34]);
    }
    if let Some(p) = v5_props {
        body.extend(encode_varint(p.len()));
        body.extend_from_slice(p);
    }
    body.extend_from_slice(payload);
    let mut header = vec![0x30 | (qos << 1)];
    header.extend(encode_varint(body.len()));
    (header, body)
}

#[test]
fn v311_qos_and_split() {
    let (h, b) = publish(2, None, &[9u8; 300]);
    let info = parse_publish(&h, &b, 4).unwrap();
    assert_eq!(info.qos, 2);
    assert_eq!(info.packet_id, 0x1234);
    assert_eq!(info.expiry_secs, 0);
    assert_eq!(
        info.header_len, 3,
        "300+ bytes need a 2-byte Remaining Length"
    );
    let joined = [h.clone(), b.clone()].concat();
    assert_eq!(split_packet(&joined).unwrap(), (&h[..], &b[..]));
}

#[test]
fn v5_reads_message_expiry_among_other_properties() {
    let mut props = vec![0x01, 1]; // payload format
    props.extend_from_slice(&[0x26, 0, 1, b'k', 0, 1, b'v']); // user property
    props.extend_from_slice(&[0x02, 0, 0, 0x0e, 0x10]); // expiry 3600
    props.extend_from_slice(&[0x0B, 0x81, 0x01]); // subscription id 129
    let (h, b) = publish(1, Some(&props), b"hi");
    let info = parse_publish(&h, &b, 5).unwrap();
    assert_eq!((info.qos, info.expiry_secs), (1, 3600));
}

#[test]
fn malformed_packets_are_refused() {
    let (h, b) = publish(1, None, b"x");
    assert!(
        parse_publish(&h, &b[..b.len() - 1], 4).is_err(),
        "short body"
    );
    assert!(parse_publish(&[0x36, 0], &[], 4).is_err(), "QoS 3");
    assert!(parse_publish(&[0x40, 2], &[0, 1], 4).is_err(), "PUBACK");
    assert!(parse_publish(&[], &b, 4).is_err(), "empty header");
    assert!(parse_publish(&h, &b, 9).is_err(), "protocol version");
    assert!(parse_publish(&[0x32, 0xff, 0xff, 0xff, 0xff], &b, 4).is_err());
    let (h5, b5) = publish(0, Some(&[0x7f, 0]), b"");
    assert!(parse_publish(&h5, &b5, 5).is_err(), "unknown property");
    let (h5, b5) = publish(0, Some(&[0x02, 0, 0]), b"");
    assert!(parse_publish(&h5, &b5, 5).is_err(), "truncated property");
    assert!(split_packet(&[0x30, 5, 1]).is_err());
    assert!(split_packet(&[]).is_err());
}

#[test]
fn qos0_has_no_packet_id() {
    let (h, b) = publish(0, None, b"");
    assert_eq!(parse_publish(&h, &b, 4).unwrap().qos, 0);
}

fn joined(p: (Vec<u8>, Vec<u8>)) -> Vec<u8> {
    [p.0, p.1].concat()
}

#[test]
fn resend_writes_the_remaining_expiry_in_place() {
    let mut props = vec![0x01, 1];
    props.extend_from_slice(&[0x02, 0, 0, 0x0e, 0x10]); // 3600 s
    props.extend_from_slice(&[0x26, 0, 1, b'k', 0, 1, b'v']);
    let (mut h, b) = publish(2, Some(&props), b"payload");
    h[0] |= 0x08; // stored with DUP: a resend starts clean
    let (h2, b2) = prepare_resend(&joined((h.clone(), b.clone())), 5, 2, 0x0777, 1234).unwrap();
    let info = parse_publish(&h2, &b2, 5).unwrap();
    assert_eq!(
        (info.qos, info.dup, info.packet_id, info.expiry_secs),
        (2, false, 0x0777, 1234)
    );
    assert_eq!(
        (h2.len(), b2.len()),
        (h.len(), b.len()),
        "same length: rewritten in place"
    );
    assert!(b2.ends_with(b"payload"));
    // No expiry: left as it is; packet id 0 (never sent): a placeholder.
    let (_, b3) = prepare_resend(&joined((h.clone(), b.clone())), 5, 2, 0, 0).unwrap();
    assert_eq!(&b3[9..], &b[9..]);
    assert_eq!(parse_publish(&h2, &b3, 5).unwrap().packet_id, 0);
}

#[test]
fn resend_adds_a_missing_expiry_and_reencodes_both_lengths() {
    // (user property value length, bytes of Remaining Length before/after, bytes of
    // Property Length before/after)
    for (vlen, rl, pl) in [
        (109usize, (1, 2), (1, 1)),
        (119, (2, 2), (1, 2)),
        (5, (1, 1), (1, 1)),
    ] {
        let mut props = vec![0x26, 0, 1, b'k', 0, vlen as u8];
        props.extend(std::iter::repeat(b'v').take(vlen));
        let (h, b) = publish(1, Some(&props), b"x");
        assert_eq!(h.len() - 1, rl.0, "value {vlen}");
        let (h2, b2) = prepare_resend(&joined((h, b.clone())), 5, 1, 0, 42).unwrap();
        let info = parse_publish(&h2, &b2, 5).unwrap();
        assert_eq!((info.qos, info.packet_id, info.expiry_secs), (1, 0, 42));
        assert_eq!(h2.len() - 1, rl.1, "Remaining Length bytes, value {vlen}");
        assert_eq!(b2.len(), b.len() + 5 + pl.1 - pl.0, "value {vlen}");
        assert!(b2.ends_with(b"x"));
        let (plen, n) = varint(&b2[9..]).unwrap();
        assert_eq!((plen, n), (props.len() + 5, pl.1), "value {vlen}");
    }
}

#[test]
fn resend_of_v311_and_qos0_and_bad_rows() {
    let (h, b) = publish(1, None, b"abc");
    let (h2, b2) = prepare_resend(&joined((h.clone(), b.clone())), 4, 1, 0x0102, 99).unwrap();
    assert_eq!(h2, h);
    let info = parse_publish(&h2, &b2, 4).unwrap();
    assert_eq!((info.packet_id, info.expiry_secs), (0x0102, 0));
    assert_eq!(&b2[9..], b"abc");
    let (h0, b0) = publish(0, Some(&[]), b"q0");
    let (h3, b3) = prepare_resend(&joined((h0.clone(), b0.clone())), 5, 0, 7, 5).unwrap();
    assert_eq!(parse_publish(&h3, &b3, 5).unwrap().expiry_secs, 5);
    assert!(
        prepare_resend(&joined((h.clone(), b.clone())), 4, 2, 1, 0).is_err(),
        "QoS differs"
    );
    assert!(
        prepare_resend(&[0x32, 9, 0, 5], 4, 1, 1, 0).is_err(),
        "truncated"
    );
    assert!(
        prepare_resend(&[0x62, 2, 0, 1], 4, 2, 1, 0).is_err(),
        "PUBREL"
    );
    assert!(prepare_resend(b"", 4, 1, 1, 0).is_err(), "empty");
}

#[test]
fn packet_id_and_dup_set_in_place() {
    let (mut h, mut b) = publish(2, Some(&[0x02, 0, 0, 0, 5]), b"p");
    set_packet_id(&mut h, &mut b, 0xbeef, true).unwrap();
    let info = parse_publish(&h, &b, 5).unwrap();
    assert_eq!(
        (info.packet_id, info.dup, info.expiry_secs),
        (0xbeef, true, 5)
    );
    set_packet_id(&mut h, &mut b, 3, false).unwrap();
    let info = parse_publish(&h, &b, 5).unwrap();
    assert_eq!((info.packet_id, info.dup), (3, false));
    assert!(set_packet_id(&mut h, &mut b, 0, false).is_err());
    let (mut h0, mut b0) = publish(0, None, b"p");
    assert!(
        set_packet_id(&mut h0, &mut b0, 1, false).is_err(),
        "QoS 0 has no id"
    );
    let (mut hr, mut br) = (vec![0x62, 2], vec![0, 1]);
    assert!(
        set_packet_id(&mut hr, &mut br, 1, false).is_err(),
        "not a PUBLISH"
    );
}

#[test]
fn pubrel_encoding() {
    let (h, b) = pubrel(0x1234);
    assert_eq!((h, b), ([0x62, 2], [0x12, 0x34]));
    assert_eq!(pubrel_packet_id(&h, &b), Some(0x1234));
    assert_eq!(pubrel_packet_id(&[0x62, 3], &b), None);
    assert_eq!(pubrel_packet_id(&[0x32, 2], &b), None);
}

/// A CONNACK packet: flags, reason, then (MQTT 5, `props` Some) the properties.
fn connack(flags: u8, reason: u8, props: Option<&[u8]>) -> Vec<u8> {
    let mut body = vec![flags, reason];
    if let Some(p) = props {
        body.extend(encode_varint(p.len()));
        body.extend_from_slice(p);
    }
    let mut out = vec![0x20];
    out.extend(encode_varint(body.len()));
    out.extend(body);
    out
}

#[test]
fn connack_of_3_1_1_session_present_and_return_code() {
    let c = parse_connack_packet(&connack(1, 0, None), 4).unwrap();
    assert!(c.session_present && c.accepted());
    assert_eq!((c.max_qos(), c.receive_max(), c.retain()), (2, 65535, true));
    assert_eq!(c.maximum_packet_size, None);
    let c = parse_connack_packet(&connack(0, 5, None), 4).unwrap();
    assert!(!c.session_present && !c.accepted(), "5: not authorized");
    // MQTT 3.1 (proto 3) reads the same way.
    assert!(parse_connack_packet(&connack(0, 0, None), 3)
        .unwrap()
        .accepted());
    assert!(!parse_connack_packet(&connack(0, 0x80, None), 4)
        .unwrap()
        .accepted());
}

#[test]
fn connack_of_mqtt5_with_every_property() {
    let mut p = vec![0x11, 0, 0, 0x0e, 0x10]; // session expiry 3600
    p.extend_from_slice(&[0x21, 0, 20]); // receive maximum 20
    p.extend_from_slice(&[0x24, 1]); // maximum QoS 1
    p.extend_from_slice(&[0x25, 0]); // retain not available
    p.extend_from_slice(&[0x27, 0, 0, 0x10, 0]); // maximum packet size 4096
    p.extend_from_slice(&[0x12, 0, 2, b'i', b'd']); // assigned client id
    p.extend_from_slice(&[0x22, 0, 10]); // topic alias maximum 10
    p.extend_from_slice(&[0x1F, 0, 2, b'o', b'k']); // reason string
    p.extend_from_slice(&[0x26, 0, 1, b'k', 0, 1, b'v']); // user property
    p.extend_from_slice(&[0x26, 0, 1, b'k', 0, 1, b'w']); // user property again: allowed
    p.extend_from_slice(&[0x28, 1, 0x29, 0, 0x2A, 1]);
    p.extend_from_slice(&[0x13, 0, 30]); // server keep alive 30
    p.extend_from_slice(&[0x1A, 0, 1, b'r', 0x1C, 0, 1, b's']);
    p.extend_from_slice(&[0x15, 0, 1, b'm', 0x16, 0, 2, 0xff, 0x00]); // auth
    let c = parse_connack_packet(&connack(1, 0, Some(&p)), 5).unwrap();
    assert!(c.accepted() && c.session_present);
    assert_eq!(c.session_expiry_interval, Some(3600));
    assert_eq!((c.receive_max(), c.max_qos(), c.retain()), (20, 1, false));
    assert_eq!(c.maximum_packet_size, Some(4096));
    assert_eq!(c.topic_alias_maximum, Some(10));
    assert_eq!(c.server_keep_alive, Some(30));
    assert_eq!(c.assigned_client_identifier.as_deref(), Some("id"));
    assert_eq!(c.reason_string.as_deref(), Some("ok"));
    assert_eq!(c.server_reference.as_deref(), Some("s"));
    assert_eq!(c.wildcard_subscription_available, Some(true));
    assert_eq!(c.subscription_identifiers_available, Some(false));
    assert_eq!(c.shared_subscription_available, Some(true));
    // No properties at all, with and without the (empty) Property Length.
    let c = parse_connack_packet(&connack(0, 0, Some(&[])), 5).unwrap();
    assert_eq!(
        (c.session_present, c.max_qos(), c.receive_max()),
        (false, 2, 65535)
    );
    assert_eq!(parse_connack_packet(&connack(0, 0, None), 5).unwrap(), c);
    // A refusal (0x87 not authorized) with a reason string; 0x00..0x7f accept.
    let c = parse_connack_packet(&connack(0, 0x87, Some(&[0x1F, 0, 1, b'x'])), 5).unwrap();
    assert!(!c.accepted());
    assert!(parse_connack_packet(&connack(0, 0x7f, Some(&[])), 5)
        .unwrap()
        .accepted());
    // Header and body apart, as nng holds them.
    let pk = connack(1, 0, Some(&[0x24, 0]));
    let c = parse_connack(&pk[..2], &pk[2..], 5).unwrap();
    assert_eq!(c.max_qos(), 0);
}

#[test]
fn malformed_connacks_are_refused_with_a_clear_error() {
    let err = |pk: &[u8], v: u8| match parse_connack_packet(pk, v) {
        Err(Error::Invalid(s)) => s,
        other => panic!("{pk:?}: {other:?}"),
    };
    assert!(err(&[], 5).contains("empty"));
    assert!(err(&[0x30, 2, 0, 0], 5).contains("not a CONNACK"));
    assert!(err(&[0x20, 3, 0, 0], 5).contains("Remaining Length"));
    assert!(err(&[0x20, 2, 0x02, 0], 4).contains("reserved"));
    assert!(err(&[0x20, 1, 0], 4).contains("truncated"));
    assert!(err(&[0x20, 3, 0, 0, 0], 4).contains("2 bytes"));
    assert!(err(&[0x20, 0xff, 0xff, 0xff, 0xff], 5).contains("variable byte integer"));
    assert!(err(&connack(0, 0, None), 9).contains("protocol version"));
    let cases: [(&[u8], &str); 9] = [
        (&[0x7f, 0], "unknown property 0x7f"),
        (&[0x21, 0], "truncated"),
        (&[0x21, 0, 0], "Receive Maximum 0"),
        (&[0x27, 0, 0, 0, 0], "Maximum Packet Size 0"),
        (&[0x24, 3], "Maximum QoS 3"),
        (&[0x25, 2], "Retain Available is 2"),
        (&[0x24, 1, 0x24, 0], "given twice"),
        (&[0x1F, 0, 9, b'x'], "truncated"),
        (&[0x26, 0, 1, b'k'], "truncated"),
    ];
    for (props, want) in cases {
        let e = err(&connack(0, 0, Some(props)), 5);
        assert!(e.contains(want) && e.contains("CONNACK"), "{props:?}: {e}");
    }
    // Property Length longer than what follows; bytes after the properties.
    assert!(err(&[0x20, 4, 0, 0, 5, 0x24], 5).contains("truncated"));
    assert!(err(&[0x20, 5, 0, 0, 2, 0x24, 1, 9][..8], 5).contains("Remaining Length"));
    let mut extra = connack(0, 0, Some(&[0x24, 1]));
    extra[1] += 1;
    extra.push(0);
    assert!(err(&extra, 5).contains("after the properties"));
}

/// Every truncation and byte flip of a valid CONNACK, and random bytes: an answer, never
/// a panic.
#[test]
fn connack_parse_never_panics() {
    let mut p = vec![
        0x21, 0, 20, 0x24, 1, 0x27, 0, 0, 0x10, 0, 0x1F, 0, 2, b'o', b'k',
    ];
    p.extend_from_slice(&[0x26, 0, 1, b'k', 0, 1, b'v', 0x16, 0, 1, 7]);
    let good = connack(1, 0, Some(&p));
    for n in 0..good.len() {
        assert!(parse_connack_packet(&good[..n], 5).is_err(), "cut at {n}");
    }
    for i in 0..good.len() {
        for bit in 0..8 {
            let mut b = good.clone();
            b[i] ^= 1 << bit;
            for v in [4, 5] {
                let _ = parse_connack_packet(&b, v);
                let _ = parse_connack(&b[..2.min(b.len())], &b[2.min(b.len())..], v);
            }
        }
    }
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 24) as usize;
        let bytes: Vec<u8> = (0..len).map(|i| (x >> ((i % 8) * 8)) as u8).collect();
        let _ = parse_connack_packet(&bytes, 5);
        let mut with_type = vec![0x20, len as u8];
        with_type.extend_from_slice(&bytes);
        let _ = parse_connack_packet(&with_type, 5);
    }
}

#[test]
fn reshape_lowers_the_qos_and_clears_retain() {
    // QoS 2 to 1: the header's bits only, DUP kept.
    let (mut h, b) = publish(2, Some(&[0x02, 0, 0, 0, 9]), b"pay");
    h[0] |= 0x08 | 0x01; // DUP, RETAIN
    let mut d = joined((h.clone(), b.clone()));
    assert!(!reshape_publish(&mut d, 1, false).unwrap());
    let (h2, b2) = split_packet(&d).unwrap();
    let info = parse_publish(h2, b2, 5).unwrap();
    assert_eq!(
        (info.qos, info.dup, info.packet_id, info.expiry_secs),
        (1, true, 0x1234, 9)
    );
    assert_eq!(d[0] & 1, 1, "RETAIN kept");
    assert_eq!(b2, &b[..]);
    // RETAIN cleared on request, and said so (once).
    assert!(reshape_publish(&mut d, 1, true).unwrap());
    assert!(!reshape_publish(&mut d, 1, true).unwrap());
    assert_eq!(d[0] & 1, 0);
    // To QoS 0: no packet id, DUP cleared, Remaining Length re-encoded (128 -> 126: two
    // bytes to one).
    let (h, b) = publish(1, None, &[7u8; 119]);
    assert_eq!(h.len(), 3);
    let mut d = joined((h, b));
    reshape_publish(&mut d, 0, false).unwrap();
    let (h0, b0) = split_packet(&d).unwrap();
    assert_eq!(h0.len(), 2);
    let info = parse_publish(h0, b0, 4).unwrap();
    assert_eq!((info.qos, info.packet_id), (0, 0));
    assert!(b0.ends_with(&[7u8; 119]) && b0.starts_with(b"\0\x05test1"));
    // Never raised; not a PUBLISH: an error, unchanged.
    let (h, b) = publish(1, None, b"x");
    let mut d = joined((h, b));
    let before = d.clone();
    reshape_publish(&mut d, 2, false).unwrap();
    assert_eq!(d, before);
    let mut junk = b"junk".to_vec();
    assert!(reshape_publish(&mut junk, 0, true).is_err());
    assert_eq!(junk, b"junk");
}

#[test]
fn resend_size_counts_an_added_expiry() {
    for (vlen, expiry) in [(5usize, 0u32), (5, 60), (109, 60), (119, 60)] {
        let mut props = vec![0x26, 0, 1, b'k', 0, vlen as u8];
        props.extend(std::iter::repeat(b'v').take(vlen));
        let d = joined(publish(1, Some(&props), b"x"));
        let (h, b) = prepare_resend(&d, 5, 1, 1, expiry).unwrap();
        assert_eq!(
            resend_size(&d, 5, expiry).unwrap(),
            h.len() + b.len(),
            "{vlen}"
        );
    }
    // One that has an expiry keeps its size; 3.1.1 has none to add.
    let d = joined(publish(1, Some(&[0x02, 0, 0, 0, 9]), b"x"));
    assert_eq!(resend_size(&d, 5, 60).unwrap(), d.len());
    let d = joined(publish(1, None, b"x"));
    assert_eq!(resend_size(&d, 4, 60).unwrap(), d.len());
    assert!(resend_size(b"junk", 5, 0).is_err());
}
