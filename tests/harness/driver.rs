//! The driver: plays the NanoNNG client's part over a real MQTT 5 connection, with the outbox
//! deciding every message, the way the patched bridge does:
//! - a new message goes through [`Outbox::decide`]: `SendNow` (link up, nothing held, window
//!   room) is published at once and tracked here until its ack; `Store` is appended;
//! - on CONNACK (clean_start = false, session expiry 1 h): [`Outbox::link_up`] with the
//!   broker's Receive Maximum, then rows are leased and sent while the window has room; a row
//!   that was sent before reuses its packet id with DUP when the session persisted, or gets a
//!   fresh id not in use; [`Outbox::bind`] records the id;
//! - PUBACK / PUBREC / PUBCOMP go to [`Outbox::ack`]; PUBREC is answered with PUBREL; a row
//!   whose PUBREC arrived before a link loss is resumed with PUBREL, not a second PUBLISH;
//! - a lost link (RST, EOF, a write timeout, or silence longer than 1.5 keepalives: no
//!   PINGRESP, no ack) calls [`Outbox::link_down`] and gives unacknowledged direct sends back
//!   with [`Outbox::requeue_front`], newest first, with their packet ids;
//! - reconnects every `reconnect_delay`; messages keep being stored while it connects.
//!
//! The driver is one tokio task; [`Driver::publish`] queues a message to it (cheap, never
//! blocks). Everything it did is counted in [`DriverCounters`] and, per message, in
//! [`Observed`].

use super::mqtt::{
    decode_publish, encode_publish, puback_code, pubcomp_code, pubrec_code, Conn, ConnectOptions,
};
use nmq_outbox::{AckKind, AckOutcome, Config, Decision, Error, NewMessage, Outbox, Stats};
use rumqttc::v5::mqttbytes::v5::{ConnAck, Packet, PingReq, PubRel, Publish};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

/// How to run a driver.
#[derive(Clone)]
pub struct DriverConfig {
    /// Where to connect (the broker, or a [`super::Proxy`] in front of it).
    pub broker: SocketAddr,
    pub client_id: String,
    /// MQTT keepalive; the link counts as lost after 1.5 keepalives without a byte from the
    /// broker (PINGREQ goes out after half a keepalive of silence from our side).
    pub keepalive: Duration,
    /// The outbox: database path, bridge name, window, group commit, limits, logger.
    pub outbox: Config,
    /// Record every PUBLISH written ([`Observed::wire`]); turn off for long benchmarks.
    pub record_wire: bool,
    /// Pause after a failed connect or a lost link before the next attempt.
    pub reconnect_delay: Duration,
}

impl DriverConfig {
    /// Client id "bridge", keepalive 1 s, bridge "bridge" in `db` with window 32 and a 5 ms
    /// group commit, wire recording on, reconnect every 100 ms.
    pub fn new(broker: SocketAddr, db: impl Into<PathBuf>) -> Self {
        let mut outbox = Config::new(db, "bridge");
        outbox.group_commit_ms = 5;
        DriverConfig {
            broker,
            client_id: "bridge".into(),
            keepalive: Duration::from_secs(1),
            outbox,
            record_wire: true,
            reconnect_delay: Duration::from_millis(100),
        }
    }
}

