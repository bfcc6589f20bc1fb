//! A scripted remote and a bridge driver for `tests/remote.rs` (issue 20). Loopback only.
//!
//! [`Remote`]: a small MQTT 3.1.1 and 5 server on 127.0.0.1 that advertises any CONNACK
//! (properties, Session Present, reason code), answers each PUBLISH as its script says (an
//! ack with any reason code, a DISCONNECT with any reason, a bare close, silence), keeps or
//! drops its sessions, misbehaves on request (acks for unknown packet ids, duplicate acks,
//! PUBCOMP 0x92), and checks what it receives against what it advertised (a PUBLISH above its
//! Maximum QoS or Maximum Packet Size, or retained when Retain Available is 0, is a violation:
//! counted, answered with the DISCONNECT a real server sends). QoS 2 is delivered at PUBREL
//! (the message waits in the session until then), so a session the remote drops loses what
//! it held, as a real one does.
//!
//! [`Bridge`]: drives an [`Outbox`] the way the NanoNNG hook does, over raw MQTT bytes:
//! link_up_connack on the CONNACK, lease/bind in the window (a released row resumes with
//! PUBREL on its id; a resend reuses its id with DUP when free), acks to the outbox (PUBREL
//! after a PUBREC), link_down_reason with the DISCONNECT's reason or none, a replay tick.
#![allow(dead_code)]

use nmq_outbox::mqtt::{
    encode_varint, parse_connack_packet, prepare_resend, pubrel, set_packet_id, split_packet,
};
use nmq_outbox::{AckKind, AckOutcome, Outbox};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ---- packets ----------------------------------------------------------------------------------

/// A packet: fixed header byte, then the rest.
fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    encode_varint(body.len(), &mut out);
    out.extend_from_slice(body);
    out
}

/// A PUBLISH as a bridge stores it (packet id 0: set at each send); MQTT 5 with an empty
/// property section.
pub fn publish(ver: u8, topic: &str, qos: u8, retain: bool, payload: &[u8]) -> Vec<u8> {
    let mut body = (topic.len() as u16).to_be_bytes().to_vec();
    body.extend_from_slice(topic.as_bytes());
    if qos > 0 {
        body.extend_from_slice(&[0, 0]);
    }
    if ver == 5 {
        body.push(0);
    }
    body.extend_from_slice(payload);
    packet(0x30 | (qos << 1) | retain as u8, &body)
}

/// An ack (PUBACK 0x40, PUBREC 0x50, PUBREL 0x62, PUBCOMP 0x70) with a reason code (MQTT 5,
/// left out when 0).
fn ack(first: u8, ver: u8, pid: u16, reason: u8) -> Vec<u8> {
    let mut body = pid.to_be_bytes().to_vec();
    if ver == 5 && reason != 0 {
        body.push(reason);
    }
    packet(first, &body)
}

/// Reads one packet (fixed header byte, body); None at the end of the stream.
async fn read_packet(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut first = [0u8; 1];
    s.read_exact(&mut first).await.ok()?;
    let mut len = 0usize;
    for i in 0..4 {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.ok()?;
        len |= ((b[0] & 0x7f) as usize) << (7 * i);
        if b[0] & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.ok()?;
    Some((first[0], body))
}

/// A PUBLISH as the remote received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    pub topic: String,
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
    pub packet_id: u16,
    pub payload: Vec<u8>,
    /// Size of the whole packet.
    pub size: usize,
}

