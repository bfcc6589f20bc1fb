//! Outage suite against a real mosquitto (DESIGN.md section 2). The driver plays the NanoNNG
//! client through the outbox while a fault-injecting proxy cuts (RST), blackholes, withholds or
//! slows the acks, or flaps the link; or the broker restarts; or the driver process is
//! SIGKILLed offline and while draining; or the disk fills up; or the database is corrupted
//! between runs. Every message is numbered; each scenario reports sent, received, lost,
//! duplicated, out of order and the drain time, and asserts the contract:
//! - G1: 0 lost; every message handed over acknowledged, or refused with an error, or counted
//!   dropped (driver and outbox counters add up);
//! - G4: in order per topic at the subscriber, and first transmissions in publish order at the
//!   wire (bridge FIFO);
//! - G7: a duplicate only for a message in flight at a link loss; none at QoS 2 while the
//!   remote session persists (resent with the same packet id and DUP, or resumed with PUBREL).
//!
//! Timelines are the reported one compressed 10x with 10x the rates. Needs mosquitto (fails
//! when it is missing) and root for the disk-full test (tmpfs, or a loop-mounted file).

#[path = "harness/mod.rs"]
mod harness;

use harness::scenario::run;
use harness::*;
use nmq_outbox::{Level, LogFn, Logger};
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Outbox window of every driver here; the broker's Receive Maximum is 64.
const WINDOW: u32 = 32;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_cut_with_rst() {
    let o = run(Plan::compressed("5 s cut with RST", Fault::Cut, secs(5.0))).await;
    println!("{}", o.summary());
    o.assert_contract();
    assert!(o.counters.link_losses >= 1);
    assert_eq!(o.report.duplicated_by_qos[2], 0, "QoS 2 delivered twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_blackhole() {
    let o = run(Plan::compressed(
        "5 s silent blackhole",
        Fault::Blackhole,
        secs(5.0),
    ))
    .await;
    println!("{}", o.summary());
    o.assert_contract();
    assert!(
        o.counters.link_losses >= 1,
        "keepalive must detect the silence"
    );
    assert_eq!(o.report.duplicated_by_qos[2], 0, "QoS 2 delivered twice");
}

/// A blackhole shorter than the keepalive: the connection survives (the held bytes are
/// delivered, as TCP retransmission would), no reconnect, no duplicate. The keepalive is ten
/// times the blackhole: a loaded machine's stall is not taken for a lost link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_blackhole_within_keepalive() {
    let mut plan = Plan::compressed("1 s blackhole, keepalive 10 s", Fault::Blackhole, secs(1.0));
    plan.keepalive = secs(10.0);
    let o = run(plan).await;
    println!("{}", o.summary());
    o.assert_contract();
    assert_eq!(o.counters.link_losses, 0, "the connection should survive");
    assert_eq!(o.report.duplicated, 0);
}

/// The broker receives every message but no ack comes back: after the keepalive the driver
/// reconnects and resends. QoS 1 messages in flight arrive twice (allowed, G7); QoS 2 must
/// not, because they are resent with the same packet id and DUP into the persisted session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withheld_acks() {
    let o = run(Plan::compressed(
        "4 s acks withheld",
        Fault::WithholdAcks,
        secs(4.0),
    ))
    .await;
    println!("{}", o.summary());
    o.assert_contract();
    assert!(o.counters.link_losses >= 1);
    assert!(o.counters.dup_packets > 0, "resends carry DUP");
    assert_eq!(o.report.duplicated_by_qos[2], 0, "QoS 2 delivered twice");
}