/// What the driver did. G1 bookkeeping: once idle (nothing in flight, outbox empty),
/// `handed == direct_acked + direct_rejected + refused + outbox acked + outbox dropped`
/// (see [`Driver::g1_check`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DriverCounters {
    /// A session is established now.
    pub connected: bool,
    /// CONNACKs received, and how many of them had no session (session_present = 0).
    pub connects: u64,
    pub fresh_sessions: u64,
    pub link_losses: u64,
    /// Messages given to [`Driver::publish`], and how many of them the driver has decided.
    pub handed: u64,
    pub decided: u64,
    /// Sent directly (SendNow); of these: acknowledged, rejected (reason >= 0x80), still in
    /// flight, and given back to the outbox at a link loss or a stop.
    pub direct_total: u64,
    pub direct_acked: u64,
    pub direct_rejected: u64,
    pub direct_inflight: u64,
    pub requeued: u64,
    /// Appended to the outbox (Store).
    pub appended: u64,
    /// Refused by the outbox (the publisher is told: not a silent loss), in total and with
    /// `Error::NoSpace`; the last refusal's error.
    pub refused: u64,
    pub refused_nospace: u64,
    pub last_refusal: Option<String>,
    /// PUBLISH packets written, and those with DUP set.
    pub publish_packets: u64,
    pub dup_packets: u64,
    /// Rows resumed with PUBREL after a link loss (their PUBREC had arrived).
    pub pubrel_resumes: u64,
    /// PUBCOMP with reason 0x92 (packet id not found): the remote had completed it already.
    pub pubcomp_not_found: u64,
    /// The most outbox rows in flight at once (leased, not yet completed): the replay fills
    /// the window when this reaches it.
    pub max_leased: u64,
}

/// One PUBLISH written.
#[derive(Debug, Clone)]
pub struct WireSend {
    pub at: Instant,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub packet_id: u16,
    pub dup: bool,
    /// A direct send (SendNow) rather than an outbox row.
    pub direct: bool,
}

/// Per-message observations.
#[derive(Debug, Default, Clone)]
pub struct Observed {
    /// Every PUBLISH written, in order (when `record_wire`).
    pub wire: Vec<WireSend>,
    /// Payloads sent and not yet completed when a link was lost: the only messages allowed to
    /// arrive twice (G7).
    pub inflight_at_loss: HashSet<Vec<u8>>,
    /// Payloads the outbox refused (an error returned to the publisher).
    pub refused: Vec<Vec<u8>>,
}

enum Cmd {
    Publish(String, u8, Vec<u8>),
    Sync(oneshot::Sender<()>),
    Stop,
}

struct Shared {
    outbox: Arc<Outbox>,
    counters: Mutex<DriverCounters>,
    observed: Mutex<Observed>,
    /// Notified after every event the driver handled.
    progress: Notify,
}