fn parse_publish(ver: u8, first: u8, body: &[u8]) -> Option<Incoming> {
    let qos = (first >> 1) & 3;
    let tl = u16::from_be_bytes([*body.first()?, *body.get(1)?]) as usize;
    let topic = String::from_utf8(body.get(2..2 + tl)?.to_vec()).ok()?;
    let mut at = 2 + tl;
    let mut packet_id = 0;
    if qos > 0 {
        packet_id = u16::from_be_bytes([*body.get(at)?, *body.get(at + 1)?]);
        at += 2;
    }
    if ver == 5 {
        let mut plen = 0usize;
        for i in 0..4 {
            let b = *body.get(at)?;
            at += 1;
            plen |= ((b & 0x7f) as usize) << (7 * i);
            if b & 0x80 == 0 {
                break;
            }
        }
        at += plen;
    }
    let mut size = vec![];
    encode_varint(body.len(), &mut size);
    Some(Incoming {
        topic,
        qos,
        retain: first & 1 != 0,
        dup: first & 8 != 0,
        packet_id,
        payload: body.get(at..)?.to_vec(),
        size: 1 + size.len() + body.len(),
    })
}

// ---- the scripted remote ----------------------------------------------------------------------

/// How the remote answers one PUBLISH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// PUBACK (QoS 1) or PUBREC (QoS 2) with reason 0; QoS 1 is delivered now, QoS 2 at PUBREL.
    Accept,
    /// PUBACK/PUBREC with this reason code (>= 0x80: refused, not delivered).
    Refuse(u8),
    /// PUBREC 0, then the connection closes (the PUBREL never arrives on it).
    RecThenClose,
    /// DISCONNECT with this reason code, then close (MQTT 5; 3.1.1: a bare close).
    Disconnect(u8),
    /// Close the connection, no DISCONNECT.
    Close,
    /// No answer at all.
    Silent,
}

/// What the remote does besides its script.
#[derive(Debug, Clone, Copy, Default)]
pub struct Misbehave {
    /// Before each ack, an ack of the same type for a packet id nobody used.
    pub ack_unknown: bool,
    /// Every PUBACK/PUBREC/PUBCOMP twice.
    pub duplicate_acks: bool,
    /// Answer every PUBREL with PUBCOMP 0x92 (packet id not found), whatever it had.
    pub pubcomp_not_found: bool,
}

pub type Rule = Box<dyn FnMut(&Incoming) -> Verdict + Send>;

/// The remote's script.
pub struct Script {
    /// MQTT 5 CONNACK properties, raw (id, value ...).
    pub connack_props: Vec<u8>,
    /// CONNACK reason code (3.1.1: return code).
    pub connack_reason: u8,
    /// Keep sessions across connections (Session Present 1 when there is one); false: every
    /// connection is a new session (Session Present 0).
    pub keep_sessions: bool,
    pub rule: Rule,
    pub misbehave: Misbehave,
    /// Limits it enforces (what its CONNACK says): a violation is counted and answered.
    pub max_qos: u8,
    pub max_packet_size: Option<usize>,
    pub retain_available: bool,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            connack_props: Vec::new(),
            connack_reason: 0,
            keep_sessions: true,
            rule: Box::new(|_| Verdict::Accept),
            misbehave: Misbehave::default(),
            max_qos: 2,
            max_packet_size: None,
            retain_available: true,
        }
    }
}

#[derive(Default)]
struct Session {
    /// QoS 2 messages received (PUBREC sent), delivered at PUBREL.
    qos2: HashMap<u16, Incoming>,
}

/// What the remote saw.
#[derive(Default, Debug, Clone)]
pub struct Seen {
    /// Messages delivered to its subscribers, in order: (topic, payload).
    pub delivered: Vec<(String, Vec<u8>)>,
    /// Every PUBLISH received.
    pub publishes: Vec<Incoming>,
    pub connects: u64,
    /// Session Present of each CONNACK sent.
    pub session_present: Vec<bool>,
    /// Packets that break what the CONNACK advertised (QoS, size, retain).
    pub violations: Vec<String>,
    /// PUBRELs for a packet id the session did not hold.
    pub unknown_pubrels: u64,
}

struct RemoteState {
    script: Script,
    seen: Seen,
    sessions: HashMap<String, Session>,
}

