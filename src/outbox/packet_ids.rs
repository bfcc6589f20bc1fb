//! Packet ids of the rows in flight: the outbox alone chooses them (`bind_free`) and keeps
//! their map (`by_pid`); the host is only asked whether an id is taken by its own sends (the
//! direct sends, SUBSCRIBE, UNSUBSCRIBE), and asks the outbox the same (`packet_id_bound`)
//! before it gives an id to one of those.

use super::*;

/// Where the outbox's own counter starts: half the id space away from a host counter that
/// starts at 1 (NanoNNG's), so that the two seldom offer the same id.
pub(super) const FIRST_PACKET_ID: u16 = 0x8000;

/// The id after `id`, wrapping from 65535 to 1 (0 is no packet id).
pub(super) fn after(id: u16) -> u16 {
    if id == u16::MAX {
        1
    } else {
        id + 1
    }
}

/// What a leased row is on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    /// A QoS 1 or 2 PUBLISH (a packet id, completed by its ack).
    Publish,
    /// A PUBREL for a QoS 2 row whose PUBREC came (its own packet id, completed by PUBCOMP).
    Pubrel,
    /// A QoS 0 PUBLISH (no packet id; `sent` once written).
    Qos0,
}

impl RowKind {
    /// The kind of a leased row.
    pub fn of(row: &Leased) -> RowKind {
        if row.released {
            RowKind::Pubrel
        } else if row.qos == 0 {
            RowKind::Qos0
        } else {
            RowKind::Publish
        }
    }
}

impl State {
    /// Binds in-flight row `seq` to `packet_id` (the state half of `Outbox::bind`). True when
    /// the writer is due.
    pub(super) fn bind_id(&mut self, cfg: &Config, seq: i64, packet_id: u16) -> Result<bool> {
        if packet_id == 0 {
            return Err(Error::Invalid("packet id 0".into()));
        }
        if let Some(&other) = self.by_pid.get(&packet_id) {
            if other != seq {
                return Err(Error::Invalid(format!(
                    "packet id {packet_id} is bound to row {other}, still in flight"
                )));
            }
        }
        let Some(f) = self.inflight.get_mut(&seq) else {
            return Err(Error::Invalid(format!("row {seq} is not in flight")));
        };
        if f.qos == 0 {
            return Err(Error::Invalid(format!(
                "row {seq} is QoS 0: it has no packet id (call sent() once it is written)"
            )));
        }
        let old = std::mem::replace(&mut f.packet_id, packet_id);
        let sent_no = self.next_send_no();
        if let Some(f) = self.inflight.get_mut(&seq) {
            f.sent_no = sent_no;
        }
        if old != 0 && old != packet_id {
            self.by_pid.remove(&old);
        }
        self.by_pid.insert(packet_id, seq);
        self.last_send = Some(Instant::now());
        match self.pending.inserts.iter_mut().find(|r| r.seq == seq) {
            Some(r) => r.packet_id = packet_id,
            None => self.pending.binds.push((seq, packet_id)),
        }
        self.pending_since.get_or_insert_with(Instant::now);
        Ok(self.writer_due(cfg))
    }

    /// Whether `id` can be given to row `seq`: not bound to another row, not the host's.
    fn id_free(&self, id: u16, seq: i64, host_busy: &mut dyn FnMut(u16) -> bool) -> bool {
        id != 0 && self.by_pid.get(&id).map_or(true, |&s| s == seq) && !host_busy(id)
    }
}

impl Outbox {
    /// Chooses and binds the packet id of leased row `seq` (QoS 1 or 2): `prev`, the id it was
    /// sent with (a resend, with DUP), when it is free; else, for a PUBLISH, the next free id
    /// of the outbox's counter (wrapping after 65535, never 0). An id is free when no other
    /// row of this outbox in flight has it and `host_busy` (the host's own sends in flight)
    /// says no. A released row (its PUBREL resumes the exchange) only ever keeps `prev`.
    /// None when no id is free now: the row stays leased (unlease it). `host_busy` runs on
    /// the calling thread with the outbox's lock held (it must not call the outbox), at most
    /// 65535 times.
    pub fn bind_free(
        &self,
        seq: i64,
        prev: u16,
        released: bool,
        host_busy: &mut dyn FnMut(u16) -> bool,
    ) -> Result<Option<u16>> {
        let sh = &self.shared;
        let mut st = sh.lock_open()?;
        let mut chosen = None;
        if prev != 0 && st.id_free(prev, seq, host_busy) {
            chosen = Some(prev);
        } else if !released {
            let mut id = st.next_pid;
            for _ in 0..u16::MAX {
                let here = id;
                id = after(id);
                if st.id_free(here, seq, host_busy) {
                    chosen = Some(here);
                    break;
                }
            }
            st.next_pid = id;
        }
        let Some(id) = chosen else {
            return Ok(None);
        };
        let wake = st.bind_id(&sh.cfg, seq, id)?;
        drop(st);
        if wake {
            sh.wake.notify_one();
        }
        Ok(Some(id))
    }

