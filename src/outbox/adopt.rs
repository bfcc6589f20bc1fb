//! A message the host sent directly, still open on a live connection, handed to the outbox
//! without being sent again (issue 20, "cancel timeout on a live pipe"): NanoNNG gives up
//! waiting for a direct send's ack after `cancel_timeout` and frees its lane, while the
//! connection, and the exchange on it, go on. Requeued as never answered, the message would be
//! published again; if the remote's PUBREC came meanwhile, the transport completed the first
//! exchange with PUBREL and the second PUBLISH would be a new message: a QoS 2 message
//! delivered twice. Adopted, it becomes a row in flight, bound to its packet id: its acks
//! complete it as for any replayed row, and only a link loss sends it again (with DUP).

use super::{Flight, Outbox};
use crate::error::{Error, Result};
use crate::outbox::NewMessage;

impl Outbox {
    /// Stores `msg`, sent directly with `packet_id` on the current connection and not yet
    /// answered (`released`: its PUBREC came), at the head of the queue and in flight, bound to
    /// `packet_id`: it is not handed out again while the link stays up. When the link is down
    /// or the id is bound to another row it is only requeued (as [`Outbox::requeue`]): sent
    /// again by the replay. Returns its seq and whether it was adopted. The host calls it where
    /// the replay cannot run meanwhile (NanoNNG: under the socket lock).
    pub fn adopt(
        &self,
        msg: &NewMessage<'_>,
        packet_id: u16,
        released: bool,
    ) -> Result<(i64, bool)> {
        if msg.qos == 0 || packet_id == 0 {
            return Err(Error::Invalid(
                "only a QoS 1/2 message with its packet id can be adopted in flight".into(),
            ));
        }
        let seq = self.requeue(msg, packet_id, released)?;
        Ok((seq, self.shared.take_in_flight(seq, msg, packet_id)))
    }
}

impl super::Shared {
    /// Puts row `seq`, just requeued, in flight bound to `packet_id`, unless the link is down,
    /// the id is another row's, or the replay already handed it out.
    pub(super) fn take_in_flight(&self, seq: i64, msg: &NewMessage<'_>, packet_id: u16) -> bool {
        let Ok(mut st) = self.lock_open() else {
            return false;
        };
        if !st.link_up || st.by_pid.contains_key(&packet_id) || st.inflight.contains_key(&seq) {
            return false;
        }
        st.inflight.insert(
            seq,
            Flight {
                qos: msg.qos,
                packet_id,
                bytes: msg.data.len() as u64,
                attempts: 0,
                // written before anything the outbox numbered: its ack confirms no QoS 0 row
                sent_no: 0,
            },
        );
        st.by_pid.insert(packet_id, seq);
        true
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::outbox::{AckKind, AckOutcome, NewMessage, Outbox};
    use tempfile::TempDir;

    fn q(qos: u8, data: &[u8]) -> NewMessage<'_> {
        NewMessage {
            qos,
            expiry_secs: 0,
            data,
        }
    }

    #[test]
    fn an_adopted_message_is_not_sent_again_and_its_acks_complete_it() {
        let dir = TempDir::new().unwrap();
        let ob = Outbox::open(Config::new(dir.path().join("o.db"), "b")).unwrap();
        ob.link_up(0).unwrap();
        ob.append(&q(1, b"later")).unwrap();
        let (seq, adopted) = ob.adopt(&q(2, b"direct"), 77, false).unwrap();
        assert!(adopted);
        let l = ob.lease().unwrap().unwrap();
        assert_eq!(
            l.data, b"later",
            "the adopted row is in flight, not handed out"
        );
        assert_ne!(l.seq, seq);
        assert_eq!(
            ob.ack(77, AckKind::PubRec, 0).unwrap(),
            AckOutcome::Progress
        );
        assert_eq!(ob.ack(77, AckKind::PubComp, 0).unwrap(), AckOutcome::Done);
        assert_eq!(ob.stats().unwrap().messages, 1);
    }

    #[test]
    fn an_adopted_message_goes_again_with_its_id_after_a_cut() {
        let dir = TempDir::new().unwrap();
        let ob = Outbox::open(Config::new(dir.path().join("o.db"), "b")).unwrap();
        ob.link_up(0).unwrap();
        let (seq, _) = ob.adopt(&q(2, b"direct"), 77, true).unwrap();
        assert!(ob.lease().unwrap().is_none());
        ob.link_down().unwrap();
        ob.link_up(0).unwrap();
        let l = ob.lease().unwrap().unwrap();
        assert_eq!(
            (l.seq, l.packet_id, l.dup, l.released),
            (seq, 77, true, true)
        );
    }

    #[test]
    fn with_the_link_down_or_the_id_taken_it_is_only_requeued() {
        let dir = TempDir::new().unwrap();
        let ob = Outbox::open(Config::new(dir.path().join("o.db"), "b")).unwrap();
        let (_, adopted) = ob.adopt(&q(1, b"a"), 5, false).unwrap();
        assert!(!adopted, "link down");
        ob.link_up(0).unwrap();
        let l = ob.lease().unwrap().unwrap();
        ob.bind(l.seq, 9).unwrap();
        let (_, adopted) = ob.adopt(&q(1, b"b"), 9, false).unwrap();
        assert!(!adopted, "id 9 is bound to a row in flight");
        assert!(ob.adopt(&q(0, b"c"), 0, false).is_err());
        assert!(ob.adopt(&q(1, b"c"), 0, false).is_err());
    }
}
