//! The registry of open outboxes (`close_all`, `stats_all`): alone in its test binary, since
//! `close_all` closes every outbox of the process.

use nmq_outbox::outbox::{close_all, exit_all, stats_all, HostEvent};
use nmq_outbox::{Config, NewMessage, Outbox};
use nmq_outbox::{Level, Logger};
use std::sync::Arc;
use std::sync::Mutex as StdMutex;

/// `close_all` closes every outbox of the process: the tests of this binary run one at a time.
static SERIAL: StdMutex<()> = StdMutex::new(());

fn open(dir: &std::path::Path, bridge: &str, log: Logger) -> Outbox {
    let mut cfg = Config::new(dir.to_str().unwrap(), bridge);
    cfg.logger = log;
    Outbox::open(cfg).unwrap()
}

#[test]
fn close_all_closes_and_logs_every_open_outbox_and_forgets_dropped_ones() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let lines = Arc::new(StdMutex::new(Vec::<String>::new()));
    let sink = {
        let lines = Arc::clone(&lines);
        let f: nmq_outbox::LogFn = Arc::new(move |_: Level, m: &str| {
            lines.lock().unwrap().push(m.to_string());
        });
        f
    };
    let log = Logger::new(Some(sink), Level::Debug);
    let a = open(dir.path(), "reg-a-7f3", log.clone());
    let b = open(dir.path(), "reg-b-7f3", log.clone());
    let gone = open(dir.path(), "reg-gone-7f3", log.clone());
    drop(gone);
    a.count_event(HostEvent::Qos0Dropped, 2);

    let names: Vec<String> = stats_all().into_iter().map(|(n, _)| n).collect();
    let ours: Vec<&String> = names.iter().filter(|n| n.ends_with("-7f3")).collect();
    assert_eq!(ours, ["reg-a-7f3", "reg-b-7f3"]);

    assert!(close_all() >= 2);
    assert!(matches!(a.flush(), Err(nmq_outbox::Error::Closed)));
    assert!(matches!(b.flush(), Err(nmq_outbox::Error::Closed)));
    let text = lines.lock().unwrap().join("\n");
    let at_exit: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("outbox at exit: ") && l.contains("-7f3"))
        .collect();
    assert_eq!(at_exit.len(), 2, "{text}");
    assert!(at_exit[0].contains("\"bridge\":\"reg-a-7f3\""));
    assert!(at_exit[0].contains("\"dropped_qos0\":2"));
    // Closed handles still answer their counters; a second close_all closes and logs
    // nothing of ours again.
    assert_eq!(a.stats().unwrap().dropped_qos0, 2);
    let n = lines.lock().unwrap().len();
    close_all();
    let again = lines.lock().unwrap()[n..]
        .iter()
        .filter(|l| l.contains("-7f3"))
        .count();
    assert_eq!(again, 0);
}

/// At exit (issue 20's known loss): what the host accepts while it exits must still be stored.
/// `close_all` refused it (ECLOSED), so a message acked at receipt took the host's own path and
/// was lost at exit; after `exit_all` an append is accepted and on disk when it returns.
#[test]
fn after_exit_all_an_append_is_accepted_and_committed_before_it_returns() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let log = Logger::new(None, Level::Warn);
    let ob = open(dir.path(), "exit-9c1", log.clone());
    let first = ob
        .append(&NewMessage {
            qos: 1,
            expiry_secs: 0,
            data: b"before",
        })
        .unwrap();
    assert!(exit_all() >= 1);
    assert!(
        ob.stats().unwrap().committed_seq >= first,
        "pending rows committed at exit"
    );
    let late = ob
        .append(&NewMessage {
            qos: 1,
            expiry_secs: 0,
            data: b"during the exit",
        })
        .unwrap();
    assert!(
        ob.stats().unwrap().committed_seq >= late,
        "an append during the exit is committed before it returns"
    );
    // A second call (atexit after the signal thread) is harmless and the handle still works.
    exit_all();
    let later = ob
        .append(&NewMessage {
            qos: 2,
            expiry_secs: 0,
            data: b"later still",
        })
        .unwrap();
    assert!(ob.stats().unwrap().committed_seq >= later);
    // What the process had accepted is there at the next start.
    drop(ob);
    let again = open(dir.path(), "exit-9c1", log);
    assert_eq!(again.stats().unwrap().messages, 3);
}
