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

/// Parses an encoded PUBLISH given as its fixed header and the rest (nng's header and body).
/// `proto_ver` 5 reads the properties; 3 and 4 have none.
pub fn parse_publish(header: &[u8], body: &[u8], proto_ver: u8) -> Result<PublishInfo> {
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
    let mut r = Reader { b: body };
    r.string()?; // topic
    let packet_id = if qos > 0 { r.u16()? } else { 0 };
    let mut expiry_secs = 0;
    if proto_ver == 5 {
        let plen = r.varint()?;
        let mut p = Reader { b: r.take(plen)? };
        while !p.b.is_empty() {
            match p.varint()? {
                0x01 => {
                    p.take(1)?;
                }
                0x02 => expiry_secs = p.u32()?,
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
    Ok(PublishInfo {
        qos,
        dup: first & 0x08 != 0,
        packet_id,
        expiry_secs,
        header_len: header.len(),
    })
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

    fn encode_varint(mut v: usize) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let mut b = (v & 0x7f) as u8;
            v >>= 7;
            if v > 0 {
                b |= 0x80;
            }
            out.push(b);
            if v == 0 {
                return out;
            }
        }
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
}
