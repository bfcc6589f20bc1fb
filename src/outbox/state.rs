//! The outbox's in-memory state (everything behind the state lock) and its small helpers: a
//! row in flight, the counters, the read-ahead cursor, the pending batch.

use super::remote;
use crate::config::Config;
use crate::error::Result;
use crate::store::{copy_bytes, Batch, Row};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Instant;

#[derive(Debug, Clone, Copy)]
pub(super) struct Flight {
    /// The QoS it is sent at (its own, or the remote's Maximum QoS): which ack completes it.
    pub(super) qos: u8,
    pub(super) packet_id: u16,
    pub(super) bytes: u64,
    /// Times the remote closed the connection while this row was alone in flight.
    pub(super) attempts: u32,
    /// Its write on this connection ([`State::send_no`]): 0 until it is sent (bound, or a QoS 0
    /// row `sent`). An ack of it confirms the QoS 0 rows written before it (QOS 0).
    pub(super) sent_no: u64,
}

/// Everything behind the state lock. Never held while SQLite works or while logging.
pub(super) struct State {
    pub(super) closed: bool,
    /// The process exits (`exit_all`): every append commits before it returns.
    pub(super) exiting: bool,
    pub(super) link_up: bool,
    pub(super) window: u32,
    pub(super) next_seq: i64,
    pub(super) front_seq: i64,
    /// Next seq the replay considers. Rows below it are in flight or gone.
    pub(super) cursor: i64,
    /// Rows read ahead (from disk, and inserts not yet committed): seq >= cursor, in order.
    pub(super) ahead: VecDeque<Row>,
    /// Bumped whenever `cursor`/`ahead` are reset or refilled (detects a stale refill).
    pub(super) generation: u64,
    pub(super) inflight: BTreeMap<i64, Flight>,
    pub(super) by_pid: HashMap<u16, i64>,
    /// The next packet id the outbox gives a row that has none free (`bind_free`).
    pub(super) next_pid: u16,
    pub(super) pending: Batch,
    /// Data bytes of `pending.inserts`.
    pub(super) pending_bytes: u64,
    pub(super) pending_since: Option<Instant>,
    pub(super) messages: u64,
    pub(super) bytes: u64,
    pub(super) committed_seq: i64,
    pub(super) enqueued: u64,
    pub(super) acked: u64,
    pub(super) resent: u64,
    pub(super) dropped_full: u64,
    pub(super) dropped_expired: u64,
    pub(super) dropped_rejected: u64,
    pub(super) dropped_malformed: u64,
    pub(super) dropped_unwritten: u64,
    pub(super) refused_nospace: u64,
    pub(super) lost_fallback_queue: u64,
    pub(super) lost_fallback_send: u64,
    /// Host events counted here (`count_event`): QoS 0 dropped, refusals sent around us.
    pub(super) dropped_qos0: u64,
    pub(super) fallbacks: u64,
    /// The last commit failed; appends commit inline until one succeeds.
    pub(super) write_failed: bool,
    /// The disk was full and the reserve is spent: appends are refused until it is back.
    pub(super) space_low: bool,
    pub(super) last_reserve_try: Option<Instant>,
    /// A batch taken from `pending` is being written (not yet visible as committed).
    pub(super) writing: bool,
    /// The writer thread was notified and has not looked at the state since: later writes
    /// need not notify it again (each notify is a futex syscall).
    pub(super) kicked: bool,
    /// When the writer thread waits with a timer: its deadline (it then re-reads the state
    /// by itself; a batch whose bound is later needs no notify). `None`: it waits for a
    /// notify, or it is committing.
    pub(super) writer_deadline: Option<Instant>,
    /// `caller_commits`: commits since the writer's last checkpoint, and whether one is due.
    pub(super) commits_unchecked: u32,
    pub(super) checkpoint_due: bool,
    pub(super) checkpoints: u64,
    /// The writer is checkpointing (holds the store for an fsync): callers do not wait.
    pub(super) checkpointing: bool,
    /// What the remote allows (its last CONNACK, and what its refusals taught: a remote that
    /// closes the connection on a QoS 2 PUBLISH is taken as Maximum QoS 1 from then on).
    pub(super) limits: remote::Limits,
    pub(super) learned_max_qos: u8,
    pub(super) qos_downgraded: u64,
    pub(super) retain_cleared: u64,
    /// Dead letters in the file now; rows made dead letters since open; the oldest deleted
    /// beyond `dead_letter_limit`.
    pub(super) dead_letters: u64,
    pub(super) dead_lettered: u64,
    pub(super) dropped_dead_letters: u64,
    /// Transient refusals (quota exceeded, server busy): the replay waits until
    /// `backoff_until`; `backoff_step` refusals in a row double the wait.
    pub(super) backoffs: u64,
    pub(super) backoff_until: Option<Instant>,
    pub(super) backoff_step: u32,
    /// After a close that may have been a refusal of a message in flight: the replay sends
    /// one row at a time, to isolate the culprit, until a row from `probe_until` on (the last
    /// row in flight at that close: every suspect is then acknowledged or a dead letter) is
    /// acknowledged.
    pub(super) probe: bool,
    pub(super) probe_until: i64,
    /// When a row was last sent (bound), and when the remote last acknowledged one.
    pub(super) last_send: Option<Instant>,
    pub(super) last_ack: Option<Instant>,
    /// Acks that matched no row in flight (unknown packet id, a second ack, the wrong type).
    pub(super) acks_ignored: u64,
    /// QoS 0 confirmation ([`qos0`]): writes counted on the connection, the write count at
    /// each PINGREQ awaiting its PINGRESP, and whether a PINGREQ went unrecorded.
    pub(super) send_no: u64,
    pub(super) ping_marks: VecDeque<u64>,
    pub(super) ping_lost_track: bool,
}

