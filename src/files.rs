//! Which database files this process holds, and the OS lock that keeps other processes out.
//!
//! A database file is identified by its device and inode, not by its path: a symlink, a hard
//! link or another spelling of the path reaches the same entry. The first handle on a file in
//! this process opens one descriptor on it and takes `flock(LOCK_EX | LOCK_NB)`; a second
//! process (another NanoMQ, a second instance of the same service) then gets [`Error::Busy`]
//! instead of writing the same rows with colliding sequence numbers. Further handles of this
//! process (other bridges in the same file) share that descriptor; it is closed when the last of
//! them is gone.
//!
//! Closing any descriptor of a file drops every POSIX record lock this process holds on it, and
//! SQLite keeps its own locks that way. So the descriptor of an entry is closed only when no
//! SQLite connection of this process is open on the file: a [`Claim`] must outlive the
//! connection it guards, and a claim that would reuse an entry never opens a descriptor of its
//! own.

use crate::error::{Error, Result};
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// How long a lock held by another process is waited for before `Busy`.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// A file's identity: (device, inode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    fn of(m: &std::fs::Metadata) -> FileId {
        FileId {
            dev: m.dev(),
            ino: m.ino(),
        }
    }
}

struct Held {
    /// The locked descriptor (unlocked and closed with the last claim).
    lock: File,
    bridges: HashSet<String>,
}

fn held() -> MutexGuard<'static, HashMap<FileId, Held>> {
    static HELD: OnceLock<Mutex<HashMap<FileId, Held>>> = OnceLock::new();
    HELD.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// What has become of the file a claim was taken on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState {
    /// The path still names the claimed file.
    Present,
    /// The path names nothing any more (the file or its directory was deleted or renamed).
    Gone,
    /// The path names another file now.
    Replaced,
}

/// One bridge's claim on a database file. Dropping it releases the claim (and the OS lock with
/// the last claim on the file): drop it only after the bridge's SQLite connection is closed.
#[derive(Debug)]
pub struct Claim {
    id: FileId,
    path: PathBuf,
    bridge: String,
}

impl Claim {
    /// Claims `bridge` of the file at `path`, creating an empty file ([`FILE_MODE`]) if there
    /// is none (SQLite takes an empty file as a new database; it gives the `-wal` and `-shm` it
    /// makes beside it the same mode). [`Error::Busy`] when this process already has
    /// this bridge of this file open, or another process holds the file.
    pub fn take(path: &Path, bridge: &str) -> Result<Claim> {
        let mut map = held();
        // An entry this process already has: join it without opening a descriptor (see the
        // module comment on why a close here would be harmful).
        if let Ok(m) = std::fs::metadata(path) {
            let id = FileId::of(&m);
            if let Some(h) = map.get_mut(&id) {
                if !h.bridges.insert(bridge.to_string()) {
                    return Err(Error::Busy(format!(
                        "bridge {bridge:?} of {} is already open in this process",
                        path.display()
                    )));
                }
                return Ok(Claim {
                    id,
                    path: path.to_path_buf(),
                    bridge: bridge.to_string(),
                });
            }
        }
        // No handle of this process is on this file, so no SQLite lock of ours can be dropped
        // by closing this descriptor again on an error below.
        let file = open_private(OpenOptions::new().read(true).write(true), path)
            .map_err(|e| Error::Io(format!("cannot open {}: {e}", path.display())))?;
        let m = file
            .metadata()
            .map_err(|e| Error::Io(format!("cannot stat {}: {e}", path.display())))?;
        if !m.is_file() {
            return Err(Error::Invalid(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        // A lock can outlive its holder's close for a moment: a child forked by any thread of
        // the holder shares the descriptor until its exec closes it. Such a lock is waited
        // for, briefly; one a running process keeps is not.
        let start = std::time::Instant::now();
        let rc = loop {
            // SAFETY: flock on a descriptor we own; no memory is involved.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            let busy = rc != 0
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::EWOULDBLOCK);
            if !busy || start.elapsed() >= LOCK_WAIT {
                break rc;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            return Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                Error::Busy(format!(
                    "{} is held by another process (another NanoMQ or nmq-outbox instance)",
                    path.display()
                ))
            } else {
                Error::Io(format!("cannot lock {}: {e}", path.display()))
            });
        }
        let id = FileId::of(&m);
        map.insert(
            id,
            Held {
                lock: file,
                bridges: HashSet::from([bridge.to_string()]),
            },
        );
        Ok(Claim {
            id,
            path: path.to_path_buf(),
            bridge: bridge.to_string(),
        })
    }

    /// The path the claim was taken with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether other bridges of this process have this file open.
    pub fn shared(&self) -> bool {
        held().get(&self.id).is_some_and(|h| h.bridges.len() > 1)
    }

    /// Whether the path still names the claimed file (checked before every commit: a deleted
    /// database keeps working on its open inode, and every row would be gone at the next open).
    pub fn state(&self) -> FileState {
        let unlinked = held()
            .get(&self.id)
            .and_then(|h| h.lock.metadata().ok())
            .is_some_and(|m| m.nlink() == 0);
        match std::fs::metadata(&self.path) {
            Ok(m) if FileId::of(&m) == self.id && !unlinked => FileState::Present,
            Ok(_) => FileState::Replaced,
            Err(_) => FileState::Gone,
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut map = held();
        if let Some(h) = map.get_mut(&self.id) {
            h.bridges.remove(&self.bridge);
            if h.bridges.is_empty() {
                if let Some(h) = map.remove(&self.id) {
                    // Unlocked before the close: a child forked meanwhile by any thread of
                    // this process shares the descriptor until its exec, and the close alone
                    // would leave the lock to that copy. (POSIX record locks, SQLite's, are
                    // not flock's: untouched.)
                    // SAFETY: flock on the descriptor this entry owns.
                    unsafe { libc::flock(h.lock.as_raw_fd(), libc::LOCK_UN) };
                }
            }
        }
    }
}

/// Whether another process holds the file at `path` (for tools that must not write to a file
/// a running NanoMQ holds). False when the file does not exist. Must not be called on a file
/// this process has a SQLite connection open on (the probe's close would drop its locks).
pub fn held_elsewhere(path: &Path) -> Result<bool> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::Io(format!("cannot open {}: {e}", path.display()))),
    };
    // SAFETY: as in `Claim::take`.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(false);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(true)
    } else {
        Err(Error::Io(format!("cannot lock {}: {e}", path.display())))
    }
}

