//! Refusals (issue 20): what a remote that refuses a message does to its row. A refusal for
//! good makes it a dead letter (kept in the file, counted, listed by `nmq-outbox dead`,
//! re-queueable), never a silent deletion; a transient one (quota exceeded, server busy)
//! queues it again behind a back-off. Either way the rows behind it go on. A child module of
//! `outbox`: it works on the outbox's state under its lock.

use super::*;
use crate::dead::{reason, Burial};

/// The longest back-off, in multiples of `backoff_ms`.
const BACKOFF_MAX_FACTOR: u32 = 60;

/// PUBACK/PUBREC reason codes that refuse a message for now, not for good: 0x97 Quota
/// exceeded (MQTT 5 3.4.2.1).
pub(super) fn transient_ack(code: u8) -> bool {
    code == 0x97
}

impl State {
    /// Whether `seq` is to become a dead letter at the next commit (it is out of the queue).
    pub(super) fn buried(&self, seq: i64) -> bool {
        self.pending.buries.iter().any(|b| b.seq == seq)
    }

    /// Takes row `seq` (`bytes` of data) out of the queue and makes it a dead letter: out of
    /// flight and of the read-ahead, counted; moved to the dead letters at the next commit.
    pub(super) fn bury(
        &mut self,
        seq: i64,
        bytes: u64,
        why: &'static str,
        reason_code: Option<u8>,
        attempts: u32,
    ) {
        self.land(seq);
        self.unahead(seq);
        self.forget(bytes);
        self.pending.buries.push(Burial {
            seq,
            reason: why,
            reason_code,
            attempts,
            at: now_ms(),
        });
        self.pending_since.get_or_insert_with(Instant::now);
        self.dead_letters = self.dead_letters.saturating_add(1);
        self.dead_lettered = self.dead_lettered.saturating_add(1);
    }

    /// What a commit did to the dead letters: the oldest beyond the limit deleted (counted,
    /// logged with their reasons), rows that were gone before they could be moved.
    pub(super) fn take_dead(&mut self, w: &Written, notes: &mut Vec<(bool, String)>) {
        let gone = w.dead_dropped.len() as u64;
        self.dead_letters = self
            .dead_letters
            .saturating_sub(gone)
            .saturating_sub(w.unburied);
        self.dropped_dead_letters = self.dropped_dead_letters.saturating_add(gone);
        if gone > 0 {
            let mut why: BTreeMap<&str, u64> = BTreeMap::new();
            for (_, r) in &w.dead_dropped {
                *why.entry(r.as_str()).or_default() += 1;
            }
            let why: Vec<String> = why.iter().map(|(r, n)| format!("{n} {r}")).collect();
            notes.push((
                true,
                format!(
                    "dead letter limit reached: deleted the {gone} oldest dead letters ({}, \
                     seq {}..{})",
                    why.join(", "),
                    w.dead_dropped.first().map_or(0, |d| d.0),
                    w.dead_dropped.last().map_or(0, |d| d.0)
                ),
            ));
        }
    }

    /// The replay waits for a back-off to pass.
    pub(super) fn backing_off(&self) -> bool {
        self.backoff_until.is_some_and(|t| Instant::now() < t)
    }

    /// A transient refusal: the replay waits `backoff_ms`, doubled for each refusal in a row
    /// (up to `BACKOFF_MAX_FACTOR` times it); an acknowledged row ends the series. Returns
    /// the wait.
    pub(super) fn back_off(&mut self, cfg: &Config) -> Duration {
        let base = cfg.backoff_ms.max(1) as u64;
        let factor = (1u64 << self.backoff_step.min(16)).min(BACKOFF_MAX_FACTOR as u64);
        let wait = Duration::from_millis(base.saturating_mul(factor));
        self.backoff_step = self.backoff_step.saturating_add(1);
        self.backoff_until = Some(Instant::now() + wait);
        self.backoffs = self.backoffs.saturating_add(1);
        wait
    }

    /// A row was acknowledged: a series of transient refusals ends.
    pub(super) fn acked_one(&mut self) {
        self.backoff_step = 0;
    }

    /// PUBACK/PUBREC with reason `code` >= 0x80 for in-flight row `seq`. Quota exceeded:
    /// the row is queued again at its place, as never sent (the exchange ended: a new packet
    /// id, no DUP), and the replay backs off. Anything else: a dead letter, also counted in
    /// `dropped_rejected`. The note says what happened, for the log.
    pub(super) fn refused(&mut self, cfg: &Config, seq: i64, code: u8) -> (AckOutcome, String) {
        let Some(f) = self.land(seq) else {
            return (AckOutcome::NotOurs, String::new());
        };
        if transient_ack(code) {
            match self.pending.inserts.iter_mut().find(|r| r.seq == seq) {
                Some(r) => {
                    r.packet_id = 0;
                    r.released = false;
                }
                None => self.pending.binds.push((seq, 0)),
            }
            self.pending_since.get_or_insert_with(Instant::now);
            self.reset_cursor(seq);
            let wait = self.back_off(cfg);
            let note = format!(
                "remote refused row {seq} for now (reason 0x{code:02x}, quota exceeded); sent \
                 again after {} ms",
                wait.as_millis()
            );
            return (AckOutcome::Retry, note);
        }
        self.bury(seq, f.bytes, reason::REJECTED, Some(code), f.attempts);
        self.dropped_rejected = self.dropped_rejected.saturating_add(1);
        let note = format!(
            "remote rejected row {seq} with reason 0x{code:02x}; kept as a dead letter \
             (nmq-outbox dead list)"
        );
        (AckOutcome::Rejected, note)
    }
}
