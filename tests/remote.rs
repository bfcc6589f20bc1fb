//! Issue 20 end to end: the outbox driven as the NanoNNG hook drives it (link_up_connack,
//! lease/bind, acks, link_down_reason) against remotes that are not mosquitto's defaults: the
//! scripted remote of `tests/scripted` (any CONNACK, Session Present, reason codes,
//! DISCONNECT, misbehaviour), and a real mosquitto with `max_qos 1`. Every message is
//! numbered: each test counts what was delivered, what is a dead letter, and that nothing
//! else went missing (no loss, no jam).

#[path = "harness/mod.rs"]
mod harness;
#[path = "scripted/mod.rs"]
mod scripted;

use nmq_outbox::{Config, NewMessage, Outbox};
use scripted::{publish, Bridge, Misbehave, Remote, Script, Verdict};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn open(path: &Path, set: impl FnOnce(&mut Config)) -> Arc<Outbox> {
    let mut c = Config::new(path, "bridge");
    c.group_commit_ms = 5;
    c.window = 8;
    c.backoff_ms = 50;
    set(&mut c);
    Arc::new(Outbox::open(c).unwrap())
}

/// Appends message `id` (its payload) on `topic`.
fn put(ob: &Outbox, ver: u8, topic: &str, qos: u8, id: u32) {
    put_with(ob, ver, topic, qos, false, &id.to_be_bytes());
}

fn put_with(ob: &Outbox, ver: u8, topic: &str, qos: u8, retain: bool, payload: &[u8]) {
    ob.append(&NewMessage {
        qos,
        expiry_secs: 0,
        data: &publish(ver, topic, qos, retain, payload),
    })
    .unwrap();
}

fn id(p: &[u8]) -> u32 {
    u32::from_be_bytes(p[..4].try_into().unwrap())
}

/// Delivered ids with how many times each.
fn tally(delivered: &[Vec<u8>]) -> BTreeMap<u32, u32> {
    let mut m = BTreeMap::new();
    for p in delivered {
        *m.entry(id(p)).or_insert(0) += 1;
    }
    m
}

/// The ids of the dead letters in the file.
fn dead_ids(path: &Path) -> Vec<(u32, String, Option<u8>)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let bid: i64 = conn
        .query_row("SELECT id FROM bridge WHERE name = 'bridge'", [], |r| {
            r.get(0)
        })
        .unwrap();
    nmq_outbox::dead::list(&conn, bid, 0)
        .unwrap()
        .into_iter()
        .map(|d| {
            let p = scripted::payload_of(5, &d.data);
            (id(&p), d.reason, d.reason_code)
        })
        .collect()
}

