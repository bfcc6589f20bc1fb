//! Drain after reconnect: a backlog of N messages (default 100 000, 100 B payload, QoS 1)
//! stored while offline is replayed into a real mosquitto on loopback through the outbox
//! (lease, decode the stored PUBLISH, set the packet id, bind, send; PUBACK -> ack: the calls
//! the NanoMQ patch makes), with windows 1, 16, 64 and the broker's Receive Maximum, against a
//! plain QoS 1 publisher keeping the same window in flight over the same codec (rumqttc v5, via
//! tests/harness) to the same broker, measured in the same run. Goals (issue 11): plain/outbox
//! <= 1.25 at window 1 (one round trip per message), <= 1.1 at windows of 16 and more.
//!
//! The harness broker announces Receive Maximum 64 (max_inflight_messages 64), the same as
//! window 64; one more row runs against a second harness mosquitto with Receive Maximum 1024,
//! to show a window wider than the outbox's read-ahead (512 rows).
//!
//! The clock runs from link_up (after CONNACK) to the last PUBACK; the backlog is appended and
//! flushed before. Runs of the outbox and the plain publisher alternate; median reported.
//! Beside the rates, per message over the same clock: CPU of this process (every thread: the
//! client, and the outbox's writer), its context switches (voluntary + involuntary, all
//! threads), and the CPU of the mosquitto processes (the bench's children).
//!
//! cargo bench --bench drain
//!   NMQ_BENCH_N     backlog in messages (default 100 000; window 1 runs N/4)
//!   NMQ_BENCH_REPS  repetitions (default 3)
//!   NMQ_BENCH_WINDOWS  only these windows, e.g. 1,16 (others up to 64 are added)
//!   NMQ_BENCH_DIR   where the outbox file goes (default /var/tmp, a real disk)
//!   NMQ_BENCH_COMMIT_COUNT  the outbox's group_commit_count (default 0: the library's, 100)

#[path = "../tests/harness/mod.rs"]
mod harness;

#[path = "common/mod.rs"]
mod common;

use common::*;
use harness::{decode_publish, encode_publish, mosquitto::mosquitto_bin, Conn};
use harness::{Mosquitto, MosquittoOptions};
use nmq_outbox::{AckKind, AckOutcome, Config, NewMessage, Outbox};
use rumqttc::v5::mqttbytes::v5::{Packet, Publish};
use rumqttc::v5::mqttbytes::QoS;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

/// plain/outbox at most: 1.25 below window 16 (per-message round trips), 1.1 from 16 on.
fn goal(window: u32) -> f64 {
    if window >= 16 {
        1.1
    } else {
        1.25
    }
}
const TOPIC: &str = "bench/drain";

async fn connect(broker: SocketAddr, id: &str) -> (Conn, u16) {
    let (conn, ack) = Conn::connect(broker, id, Duration::from_secs(30))
        .await
        .unwrap();
    let rm = ack.properties.and_then(|p| p.receive_max).unwrap_or(65535);
    (conn, rm)
}

/// CPU time (user + system, every thread) and context switches of this process.
fn self_usage() -> (f64, u64) {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (
        secs(ru.ru_utime) + secs(ru.ru_stime),
        (ru.ru_nvcsw + ru.ru_nivcsw) as u64,
    )
}

/// CPU seconds of this process's children (the mosquitto brokers), from /proc.
fn children_cpu() -> f64 {
    let mut secs = 0.0;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    for t in tasks.flatten() {
        let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        for pid in kids.split_whitespace() {
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
                let f: Vec<&str> = rest.split_whitespace().collect();
                if f.len() > 12 {
                    let ticks: u64 =
                        f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0);
                    // SAFETY: sysconf has no preconditions.
                    secs +=
                        ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
                }
            }
        }
    }
    secs
}

/// One run: msg/s, and per message: CPU us of this process, its context switches, CPU us of
/// mosquitto.
#[derive(Clone, Copy)]
struct Run {
    rate: f64,
    cpu_us: f64,
    csw: f64,
    broker_us: f64,
}

