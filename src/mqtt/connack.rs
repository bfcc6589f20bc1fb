//! A CONNACK: what the remote said when it took (or refused) the connection, MQTT 3.1.1 and 5
//! (reason code, Session Present, the MQTT 5 properties the outbox decides on).

use super::*;

/// What a CONNACK says (MQTT 3.1.1 section 3.2; MQTT 5 section 3.2, its properties in
/// 3.2.2.3). `None` is a property the remote did not send: its default applies (see the
/// accessors).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connack {
    /// 3 (MQTT 3.1), 4 (3.1.1) or 5: the version the connection speaks.
    pub proto_ver: u8,
    /// The remote kept a session for this client id (3.2.2.1.1).
    pub session_present: bool,
    /// MQTT 5 Reason Code, or the 3.1.1 Connect Return Code (0 = accepted).
    pub reason_code: u8,
    pub session_expiry_interval: Option<u32>,
    /// 1..=65535; absent = 65535.
    pub receive_maximum: Option<u16>,
    /// 0 or 1; absent = 2 (a value of 2 is taken as 2, though MQTT 5 allows only 0 and 1).
    pub maximum_qos: Option<u8>,
    /// absent = available.
    pub retain_available: Option<bool>,
    /// Largest packet the remote accepts, in bytes (>= 1); absent = no limit but MQTT's.
    pub maximum_packet_size: Option<u32>,
    /// Topic aliases the remote accepts (we send none); absent = 0.
    pub topic_alias_maximum: Option<u16>,
    /// The keep alive the remote wants instead of the client's (the host's business).
    pub server_keep_alive: Option<u16>,
    pub wildcard_subscription_available: Option<bool>,
    pub subscription_identifiers_available: Option<bool>,
    pub shared_subscription_available: Option<bool>,
    /// For the log (lossy UTF-8).
    pub assigned_client_identifier: Option<String>,
    pub reason_string: Option<String>,
    pub server_reference: Option<String>,
}

impl Connack {
    /// Whether the connection was accepted: 3.1.1 return code 0, MQTT 5 reason code < 0x80.
    pub fn accepted(&self) -> bool {
        if self.proto_ver == 5 {
            self.reason_code < 0x80
        } else {
            self.reason_code == 0
        }
    }

    /// Receive Maximum with its default (65535).
    pub fn receive_max(&self) -> u16 {
        self.receive_maximum.unwrap_or(u16::MAX)
    }

    /// Maximum QoS with its default (2).
    pub fn max_qos(&self) -> u8 {
        self.maximum_qos.unwrap_or(2).min(2)
    }

    /// Retain Available with its default (true).
    pub fn retain(&self) -> bool {
        self.retain_available.unwrap_or(true)
    }
}

