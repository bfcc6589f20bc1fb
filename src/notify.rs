//! The commit signal of a handle (issue 13, ack after commit): a descriptor the host can poll,
//! made readable by every commit that advances `committed_seq`, drained by the host's call to
//! read the committed seq. An eventfd on Linux, a non-blocking pipe elsewhere. The library
//! never calls the host: the host waits on the descriptor (or polls the seq on its own timer).

use crate::error::{Error, Result};
use std::os::fd::RawFd;
use std::sync::Mutex;

/// One handle's commit signal. Both ends are closed on drop.
#[derive(Debug)]
pub struct Notifier {
    /// What the host polls.
    read: RawFd,
    /// What a commit writes (the same descriptor for an eventfd).
    write: RawFd,
    /// Set with each write, cleared by `drain` with its read, both under this lock (a leaf:
    /// nothing else is taken under it): a drain with nothing written reads nothing (the host
    /// drains once per ack it sends: mostly an EAGAIN read otherwise), and a drain never sees
    /// a write without its flag (it would leave the descriptor readable after draining).
    signalled: Mutex<bool>,
}

fn os_err(what: &str) -> Error {
    Error::Io(format!("{what}: {}", std::io::Error::last_os_error()))
}

impl Notifier {
    #[cfg(target_os = "linux")]
    pub fn new() -> Result<Notifier> {
        // SAFETY: plain syscall, no pointers.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(os_err("eventfd"));
        }
        Ok(Notifier {
            read: fd,
            write: fd,
            signalled: Mutex::new(false),
        })
    }

    #[cfg(not(target_os = "linux"))]
    pub fn new() -> Result<Notifier> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: fds has room for the two descriptors pipe() writes.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(os_err("pipe"));
        }
        for fd in fds {
            // SAFETY: fcntl on descriptors we own.
            unsafe {
                let fl = libc::fcntl(fd, libc::F_GETFL);
                libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
        Ok(Notifier {
            read: fds[0],
            write: fds[1],
            signalled: Mutex::new(false),
        })
    }

    /// The descriptor to poll for readability.
    pub fn fd(&self) -> RawFd {
        self.read
    }

    /// Makes the descriptor readable (never blocks; a full pipe is readable already).
    pub fn signal(&self) {
        let mut signalled = self.flag();
        self.write_one();
        *signalled = true;
    }

    fn flag(&self) -> std::sync::MutexGuard<'_, bool> {
        self.signalled.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One write to the descriptor: 8 bytes to an eventfd, 1 to a pipe.
    fn write_one(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 (eventfd) or 1 (pipe) bytes from a local.
        unsafe {
            libc::write(
                self.write,
                (&one as *const u64).cast(),
                if self.read == self.write { 8 } else { 1 },
            );
        }
    }

    /// Takes every pending signal: the descriptor is no longer readable until the next commit.
    pub fn drain(&self) {
        let mut signalled = self.flag();
        if !std::mem::take(&mut *signalled) {
            return;
        }
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: reads into a local buffer of the given size.
            let n = unsafe { libc::read(self.read, buf.as_mut_ptr().cast(), buf.len()) };
            // An eventfd is emptied by one read; a pipe until EAGAIN.
            if n <= 0 || self.read == self.write {
                break;
            }
        }
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        // SAFETY: closing descriptors we own, once.
        unsafe {
            libc::close(self.read);
            if self.write != self.read {
                libc::close(self.write);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(n: &Notifier) -> bool {
        let mut p = libc::pollfd {
            fd: n.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; timeout 0 (no wait).
        unsafe { libc::poll(&mut p, 1, 0) == 1 }
    }

    #[test]
    fn a_signal_makes_it_readable_until_a_drain_and_a_drain_without_one_reads_nothing() {
        let n = Notifier::new().unwrap();
        assert!(!readable(&n));
        n.drain(); // nothing written: returns without a read
        n.signal();
        n.signal();
        assert!(readable(&n));
        n.drain();
        assert!(!readable(&n));
        // only signal() sets the flag: a write by anything else is left to the next signal's
        // drain
        n.write_one();
        n.drain();
        assert!(readable(&n));
        n.signal();
        n.drain();
        assert!(!readable(&n));
    }
}
