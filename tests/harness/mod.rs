//! The outage harness, shared by `tests/outage.rs`, `examples/demo.rs` and the benches
//! (`#[path = "../tests/harness/mod.rs"] mod harness;`). Everything talks to 127.0.0.1 only.
//!
//! | module | what |
//! |---|---|
//! | [`mosquitto`] | [`Mosquitto`]: a real Debian mosquitto on a free loopback port, its own config and persistence in a temp dir, stopped (SIGTERM), restarted on the same port, killed on drop |
//! | [`proxy`] | [`Proxy`]: a fault-injecting TCP proxy: pass, cut with RST, silent blackhole, withheld acks, slow acks |
//! | [`mqtt`] | [`Conn`]: one MQTT 5 connection framed with rumqttc's v5 codec (the driver picks packet ids and DUP) |
//! | [`driver`] | [`Driver`]: plays the NanoNNG client's part through the outbox: decide / append, replay at CONNACK within the window, bind, acks, PUBREL, keepalive |
//! | [`subscriber`] | [`Subscriber`]: a persistent QoS 2 subscriber that records every arrival |
//! | [`traffic`] | the reported publisher (test1..test5 at QoS 1,1,2,2,2) and the counting: sent, received, lost, duplicated, out of order, wire FIFO |
//! | [`scenario`] | one outage run (timeline, fault, drain, counts), used by the tests and the demo |
//!
//! A minimal use (inside a tokio runtime):
//! ```ignore
//! let broker = Mosquitto::start();
//! let sub = Subscriber::start(broker.addr(), "sub").await;
//! let driver = Driver::start(DriverConfig::new(broker.addr(), dir.join("outbox.db")));
//! driver.publish("test/a", 1, b"hello".to_vec());
//! assert!(driver.wait_empty(Duration::from_secs(10)).await);
//! driver.stop().await;
//! ```
#![allow(dead_code, unused_imports)]

pub mod driver;
pub mod mosquitto;
pub mod mqtt;
pub mod proxy;
pub mod scenario;
pub mod subscriber;
pub mod traffic;

pub use driver::{Driver, DriverConfig, DriverCounters, Observed, WireSend};
pub use mosquitto::{free_port, Mosquitto, MosquittoOptions};
pub use mqtt::{decode_publish, encode_publish, Conn, ConnectOptions};
pub use proxy::{Mode, Proxy};
pub use scenario::{Fault, Outcome, Plan};
pub use subscriber::{Arrival, Subscriber};
pub use traffic::{
    drain_secs, msg_key, parse_payload, payload, spawn_publisher, tally, unexplained_duplicates,
    wire_fifo_violations, Msg, Report, Sent, TOPICS,
};
