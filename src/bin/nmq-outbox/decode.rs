//! Decoding a stored MQTT PUBLISH (fixed header + rest, as the nng entry points store it) for
//! display: topic, payload, flags. The file does not record the bridge's MQTT version; MQTT 5
//! has a properties section after the packet id that 3.1.1 lacks. `Proto::Auto` takes MQTT 5
//! when the bytes parse as a valid MQTT 5 properties section, 3.1.1 otherwise.

use std::ops::Range;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Proto {
    /// MQTT 5 when the properties section parses, else 3.1.1
    Auto,
    /// MQTT 3.1.1 (and 3.1): no properties
    #[value(name = "4")]
    V4,
    /// MQTT 5: a properties section after the packet id
    #[value(name = "5")]
    V5,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub qos: u8,
    pub dup: bool,
    pub retain: bool,
    pub topic: String,
    pub packet_id: u16,
    /// MQTT 5 Message Expiry Interval, if present.
    pub expiry_secs: Option<u32>,
    /// 5 or 4 (the version the bytes were read as).
    pub version: u8,
    pub payload: Range<usize>,
}

/// Reads a variable byte integer at the start of `b`: (value, length).
pub fn varint(b: &[u8]) -> Option<(usize, usize)> {
    let mut v = 0usize;
    for (i, byte) in b.iter().take(4).enumerate() {
        v |= ((byte & 0x7f) as usize) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// Length of the MQTT packet at the start of `b` (fixed header + Remaining Length), if `b`
/// holds at least its fixed header. Used to split back-to-back packets.
pub fn packet_len(b: &[u8]) -> Result<Option<usize>, String> {
    if b.len() < 2 {
        return Ok(None);
    }
    match varint(&b[1..]) {
        Some((rem, n)) => Ok(Some(1 + n + rem)),
        None if b.len() >= 5 => Err("bad Remaining Length".into()),
        None => Ok(None),
    }
}

/// Decodes `data` as one complete PUBLISH packet.
pub fn publish(data: &[u8], proto: Proto) -> Result<Publish, String> {
    let Some(&first) = data.first() else {
        return Err("empty".into());
    };
    if first >> 4 != 3 {
        return Err(format!("not a PUBLISH (packet type {})", first >> 4));
    }
    let qos = (first >> 1) & 3;
    if qos == 3 {
        return Err("QoS 3".into());
    }
    let (rem, n) = varint(&data[1..]).ok_or("bad Remaining Length")?;
    let h = 1 + n;
    if data.len() != h + rem {
        return Err(format!(
            "Remaining Length {rem} does not match the {} stored bytes",
            data.len()
        ));
    }
    let body = &data[h..];
    if body.len() < 2 {
        return Err("truncated topic".into());
    }
    let tlen = u16::from_be_bytes([body[0], body[1]]) as usize;
    let mut pos = 2 + tlen;
    if body.len() < pos {
        return Err("truncated topic".into());
    }
    let topic = String::from_utf8_lossy(&body[2..pos]).into_owned();
    let mut packet_id = 0;
    if qos > 0 {
        if body.len() < pos + 2 {
            return Err("truncated packet id".into());
        }
        packet_id = u16::from_be_bytes([body[pos], body[pos + 1]]);
        pos += 2;
    }
    let v5 = match proto {
        Proto::V4 => None,
        Proto::V5 => Some(properties(&body[pos..])?),
        Proto::Auto => properties(&body[pos..]).ok(),
    };
    let (version, expiry_secs, props_len) = match v5 {
        Some((len, expiry)) => (5, expiry, len),
        None => (4, None, 0),
    };
    Ok(Publish {
        qos,
        dup: first & 0x08 != 0,
        retain: first & 0x01 != 0,
        topic,
        packet_id,
        expiry_secs,
        version,
        payload: h + pos + props_len..data.len(),
    })
}

/// Parses an MQTT 5 PUBLISH properties section: (its total length, Message Expiry Interval).
fn properties(b: &[u8]) -> Result<(usize, Option<u32>), String> {
    let bad = |w: &str| format!("MQTT 5 properties: {w}");
    let (plen, n) = varint(b).ok_or_else(|| bad("length"))?;
    let mut p = b.get(n..n + plen).ok_or_else(|| bad("truncated"))?;
    let mut expiry = None;
    let take = |p: &mut &[u8], k: usize| -> Result<Vec<u8>, String> {
        if p.len() < k {
            return Err(bad("truncated"));
        }
        let (h, t) = p.split_at(k);
        *p = t;
        Ok(h.to_vec())
    };
    let string = |p: &mut &[u8]| -> Result<(), String> {
        let l = take(p, 2)?;
        take(p, u16::from_be_bytes([l[0], l[1]]) as usize)?;
        Ok(())
    };
    while !p.is_empty() {
        let (id, k) = varint(p).ok_or_else(|| bad("property id"))?;
        p = &p[k..];
        match id {
            0x01 => {
                take(&mut p, 1)?;
            }
            0x02 => {
                let v = take(&mut p, 4)?;
                expiry = Some(u32::from_be_bytes([v[0], v[1], v[2], v[3]]));
            }
            0x03 | 0x08 | 0x09 => string(&mut p)?,
            0x0B => {
                let (_, k) = varint(p).ok_or_else(|| bad("subscription id"))?;
                p = &p[k..];
            }
            0x23 => {
                take(&mut p, 2)?;
            }
            0x26 => {
                string(&mut p)?;
                string(&mut p)?;
            }
            id => return Err(bad(&format!("property 0x{id:02x}"))),
        }
    }
    Ok((n + plen, expiry))
}

/// MQTT topic filter match (`+` one level, `#` the rest).
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Encodes a PUBLISH (also used by the import tests).
    pub fn encode(qos: u8, topic: &str, pid: u16, props: Option<&[u8]>, payload: &[u8]) -> Vec<u8> {
        let mut body = (topic.len() as u16).to_be_bytes().to_vec();
        body.extend_from_slice(topic.as_bytes());
        if qos > 0 {
            body.extend_from_slice(&pid.to_be_bytes());
        }
        if let Some(p) = props {
            body.push(p.len() as u8);
            body.extend_from_slice(p);
        }
        body.extend_from_slice(payload);
        let mut out = vec![0x30 | (qos << 1)];
        nmq_outbox::mqtt::encode_varint(body.len(), &mut out);
        out.extend(body);
        out
    }

    #[test]
    fn v311_and_v5() {
        let p = encode(1, "a/b", 7, None, b"hello");
        let d = publish(&p, Proto::V4).unwrap();
        assert_eq!((d.qos, d.topic.as_str(), d.packet_id), (1, "a/b", 7));
        assert_eq!(&p[d.payload.clone()], b"hello");
        let p5 = encode(2, "t", 9, Some(&[0x02, 0, 0, 0, 60]), &[0u8; 200]);
        let d = publish(&p5, Proto::Auto).unwrap();
        assert_eq!((d.version, d.expiry_secs), (5, Some(60)));
        assert_eq!(d.payload.len(), 200);
        assert_eq!(packet_len(&p5).unwrap(), Some(p5.len()));
        // A 3.1.1 payload that is not a valid properties section is read as 3.1.1.
        let d = publish(&encode(0, "x", 0, None, b"\x05zz"), Proto::Auto).unwrap();
        assert_eq!((d.version, d.payload.len()), (4, 3));
    }

    #[test]
    fn malformed() {
        assert!(publish(&[], Proto::Auto).is_err());
        assert!(publish(&[0x40, 2, 0, 1], Proto::Auto).is_err());
        let p = encode(1, "a", 1, None, b"x");
        assert!(publish(&p[..p.len() - 1], Proto::Auto).is_err());
        assert!(publish(&[0x32, 3, 0, 9, b'a'], Proto::Auto).is_err());
        assert!(publish(&encode(0, "t", 0, None, &[3, 0x7f, 0, 0]), Proto::V5).is_err());
    }

    #[test]
    fn filters() {
        assert!(topic_matches("a/+/c", "a/b/c"));
        assert!(topic_matches("a/#", "a/b/c"));
        assert!(topic_matches("#", "x"));
        assert!(topic_matches("test1", "test1"));
        assert!(!topic_matches("test1", "test10"));
        assert!(!topic_matches("a/+", "a/b/c"));
    }
}