/// Acks 300 ms late with 4x the compressed rates (360 msg/s against 64 in flight per 300 ms):
/// the window is full, new messages queue in the outbox behind the backlog with the link up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_acks() {
    let mut plan = Plan::compressed(
        "4 s acks 300 ms late",
        Fault::SlowAcks(secs(0.3)),
        secs(4.0),
    );
    plan.scale = 40;
    // No link loss is allowed here, and the keepalive is not what this tests: 10 s, so that a
    // loaded machine's stall (1.5 keepalives of silence) is not taken for one.
    plan.keepalive = secs(10.0);
    let o = run(plan).await;
    println!("{}", o.summary());
    o.assert_contract();
    assert_eq!(o.counters.link_losses, 0);
    assert_eq!(o.report.duplicated, 0);
    assert!(
        o.counters.appended > 0,
        "the window filled: messages were stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_link() {
    let o = run(Plan::compressed(
        "5 s flapping (300 ms)",
        Fault::Flap(secs(0.3)),
        secs(5.0),
    ))
    .await;
    println!("{}", o.summary());
    o.assert_contract();
    assert!(o.counters.link_losses >= 3);
    assert_eq!(o.report.duplicated_by_qos[2], 0, "QoS 2 delivered twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_broker_restart() {
    let o = run(Plan::compressed(
        "3 s remote broker restart",
        Fault::BrokerRestart,
        secs(3.0),
    ))
    .await;
    println!("{}", o.summary());
    o.assert_contract();
    assert!(o.counters.link_losses >= 1);
    assert_eq!(
        o.counters.fresh_sessions, 1,
        "the broker kept the session across its restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_cut_while_draining() {
    let o = run(Plan::compressed(
        "cut, then a cut while draining",
        Fault::CutDuringDrain(secs(0.7)),
        secs(5.0),
    ))
    .await;
    println!("{}", o.summary());
    o.assert_contract();
    assert!(o.counters.link_losses >= 2);
    assert_eq!(o.report.duplicated_by_qos[2], 0, "QoS 2 delivered twice");
}

/// The main job (the same run as `cargo run --example demo`): the reported outage, compressed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reported_outage_compressed() {
    let mut plan = Plan::compressed("reported: 100 s cut (10x)", Fault::Cut, secs(10.0));
    plan.progress = Some(secs(1.0));
    let window = plan.window;
    let o = run(plan).await;
    println!("{}", o.summary());
    o.assert_contract();
    assert!(o.report.sent >= 1100, "the reported volume (about 1170)");
    // Paced by the window, not by a timer: the replay filled it (an event; how long the drain
    // took is printed above, and bounded only by drain_max in the contract).
    assert_eq!(
        o.counters.max_leased, window as u64,
        "the drain never filled the window"
    );
}

// ---- SIGKILL of the driver process ----------------------------------------------------------

const CHILD_ENV: &str = "NMQ_OUTAGE_CHILD";
const CHILD_TOPICS: [(&str, u8); 2] = [("test/k1", 1), ("test/k2", 2)];

/// The child process (a no-op as a plain test): a driver on the given database.
/// - "publish": publishes test/k1 (QoS 1) and test/k2 (QoS 2) alternately, and after every 20
///   prints "DURABLE <total> <k1> <k2>" once all of them are committed; until killed (60 s).
/// - "drain": publishes nothing; prints "EMPTY" once the outbox is empty (60 s at most).
#[test]
fn driver_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let (mode, broker, db) = (parts[0], parts[1].parse().unwrap(), parts[2]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut cfg = DriverConfig::new(broker, db);
        cfg.outbox.window = WINDOW;
        cfg.record_wire = false;
        let driver = Driver::start(cfg);
        if mode == "publish" {
            let mut sent = Sent::default();
            let start = std::time::Instant::now();
            while start.elapsed() < Duration::from_secs(60) {
                for i in 0..20 {
                    let (t, q) = CHILD_TOPICS[i % 2];
                    sent.publish(&driver, t, q);
                }
                driver.flush().await.unwrap();
                let k = |t: &str| sent.per_topic.get(t).copied().unwrap_or(0);
                println!("DURABLE {} {} {}", sent.total, k("test/k1"), k("test/k2"));
                // Pacing: about 2000 messages per second.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        } else {
            assert!(driver.wait_empty(Duration::from_secs(60)).await);
            println!("EMPTY");
        }
        driver.stop().await;
    });
}

