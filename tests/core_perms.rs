//! Issue 20: messages at rest were readable by every local user. Under the usual umask 022 the
//! outbox file and every file beside it came out 0644 (mosquitto writes its persistence file
//! 0600). Now every file the library creates is 0600 and a directory it creates 0700, whatever
//! the umask; an existing outbox readable by group or others is tightened at open, with one
//! warning; files that are not the library's keep their mode.
//!
//! Every test sets the umask of this process: 022, or what the parent test asked for in
//! `NMQ_PERMS_UMASK` (the same tests are re-run in a child under umask 000).

use nmq_outbox::{Config, Level, Logger, NewMessage, Outbox};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const UMASK_ENV: &str = "NMQ_PERMS_UMASK";

/// Sets this process's umask: 022, or the octal value of `NMQ_PERMS_UMASK`. Every test sets
/// the same value, so tests running side by side agree on it.
fn set_umask() {
    let m = std::env::var(UMASK_ENV)
        .ok()
        .map(|v| u32::from_str_radix(&v, 8).unwrap())
        .unwrap_or(0o022);
    // SAFETY: umask has no preconditions.
    unsafe { libc::umask(m as libc::mode_t) };
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

fn chmod(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

fn side(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The modes of the database and its side files, in octal: ["o.db 600", "o.db-wal 600", ..].
fn modes(db: &Path, suffixes: &[&str]) -> Vec<String> {
    let mut files = vec![db.to_path_buf()];
    files.extend(suffixes.iter().map(|s| side(db, s)));
    files
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            format!("{name} {:o}", mode(p))
        })
        .collect()
}

/// What [`modes`] says when every file has mode `m`.
fn all(db: &Path, suffixes: &[&str], m: u32) -> Vec<String> {
    modes(db, suffixes)
        .into_iter()
        .map(|s| format!("{} {m:o}", s.split(' ').next().unwrap()))
        .collect()
}

type Lines = Arc<Mutex<Vec<(Level, String)>>>;

fn cfg(path: &Path, bridge: &str) -> (Config, Lines) {
    let lines: Lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let mut c = Config::new(path, bridge);
    c.group_commit_ms = 1;
    c.logger = Logger::new(
        Some(Arc::new(move |l: Level, m: &str| {
            sink.lock().unwrap().push((l, m.to_string()))
        })),
        Level::Debug,
    );
    (c, lines)
}

fn append(ob: &Outbox, data: &[u8]) {
    ob.append(&NewMessage {
        qos: 1,
        expiry_secs: 0,
        data,
    })
    .unwrap();
}

/// Warnings about permissions.
fn perm_warnings(lines: &Lines) -> Vec<String> {
    lines
        .lock()
        .unwrap()
        .iter()
        .filter(|(l, m)| *l == Level::Warn && m.contains("permissions"))
        .map(|(_, m)| m.clone())
        .collect()
}

const SIDES: [&str; 3] = ["-wal", "-shm", "-reserve"];

/// A new outbox: the database 0600, and the -wal and -shm SQLite creates beside it (it gives
/// them the database's mode: checked here, not assumed), and the -reserve.
#[test]
fn a_new_outbox_and_its_side_files_are_0600() {
    set_umask();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.db");
    let (c, lines) = cfg(&path, "b");
    let ob = Outbox::open(c).unwrap();
    append(&ob, b"secret");
    ob.flush().unwrap();
    assert_eq!(modes(&path, &SIDES), all(&path, &SIDES, 0o600));
    ob.close().unwrap();
    assert_eq!(perm_warnings(&lines), Vec::<String>::new());
    // The same through a directory (the per-bridge file name).
    let (c, _) = cfg(dir.path(), "emqx1");
    let ob = Outbox::open(c).unwrap();
    append(&ob, b"secret");
    ob.flush().unwrap();
    let per_bridge = dir.path().join("nmq_outbox-emqx1.db");
    assert_eq!(modes(&per_bridge, &SIDES), all(&per_bridge, &SIDES, 0o600));
}

/// A corrupt database is renamed aside: the copy (it holds whatever messages can be saved) is
/// 0600 like the fresh store opened in its place, even when the corrupt file was 0644.
#[test]
fn a_quarantined_copy_is_0600() {
    set_umask();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.db");
    std::fs::write(&path, vec![0xA5u8; 8192]).unwrap();
    chmod(&path, 0o644);
    let (c, _) = cfg(&path, "b");
    let ob = Outbox::open(c).unwrap();
    append(&ob, b"after");
    ob.flush().unwrap();
    let aside: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        format!("{:o}", mode(&aside[0])),
        "600",
        "{}",
        aside[0].display()
    );
    assert_eq!(modes(&path, &SIDES), all(&path, &SIDES, 0o600));
}