/// Parses an encoded CONNACK given as its fixed header and the rest (nng's header and body).
/// `proto_ver` is the version of the CONNECT it answers (3, 4 or 5). A malformed or
/// truncated packet, an unknown property (its length cannot be known), a property given twice
/// or a value MQTT forbids (Receive Maximum 0, Maximum Packet Size 0, Maximum QoS or a flag
/// above its range) is an [`Error::Invalid`] that says which; never a panic.
pub fn parse_connack(header: &[u8], body: &[u8], proto_ver: u8) -> Result<Connack> {
    let bad = |why: &str| malformed_packet("CONNACK", why);
    if !matches!(proto_ver, 3..=5) {
        return Err(Error::Invalid(format!(
            "MQTT protocol version {proto_ver} is not 3, 4 or 5"
        )));
    }
    let Some(&first) = header.first() else {
        return Err(bad("empty fixed header"));
    };
    if first != 0x20 {
        return Err(bad(&format!(
            "first byte 0x{first:02x} is not a CONNACK's (0x20)"
        )));
    }
    let (remaining, n) = varint_of(&header[1..], "CONNACK")?;
    if 1 + n != header.len() {
        return Err(bad("fixed header length"));
    }
    if remaining != body.len() {
        return Err(bad("Remaining Length does not match the body"));
    }
    let mut r = Reader {
        b: body,
        what: "CONNACK",
    };
    let flags = r.u8()?;
    if flags & 0xfe != 0 {
        return Err(bad(&format!(
            "reserved acknowledge flags set (0x{flags:02x})"
        )));
    }
    let mut c = Connack {
        proto_ver,
        session_present: flags & 1 != 0,
        reason_code: r.u8()?,
        ..Connack::default()
    };
    if proto_ver < 5 {
        if !r.b.is_empty() {
            return Err(bad("a 3.1.1 CONNACK has 2 bytes after its fixed header"));
        }
        return Ok(c);
    }
    // MQTT 5: the properties (a remote that leaves out an empty Property Length is taken
    // as sending none).
    if r.b.is_empty() {
        return Ok(c);
    }
    let plen = r.varint()?;
    let mut p = Reader {
        b: r.take(plen)?,
        what: "CONNACK",
    };
    if !r.b.is_empty() {
        return Err(bad("bytes after the properties"));
    }
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let flag = |v: u8, name: &str| match v {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(bad(&format!("{name} is {v}, not 0 or 1"))),
    };
    let mut seen = 0u64;
    while !p.b.is_empty() {
        let id = p.varint()?;
        if id != 0x26 && id < 64 {
            if seen & (1 << id) != 0 {
                return Err(bad(&format!("property 0x{id:02x} given twice")));
            }
            seen |= 1 << id;
        }
        match id {
            0x11 => c.session_expiry_interval = Some(p.u32()?),
            0x12 => c.assigned_client_identifier = Some(text(p.string()?)),
            0x13 => c.server_keep_alive = Some(p.u16()?),
            0x15 | 0x1A => {
                p.string()?; // Authentication Method, Response Information
            }
            0x16 => {
                p.string()?; // Authentication Data (binary, same encoding)
            }
            0x1C => c.server_reference = Some(text(p.string()?)),
            0x1F => c.reason_string = Some(text(p.string()?)),
            0x21 => match p.u16()? {
                0 => return Err(bad("Receive Maximum 0")),
                v => c.receive_maximum = Some(v),
            },
            0x22 => c.topic_alias_maximum = Some(p.u16()?),
            0x24 => match p.u8()? {
                v @ 0..=2 => c.maximum_qos = Some(v),
                v => return Err(bad(&format!("Maximum QoS {v}"))),
            },
            0x25 => c.retain_available = Some(flag(p.u8()?, "Retain Available")?),
            0x26 => {
                p.string()?;
                p.string()?;
            }
            0x27 => match p.u32()? {
                0 => return Err(bad("Maximum Packet Size 0")),
                v => c.maximum_packet_size = Some(v),
            },
            0x28 => {
                let v = flag(p.u8()?, "Wildcard Subscription Available")?;
                c.wildcard_subscription_available = Some(v);
            }
            0x29 => {
                let v = flag(p.u8()?, "Subscription Identifiers Available")?;
                c.subscription_identifiers_available = Some(v);
            }
            0x2A => {
                let v = flag(p.u8()?, "Shared Subscription Available")?;
                c.shared_subscription_available = Some(v);
            }
            id => return Err(bad(&format!("unknown property 0x{id:02x}"))),
        }
    }
    Ok(c)
}

/// [`parse_connack`] of a whole packet (fixed header followed by the rest).
pub fn parse_connack_packet(packet: &[u8], proto_ver: u8) -> Result<Connack> {
    if packet.is_empty() {
        return Err(malformed_packet("CONNACK", "empty"));
    }
    let (remaining, n) = varint_of(&packet[1..], "CONNACK")?;
    let h = 1 + n;
    if packet.len() != h.saturating_add(remaining) {
        return Err(malformed_packet(
            "CONNACK",
            "Remaining Length does not match the packet",
        ));
    }
    let (header, body) = packet.split_at(h);
    parse_connack(header, body, proto_ver)
}
