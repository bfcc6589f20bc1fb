//! The outage harness, shared by tests/outage.rs, examples/demo.rs and benches:
//! - [`Mosquitto`]: a real Debian mosquitto on a free loopback port, started and stopped here;
//! - [`Proxy`]: a fault-injecting TCP proxy on loopback (cut with RST, silent blackhole, slow
//!   acks from the broker, restore);
//! - [`Driver`]: plays the NanoNNG client's part: every publish goes through the outbox
//!   decision, replay starts at CONNACK within the window, packet ids are bound, PUBACK /
//!   PUBREC / PUBCOMP are fed back, PUBREL is sent; a lost link is detected by keepalive;
//! - [`Subscriber`]: a persistent-session subscriber on the broker (QoS 2 handled correctly);
//! - [`Tally`]: sent / received / lost / duplicated / out of order.
//!
//! MQTT packets are encoded and decoded with rumqttc's v5 codec. Traffic stays on 127.0.0.1.
#![allow(dead_code)]

use bytes::BytesMut;
use nmq_outbox::{AckKind, AckOutcome, Config, Decision, NewMessage, Outbox};
use rumqttc::v5::mqttbytes::v5::{
    ConnAck, Connect, ConnectProperties, Filter, Packet, PingReq, PubAck, PubAckReason, PubComp,
    PubCompReason, PubRec, PubRecReason, PubRel, Publish, Subscribe,
};
use rumqttc::v5::mqttbytes::{Error as CodecError, QoS};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};

// ---- mosquitto ------------------------------------------------------------------------------

/// A mosquitto broker on 127.0.0.1, killed on drop.
pub struct Mosquitto {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        let dir = tempfile::tempdir().unwrap();
        // Run as root, mosquitto drops to the `mosquitto` user: it must be able to write its
        // log and its persistence file here, or sessions do not survive a restart.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let mut m = Mosquitto {
            port: free_port(),
            dir,
            child: None,
        };
        m.spawn();
        m
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn spawn(&mut self) {
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
                 persistence_location {dir}/\nmax_queued_messages 0\nmax_inflight_messages 64\n\
                 log_dest file {dir}/mosquitto.log\n",
                port = self.port,
                dir = self.dir.path().display()
            ),
        )
        .unwrap();
        let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("mosquitto is not installed: run scripts/test.sh (it installs it)");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        // Ready when it accepts connections (bounded).
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(self.addr()).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Graceful stop (SIGTERM: the persistence file is written), then start on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc_kill(c.id() as i32, 15) };
            let _ = c.wait();
        }
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---- fault-injecting proxy ------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bytes pass.
    Up,
    /// Connections are reset (RST) and new ones refused with RST.
    Down,
    /// Sockets stay open, every byte in both directions is dropped, no RST.
    Blackhole,
    /// Bytes pass, but broker-to-client bytes (the acks) are delayed.
    SlowAcks(Duration),
}

/// A TCP proxy on 127.0.0.1 in front of one upstream address.
pub struct Proxy {
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = watch::channel(Mode::Up);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let rx = rx.clone();
                tokio::spawn(relay(client, upstream, rx));
            }
        });
        Proxy { addr, mode: tx }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
    pub fn cut(&self) {
        self.set(Mode::Down)
    }
    pub fn blackhole(&self) {
        self.set(Mode::Blackhole)
    }
    pub fn restore(&self) {
        self.set(Mode::Up)
    }
}

// SO_LINGER 0 is the point here: a dropped socket sends RST at once (it does not block).
#[allow(deprecated)]
async fn relay(client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<Mode>) {
    // Linger 0: dropping a socket sends RST, as a cut link would.
    let _ = client.set_linger(Some(Duration::ZERO));
    if *mode.borrow() == Mode::Down {
        return;
    }
    let Ok(Ok(server)) =
        tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(upstream)).await
    else {
        return;
    };
    let _ = server.set_linger(Some(Duration::ZERO));
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let (mut cbuf, mut sbuf) = (vec![0u8; 16384], vec![0u8; 16384]);
    loop {
        let m = *mode.borrow();
        if m == Mode::Down {
            return; // drops both sockets: RST both ways
        }
        tokio::select! {
            r = cr.read(&mut cbuf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => if *mode.borrow() != Mode::Blackhole && sw.write_all(&cbuf[..n]).await.is_err() { return },
            },
            r = sr.read(&mut sbuf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let m = *mode.borrow();
                    if let Mode::SlowAcks(d) = m {
                        tokio::time::sleep(d).await;
                    }
                    if m != Mode::Blackhole && cw.write_all(&sbuf[..n]).await.is_err() { return }
                }
            },
            _ = mode.changed() => {}
        }
    }
}

