//! One outage run, the shape of the original report: the reported forwards through a driver and
//! a fault proxy into a broker, a subscriber counting; normal traffic, a fault for the outage,
//! traffic after the restore, stop, drain; then the counts. Used by `tests/outage.rs` and
//! `examples/demo.rs`.

use super::driver::{Driver, DriverConfig, DriverCounters};
use super::mosquitto::Mosquitto;
use super::proxy::Proxy;
use super::subscriber::Subscriber;
use super::traffic::{
    drain_secs, spawn_publisher, tally, unexplained_duplicates, wire_fifo_violations, Report, Sent,
};
use nmq_outbox::Stats;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// No fault (a control run).
    None,
    /// The link is cut with RST for the outage; reconnects are reset too.
    Cut,
    /// Silent blackhole for the outage: no byte passes, no RST; found by keepalive.
    Blackhole,
    /// The broker gets every byte, the driver gets none (no ack, no PINGRESP) for the outage.
    WithholdAcks,
    /// Broker-to-client bytes delayed by this much for the outage.
    SlowAcks(Duration),
    /// Cut and restored every `period` for the outage.
    Flap(Duration),
    /// The broker is stopped (SIGTERM) for the outage, then started again on the same port.
    BrokerRestart,
    /// A cut for the outage, then, as soon as the drain has started, a second cut this long.
    CutDuringDrain(Duration),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub fault: Fault,
    /// Rates are `scale` times the reported ones (test1 at 5*scale msg/s).
    pub scale: u32,
    pub normal: Duration,
    pub outage: Duration,
    pub after: Duration,
    /// Bound on the drain once the publisher stopped.
    pub drain_max: Duration,
    pub keepalive: Duration,
    pub window: u32,
    /// An external broker; None starts a mosquitto here ([`Fault::BrokerRestart`] needs it).
    pub broker: Option<SocketAddr>,
    /// Print a progress line this often; None: quiet.
    pub progress: Option<Duration>,
    /// Client ids are `<prefix>-bridge` and `<prefix>-sub`.
    pub client_prefix: String,
}

impl Plan {
    /// The reported timeline compressed 10x with 10x the rates (the same number of messages):
    /// 1 s normal, `outage`, 2 s more, then a drain of at most 60 s; keepalive 1 s, window 32.
    pub fn compressed(name: &str, fault: Fault, outage: Duration) -> Plan {
        Plan {
            name: name.to_string(),
            fault,
            scale: 10,
            normal: Duration::from_secs(1),
            outage,
            after: Duration::from_secs(2),
            drain_max: Duration::from_secs(60),
            keepalive: Duration::from_secs(1),
            window: 32,
            broker: None,
            progress: None,
            client_prefix: "nmq".into(),
        }
    }
}

/// What a run gave.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: String,
    pub report: Report,
    /// Seconds from the restore to the first arrival of the last backlog message.
    pub drain_secs: f64,
    /// Every message handed over was acknowledged within `drain_max`.
    pub drained: bool,
    pub counters: DriverCounters,
    pub stats: Stats,
    /// G1 bookkeeping of the driver and the outbox ([`Driver::g1_check`]).
    pub g1: Result<(), String>,
    /// First transmissions out of publish order at the wire (G4).
    pub fifo_violations: u64,
    /// Duplicates of messages that were not in flight at a link loss (G7).
    pub unexplained_duplicates: Vec<String>,
    /// Messages in flight at some link loss.
    pub inflight_at_loss: usize,
}

impl Outcome {
    /// A markdown row: scenario, sent, received, lost, duplicated, out of order, drain.
    pub fn row(&self) -> String {
        let r = &self.report;
        format!(
            "| {} | {} | {} | {} | {} | {} | {:.2} s |",
            self.name, r.sent, r.received, r.lost, r.duplicated, r.out_of_order, self.drain_secs
        )
    }

