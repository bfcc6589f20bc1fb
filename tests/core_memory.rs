//! Memory pressure (issue 8 item 4): the replay's read-ahead is bounded in bytes, large rows are
//! read one at a time, and an allocation that fails is an error code, never an abort of the
//! host. Run in a child process under an address-space limit (RLIMIT_AS) set just above what it
//! already uses; the child is this same test binary, re-run with `NMQ_MEM_CHILD` set.

use nmq_outbox::{AckKind, Config, Error, NewMessage, Outbox};
use std::path::Path;
use std::process::Command;

const CHILD: &str = "NMQ_MEM_CHILD";
const MIB: usize = 1024 * 1024;
/// Rows of this size are queued...
const ROW: usize = 24 * MIB;
/// ...this many of them (more than fits under the limit at once)...
const ROWS: usize = 10;
/// ...and the limit leaves this much above what the child uses before the drain.
const HEADROOM: usize = 160 * MIB;

fn vm_size() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

fn limit_address_space(bytes: usize) {
    let lim = libc::rlimit {
        rlim_cur: bytes as libc::rlim_t,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit with a valid struct.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) }, 0);
}

fn cfg(path: &Path) -> Config {
    let mut c = Config::new(path, "b");
    c.max_message_bytes = 512 * MIB as u32;
    c
}

/// The child: queues the large rows, then drains them under the limit, then tries to append a
/// message larger than the memory left.
#[test]
fn child_under_memory_limit() {
    let Ok(path) = std::env::var(CHILD) else {
        return;
    };
    let path = Path::new(&path);
    {
        let ob = Outbox::open(cfg(path)).unwrap();
        let row = vec![0x33u8; ROW];
        for _ in 0..ROWS {
            ob.append(&NewMessage {
                qos: 1,
                expiry_secs: 0,
                data: &row,
            })
            .unwrap();
        }
        ob.close().unwrap();
    }
    // Allocated before the limit: the message of the last step.
    let huge = vec![0x44u8; 200 * MIB];
    let ob = Outbox::open(cfg(path)).unwrap();
    ob.link_up(0).unwrap();
    limit_address_space(vm_size() + HEADROOM);
    let mut pid = 0u16;
    let mut n = 0;
    loop {
        match ob.lease() {
            Ok(Some(r)) => {
                assert_eq!(r.data.len(), ROW);
                drop(r.data);
                pid += 1;
                ob.bind(r.seq, pid).unwrap();
                ob.ack(pid, AckKind::PubAck, 0).unwrap();
                n += 1;
            }
            Ok(None) => break,
            Err(e) => panic!("lease {n} under the memory limit: {e}"),
        }
    }
    assert_eq!(n, ROWS);
    println!("DRAINED {n}");
    // A message whose copy cannot be had: an error, not an abort.
    let r = ob.append(&NewMessage {
        qos: 1,
        expiry_secs: 0,
        data: &huge,
    });
    assert!(matches!(r, Err(Error::NoMemory(_))), "{r:?}");
    println!("NOMEM OK");
    ob.close().unwrap();
}

#[test]
fn large_rows_drain_under_a_memory_limit_and_a_failed_allocation_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.db");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_under_memory_limit",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("DRAINED") && stdout.contains("NOMEM OK"),
        "child: {:?}\n{stdout}\n{stderr}",
        out.status
    );
}