    /// Whether `packet_id` is bound to a row of this outbox in flight: the host gives it to
    /// none of its own sends meanwhile.
    pub fn packet_id_bound(&self, packet_id: u16) -> Result<bool> {
        let st = self.shared.lock_open()?;
        Ok(st
            .by_pid
            .get(&packet_id)
            .is_some_and(|s| st.inflight.contains_key(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &std::path::Path) -> Outbox {
        let mut cfg = Config::new(dir.join("ob.db"), "b");
        cfg.logger = Logger::new(None, crate::log::Level::Error);
        let ob = Outbox::open(cfg).unwrap();
        ob.link_up(0).unwrap();
        ob
    }

    fn add(ob: &Outbox, qos: u8) -> i64 {
        ob.append(&NewMessage {
            qos,
            expiry_secs: 0,
            data: &[0x30 | (qos << 1), 0],
        })
        .unwrap()
    }

    fn none(_: u16) -> bool {
        false
    }

    /// An id the host has in flight (a direct send, a SUBSCRIBE) is never given to a row; nor
    /// is one another row has; the host learns the rows' ids from `packet_id_bound`.
    #[test]
    fn an_id_busy_at_the_host_or_bound_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let ob = open(dir.path());
        let (a, b) = (add(&ob, 1), add(&ob, 2));
        let la = ob.lease().unwrap().unwrap();
        assert_eq!(la.seq, a);
        let busy = |id: u16| id == FIRST_PACKET_ID || id == FIRST_PACKET_ID + 1;
        let got = ob.bind_free(a, 0, false, &mut { busy }).unwrap();
        assert_eq!(got, Some(FIRST_PACKET_ID + 2));
        assert!(ob.packet_id_bound(FIRST_PACKET_ID + 2).unwrap());
        assert!(!ob.packet_id_bound(FIRST_PACKET_ID).unwrap());
        // A resend keeps its id when free: row b was "sent before" with the id row a has now.
        let lb = ob.lease().unwrap().unwrap();
        assert_eq!(lb.seq, b);
        let got = ob
            .bind_free(b, FIRST_PACKET_ID + 2, false, &mut none)
            .unwrap();
        assert_eq!(got, Some(FIRST_PACKET_ID + 3), "bound to row a: not reused");
        // Its id is kept when free (a resend, DUP), wherever the counter is.
        ob.unlease(b).unwrap();
        let lb = ob.lease().unwrap().unwrap();
        assert_eq!(lb.packet_id, FIRST_PACKET_ID + 3);
        let got = ob.bind_free(b, lb.packet_id, false, &mut none).unwrap();
        assert_eq!(got, Some(FIRST_PACKET_ID + 3));
        assert_eq!(
            ob.ack_bound(FIRST_PACKET_ID + 3, AckKind::PubRec, 0)
                .unwrap(),
            Some(AckOutcome::Progress)
        );
        // The host's own ack: nothing done, nothing counted.
        assert_eq!(ob.ack_bound(9, AckKind::PubAck, 0).unwrap(), None);
        assert_eq!(ob.stats().unwrap().acks_ignored, 0);
        assert_eq!(
            ob.ack_bound(FIRST_PACKET_ID + 2, AckKind::PubAck, 0)
                .unwrap(),
            Some(AckOutcome::Done)
        );
        assert!(!ob.packet_id_bound(FIRST_PACKET_ID + 2).unwrap());
    }

    /// A PUBREL resumes on its own id: when the host has that id busy, no other is taken.
    #[test]
    fn a_released_row_keeps_its_id_or_waits() {
        let dir = tempfile::tempdir().unwrap();
        let ob = open(dir.path());
        let s = add(&ob, 2);
        ob.lease().unwrap().unwrap();
        assert_eq!(
            ob.bind_free(s, 0, false, &mut none).unwrap(),
            Some(FIRST_PACKET_ID)
        );
        ob.ack(FIRST_PACKET_ID, AckKind::PubRec, 0).unwrap();
        ob.link_down().unwrap();
        ob.link_up(0).unwrap();
        let l = ob.lease().unwrap().unwrap();
        assert!(l.released && l.packet_id == FIRST_PACKET_ID);
        assert_eq!(RowKind::of(&l), RowKind::Pubrel);
        let mut busy = |id: u16| id == FIRST_PACKET_ID;
        assert_eq!(ob.bind_free(s, l.packet_id, true, &mut busy).unwrap(), None);
        assert_eq!(
            ob.bind_free(s, l.packet_id, true, &mut none).unwrap(),
            Some(FIRST_PACKET_ID)
        );
    }

    /// The counter wraps from 65535 to 1, skipping 0; with every id taken nothing is bound
    /// and the call ends (65535 questions at most).
    #[test]
    fn the_counter_wraps_and_gives_up_when_every_id_is_taken() {
        assert_eq!((after(u16::MAX), after(1), after(0x7fff)), (1, 2, 0x8000));
        let dir = tempfile::tempdir().unwrap();
        let ob = open(dir.path());
        ob.shared.lock_open().unwrap().next_pid = u16::MAX;
        let (a, b) = (add(&ob, 1), add(&ob, 1));
        ob.lease().unwrap().unwrap();
        ob.lease().unwrap().unwrap();
        assert_eq!(
            ob.bind_free(a, 0, false, &mut none).unwrap(),
            Some(u16::MAX)
        );
        assert_eq!(ob.bind_free(b, 0, false, &mut none).unwrap(), Some(1));
        let c = add(&ob, 1);
        ob.lease().unwrap().unwrap();
        let mut asked = 0u32;
        let mut all = |_: u16| {
            asked += 1;
            true
        };
        assert_eq!(ob.bind_free(c, 0, false, &mut all).unwrap(), None);
        assert!(asked <= u16::MAX as u32, "{asked}");
        assert_eq!(ob.bind_free(c, 0, false, &mut none).unwrap(), Some(2));
    }

    /// A QoS 0 row has no packet id.
    #[test]
    fn a_qos0_row_is_its_kind_and_binds_no_id() {
        let dir = tempfile::tempdir().unwrap();
        let ob = open(dir.path());
        let s = add(&ob, 0);
        let l = ob.lease().unwrap().unwrap();
        assert_eq!((l.seq, RowKind::of(&l)), (s, RowKind::Qos0));
        assert!(ob.bind_free(s, 0, false, &mut none).is_err());
        assert!(!ob.packet_id_bound(FIRST_PACKET_ID).unwrap());
    }
}
