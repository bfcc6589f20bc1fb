//! The main job: the outage of the original report, through the outbox, against a real broker.
//!
//! Forwards test1..test5 at QoS 1,1,2,2,2 (test1 at 5 msg/s, the others at 1 msg/s), 10 s
//! normal, 100 s link down, 20 s more, stop, up to 60 s drain; then the table. By default the
//! timeline is compressed 10x with 10x the rates (the same ~1170 messages) and runs against a
//! mosquitto started here on loopback.
//!
//!   cargo run --release --example demo                    # compressed, embedded mosquitto
//!   cargo run --release --example demo -- --full          # the real 100 s timeline
//!   cargo run --release --example demo -- --broker 127.0.0.1:1883   # an external broker

#[path = "../tests/harness/mod.rs"]
mod harness;

use harness::*;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Args {
    full: bool,
    broker: Option<SocketAddr>,
}

fn args() -> Args {
    let mut a = Args {
        full: false,
        broker: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--full" => a.full = true,
            "--broker" => {
                let v = it.next().expect("--broker HOST:PORT");
                let addr = std::net::ToSocketAddrs::to_socket_addrs(&v)
                    .expect("--broker HOST:PORT")
                    .next()
                    .expect("--broker HOST:PORT");
                a.broker = Some(addr);
            }
            "-h" | "--help" => {
                println!("usage: demo [--full] [--broker HOST:PORT]");
                std::process::exit(0);
            }
            other => panic!("unknown option {other} (try --help)"),
        }
    }
    a
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let (scale, unit) = if a.full {
        (1, Duration::from_secs(1))
    } else {
        (10, Duration::from_millis(100))
    };
    let secs = |n: u64| unit * n as u32;
    let (normal, outage, after, drain_max) = (secs(10), secs(100), secs(20), secs(60));

    let _broker_guard;
    let broker = match a.broker {
        Some(b) => b,
        None => {
            let m = Mosquitto::start();
            let b = m.addr();
            _broker_guard = m;
            b
        }
    };
    let proxy = Proxy::start(broker).await;
    let sub = Subscriber::start(broker, &format!("nmq-demo-sub-{}", std::process::id())).await;
    let dir = tempfile::tempdir().unwrap();
    let driver = Arc::new(Driver::start(DriverConfig {
        broker: proxy.addr,
        client_id: format!("nmq-demo-bridge-{}", std::process::id()),
        keepalive: Duration::from_secs(3),
        db: dir.path().join("nmq_outbox.db"),
        window: 32,
    }));
    println!(
        "nmq-outbox demo: broker {broker} through a fault proxy at {}, outbox {}",
        proxy.addr,
        dir.path().join("nmq_outbox.db").display()
    );
    println!(
        "timeline{}: {:.0} s normal, {:.0} s link down, {:.0} s more, stop, drain (<= {:.0} s)",
        if a.full {
            ""
        } else {
            " (compressed 10x, rates 10x)"
        },
        normal.as_secs_f64(),
        outage.as_secs_f64(),
        after.as_secs_f64(),
        drain_max.as_secs_f64()
    );

    let sent = Arc::new(Mutex::new(HashMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = spawn_publisher(Arc::clone(&driver), scale, Arc::clone(&sent), stop.clone());
    let start = Instant::now();
    let progress = |phase: &str| {
        let s: u64 = sent.lock().unwrap().values().sum();
        let st = driver.outbox.stats().unwrap();
        println!(
            "[{:6.1} s] {phase:<10} sent {s:5}  received {:5}  stored {:5}  in flight {:3}  link {}",
            start.elapsed().as_secs_f64(),
            sub.count(),
            st.messages,
            st.inflight,
            if st.link_up { "up" } else { "down" }
        );
    };
    let run_phase = |phase: &'static str, d: Duration| {
        let progress = &progress;
        async move {
            let end = tokio::time::Instant::now() + d;
            let step = if a.full {
                Duration::from_secs(5)
            } else {
                Duration::from_secs(1)
            };
            while tokio::time::Instant::now() < end {
                let next = (tokio::time::Instant::now() + step).min(end);
                tokio::time::sleep_until(next).await;
                progress(phase);
            }
        }
    };

    run_phase("normal", normal).await;
    proxy.cut();
    println!("--- link cut (connections reset, new ones refused)");
    run_phase("link down", outage).await;
    let backlog_sent: HashMap<String, u64> = sent.lock().unwrap().clone();
    let restored = Instant::now();
    proxy.restore();
    println!("--- link restored");
    run_phase("restored", after).await;
    stop.store(true, Ordering::Relaxed);
    publisher.await.unwrap();
    let sent_all: HashMap<String, u64> = sent.lock().unwrap().clone();
    println!("--- publisher stopped; draining");
    let drained = driver.wait_empty(drain_max).await;
    sub.wait_for(drain_max, |r| tally(&sent_all, r).lost == 0)
        .await;
    progress("drained");

    let received = sub.received.lock().unwrap().clone();
    let r = tally(&sent_all, &received);
    let mut last_backlog = restored;
    for (t, p) in &received {
        let s = String::from_utf8_lossy(p);
        if let Some((topic, n)) = s.rsplit_once(':') {
            let n: u64 = n.parse().unwrap_or(0);
            if backlog_sent.get(topic).is_some_and(|&b| n <= b) && *t > last_backlog {
                last_backlog = *t;
            }
        }
    }
    let st = driver.outbox.stats().unwrap();
    println!();
    println!("| scenario | sent | received | lost | duplicated | out of order | restore to last backlog message |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {:.0} s link down | {} | {} | {} | {} | {} | {:.2} s |",
        outage.as_secs_f64(),
        r.sent,
        r.received,
        r.lost,
        r.duplicated,
        r.out_of_order,
        last_backlog.duration_since(restored).as_secs_f64()
    );
    println!();
    println!(
        "outbox: enqueued {}, acked {}, resent {}, dropped {} (full {}, expired {}, rejected {})",
        st.enqueued,
        st.acked,
        st.resent,
        st.dropped_full + st.dropped_expired + st.dropped_rejected,
        st.dropped_full,
        st.dropped_expired,
        st.dropped_rejected
    );
    sub.stop();
    Arc::try_unwrap(driver).ok().unwrap().stop().await;
    if r.lost > 0 || !drained {
        println!("RESULT: {} messages lost", r.lost);
        std::process::exit(1);
    }
    println!("RESULT: nothing lost");
}
