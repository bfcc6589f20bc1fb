//! QOS 0 (issue 20): a QoS 0 row has no ack, so a row written into a connection that died
//! silently would be lost if it were deleted once written. A written QoS 0 row stays in flight
//! until the remote is known to have read past it: an ack of a packet the outbox sent after it
//! on the same connection, or the PINGRESP to a PINGREQ written after it. The connection's
//! writes are numbered (`State::send_no`); each PINGREQ the host writes records the number
//! reached (`ping_marks`), and PINGRESPs, which answer PINGREQs in order, confirm up to theirs.
//! A link that goes down first takes the unconfirmed rows back to the head of the queue with
//! the rest in flight: they go again (a possible duplicate, never a loss).
//!
//! The replay kick lives here too: whether a row stored while the link is up needs the host to
//! run its replay now, because nothing in flight will bring the ack or PINGRESP that would.

use super::{Outbox, State};
use crate::error::Result;

/// PINGREQs recorded without their PINGRESP beyond which the outbox stops tracking them (a
/// remote that answers none is closed by the keepalive long before): from then on until the
/// link goes down only acks confirm QoS 0 rows.
const PING_MARKS_MAX: usize = 64;

impl State {
    /// Numbers a write on this connection.
    pub(super) fn next_send_no(&mut self) -> u64 {
        self.send_no = self.send_no.saturating_add(1);
        self.send_no
    }

    /// The remote read every write up to `upto`: the QoS 0 rows among them are done. Returns
    /// how many.
    pub(super) fn confirm_qos0(&mut self, upto: u64) -> u64 {
        let done: Vec<i64> = self
            .inflight
            .iter()
            .filter(|(_, f)| f.qos == 0 && f.sent_no != 0 && f.sent_no <= upto)
            .map(|(&seq, _)| seq)
            .collect();
        for &seq in &done {
            self.finish(seq);
            self.acked = self.acked.saturating_add(1);
        }
        done.len() as u64
    }

    /// A written QoS 0 row awaits a confirmation.
    fn qos0_unconfirmed(&self) -> bool {
        self.inflight.values().any(|f| f.qos == 0 && f.sent_no != 0)
    }

    fn ping_due(&self) -> bool {
        self.link_up
            && self.ping_marks.is_empty()
            && !self.ping_lost_track
            && self.qos0_unconfirmed()
    }

    /// The connection is gone: its PINGREQs will not be answered.
    pub(super) fn forget_pings(&mut self) {
        self.ping_marks.clear();
        self.ping_lost_track = false;
    }

    /// Nothing in flight will bring an ack or a PINGRESP that runs the replay: no QoS 1/2 row
    /// is in flight, and no tracked PINGREQ covers the written QoS 0 rows.
    fn replay_stalled(&self) -> bool {
        if self.inflight.values().any(|f| f.qos > 0) {
            return false;
        }
        let awaits_pong =
            !self.ping_marks.is_empty() && !self.ping_lost_track && self.qos0_unconfirmed();
        !awaits_pong
    }
}

impl Outbox {
    /// The host should write a PINGREQ now (then [`Outbox::ping_sent`]): written QoS 0 rows
    /// await a confirmation and no PINGREQ is outstanding.
    pub fn ping_due(&self) -> Result<bool> {
        Ok(self.shared.lock_open()?.ping_due())
    }

    /// The host wrote a PINGREQ on the connection (its own keepalive's too).
    pub fn ping_sent(&self) -> Result<()> {
        let mut st = self.shared.lock_open()?;
        if !st.link_up {
            return Ok(());
        }
        if st.ping_marks.len() >= PING_MARKS_MAX {
            st.ping_marks.clear();
            st.ping_lost_track = true;
        } else if !st.ping_lost_track {
            let mark = st.send_no;
            st.ping_marks.push_back(mark);
        }
        Ok(())
    }

    /// A PINGRESP arrived: the QoS 0 rows written before its PINGREQ are done (deleted).
    /// Returns how many.
    pub fn pong(&self) -> Result<u64> {
        let sh = &self.shared;
        let mut st = sh.lock_open()?;
        let Some(mark) = st.ping_marks.pop_front() else {
            return Ok(0);
        };
        let n = st.confirm_qos0(mark);
        let wake = n > 0 && st.writer_due(&sh.cfg);
        drop(st);
        if wake {
            sh.wake.notify_one();
        }
        Ok(n)
    }

    /// The host should run its replay now: the link is up, rows wait beyond those in flight,
    /// no back-off holds them, and nothing in flight will bring an ack or a PINGRESP that runs
    /// it. Asked after a message was stored while the link is up.
    pub fn replay_due(&self) -> Result<bool> {
        let st = self.shared.lock_open()?;
        Ok(st.link_up
            && !st.backing_off()
            && st.messages > st.inflight.len() as u64
            && st.replay_stalled())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::outbox::{AckKind, AckOutcome, Decision, NewMessage, Outbox};
    use tempfile::TempDir;

    fn open(dir: &TempDir, store_qos0: bool) -> Outbox {
        let mut cfg = Config::new(dir.path().join("ob.db"), "b");
        cfg.store_qos0 = store_qos0;
        Outbox::open(cfg).unwrap()
    }

    fn msg(qos: u8, data: &[u8]) -> NewMessage<'_> {
        NewMessage {
            qos,
            expiry_secs: 0,
            data,
        }
    }