// ---- MQTT connection ------------------------------------------------------------------------

/// One MQTT 5 connection: framing over a TCP stream with rumqttc's codec.
pub struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    pub async fn connect(
        addr: SocketAddr,
        client_id: &str,
        keepalive: Duration,
    ) -> std::io::Result<(Conn, ConnAck)> {
        let stream =
            tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await??;
        stream.set_nodelay(true)?;
        let mut c = Conn {
            stream,
            buf: BytesMut::with_capacity(65536),
        };
        let mut props = ConnectProperties::new();
        props.session_expiry_interval = Some(3600);
        let connect = Connect {
            keep_alive: keepalive.as_secs().max(1) as u16,
            client_id: client_id.to_string(),
            clean_start: false,
            properties: Some(props),
        };
        c.send(&Packet::Connect(connect, None, None)).await?;
        let ack = tokio::time::timeout(keepalive.max(Duration::from_secs(2)), async {
            loop {
                match c.read().await? {
                    Packet::ConnAck(a) => return Ok::<_, std::io::Error>(a),
                    _ => continue,
                }
            }
        })
        .await
        .map_err(|_| std::io::Error::other("no CONNACK"))??;
        if ack.code != rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success {
            return Err(std::io::Error::other(format!("CONNACK {:?}", ack.code)));
        }
        Ok((c, ack))
    }

    pub async fn send(&mut self, p: &Packet) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        p.write(&mut out)
            .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        self.stream.write_all(&out).await
    }

    /// A packet already in the buffer, if complete.
    fn parse(&mut self) -> std::io::Result<Option<Packet>> {
        match Packet::read(&mut self.buf, None) {
            Ok(p) => Ok(Some(p)),
            Err(CodecError::InsufficientBytes(_)) => Ok(None),
            Err(e) => Err(std::io::Error::other(format!("{e:?}"))),
        }
    }

    /// Reads until one packet is complete. Cancel-safe: partial bytes stay in the buffer.
    pub async fn read(&mut self) -> std::io::Result<Packet> {
        loop {
            if let Some(p) = self.parse()? {
                return Ok(p);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}

fn qos_of(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

fn puback_reason(r: PubAckReason) -> u8 {
    match r {
        PubAckReason::Success => 0,
        PubAckReason::NoMatchingSubscribers => 0x10,
        _ => 0x80,
    }
}

fn pubrec_reason(r: PubRecReason) -> u8 {
    match r {
        PubRecReason::Success => 0,
        PubRecReason::NoMatchingSubscribers => 0x10,
        _ => 0x80,
    }
}

/// Encodes a PUBLISH: the bytes the outbox stores. The packet id is a placeholder, replaced at
/// every send (as NanoNNG re-encodes with a fresh id).
pub fn encode_publish(topic: &str, qos: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = Publish::new(topic, qos_of(qos), payload.to_vec(), None);
    p.pkid = u16::from(qos > 0);
    let mut out = BytesMut::new();
    p.write(&mut out).unwrap();
    out.to_vec()
}

fn decode_publish(bytes: &[u8]) -> Publish {
    let mut b = BytesMut::from(bytes);
    match Packet::read(&mut b, None) {
        Ok(Packet::Publish(p)) => p,
        other => panic!("stored bytes are not a PUBLISH: {other:?}"),
    }
}

// ---- the driver (the NanoNNG client's part) -------------------------------------------------

pub struct DriverConfig {
    pub broker: SocketAddr,
    pub client_id: String,
    pub keepalive: Duration,
    pub db: PathBuf,
    pub window: u32,
}

#[derive(Debug, Default, Clone)]
pub struct DriverCounters {
    pub connects: u64,
    pub link_losses: u64,
    /// Messages the outbox refused (the publisher was told: not lost silently).
    pub refused: u64,
    /// Direct sends not yet acknowledged.
    pub direct_inflight: u64,
    /// Messages sent directly (link up, nothing stored).
    pub direct_total: u64,
}

enum Cmd {
    Publish(String, u8, Vec<u8>),
    Stop,
}

/// A message sent directly (SendNow), tracked until its ack.
struct Direct {
    order: u64,
    qos: u8,
    bytes: Vec<u8>,
    pubrec: bool,
}

pub struct Driver {
    pub outbox: Arc<Outbox>,
    pub counters: Arc<Mutex<DriverCounters>>,
    /// Notified whenever the outbox may have become empty, or a connection came up.
    pub progress: Arc<Notify>,
    tx: mpsc::UnboundedSender<Cmd>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Driver {
    pub fn start(cfg: DriverConfig) -> Driver {
        let mut c = Config::new(&cfg.db, "bridge");
        c.window = cfg.window;
        c.group_commit_ms = 5;
        let outbox = Arc::new(Outbox::open(c).expect("open outbox"));
        let counters = Arc::new(Mutex::new(DriverCounters::default()));
        let progress = Arc::new(Notify::new());
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run_driver(
            cfg,
            Arc::clone(&outbox),
            Arc::clone(&counters),
            Arc::clone(&progress),
            rx,
        ));
        Driver {
            outbox,
            counters,
            progress,
            tx,
            task: Some(task),
        }
    }

    pub fn publish(&self, topic: &str, qos: u8, payload: Vec<u8>) {
        let _ = self.tx.send(Cmd::Publish(topic.to_string(), qos, payload));
    }

    /// Waits (bounded) until every message handed over is acknowledged: the outbox and the
    /// direct sends are empty. Returns false on timeout.
    pub async fn wait_empty(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.progress.notified();
            if self.is_empty() {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.is_empty();
            }
        }
    }

    fn is_empty(&self) -> bool {
        let s = self.outbox.stats().unwrap();
        s.messages == 0 && self.counters.lock().unwrap().direct_inflight == 0
    }

    pub async fn stop(mut self) {
        let _ = self.tx.send(Cmd::Stop);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        let _ = self.outbox.close();
    }
}

struct Session {
    conn: Conn,
    last_rx: Instant,
    last_tx: Instant,
    receive_max: u32,
    used_pids: HashSet<u16>,
    next_pid: u16,
    direct: BTreeMap<u16, Direct>,
    /// Outbox rows sent and not yet acknowledged.
    leased: u32,
}

impl Session {
    fn fresh_pid(&mut self) -> u16 {
        for _ in 0..65535 {
            let p = self.next_pid;
            self.next_pid = self.next_pid % 65535 + 1;
            if !self.used_pids.contains(&p) {
                return p;
            }
        }
        panic!("no free packet id");
    }

    fn inflight(&self) -> u32 {
        self.direct.len() as u32 + self.leased
    }
}

async fn run_driver(
    cfg: DriverConfig,
    ob: Arc<Outbox>,
    counters: Arc<Mutex<DriverCounters>>,
    progress: Arc<Notify>,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
) {
    let mut session: Option<Session> = None;
    let mut next_attempt = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut direct_order = 0u64;
    loop {
        if session.is_none() && Instant::now() >= next_attempt {
            match Conn::connect(cfg.broker, &cfg.client_id, cfg.keepalive).await {
                Ok((conn, ack)) => {
                    let rm = ack
                        .properties
                        .as_ref()
                        .and_then(|p| p.receive_max)
                        .unwrap_or(65535);
                    ob.link_up(rm).unwrap();
                    counters.lock().unwrap().connects += 1;
                    let mut s = Session {
                        conn,
                        last_rx: Instant::now(),
                        last_tx: Instant::now(),
                        receive_max: rm as u32,
                        used_pids: HashSet::new(),
                        next_pid: 1,
                        direct: BTreeMap::new(),
                        leased: 0,
                    };
                    let ok = fill_window(&ob, &mut s).await.is_ok();
                    session = ok.then_some(s);
                    if !ok {
                        link_lost(&ob, &counters, None);
                    }
                    progress.notify_waiters();
                }
                Err(_) => next_attempt = Instant::now() + Duration::from_millis(100),
            }
        }
        let event = tokio::select! {
            cmd = rx.recv() => Ev::Cmd(cmd),
            r = async { session.as_mut().unwrap().conn.read().await }, if session.is_some() => Ev::Packet(Box::new(r)),
            _ = tick.tick() => Ev::Tick,
        };
        let mut lost = false;
        match event {
            Ev::Cmd(None) | Ev::Cmd(Some(Cmd::Stop)) => {
                if let Some(s) = session.take() {
                    give_back_direct(&ob, s.direct);
                }
                let _ = ob.flush();
                return;
            }
            Ev::Cmd(Some(Cmd::Publish(topic, qos, payload))) => {
                let bytes = encode_publish(&topic, qos, &payload);
                let can_direct = session
                    .as_ref()
                    .is_some_and(|s| s.inflight() < s.receive_max);
                let send_now = can_direct && ob.decide(qos).unwrap() == Decision::SendNow;
                if send_now {
                    let s = session.as_mut().unwrap();
                    let pid = s.fresh_pid();
                    let mut p = decode_publish(&bytes);
                    p.pkid = pid;
                    direct_order += 1;
                    s.used_pids.insert(pid);
                    s.direct.insert(
                        pid,
                        Direct {
                            order: direct_order,
                            qos,
                            bytes,
                            pubrec: false,
                        },
                    );
                    {
                        let mut c = counters.lock().unwrap();
                        c.direct_inflight += 1;
                        c.direct_total += 1;
                    }
                    s.last_tx = Instant::now();
                    lost = s.conn.send(&Packet::Publish(p)).await.is_err();
                } else {
                    let m = NewMessage {
                        qos,
                        expiry_secs: 0,
                        data: &bytes,
                    };
                    if ob.append(&m).is_err() {
                        counters.lock().unwrap().refused += 1;
                    }
                }
            }
            Ev::Packet(r) => match *r {
                Err(_) => lost = true,
                Ok(p) => {
                    let s = session.as_mut().unwrap();
                    s.last_rx = Instant::now();
                    lost = handle_packet(&ob, s, &counters, p).await.is_err();
                }
            },
            Ev::Tick => {
                if let Some(s) = session.as_mut() {
                    if s.last_rx.elapsed() > cfg.keepalive * 3 / 2 {
                        lost = true; // silent link: no PINGRESP, no ack
                    } else if s.last_tx.elapsed() >= cfg.keepalive / 2 {
                        s.last_tx = Instant::now();
                        lost = s.conn.send(&Packet::PingReq(PingReq)).await.is_err();
                    }
                }
            }
        }
        if !lost {
            if let Some(s) = session.as_mut() {
                lost = fill_window(&ob, s).await.is_err();
            }
        }
        if lost {
            let s = session.take();
            link_lost(&ob, &counters, s.map(|s| s.direct));
            next_attempt = Instant::now() + Duration::from_millis(100);
        }
        progress.notify_waiters();
    }
}

enum Ev {
    Cmd(Option<Cmd>),
    Packet(Box<std::io::Result<Packet>>),
    Tick,
}

/// Link lost: the outbox puts its in-flight rows back; direct sends go back at the head.
fn link_lost(ob: &Outbox, counters: &Mutex<DriverCounters>, direct: Option<BTreeMap<u16, Direct>>) {
    ob.link_down().unwrap();
    counters.lock().unwrap().link_losses += 1;
    if let Some(d) = direct {
        let n = d.len() as u64;
        give_back_direct(ob, d);
        let mut c = counters.lock().unwrap();
        c.direct_inflight -= n;
    }
}

/// Direct sends still unacknowledged go back to the head of the outbox, newest first, with
/// the packet id they used.
fn give_back_direct(ob: &Outbox, direct: BTreeMap<u16, Direct>) {
    let mut v: Vec<_> = direct.into_iter().collect();
    v.sort_by_key(|(_, d)| std::cmp::Reverse(d.order));
    for (pid, d) in v {
        let m = NewMessage {
            qos: d.qos,
            expiry_secs: 0,
            data: &d.bytes,
        };
        ob.requeue_front(&m, pid).expect("requeue a direct send");
    }
}

async fn handle_packet(
    ob: &Outbox,
    s: &mut Session,
    counters: &Mutex<DriverCounters>,
    p: Packet,
) -> std::io::Result<()> {
    let (pid, kind, reason) = match p {
        Packet::PubAck(a) => (a.pkid, AckKind::PubAck, puback_reason(a.reason)),
        Packet::PubRec(a) => (a.pkid, AckKind::PubRec, pubrec_reason(a.reason)),
        Packet::PubComp(a) => (
            a.pkid,
            AckKind::PubComp,
            if a.reason == PubCompReason::Success {
                0
            } else {
                0x92
            },
        ),
        _ => return Ok(()),
    };
    if let Some(d) = s.direct.get_mut(&pid) {
        let done = match kind {
            AckKind::PubRec if reason < 0x80 => {
                d.pubrec = true;
                false
            }
            _ => true,
        };
        if kind == AckKind::PubRec && reason < 0x80 {
            s.conn.send(&Packet::PubRel(PubRel::new(pid, None))).await?;
        }
        if done {
            s.direct.remove(&pid);
            s.used_pids.remove(&pid);
            counters.lock().unwrap().direct_inflight -= 1;
        }
        return Ok(());
    }
    match ob.ack(pid, kind, reason).unwrap() {
        AckOutcome::Progress => {
            s.conn.send(&Packet::PubRel(PubRel::new(pid, None))).await?;
        }
        AckOutcome::Done | AckOutcome::Rejected => {
            s.used_pids.remove(&pid);
            s.leased -= 1;
        }
        AckOutcome::NotOurs => {}
    }
    Ok(())
}

/// Replays stored rows while the window (capped by Receive Maximum) has room.
async fn fill_window(ob: &Outbox, s: &mut Session) -> std::io::Result<()> {
    while s.inflight() < s.receive_max {
        let Some(row) = ob.lease().unwrap() else {
            break;
        };
        let mut p = decode_publish(&row.data);
        let pid = if row.packet_id != 0 && !s.used_pids.contains(&row.packet_id) {
            p.dup = true;
            row.packet_id
        } else {
            s.fresh_pid()
        };
        p.pkid = pid;
        s.used_pids.insert(pid);
        ob.bind(row.seq, pid).unwrap();
        s.leased += 1;
        s.last_tx = Instant::now();
        s.conn.send(&Packet::Publish(p)).await?;
    }
    Ok(())
}

// ---- subscriber -----------------------------------------------------------------------------

/// What a subscriber received: arrival time and payload, in arrival order.
pub type Received = Arc<Mutex<Vec<(Instant, Vec<u8>)>>>;

/// Receives everything on `test/#` at QoS 2 with a persistent session; records payloads in
/// arrival order. Reconnects when the broker restarts.
pub struct Subscriber {
    pub received: Received,
    pub arrived: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    pub async fn start(broker: SocketAddr, client_id: &str) -> Subscriber {
        let received = Arc::new(Mutex::new(Vec::new()));
        let arrived = Arc::new(Notify::new());
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(run_subscriber(
            broker,
            client_id.to_string(),
            Arc::clone(&received),
            Arc::clone(&arrived),
            ready_tx,
        ));
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .expect("subscriber did not subscribe")
            .unwrap();
        Subscriber {
            received,
            arrived,
            task,
        }
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// Waits (bounded) until `pred` holds on what was received.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&[(Instant, Vec<u8>)]) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let n = self.arrived.notified();
            if pred(&self.received.lock().unwrap()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, n).await.is_err() {
                return pred(&self.received.lock().unwrap());
            }
        }
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

async fn run_subscriber(
    broker: SocketAddr,
    id: String,
    received: Received,
    arrived: Arc<Notify>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    // QoS 2 ids received and not yet released: a PUBLISH with one of them is a resend.
    let mut awaiting_rel: HashSet<u16> = HashSet::new();
    for _ in 0..100_000 {
        let Ok((mut conn, ack)) = Conn::connect(broker, &id, Duration::from_secs(30)).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if !ack.session_present {
            // A new session: QoS 2 state of the old one is gone with it.
            awaiting_rel.clear();
            let mut sub = Subscribe::new(Filter::new("test/#", QoS::ExactlyOnce), None);
            sub.pkid = 1;
            if conn.send(&Packet::Subscribe(sub)).await.is_err() {
                continue;
            }
        }
        loop {
            let p = match tokio::time::timeout(Duration::from_secs(20), conn.read()).await {
                Ok(Ok(p)) => p,
                Ok(Err(_)) => break,
                Err(_) => {
                    if conn.send(&Packet::PingReq(PingReq)).await.is_err() {
                        break;
                    }
                    continue;
                }
            };
            let r = match p {
                Packet::SubAck(_) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                    Ok(())
                }
                Packet::ConnAck(_) => Ok(()),
                Packet::Publish(p) => {
                    let fresh = p.qos != QoS::ExactlyOnce || awaiting_rel.insert(p.pkid);
                    if fresh {
                        received
                            .lock()
                            .unwrap()
                            .push((Instant::now(), p.payload.to_vec()));
                        arrived.notify_waiters();
                    }
                    match p.qos {
                        QoS::AtLeastOnce => {
                            conn.send(&Packet::PubAck(PubAck::new(p.pkid, None))).await
                        }
                        QoS::ExactlyOnce => {
                            conn.send(&Packet::PubRec(PubRec::new(p.pkid, None))).await
                        }
                        QoS::AtMostOnce => Ok(()),
                    }
                }
                Packet::PubRel(r) => {
                    awaiting_rel.remove(&r.pkid);
                    conn.send(&Packet::PubComp(PubComp::new(r.pkid, None)))
                        .await
                }
                _ => Ok(()),
            };
            if r.is_err() {
                break;
            }
        }
    }
}

// ---- publisher ------------------------------------------------------------------------------

/// The reported forwards: test1..test5 at QoS 1,1,2,2,2; test1 five times the others' rate.
pub const TOPICS: [(&str, u8, u32); 5] = [
    ("test/test1", 1, 5),
    ("test/test2", 1, 1),
    ("test/test3", 2, 1),
    ("test/test4", 2, 1),
    ("test/test5", 2, 1),
];

/// Publishes at `scale` x the reported rates (test1 at 5*scale msg/s, the others at
/// 1*scale) until `stop` is set; `sent` counts per topic.
pub fn spawn_publisher(
    driver: Arc<Driver>,
    scale: u32,
    sent: Arc<Mutex<HashMap<String, u64>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            tick.tick().await;
            let elapsed = start.elapsed().as_secs_f64();
            for (topic, qos, rate) in TOPICS {
                let due = (elapsed * (rate * scale) as f64) as u64;
                let mut s = sent.lock().unwrap();
                let n = s.entry(topic.to_string()).or_insert(0);
                while *n < due {
                    *n += 1;
                    driver.publish(topic, qos, payload(topic, *n));
                }
            }
        }
    })
}

