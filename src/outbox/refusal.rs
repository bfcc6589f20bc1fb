//! Refusals (issue 20): what a remote that refuses a message does to its row. A refusal for
//! good makes it a dead letter (kept in the file, counted, listed by `nmq-outbox dead`,
//! re-queueable), never a silent deletion; a transient one (quota exceeded, server busy)
//! queues it again behind a back-off. Either way the rows behind it go on. A child module of
//! `outbox`: it works on the outbox's state under its lock.

use super::*;
use crate::dead::{reason, Burial};

/// The longest back-off, in multiples of `backoff_ms`.
const BACKOFF_MAX_FACTOR: u32 = 60;

/// A close without DISCONNECT this soon after a send, with no ack since, may be the remote
/// refusing that message (MQTT 3.1.1 servers just close; so do some MQTT 5 ones).
pub const CLOSE_AFTER_SEND: Duration = Duration::from_secs(3);

/// What a lost link says about the rows in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// A network loss, a keep alive timeout, the server going away, a normal DISCONNECT:
    /// nothing about a message. Attempts are never counted.
    Ordinary,
    /// The remote refused for now (DISCONNECT 0x89 Server busy, 0x93 Receive Maximum
    /// exceeded, 0x96 Message rate too high, 0x97 Quota exceeded, 0x9F Connection rate
    /// exceeded): the replay backs off; never a dead letter.
    Transient,
    /// The remote refused a message (DISCONNECT 0x80 Unspecified error, 0x81 Malformed
    /// packet, 0x82 Protocol error, 0x83 Implementation specific error, 0x87 Not authorized,
    /// 0x90 Topic Name invalid, 0x94 Topic Alias invalid, 0x95 Packet too large, 0x99 Payload
    /// format invalid, 0x9A Retain not supported, 0x9B QoS not supported).
    Refusal,
    /// A close without DISCONNECT: a refusal when it came right after a send (see
    /// `CLOSE_AFTER_SEND`), else an ordinary loss.
    Unexplained,
}

/// What a DISCONNECT reason code (MQTT 5 3.14.2.1) says, or a close without one.
pub fn classify(reason: u8, had_disconnect: bool) -> Close {
    if !had_disconnect {
        return Close::Unexplained;
    }
    match reason {
        0x89 | 0x93 | 0x96 | 0x97 | 0x9F => Close::Transient,
        0x80..=0x83 | 0x87 | 0x90 | 0x94 | 0x95 | 0x99..=0x9B => Close::Refusal,
        _ => Close::Ordinary,
    }
}

