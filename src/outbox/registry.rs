//! Every outbox this process has open, for the host's exit (`close_all`) and its metrics page
//! (`stats_all`): the host keeps no list of its own.
//!
//! The registry holds weak references: it never keeps an outbox alive, and an outbox dropped
//! (`nmq_outbox_free`) leaves it by itself. Its lock is held only to copy the list; closing,
//! reading counters and logging happen after it is released, so the log callback never runs
//! under it.
//!
//! Its test is `tests/core_registry.rs`, a test binary of its own: `close_all` closes every
//! outbox of the process, other tests' too.

use super::{lock, Shared, Stats};
use std::sync::{Arc, Mutex, Weak};

static OPEN: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

/// Adds a newly opened outbox (and forgets those dropped since).
pub(super) fn register(sh: &Arc<Shared>) {
    let mut all = lock(&OPEN);
    all.retain(|w| w.strong_count() > 0);
    all.push(Arc::downgrade(sh));
}

/// The outboxes not yet dropped, in the order they were opened.
fn live() -> Vec<Arc<Shared>> {
    lock(&OPEN).iter().filter_map(Weak::upgrade).collect()
}

/// Logs an outbox's counters at exit (`outbox at exit: {...}`, the JSON of
/// [`crate::metrics::json`]) at INFO on its own logger; no lock of ours is held.
fn log_at_exit(sh: &Shared) {
    match sh.stats() {
        Ok(s) => sh.log.info(&format!(
            "outbox at exit: {}",
            crate::metrics::json(&sh.cfg.bridge, &sh.cfg.path.display().to_string(), &s)
        )),
        Err(e) => sh.log.warn(&format!("counters at exit: {e}")),
    }
}

/// Commits and closes every outbox of this process that is still open, and logs each one's
/// counters (`outbox at exit: {...}`, the JSON of [`crate::metrics::json`]) at INFO on its
/// own logger. Idempotent: an outbox closed before is left as it is, not logged again. A failed
/// final commit is logged as an error (its rows are counted in `dropped_unwritten`). Returns
/// how many outboxes it closed.
pub fn close_all() -> usize {
    let mut closed = 0;
    for sh in live() {
        if lock(&sh.state).closed {
            continue; // closed before (a second call, atexit after the signal thread)
        }
        if let Err(e) = sh.close() {
            sh.log
                .error(&format!("close at exit: final commit failed: {e}"));
        }
        log_at_exit(&sh);
        closed += 1;
    }
    closed
}

/// For the host's exit: commits every open outbox and from then on has each append commit
/// before it returns, so that what the host accepts while it exits is on disk when it has it
/// accepted; the outboxes stay open (the writer and the replay go on until the process ends).
/// Logs each one's counters (`outbox at exit: {...}`) at INFO on its own logger, at every call
/// (a second call, from `atexit` after the signal thread's, gives the last counters). A failed
/// commit is logged as an error (its rows stay pending; appends then commit inline, as after
/// any failed commit). Returns how many open outboxes it saw.
pub fn exit_all() -> usize {
    let mut seen = 0;
    for sh in live() {
        {
            let mut st = lock(&sh.state);
            if st.closed {
                continue;
            }
            st.exiting = true;
        }
        if let Err(e) = sh.flush_inner() {
            sh.log.error(&format!("commit at exit failed: {e}"));
        }
        log_at_exit(&sh);
        seen += 1;
    }
    seen
}

/// The bridge name and counters of every outbox not yet dropped (open or closed), in the
/// order they were opened. An outbox whose counters cannot be read is left out (logged).
pub fn stats_all() -> Vec<(String, Stats)> {
    let mut out = Vec::new();
    for sh in live() {
        match sh.stats() {
            Ok(s) => out.push((sh.cfg.bridge.clone(), s)),
            Err(e) => sh.log.warn(&format!("counters: {e}")),
        }
    }
    out
}