// ---- counting -------------------------------------------------------------------------------

/// Payload "<topic>:<n>".
pub fn payload(topic: &str, n: u64) -> Vec<u8> {
    format!("{topic}:{n}").into_bytes()
}

fn parse_payload(p: &[u8]) -> Option<(String, u64)> {
    let s = std::str::from_utf8(p).ok()?;
    let (t, n) = s.rsplit_once(':')?;
    Some((t.to_string(), n.parse().ok()?))
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
}

/// Compares what was sent (per topic, numbers 1..=n) with what arrived.
pub fn tally(sent: &HashMap<String, u64>, received: &[(Instant, Vec<u8>)]) -> Report {
    let mut seen: HashSet<(String, u64)> = HashSet::new();
    let mut max_seen: HashMap<String, u64> = HashMap::new();
    let mut r = Report {
        sent: sent.values().sum(),
        ..Report::default()
    };
    for (_, p) in received {
        let Some((t, n)) = parse_payload(p) else {
            continue;
        };
        r.received += 1;
        if !seen.insert((t.clone(), n)) {
            r.duplicated += 1;
            continue;
        }
        let m = max_seen.entry(t).or_insert(0);
        if n < *m {
            r.out_of_order += 1;
        } else {
            *m = n;
        }
    }
    for (t, &n) in sent {
        for i in 1..=n {
            if !seen.contains(&(t.clone(), i)) {
                r.lost += 1;
            }
        }
    }
    r
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent {} received {} lost {} duplicated {} out of order {}",
            self.sent, self.received, self.lost, self.duplicated, self.out_of_order
        )
    }
}