/// A scripted MQTT remote on 127.0.0.1.
pub struct Remote {
    pub addr: SocketAddr,
    state: Arc<Mutex<RemoteState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Remote {
    pub async fn start(script: Script) -> Remote {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(RemoteState {
            script,
            seen: Seen::default(),
            sessions: HashMap::new(),
        }));
        let st = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, Arc::clone(&st)));
            }
        });
        Remote { addr, state, task }
    }

    pub fn seen(&self) -> Seen {
        self.state.lock().unwrap().seen.clone()
    }

    /// Changes the script (the next packets follow it).
    pub fn script(&self, f: impl FnOnce(&mut Script)) {
        f(&mut self.state.lock().unwrap().script)
    }

    /// Forgets every session (as a remote restarted without persistence).
    pub fn drop_sessions(&self) {
        self.state.lock().unwrap().sessions.clear();
    }

    /// The payloads delivered, in order.
    pub fn delivered(&self) -> Vec<Vec<u8>> {
        self.seen().delivered.into_iter().map(|d| d.1).collect()
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut s: TcpStream, st: Arc<Mutex<RemoteState>>) {
    // CONNECT: protocol level, clean start, client id.
    let Some((0x10, body)) = read_packet(&mut s).await else {
        return;
    };
    let name_len = u16::from_be_bytes([body[0], body[1]]) as usize;
    let ver = body[2 + name_len];
    let flags = body[3 + name_len];
    let mut at = 2 + name_len + 4; // level, flags, keep alive
    if ver == 5 {
        let (plen, n) = nmq_varint(&body[at..]);
        at += n + plen;
    }
    let cl = u16::from_be_bytes([body[at], body[at + 1]]) as usize;
    let client = String::from_utf8_lossy(&body[at + 2..at + 2 + cl]).into_owned();
    let clean = flags & 0x02 != 0;
    let connack = {
        let mut g = st.lock().unwrap();
        let keep = g.script.keep_sessions && !clean;
        let present = keep && g.sessions.contains_key(&client);
        if !keep || !present {
            g.sessions.insert(client.clone(), Session::default());
        }
        g.seen.connects += 1;
        g.seen.session_present.push(present);
        let reason = g.script.connack_reason;
        let mut b = vec![present as u8 * (reason == 0) as u8, reason];
        if ver == 5 {
            encode_varint(g.script.connack_props.len(), &mut b);
            b.extend_from_slice(&g.script.connack_props);
        }
        (packet(0x20, &b), reason)
    };
    if s.write_all(&connack.0).await.is_err() || connack.1 != 0 {
        return;
    }
    let mut spare_pid = 60_000u16;
    while let Some((first, body)) = read_packet(&mut s).await {
        let mut out: Vec<Vec<u8>> = Vec::new();
        let mut close = false;
        match first >> 4 {
            3 => {
                let Some(p) = parse_publish(ver, first, &body) else {
                    return;
                };
                let mut g = st.lock().unwrap();
                let g = &mut *g;
                g.seen.publishes.push(p.clone());
                let sc = &mut g.script;
                let violation = if p.qos > sc.max_qos {
                    Some((
                        format!("QoS {} above Maximum QoS {}", p.qos, sc.max_qos),
                        0x9B,
                    ))
                } else if sc.max_packet_size.is_some_and(|m| p.size > m) {
                    Some((
                        format!("a packet of {} bytes above the maximum", p.size),
                        0x95,
                    ))
                } else if p.retain && !sc.retain_available {
                    Some(("RETAIN while Retain Available is 0".to_string(), 0x9A))
                } else {
                    None
                };
                let verdict = match violation {
                    Some((why, code)) => {
                        g.seen.violations.push(why);
                        Verdict::Disconnect(code)
                    }
                    None => (sc.rule)(&p),
                };
                let m = sc.misbehave;
                let kind = if p.qos == 2 { 0x50 } else { 0x40 };
                let mut acks = |reason: u8, out: &mut Vec<Vec<u8>>| {
                    if m.ack_unknown {
                        spare_pid = spare_pid.wrapping_add(1).max(60_000);
                        out.push(ack(kind, ver, spare_pid, 0));
                    }
                    out.push(ack(kind, ver, p.packet_id, reason));
                    if m.duplicate_acks {
                        out.push(ack(kind, ver, p.packet_id, reason));
                    }
                };
                match verdict {
                    Verdict::Accept | Verdict::RecThenClose if p.qos == 0 => {
                        g.seen.delivered.push((p.topic.clone(), p.payload.clone()));
                    }
                    Verdict::Accept | Verdict::RecThenClose => {
                        if p.qos == 1 {
                            g.seen.delivered.push((p.topic.clone(), p.payload.clone()));
                        } else if let Some(sess) = g.sessions.get_mut(&client) {
                            sess.qos2.insert(p.packet_id, p.clone());
                        }
                        acks(0, &mut out);
                        close = verdict == Verdict::RecThenClose;
                    }
                    Verdict::Refuse(code) if p.qos > 0 => acks(code, &mut out),
                    Verdict::Refuse(_) => {}
                    Verdict::Disconnect(code) => {
                        if ver == 5 {
                            out.push(packet(0xE0, &[code, 0]));
                        }
                        close = true;
                    }
                    Verdict::Close => close = true,
                    Verdict::Silent => {}
                }
            }
            6 => {
                // PUBREL: deliver what the session holds, PUBCOMP.
                let pid = u16::from_be_bytes([body[0], body[1]]);
                let mut g = st.lock().unwrap();
                let g = &mut *g;
                let held = g
                    .sessions
                    .get_mut(&client)
                    .and_then(|s| s.qos2.remove(&pid));
                let reason = match held {
                    Some(p) => {
                        g.seen.delivered.push((p.topic, p.payload));
                        0
                    }
                    None => {
                        g.seen.unknown_pubrels += 1;
                        0x92
                    }
                };
                let m = g.script.misbehave;
                let reason = if m.pubcomp_not_found { 0x92 } else { reason };
                out.push(ack(0x70, ver, pid, reason));
                if m.duplicate_acks {
                    out.push(ack(0x70, ver, pid, reason));
                }
            }
            12 => out.push(vec![0xD0, 0]),
            14 => return,
            _ => {}
        }
        for p in out {
            if s.write_all(&p).await.is_err() {
                return;
            }
        }
        if close {
            // FIN, then read what the client still sends (discarded: it never arrives) until
            // it closes too, so that no RST takes the last packets from its receive buffer.
            let _ = s.shutdown().await;
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while read_packet(&mut s).await.is_some() {}
            })
            .await;
            return;
        }
    }
}