/// The mode of every file the library creates: the owner's read and write only (the files hold
/// the bridge's messages; mosquitto keeps its persistence file the same way).
pub const FILE_MODE: u32 = 0o600;

/// The mode of a directory the library creates.
pub const DIR_MODE: u32 = 0o700;

/// Opens `path` with `opts` (which must ask for write access), creating it if it is missing.
/// A file this call creates gets [`FILE_MODE`] whatever the umask; an existing file keeps its
/// mode (and is truncated if `opts` says so).
pub fn open_private(opts: &OpenOptions, path: &Path) -> std::io::Result<File> {
    match opts.clone().create_new(true).mode(FILE_MODE).open(path) {
        Ok(f) => {
            // The umask may have taken bits of FILE_MODE away.
            f.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
            Ok(f)
        }
        // An existing file, or a symlink (create_new never follows one): opened as it is; a
        // dangling symlink's target is created with FILE_MODE less the umask.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            opts.clone().create(true).mode(FILE_MODE).open(path)
        }
        Err(e) => Err(e),
    }
}

/// Creates directory `dir` and the missing ones above it, each with [`DIR_MODE`] whatever the
/// umask. Directories that exist are left as they are.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_private_dir(parent)?;
    }
    match std::fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE)),
        // Made by someone else meanwhile: theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes the group's and others' permissions from the outbox file `path` and the side files
/// beside it (`-wal`, `-shm`, `-reserve`) when any of them has some: made before the library
/// created its files [`FILE_MODE`], or opened up by hand, they give every local user the
/// bridge's messages. Only for a file known to be an outbox file (or the copy of one renamed
/// aside as corrupt), and only files owned
/// by this process's user (another user's file is theirs to change: a warning says so). One
/// warning line for the files tightened, one for those left; nothing when all are private.
pub fn tighten(path: &Path, log: &crate::log::Logger) {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let (mut fixed, mut left, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for suffix in ["", "-wal", "-shm", "-reserve"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let p = PathBuf::from(p);
        // The database through a symlink is the file it names; a side file that is not a
        // regular file is not one SQLite or this library made.
        let meta = if suffix.is_empty() {
            std::fs::metadata(&p)
        } else {
            std::fs::symlink_metadata(&p)
        };
        let Ok(m) = meta else { continue };
        let mode = m.mode() & 0o7777;
        if !m.is_file() || mode & 0o077 == 0 {
            continue;
        }
        let name = format!("{} ({:04o})", p.display(), mode);
        if m.uid() != me {
            left.push(format!("{name} owned by uid {}", m.uid()));
            continue;
        }
        match std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode & 0o7700)) {
            Ok(()) => fixed.push(name),
            Err(e) => failed.push(format!("{name}: {e}")),
        }
    }
    if !fixed.is_empty() {
        log.warn(&format!(
            "{} were open to other local users (the bridge's messages): permissions \
             tightened to owner only ({:04o}, as the library creates its files)",
            fixed.join(", "),
            FILE_MODE
        ));
    }
    if !left.is_empty() || !failed.is_empty() {
        left.extend(failed);
        log.warn(&format!(
            "{} are open to other local users (the bridge's messages): permissions left as \
             they are, not this process's to change; make them {:04o}",
            left.join(", "),
            FILE_MODE
        ));
    }
}

