//! G8 on a real full disk: a small tmpfs mounted by the test (needs root, as in CI), most of it
//! taken by a filler file. The outbox must refuse new messages with `Error::NoSpace` (never
//! accept what it cannot store), keep every committed and every accepted row, let the drain go
//! on while the disk is full, and work again once space is freed.

use nmq_outbox::{AckKind, Config, Error, NewMessage, Outbox};
use std::path::Path;
use std::path::PathBuf;
use std::process::Command;

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn mount_tmpfs(dir: &Path, size: &str) -> Mount {
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "mounting a tmpfs failed: this test needs root (scripts/test.sh runs as root)"
    );
    Mount(dir.to_path_buf())
}

#[test]
fn full_disk_gives_nospace_keeps_committed_rows_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let _m = mount_tmpfs(dir.path(), "8m");
    let db = dir.path().join("o.db");
    // Room for the 2 MiB reserve and about 1.5 MiB of database.
    let filler = dir.path().join("filler");
    std::fs::write(&filler, vec![0u8; 4608 * 1024]).unwrap();

    let mut c = Config::new(&db, "b");
    c.group_commit_count = 10;
    c.group_commit_ms = 1;
    let ob = Outbox::open(c).unwrap();
    let payload = vec![0x5Au8; 4096];
    let mut accepted = 0u64;
    let mut err = None;
    for _ in 0..10_000 {
        match ob.append(&NewMessage {
            qos: 1,
            expiry_secs: 0,
            data: &payload,
        }) {
            Ok(_) => accepted += 1,
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    assert_eq!(err, Some(Error::NoSpace), "after {accepted} messages");
    // Still full: the next append is refused too, at once.
    let again = ob.append(&NewMessage {
        qos: 1,
        expiry_secs: 0,
        data: &payload,
    });
    assert_eq!(again, Err(Error::NoSpace));
    let committed = ob.stats().unwrap().committed_seq;
    eprintln!("disk full after {accepted} accepted messages, {committed} committed");
    assert!(
        committed > 0,
        "some rows were committed before the disk filled"
    );

    // Space comes back: everything accepted gets committed, and new messages go in.
    std::fs::remove_file(&filler).unwrap();
    ob.flush().unwrap();
    ob.append(&NewMessage {
        qos: 1,
        expiry_secs: 0,
        data: b"after",
    })
    .unwrap();
    ob.close().unwrap();
    drop(ob);

    let ob = Outbox::open(Config::new(&db, "b")).unwrap();
    assert_eq!(
        ob.stats().unwrap().messages,
        accepted + 1,
        "every accepted message is on disk"
    );
    ob.link_up(0).unwrap();
    let mut n = 0u64;
    let mut last = None;
    while let Some(r) = ob.lease().unwrap() {
        n += 1;
        ob.bind(r.seq, (n % 65535 + 1) as u16).unwrap();
        ob.ack((n % 65535 + 1) as u16, AckKind::PubAck, 0).unwrap();
        last = Some(r.data);
    }
    assert_eq!(n, accepted + 1);
    assert_eq!(last.as_deref(), Some(&b"after"[..]));
    ob.close().expect("with space back, the acks commit too");
}

/// A disk nearly full: `filler` leaves about `room` KiB beside the 2 MiB reserve.
fn nearly_full(dir: &Path, room_kib: usize) -> (Mount, PathBuf) {
    let m = mount_tmpfs(dir, "8m");
    let filler = dir.join("filler");
    std::fs::write(&filler, vec![0u8; (8192 - 2048 - room_kib) * 1024]).unwrap();
    (m, filler)
}

/// Appends 4 KiB messages until the disk is full; returns how many were accepted.
fn fill(ob: &Outbox) -> u64 {
    let payload = vec![0x5Au8; 4096];
    for n in 0..100_000u64 {
        match ob.append(&NewMessage {
            qos: 1,
            expiry_secs: 0,
            data: &payload,
        }) {
            Ok(_) => {}
            Err(Error::NoSpace) => return n,
            Err(e) => panic!("after {n}: {e}"),
        }
    }
    panic!("the disk never filled");
}

/// Issue 8 item 2: on a full disk the refill before a lease committed the pending inserts
/// first, so `lease` failed with ENOSPC and no committed row was ever sent; the acks that would
/// free space rode in the same failing batch. Now the drain goes on while the disk stays full.
#[test]
fn the_drain_goes_on_while_the_disk_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let (_m, _filler) = nearly_full(dir.path(), 1024);
    let db = dir.path().join("o.db");
    let mut c = Config::new(&db, "b");
    c.group_commit_count = 10;
    c.group_commit_ms = 1;
    let ob = Outbox::open(c).unwrap();
    let accepted = fill(&ob);
    assert!(accepted > 50, "{accepted}");
    assert!(ob.stats().unwrap().space_low);
    // The disk stays full: every accepted row is sent and acknowledged all the same.
    ob.link_up(0).unwrap();
    let mut n = 0u64;
    let mut pid = 0u16;
    while let Some(r) = ob.lease().expect("lease works on a full disk") {
        pid = pid % 65535 + 1;
        ob.bind(r.seq, pid).expect("bind works on a full disk");
        ob.ack(pid, AckKind::PubAck, 0)
            .expect("ack works on a full disk");
        n += 1;
    }
    assert_eq!(n, accepted);
    ob.flush().expect("the acks commit on a full disk");
    let s = ob.stats().unwrap();
    assert_eq!((s.messages, s.acked), (0, accepted));
    ob.close().unwrap();
    drop(ob);
    let ob = Outbox::open(Config::new(&db, "b")).unwrap();
    assert_eq!(ob.stats().unwrap().messages, 0, "the deletes are on disk");
}

/// Issue 8 item 2: up to 8 x group_commit_count appends returned OK after the disk was full and
/// were lost at close, counted nowhere. Now every accepted append reaches the disk (the reserve
/// takes them) or is counted in `dropped_unwritten`.
#[test]
fn every_append_accepted_on_a_filling_disk_is_on_disk_or_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (_m, _filler) = nearly_full(dir.path(), 1024);
    let db = dir.path().join("o.db");
    let mut c = Config::new(&db, "b");
    // A long commit interval: accepted rows pile up in memory when the disk fills.
    c.group_commit_count = 50;
    c.group_commit_ms = 10_000;
    let ob = Outbox::open(c).unwrap();
    let accepted = fill(&ob);
    let refused_before_close = ob.stats().unwrap().refused_nospace;
    assert!(refused_before_close >= 1);
    // Closed while the disk is still full.
    let closed = ob.close();
    let s = ob.stats().unwrap();
    assert!(
        closed.is_ok() || s.dropped_unwritten > 0,
        "{closed:?} {s:?}"
    );
    drop(ob);
    let ob = Outbox::open(Config::new(&db, "b")).unwrap();
    let on_disk = ob.stats().unwrap().messages;
    assert_eq!(
        on_disk + s.dropped_unwritten,
        accepted,
        "every accepted append is on disk or counted"
    );
    assert_eq!(s.dropped_unwritten, 0, "the reserve held them all");
}