/// An outbox made before this fix (0644, with a -wal left by a crash and a -reserve): tightened
/// to 0600 at open, with one warning; the messages are all there; a later open says nothing.
#[test]
fn an_existing_group_readable_outbox_is_tightened_with_one_warning() {
    set_umask();
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.db");
    let path = dir.path().join("o.db");
    let (c, _) = cfg(&live, "b");
    let ob = Outbox::open(c).unwrap();
    for i in 0..5 {
        append(&ob, format!("m{i}").as_bytes());
    }
    ob.flush().unwrap();
    // The files of a crashed process: the database, its -wal (committed rows not yet
    // checkpointed) and the reserve; SQLite makes a new -shm.
    for s in ["", "-wal", "-reserve"] {
        std::fs::copy(side(&live, s), side(&path, s)).unwrap();
        chmod(&side(&path, s), 0o644);
    }
    ob.close().unwrap();
    let (c, lines) = cfg(&path, "b");
    let ob = Outbox::open(c).unwrap();
    assert_eq!(ob.stats().unwrap().messages, 5);
    assert_eq!(modes(&path, &SIDES), all(&path, &SIDES, 0o600));
    let warned = perm_warnings(&lines);
    assert_eq!(warned.len(), 1, "{:?}", lines.lock().unwrap());
    assert!(
        warned[0].contains(&path.display().to_string()) && warned[0].contains("0644"),
        "{warned:?}"
    );
    ob.close().unwrap();
    drop(ob);
    let (c, lines) = cfg(&path, "b");
    let ob = Outbox::open(c).unwrap();
    assert_eq!(ob.stats().unwrap().messages, 5);
    assert_eq!(perm_warnings(&lines), Vec::<String>::new());
}

/// Files that are not the library's keep their mode: a SQLite file of another program at the
/// outbox path (refused), and, when run as root, an outbox owned by another user (opened, left
/// as it is, with a warning saying so).
#[test]
fn files_the_library_does_not_own_keep_their_mode() {
    set_umask();
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("other.db");
    {
        let c = rusqlite::Connection::open(&foreign).unwrap();
        c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
    }
    chmod(&foreign, 0o644);
    let (c, _) = cfg(&foreign, "b");
    assert!(Outbox::open(c).is_err());
    assert_eq!(format!("{:o}", mode(&foreign)), "644");

    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    let theirs = dir.path().join("theirs.db");
    {
        let (c, _) = cfg(&theirs, "b");
        let ob = Outbox::open(c).unwrap();
        append(&ob, b"x");
        ob.close().unwrap();
    }
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    chmod(&theirs, 0o644);
    let (c, lines) = cfg(&theirs, "b");
    let ob = Outbox::open(c).unwrap();
    assert_eq!(ob.stats().unwrap().messages, 1);
    ob.close().unwrap();
    assert_eq!(format!("{:o}", mode(&theirs)), "644");
    let warned = perm_warnings(&lines);
    assert_eq!(warned.len(), 1, "{:?}", lines.lock().unwrap());
    assert!(warned[0].contains("left as they are"), "{warned:?}");
}

/// The database (and its directory) deleted while open is written back from the open copy: the
/// file is 0600 and the directory the library recreated 0700.
#[test]
fn a_database_written_back_after_deletion_is_0600_in_a_0700_directory() {
    set_umask();
    let top = tempfile::tempdir().unwrap();
    let dir = top.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    let path = dir.join("o.db");
    let (c, _) = cfg(&path, "b");
    let ob = Outbox::open(c).unwrap();
    append(&ob, b"before");
    ob.flush().unwrap();
    let gone = top.path().join("gone");
    std::fs::rename(&dir, &gone).unwrap();
    std::fs::remove_dir_all(&gone).unwrap();
    append(&ob, b"after");
    ob.flush().unwrap();
    assert_eq!(format!("{:o}", mode(&dir)), "700");
    assert_eq!(modes(&path, &SIDES), all(&path, &SIDES, 0o600));
    ob.close().unwrap();
    drop(ob);
    let (c, _) = cfg(&path, "b");
    assert_eq!(Outbox::open(c).unwrap().stats().unwrap().messages, 2);
}

/// A bridge opened with a directory takes its rows from the old shared file: the new
/// per-bridge file is 0600, and the shared file (the other bridges' messages) is tightened.
#[test]
fn a_per_bridge_file_adopting_the_shared_file_leaves_both_0600() {
    set_umask();
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("nmq_outbox.db");
    for bridge in ["a", "b"] {
        let (c, _) = cfg(&shared, bridge);
        let ob = Outbox::open(c).unwrap();
        append(&ob, bridge.as_bytes());
        ob.close().unwrap();
    }
    chmod(&shared, 0o644);
    let (c, lines) = cfg(dir.path(), "a");
    let ob = Outbox::open(c).unwrap();
    assert_eq!(ob.stats().unwrap().messages, 1);
    let own = dir.path().join("nmq_outbox-a.db");
    assert_eq!(modes(&own, &SIDES), all(&own, &SIDES, 0o600));
    assert_eq!(format!("{:o}", mode(&shared)), "600");
    let warned = perm_warnings(&lines);
    assert_eq!(warned.len(), 1, "{:?}", lines.lock().unwrap());
    assert!(
        warned[0].contains(&shared.display().to_string()),
        "{warned:?}"
    );
}

/// The tests above again in a child process under umask 000, where a file created with the
/// default mode would be 0666 (0644 for SQLite's) and a directory 0777.
#[test]
fn every_file_is_0600_under_umask_000_too() {
    if std::env::var(UMASK_ENV).is_ok() {
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--test-threads=1", "--skip", "under_umask"])
        .env(UMASK_ENV, "000")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "under umask 000:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
