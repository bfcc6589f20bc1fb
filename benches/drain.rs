//! Drain after reconnect: a backlog of N messages (default 100 000, 100 B, QoS 1) stored while
//! offline is replayed into a real mosquitto on loopback through the outbox (lease, bind,
//! publish, PUBACK, ack: the calls the NanoMQ patch makes) with windows 1, 16, 64 and the
//! broker's Receive Maximum, against a plain QoS 1 publisher keeping the same window in flight
//! over the same codec to the same broker, measured in the same run. Goal: within 1.5x.
//!
//! cargo bench --bench drain      (NMQ_BENCH_N=<messages>)

#[path = "../tests/harness/mod.rs"]
mod harness;

use harness::*;
use nmq_outbox::{AckKind, Config, NewMessage, Outbox};
use rumqttc::v5::mqttbytes::v5::{Packet, Publish};
use rumqttc::v5::mqttbytes::QoS;
use std::time::{Duration, Instant};

const GOAL: f64 = 1.5;

async fn outbox_drain(broker: std::net::SocketAddr, n: u64, window: u32) -> (f64, u16) {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let mut c = Config::new(dir.path().join("o.db"), "drain");
    c.window = window;
    let ob = Outbox::open(c).unwrap();
    let bytes = encode_publish("test/drain", 1, &[0x5Au8; 100]);
    for _ in 0..n {
        ob.append(&NewMessage {
            qos: 1,
            expiry_secs: 0,
            data: &bytes,
        })
        .unwrap();
    }
    ob.flush().unwrap();

    let (mut conn, ack) = Conn::connect(broker, "drain-outbox", Duration::from_secs(30))
        .await
        .unwrap();
    let rm = ack.properties.and_then(|p| p.receive_max).unwrap_or(65535);
    let t = Instant::now();
    ob.link_up(rm).unwrap();
    let mut next_pid = 1u16;
    let mut acked = 0u64;
    while acked < n {
        while let Some(row) = ob.lease().unwrap() {
            let Ok(Packet::Publish(mut p)) =
                Packet::read(&mut bytes::BytesMut::from(&row.data[..]), None)
            else {
                panic!("stored bytes are not a PUBLISH")
            };
            p.pkid = next_pid;
            ob.bind(row.seq, next_pid).unwrap();
            next_pid = next_pid % 65535 + 1;
            conn.send(&Packet::Publish(p)).await.unwrap();
        }
        if let Packet::PubAck(a) = conn.read().await.unwrap() {
            ob.ack(a.pkid, AckKind::PubAck, 0).unwrap();
            acked += 1;
        }
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    assert_eq!(ob.stats().unwrap().messages, 0);
    (rate, rm)
}

async fn plain_publisher(broker: std::net::SocketAddr, n: u64, window: u32) -> f64 {
    let (mut conn, _) = Conn::connect(broker, "drain-plain", Duration::from_secs(30))
        .await
        .unwrap();
    let payload = vec![0x5Au8; 100];
    let t = Instant::now();
    let (mut sent, mut acked) = (0u64, 0u64);
    let mut next_pid = 1u16;
    while acked < n {
        while sent < n && sent - acked < window as u64 {
            let mut p = Publish::new("test/drain", QoS::AtLeastOnce, payload.clone(), None);
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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: u64 = std::env::var("NMQ_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let broker = Mosquitto::start();
    // The broker's Receive Maximum, from a CONNACK.
    let (_, ack) = Conn::connect(broker.addr(), "probe", Duration::from_secs(30))
        .await
        .unwrap();
    let rm = ack.properties.and_then(|p| p.receive_max).unwrap_or(65535) as u32;
    println!("drain of a {n}-message backlog (100 B, QoS 1) into mosquitto on loopback");
    println!("| window | outbox msg/s | plain publisher msg/s | plain/outbox | goal <= {GOAL} |");
    println!("|---|---|---|---|---|");
    let mut windows = vec![1u32, 16, 64, rm];
    windows.dedup();
    for w in windows {
        let count = if w == 1 { n / 10 } else { n };
        let (ours, _) = outbox_drain(broker.addr(), count, w).await;
        let plain = plain_publisher(broker.addr(), count, w).await;
        let ratio = plain / ours;
        println!(
            "| {w}{} | {ours:.0} | {plain:.0} | {ratio:.2} | {} |",
            if w == rm { " (Receive Maximum)" } else { "" },
            if ratio <= GOAL { "PASS" } else { "MISS" }
        );
    }
    if n >= 100_000 {
        println!("(window 1 runs a tenth of the backlog: one round trip per message)");
    }
}
