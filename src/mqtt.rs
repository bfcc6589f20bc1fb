//! Just enough MQTT to store an encoded PUBLISH: its QoS, its MQTT 5 Message Expiry Interval,
//! and the split between the fixed header and the rest. Pure Rust, no nng.

use crate::error::{Error, Result};

/// What the outbox needs to know of an encoded PUBLISH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishInfo {
    pub qos: u8,
    pub dup: bool,
    /// The packet id in the variable header (0 for QoS 0).
    pub packet_id: u16,
    /// Message Expiry Interval in seconds (MQTT 5 property 0x02), 0 = none.
    pub expiry_secs: u32,
    /// Length of the fixed header (type byte and Remaining Length).
    pub header_len: usize,
}

fn malformed(why: &str) -> Error {
    Error::Invalid(format!("malformed PUBLISH: {why}"))
}

/// Reads a variable byte integer; returns (value, bytes used).
fn varint(b: &[u8]) -> Result<(usize, usize)> {
    let mut v = 0usize;
    for (i, byte) in b.iter().take(4).enumerate() {
        v |= ((byte & 0x7f) as usize) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((v, i + 1));
        }
    }
    Err(malformed("bad variable byte integer"))
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.b.len() < n {
            return Err(malformed("truncated"));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u16(&mut self) -> Result<u16> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32> {
        let s = self.take(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn varint(&mut self) -> Result<usize> {
        let (v, n) = varint(self.b)?;
        self.b = &self.b[n..];
        Ok(v)
    }
    fn string(&mut self) -> Result<&'a [u8]> {
        let n = self.u16()? as usize;
        self.take(n)
    }
}

/// Where the editable fields of a PUBLISH are, as offsets into its body (the bytes after the
/// fixed header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fields {
    /// The packet id (QoS 1/2 only).
    packet_id_at: Option<usize>,
    /// MQTT 5: where the Property Length starts, where the properties start and end.
    props: Option<(usize, usize, usize)>,
    /// MQTT 5: the 4-byte value of the Message Expiry Interval, if present.
    expiry_at: Option<usize>,
}

/// Parses an encoded PUBLISH given as its fixed header and the rest (nng's header and body).
/// `proto_ver` 5 reads the properties; 3 and 4 have none.
pub fn parse_publish(header: &[u8], body: &[u8], proto_ver: u8) -> Result<PublishInfo> {
    locate(header, body, proto_ver).map(|(info, _)| info)
}

fn locate(header: &[u8], body: &[u8], proto_ver: u8) -> Result<(PublishInfo, Fields)> {
    if !matches!(proto_ver, 3..=5) {
        return Err(Error::Invalid(format!(
            "MQTT protocol version {proto_ver} is not 3, 4 or 5"
        )));
    }
    let Some(&first) = header.first() else {
        return Err(malformed("empty fixed header"));
    };
    if first >> 4 != 3 {
        return Err(malformed("not a PUBLISH packet"));
    }
    let qos = (first >> 1) & 3;
    if qos == 3 {
        return Err(malformed("QoS 3"));
    }
    let (remaining, n) = varint(&header[1..])?;
    if 1 + n != header.len() {
        return Err(malformed("fixed header length"));
    }
    if remaining != body.len() {
        return Err(malformed("Remaining Length does not match the body"));
    }
    let at = |r: &Reader<'_>| body.len() - r.b.len();
    let mut r = Reader { b: body };
    r.string()?; // topic
    let mut fields = Fields {
        packet_id_at: None,
        props: None,
        expiry_at: None,
    };
    let packet_id = if qos > 0 {
        fields.packet_id_at = Some(at(&r));
        r.u16()?
    } else {
        0
    };
    let mut expiry_secs = 0;
    if proto_ver == 5 {
        let len_at = at(&r);
        let plen = r.varint()?;
        let start = at(&r);
        let mut p = Reader { b: r.take(plen)? };
        fields.props = Some((len_at, start, start + plen));
        while !p.b.is_empty() {
            match p.varint()? {
                0x01 => {
                    p.take(1)?;
                }
                0x02 => {
                    fields.expiry_at = Some(start + plen - p.b.len());
                    expiry_secs = p.u32()?;
                }
                0x03 | 0x08 | 0x09 => {
                    p.string()?;
                }
                0x0B => {
                    p.varint()?;
                }
                0x23 => {
                    p.u16()?;
                }
                0x26 => {
                    p.string()?;
                    p.string()?;
                }
                id => return Err(malformed(&format!("property 0x{id:02x}"))),
            }
        }
    }
    let info = PublishInfo {
        qos,
        dup: first & 0x08 != 0,
        packet_id,
        expiry_secs,
        header_len: header.len(),
    };
    Ok((info, fields))
}

