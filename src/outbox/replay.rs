//! The replay: rows handed out in FIFO order within the window (lease), their packet ids
//! (bind), a send that failed (unlease), a QoS 0 row written (sent), a row that cannot be sent
//! (drop_row), and the remote's acks.

use super::*;

impl Outbox {
    /// The next row in FIFO order, if the link is up and the window has room.
    pub fn lease(&self) -> Result<Option<Leased>> {
        let sh = &self.shared;
        let mut notes = Vec::new();
        let mut wake = false;
        let out = self.lease_inner(&mut notes, &mut wake);
        if wake {
            sh.wake.notify_one();
        }
        for n in notes {
            sh.log.warn(&format!("bridge {:?}: {n}", sh.cfg.bridge));
        }
        out
    }

    pub(super) fn lease_inner(
        &self,
        notes: &mut Vec<String>,
        wake: &mut bool,
    ) -> Result<Option<Leased>> {
        let sh = &self.shared;
        for _ in 0..4 {
            let generation = {
                let mut st = sh.lock_open()?;
                if !st.link_up || st.inflight.len() as u32 >= st.send_window() || st.backing_off() {
                    return Ok(None);
                }
                if st.messages <= st.inflight.len() as u64 {
                    return Ok(None);
                }
                let now = now_ms();
                loop {
                    let row = match st.ahead.pop_front() {
                        Some(r) => r,
                        None => match st.next_pending()? {
                            Some(r) => r,
                            None => break,
                        },
                    };
                    st.cursor = row.seq + 1;
                    if st.inflight.contains_key(&row.seq) {
                        continue;
                    }
                    if row.expires_at != 0 && now >= row.expires_at {
                        st.discard(row.seq, row.data.len() as u64);
                        st.dropped_expired = st.dropped_expired.saturating_add(1);
                        continue;
                    }
                    let expiry_secs = if row.expires_at == 0 {
                        0
                    } else {
                        (row.expires_at.saturating_sub(now).saturating_add(999) / 1000)
                            .clamp(1, u32::MAX as i64) as u32
                    };
                    let mut row = row;
                    let bytes = row.data.len() as u64;
                    let (qos, shaped) = st.shape(&mut row);
                    if let Some(size) = st.too_large(&row, expiry_secs) {
                        st.bury(
                            row.seq,
                            bytes,
                            crate::dead::reason::PACKET_TOO_LARGE,
                            None,
                            row.attempts,
                        );
                        *wake |= st.writer_due(&sh.cfg);
                        notes.push(format!(
                            "row {} is a PUBLISH of {size} bytes, above the remote's Maximum \
                             Packet Size {}: never sent, kept as a dead letter",
                            row.seq,
                            st.limits.max_packet_size.unwrap_or(0)
                        ));
                        continue;
                    }
                    st.count_shape(shaped);
                    let dup = row.packet_id != 0;
                    if dup {
                        st.resent = st.resent.saturating_add(1);
                    }
                    st.inflight.insert(
                        row.seq,
                        Flight {
                            qos,
                            packet_id: 0,
                            bytes,
                            attempts: row.attempts,
                            sent_no: 0,
                        },
                    );
                    return Ok(Some(Leased {
                        seq: row.seq,
                        qos,
                        packet_id: row.packet_id,
                        dup,
                        released: row.released,
                        expiry_secs,
                        data: row.data,
                    }));
                }
                st.generation
            };
            if !sh.refill(generation)? {
                return Ok(None);
            }
        }
        Ok(None)
    }

    /// Binds the packet id the row was sent with.
    pub fn bind(&self, seq: i64, packet_id: u16) -> Result<()> {
        let mut st = self.shared.lock_open()?;
        let wake = st.bind_id(&self.shared.cfg, seq, packet_id)?;
        drop(st);
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(())
    }

    /// The send of a leased row failed locally: it goes back to the queue at its place.
    pub fn unlease(&self, seq: i64) -> Result<()> {
        let mut st = self.shared.lock_open()?;
        if st.land(seq).is_none() {
            return Err(Error::Invalid(format!("row {seq} is not in flight")));
        }
        st.reset_cursor(seq);
        Ok(())
    }

    /// A leased QoS 0 row was written to the link (or queued on it, in order): it stays in
    /// flight until the remote is known to have read past it ([`qos0`]).
    pub fn sent(&self, seq: i64) -> Result<()> {
        let mut st = self.shared.lock_open()?;
        match st.inflight.get(&seq) {
            None => return Err(Error::Invalid(format!("row {seq} is not in flight"))),
            Some(f) if f.qos != 0 => {
                return Err(Error::Invalid(format!(
                    "row {seq} is QoS {}: it completes with its ack, not sent()",
                    f.qos
                )))
            }
            Some(f) if f.sent_no != 0 => {
                return Err(Error::Invalid(format!("row {seq} was sent already")))
            }
            Some(_) => {}
        }
        let sent_no = st.next_send_no();
        if let Some(f) = st.inflight.get_mut(&seq) {
            f.sent_no = sent_no;
        }
        st.last_send = Some(Instant::now());
        Ok(())
    }

