//! One MQTT 5 connection over TCP, framed with rumqttc's v5 packet codec (not its event loop:
//! the caller chooses every packet id and the DUP flag, and sees every ack).

use bytes::BytesMut;
use rumqttc::v5::mqttbytes::v5::{
    ConnAck, Connect, ConnectProperties, ConnectReturnCode, Disconnect, DisconnectReasonCode,
    Packet, PubAckReason, PubCompReason, PubRecReason, Publish,
};
use rumqttc::v5::mqttbytes::{Error as CodecError, QoS};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub client_id: String,
    pub keepalive: Duration,
    pub clean_start: bool,
    /// Session Expiry Interval in seconds (0 = the session ends with the connection).
    pub session_expiry_secs: u32,
    /// Time allowed for the TCP connect plus the CONNACK.
    pub timeout: Duration,
}

impl ConnectOptions {
    /// clean_start = false with a one-hour session expiry: the session persists across
    /// reconnects (the reported bridge configuration).
    pub fn persistent(client_id: &str, keepalive: Duration) -> Self {
        ConnectOptions {
            client_id: client_id.to_string(),
            keepalive,
            clean_start: false,
            session_expiry_secs: 3600,
            timeout: keepalive.max(Duration::from_secs(2)),
        }
    }
}

/// One MQTT 5 connection.
pub struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    out: BytesMut,
}

impl Conn {
    /// Connects with a persistent session ([`ConnectOptions::persistent`]); returns the
    /// connection and the broker's CONNACK (success only).
    pub async fn connect(
        addr: SocketAddr,
        client_id: &str,
        keepalive: Duration,
    ) -> io::Result<(Conn, ConnAck)> {
        Self::connect_with(addr, &ConnectOptions::persistent(client_id, keepalive)).await
    }

    pub async fn connect_with(addr: SocketAddr, o: &ConnectOptions) -> io::Result<(Conn, ConnAck)> {
        tokio::time::timeout(o.timeout, async {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let mut c = Conn {
                stream,
                buf: BytesMut::with_capacity(64 * 1024),
                out: BytesMut::with_capacity(64 * 1024),
            };
            let mut props = ConnectProperties::new();
            props.session_expiry_interval = Some(o.session_expiry_secs);
            let connect = Connect {
                keep_alive: o.keepalive.as_secs().clamp(1, u16::MAX as u64) as u16,
                client_id: o.client_id.clone(),
                clean_start: o.clean_start,
                properties: Some(props),
            };
            c.send(&Packet::Connect(connect, None, None)).await?;
            loop {
                match c.read().await? {
                    Packet::ConnAck(a) if a.code == ConnectReturnCode::Success => {
                        return Ok((c, a))
                    }
                    Packet::ConnAck(a) => {
                        return Err(io::Error::other(format!("CONNACK {:?}", a.code)))
                    }
                    _ => continue,
                }
            }
        })
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no CONNACK in time"))?
    }

    /// Writes one packet.
    pub async fn send(&mut self, p: &Packet) -> io::Result<()> {
        self.out.clear();
        p.write(&mut self.out)
            .map_err(|e| io::Error::other(format!("encode: {e:?}")))?;
        self.stream.write_all(&self.out).await
    }

    /// Writes raw bytes (an already encoded packet).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Reads until one packet is complete. Cancel-safe: partial bytes stay in the buffer.
    pub async fn read(&mut self) -> io::Result<Packet> {
        loop {
            match Packet::read(&mut self.buf, None) {
                Ok(p) => return Ok(p),
                Err(CodecError::InsufficientBytes(_)) => {}
                Err(e) => return Err(io::Error::other(format!("decode: {e:?}"))),
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// A normal DISCONNECT (the session is kept for its expiry interval).
    pub async fn disconnect(mut self) -> io::Result<()> {
        let d = Disconnect::new(DisconnectReasonCode::NormalDisconnection);
        self.send(&Packet::Disconnect(d)).await?;
        self.stream.shutdown().await
    }
}

pub fn qos_of(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

pub fn qos_num(q: QoS) -> u8 {
    match q {
        QoS::AtMostOnce => 0,
        QoS::AtLeastOnce => 1,
        QoS::ExactlyOnce => 2,
    }
}

/// The wire reason code of a PUBACK (MQTT 5 section 3.4.2.1).
pub fn puback_code(r: PubAckReason) -> u8 {
    match r {
        PubAckReason::Success => 0x00,
        PubAckReason::NoMatchingSubscribers => 0x10,
        PubAckReason::UnspecifiedError => 0x80,
        PubAckReason::ImplementationSpecificError => 0x83,
        PubAckReason::NotAuthorized => 0x87,
        PubAckReason::TopicNameInvalid => 0x90,
        PubAckReason::PacketIdentifierInUse => 0x91,
        PubAckReason::QuotaExceeded => 0x97,
        PubAckReason::PayloadFormatInvalid => 0x99,
    }
}

/// The wire reason code of a PUBREC (same table as PUBACK).
pub fn pubrec_code(r: PubRecReason) -> u8 {
    match r {
        PubRecReason::Success => 0x00,
        PubRecReason::NoMatchingSubscribers => 0x10,
        PubRecReason::UnspecifiedError => 0x80,
        PubRecReason::ImplementationSpecificError => 0x83,
        PubRecReason::NotAuthorized => 0x87,
        PubRecReason::TopicNameInvalid => 0x90,
        PubRecReason::PacketIdentifierInUse => 0x91,
        PubRecReason::QuotaExceeded => 0x97,
        PubRecReason::PayloadFormatInvalid => 0x99,
    }
}

/// The wire reason code of a PUBCOMP.
pub fn pubcomp_code(r: PubCompReason) -> u8 {
    match r {
        PubCompReason::Success => 0x00,
        PubCompReason::PacketIdentifierNotFound => 0x92,
    }
}

/// Encodes a PUBLISH: the bytes the outbox stores (as NanoNNG stores the encoded message).
/// The packet id is a placeholder (1 for QoS > 0), replaced at every send.
pub fn encode_publish(topic: &str, qos: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = Publish::new(topic, qos_of(qos), payload.to_vec(), None);
    p.pkid = u16::from(qos > 0);
    let mut out = BytesMut::new();
    p.write(&mut out).unwrap();
    out.to_vec()
}

/// Decodes bytes made by [`encode_publish`]; panics on anything else (a test bug).
pub fn decode_publish(bytes: &[u8]) -> Publish {
    let mut b = BytesMut::from(bytes);
    match Packet::read(&mut b, None) {
        Ok(Packet::Publish(p)) => p,
        other => panic!("stored bytes are not a PUBLISH: {other:?}"),
    }
}