/// Usage counters at the start of a run.
struct Meter {
    at: (f64, u64),
    broker: f64,
}

impl Meter {
    fn start() -> Meter {
        Meter {
            at: self_usage(),
            broker: children_cpu(),
        }
    }
    fn stop(self, n: u64, elapsed: Duration) -> Run {
        let (cpu, csw) = self_usage();
        let n = n as f64;
        Run {
            rate: n / elapsed.as_secs_f64(),
            cpu_us: (cpu - self.at.0) * 1e6 / n,
            csw: (csw - self.at.1) as f64 / n,
            broker_us: (children_cpu() - self.broker) * 1e6 / n,
        }
    }
}

/// msg/s of the outbox draining an `n`-message backlog with `window`.
async fn outbox_drain(broker: SocketAddr, n: u64, window: u32) -> Run {
    let dir = fresh_dir("drain");
    let mut c = Config::new(dir.path().join("outbox.db"), "drain");
    c.window = window;
    c.group_commit_count = env_u64("NMQ_BENCH_COMMIT_COUNT", 0) as u32;
    let ob = Outbox::open(c).unwrap();
    let stored = encode_publish(TOPIC, 1, &[0x5Au8; 100]);
    for _ in 0..n {
        ob.append(&NewMessage {
            qos: 1,
            expiry_secs: 0,
            data: &stored,
        })
        .unwrap();
    }
    ob.flush().unwrap();

    let (mut conn, rm) = connect(broker, "bench-drain-outbox").await;
    let meter = Meter::start();
    let t = Instant::now();
    ob.link_up(rm).unwrap();
    assert_eq!(ob.stats().unwrap().window, window.min(rm as u32));
    let mut next_pid = 1u16;
    let mut acked = 0u64;
    while acked < n {
        while let Some(row) = ob.lease().unwrap() {
            let mut p = decode_publish(&row.data);
            p.pkid = next_pid;
            p.dup = row.dup;
            ob.bind(row.seq, next_pid).unwrap();
            next_pid = next_pid % 65535 + 1;
            conn.send(&Packet::Publish(p)).await.unwrap();
        }
        if let Packet::PubAck(a) = conn.read().await.unwrap() {
            assert_eq!(
                ob.ack(a.pkid, AckKind::PubAck, 0).unwrap(),
                AckOutcome::Done
            );
            acked += 1;
        }
    }
    let run = meter.stop(n, t.elapsed());
    assert_eq!(ob.stats().unwrap().messages, 0);
    ob.close().unwrap();
    run
}

