//! A fault-injecting TCP proxy on 127.0.0.1 in front of one upstream address (the broker).
//!
//! One task per connection relays both directions through queues, so a mode can hold or delay
//! one direction without blocking the other. The mode applies to every connection at once and
//! can change at any time ([`Proxy::set`]).

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bytes pass both ways.
    Pass,
    /// The link is cut: every relayed connection is reset (SO_LINGER 0 then close: RST to both
    /// ends); new connections are accepted and reset at once.
    Cut,
    /// Silent blackhole: sockets stay open, nothing passes either way, no RST, no FIN. Bytes
    /// are held like unacknowledged TCP segments: if the link comes back while the connection
    /// is still open at both ends they are delivered, as a TCP retransmission would; a client
    /// that gave up in the meantime has its close delivered then. A connection opened during
    /// the blackhole reaches the broker only when the blackhole ends. Each end has to notice
    /// the silence by itself (keepalive, ack timeout).
    Blackhole,
    /// Client-to-broker bytes pass; broker-to-client bytes (CONNACK, PUBACK, PUBREC, PUBCOMP,
    /// PINGRESP) are held until the mode changes: the broker gets every message, the client
    /// sees no ack.
    WithholdAcks,
    /// Both ways pass; every broker-to-client byte is delivered this much later (order kept,
    /// the other direction is not slowed).
    SlowAcks(Duration),
}

impl Mode {
    fn c2s_open(self) -> bool {
        matches!(self, Mode::Pass | Mode::WithholdAcks | Mode::SlowAcks(_))
    }

    /// The delay of broker-to-client bytes, None while they are held.
    fn s2c_delay(self) -> Option<Duration> {
        match self {
            Mode::Pass => Some(Duration::ZERO),
            Mode::SlowAcks(d) => Some(d),
            _ => None,
        }
    }
}

/// The proxy. Dropping it resets every relayed connection.
pub struct Proxy {
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
    accepted: Arc<AtomicU64>,
    accept_task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 (in mode [`Mode::Pass`]); must run in a tokio
    /// runtime.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = watch::channel(Mode::Pass);
        let accepted = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&accepted);
        let accept_task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(relay(client, upstream, rx.clone()));
            }
        });
        Proxy {
            addr,
            mode: tx,
            accepted,
            accept_task,
        }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }
    pub fn cut(&self) {
        self.set(Mode::Cut)
    }
    pub fn blackhole(&self) {
        self.set(Mode::Blackhole)
    }
    pub fn withhold_acks(&self) {
        self.set(Mode::WithholdAcks)
    }
    pub fn slow_acks(&self, delay: Duration) {
        self.set(Mode::SlowAcks(delay))
    }
    /// Back to [`Mode::Pass`].
    pub fn restore(&self) {
        self.set(Mode::Pass)
    }
    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept_task.abort();
        self.mode.send_replace(Mode::Cut);
    }
}

/// Bytes of one direction not yet delivered, with the time they were read.
#[derive(Default)]
struct Queue {
    q: VecDeque<(Instant, Vec<u8>)>,
    bytes: usize,
    /// The source sent FIN (or failed).
    done: bool,
    /// The source failed (RST): reset the other end too once the queue is delivered.
    failed: bool,
    /// FIN passed on to the destination.
    shut: bool,
}

/// Stop reading a source while this much is queued from it (flow control).
const QUEUE_CAP: usize = 8 << 20;

impl Queue {
    fn on_read(&mut self, r: io::Result<usize>, buf: &[u8]) {
        match r {
            Ok(0) => self.done = true,
            Ok(n) => {
                self.q.push_back((Instant::now(), buf[..n].to_vec()));
                self.bytes += n;
            }
            Err(_) => {
                self.done = true;
                self.failed = true;
            }
        }
    }

    fn front(&self) -> &[u8] {
        self.q.front().map_or(&[], |(_, v)| v)
    }

    fn consume(&mut self, n: usize) {
        let front = &mut self.q.front_mut().unwrap().1;
        if n >= front.len() {
            self.q.pop_front();
        } else {
            front.drain(..n);
        }
        self.bytes -= n;
    }

    fn readable(&self) -> bool {
        !self.done && self.bytes < QUEUE_CAP
    }
}

// Every return drops both sockets with SO_LINGER 0: an RST to each end, as a cut link gives.
async fn relay(mut client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<Mode>) {
    #[allow(deprecated)] // set_linger: a blocking close is not a concern with linger 0
    let _ = client.set_linger(Some(Duration::ZERO));
    let _ = client.set_nodelay(true);
    let mut c2s = Queue::default();
    let mut buf = vec![0u8; 16384];
    // No upstream connection while the client's bytes cannot pass (a SYN into a blackhole).
    loop {
        let m = *mode.borrow_and_update();
        if m == Mode::Cut {
            return;
        }
        if m.c2s_open() {
            break;
        }
        tokio::select! {
            r = client.read(&mut buf), if c2s.readable() => c2s.on_read(r, &buf),
            r = mode.changed() => if r.is_err() { return },
        }
    }
    if c2s.done && c2s.q.is_empty() {
        return; // the client gave up before the link came back
    }
    let Ok(Ok(server)) =
        tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(upstream)).await
    else {
        return;
    };
    #[allow(deprecated)]
    let _ = server.set_linger(Some(Duration::ZERO));
    let _ = server.set_nodelay(true);
    pump(client, server, c2s, mode).await;
}

async fn pump(
    mut client: TcpStream,
    mut server: TcpStream,
    mut c2s: Queue,
    mut mode: watch::Receiver<Mode>,
) {
    let mut s2c = Queue::default();
    let (mut cr, mut cw) = client.split();
    let (mut sr, mut sw) = server.split();
    let (mut cbuf, mut sbuf) = (vec![0u8; 16384], vec![0u8; 16384]);
    loop {
        let m = *mode.borrow_and_update();
        if m == Mode::Cut {
            return;
        }
        let c2s_open = m.c2s_open();
        let s2c_delay = m.s2c_delay();
        // A direction ends once its source is done and everything read was delivered.
        if c2s_open && c2s.done && c2s.q.is_empty() && !c2s.shut {
            if c2s.failed {
                return;
            }
            let _ = sw.shutdown().await;
            c2s.shut = true;
        }
        if s2c_delay.is_some() && s2c.done && s2c.q.is_empty() && !s2c.shut {
            if s2c.failed {
                return;
            }
            let _ = cw.shutdown().await;
            s2c.shut = true;
        }
        if c2s.shut && s2c.shut {
            return;
        }
        let now = Instant::now();
        let c2s_ready = c2s_open && !c2s.q.is_empty();
        let s2c_due = match (s2c_delay, s2c.q.front()) {
            (Some(d), Some((t, _))) => Some(*t + d),
            _ => None,
        };
        let s2c_ready = s2c_due.is_some_and(|t| t <= now);
        let wake = s2c_due.filter(|t| *t > now);
        tokio::select! {
            r = cr.read(&mut cbuf), if c2s.readable() => c2s.on_read(r, &cbuf),
            r = sr.read(&mut sbuf), if s2c.readable() => s2c.on_read(r, &sbuf),
            r = sw.write(c2s.front()), if c2s_ready => match r {
                Ok(n) if n > 0 => c2s.consume(n),
                _ => return,
            },
            r = cw.write(s2c.front()), if s2c_ready => match r {
                Ok(n) if n > 0 => s2c.consume(n),
                _ => return,
            },
            _ = tokio::time::sleep_until(wake.unwrap_or(now)), if wake.is_some() => {}
            r = mode.changed() => if r.is_err() { return },
        }
    }
}
