//! Helpers shared by the bench binaries (`#[path = "common/mod.rs"] mod common;`): knobs from
//! the environment, fresh directories on a real disk, process CPU time, resident set, medians.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The store's own schema: the raw baselines insert the same rows into the same table.
#[allow(unused_imports)]
pub use nmq_outbox::store::SCHEMA;

/// The raw baselines' connection: `raw.db` in `dir`, WAL, `synchronous` as given ("NORMAL" or
/// "FULL"), the store's schema.
pub fn raw_conn(dir: &Path, synchronous: &str) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(dir.join("raw.db")).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    conn.execute_batch(&format!("PRAGMA synchronous={synchronous}"))
        .unwrap();
    conn.execute_batch(SCHEMA).unwrap();
    conn
}

/// An integer knob from the environment, or `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Where the database files go: `$NMQ_BENCH_DIR`, else /var/tmp (a real disk on Linux; /tmp
/// and /dev/shm may be tmpfs, which would hide the cost of fsync).
pub fn base_dir() -> PathBuf {
    PathBuf::from(std::env::var("NMQ_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into()))
}

/// A fresh directory under [`base_dir`], removed on drop.
pub fn fresh_dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("nmq-outbox-bench-{tag}-"))
        .tempdir_in(base_dir())
        .expect("cannot create a directory under NMQ_BENCH_DIR (default /var/tmp)")
}

/// "device (fstype)" of the mount holding `path`, from /proc/self/mounts.
pub fn filesystem_of(path: &Path) -> String {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && path.starts_with(f[1])).then(|| (f[1].len(), f[0], f[2]))
        })
        .max_by_key(|m| m.0)
        .map(|(_, dev, fs)| format!("{dev} ({fs})"))
        .unwrap_or_else(|| "unknown filesystem".into())
}

/// One line naming the machine: CPU model, cores, kernel.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    // Other work on the machine skews every number: say how busy it was.
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, Linux {kernel}; load average at start {load}")
}

extern "C" {
    fn sysconf(name: i32) -> i64;
}
/// `_SC_CLK_TCK` and `_SC_PAGESIZE` on Linux.
const SC_CLK_TCK: i32 = 2;
const SC_PAGESIZE: i32 = 30;

/// CPU seconds (user + system) used so far by every thread of this process.
pub fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name "(...)": state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { sysconf(SC_CLK_TCK) }.max(1);
    ticks as f64 / hz as f64
}

/// Resident set in bytes, from /proc/self/statm.
pub fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { sysconf(SC_PAGESIZE) }.max(1) as u64
}

pub fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

pub fn median(mut v: Vec<f64>) -> f64 {
    assert!(!v.is_empty());
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}