/// The largest Remaining Length MQTT can encode (four bytes of variable byte integer).
const MAX_REMAINING: usize = 268_435_455;

/// Appends `v` as an MQTT variable byte integer (Remaining Length, Property Length).
pub fn encode_varint(mut v: usize, out: &mut Vec<u8>) {
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

/// A stored PUBLISH made ready for a resend, as (fixed header, rest): checked to be a PUBLISH
/// of `qos`; its packet id (QoS 1/2) set to `packet_id`, the id it was last sent with, or 0
/// for a row never sent (a placeholder until [`set_packet_id`]), with DUP cleared; for MQTT 5 with `expiry_secs` > 0, its Message Expiry Interval set to
/// `expiry_secs` (the remaining interval, MQTT 5 3.3.2.3.3), the property added when the
/// packet has none (Property Length and Remaining Length re-encoded).
pub fn prepare_resend(
    data: &[u8],
    proto_ver: u8,
    qos: u8,
    packet_id: u16,
    expiry_secs: u32,
) -> Result<(Vec<u8>, Vec<u8>)> {
    let (h, b) = split_packet(data)?;
    let (info, f) = locate(h, b, proto_ver)?;
    if info.qos != qos {
        return Err(malformed(&format!(
            "stored as QoS {qos}, the packet says QoS {}",
            info.qos
        )));
    }
    let mut body = match (proto_ver, expiry_secs, f.props, f.expiry_at) {
        (5, e, _, Some(at)) if e > 0 => {
            let mut body = b.to_vec();
            body[at..at + 4].copy_from_slice(&e.to_be_bytes());
            body
        }
        (5, e, Some((len_at, start, end)), None) if e > 0 => {
            let mut body = Vec::with_capacity(b.len() + 8);
            body.extend_from_slice(&b[..len_at]);
            encode_varint(end - start + 5, &mut body);
            body.push(0x02);
            body.extend_from_slice(&e.to_be_bytes());
            body.extend_from_slice(&b[start..]);
            body
        }
        _ => b.to_vec(),
    };
    if body.len() > MAX_REMAINING {
        return Err(malformed("too long for a Remaining Length"));
    }
    if let Some(at) = f.packet_id_at {
        body[at..at + 2].copy_from_slice(&packet_id.to_be_bytes());
    }
    let mut header = vec![h[0] & !0x08];
    encode_varint(body.len(), &mut header);
    Ok((header, body))
}

/// Sets the packet id and the DUP flag of an encoded QoS 1/2 PUBLISH in place.
pub fn set_packet_id(header: &mut [u8], body: &mut [u8], packet_id: u16, dup: bool) -> Result<()> {
    if packet_id == 0 {
        return Err(Error::Invalid("packet id 0".into()));
    }
    // The topic is read the same way whatever the version: the packet id follows it.
    let (info, f) = locate(header, body, 4)?;
    let Some(at) = f.packet_id_at else {
        return Err(Error::Invalid(format!(
            "a QoS {} PUBLISH has no packet id",
            info.qos
        )));
    };
    body[at..at + 2].copy_from_slice(&packet_id.to_be_bytes());
    if dup {
        header[0] |= 0x08;
    } else {
        header[0] &= !0x08;
    }
    Ok(())
}

/// PUBREL (fixed header, rest) for `packet_id`: what resumes a QoS 2 exchange whose PUBREC
/// came (MQTT 5 4.4; reason code 0 omitted, valid in 3.1.1 and 5).
pub fn pubrel(packet_id: u16) -> ([u8; 2], [u8; 2]) {
    ([0x62, 2], packet_id.to_be_bytes())
}

/// The packet id of an encoded PUBREL (fixed header, rest), or None if it is none.
pub fn pubrel_packet_id(header: &[u8], body: &[u8]) -> Option<u16> {
    match (header, body) {
        ([0x62, n], [a, b, ..]) if *n as usize == body.len() => Some(u16::from_be_bytes([*a, *b])),
        _ => None,
    }
}

/// Splits stored bytes (fixed header followed by the rest) back into header and body.
pub fn split_packet(data: &[u8]) -> Result<(&[u8], &[u8])> {
    if data.is_empty() {
        return Err(malformed("empty"));
    }
    let (remaining, n) = varint(&data[1..])?;
    let h = 1 + n;
    if data.len() != h + remaining {
        return Err(malformed(
            "Remaining Length does not match the stored bytes",
        ));
    }
    Ok(data.split_at(h))
}

#[cfg(test)]
mod tests {
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
}