fn nmq_varint(b: &[u8]) -> (usize, usize) {
    let mut v = 0usize;
    for (i, byte) in b.iter().take(4).enumerate() {
        v |= ((byte & 0x7f) as usize) << (7 * i);
        if byte & 0x80 == 0 {
            return (v, i + 1);
        }
    }
    (v, 4)
}

// ---- the bridge driver ------------------------------------------------------------------------

/// What the driver saw.
#[derive(Default, Debug, Clone)]
pub struct Drove {
    pub connects: u64,
    /// CONNACKs the outbox refused (EREFUSED) or could not parse.
    pub refused_connacks: u64,
    /// DISCONNECT reasons received; closes without one.
    pub disconnects: Vec<u8>,
    pub bare_closes: u64,
    /// PUBLISHes and PUBRELs written.
    pub publishes: u64,
    pub pubrels: u64,
    /// Acks the outbox did not know (NOT_OURS).
    pub not_ours: u64,
}

/// Drives `outbox` against `addr` with MQTT `ver` until stopped.
pub struct Bridge {
    pub outbox: Arc<Outbox>,
    stop: Arc<AtomicBool>,
    drove: Arc<Mutex<Drove>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Bridge {
    pub fn start(outbox: Arc<Outbox>, addr: SocketAddr, ver: u8) -> Bridge {
        let stop = Arc::new(AtomicBool::new(false));
        let drove = Arc::new(Mutex::new(Drove::default()));
        let task = tokio::spawn(drive(
            Arc::clone(&outbox),
            addr,
            ver,
            Arc::clone(&stop),
            Arc::clone(&drove),
        ));
        Bridge {
            outbox,
            stop,
            drove,
            task: Some(task),
        }
    }

    pub fn drove(&self) -> Drove {
        self.drove.lock().unwrap().clone()
    }

    /// Waits (bounded) until the outbox holds nothing; false on timeout.
    pub async fn wait_empty(&self, timeout: Duration) -> bool {
        self.wait(timeout, |ob| {
            let s = ob.stats().unwrap();
            s.messages == 0 && s.inflight == 0
        })
        .await
    }

    pub async fn wait(&self, timeout: Duration, f: impl Fn(&Outbox) -> bool) -> bool {
        let end = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < end {
            if f(&self.outbox) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        f(&self.outbox)
    }

    /// Stops the driver and returns what it did, complete: an ack read after a `drove()`
    /// snapshot is in it.
    pub async fn stop(mut self) -> Drove {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        self.drove()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

fn connect_packet(ver: u8) -> Vec<u8> {
    let mut b = vec![0, 4];
    b.extend_from_slice(b"MQTT");
    b.push(ver);
    b.push(0); // clean start 0
    b.extend_from_slice(&30u16.to_be_bytes());
    if ver == 5 {
        b.extend_from_slice(&[5, 0x11, 0, 0, 0x0e, 0x10]); // session expiry 3600
    }
    b.extend_from_slice(&[0, 6]);
    b.extend_from_slice(b"bridge");
    packet(0x10, &b)
}

struct Conn {
    s: TcpStream,
    ver: u8,
    used: HashSet<u16>,
    next: u16,
    /// Bytes read and not yet a whole packet (reads are cancelled by the replay tick).
    buf: Vec<u8>,
}

impl Conn {
    /// The next packet, waiting at most `tick`: Ok(None) when none came in time, Err at the
    /// end of the stream. Cancel-safe: partial packets stay in `buf`.
    async fn next_packet(&mut self, tick: Duration) -> Result<Option<(u8, Vec<u8>)>, ()> {
        loop {
            if self.buf.len() >= 2 {
                let (len, n) = nmq_varint(&self.buf[1..]);
                if self.buf.len() >= 1 + n + len {
                    let first = self.buf[0];
                    let body = self.buf[1 + n..1 + n + len].to_vec();
                    self.buf.drain(..1 + n + len);
                    return Ok(Some((first, body)));
                }
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout(tick, self.s.read(&mut chunk)).await {
                Err(_) => return Ok(None),
                Ok(Ok(0)) | Ok(Err(_)) => return Err(()),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn fresh_pid(&mut self) -> u16 {
        loop {
            self.next = self.next % 60_000 + 1;
            if self.used.insert(self.next) {
                return self.next;
            }
        }
    }
}

async fn drive(
    ob: Arc<Outbox>,
    addr: SocketAddr,
    ver: u8,
    stop: Arc<AtomicBool>,
    drove: Arc<Mutex<Drove>>,
) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        if s.write_all(&connect_packet(ver)).await.is_err() {
            continue;
        }
        let Some((0x20, body)) = read_packet(&mut s).await else {
            continue;
        };
        drove.lock().unwrap().connects += 1;
        let raw = packet(0x20, &body);
        let up = parse_connack_packet(&raw, ver).and_then(|c| ob.link_up_connack(&c));
        if up.is_err() {
            drove.lock().unwrap().refused_connacks += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let mut c = Conn {
            s,
            ver,
            used: HashSet::new(),
            next: 0,
            buf: Vec::new(),
        };
        let (reason, had) = run_connection(&ob, &mut c, &stop, &drove).await;
        if stop.load(Ordering::Relaxed) {
            ob.link_down().unwrap();
            return;
        }
        {
            let mut d = drove.lock().unwrap();
            if had {
                d.disconnects.push(reason);
            } else {
                d.bare_closes += 1;
            }
        }
        ob.link_down_reason(reason, had).unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends what the window allows (the replay).
async fn fill(ob: &Outbox, c: &mut Conn, drove: &Mutex<Drove>) -> std::io::Result<()> {
    while let Some(row) = ob.lease().unwrap() {
        if row.released {
            c.used.insert(row.packet_id);
            ob.bind(row.seq, row.packet_id).unwrap();
            let (h, b) = pubrel(row.packet_id);
            c.s.write_all(&[h.as_slice(), b.as_slice()].concat())
                .await?;
            drove.lock().unwrap().pubrels += 1;
            continue;
        }
        let (mut h, mut b) =
            prepare_resend(&row.data, c.ver, row.qos, row.packet_id, row.expiry_secs)
                .expect("a stored PUBLISH");
        if row.qos == 0 {
            c.s.write_all(&[h, b].concat()).await?;
            ob.sent(row.seq).unwrap();
        } else {
            let reuse = row.packet_id != 0 && c.used.insert(row.packet_id);
            let pid = if reuse { row.packet_id } else { c.fresh_pid() };
            ob.bind(row.seq, pid).unwrap();
            set_packet_id(&mut h, &mut b, pid, reuse).unwrap();
            c.s.write_all(&[h, b].concat()).await?;
        }
        drove.lock().unwrap().publishes += 1;
    }
    Ok(())
}

/// One connection until it ends: (DISCONNECT reason, whether there was one).
async fn run_connection(
    ob: &Outbox,
    c: &mut Conn,
    stop: &AtomicBool,
    drove: &Mutex<Drove>,
) -> (u8, bool) {
    // After a failed write the remote has closed: what it sent before (acks, a DISCONNECT)
    // is still read, as the host's receive path would.
    let mut write_failed = false;
    loop {
        if stop.load(Ordering::Relaxed) {
            return (0, false);
        }
        if !write_failed && fill(ob, c, drove).await.is_err() {
            write_failed = true;
        }
        let tick = Duration::from_millis(if write_failed { 200 } else { 20 });
        let Ok(next) = c.next_packet(tick).await else {
            return (0, false);
        };
        let Some((first, body)) = next else {
            if write_failed {
                return (0, false);
            }
            continue; // the replay tick
        };
        let kind = match first >> 4 {
            4 => AckKind::PubAck,
            5 => AckKind::PubRec,
            7 => AckKind::PubComp,
            14 => return (body.first().copied().unwrap_or(0), true),
            _ => continue,
        };
        let pid = u16::from_be_bytes([body[0], body[1]]);
        let reason = if c.ver == 5 {
            body.get(2).copied().unwrap_or(0)
        } else {
            0
        };
        match ob.ack(pid, kind, reason).unwrap() {
            AckOutcome::Progress => {
                let (h, b) = pubrel(pid);
                if !write_failed {
                    let sent = c.s.write_all(&[h.as_slice(), b.as_slice()].concat()).await;
                    write_failed = sent.is_err();
                }
            }
            AckOutcome::Done | AckOutcome::Rejected | AckOutcome::Retry => {
                c.used.remove(&pid);
            }
            AckOutcome::NotOurs => drove.lock().unwrap().not_ours += 1,
        }
    }
}

/// The bytes of a stored PUBLISH's payload (the test's message id), for the checks.
pub fn payload_of(ver: u8, data: &[u8]) -> Vec<u8> {
    let (h, b) = split_packet(data).unwrap();
    parse_publish(ver, h[0], b).unwrap().payload
}
