//! Drain after reconnect: a backlog of N messages (default 100 000, 100 B payload, QoS 1)
//! stored while offline is replayed into a real mosquitto on loopback through the outbox
//! (lease, decode the stored PUBLISH, set the packet id, bind, send; PUBACK -> ack: the calls
//! the NanoMQ patch makes), with windows 1, 16, 64 and the broker's Receive Maximum, against a
//! plain QoS 1 publisher keeping the same window in flight over the same codec (rumqttc v5, via
//! tests/harness) to the same broker, measured in the same run. Goal: plain/outbox <= 1.5.
//!
//! The harness broker announces Receive Maximum 64 (max_inflight_messages 64), the same as
//! window 64; one more row runs against a second harness mosquitto with Receive Maximum 1024,
//! to show a window wider than the outbox's read-ahead (512 rows).
//!
//! The clock runs from link_up (after CONNACK) to the last PUBACK; the backlog is appended and
//! flushed before. Runs of the outbox and the plain publisher alternate; median reported.
//!
//! cargo bench --bench drain
//!   NMQ_BENCH_N     backlog in messages (default 100 000; window 1 runs N/4)
//!   NMQ_BENCH_REPS  repetitions (default 3)
//!   NMQ_BENCH_WINDOWS  only these windows, e.g. 1,16 (others up to 64 are added)
//!   NMQ_BENCH_DIR   where the outbox file goes (default /var/tmp, a real disk)

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

const GOAL: f64 = 1.5;
const TOPIC: &str = "bench/drain";

async fn connect(broker: SocketAddr, id: &str) -> (Conn, u16) {
    let (conn, ack) = Conn::connect(broker, id, Duration::from_secs(30))
        .await
        .unwrap();
    let rm = ack.properties.and_then(|p| p.receive_max).unwrap_or(65535);
    (conn, rm)
}

/// msg/s of the outbox draining an `n`-message backlog with `window`.
async fn outbox_drain(broker: SocketAddr, n: u64, window: u32) -> f64 {
    let dir = fresh_dir("drain");
    let mut c = Config::new(dir.path().join("outbox.db"), "drain");
    c.window = window;
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
    let rate = n as f64 / t.elapsed().as_secs_f64();
    assert_eq!(ob.stats().unwrap().messages, 0);
    ob.close().unwrap();
    rate
}

/// msg/s of a plain QoS 1 publisher keeping `window` PUBLISHes in flight.
async fn plain_publisher(broker: SocketAddr, n: u64, window: u32) -> f64 {
    let (mut conn, rm) = connect(broker, "bench-drain-plain").await;
    let window = window.min(rm as u32) as u64;
    let payload = vec![0x5Au8; 100];
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
    n as f64 / t.elapsed().as_secs_f64()
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
        "| window | messages | outbox msg/s | plain publisher msg/s | plain/outbox | goal | result |"
    );
    println!("|---|---|---|---|---|---|---|");
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
        let (o, p) = (median(ours), median(plain));
        let ratio = p / o;
        misses += usize::from(ratio > GOAL);
        println!(
            "| {label} | {count} | {o:.0} | {p:.0} | {ratio:.2} | plain/outbox <= {GOAL} | {} |",
            verdict(ratio <= GOAL)
        );
    }
    println!("(window 1 runs a quarter of the backlog: one round trip per message)");
    println!("{misses} case(s) missed the goal");
}