/// A running driver. Start it inside a tokio runtime.
pub struct Driver {
    pub outbox: Arc<Outbox>,
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Cmd>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Driver {
    /// Opens the outbox and starts the driver task; panics if the outbox cannot be opened.
    pub fn start(cfg: DriverConfig) -> Driver {
        Self::try_start(cfg).expect("open the outbox")
    }

    pub fn try_start(cfg: DriverConfig) -> Result<Driver, Error> {
        let outbox = Arc::new(Outbox::open(cfg.outbox.clone())?);
        let shared = Arc::new(Shared {
            outbox: Arc::clone(&outbox),
            counters: Mutex::new(DriverCounters::default()),
            observed: Mutex::new(Observed::default()),
            progress: Notify::new(),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let core = Core {
            cfg,
            sh: Arc::clone(&shared),
            pubrec: HashSet::new(),
            direct_order: 0,
        };
        let task = tokio::spawn(core.run(rx));
        Ok(Driver {
            outbox,
            shared,
            tx,
            task: Some(task),
        })
    }

    /// Hands a message to the bridge (QoS 0, 1 or 2). Never blocks.
    pub fn publish(&self, topic: &str, qos: u8, payload: Vec<u8>) {
        self.shared.counters.lock().unwrap().handed += 1;
        let _ = self.tx.send(Cmd::Publish(topic.to_string(), qos, payload));
    }

    /// Returns once every message handed before is decided (sent, stored or refused).
    pub async fn sync(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Cmd::Sync(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// [`Driver::sync`], then commits: every message handed before that was stored is on disk.
    pub async fn flush(&self) -> nmq_outbox::Result<()> {
        self.sync().await;
        self.outbox.flush()
    }

    pub fn counters(&self) -> DriverCounters {
        self.shared.counters.lock().unwrap().clone()
    }

    /// The per-message observations (locked: keep the guard short).
    pub fn observed(&self) -> MutexGuard<'_, Observed> {
        self.shared.observed.lock().unwrap()
    }

    pub fn stats(&self) -> Stats {
        self.outbox.stats().expect("outbox stats")
    }

    /// Nothing held: every message handed over is decided, the outbox is empty and no direct
    /// send waits for its ack.
    pub fn is_empty(&self) -> bool {
        let c = self.counters();
        c.decided == c.handed && c.direct_inflight == 0 && self.stats().messages == 0
    }

    /// Waits (bounded) until `pred` holds; re-checked after every driver event. False on
    /// timeout.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&DriverCounters, &Stats) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.shared.progress.notified();
            if pred(&self.counters(), &self.stats()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return pred(&self.counters(), &self.stats());
            }
        }
    }

    /// Waits (bounded) until every message handed over is acknowledged or refused.
    pub async fn wait_empty(&self, timeout: Duration) -> bool {
        self.wait_for(timeout, |c, s| {
            c.decided == c.handed && c.direct_inflight == 0 && s.messages == 0
        })
        .await
    }

    /// Waits (bounded) for a session with the broker.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        self.wait_for(timeout, |c, _| c.connected).await
    }

    /// G1 once idle: every message handed over was acknowledged by the remote, refused with an
    /// error, or counted dropped by the outbox with its reason. Err describes the difference.
    /// Valid for an outbox opened empty (its counters start at this open).
    pub fn g1_check(&self) -> Result<(), String> {
        let c = self.counters();
        let s = self.stats();
        let dropped = s.dropped_full + s.dropped_expired + s.dropped_rejected;
        let accounted = c.direct_acked + c.direct_rejected + c.refused + s.acked + dropped;
        let pending = c.direct_inflight + s.messages + (c.handed - c.decided);
        if c.handed == accounted && pending == 0 && s.enqueued == c.appended + c.requeued {
            Ok(())
        } else {
            Err(format!(
                "G1: handed {} != direct acked {} + direct rejected {} + refused {} + outbox acked \
                 {} + outbox dropped {} (still pending {}; outbox enqueued {} vs appended {} + \
                 requeued {})",
                c.handed,
                c.direct_acked,
                c.direct_rejected,
                c.refused,
                s.acked,
                dropped,
                pending,
                s.enqueued,
                c.appended,
                c.requeued
            ))
        }
    }

    /// Stops: unacknowledged direct sends go back to the outbox, DISCONNECT, commit, close.
    pub async fn stop(mut self) {
        let _ = self.tx.send(Cmd::Stop);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        let _ = self.outbox.close();
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// A direct send, tracked until its ack.
struct Direct {
    order: u64,
    qos: u8,
    bytes: Vec<u8>,
    payload: Vec<u8>,
}

/// One connection's state.
struct Session {
    conn: Conn,
    session_present: bool,
    keepalive: Duration,
    last_rx: Instant,
    last_tx: Instant,
    receive_max: u32,
    /// Packet ids in use on this connection (direct sends and leased rows).
    used: HashSet<u16>,
    next_pid: u16,
    direct: BTreeMap<u16, Direct>,
    /// Leased rows sent and not completed: packet id -> payload.
    leased: HashMap<u16, Vec<u8>>,
}

impl Session {
    fn fresh_pid(&mut self) -> u16 {
        for _ in 0..65535 {
            let p = self.next_pid;
            self.next_pid = self.next_pid % 65535 + 1;
            if !self.used.contains(&p) {
                self.used.insert(p);
                return p;
            }
        }
        panic!("no free packet id");
    }

    fn inflight(&self) -> u32 {
        (self.direct.len() + self.leased.len()) as u32
    }

    async fn send(&mut self, p: &Packet) -> io::Result<()> {
        self.last_tx = Instant::now();
        tokio::time::timeout(self.keepalive, self.conn.send(p))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write timed out"))?
    }
}

type Connecting = Pin<Box<dyn Future<Output = io::Result<(Conn, ConnAck)>> + Send>>;

enum Ev {
    Cmd(Option<Cmd>),
    Packet(io::Result<Packet>),
    Connected(io::Result<(Conn, ConnAck)>),
    Tick,
}

struct Core {
    cfg: DriverConfig,
    sh: Arc<Shared>,
    /// Packet ids whose PUBREC arrived and whose PUBCOMP did not yet (across reconnects).
    pubrec: HashSet<u16>,
    direct_order: u64,
}

impl Core {
    fn counters(&self) -> MutexGuard<'_, DriverCounters> {
        self.sh.counters.lock().unwrap()
    }

    fn record(&self, payload: &[u8], qos: u8, packet_id: u16, dup: bool, direct: bool) {
        {
            let mut c = self.counters();
            c.publish_packets += 1;
            c.dup_packets += u64::from(dup);
        }
        if self.cfg.record_wire {
            self.sh.observed.lock().unwrap().wire.push(WireSend {
                at: Instant::now(),
                payload: payload.to_vec(),
                qos,
                packet_id,
                dup,
                direct,
            });
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Cmd>) {
        let ob = Arc::clone(&self.sh.outbox);
        let mut session: Option<Session> = None;
        let mut connecting: Option<Connecting> = None;
        let mut next_attempt = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if session.is_none() && connecting.is_none() && Instant::now() >= next_attempt {
                let opts = ConnectOptions::persistent(&self.cfg.client_id, self.cfg.keepalive);
                let broker = self.cfg.broker;
                connecting = Some(Box::pin(
                    async move { Conn::connect_with(broker, &opts).await },
                ));
            }
            let ev = tokio::select! {
                cmd = rx.recv() => Ev::Cmd(cmd),
                r = async { session.as_mut().unwrap().conn.read().await }, if session.is_some() => Ev::Packet(r),
                r = async { connecting.as_mut().unwrap().await }, if connecting.is_some() => Ev::Connected(r),
                _ = tick.tick() => Ev::Tick,
            };
            let mut lost = false;
            match ev {
                Ev::Cmd(None) | Ev::Cmd(Some(Cmd::Stop)) => {
                    if let Some(mut s) = session.take() {
                        let direct = std::mem::take(&mut s.direct);
                        self.give_back(&ob, direct);
                        let _ =
                            tokio::time::timeout(Duration::from_secs(1), s.conn.disconnect()).await;
                    }
                    let _ = ob.flush();
                    self.counters().connected = false;
                    self.sh.progress.notify_waiters();
                    return;
                }
                Ev::Cmd(Some(Cmd::Sync(done))) => {
                    let _ = done.send(());
                }
                Ev::Cmd(Some(Cmd::Publish(topic, qos, payload))) => {
                    lost = self
                        .on_publish(&ob, session.as_mut(), &topic, qos, payload)
                        .await;
                }
                Ev::Connected(r) => {
                    connecting = None;
                    match r {
                        Ok((conn, ack)) => {
                            let mut s = self.on_connack(&ob, conn, ack);
                            lost = self.fill_window(&ob, &mut s).await.is_err();
                            session = Some(s);
                        }
                        Err(_) => next_attempt = Instant::now() + self.cfg.reconnect_delay,
                    }
                }
                Ev::Packet(r) => {
                    let s = session.as_mut().unwrap();
                    lost = match r {
                        Err(_) => true,
                        Ok(p) => {
                            s.last_rx = Instant::now();
                            self.on_packet(&ob, s, p).await.is_err()
                        }
                    };
                }
                Ev::Tick => {
                    if let Some(s) = session.as_mut() {
                        if s.last_rx.elapsed() > s.keepalive * 3 / 2 {
                            lost = true; // silence: no PINGRESP, no ack
                        } else if s.last_tx.elapsed() >= s.keepalive / 2 {
                            lost = s.send(&Packet::PingReq(PingReq)).await.is_err();
                        }
                    }
                }
            }
            if !lost {
                if let Some(s) = session.as_mut() {
                    lost = self.fill_window(&ob, s).await.is_err();
                }
            }
            if lost {
                if let Some(s) = session.take() {
                    self.link_lost(&ob, s);
                }
                next_attempt = Instant::now() + self.cfg.reconnect_delay;
            }
            self.sh.progress.notify_waiters();
        }
    }

    fn on_connack(&mut self, ob: &Outbox, conn: Conn, ack: ConnAck) -> Session {
        let props = ack.properties.as_ref();
        let rm = props.and_then(|p| p.receive_max).unwrap_or(65535);
        let keepalive = props
            .and_then(|p| p.server_keep_alive)
            .map_or(self.cfg.keepalive, |k| Duration::from_secs(k.max(1) as u64));
        if !ack.session_present {
            // The remote has no state for our packet ids: nothing to resume with PUBREL.
            self.pubrec.clear();
        }
        ob.link_up(rm).expect("link_up");
        {
            let mut c = self.counters();
            c.connected = true;
            c.connects += 1;
            c.fresh_sessions += u64::from(!ack.session_present);
        }
        Session {
            conn,
            session_present: ack.session_present,
            keepalive,
            last_rx: Instant::now(),
            last_tx: Instant::now(),
            receive_max: rm as u32,
            used: HashSet::new(),
            next_pid: 1,
            direct: BTreeMap::new(),
            leased: HashMap::new(),
        }
    }

    /// A new message: send now or store. True when the link was lost doing it.
    async fn on_publish(
        &mut self,
        ob: &Outbox,
        session: Option<&mut Session>,
        topic: &str,
        qos: u8,
        payload: Vec<u8>,
    ) -> bool {
        let bytes = encode_publish(topic, qos, &payload);
        let s = session.filter(|s| s.inflight() < s.receive_max);
        let decision = match &s {
            Some(_) => ob.decide(qos).expect("decide"),
            None => Decision::Store,
        };
        let lost = match (decision, s) {
            (Decision::SendNow, Some(s)) if qos == 0 => {
                // QoS 0: fire and forget, nothing to track.
                {
                    let mut c = self.counters();
                    c.direct_total += 1;
                    c.direct_acked += 1;
                }
                self.record(&payload, 0, 0, false, true);
                s.send(&Packet::Publish(decode_publish(&bytes)))
                    .await
                    .is_err()
            }
            (Decision::SendNow, Some(s)) => {
                let pid = s.fresh_pid();
                let mut p = decode_publish(&bytes);
                p.pkid = pid;
                self.direct_order += 1;
                s.direct.insert(
                    pid,
                    Direct {
                        order: self.direct_order,
                        qos,
                        bytes,
                        payload: payload.clone(),
                    },
                );
                {
                    let mut c = self.counters();
                    c.direct_total += 1;
                    c.direct_inflight += 1;
                }
                self.record(&payload, qos, pid, false, true);
                s.send(&Packet::Publish(p)).await.is_err()
            }
            _ => {
                let m = NewMessage {
                    qos,
                    expiry_secs: 0,
                    data: &bytes,
                };
                match ob.append(&m) {
                    Ok(_) => self.counters().appended += 1,
                    Err(e) => {
                        let mut c = self.counters();
                        c.refused += 1;
                        c.refused_nospace += u64::from(e == Error::NoSpace);
                        c.last_refusal = Some(e.to_string());
                        drop(c);
                        self.sh.observed.lock().unwrap().refused.push(payload);
                    }
                }
                false
            }
        };
        self.counters().decided += 1;
        lost
    }

    async fn on_packet(&mut self, ob: &Outbox, s: &mut Session, p: Packet) -> io::Result<()> {
        let (pid, kind, reason) = match p {
            Packet::PubAck(a) => (a.pkid, AckKind::PubAck, puback_code(a.reason)),
            Packet::PubRec(a) => (a.pkid, AckKind::PubRec, pubrec_code(a.reason)),
            Packet::PubComp(a) => (a.pkid, AckKind::PubComp, pubcomp_code(a.reason)),
            Packet::Disconnect(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "DISCONNECT",
                ))
            }
            _ => return Ok(()),
        };
        // PUBCOMP has two reasons: success, and 0x92 "packet id not found", the answer to a
        // resumed PUBREL when the remote had already completed the exchange. Both complete it.
        let reason = if kind == AckKind::PubComp {
            if reason == 0x92 {
                self.counters().pubcomp_not_found += 1;
            }
            0
        } else {
            reason
        };
        if kind == AckKind::PubRec && reason < 0x80 {
            self.pubrec.insert(pid);
        } else {
            self.pubrec.remove(&pid);
        }
        if s.direct.contains_key(&pid) {
            if kind == AckKind::PubRec && reason < 0x80 {
                return s.send(&Packet::PubRel(PubRel::new(pid, None))).await;
            }
            s.direct.remove(&pid);
            s.used.remove(&pid);
            let mut c = self.counters();
            c.direct_inflight -= 1;
            if reason >= 0x80 {
                c.direct_rejected += 1;
            } else {
                c.direct_acked += 1;
            }
            return Ok(());
        }
        match ob.ack(pid, kind, reason).expect("ack") {
            AckOutcome::Progress => s.send(&Packet::PubRel(PubRel::new(pid, None))).await,
            AckOutcome::Done | AckOutcome::Rejected | AckOutcome::Retry => {
                s.used.remove(&pid);
                s.leased.remove(&pid);
                Ok(())
            }
            AckOutcome::NotOurs => Ok(()),
        }
    }