    /// Leases every row the window allows: QoS 0 rows are `sent`, the others bound to
    /// packet ids from `pid` on. Returns the seqs in order.
    fn send_all(ob: &Outbox, pid: &mut u16) -> Vec<i64> {
        let mut out = Vec::new();
        while let Some(l) = ob.lease().unwrap() {
            if l.qos == 0 {
                ob.sent(l.seq).unwrap();
            } else {
                ob.bind(l.seq, *pid).unwrap();
                *pid += 1;
            }
            out.push(l.seq);
        }
        out
    }

    #[test]
    fn a_written_qos0_row_stays_until_a_pingresp_to_a_later_pingreq() {
        let dir = TempDir::new().unwrap();
        let ob = open(&dir, true);
        ob.link_up(0).unwrap();
        ob.append(&msg(0, b"a")).unwrap();
        let mut pid = 1;
        assert_eq!(send_all(&ob, &mut pid).len(), 1);
        let s = ob.stats().unwrap();
        assert_eq!((s.messages, s.inflight, s.acked), (1, 1, 0));
        assert!(ob.ping_due().unwrap());
        ob.ping_sent().unwrap();
        assert!(!ob.ping_due().unwrap(), "one PINGREQ outstanding at a time");
        assert_eq!(ob.pong().unwrap(), 1);
        let s = ob.stats().unwrap();
        assert_eq!((s.messages, s.inflight, s.acked), (0, 0, 1));
        assert!(!ob.ping_due().unwrap());
    }

    #[test]
    fn a_pingresp_confirms_only_what_was_written_before_its_pingreq() {
        let dir = TempDir::new().unwrap();
        let ob = open(&dir, true);
        ob.link_up(0).unwrap();
        ob.append(&msg(0, b"a")).unwrap();
        let mut pid = 1;
        send_all(&ob, &mut pid);
        // the keepalive's PINGREQ, then a second row written after it
        ob.ping_sent().unwrap();
        ob.append(&msg(0, b"b")).unwrap();
        send_all(&ob, &mut pid);
        assert!(!ob.ping_due().unwrap());
        assert_eq!(ob.pong().unwrap(), 1, "only the row before the PINGREQ");
        assert_eq!(ob.stats().unwrap().messages, 1);
        assert!(
            ob.ping_due().unwrap(),
            "the second one needs a PINGREQ of its own"
        );
        ob.ping_sent().unwrap();
        assert_eq!(ob.pong().unwrap(), 1);
        assert_eq!(ob.stats().unwrap().messages, 0);
        assert_eq!(
            ob.pong().unwrap(),
            0,
            "a PINGRESP with no PINGREQ confirms nothing"
        );
    }

    #[test]
    fn an_ack_of_a_later_packet_confirms_the_qos0_rows_written_before_it() {
        let dir = TempDir::new().unwrap();
        let ob = open(&dir, true);
        ob.link_up(0).unwrap();
        ob.append(&msg(0, b"a")).unwrap();
        ob.append(&msg(1, b"b")).unwrap();
        ob.append(&msg(0, b"c")).unwrap();
        let mut pid = 1;
        assert_eq!(send_all(&ob, &mut pid).len(), 3);
        assert_eq!(
            ob.ack(1, AckKind::PubAck, 0).unwrap(),
            AckOutcome::Done,
            "the QoS 1 row"
        );
        let s = ob.stats().unwrap();
        assert_eq!(s.messages, 1, "a (before b) confirmed, c (after b) not");
        assert_eq!(s.acked, 2);
        assert!(ob.ping_due().unwrap());
    }

    #[test]
    fn unconfirmed_qos0_rows_go_again_after_a_cut_in_their_order() {
        let dir = TempDir::new().unwrap();
        let ob = open(&dir, true);
        ob.link_up(0).unwrap();
        for d in [b"a", b"b"] {
            ob.append(&msg(0, d)).unwrap();
        }
        let mut pid = 1;
        let first = send_all(&ob, &mut pid);
        ob.ping_sent().unwrap();
        ob.link_down().unwrap();
        assert_eq!(
            ob.pong().unwrap(),
            0,
            "the PINGREQ died with the connection"
        );
        ob.link_up(0).unwrap();
        assert_eq!(send_all(&ob, &mut pid), first);
        assert_eq!(ob.stats().unwrap().messages, 2);
    }

