//! Traffic and counting.
//!
//! Every message carries `<topic>:<n>:<g>`: `n` numbers it within its topic (1, 2, ...), `g`
//! within the whole bridge (publish order). The subscriber side checks per topic (lost,
//! duplicated, out of order: what MQTT promises end to end); the driver's wire log checks the
//! bridge FIFO (first transmissions in publish order, G4).

use super::driver::{Driver, WireSend};
use super::subscriber::Arrival;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The reported forwards: (topic, QoS, msg/s): test1..test5 at QoS 1,1,2,2,2, test1 at 5 msg/s,
/// the others at 1 msg/s.
pub const TOPICS: [(&str, u8, u32); 5] = [
    ("test/test1", 1, 5),
    ("test/test2", 1, 1),
    ("test/test3", 2, 1),
    ("test/test4", 2, 1),
    ("test/test5", 2, 1),
];

/// A message's identity, parsed from its payload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Msg {
    pub topic: String,
    pub n: u64,
    /// Position in the bridge-wide publish order (0 = not numbered).
    pub g: u64,
}

/// The payload of message `n` of `topic`, `g`-th of the bridge.
pub fn payload(topic: &str, n: u64, g: u64) -> Vec<u8> {
    format!("{topic}:{n}:{g}").into_bytes()
}

/// `<topic>:<n>` of a payload (what [`Report::lost_list`] holds).
pub fn msg_key(p: &[u8]) -> Option<String> {
    parse_payload(p).map(|m| format!("{}:{}", m.topic, m.n))
}

pub fn parse_payload(p: &[u8]) -> Option<Msg> {
    let s = std::str::from_utf8(p).ok()?;
    let mut it = s.rsplitn(3, ':');
    let g = it.next()?.parse().ok()?;
    let n = it.next()?.parse().ok()?;
    Some(Msg {
        topic: it.next()?.to_string(),
        n,
        g,
    })
}

/// What was handed to the driver: per topic the highest `n` (messages 1..=n), and the total.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sent {
    pub per_topic: BTreeMap<String, u64>,
    pub qos: BTreeMap<String, u8>,
    pub total: u64,
}

impl Sent {
    /// Hands the next message of `topic` to the driver.
    pub fn publish(&mut self, driver: &Driver, topic: &str, qos: u8) {
        let n = self.per_topic.entry(topic.to_string()).or_insert(0);
        *n += 1;
        self.total += 1;
        self.qos.insert(topic.to_string(), qos);
        driver.publish(topic, qos, payload(topic, *n, self.total));
    }
}

/// Publishes [`TOPICS`] at `scale` times the reported rates (so test1 at 5*scale msg/s) until
/// `stop` is set. Paced on a 10 ms tick.
pub fn spawn_publisher(
    driver: Arc<Driver>,
    scale: u32,
    sent: Arc<Mutex<Sent>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let mut done: HashMap<&str, u64> = HashMap::new();
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let elapsed = start.elapsed().as_secs_f64();
            let mut s = sent.lock().unwrap();
            for (topic, qos, rate) in TOPICS {
                let due = (elapsed * (rate * scale) as f64) as u64;
                let n = done.entry(topic).or_insert(0);
                while *n < due {
                    *n += 1;
                    s.publish(&driver, topic, qos);
                }
            }
        }
    })
}

/// The counts of one run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub sent: u64,
    /// Arrivals (duplicates included).
    pub received: u64,
    /// Sent, never received.
    pub lost: u64,
    /// Arrivals beyond the first of a message.
    pub duplicated: u64,
    /// First arrivals of a message after a later message of the same topic.
    pub out_of_order: u64,
    /// The extra copies, by payload.
    pub duplicates: Vec<Vec<u8>>,
    /// Duplicates per QoS (index 0..=2).
    pub duplicated_by_qos: [u64; 3],
    /// The lost messages as `<topic>:<n>`.
    pub lost_list: Vec<String>,
}

/// Compares what was sent with what arrived.
pub fn tally(sent: &Sent, arrivals: &[Arrival]) -> Report {
    let mut seen: HashSet<(String, u64)> = HashSet::new();
    let mut max_seen: HashMap<String, u64> = HashMap::new();
    let mut r = Report {
        sent: sent.total,
        ..Report::default()
    };
    for a in arrivals {
        let Some(m) = parse_payload(&a.payload) else {
            continue;
        };
        r.received += 1;
        if !seen.insert((m.topic.clone(), m.n)) {
            r.duplicated += 1;
            r.duplicated_by_qos[a.qos.min(2) as usize] += 1;
            r.duplicates.push(a.payload.clone());
            continue;
        }
        let max = max_seen.entry(m.topic).or_insert(0);
        if m.n < *max {
            r.out_of_order += 1;
        } else {
            *max = m.n;
        }
    }
    for (t, &n) in &sent.per_topic {
        for i in 1..=n {
            if !seen.contains(&(t.clone(), i)) {
                r.lost += 1;
                r.lost_list.push(format!("{t}:{i}"));
            }
        }
    }
    r
}

/// Duplicates that G7 does not allow: the message was not in flight at a link loss, and no
/// copy came as a redelivery (DUP) on the subscriber's own link.
pub fn unexplained_duplicates(
    r: &Report,
    inflight_at_loss: &HashSet<Vec<u8>>,
    arrivals: &[Arrival],
) -> Vec<String> {
    let redelivered: HashSet<&[u8]> = arrivals
        .iter()
        .filter(|a| a.dup)
        .map(|a| a.payload.as_slice())
        .collect();
    r.duplicates
        .iter()
        .filter(|p| !inflight_at_loss.contains(*p) && !redelivered.contains(p.as_slice()))
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect()
}

/// Bridge FIFO at the wire (G4): first transmissions that came after a later-published
/// message's first transmission.
pub fn wire_fifo_violations(wire: &[WireSend]) -> u64 {
    let mut first: HashSet<&[u8]> = HashSet::new();
    let mut max_g = 0;
    let mut bad = 0;
    for w in wire {
        if !first.insert(&w.payload) {
            continue;
        }
        let Some(m) = parse_payload(&w.payload) else {
            continue;
        };
        if m.g < max_g {
            bad += 1;
        } else {
            max_g = m.g;
        }
    }
    bad
}

/// Seconds from `restored` to the first arrival of the last message that was sent before it
/// (`backlog`: what was sent by then); 0 when nothing of the backlog arrived after it.
pub fn drain_secs(arrivals: &[Arrival], backlog: &Sent, restored: Instant) -> f64 {
    let mut seen: HashSet<(String, u64)> = HashSet::new();
    let mut last = restored;
    for a in arrivals {
        let Some(m) = parse_payload(&a.payload) else {
            continue;
        };
        let in_backlog = backlog.per_topic.get(&m.topic).is_some_and(|&b| m.n <= b);
        if in_backlog && seen.insert((m.topic, m.n)) && a.at > last {
            last = a.at;
        }
    }
    last.duration_since(restored).as_secs_f64()
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent {} received {} lost {} duplicated {} (QoS 1: {}, QoS 2: {}) out of order {}",
            self.sent,
            self.received,
            self.lost,
            self.duplicated,
            self.duplicated_by_qos[1],
            self.duplicated_by_qos[2],
            self.out_of_order
        )
    }
}
