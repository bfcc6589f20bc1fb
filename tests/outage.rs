//! Outage suite against a real mosquitto (DESIGN.md section 2): the driver plays the NanoNNG
//! client through the outbox while a fault-injecting proxy cuts, blackholes, flaps or slows the
//! link, or the broker restarts, or the driver process is SIGKILLed. Every message carries a
//! per-topic sequence number; each scenario asserts 0 lost, in order, and duplicates only for
//! messages in flight at a cut (at most the in-flight window per link loss).

#[path = "harness/mod.rs"]
mod harness;

use harness::*;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
enum Fault {
    Cut,
    Blackhole,
    Flap,
    SlowAcks,
    BrokerRestart,
    /// A second cut while the backlog drains.
    CutDuringDrain,
}

struct Outcome {
    report: Report,
    drain_secs: f64,
    link_losses: u64,
    refused: u64,
    dropped: u64,
}

async fn scenario(fault: Fault, scale: u32, outage: Duration) -> Outcome {
    let mut broker = Mosquitto::start();
    let proxy = Proxy::start(broker.addr()).await;
    let sub = Subscriber::start(broker.addr(), "subscriber").await;
    let dir = tempfile::tempdir().unwrap();
    let keepalive = Duration::from_secs(1);
    let driver = Arc::new(Driver::start(DriverConfig {
        broker: proxy.addr,
        client_id: "bridge".into(),
        keepalive,
        db: dir.path().join("outbox.db"),
        window: 32,
    }));
    let sent = Arc::new(Mutex::new(HashMap::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = spawn_publisher(Arc::clone(&driver), scale, Arc::clone(&sent), stop.clone());

    // Normal, outage, restore, more traffic, stop, drain (the reported timeline, compressed).
    tokio::time::sleep(Duration::from_secs(1)).await;
    match fault {
        Fault::Cut | Fault::CutDuringDrain => proxy.cut(),
        Fault::Blackhole => proxy.blackhole(),
        Fault::SlowAcks => proxy.set(Mode::SlowAcks(Duration::from_millis(150))),
        Fault::BrokerRestart => broker.stop(),
        Fault::Flap => {}
    }
    let outage_end = Instant::now() + outage;
    if let Fault::Flap = fault {
        let mut up = true;
        while Instant::now() < outage_end {
            up = !up;
            if up {
                proxy.restore()
            } else {
                proxy.cut()
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    } else {
        tokio::time::sleep(outage).await;
    }
    let backlog_sent: HashMap<String, u64> = sent.lock().unwrap().clone();
    let restored = Instant::now();
    match fault {
        Fault::BrokerRestart => broker.restart(),
        _ => proxy.restore(),
    }
    if let Fault::CutDuringDrain = fault {
        // Cut again as soon as the drain is under way, then restore.
        let started = sub
            .wait_for(Duration::from_secs(10), |r| {
                r.iter().any(|(t, _)| *t > restored)
            })
            .await;
        assert!(started, "the drain did not start");
        proxy.cut();
        tokio::time::sleep(Duration::from_millis(700)).await;
        proxy.restore();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    publisher.await.unwrap();

    let sent_now: HashMap<String, u64> = sent.lock().unwrap().clone();
    let total: u64 = sent_now.values().sum();
    assert!(
        driver.wait_empty(Duration::from_secs(60)).await,
        "{fault:?}: the outbox did not drain: {:?}",
        driver.outbox.stats().unwrap()
    );
    let all = sub
        .wait_for(Duration::from_secs(30), |r| {
            tally(&sent_now, r).lost == 0 || r.len() as u64 >= total * 2
        })
        .await;
    let received = sub.received.lock().unwrap().clone();
    let report = tally(&sent_now, &received);
    // Seconds from restore to the first arrival of the last backlog message.
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
    let counters = driver.counters.lock().unwrap().clone();
    sub.stop();
    Arc::try_unwrap(driver).ok().unwrap().stop().await;
    let _ = all;
    Outcome {
        report,
        drain_secs: last_backlog.duration_since(restored).as_secs_f64(),
        link_losses: counters.link_losses,
        refused: counters.refused,
        dropped: st.dropped_full + st.dropped_expired + st.dropped_rejected,
    }
}

fn check(name: &str, o: &Outcome, max_inflight: u64) {
    println!(
        "{name:<18} {} | drain {:.2} s | link losses {} | refused {} | dropped {}",
        o.report, o.drain_secs, o.link_losses, o.refused, o.dropped
    );
    assert!(o.report.sent > 0);
    assert_eq!(o.report.lost, 0, "{name}: lost messages");
    assert_eq!(o.report.out_of_order, 0, "{name}: out of order");
    assert_eq!(
        o.refused + o.dropped,
        0,
        "{name}: nothing refused or dropped"
    );
    assert!(
        o.report.duplicated <= o.link_losses.max(1) * max_inflight,
        "{name}: {} duplicates for {} link losses",
        o.report.duplicated,
        o.link_losses
    );
}

// The broker announces Receive Maximum 64 (max_inflight_messages); the window is 32 and direct
// sends are bounded by Receive Maximum, so at most 64 messages are in flight at a cut.
const MAX_INFLIGHT: u64 = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_cut_with_rst() {
    let o = scenario(Fault::Cut, 10, Duration::from_secs(5)).await;
    assert!(o.link_losses >= 1);
    check("cut (RST)", &o, MAX_INFLIGHT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_blackhole() {
    let o = scenario(Fault::Blackhole, 10, Duration::from_secs(5)).await;
    assert!(o.link_losses >= 1, "keepalive must detect the silent link");
    check("silent blackhole", &o, MAX_INFLIGHT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_link() {
    let o = scenario(Fault::Flap, 10, Duration::from_secs(5)).await;
    check("flapping link", &o, MAX_INFLIGHT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_acks() {
    let o = scenario(Fault::SlowAcks, 10, Duration::from_secs(4)).await;
    check("slow acks", &o, MAX_INFLIGHT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_broker_restart() {
    let o = scenario(Fault::BrokerRestart, 10, Duration::from_secs(3)).await;
    check("broker restart", &o, MAX_INFLIGHT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_cut_while_draining() {
    let o = scenario(Fault::CutDuringDrain, 10, Duration::from_secs(5)).await;
    assert!(o.link_losses >= 2);
    check("cut during drain", &o, MAX_INFLIGHT);
}

// ---- SIGKILL of the driver process ----------------------------------------------------------

const CHILD_ENV: &str = "NMQ_OUTAGE_CHILD";

/// The child: a driver on the given database. Mode "publish": publishes test/k:1.. and prints
/// "DURABLE n" once message n and all before it are committed. Mode "drain": publishes nothing
/// and prints "EMPTY" once every stored message is acknowledged. A no-op as a plain test.
#[test]
fn driver_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let (mode, broker, db) = (parts[0], parts[1].parse().unwrap(), parts[2]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let driver = Driver::start(DriverConfig {
            broker,
            client_id: "bridge".into(),
            keepalive: Duration::from_secs(1),
            db: db.into(),
            window: 32,
        });
        if mode == "publish" {
            let start = std::time::Instant::now();
            let mut n = 0u64;
            while start.elapsed() < Duration::from_secs(60) {
                for _ in 0..20 {
                    n += 1;
                    driver.publish("test/k", 1, payload("test/k", n));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                // The commands are processed in order: once the outbox holds n rows (link down,
                // so every message is stored) a flush makes them durable.
                let deadline = std::time::Instant::now() + Duration::from_secs(5);
                while driver.outbox.stats().unwrap().enqueued < n {
                    assert!(std::time::Instant::now() < deadline);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                driver.outbox.flush().unwrap();
                println!("DURABLE {n}");
            }
        } else {
            assert!(driver.wait_empty(Duration::from_secs(60)).await);
            println!("EMPTY");
        }
        driver.stop().await;
    });
}

fn spawn_child(
    mode: &str,
    broker: std::net::SocketAddr,
    db: &std::path::Path,
) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "driver_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{mode}|{broker}|{}", db.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The number after "DURABLE " in a child's line (libtest may print "test ... " before it).
fn durable_of(line: &str) -> Option<u64> {
    line.split("DURABLE ").nth(1)?.trim().parse().ok()
}

/// Reads the child's stdout until `until` matches a line (bounded by the child's own limits).
fn read_until(child: &mut std::process::Child, until: impl Fn(&str) -> bool) -> Option<String> {
    let out = child.stdout.as_mut().unwrap();
    let mut last = None;
    for line in BufReader::new(out).lines() {
        let line = line.ok()?;
        if until(&line) {
            return Some(line);
        }
        last = Some(line);
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_offline_then_restart() {
    let broker = Mosquitto::start();
    let proxy = Proxy::start(broker.addr()).await;
    let sub = Subscriber::start(broker.addr(), "subscriber").await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("outbox.db");
    proxy.cut(); // offline from the start
    let mut child = spawn_child("publish", proxy.addr, &db);
    let line = read_until(&mut child, |l| durable_of(l).is_some_and(|n| n >= 1000)).unwrap();
    child.kill().unwrap(); // SIGKILL, while publishing offline
    child.wait().unwrap();
    let durable = durable_of(&line).expect("a DURABLE line");

    proxy.restore();
    let mut child = spawn_child("drain", proxy.addr, &db);
    let done = read_until(&mut child, |l| l.contains("EMPTY"));
    assert!(
        done.is_some_and(|l| l.contains("EMPTY")),
        "the drain child did not empty the outbox"
    );
    child.wait().unwrap();
    let sent = HashMap::from([("test/k".to_string(), durable)]);
    assert!(
        sub.wait_for(Duration::from_secs(30), |r| tally(&sent, r).lost == 0)
            .await
    );
    let r = tally(&sent, &sub.received.lock().unwrap());
    println!("kill while offline  {r} (durable when killed: {durable})");
    assert_eq!(r.lost, 0);
    assert_eq!(r.out_of_order, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_draining_then_restart() {
    let broker = Mosquitto::start();
    let proxy = Proxy::start(broker.addr()).await;
    let sub = Subscriber::start(broker.addr(), "subscriber").await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("outbox.db");
    proxy.cut();
    let mut child = spawn_child("publish", proxy.addr, &db);
    let line = read_until(&mut child, |l| durable_of(l).is_some_and(|n| n >= 3000)).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let durable = durable_of(&line).expect("a DURABLE line");

    // Drain slowly, kill the drainer in the middle, drain again.
    proxy.set(Mode::SlowAcks(Duration::from_millis(5)));
    let mut child = spawn_child("drain", proxy.addr, &db);
    assert!(
        sub.wait_for(Duration::from_secs(30), |r| r.len() >= 500)
            .await
    );
    child.kill().unwrap(); // SIGKILL while draining
    child.wait().unwrap();
    let mid = sub.count();
    proxy.restore();
    let mut child = spawn_child("drain", proxy.addr, &db);
    let done = read_until(&mut child, |l| l.contains("EMPTY"));
    assert!(
        done.is_some_and(|l| l.contains("EMPTY")),
        "the drain child did not empty the outbox"
    );
    child.wait().unwrap();
    let sent = HashMap::from([("test/k".to_string(), durable)]);
    assert!(
        sub.wait_for(Duration::from_secs(30), |r| tally(&sent, r).lost == 0)
            .await
    );
    let r = tally(&sent, &sub.received.lock().unwrap());
    println!("kill while draining {r} (killed after {mid} received)");
    assert_eq!(r.lost, 0);
    assert_eq!(r.out_of_order, 0);
    assert!(
        r.duplicated <= MAX_INFLIGHT,
        "duplicates only for the in-flight window"
    );
}

// ---- disk full and a corrupt database ---------------------------------------------------

struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_during_outage() {
    let broker = Mosquitto::start();
    let proxy = Proxy::start(broker.addr()).await;
    let sub = Subscriber::start(broker.addr(), "subscriber").await;
    let dir = tempfile::tempdir().unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(dir.path())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        mounted,
        "mounting a tmpfs needs root (scripts/test.sh runs as root)"
    );
    let _mount = Tmpfs(dir.path().to_path_buf());
    let filler = dir.path().join("filler");
    std::fs::write(&filler, vec![0u8; 3 * 1024 * 1024]).unwrap();
    let driver = Arc::new(Driver::start(DriverConfig {
        broker: proxy.addr,
        client_id: "bridge".into(),
        keepalive: Duration::from_secs(1),
        db: dir.path().join("outbox.db"),
        window: 32,
    }));
    proxy.cut();
    let sent = Arc::new(Mutex::new(HashMap::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = spawn_publisher(Arc::clone(&driver), 40, Arc::clone(&sent), stop.clone());
    // Offline until the disk is full and the outbox refuses messages (bounded).
    let deadline = Instant::now() + Duration::from_secs(30);
    while driver.counters.lock().unwrap().refused < 50 {
        assert!(Instant::now() < deadline, "the disk never filled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Space comes back, then the link.
    std::fs::remove_file(&filler).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.restore();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    publisher.await.unwrap();
    assert!(
        driver.wait_empty(Duration::from_secs(60)).await,
        "not drained"
    );
    let sent_now = sent.lock().unwrap().clone();
    let refused = driver.counters.lock().unwrap().refused;
    let total: u64 = sent_now.values().sum();
    sub.wait_for(Duration::from_secs(30), |r| {
        tally(&sent_now, r).lost <= refused || r.len() as u64 >= total
    })
    .await;
    let r = tally(&sent_now, &sub.received.lock().unwrap());
    println!("disk full          {r} | refused (told to the publisher) {refused}");
    // G1: every message not delivered was refused at once, with an error, never silently.
    assert_eq!(r.lost, refused);
    assert_eq!(r.out_of_order, 0);
    sub.stop();
    Arc::try_unwrap(driver).ok().unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_corrupted_between_runs() {
    let broker = Mosquitto::start();
    let proxy = Proxy::start(broker.addr()).await;
    let sub = Subscriber::start(broker.addr(), "subscriber").await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("outbox.db");
    let config = || DriverConfig {
        broker: proxy.addr,
        client_id: "bridge".into(),
        keepalive: Duration::from_secs(1),
        db: db.clone(),
        window: 32,
    };
    // First run: 100 messages stored offline, then a clean stop.
    proxy.cut();
    let driver = Driver::start(config());
    for n in 1..=100 {
        driver.publish("test/old", 1, payload("test/old", n));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while driver.outbox.stats().unwrap().messages < 100 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    driver.stop().await;
    // Between runs the file is damaged: its header page overwritten.
    let mut bytes = std::fs::read(&db).unwrap();
    let head = 4096.min(bytes.len());
    bytes[..head].fill(0xA5);
    std::fs::write(&db, &bytes).unwrap();
    let _ = std::fs::remove_file(dir.path().join("outbox.db-wal"));

    // Second run: the outbox renames the file aside and starts fresh; new traffic flows.
    proxy.restore();
    let driver = Driver::start(config());
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("outbox.db.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "the corrupt file is kept aside: {aside:?}");
    for n in 1..=50 {
        driver.publish("test/new", 1, payload("test/new", n));
    }
    assert!(driver.wait_empty(Duration::from_secs(30)).await);
    let sent = HashMap::from([("test/new".to_string(), 50)]);
    assert!(
        sub.wait_for(Duration::from_secs(30), |r| tally(&sent, r).lost == 0)
            .await
    );
    let r = tally(&sent, &sub.received.lock().unwrap());
    println!(
        "corrupt database   {r} (new traffic after quarantine of {})",
        aside[0]
    );
    assert_eq!(r.out_of_order, 0);
    sub.stop();
    driver.stop().await;
}
