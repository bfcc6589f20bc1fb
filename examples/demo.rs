//! The main job: the outage of the original report, through the outbox, against a real broker.
//!
//! Forwards test1..test5 at QoS 1,1,2,2,2 (test1 at 5 msg/s, the others at 1 msg/s): 10 s
//! normal, 100 s with the link cut, 20 s more, stop, drain (at most 60 s); then the table. By
//! default the timeline is compressed 10x with 10x the rates (the same ~1170 messages, about
//! 15 s) against a mosquitto started here on 127.0.0.1, behind a fault proxy also started here.
//!
//!   cargo run --release --example demo                    # compressed, embedded mosquitto
//!   cargo run --release --example demo -- --full          # the real 100 s timeline
//!   cargo run --release --example demo -- --silent        # a silent blackhole, not a cut
//!   cargo run --release --example demo -- --broker 127.0.0.1:1883   # an external broker
//!
//! Exit status 0 when nothing was lost, nothing out of order, and the outbox drained.

#[path = "../tests/harness/mod.rs"]
mod harness;

use harness::scenario::run;
use harness::{Fault, Plan};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

const USAGE: &str = "usage: demo [--full] [--silent] [--broker HOST:PORT]
  --full               the real timeline: 10 s normal, 100 s outage, 20 s more, 60 s drain
                       (default: compressed 10x with 10x the rates, same message count)
  --silent             the outage is a silent blackhole (no RST; found by keepalive)
                       instead of a cut with RST
  --broker HOST:PORT   use this broker instead of a mosquitto started here";

struct Args {
    full: bool,
    silent: bool,
    broker: Option<SocketAddr>,
}

fn args() -> Args {
    let mut a = Args {
        full: false,
        silent: false,
        broker: None,
    };
    let mut it = std::env::args().skip(1);
    let fail = |m: String| -> ! {
        eprintln!("demo: {m}\n{USAGE}");
        std::process::exit(2)
    };
    while let Some(x) = it.next() {
        match x.as_str() {
            "--full" => a.full = true,
            "--silent" => a.silent = true,
            "--broker" => {
                let v = it
                    .next()
                    .unwrap_or_else(|| fail("--broker needs HOST:PORT".into()));
                let addr = v
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut i| i.next())
                    .unwrap_or_else(|| fail(format!("cannot resolve {v:?}")));
                a.broker = Some(addr);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => fail(format!("unknown option {other}")),
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
    let fault = if a.silent {
        Fault::Blackhole
    } else {
        Fault::Cut
    };
    let what = if a.silent {
        "silent blackhole"
    } else {
        "link cut (RST)"
    };
    let mut plan = Plan::compressed(&format!("100 s {what}"), fault, unit * 100);
    plan.scale = scale;
    plan.normal = unit * 10;
    plan.after = unit * 20;
    plan.drain_max = unit * 600; // 60 s on the full timeline, with room when compressed
    plan.keepalive = if a.full {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(1)
    };
    plan.broker = a.broker;
    plan.progress = Some(if a.full {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(1)
    });
    plan.client_prefix = format!("nmq-demo-{}", std::process::id());

    println!(
        "nmq-outbox demo: {} through a fault proxy on 127.0.0.1, the outbox in a temp dir",
        match a.broker {
            Some(b) => format!("broker {b}"),
            None => "a mosquitto started here on 127.0.0.1".into(),
        }
    );
    println!(
        "timeline{}: {:.0} s normal, {:.0} s {what}, {:.0} s more, stop, drain; \
         test1..test5 at QoS 1,1,2,2,2, {} msg/s in all; keepalive {} s",
        if a.full {
            ""
        } else {
            " (compressed 10x, rates 10x)"
        },
        plan.normal.as_secs_f64(),
        plan.outage.as_secs_f64(),
        plan.after.as_secs_f64(),
        9 * scale,
        plan.keepalive.as_secs()
    );
    let o = run(plan).await;

    let r = &o.report;
    println!();
    println!("| scenario | sent | received | lost | duplicated | out of order | restore to last backlog message |");
    println!("|---|---|---|---|---|---|---|");
    println!("{}", o.row());
    println!();
    let s = &o.stats;
    let c = &o.counters;
    println!(
        "bridge: {} sent directly, {} stored in the outbox; {} link losses, {} connections; \
         {} resends with DUP, {} resumed with PUBREL",
        c.direct_total, c.appended, c.link_losses, c.connects, c.dup_packets, c.pubrel_resumes
    );
    println!(
        "outbox: enqueued {}, acked {}, dropped {} (full {}, expired {}, rejected {}); \
         duplicates only for messages in flight at a loss: {}",
        s.enqueued,
        s.acked,
        s.dropped_full + s.dropped_expired + s.dropped_rejected,
        s.dropped_full,
        s.dropped_expired,
        s.dropped_rejected,
        if o.unexplained_duplicates.is_empty() {
            "yes"
        } else {
            "NO"
        }
    );
    let ok = r.lost == 0 && r.out_of_order == 0 && o.drained && o.g1.is_ok();
    if ok {
        println!("RESULT: nothing lost, in order");
    } else {
        println!(
            "RESULT: FAILED: {} lost, {} out of order, drained: {}, {:?}",
            r.lost, r.out_of_order, o.drained, o.g1
        );
        std::process::exit(1);
    }
}