    /// One line with everything, for the test log.
    pub fn summary(&self) -> String {
        let c = &self.counters;
        format!(
            "{:<26} {} | drain {:.2} s | link losses {} | in flight at a loss {} | DUP sends {} | \
             PUBREL resumes {} | refused {} | dropped {} | wire FIFO violations {}",
            self.name,
            self.report,
            self.drain_secs,
            c.link_losses,
            self.inflight_at_loss,
            c.dup_packets,
            c.pubrel_resumes,
            c.refused,
            self.stats.dropped_full + self.stats.dropped_expired + self.stats.dropped_rejected,
            self.fifo_violations
        )
    }

    /// The contract (DESIGN.md section 2) for a run where nothing may be refused or dropped:
    /// G1 (0 lost; every message acked, counted), G4 (in order per topic at the subscriber,
    /// FIFO at the wire), G7 (a duplicate only for a message in flight at a link loss).
    pub fn assert_contract(&self) {
        let n = &self.name;
        let r = &self.report;
        assert!(r.sent > 0, "{n}: nothing sent");
        assert!(
            self.drained,
            "{n}: the outbox did not drain: {:?}",
            self.stats
        );
        assert_eq!(r.lost, 0, "{n}: lost messages: {:?}", r.lost_list);
        assert_eq!(r.out_of_order, 0, "{n}: out of order at the subscriber");
        assert_eq!(
            self.fifo_violations, 0,
            "{n}: bridge FIFO broken at the wire"
        );
        assert_eq!(self.counters.refused, 0, "{n}: refused messages");
        let s = &self.stats;
        assert_eq!(
            s.dropped_full + s.dropped_expired + s.dropped_rejected,
            0,
            "{n}: dropped messages"
        );
        if let Err(e) = &self.g1 {
            panic!("{n}: {e}");
        }
        assert!(
            self.unexplained_duplicates.is_empty(),
            "{n}: duplicates of messages not in flight at a link loss: {:?}",
            self.unexplained_duplicates
        );
    }
}

