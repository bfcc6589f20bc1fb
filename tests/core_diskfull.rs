//! G8 on a real full disk: a 4 MiB tmpfs, 3 MiB of it taken by a filler file, mounted by the test (needs root, as in CI). The outbox
//! must refuse new messages with `Error::NoSpace` (never accept what it cannot store), keep every
//! committed row, and work again once space is freed.

use nmq_outbox::{AckKind, Config, Error, NewMessage, Outbox};
use std::path::Path;
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
    let _m = mount_tmpfs(dir.path(), "4m");
    let db = dir.path().join("o.db");
    // Leave room for the database only after a filler file is removed.
    let filler = dir.path().join("filler");
    std::fs::write(&filler, vec![0u8; 3 * 1024 * 1024]).unwrap();

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