    /// Replays stored rows while the window (capped by Receive Maximum) has room.
    async fn fill_window(&mut self, ob: &Outbox, s: &mut Session) -> io::Result<()> {
        while s.inflight() < s.receive_max {
            let Some(row) = ob.lease().expect("lease") else {
                break;
            };
            let mut p: Publish = decode_publish(&row.data);
            let reuse = s.session_present && row.packet_id != 0 && !s.used.contains(&row.packet_id);
            let pid = if reuse {
                s.used.insert(row.packet_id);
                row.packet_id
            } else {
                s.fresh_pid()
            };
            ob.bind(row.seq, pid).expect("bind");
            s.leased.insert(pid, p.payload.to_vec());
            {
                let mut c = self.counters();
                c.max_leased = c.max_leased.max(s.leased.len() as u64);
            }
            if reuse && row.qos == 2 && (row.released || self.pubrec.contains(&pid)) {
                // The remote has the message (PUBREC came): finish the exchange, do not send
                // the PUBLISH again (it could be delivered twice).
                self.counters().pubrel_resumes += 1;
                s.send(&Packet::PubRel(PubRel::new(pid, None))).await?;
                continue;
            }
            p.pkid = pid;
            p.dup = reuse;
            self.record(&p.payload, row.qos, pid, reuse, false);
            s.send(&Packet::Publish(p)).await?;
        }
        Ok(())
    }