/// Runs `plan` (inside a tokio runtime) and returns its counts; asserts nothing.
pub async fn run(plan: Plan) -> Outcome {
    let mut broker = match plan.broker {
        None => Some(Mosquitto::start()),
        Some(_) => None,
    };
    let broker_addr = plan
        .broker
        .unwrap_or_else(|| broker.as_ref().unwrap().addr());
    let proxy = Proxy::start(broker_addr).await;
    let sub = Subscriber::start(broker_addr, &format!("{}-sub", plan.client_prefix)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut dc = DriverConfig::new(proxy.addr, dir.path().join("outbox.db"));
    dc.client_id = format!("{}-bridge", plan.client_prefix);
    dc.keepalive = plan.keepalive;
    dc.outbox.window = plan.window;
    let driver = Arc::new(Driver::start(dc));
    assert!(
        driver.wait_connected(Duration::from_secs(10)).await,
        "{}: the driver did not connect",
        plan.name
    );

    let sent = Arc::new(Mutex::new(Sent::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let phase = Arc::new(Mutex::new("normal"));
    let ticker = plan.progress.map(|every| {
        let (driver, sent, phase) = (Arc::clone(&driver), Arc::clone(&sent), Arc::clone(&phase));
        let received = sub.counter();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(t0 + every, every);
            loop {
                tick.tick().await;
                // Printed under the phase lock: a phase note and a line never cross.
                let p = phase.lock().unwrap();
                println!("{}", progress_line(t0, &p, &driver, &sent, received()));
            }
        })
    });
    let set_phase = |p: &'static str, note: &str| {
        let mut cur = phase.lock().unwrap();
        *cur = p;
        if plan.progress.is_some() && !note.is_empty() {
            println!("[{:6.1} s] --- {note}", t0.elapsed().as_secs_f64());
        }
    };
    let publisher = spawn_publisher(
        Arc::clone(&driver),
        plan.scale,
        Arc::clone(&sent),
        stop.clone(),
    );

    tokio::time::sleep(plan.normal).await;
    let note = match plan.fault {
        Fault::None => "no fault (control)",
        Fault::Cut | Fault::CutDuringDrain(_) => {
            proxy.cut();
            "link cut: connections reset, new ones refused"
        }
        Fault::Blackhole => {
            proxy.blackhole();
            "silent blackhole: nothing passes, no reset"
        }
        Fault::WithholdAcks => {
            proxy.withhold_acks();
            "acks withheld: the broker receives, the bridge hears nothing"
        }
        Fault::SlowAcks(d) => {
            proxy.slow_acks(d);
            "acks slowed down"
        }
        Fault::Flap(_) => "flapping link",
        Fault::BrokerRestart => {
            broker
                .as_mut()
                .expect("a broker restart needs the embedded mosquitto")
                .stop();
            "remote broker stopped"
        }
    };
    set_phase("outage", note);
    let outage_end = Instant::now() + plan.outage;
    match plan.fault {
        Fault::Flap(period) => {
            let mut up = true;
            while Instant::now() < outage_end {
                up = !up;
                if up {
                    proxy.restore()
                } else {
                    proxy.cut()
                }
                tokio::time::sleep(
                    period.min(outage_end.saturating_duration_since(Instant::now())),
                )
                .await;
            }
        }
        _ => tokio::time::sleep_until(outage_end).await,
    }
    let backlog = sent.lock().unwrap().clone();
    let restored = Instant::now();
    match plan.fault {
        Fault::BrokerRestart => broker.as_mut().unwrap().restart(),
        _ => proxy.restore(),
    }
    set_phase("restored", "link restored");
    if let Fault::CutDuringDrain(d) = plan.fault {
        let started = sub
            .wait_for(Duration::from_secs(10), |a| {
                a.iter().any(|x| x.at > restored)
            })
            .await;
        assert!(started, "{}: the drain did not start", plan.name);
        proxy.cut();
        set_phase("cut again", "second cut, during the drain");
        tokio::time::sleep(d).await;
        proxy.restore();
        set_phase("restored", "link restored again");
    }
    tokio::time::sleep_until(restored + plan.after.max(restored.elapsed())).await;
    stop.store(true, Ordering::Relaxed);
    publisher.await.unwrap();
    set_phase("draining", "publisher stopped; draining");

    let drained = driver.wait_empty(plan.drain_max).await;
    let all = sent.lock().unwrap().clone();
    sub.wait_for(Duration::from_secs(10), |a| tally(&all, a).lost == 0)
        .await;
    if let Some(t) = ticker {
        t.abort();
        let _ = t.await; // releases its handle on the driver
    }
    if plan.progress.is_some() {
        println!(
            "{}",
            progress_line(t0, "drained", &driver, &sent, sub.count() as u64)
        );
    }
    let arrivals = sub.arrivals().clone();
    let report = tally(&all, &arrivals);
    let (fifo_violations, unexplained, inflight_at_loss) = {
        let o = driver.observed();
        (
            wire_fifo_violations(&o.wire),
            unexplained_duplicates(&report, &o.inflight_at_loss, &arrivals),
            o.inflight_at_loss.len(),
        )
    };
    let outcome = Outcome {
        name: plan.name.clone(),
        drain_secs: drain_secs(&arrivals, &backlog, restored),
        report,
        drained,
        counters: driver.counters(),
        stats: driver.stats(),
        g1: driver.g1_check(),
        fifo_violations,
        unexplained_duplicates: unexplained,
        inflight_at_loss,
    };
    sub.stop();
    if let Ok(d) = Arc::try_unwrap(driver) {
        d.stop().await;
    }
    outcome
}

fn progress_line(
    t0: Instant,
    phase: &str,
    driver: &Driver,
    sent: &Mutex<Sent>,
    received: u64,
) -> String {
    let s = sent.lock().unwrap().total;
    let st = driver.stats();
    let c = driver.counters();
    format!(
        "[{:6.1} s] {phase:<9} sent {s:6}  received {received:6}  backlog {:6}  in flight {:3}  link {}",
        t0.elapsed().as_secs_f64(),
        st.messages,
        st.inflight + c.direct_inflight,
        if c.connected { "up" } else { "down" }
    )
}