    #[test]
    fn unconfirmed_qos0_rows_fill_the_window() {
        let dir = TempDir::new().unwrap();
        let mut cfg = Config::new(dir.path().join("ob.db"), "b");
        cfg.window = 2;
        let ob = Outbox::open(cfg).unwrap();
        ob.link_up(0).unwrap();
        for d in [b"a", b"b", b"c"] {
            ob.append(&msg(0, d)).unwrap();
        }
        let mut pid = 1;
        assert_eq!(send_all(&ob, &mut pid).len(), 2);
        ob.ping_sent().unwrap();
        ob.pong().unwrap();
        assert_eq!(send_all(&ob, &mut pid).len(), 1);
    }

    #[test]
    fn untracked_pingreqs_stop_pong_confirmations_until_the_link_goes_down() {
        let dir = TempDir::new().unwrap();
        let ob = open(&dir, true);
        ob.link_up(0).unwrap();
        for _ in 0..super::PING_MARKS_MAX + 1 {
            ob.ping_sent().unwrap();
        }
        ob.append(&msg(0, b"a")).unwrap();
        let mut pid = 1;
        send_all(&ob, &mut pid);
        ob.ping_sent().unwrap();
        assert_eq!(ob.pong().unwrap(), 0, "which PINGREQ it answers is unknown");
        assert!(!ob.ping_due().unwrap());
        ob.link_down().unwrap();
        ob.link_up(0).unwrap();
        send_all(&ob, &mut pid);
        assert!(ob.ping_due().unwrap(), "a new connection tracks again");
        ob.ping_sent().unwrap();
        assert_eq!(ob.pong().unwrap(), 1);
    }

    #[test]
    fn store_qos0_never_sends_qos0_directly() {
        let dir = TempDir::new().unwrap();
        let ob = open(&dir, true);
        ob.link_up(0).unwrap();
        assert_eq!(ob.decide(0).unwrap(), Decision::Store);
        assert_eq!(ob.decide_publish(0, false, 10).unwrap(), Decision::Store);
        assert_eq!(ob.decide(1).unwrap(), Decision::SendNow);
        let dir2 = TempDir::new().unwrap();
        let ob2 = open(&dir2, false);
        ob2.link_up(0).unwrap();
        assert_eq!(ob2.decide(0).unwrap(), Decision::SendNow);
    }

    #[test]
    fn a_row_stored_on_an_idle_link_asks_for_a_replay_and_not_behind_an_ack() {
        let dir = TempDir::new().unwrap();
        let ob = open(&dir, true);
        assert!(!ob.replay_due().unwrap(), "link down");
        ob.link_up(0).unwrap();
        assert!(!ob.replay_due().unwrap(), "nothing waits");
        ob.append(&msg(1, b"a")).unwrap();
        assert!(
            ob.replay_due().unwrap(),
            "idle link: nothing would run the replay"
        );
        let mut pid = 1;
        send_all(&ob, &mut pid);
        ob.append(&msg(1, b"b")).unwrap();
        let l = ob.lease().unwrap().unwrap();
        ob.unlease(l.seq).unwrap();
        assert!(
            !ob.replay_due().unwrap(),
            "the ack of a will run the replay"
        );
        ob.ack(1, AckKind::PubAck, 0).unwrap();
        assert!(ob.replay_due().unwrap());
        send_all(&ob, &mut pid);
        // a QoS 0 row written: its PINGRESP runs the replay once a PINGREQ is out
        ob.ack(2, AckKind::PubAck, 0).unwrap();
        ob.append(&msg(0, b"c")).unwrap();
        send_all(&ob, &mut pid);
        ob.append(&msg(0, b"d")).unwrap();
        assert!(
            ob.replay_due().unwrap(),
            "no PINGREQ out: the replay must ask for one"
        );
        ob.ping_sent().unwrap();
        assert!(!ob.replay_due().unwrap(), "the PINGRESP will run it");
        ob.pong().unwrap();
        assert!(ob.replay_due().unwrap());
    }

    /// The host asks whether the link is up for every QoS 0 forward (retry_qos_0 false): the
    /// answer must not wait for a commit, which holds the store for a whole transaction
    /// (`stats` reads the store and did wait: NanoMQ's publish path behind the writer).
    #[test]
    fn link_is_up_answers_while_a_commit_holds_the_store() {
        let dir = TempDir::new().unwrap();
        let ob = std::sync::Arc::new(open(&dir, false));
        assert!(!ob.link_is_up().unwrap());
        ob.link_up(0).unwrap();
        let store = crate::outbox::lock(&ob.shared.db); // as a commit holds it
        let (tx, rx) = std::sync::mpsc::channel();
        let ob2 = ob.clone();
        let t = std::thread::spawn(move || tx.send(ob2.link_is_up().unwrap()).unwrap());
        let up = rx.recv_timeout(std::time::Duration::from_secs(30));
        drop(store);
        t.join().unwrap();
        assert_eq!(up, Ok(true), "link_is_up waited for the store");
        ob.link_down().unwrap();
        assert!(!ob.link_is_up().unwrap());
        ob.close().unwrap();
        assert!(ob.link_is_up().is_err(), "closed");
    }
}