/// Whether a close on a QoS 2 PUBLISH alone in flight says the remote does not take QoS 2:
/// DISCONNECT 0x9B (QoS not supported), or, on an MQTT 3.1.1 connection, a close without one
/// (3.1.1 has no Maximum QoS in its CONNACK and no reason codes: mosquitto with `max_qos 1`,
/// AWS IoT Core close the connection).
pub(super) fn refuses_qos2(reason: u8, had_disconnect: bool, proto_ver: u8) -> bool {
    if had_disconnect {
        reason == 0x9B
    } else {
        matches!(proto_ver, 3 | 4)
    }
}

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
        self.backoff_until = Instant::now().checked_add(wait);
        self.backoffs = self.backoffs.saturating_add(1);
        wait
    }

    /// The remote accepted row `seq` (PUBACK, PUBREC or PUBCOMP with success): a series of
    /// transient refusals ends, and so does a probe once every suspect is done.
    pub(super) fn accepted_one(&mut self, seq: i64) {
        self.backoff_step = 0;
        if self.probe && seq >= self.probe_until {
            self.probe = false;
        }
        self.last_ack = Some(Instant::now());
    }

    /// Probes until every row up to `last` (the rows in flight at a refusal) is done.
    fn start_probe(&mut self, last: i64) {
        self.probe_until = if self.probe {
            self.probe_until.max(last)
        } else {
            last
        };
        self.probe = true;
    }

    /// The window the replay may fill: 1 while probing.
    pub(super) fn send_window(&self) -> u32 {
        if self.probe {
            1
        } else {
            self.window
        }
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

impl Outbox {
    /// The link went down, and why: `had_disconnect` when the remote sent a DISCONNECT, with
    /// its `reason` code (MQTT 5; 0 for none). Rows in flight go back to the head of the
    /// queue as with [`Outbox::link_down`], and (see [`classify`]):
    /// - a refusal (a DISCONNECT refusal code, or a close without DISCONNECT within
    ///   `CLOSE_AFTER_SEND` of a send with no ack since): a row that was alone in flight gets
    ///   an attempt, and after `max_attempts` becomes a dead letter ("refused_by_close");
    ///   with several rows in flight (or none: a direct send of the host may be the culprit,
    ///   which it puts back at the head) the next connections probe: one row at a time, until
    ///   every row that was in flight is acknowledged or a dead letter. A close without
    ///   DISCONNECT counts an attempt only while probing (an ordinary outage during a normal
    ///   window never does);
    /// - a transient refusal: the replay backs off (`lease` gives nothing until it passed;
    ///   the host's replay tick calls it again), no attempt, never a dead letter;
    /// - anything else: nothing more.
    pub fn link_down_reason(&self, reason: u8, had_disconnect: bool) -> Result<()> {
        let sh = &self.shared;
        let mut st = sh.lock_open()?;
        let class = classify(reason, had_disconnect);
        // Rows sent (bound) and not acknowledged.
        let sent: Vec<(i64, Flight)> = st
            .inflight
            .iter()
            .filter(|(_, f)| f.packet_id != 0)
            .map(|(&s, &f)| (s, f))
            .collect();
        let recent = st
            .last_send
            .is_some_and(|t| t.elapsed() <= CLOSE_AFTER_SEND)
            && st.last_ack.map_or(true, |a| Some(a) < st.last_send);
        let why = if had_disconnect {
            format!("DISCONNECT 0x{reason:02x}")
        } else {
            "a close without DISCONNECT right after a send".to_string()
        };
        let refusal = match class {
            Close::Refusal => true,
            Close::Unexplained => recent && !sent.is_empty(),
            _ => false,
        };
        let mut note = None;
        if class == Close::Transient {
            let wait = st.back_off(&sh.cfg);
            note = Some(format!(
                "remote closed the connection for now (DISCONNECT 0x{reason:02x}): the replay \
                 waits {} ms",
                wait.as_millis()
            ));
        } else if refusal {
            // Counted only for a row alone in flight; a close without a reason only while
            // probing (the culprit isolated), never during a normal window.
            let counts = sent.len() == 1 && (class == Close::Refusal || st.probe);
            let qos2_refused = counts
                && sent[0].1.qos == 2
                && st.learned_max_qos == 2
                && refuses_qos2(reason, had_disconnect, st.limits.proto_ver);
            if qos2_refused {
                // The remote does not take QoS 2 (MQTT 5: 0x9B despite its CONNACK; 3.1.1
                // has no way to say so but closing): from now on every row goes at QoS 1
                // (as under Maximum QoS 1), this one too, without counting an attempt.
                let seq = sent[0].0;
                st.learned_max_qos = 1;
                st.limits.max_qos = 1;
                note = Some(format!(
                    "remote closed the connection on row {seq}, a QoS 2 PUBLISH ({why}): taken \
                     as Maximum QoS 1 from now on (QoS 2 rows go at QoS 1, counted in \
                     qos_downgraded; a restart tries QoS 2 again)"
                ));
                st.start_probe(seq);
            } else if counts {
                let (seq, f) = sent[0];
                let attempts = f.attempts.saturating_add(1);
                if attempts >= sh.cfg.max_attempts {
                    let code = had_disconnect.then_some(reason);
                    st.bury(seq, f.bytes, reason::REFUSED_BY_CLOSE, code, attempts);
                    note = Some(format!(
                        "remote closed the connection on row {seq} ({why}) {attempts} times: \
                         kept as a dead letter (nmq-outbox dead list); the replay goes on"
                    ));
                } else {
                    match st.pending.inserts.iter_mut().find(|r| r.seq == seq) {
                        Some(r) => r.attempts = attempts,
                        None => st.pending.attempts.push((seq, attempts)),
                    }
                    st.pending_since.get_or_insert_with(Instant::now);
                    note = Some(format!(
                        "remote closed the connection on row {seq} ({why}): attempt \
                         {attempts} of {}",
                        sh.cfg.max_attempts
                    ));
                }
                st.start_probe(seq);
            } else {
                let last = sent.iter().map(|s| s.0).max().unwrap_or(i64::MIN);
                let was = st.probe;
                st.start_probe(last);
                if !was {
                    note = Some(format!(
                        "remote closed the connection ({why}) with {} rows in flight: the next \
                     connections send one row at a time until one is acknowledged, to find a \
                     message it refuses",
                        sent.len()
                    ));
                }
            }
        }
        st.link_up = false;
        st.drop_flight();
        let wake = st.writer_due(&sh.cfg);
        drop(st);
        if wake {
            sh.wake.notify_one();
        }
        if let Some(n) = note {
            sh.log.warn(&format!("bridge {:?}: {n}", sh.cfg.bridge));
        }
        Ok(())
    }
}