/// msg/s of a plain QoS 1 publisher keeping `window` PUBLISHes in flight.
async fn plain_publisher(broker: SocketAddr, n: u64, window: u32) -> Run {
    let (mut conn, rm) = connect(broker, "bench-drain-plain").await;
    let window = window.min(rm as u32) as u64;
    let payload = vec![0x5Au8; 100];
    let meter = Meter::start();
    let t = Instant::now();
    let (mut sent, mut acked) = (0u64, 0u64);
    let mut next_pid = 1u16;
    while acked < n {
        while sent < n && sent - acked < window {
            let mut p = Publish::new(TOPIC, QoS::AtLeastOnce, payload.clone(), None);
            p.pkid = next_pid;
            next_pid = next_pid % 65535 + 1;
            conn.send(&Packet::Publish(p)).await.unwrap();
            sent += 1;
        }
        if let Packet::PubAck(_) = conn.read().await.unwrap() {
            acked += 1;
        }
    }
    meter.stop(n, t.elapsed())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n = env_u64("NMQ_BENCH_N", 100_000).max(100);
    let reps = env_u64("NMQ_BENCH_REPS", 3).max(1);
    let broker = Mosquitto::start();
    let (_, rm) = connect(broker.addr(), "bench-drain-probe").await;
    let wide = Mosquitto::start_with(MosquittoOptions {
        receive_maximum: 1024,
        persistence: false,
        ..MosquittoOptions::default()
    });
    let (_, wide_rm) = connect(wide.addr(), "bench-drain-probe").await;
    println!("drain of a stored backlog (100 B payload, QoS 1) into mosquitto on 127.0.0.1");
    println!("machine: {}", machine());
    println!(
        "broker: {}; outbox file under {} on {}; median of {reps} runs, alternating",
        String::from_utf8_lossy(
            &Command::new(mosquitto_bin())
                .arg("-h")
                .output()
                .map(|o| o.stdout)
                .unwrap_or_default()
        )
        .lines()
        .next()
        .unwrap_or("mosquitto"),
        base_dir().display(),
        filesystem_of(&base_dir())
    );
    println!(
        "| window | messages | outbox msg/s | plain publisher msg/s | plain/outbox | goal | result \
         | CPU us/msg outbox / plain (this process) | context switches/msg outbox / plain \
         | mosquitto CPU us/msg outbox / plain |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut cases: Vec<(u32, String, SocketAddr)> = vec![
        (1, "1".into(), broker.addr()),
        (16, "16".into(), broker.addr()),
        (64, "64".into(), broker.addr()),
    ];
    if rm != 64 {
        cases.push((rm as u32, format!("{rm} (Receive Maximum)"), broker.addr()));
    } else {
        cases[2].1 = "64 (= the harness broker's Receive Maximum)".into();
    }
    cases.push((
        wide_rm as u32,
        format!("{wide_rm} (Receive Maximum of a second broker)"),
        wide.addr(),
    ));
    // NMQ_BENCH_WINDOWS=1,16 runs only those windows; one that is not a row above (e.g. 32,
    // NanoMQ's window, for nanomq_patch/scenarios/bench.py) runs against the harness broker
    // when its Receive Maximum allows it.
    if let Ok(only) = std::env::var("NMQ_BENCH_WINDOWS") {
        let only: Vec<u32> = only
            .split(',')
            .filter_map(|w| w.trim().parse().ok())
            .collect();
        cases.retain(|c| only.contains(&c.0));
        for &w in &only {
            if w >= 1 && w <= rm as u32 && !cases.iter().any(|c| c.0 == w) {
                cases.push((w, w.to_string(), broker.addr()));
            }
        }
    }
    let mut misses = 0;
    for (w, label, addr) in cases {
        let count = if w == 1 { n / 4 } else { n };
        let (mut ours, mut plain) = (Vec::new(), Vec::new());
        for rep in 0..reps {
            if rep % 2 == 0 {
                ours.push(outbox_drain(addr, count, w).await);
                plain.push(plain_publisher(addr, count, w).await);
            } else {
                plain.push(plain_publisher(addr, count, w).await);
                ours.push(outbox_drain(addr, count, w).await);
            }
        }
        let m = |v: &[Run], f: fn(&Run) -> f64| median(v.iter().map(f).collect());
        let (o, p) = (m(&ours, |r| r.rate), m(&plain, |r| r.rate));
        let ratio = p / o;
        let goal = goal(w);
        misses += usize::from(ratio > goal);
        let runs: Vec<String> = ours
            .iter()
            .zip(&plain)
            .map(|(a, b)| format!("{:.2}", b.rate / a.rate))
            .collect();
        println!(
            "| {label} | {count} | {o:.0} | {p:.0} | {ratio:.2} | plain/outbox <= {goal} | {} \
             | {:.2} / {:.2} | {:.3} / {:.3} | {:.2} / {:.2} |",
            verdict(ratio <= goal),
            m(&ours, |r| r.cpu_us),
            m(&plain, |r| r.cpu_us),
            m(&ours, |r| r.csw),
            m(&plain, |r| r.csw),
            m(&ours, |r| r.broker_us),
            m(&plain, |r| r.broker_us),
        );
        println!(
            "  (window {w}, plain/outbox of each pair of runs: {})",
            runs.join(", ")
        );
    }
    println!("(window 1 runs a quarter of the backlog: one round trip per message)");
    println!("{misses} case(s) missed the goal");
}