impl State {
    /// A new message of `qos` may go out directly: the link is up, nothing is held, the window
    /// has room, no refusal holds the replay back (back-off, probe), and it is not a QoS 0
    /// message that `store_qos0` keeps until confirmed.
    pub(super) fn may_send_now(&self, qos: u8, cfg: &Config) -> bool {
        !(qos == 0 && cfg.store_qos0)
            && self.link_up
            && self.messages == 0
            && (self.inflight.len() as u32) < self.window
            && !self.backing_off()
            && !self.probe
    }

    pub(super) fn reset_cursor(&mut self, to: i64) {
        self.cursor = self.cursor.min(to);
        self.ahead.clear();
        self.generation += 1;
    }

    /// One row less held.
    pub(super) fn forget(&mut self, bytes: u64) {
        self.messages = self.messages.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(bytes);
    }

    /// Removes a row for good: from the read-ahead, and from the pending inserts or else from
    /// the disk at the next commit. Not for rows in flight (see `finish`).
    pub(super) fn discard(&mut self, seq: i64, bytes: u64) {
        if !self.remove_pending_insert(seq) {
            self.push_delete(seq);
        }
        self.unahead(seq);
        self.forget(bytes);
    }

    /// Takes a row out of the read-ahead, if it is there.
    pub(super) fn unahead(&mut self, seq: i64) {
        if let Ok(i) = self.ahead.binary_search_by_key(&seq, |r| r.seq) {
            self.ahead.remove(i);
        }
    }

    /// Forgets a row that never reached the disk (refused): out of flight, of the read-ahead
    /// and of the counters. Its pending insert is already gone.
    pub(super) fn vanish(&mut self, seq: i64, bytes: u64) {
        self.land(seq);
        self.unahead(seq);
        self.forget(bytes);
    }

    /// Takes a row out of flight; None when it is not in flight.
    pub(super) fn land(&mut self, seq: i64) -> Option<Flight> {
        let f = self.inflight.remove(&seq)?;
        if f.packet_id != 0 && self.by_pid.get(&f.packet_id) == Some(&seq) {
            self.by_pid.remove(&f.packet_id);
        }
        Some(f)
    }

    /// Removes an in-flight row for good (acked, rejected, sent or dropped). False when it is
    /// not in flight.
    pub(super) fn finish(&mut self, seq: i64) -> bool {
        match self.land(seq) {
            Some(f) => {
                self.discard(seq, f.bytes);
                true
            }
            None => false,
        }
    }

    /// Drops a not yet committed insert; false when it is not pending.
    pub(super) fn remove_pending_insert(&mut self, seq: i64) -> bool {
        match self.pending.inserts.iter().position(|r| r.seq == seq) {
            Some(i) => {
                let r = self.pending.inserts.remove(i);
                self.pending_bytes = self.pending_bytes.saturating_sub(r.data.len() as u64);
                true
            }
            None => false,
        }
    }

    /// The next row to replay when it can only be in the pending batch: every committed row
    /// was handed out (the cursor is past `committed_seq`) and no batch is being written.
    pub(super) fn next_pending(&self) -> Result<Option<Row>> {
        if self.writing || self.cursor <= self.committed_seq {
            return Ok(None);
        }
        let next = self
            .pending
            .inserts
            .iter()
            .filter(|r| {
                r.seq >= self.cursor && !self.inflight.contains_key(&r.seq) && !self.buried(r.seq)
            })
            .min_by_key(|r| r.seq);
        match next {
            Some(r) => Ok(Some(r.with_data(copy_bytes(&r.data)?))),
            None => Ok(None),
        }
    }

    pub(super) fn push_delete(&mut self, seq: i64) {
        self.pending.deletes.push(seq);
        self.pending_since.get_or_insert_with(Instant::now);
    }
}
