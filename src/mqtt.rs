//! Just enough MQTT to store an encoded PUBLISH: its QoS, its MQTT 5 Message Expiry Interval,
//! and the split between the fixed header and the rest. Pure Rust, no nng.

use crate::error::{Error, Result};

mod connack;
pub use connack::*;

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
    malformed_packet("PUBLISH", why)
}

fn malformed_packet(what: &str, why: &str) -> Error {
    Error::Invalid(format!("malformed {what}: {why}"))
}

/// Reads a variable byte integer; returns (value, bytes used).
fn varint(b: &[u8]) -> Result<(usize, usize)> {
    varint_of(b, "PUBLISH")
}

fn varint_of(b: &[u8], what: &str) -> Result<(usize, usize)> {
    let mut v = 0usize;
    for (i, byte) in b.iter().take(4).enumerate() {
        v |= ((byte & 0x7f) as usize) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((v, i + 1));
        }
    }
    Err(malformed_packet(what, "bad variable byte integer"))
}

struct Reader<'a> {
    b: &'a [u8],
    /// The packet read, for error messages.
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(b: &'a [u8]) -> Self {
        Reader { b, what: "PUBLISH" }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.b.len() < n {
            return Err(malformed_packet(self.what, "truncated"));
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
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn varint(&mut self) -> Result<usize> {
        let (v, n) = varint_of(self.b, self.what)?;
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
    let mut r = Reader::new(body);
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
        let mut p = Reader::new(r.take(plen)?);
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

/// An acknowledgement as received (fixed header, rest): its type, packet id and reason code
/// (MQTT 5 only, 0 when absent or before MQTT 5). A PUBACK, PUBREC or PUBCOMP, else an error.
pub fn parse_ack(
    header: &[u8],
    body: &[u8],
    proto_ver: u8,
) -> Result<(crate::outbox::AckKind, u16, u8)> {
    use crate::outbox::AckKind;
    let kind = match header.first().copied() {
        Some(0x40) => AckKind::PubAck,
        Some(0x50) => AckKind::PubRec,
        Some(0x70) => AckKind::PubComp,
        Some(b) => {
            return Err(Error::Invalid(format!(
                "not a PUBACK, PUBREC or PUBCOMP (first byte 0x{b:02x})"
            )))
        }
        None => return Err(Error::Invalid("an ack without its fixed header".into())),
    };
    let [a, b, rest @ ..] = body else {
        return Err(Error::Invalid(format!("{kind:?} without its packet id")));
    };
    let reason = match rest {
        [r, ..] if proto_ver == 5 => *r,
        _ => 0,
    };
    Ok((kind, u16::from_be_bytes([*a, *b]), reason))
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

/// Bytes of `v` as a variable byte integer.
fn varint_len(v: usize) -> usize {
    match v {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Rewrites a stored PUBLISH (fixed header followed by the rest) in place for what the remote
/// allows: its QoS lowered to `qos` (the header's QoS bits; to QoS 0 the packet id is also
/// taken out and the Remaining Length re-encoded), and its RETAIN flag cleared when
/// `clear_retain`. Returns whether RETAIN was set and cleared. A QoS above the packet's is
/// left as it is. Errors (the bytes unchanged) when `data` is not a PUBLISH.
pub fn reshape_publish(data: &mut Vec<u8>, qos: u8, clear_retain: bool) -> Result<bool> {
    let (h, b) = split_packet(data)?;
    // The topic and the packet id are read the same way whatever the version.
    let (info, f) = locate(h, b, 4)?;
    let header_len = h.len();
    let cleared = clear_retain && data[0] & 1 != 0;
    if cleared {
        data[0] &= !1;
    }
    if qos >= info.qos {
        return Ok(cleared);
    }
    data[0] = (data[0] & !0x06) | (qos << 1);
    if qos == 0 {
        data[0] &= !0x08; // DUP only with QoS > 0
        if let Some(at) = f.packet_id_at {
            let at = header_len + at;
            data.drain(at..at + 2);
            let body_len = data.len() - header_len;
            let mut header = vec![data[0]];
            encode_varint(body_len, &mut header);
            data.splice(..header_len, header);
        }
    }
    Ok(cleared)
}

/// The size in bytes of the PUBLISH the replay sends for a stored one: with `proto_ver` 5 and
/// `expiry_secs` > 0 a Message Expiry Interval is added when the packet has none (see
/// [`prepare_resend`]); otherwise its stored size.
pub fn resend_size(data: &[u8], proto_ver: u8, expiry_secs: u32) -> Result<usize> {
    let (h, b) = split_packet(data)?;
    let (_, f) = locate(h, b, proto_ver)?;
    match (proto_ver, expiry_secs, f.props, f.expiry_at) {
        (5, e, Some((_, start, end)), None) if e > 0 => {
            let plen = end - start;
            let body = b.len() + 5 + varint_len(plen + 5) - varint_len(plen);
            Ok(1 + varint_len(body) + body)
        }
        _ => Ok(data.len()),
    }
}

#[cfg(test)]
mod ack_tests;

#[cfg(test)]
mod tests;
