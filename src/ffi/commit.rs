//! Commits on the caller's thread (ack after commit): the descriptor, the commit, how far.

use super::guard::{non_null, with_handle};
use super::sys::*;

/// Ack after commit: `*fd` (borrowed out-pointer) gets the handle's commit descriptor, owned
/// by the library. `ob` is borrowed (NULL gives EINVAL). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_commit_fd(
    ob: *mut nmq_outbox,
    fd: *mut std::os::raw::c_int,
) -> nmq_outbox_result {
    with_handle("nmq_outbox_commit_fd", ob, |h| {
        non_null(fd, "fd")?;
        *fd = h.commit_fd()?;
        Ok(NMQ_OUTBOX_OK)
    })
}

/// Ack after commit: commits the pending appends on this thread, behind a running commit
/// (`NMQ_OUTBOX_PENDING` during the writer's checkpoint: the writer commits them next).
/// `ob` is borrowed (NULL gives EINVAL). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_commit(ob: *mut nmq_outbox) -> nmq_outbox_result {
    with_handle("nmq_outbox_commit", ob, |h| {
        Ok(if h.commit()? {
            NMQ_OUTBOX_OK
        } else {
            NMQ_OUTBOX_PENDING
        })
    })
}

/// Ack after commit: drains the commit descriptor, then `*seq` (borrowed) gets the committed
/// seq. `ob` is borrowed (NULL gives EINVAL). Also after close. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_committed_seq(
    ob: *mut nmq_outbox,
    seq: *mut i64,
) -> nmq_outbox_result {
    with_handle("nmq_outbox_committed_seq", ob, |h| {
        non_null(seq, "seq")?;
        *seq = h.committed_seq();
        Ok(NMQ_OUTBOX_OK)
    })
}
