//! Ack after commit (issue 13): a client's PUBACK/PUBREC in the order of its PUBLISHes.
//!
//! MQTT 3.1.1 and 5, section 4.6: a server acknowledges a client's QoS 1/2 PUBLISHes in the
//! order they arrived. With acks deferred until the outboxes commit, acks become ready in any
//! order (two outboxes commit independently, a message no bridge forwards is ready at once,
//! the host's worker threads finish messages of one client out of order). The host keeps one
//! [`AckOrder`] per client connection: it [`push`](AckOrder::push)es each deferred PUBLISH as
//! it arrives (in the connection's receive path, where the order is the wire's), marks it
//! [`ready`](AckOrder::ready) when its ack may go, and sends what [`pop`](AckOrder::pop) gives:
//! the ready acks at the front, oldest first. A ready ack behind one that waits stays queued.

use std::collections::VecDeque;

/// Pending PUBLISHes of one connection at most (more than MQTT's 65535 packet ids in flight
/// cannot be: a client that overflows it gets its acks unordered, see [`AckOrder::push`]).
pub const MAX_PENDING: usize = 65535;

/// An acknowledgement that may be sent now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub packet_id: u16,
    /// 1: PUBACK, 2: PUBREC.
    pub qos: u8,
    /// MQTT 5 reason code (0 = success).
    pub reason: u8,
}

#[derive(Debug)]
struct Entry {
    packet_id: u16,
    qos: u8,
    reason: Option<u8>, // Some: ready
}

/// The deferred acks of one client connection, in arrival order. Not synchronised: the host
/// serialises the calls (one connection's lock).
#[derive(Debug, Default)]
pub struct AckOrder {
    q: VecDeque<Entry>,
}

impl AckOrder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A QoS 1/2 PUBLISH arrived and its ack is deferred. False (nothing queued) for a QoS
    /// other than 1 or 2, or when [`MAX_PENDING`] are pending: the host then acks it itself.
    pub fn push(&mut self, packet_id: u16, qos: u8) -> bool {
        if !(1..=2).contains(&qos) || self.q.len() >= MAX_PENDING {
            return false;
        }
        self.q.push_back(Entry {
            packet_id,
            qos,
            reason: None,
        });
        true
    }

    /// The ack of `packet_id` may go, with `reason`: marks the oldest not yet ready entry of
    /// that packet id. False when there is none (never pushed, or already ready).
    pub fn ready(&mut self, packet_id: u16, reason: u8) -> bool {
        match self
            .q
            .iter_mut()
            .find(|e| e.reason.is_none() && e.packet_id == packet_id)
        {
            Some(e) => {
                e.reason = Some(reason);
                true
            }
            None => false,
        }
    }

    /// The ack of `packet_id` will never be sent: the oldest not yet ready entry of that
    /// packet id leaves the queue (the acks behind it no longer wait for it). False when there
    /// is none.
    pub fn forget(&mut self, packet_id: u16) -> bool {
        match self
            .q
            .iter()
            .position(|e| e.reason.is_none() && e.packet_id == packet_id)
        {
            Some(i) => {
                self.q.remove(i);
                true
            }
            None => false,
        }
    }

    /// The oldest ack, when it is ready (then it leaves the queue).
    pub fn pop(&mut self) -> Option<Ack> {
        let reason = self.q.front()?.reason?;
        let e = self.q.pop_front()?;
        Some(Ack {
            packet_id: e.packet_id,
            qos: e.qos,
            reason,
        })
    }

    /// Acks pending (ready or not).
    pub fn len(&self) -> usize {
        self.q.len()
    }

    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(o: &mut AckOrder) -> Vec<u16> {
        std::iter::from_fn(|| o.pop())
            .map(|a| a.packet_id)
            .collect()
    }

    #[test]
    fn a_later_ready_ack_waits_for_an_earlier_one() {
        let mut o = AckOrder::new();
        for id in 1..=4 {
            assert!(o.push(id, 1));
        }
        assert!(o.ready(3, 0)); // committed by another outbox first
        assert!(o.ready(2, 0)); // forwarded by no bridge: ready at once
        assert_eq!(drain(&mut o), Vec::<u16>::new());
        assert!(o.ready(1, 0));
        assert_eq!(drain(&mut o), vec![1, 2, 3]);
        assert_eq!(o.len(), 1);
        assert!(o.ready(4, 0));
        assert_eq!(drain(&mut o), vec![4]);
        assert!(o.is_empty());
    }

    #[test]
    fn reason_and_qos_come_back_with_the_ack() {
        let mut o = AckOrder::new();
        assert!(o.push(7, 2));
        assert!(o.push(8, 1));
        assert!(o.ready(8, 0x97));
        assert!(o.ready(7, 0));
        assert_eq!(
            o.pop(),
            Some(Ack {
                packet_id: 7,
                qos: 2,
                reason: 0
            })
        );
        assert_eq!(
            o.pop(),
            Some(Ack {
                packet_id: 8,
                qos: 1,
                reason: 0x97
            })
        );
        assert_eq!(o.pop(), None);
    }

    #[test]
    fn unknown_or_twice_ready_ids_and_bad_qos_are_refused() {
        let mut o = AckOrder::new();
        assert!(!o.push(1, 0));
        assert!(!o.push(1, 3));
        assert!(!o.ready(1, 0));
        assert!(o.push(1, 1));
        assert!(o.ready(1, 0));
        assert!(!o.ready(1, 0));
    }

    #[test]
    fn a_reused_packet_id_marks_the_oldest_pending_entry() {
        let mut o = AckOrder::new();
        assert!(o.push(5, 1));
        assert!(o.push(6, 1));
        assert!(o.push(5, 1)); // id 5 again (after a DUP resend, say)
        assert!(o.ready(5, 0));
        assert!(o.ready(5, 0x80));
        assert_eq!(o.pop().map(|a| a.reason), Some(0));
        assert_eq!(o.pop(), None); // 6 waits
        assert!(o.ready(6, 0));
        assert_eq!(drain(&mut o), vec![6, 5]);
    }

    #[test]
    fn a_forgotten_ack_no_longer_holds_the_later_ones() {
        let mut o = AckOrder::new();
        for id in 1..=3 {
            assert!(o.push(id, 1));
        }
        assert!(o.ready(2, 0));
        assert!(o.forget(1));
        assert!(!o.forget(1));
        assert_eq!(drain(&mut o), vec![2]);
        assert!(o.ready(3, 0));
        assert_eq!(drain(&mut o), vec![3]);
    }

    #[test]
    fn the_queue_is_bounded() {
        let mut o = AckOrder::new();
        for i in 0..MAX_PENDING {
            assert!(o.push(i as u16, 1));
        }
        assert!(!o.push(1, 1));
        assert_eq!(o.len(), MAX_PENDING);
    }
}