    /// A leased row cannot be sent as it is (it does not split into a PUBLISH, it cannot be
    /// encoded): it is deleted, counted in `dropped_malformed` and logged, and the replay goes
    /// on with the next row.
    pub fn drop_row(&self, seq: i64, why: &str) -> Result<()> {
        let sh = &self.shared;
        let mut st = sh.lock_open()?;
        if !st.finish(seq) {
            return Err(Error::Invalid(format!("row {seq} is not in flight")));
        }
        st.dropped_malformed = st.dropped_malformed.saturating_add(1);
        let wake = st.writer_due(&sh.cfg);
        drop(st);
        if wake {
            sh.wake.notify_one();
        }
        sh.log.warn(&format!(
            "bridge {:?}: row {seq} cannot be sent ({why}); dropped",
            sh.cfg.bridge
        ));
        Ok(())
    }

    /// An acknowledgement from the remote.
    pub fn ack(&self, packet_id: u16, kind: AckKind, reason: u8) -> Result<AckOutcome> {
        Ok(self
            .ack_inner(packet_id, kind, reason, true)?
            .unwrap_or(AckOutcome::NotOurs))
    }

    /// An acknowledgement from the remote, when `packet_id` is bound to a row of this outbox
    /// in flight; None (nothing done, nothing counted) when it is not: the host's own send's.
    pub fn ack_bound(
        &self,
        packet_id: u16,
        kind: AckKind,
        reason: u8,
    ) -> Result<Option<AckOutcome>> {
        self.ack_inner(packet_id, kind, reason, false)
    }

    fn ack_inner(
        &self,
        packet_id: u16,
        kind: AckKind,
        reason: u8,
        count_unbound: bool,
    ) -> Result<Option<AckOutcome>> {
        let sh = &self.shared;
        let mut st = sh.lock_open()?;
        let unbound = |st: &mut State| {
            if count_unbound {
                st.acks_ignored = st.acks_ignored.saturating_add(1);
            }
            Ok(None)
        };
        let Some(&seq) = st.by_pid.get(&packet_id) else {
            return unbound(&mut st);
        };
        let Some((qos, sent_no)) = st.inflight.get(&seq).map(|f| (f.qos, f.sent_no)) else {
            st.by_pid.remove(&packet_id);
            return unbound(&mut st);
        };
        let fits = matches!(
            (qos, kind),
            (1, AckKind::PubAck) | (2, AckKind::PubRec) | (2, AckKind::PubComp)
        );
        if !fits {
            st.acks_ignored = st.acks_ignored.saturating_add(1);
            drop(st);
            sh.log.warn(&format!(
                "bridge {:?}: {kind:?} for packet id {packet_id} of a QoS {qos} row, ignored",
                sh.cfg.bridge
            ));
            return Ok(Some(AckOutcome::NotOurs));
        }
        // The remote read this row's packet: so it read every QoS 0 row written before it.
        st.confirm_qos0(sent_no.saturating_sub(1));
        // A PUBCOMP ends the exchange whatever its reason code: 0x92 (packet id not found)
        // answers a resumed PUBREL whose message the remote had already completed.
        let mut note = String::new();
        let outcome = if reason >= 0x80 && kind != AckKind::PubComp {
            let (o, n) = st.refused(&sh.cfg, seq, reason);
            note = n;
            o
        } else if kind == AckKind::PubRec {
            // Durable, so that after a restart the exchange resumes with PUBREL.
            match st.pending.inserts.iter_mut().find(|r| r.seq == seq) {
                Some(r) => r.released = true,
                None => st.pending.releases.push(seq),
            }
            st.pending_since.get_or_insert_with(Instant::now);
            st.accepted_one(seq);
            AckOutcome::Progress
        } else {
            st.finish(seq);
            st.acked = st.acked.saturating_add(1);
            st.accepted_one(seq);
            AckOutcome::Done
        };
        let wake = st.writer_due(&sh.cfg);
        drop(st);
        if wake {
            sh.wake.notify_one();
        }
        if !note.is_empty() {
            sh.log.warn(&format!(
                "bridge {:?}: packet id {packet_id}: {note}",
                sh.cfg.bridge
            ));
        }
        Ok(Some(outcome))
    }
}