fn spawn_child(mode: &str, broker: std::net::SocketAddr, db: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "driver_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{mode}|{broker}|{}", db.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// "DURABLE <total> <k1> <k2>" (libtest may print "test ... " before it) as what was sent.
fn durable_of(line: &str) -> Option<Sent> {
    let rest = line.split("DURABLE ").nth(1)?;
    let v: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let mut s = Sent {
        total: *v.first()?,
        ..Sent::default()
    };
    for (i, (t, q)) in CHILD_TOPICS.iter().enumerate() {
        s.per_topic.insert(t.to_string(), *v.get(1 + i)?);
        s.qos.insert(t.to_string(), *q);
    }
    Some(s)
}

/// Reads the child's stdout until `until` matches a line; None at its end of output (the
/// child bounds its own run time).
fn read_until(child: &mut std::process::Child, until: impl Fn(&str) -> bool) -> Option<String> {
    let out = child.stdout.as_mut().unwrap();
    BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .find(|l| until(l))
}

/// Publishes offline in a child until `n` messages are committed, then SIGKILLs it.
fn publish_offline_then_kill(proxy: std::net::SocketAddr, db: &Path, n: u64) -> Sent {
    let mut child = spawn_child("publish", proxy, db);
    let line = read_until(&mut child, |l| durable_of(l).is_some_and(|s| s.total >= n))
        .expect("the child reported nothing durable");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    durable_of(&line).unwrap()
}

fn drain_in_child(proxy: std::net::SocketAddr, db: &Path) {
    let mut child = spawn_child("drain", proxy, db);
    let done = read_until(&mut child, |l| l.contains("EMPTY"));
    let _ = child.kill();
    child.wait().unwrap();
    assert!(done.is_some(), "the drain child did not empty the outbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_offline_then_restart() {
    let broker = Mosquitto::start();
    let proxy = Proxy::start(broker.addr()).await;
    let sub = Subscriber::start(broker.addr(), "subscriber").await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("outbox.db");
    proxy.cut(); // offline from the start
    let durable = publish_offline_then_kill(proxy.addr, &db, 1000);

    proxy.restore();
    drain_in_child(proxy.addr, &db);
    sub.wait_for(secs(30.0), |a| tally(&durable, a).lost == 0)
        .await;
    let r = tally(&durable, &sub.arrivals());
    println!(
        "{:<26} {r} (committed when killed: {})",
        "SIGKILL offline, restart", durable.total
    );
    assert_eq!(r.lost, 0, "committed messages lost: {:?}", r.lost_list);
    assert_eq!(r.out_of_order, 0);
    assert_eq!(r.duplicated, 0, "nothing was in flight");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_draining_then_restart() {
    let broker = Mosquitto::start();
    let proxy = Proxy::start(broker.addr()).await;
    let sub = Subscriber::start(broker.addr(), "subscriber").await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("outbox.db");
    proxy.cut();
    let durable = publish_offline_then_kill(proxy.addr, &db, 3000);

    // Drain with acks 50 ms late (about 640 msg/s with window 32), SIGKILL the drainer in the
    // middle, drain again in a new process.
    proxy.slow_acks(secs(0.05));
    let mut child = spawn_child("drain", proxy.addr, &db);
    assert!(
        sub.wait_for(secs(30.0), |a| a.len() >= 500).await,
        "the first drain did not start"
    );
    child.kill().unwrap(); // SIGKILL while draining
    child.wait().unwrap();
    let at_kill = sub.count();
    proxy.restore();
    drain_in_child(proxy.addr, &db);
    sub.wait_for(secs(30.0), |a| tally(&durable, a).lost == 0)
        .await;
    let r = tally(&durable, &sub.arrivals());
    println!(
        "{:<26} {r} (killed after {at_kill} received)",
        "SIGKILL draining, restart"
    );
    assert_eq!(r.lost, 0, "committed messages lost: {:?}", r.lost_list);
    assert_eq!(r.out_of_order, 0);
    assert!(
        at_kill < r.sent as usize,
        "killed before the end of the drain"
    );
    // In flight at the kill: the window; plus acked rows whose delete was not yet committed
    // (the group commit: at most its count).
    let bound = WINDOW as u64 + nmq_outbox::config::DEFAULT_GROUP_COMMIT_COUNT as u64;
    assert!(
        r.duplicated <= bound,
        "{} duplicates: more than the window plus one group commit ({bound})",
        r.duplicated
    );
}

// ---- disk full and a corrupt database -------------------------------------------------------

/// Log lines of an outbox, captured.
type LogLines = Arc<Mutex<Vec<(Level, String)>>>;

fn capture_log() -> (Logger, LogLines) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l = Arc::clone(&lines);
    let sink: LogFn = Arc::new(move |level, msg| l.lock().unwrap().push((level, msg.to_string())));
    (Logger::new(Some(sink), Level::Info), lines)
}

/// A small file system mounted on a temp dir: a tmpfs, or else an ext4 loop file. Needs root;
/// fails loudly without it. Unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
    _image: Option<tempfile::TempDir>,
}

impl SmallDisk {
    fn mount(mb: u32) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let ok = |c: &mut Command| c.status().is_ok_and(|s| s.success());
        // NMQ_TEST_LOOP_DISK=1 skips the tmpfs (to exercise the fallback).
        let tmpfs = std::env::var_os("NMQ_TEST_LOOP_DISK").is_none()
            && ok(Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
                .arg(dir.path()));
        if tmpfs {
            return SmallDisk { dir, _image: None };
        }
        let image_dir = tempfile::tempdir().unwrap();
        let image: PathBuf = image_dir.path().join("disk.img");
        let f = std::fs::File::create(&image).unwrap();
        f.set_len(mb as u64 * 1024 * 1024).unwrap();
        let mounted = ok(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0"])
            .arg(&image)
            .stdout(Stdio::null()))
            && ok(Command::new("mount")
                .args(["-o", "loop"])
                .arg(&image)
                .arg(dir.path()));
        assert!(
            mounted,
            "cannot mount a small file system (tmpfs or a loop file): run as root \
             (scripts/test.sh does)"
        );
        SmallDisk {
            dir,
            _image: Some(image_dir),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Free bytes (from df).
    fn available(&self) -> u64 {
        let out = Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(self.path())
            .output()
            .expect("df");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .next()
            .expect("df output")
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_during_outage() {
    let broker = Mosquitto::start();
    let proxy = Proxy::start(broker.addr()).await;
    let sub = Subscriber::start(broker.addr(), "subscriber").await;
    let disk = SmallDisk::mount(8);
    // Leave the 2 MiB reserve and about 1 MiB: the outbox and its WAL fill it during the outage.
    let filler = disk.path().join("filler");
    let fill = disk.available().saturating_sub(3 << 20);
    std::fs::write(&filler, vec![0u8; fill as usize]).unwrap();
    let (logger, log) = capture_log();
    let mut cfg = DriverConfig::new(proxy.addr, disk.path().join("outbox.db"));
    cfg.outbox.window = WINDOW;
    cfg.outbox.logger = logger;
    let driver = Arc::new(Driver::start(cfg));
    assert!(driver.wait_connected(secs(10.0)).await);
    proxy.cut();
    let sent = Arc::new(Mutex::new(Sent::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = spawn_publisher(Arc::clone(&driver), 40, Arc::clone(&sent), stop.clone());
    // Offline until the disk is full and the outbox refuses messages.
    assert!(
        driver.wait_for(secs(30.0), |c, _| c.refused >= 50).await,
        "the disk never filled"
    );
    // Space comes back: appends are accepted again; then the link comes back.
    std::fs::remove_file(&filler).unwrap();
    let appended = driver.counters().appended;
    assert!(
        driver
            .wait_for(secs(10.0), |c, _| c.appended > appended + 50)
            .await,
        "appends did not recover when space came back"
    );
    proxy.restore();
    tokio::time::sleep(secs(1.0)).await; // traffic with the link up again
    stop.store(true, Ordering::Relaxed);
    publisher.await.unwrap();
    assert!(driver.wait_empty(secs(60.0)).await, "not drained");
    let all = sent.lock().unwrap().clone();
    let refused: HashSet<String> = driver
        .observed()
        .refused
        .iter()
        .filter_map(|p| msg_key(p))
        .collect();
    sub.wait_for(secs(30.0), |a| tally(&all, a).lost <= refused.len() as u64)
        .await;
    let r = tally(&all, &sub.arrivals());
    let c = driver.counters();
    println!(
        "{:<26} {r} | refused with an error {} (NoSpace {})",
        "disk full during outage", c.refused, c.refused_nospace
    );
    // G1: the messages missing are exactly those refused at once with NoSpace; everything
    // accepted (committed) before or after the full disk was delivered.
    let lost: HashSet<String> = r.lost_list.iter().cloned().collect();
    assert_eq!(lost, refused, "lost and refused differ");
    assert_eq!(c.refused, c.refused_nospace, "every refusal is NoSpace");
    assert_eq!(r.out_of_order, 0);
    driver.g1_check().unwrap();
    let errors = log.lock().unwrap().clone();
    assert!(
        errors
            .iter()
            .any(|(l, m)| *l == Level::Error && m.contains("disk full")),
        "no error logged for the full disk: {errors:?}"
    );
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
    // First run: 100 messages stored offline, then a clean stop.
    proxy.cut();
    let mut cfg = DriverConfig::new(proxy.addr, &db);
    cfg.outbox.window = WINDOW;
    let driver = Driver::start(cfg.clone());
    let mut old = Sent::default();
    for _ in 0..100 {
        old.publish(&driver, "test/old", 1);
    }
    driver.flush().await.unwrap();
    assert_eq!(driver.stats().messages, 100);
    driver.stop().await;
    // Between runs the file is damaged: its first page overwritten.
    let mut bytes = std::fs::read(&db).unwrap();
    let head = 4096.min(bytes.len());
    bytes[..head].fill(0xA5);
    std::fs::write(&db, &bytes).unwrap();
    let _ = std::fs::remove_file(dir.path().join("outbox.db-wal"));

    // Second run: the outbox renames the file aside, logs an error, starts fresh; new traffic
    // flows.
    proxy.restore();
    let (logger, log) = capture_log();
    cfg.outbox.logger = logger;
    let driver = Driver::start(cfg);
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("outbox.db.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "the corrupt file is kept aside: {aside:?}");
    let lines = log.lock().unwrap().clone();
    assert!(
        lines
            .iter()
            .any(|(l, m)| *l == Level::Error && m.contains("corrupt")),
        "no error logged for the corrupt file: {lines:?}"
    );
    let mut new = Sent::default();
    for _ in 0..50 {
        new.publish(&driver, "test/new", 1);
    }
    assert!(driver.wait_empty(secs(30.0)).await);
    sub.wait_for(secs(30.0), |a| tally(&new, a).lost == 0).await;
    let r = tally(&new, &sub.arrivals());
    println!(
        "{:<26} {r} (new traffic after quarantine of {})",
        "database corrupted", aside[0]
    );
    assert_eq!(r.lost, 0);
    assert_eq!(r.out_of_order, 0);
    driver.g1_check().unwrap();
    sub.stop();
    driver.stop().await;
}

// ---- QoS 2 exactly-once across a restart ------------------------------------------------

/// A row got its PUBREC, the bridge sent PUBREL, the remote delivered the message, and its
/// PUBCOMP was lost with the process. The remote's QoS 2 state for that id ended at the
/// PUBREL, so a second PUBLISH would be delivered again. The outbox keeps the PUBREC on disk
/// and hands the row out with `released`: the glue resumes with PUBREL (MQTT 5, 4.4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_released_row_not_delivered_twice_after_restart() {
    use nmq_outbox::{AckKind, AckOutcome, Config, NewMessage, Outbox};
    use rumqttc::v5::mqttbytes::v5::{Packet, PubRel};
    let broker = Mosquitto::start();
    let proxy = Proxy::start(broker.addr()).await;
    let sub = Subscriber::start(broker.addr(), "subscriber").await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("outbox.db");
    let data = encode_publish("test/q2", 2, &payload("test/q2", 1, 1));
    let pid = 7;

    // First process: PUBLISH, PUBREC, PUBREL; the remote delivers; its PUBCOMP is withheld.
    let ob = Outbox::open(Config::new(&db, "bridge")).unwrap();
    ob.append(&NewMessage {
        qos: 2,
        expiry_secs: 0,
        data: &data,
    })
    .unwrap();
    let (mut conn, _) = Conn::connect(proxy.addr, "bridge", secs(30.0))
        .await
        .unwrap();
    ob.link_up(64).unwrap();
    let row = ob.lease().unwrap().unwrap();
    ob.bind(row.seq, pid).unwrap();
    let mut p = decode_publish(&row.data);
    p.pkid = pid;
    conn.send(&Packet::Publish(p)).await.unwrap();
    let rec = loop {
        if let Packet::PubRec(r) = conn.read().await.unwrap() {
            break r;
        }
    };
    assert_eq!(
        ob.ack(rec.pkid, AckKind::PubRec, 0).unwrap(),
        AckOutcome::Progress
    );
    proxy.withhold_acks();
    conn.send(&Packet::PubRel(PubRel::new(pid, None)))
        .await
        .unwrap();
    assert!(sub.wait_for(secs(10.0), |a| a.len() == 1).await);
    ob.close().unwrap(); // or a crash: the state on disk is the same
    drop(conn);
    proxy.restore();

    // Second process: the glue does what `Leased` allows, then completes the exchange.
    let ob = Outbox::open(Config::new(&db, "bridge")).unwrap();
    let (mut conn, ack) = Conn::connect(proxy.addr, "bridge", secs(30.0))
        .await
        .unwrap();
    assert!(ack.session_present);
    ob.link_up(64).unwrap();
    let row = ob.lease().unwrap().unwrap();
    assert_eq!((row.packet_id, row.dup, row.released), (pid, true, true));
    ob.bind(row.seq, pid).unwrap();
    // The PUBREC is on record: resume with PUBREL, as MQTT 5 (4.4) asks.
    conn.send(&Packet::PubRel(PubRel::new(pid, None)))
        .await
        .unwrap();
    loop {
        match conn.read().await.unwrap() {
            Packet::PubRec(r) => {
                ob.ack(r.pkid, AckKind::PubRec, 0).unwrap();
                conn.send(&Packet::PubRel(PubRel::new(r.pkid, None)))
                    .await
                    .unwrap();
            }
            Packet::PubComp(c) => {
                ob.ack(c.pkid, AckKind::PubComp, 0).unwrap();
                break;
            }
            _ => {}
        }
    }
    sub.wait_for(secs(1.0), |a| a.len() > 1).await;
    assert_eq!(sub.count(), 1, "a QoS 2 message delivered twice");
}
