//! The store's file on disk: the reserve beside it (given up when the disk is full), the file
//! written back after it was deleted while open, side files left unwritable after a read-only
//! period, and a corrupt file renamed aside.

use super::*;

impl Store {
    fn reserve_path(&self) -> PathBuf {
        side_file(&self.path, "-reserve")
    }

    /// Puts the reserve file in place (really allocated, not sparse).
    pub(super) fn make_reserve(&self) -> Result<()> {
        let p = self.reserve_path();
        let f = files::open_private(std::fs::OpenOptions::new().write(true), &p)
            .map_err(|e| Error::Io(format!("cannot create {}: {e}", p.display())))?;
        // SAFETY: posix_fallocate on a descriptor we own.
        let rc = unsafe { libc::posix_fallocate(f.as_raw_fd(), 0, RESERVE_BYTES as libc::off_t) };
        if rc != 0 {
            drop(f);
            let _ = std::fs::remove_file(&p);
            return Err(if rc == libc::ENOSPC {
                Error::NoSpace
            } else {
                Error::Io(format!(
                    "cannot allocate {}: {}",
                    p.display(),
                    std::io::Error::from_raw_os_error(rc)
                ))
            });
        }
        Ok(())
    }

    /// Whether the reserve is in place.
    pub fn has_reserve(&self) -> bool {
        self.reserve
    }

    /// Gives the reserve back to the file system (the disk is full). True if there was one.
    pub fn release_reserve(&mut self) -> bool {
        let had = self.reserve;
        self.reserve = false;
        had && std::fs::remove_file(self.reserve_path()).is_ok()
    }

    /// Tries to put the reserve back (after space returned).
    pub fn restore_reserve(&mut self) -> bool {
        if !self.reserve {
            self.reserve = self.make_reserve().is_ok();
        }
        self.reserve
    }

    /// Whether the path still names the file this store writes to.
    pub fn file_state(&self) -> FileState {
        self.claim.state()
    }

    /// Whether other bridges of this process have the file open.
    pub fn shared(&self) -> bool {
        self.claim.shared()
    }

    /// The file was deleted (or its directory) while open: writes a copy of the open database
    /// back to its path (`VACUUM INTO`, creating the directory if needed) and continues on it.
    /// The copy is [`files::FILE_MODE`] and a directory made for it [`files::DIR_MODE`].
    pub fn restore_file(&mut self, bridge: &str) -> Result<()> {
        if let Some(dir) = self.path.parent() {
            files::create_private_dir(dir)
                .map_err(|e| Error::Io(format!("cannot create {}: {e}", dir.display())))?;
        }
        let tmp = side_file(&self.path, "-restore");
        let _ = std::fs::remove_file(&tmp);
        // VACUUM INTO writes into an empty file as it finds it: one of ours, private (SQLite
        // would make a new one 0644).
        files::open_private(std::fs::OpenOptions::new().write(true), &tmp)
            .map_err(|e| Error::Io(format!("cannot create {}: {e}", tmp.display())))?;
        self.conn
            .execute("VACUUM INTO ?1", params![tmp.to_string_lossy()])?;
        std::fs::rename(&tmp, &self.path)
            .map_err(|e| Error::Io(format!("cannot restore {}: {e}", self.path.display())))?;
        // The old connection closes before a new one opens: its close removes "<path>-wal"
        // and "-shm" by name (the old ones), which must not be the new connection's.
        // The checkpoint thread's connection closes first: the old connection is then the
        // last on the old file.
        let fresh = self.ckpt.take().map(|old| {
            Checkpointer::uninstall(&self.conn);
            old.fresh()
        });
        let placeholder = Connection::open_in_memory()?;
        drop(std::mem::replace(&mut self.conn, placeholder));
        let claim = Claim::take(&self.path, bridge)?;
        self.conn = Self::connect(&self.path, self.sync, self.autocheckpoint)?;
        if let Some(c) = &fresh {
            c.install(&self.conn);
        }
        self.ckpt = fresh;
        // The old claim (the deleted inode, no connection left on it) is released here.
        self.claim = claim;
        self.reserve = false;
        self.restore_reserve();
        Ok(())
    }
}

fn side_file(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// After a read-only period the `-shm` (and `-wal`) SQLite created then can be left without
/// write permission while the database itself is writable again; SQLite then refuses to write
/// ("attempt to write a readonly database"). Called only while this process holds the file's
/// lock and has no connection on it, so no other SQLite user can be affected: the `-shm` (an
/// index SQLite rebuilds) is given the database's mode or removed; the `-wal` (committed data)
/// is only ever given the database's mode.
pub(super) fn repair_side_files(path: &Path, log: &Logger) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    if !writable(path) {
        return;
    }
    for suffix in ["-shm", "-wal"] {
        let side = side_file(path, suffix);
        if !side.exists() || writable(&side) {
            continue;
        }
        let mode = std::fs::Permissions::from_mode(meta.permissions().mode() & 0o7777);
        let fixed = std::fs::set_permissions(&side, mode).is_ok() && writable(&side)
            || (suffix == "-shm" && std::fs::remove_file(&side).is_ok());
        if fixed {
            log.warn(&format!(
                "{} was not writable (left by a read-only period); repaired",
                side.display()
            ));
        } else {
            log.error(&format!(
                "{} is not writable while the database is: fix its permissions",
                side.display()
            ));
        }
    }
}

fn writable(p: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: a valid NUL-terminated path.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// Renames a corrupt database (and its -wal and -shm files) aside; returns the new name.
pub(super) fn quarantine(path: &Path) -> Result<PathBuf> {
    let secs = now_ms() / 1000;
    let mut aside = PathBuf::from(format!("{}.corrupt-{secs}", path.display()));
    let mut n = 1;
    while aside.exists() {
        aside = PathBuf::from(format!("{}.corrupt-{secs}-{n}", path.display()));
        n += 1;
    }
    std::fs::rename(path, &aside)
        .map_err(|e| Error::Io(format!("cannot rename corrupt {}: {e}", path.display())))?;
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", path.display()));
        if side.exists() {
            let to = PathBuf::from(format!("{}{suffix}", aside.display()));
            let _ = std::fs::rename(&side, &to);
        }
    }
    Ok(aside)
}