/// The file all bridges shared in a directory before files were per bridge; a new per-bridge
/// file takes its bridge's rows from it (see `Store::adopt_legacy`).
pub const LEGACY_FILE: &str = "nmq_outbox.db";

/// The database file of `bridge` in directory `dir`: `nmq_outbox-<bridge>.db`, where every byte
/// of the name outside `[A-Za-z0-9._-]` becomes `_`, followed by `-<8 hex digits>` of a hash of
/// the name when anything was replaced (so that "a/b" and "a_b" get different files).
pub fn db_file_for(dir: &Path, bridge: &str) -> PathBuf {
    let mut name = String::with_capacity(bridge.len() + 24);
    let mut replaced = bridge.starts_with('.');
    for b in bridge.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            name.push(b as char);
        } else {
            name.push('_');
            replaced = true;
        }
    }
    if replaced {
        // FNV-1a: stable across builds and platforms.
        let h = bridge.bytes().fold(0x811c_9dc5u32, |h, b| {
            (h ^ b as u32).wrapping_mul(0x0100_0193)
        });
        name.push_str(&format!("-{h:08x}"));
    }
    dir.join(format!("nmq_outbox-{name}.db"))
}

/// `path` when it names a file; [`db_file_for`] when it names a directory (an existing one, or
/// any path written with a trailing `/`).
pub fn resolve(path: &Path, bridge: &str) -> PathBuf {
    let trailing = path.as_os_str().as_encoded_bytes().last() == Some(&b'/');
    if trailing || path.is_dir() {
        db_file_for(path, bridge)
    } else {
        path.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_names_map_to_distinct_safe_file_names() {
        let d = Path::new("/var/lib/nanomq");
        assert_eq!(
            db_file_for(d, "emqx1"),
            Path::new("/var/lib/nanomq/nmq_outbox-emqx1.db")
        );
        let a = db_file_for(d, "a/b");
        let b = db_file_for(d, "a_b");
        assert_ne!(a, b);
        assert!(a
            .to_str()
            .unwrap()
            .starts_with("/var/lib/nanomq/nmq_outbox-a_b-"));
        assert_eq!(b, Path::new("/var/lib/nanomq/nmq_outbox-a_b.db"));
        let dots = db_file_for(d, "..");
        assert_eq!(dots.parent(), Some(d));
        assert!(dots
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("nmq_outbox-..-"));
    }

    /// Whether another open file description could take the lock now.
    fn lockable(path: &Path) -> bool {
        let f = File::open(path).unwrap();
        // SAFETY: flock on a descriptor we own; its close releases the lock.
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
    }

    /// Dropping the last claim unlocks the file at once, also while a child forked meanwhile
    /// by any thread of the process (a host starting a program) shares the locked descriptor
    /// until its exec: closing the descriptor left the lock to that copy, and the file looked
    /// held by this process (the CLI's stats said so; tests/cli.rs stats_human_and_json failed
    /// so while another test thread was starting processes).
    #[test]
    fn the_last_claim_unlocks_the_file_though_a_forked_child_shares_the_descriptor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.db");
        let claim = Claim::take(&path, "b").unwrap();
        assert!(!lockable(&path));
        let mut fds = [0; 2];
        // SAFETY: pipe writes two descriptors into the array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the child only reads the pipe and exits (async-signal-safe calls): a child
        // between its fork and its exec, holding copies of every descriptor.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let mut b = 0u8;
            unsafe {
                libc::read(fds[0], (&mut b as *mut u8).cast(), 1);
                libc::_exit(0);
            }
        }
        assert!(pid > 0);
        drop(claim);
        let free = lockable(&path);
        // SAFETY: the pipe's write end, the child's pid, our descriptors.
        unsafe {
            libc::write(fds[1], b"x".as_ptr().cast(), 1);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        assert!(free, "the file stayed locked through the child's copy");
        assert!(lockable(&path));
    }

    #[test]
    fn a_directory_path_gets_a_file_per_bridge() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(resolve(dir.path(), "x"), dir.path().join("nmq_outbox-x.db"));
        let trailing = PathBuf::from("/no/such/dir/");
        assert_eq!(
            resolve(&trailing, "x"),
            Path::new("/no/such/dir/nmq_outbox-x.db")
        );
        let file = dir.path().join("f.db");
        assert_eq!(resolve(&file, "x"), file);
    }
}