    /// The link is gone: the outbox takes its in-flight rows back, direct sends go back to the
    /// head of the outbox.
    fn link_lost(&mut self, ob: &Outbox, mut s: Session) {
        {
            let mut o = self.sh.observed.lock().unwrap();
            o.inflight_at_loss
                .extend(s.direct.values().map(|d| d.payload.clone()));
            o.inflight_at_loss.extend(s.leased.values().cloned());
        }
        ob.link_down().expect("link_down");
        let direct = std::mem::take(&mut s.direct);
        self.give_back(ob, direct);
        let mut c = self.counters();
        c.link_losses += 1;
        c.connected = false;
    }

    /// Direct sends not yet completed go back to the head of the outbox, newest first, with
    /// the packet id they used (a resend reuses it with DUP, or PUBREL after a PUBREC).
    fn give_back(&mut self, ob: &Outbox, direct: BTreeMap<u16, Direct>) {
        let mut v: Vec<_> = direct.into_iter().collect();
        v.sort_by_key(|(_, d)| std::cmp::Reverse(d.order));
        for (pid, d) in v {
            let m = NewMessage {
                qos: d.qos,
                expiry_secs: 0,
                data: &d.bytes,
            };
            let r = ob.requeue_front(&m, pid);
            let mut c = self.counters();
            c.direct_inflight -= 1;
            match r {
                Ok(_) => c.requeued += 1,
                // Could not be stored (disk full): told, like a refused append.
                Err(e) => {
                    c.refused += 1;
                    c.refused_nospace += u64::from(e == Error::NoSpace);
                    c.last_refusal = Some(format!("requeue_front: {e}"));
                    drop(c);
                    self.sh.observed.lock().unwrap().refused.push(d.payload);
                }
            }
        }
    }
}