/// Maximum QoS 1 (AWS IoT Core, Azure Event Grid) with QoS 2 rows: the remote refuses a QoS
/// 2 PUBLISH (DISCONNECT 0x9B, as the protocol asks). Measured with real NanoMQ before: 168 of
/// 270 lost, the window jammed. Here: every row sent at QoS 1, 0 lost, no jam.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maximum_qos_1_with_qos2_rows_loses_nothing_and_never_jams() {
    let remote = Remote::start(Script {
        connack_props: vec![0x24, 1, 0x21, 0, 16],
        max_qos: 1,
        ..Script::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ob = open(&dir.path().join("o.db"), |_| {});
    for i in 0..270 {
        put(&ob, 5, "t/q", if i % 3 == 0 { 1 } else { 2 }, i);
    }
    let bridge = Bridge::start(Arc::clone(&ob), remote.addr, 5);
    assert!(bridge.wait_empty(WAIT).await, "jammed: {:?}", ob.stats());
    bridge.stop().await;
    let seen = remote.seen();
    assert!(seen.violations.is_empty(), "{:?}", seen.violations);
    let t = tally(&remote.delivered());
    assert_eq!(t.len(), 270, "lost: {}", 270 - t.len());
    assert!(t.values().all(|&n| n == 1));
    assert!(seen.publishes.iter().all(|p| p.qos == 1));
    let s = ob.stats().unwrap();
    assert_eq!((s.acked, s.qos_downgraded, s.dead_letters), (270, 180, 0));
}

/// Session Present 0 with released QoS 2 rows: the remote had answered PUBREC, the link went
/// before the PUBREL, and the remote dropped the session (MQTT 5 without Session Expiry). A
/// PUBREL resume would be answered PUBCOMP and the message never delivered; the rows are
/// sent again as new PUBLISHes: delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_present_0_resends_released_rows_and_delivers_them() {
    let mut recs = 0;
    let remote = Remote::start(Script {
        // the first 5 QoS 2 messages: PUBREC, then the link goes
        rule: Box::new(move |p| {
            if p.qos == 2 && recs < 5 {
                recs += 1;
                Verdict::RecThenClose
            } else {
                Verdict::Accept
            }
        }),
        keep_sessions: false,
        ..Script::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ob = open(&dir.path().join("o.db"), |c| c.window = 1);
    for i in 0..20 {
        put(&ob, 5, "t/q2", 2, i);
    }
    let bridge = Bridge::start(Arc::clone(&ob), remote.addr, 5);
    assert!(bridge.wait_empty(WAIT).await, "{:?}", ob.stats());
    bridge.stop().await;
    let seen = remote.seen();
    assert!(
        seen.session_present.iter().all(|p| !p),
        "a new session each time"
    );
    assert_eq!(
        seen.unknown_pubrels, 0,
        "no PUBREL into a session that is gone"
    );
    let t = tally(&remote.delivered());
    assert_eq!(
        t.len(),
        20,
        "lost: {:?}",
        (0..20).filter(|i| !t.contains_key(i)).collect::<Vec<_>>()
    );
    assert!(t.values().all(|&n| n == 1), "{t:?}");
}

/// ...and with a session kept (Session Present 1) the same rows resume with PUBREL: the
/// message the remote holds is delivered once, never published twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_present_1_resumes_released_rows_with_pubrel() {
    let mut recs = 0;
    let remote = Remote::start(Script {
        rule: Box::new(move |p| {
            if p.qos == 2 && recs < 3 {
                recs += 1;
                Verdict::RecThenClose
            } else {
                Verdict::Accept
            }
        }),
        ..Script::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ob = open(&dir.path().join("o.db"), |c| c.window = 1);
    for i in 0..6 {
        put(&ob, 5, "t/q2", 2, i);
    }
    let bridge = Bridge::start(Arc::clone(&ob), remote.addr, 5);
    assert!(bridge.wait_empty(WAIT).await, "{:?}", ob.stats());
    let drove = bridge.stop().await;
    let seen = remote.seen();
    assert_eq!(seen.publishes.len(), 6, "each published once");
    assert_eq!(drove.pubrels, 3, "three resumed with PUBREL: {drove:?}");
    assert_eq!(seen.unknown_pubrels, 0);
    let t = tally(&remote.delivered());
    assert_eq!(t.len(), 6);
    assert!(t.values().all(|&n| n == 1), "{t:?}");
}

/// Maximum Packet Size: a row above it is a dead letter (never sent: the remote sees no
/// violation), the rest is forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maximum_packet_size_dead_letters_the_large_row_and_forwards_the_rest() {
    let remote = Remote::start(Script {
        connack_props: vec![0x27, 0, 0, 0, 200],
        max_packet_size: Some(200),
        ..Script::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.db");
    let ob = open(&path, |_| {});
    for i in 0..10u32 {
        let mut payload = i.to_be_bytes().to_vec();
        payload.resize(if i == 4 { 500 } else { 50 }, b'x');
        put_with(&ob, 5, "t/big", 1, false, &payload);
    }
    let bridge = Bridge::start(Arc::clone(&ob), remote.addr, 5);
    assert!(bridge.wait_empty(WAIT).await, "{:?}", ob.stats());
    bridge.stop().await;
    assert!(remote.seen().violations.is_empty());
    let t = tally(&remote.delivered());
    assert_eq!(
        t.keys().copied().collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 5, 6, 7, 8, 9]
    );
    ob.flush().unwrap();
    assert_eq!(dead_ids(&path), vec![(4, "packet_too_large".into(), None)]);
}

/// A refused topic answered PUBACK 0x87: a dead letter with its reason code, the rest goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puback_0x87_dead_letters_the_row_and_the_rest_goes_on() {
    let remote = Remote::start(Script {
        rule: Box::new(|p| {
            if p.topic.starts_with("deny/") {
                Verdict::Refuse(0x87)
            } else {
                Verdict::Accept
            }
        }),
        ..Script::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.db");
    let ob = open(&path, |_| {});
    for i in 0..30 {
        put(&ob, 5, if i % 10 == 3 { "deny/x" } else { "ok" }, 1, i);
    }
    let bridge = Bridge::start(Arc::clone(&ob), remote.addr, 5);
    assert!(bridge.wait_empty(WAIT).await, "{:?}", ob.stats());
    bridge.stop().await;
    let t = tally(&remote.delivered());
    assert_eq!(t.len(), 27);
    ob.flush().unwrap();
    let dead: Vec<u32> = dead_ids(&path).iter().map(|d| d.0).collect();
    assert_eq!(dead, vec![3, 13, 23]);
    assert!(dead_ids(&path).iter().all(|d| d.2 == Some(0x87)));
    let s = ob.stats().unwrap();
    assert_eq!((s.dead_letters, s.dropped_rejected, s.acked), (3, 3, 27));
}

/// A refused topic answered with DISCONNECT 0x87 (MQTT 5), or a bare close (MQTT 3.1.1: a
/// server refusing a message just closes): the replay probes, the culprit becomes a dead
/// letter after max_attempts, the rest is forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_by_close_dead_letters_the_culprit_after_max_attempts() {
    for (ver, verdict) in [(5u8, Verdict::Disconnect(0x87)), (4, Verdict::Close)] {
        let remote = Remote::start(Script {
            rule: Box::new(move |p| {
                if p.topic == "deny" {
                    verdict
                } else {
                    Verdict::Accept
                }
            }),
            ..Script::default()
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.db");
        let ob = open(&path, |_| {});
        for i in 0..40 {
            put(
                &ob,
                ver,
                if i == 10 { "deny" } else { "ok" },
                1 + (i % 2) as u8,
                i,
            );
        }
        let bridge = Bridge::start(Arc::clone(&ob), remote.addr, ver);
        assert!(bridge.wait_empty(WAIT).await, "v{ver}: {:?}", ob.stats());
        let drove = bridge.stop().await;
        let t = tally(&remote.delivered());
        let lost: Vec<u32> = (0..40).filter(|i| *i != 10 && !t.contains_key(i)).collect();
        assert!(lost.is_empty(), "v{ver}: lost {lost:?}");
        assert!(!t.contains_key(&10));
        ob.flush().unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        let (reason, code, attempts): (String, Option<i64>, i64) = conn
            .query_row("SELECT reason, reason_code, attempts FROM dead", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(reason, "refused_by_close", "v{ver}");
        assert_eq!(attempts, 3, "v{ver}");
        assert_eq!(code, if ver == 5 { Some(0x87) } else { None }, "v{ver}");
        let s = ob.stats().unwrap();
        assert!(!s.probing, "v{ver}: the window is back");
        // the culprit was sent max_attempts times alone, plus once in the first window
        let sent_deny = remote
            .seen()
            .publishes
            .iter()
            .filter(|p| p.topic == "deny")
            .count();
        assert_eq!(sent_deny, 4, "v{ver}: {drove:?}");
        if ver == 5 {
            assert_eq!(drove.disconnects, vec![0x87; 4], "v{ver}");
        }
    }
}

/// Quota: PUBACK 0x97 for a while, then a DISCONNECT 0x97: the replay backs off and then
/// delivers everything; no dead letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_exceeded_backs_off_then_delivers() {
    let mut n = 0;
    let remote = Remote::start(Script {
        rule: Box::new(move |_| {
            n += 1;
            match n {
                1..=3 => Verdict::Refuse(0x97),
                4 => Verdict::Disconnect(0x97),
                _ => Verdict::Accept,
            }
        }),
        ..Script::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ob = open(&dir.path().join("o.db"), |c| c.window = 1);
    for i in 0..10 {
        put(&ob, 5, "t", 1, i);
    }
    let t0 = std::time::Instant::now();
    let bridge = Bridge::start(Arc::clone(&ob), remote.addr, 5);
    assert!(bridge.wait_empty(WAIT).await, "{:?}", ob.stats());
    bridge.stop().await;
    // back-offs of 50, 100, 200 and 400 ms
    assert!(
        t0.elapsed() >= Duration::from_millis(700),
        "{:?}",
        t0.elapsed()
    );
    let t = tally(&remote.delivered());
    assert_eq!(t.len(), 10);
    assert!(t.values().all(|&n| n == 1));
    let s = ob.stats().unwrap();
    assert_eq!((s.backoffs, s.dead_letters, s.acked), (4, 0, 10));
}

/// A remote that misbehaves: acks for packet ids nobody used, every ack twice, a PUBREC with
/// an error (a dead letter, as a refusal), PUBCOMP 0x92 for every PUBREL. No crash, counted,
/// and nothing lost that was not refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_remote_crashes_nothing_and_loses_nothing() {
    let remote = Remote::start(Script {
        rule: Box::new(|p| {
            if p.topic == "bad" {
                Verdict::Refuse(0x80)
            } else {
                Verdict::Accept
            }
        }),
        misbehave: Misbehave {
            ack_unknown: true,
            duplicate_acks: true,
            pubcomp_not_found: true,
        },
        ..Script::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.db");
    let ob = open(&path, |_| {});
    for i in 0..50 {
        let topic = if i == 7 { "bad" } else { "t" };
        put(&ob, 5, topic, 1 + (i % 2) as u8, i);
    }
    let bridge = Bridge::start(Arc::clone(&ob), remote.addr, 5);
    assert!(bridge.wait_empty(WAIT).await, "{:?}", ob.stats());
    let drove = bridge.stop().await;
    let t = tally(&remote.delivered());
    // QoS 2 is delivered at the first PUBREL (the PUBCOMP says 0x92 anyway: complete).
    assert_eq!(t.len(), 49, "{t:?}");
    assert!(!t.contains_key(&7));
    ob.flush().unwrap();
    assert_eq!(dead_ids(&path), vec![(7, "rejected".into(), Some(0x80))]);
    let s = ob.stats().unwrap();
    assert!(s.acks_ignored >= 50, "{s:?}");
    assert_eq!(drove.not_ours, s.acks_ignored);
    assert_eq!(s.acked, 49);
}

/// A CONNACK that refuses the connection (0x87 not authorized): the link stays down, nothing
/// is sent; once the remote accepts, everything goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connack_keeps_the_link_down_until_accepted() {
    let remote = Remote::start(Script {
        connack_reason: 0x87,
        ..Script::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ob = open(&dir.path().join("o.db"), |_| {});
    for i in 0..5 {
        put(&ob, 5, "t", 1, i);
    }
    let bridge = Bridge::start(Arc::clone(&ob), remote.addr, 5);
    assert!(
        bridge
            .wait(WAIT, |_| bridge.drove().refused_connacks >= 3)
            .await
    );
    assert!(!ob.stats().unwrap().link_up);
    assert!(remote.seen().publishes.is_empty());
    remote.script(|s| s.connack_reason = 0);
    assert!(bridge.wait_empty(WAIT).await);
    bridge.stop().await;
    assert_eq!(tally(&remote.delivered()).len(), 5);
}

/// Retain Available 0: retained rows go with RETAIN cleared (the remote sees no violation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_unavailable_sends_without_retain() {
    let remote = Remote::start(Script {
        connack_props: vec![0x25, 0],
        retain_available: false,
        ..Script::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ob = open(&dir.path().join("o.db"), |_| {});
    for i in 0..6u32 {
        put_with(&ob, 5, "t", 1, i % 2 == 0, &i.to_be_bytes());
    }
    let bridge = Bridge::start(Arc::clone(&ob), remote.addr, 5);
    assert!(bridge.wait_empty(WAIT).await, "{:?}", ob.stats());
    bridge.stop().await;
    assert!(remote.seen().violations.is_empty());
    assert_eq!(tally(&remote.delivered()).len(), 6);
    assert_eq!(ob.stats().unwrap().retain_cleared, 3);
}

/// The real thing: mosquitto with `max_qos 1` advertises Maximum QoS 1 and disconnects a
/// client that publishes QoS 2 (0x9B). QoS 2 rows go at QoS 1 and all arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_max_qos_1_gets_every_qos2_row() {
    let broker = harness::Mosquitto::start_with(harness::MosquittoOptions {
        extra: "max_qos 1\n".into(),
        ..Default::default()
    });
    let sub = harness::Subscriber::start(broker.addr(), "subscriber").await;
    let dir = tempfile::tempdir().unwrap();
    let ob = open(&dir.path().join("o.db"), |c| c.window = 16);
    for i in 0..200 {
        put(&ob, 5, "test/maxqos", if i % 2 == 0 { 2 } else { 1 }, i);
    }
    let bridge = Bridge::start(Arc::clone(&ob), broker.addr(), 5);
    assert!(bridge.wait_empty(WAIT).await, "{:?}", ob.stats());
    let drove = bridge.stop().await;
    assert!(
        sub.wait_for(WAIT, |a| a.len() >= 200).await,
        "{} of 200 arrived",
        sub.count()
    );
    let arrivals = sub.arrivals().clone();
    let t = tally(
        &arrivals
            .iter()
            .map(|a| a.payload.clone())
            .collect::<Vec<_>>(),
    );
    assert_eq!(t.len(), 200);
    assert_eq!(drove.disconnects, Vec::<u8>::new(), "{drove:?}");
    let s = ob.stats().unwrap();
    assert_eq!((s.acked, s.qos_downgraded, s.dead_letters), (200, 100, 0));
}
