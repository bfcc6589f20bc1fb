//! The ack-after-commit gate (issue 13, issue 21 item 1): a local publisher's PUBACK/PUBREC
//! goes once every outbox that took its message has committed it, in the order of that
//! client's PUBLISHes (MQTT 4.6), through one host callback.
//!
//! The host calls, per QoS 1/2 PUBLISH of a local client:
//! 1. [`Gate::owe`] when it arrives, in the connection's receive path (the wire's order);
//! 2. [`Gate::begin`] when it handles it, then [`Pending::took`] for every outbox that
//!    appended it (with the seq it got), or [`Pending::refused`] for one that refused it;
//! 3. [`Gate::end`]: the ack goes now (no outbox took it, one refused it, or all have
//!    committed it) or once the outboxes' commits reach its seqs ([`Gate::watch`] sets their
//!    commit hook: the commit that writes it releases it). Outboxes with `caller_commits` are
//!    committed by `end` on its own thread first.
//!
//! Acks are sent by the host's callback, a batch of ready acks per call, never with a lock of
//! the gate (or of an outbox) held, and one batch at a time: one thread sends what is ready,
//! in order, while the others only queue (each ack is sent exactly once, in per-client order).
//! What an outbox's writer thread releases is sent by the gate's own thread
//! (`nmq-outbox-acks`), so that the writer goes on committing while the acks go out (issue 21
//! item 4: sending them itself, a socket write each, doubled the writer's time per commit, and
//! the publishers, waiting for those acks, sent less). Elsewhere the releasing thread sends.
//!
//! Rules:
//! * an ack is never sent before every outbox that took the message committed it;
//! * a refusal answers an MQTT 5 publisher with the refusal's reason code
//!   (`nmq_outbox_mqtt_reason`: 0x97, 0x80) and its message is not forwarded; an MQTT 3.1.1 publisher
//!   cannot be told: [`Pending::refused`] says so and the host takes its own (stock) path;
//! * a failed commit leaves the ack waiting: the writer retries, and the commit that succeeds
//!   releases it;
//! * an outbox closed before it committed the seq (its final commit failed: the message is
//!   lost and counted in `dropped_unwritten`) answers an MQTT 5 publisher with 0x80
//!   (unspecified error) and sends an MQTT 3.1.1 publisher nothing (it resends the message
//!   after a reconnect); a closed outbox that committed the seq releases the ack as usual;
//! * a client gone ([`Gate::pipe_gone`]) forgets what it was owed; its acks that become ready
//!   later are still handed to the callback, which finds the client gone.

use crate::ack_order::AckOrder;
use crate::error::Error;
use crate::outbox::{Committer, Outbox};
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;

/// An acknowledgement to send: PUBACK (`qos` 1) or PUBREC (`qos` 2) to client `pipe`.
/// The C struct `nmq_outbox_gate_reply`, field for field.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateAck {
    pub pipe: u32,
    pub packet_id: u16,
    pub qos: u8,
    /// MQTT 5 reason code (0: success).
    pub reason: u8,
}

/// The host's sender of acks: ready acks, in the order they are to be sent.
pub type SendFn = Box<dyn Fn(&[GateAck]) + Send + Sync>;

/// Reason code of an ack whose outbox closed without committing the message.
pub const REASON_CLOSED: u8 = 0x80;

/// An ack waiting for commits.
struct Waiting {
    ack: GateAck,
    mqtt5: bool,
    waits: Vec<(Committer, i64)>,
}

enum Verdict {
    Wait,
    Send(u8),
    Drop,
}

impl Waiting {
    /// Whether every outbox committed its seq (or what its close decided). `seen` is what the
    /// commit hooks told (key -> committed seq, closed).
    fn verdict(&self, seen: &HashMap<usize, (i64, bool)>) -> Verdict {
        for (c, seq) in &self.waits {
            let (done, closed) = seen.get(&c.key()).copied().unwrap_or((i64::MIN, false));
            if done >= *seq {
                continue;
            }
            if !closed {
                return Verdict::Wait;
            }
            return if self.mqtt5 {
                Verdict::Send(REASON_CLOSED)
            } else {
                Verdict::Drop
            };
        }
        Verdict::Send(self.ack.reason)
    }
}

#[derive(Default)]
struct St {
    /// Each client's owed acks, in the order of its PUBLISHes.
    pipes: HashMap<u32, AckOrder>,
    /// Acks waiting for commits, oldest first.
    waiting: Vec<Waiting>,
    /// Per watched outbox: committed seq and closed, as the hooks and `end` saw them.
    seen: HashMap<usize, (i64, bool)>,
    /// Ready acks, in the order they are to be sent.
    out: Vec<GateAck>,
    /// A thread is sending `out`: the others only queue.
    sending: bool,
    /// `sending` is the gate's thread's, told to send `out`.
    handed: bool,
    /// The gate is gone: its thread ends.
    stop: bool,
    /// Acks dropped by the closed-outbox rule (3.1.1 publishers), and acks sent.
    dropped: u64,
    sent: u64,
}

struct Inner {
    send: SendFn,
    st: Mutex<St>,
    /// Wakes the gate's thread (`handed`, `stop`).
    wake: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    /// The ack may go now, in its client's order: everything of that client that is ready
    /// at the front moves to `out`. An ack its client was not owed (never `owe`d, or the
    /// client is gone) goes as it is.
    fn ready(st: &mut St, ack: GateAck) {
        let St { pipes, out, .. } = st;
        let Some(q) = pipes.get_mut(&ack.pipe).filter(|q| !q.is_empty()) else {
            return out.push(ack);
        };
        if !q.ready(ack.packet_id, ack.reason) {
            return out.push(ack);
        }
        while let Some(a) = q.pop() {
            out.push(GateAck {
                pipe: ack.pipe,
                packet_id: a.packet_id,
                qos: a.qos,
                reason: a.reason,
            });
        }
    }

    /// Moves every waiting ack whose commits are done to its client's order.
    fn release(st: &mut St) {
        if st.waiting.is_empty() {
            return;
        }
        let waiting = std::mem::take(&mut st.waiting);
        for w in waiting {
            match w.verdict(&st.seen) {
                Verdict::Wait => st.waiting.push(w),
                Verdict::Send(reason) => Self::ready(st, GateAck { reason, ..w.ack }),
                Verdict::Drop => {
                    st.dropped = st.dropped.saturating_add(1);
                    // never sent: the acks behind it in its client's order go on
                    if let Some(q) = st.pipes.get_mut(&w.ack.pipe) {
                        q.forget(w.ack.packet_id);
                        while let Some(a) = q.pop() {
                            st.out.push(GateAck {
                                pipe: w.ack.pipe,
                                packet_id: a.packet_id,
                                qos: a.qos,
                                reason: a.reason,
                            });
                        }
                    }
                }
            }
        }
    }

    /// Sends what is ready, unless another thread is sending (it sends ours too): on this
    /// thread, or (`hand_off`) by the gate's thread. The loop sends only what became ready
    /// while it sent: it ends once a round finds nothing.
    fn deliver<'a>(&'a self, mut st: MutexGuard<'a, St>, hand_off: bool) {
        if st.sending || st.out.is_empty() {
            return;
        }
        st.sending = true;
        if hand_off {
            st.handed = true;
            drop(st);
            self.wake.notify_one();
            return;
        }
        loop {
            st = match self.send_out(st) {
                Some(st) => st,
                None => return,
            };
        }
    }

    /// One round of the sender (`sending` is this thread's): what is in `out` goes. None when
    /// `out` was empty (`sending` and `handed` are then cleared).
    fn send_out<'a>(&'a self, mut st: MutexGuard<'a, St>) -> Option<MutexGuard<'a, St>> {
        let batch = std::mem::take(&mut st.out);
        if batch.is_empty() {
            st.sending = false;
            st.handed = false;
            return None;
        }
        st.sent = st.sent.saturating_add(batch.len() as u64);
        drop(st);
        // a panicking callback loses that batch only (the clients resend after a reconnect);
        // the next ones still go
        let _ = catch_unwind(AssertUnwindSafe(|| (self.send)(&batch)));
        Some(lock(&self.st))
    }

    /// The gate's thread: sends what a writer thread's commit released (`handed`), until the
    /// gate is gone.
    fn ack_thread(&self) {
        let mut st = lock(&self.st);
        loop {
            if st.stop {
                return;
            }
            if !st.handed {
                st = self.wake.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            st = self.send_out(st).unwrap_or_else(|| lock(&self.st));
        }
    }

    /// A watched outbox committed up to `seq` (or closed).
    fn committed(&self, key: usize, seq: i64, closed: bool) {
        let mut st = lock(&self.st);
        let e = st.seen.entry(key).or_insert((i64::MIN, false));
        e.0 = e.0.max(seq);
        e.1 |= closed;
        Self::release(&mut st);
        self.deliver(st, crate::outbox::on_writer_thread());
    }
}

/// The gate: one per host (it keeps every client's ack order), shared by every thread.
#[derive(Clone)]
pub struct Gate {
    inner: Arc<Inner>,
    _thread: Arc<AckThread>,
}

thread_local! {
    /// On a gate's thread: that gate (`Arc::as_ptr` of its `Inner`), else 0.
    static ACK_THREAD_OF: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The gate's thread, stopped (and joined) when the last clone of the gate is dropped.
struct AckThread {
    inner: Arc<Inner>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for AckThread {
    fn drop(&mut self) {
        lock(&self.inner.st).stop = true;
        self.inner.wake.notify_all();
        // joined: the host may free the callback's context once the gate is freed (not from
        // the callback itself, which must not free the gate anyway)
        let me = Arc::as_ptr(&self.inner) as usize;
        if ACK_THREAD_OF.with(|t| t.get()) != me {
            if let Some(h) = lock(&self.handle).take() {
                let _ = h.join();
            }
        }
    }
}

/// The ack one PUBLISH is owed while the host handles it ([`Gate::begin`] .. [`Gate::end`]).
pub struct Pending {
    ack: GateAck,
    mqtt5: bool,
    waits: Vec<(Committer, i64)>,
}

/// What [`Pending::refused`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The publisher (MQTT 5) gets this reason code: the message is not forwarded.
    Answered(u8),
    /// The publisher (MQTT 3.1.1) cannot be told: the host takes its own path.
    HostPath,
}

impl Gate {
    /// A gate whose acks go to `send`, with its thread. Err when the thread cannot be made.
    pub fn new(send: impl Fn(&[GateAck]) + Send + Sync + 'static) -> crate::Result<Self> {
        let inner = Arc::new(Inner {
            send: Box::new(send),
            st: Mutex::new(St::default()),
            wake: Condvar::new(),
        });
        let worker = inner.clone();
        let handle = std::thread::Builder::new()
            .name("nmq-outbox-acks".into())
            .spawn(move || {
                ACK_THREAD_OF.with(|t| t.set(Arc::as_ptr(&worker) as usize));
                worker.ack_thread()
            })
            .map_err(|e| Error::Io(format!("cannot start the gate's thread: {e}")))?;
        let thread = Arc::new(AckThread {
            inner: inner.clone(),
            handle: Mutex::new(Some(handle)),
        });
        Ok(Gate {
            inner,
            _thread: thread,
        })
    }

    fn id(&self) -> usize {
        Arc::as_ptr(&self.inner) as usize
    }

    /// The outbox's commits release this gate's acks (its commit hook). Idempotent; `Busy`
    /// when another gate watches it, `Closed` after its close.
    pub fn watch(&self, ob: &Outbox) -> crate::Result<()> {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let key = ob.committer().key();
        let set = ob.watch(
            self.id(),
            Box::new(move |seq, closed| {
                if let Some(g) = weak.upgrade() {
                    g.committed(key, seq, closed);
                }
            }),
        )?;
        if set {
            let (seq, closed) = ob.committer().committed();
            self.inner.committed(key, seq, closed);
        }
        Ok(())
    }

    /// A QoS 1/2 PUBLISH `packet_id` of client `pipe` arrived; its ack is owed, in this order.
    /// False (nothing noted) for another QoS or when the client has 65535 owed: its ack then
    /// goes when it is ready, unordered.
    pub fn owe(&self, pipe: u32, packet_id: u16, qos: u8) -> bool {
        lock(&self.inner.st)
            .pipes
            .entry(pipe)
            .or_default()
            .push(packet_id, qos)
    }

    /// The client is gone: what it was owed is forgotten.
    pub fn pipe_gone(&self, pipe: u32) {
        lock(&self.inner.st).pipes.remove(&pipe);
    }

    /// The PUBLISH is being handled: the ack it is owed, until [`Gate::end`]. `mqtt5`: the
    /// publisher speaks MQTT 5 (a refusal can be answered with a reason code).
    pub fn begin(&self, pipe: u32, packet_id: u16, qos: u8, mqtt5: bool) -> Pending {
        Pending {
            ack: GateAck {
                pipe,
                packet_id,
                qos,
                reason: 0,
            },
            mqtt5,
            waits: Vec::new(),
        }
    }

    /// The ack of a PUBLISH owed by `owe` may go now (one the host will not handle), in order.
    pub fn ack_now(&self, ack: GateAck) {
        let mut st = lock(&self.inner.st);
        Inner::ready(&mut st, ack);
        self.inner.deliver(st, false);
    }

    /// Handled: commits the outboxes that took the message and have `caller_commits` (on this
    /// thread), then the ack goes now or waits for their commits (see the module's rules).
    pub fn end(&self, p: Pending) {
        if p.waits.is_empty() || p.ack.reason != 0 {
            return self.ack_now(p.ack);
        }
        let mut seen = Vec::with_capacity(p.waits.len());
        for (c, _) in &p.waits {
            // Ok(true): committed; Ok(false): the writer commits it after its checkpoint;
            // an error: kept, the writer retries (logged by the outbox). The hook tells.
            // An outbox without caller_commits: its writer commits (a group commit on its
            // thread), and its hook releases the ack.
            if c.caller_commits() {
                let _ = c.commit();
            }
            seen.push((c.key(), c.committed()));
        }
        let mut st = lock(&self.inner.st);
        for (key, (seq, closed)) in seen {
            let e = st.seen.entry(key).or_insert((i64::MIN, false));
            e.0 = e.0.max(seq);
            e.1 |= closed;
        }
        let w = Waiting {
            ack: p.ack,
            mqtt5: p.mqtt5,
            waits: p.waits,
        };
        match w.verdict(&st.seen) {
            Verdict::Send(reason) => Inner::ready(&mut st, GateAck { reason, ..w.ack }),
            Verdict::Wait => st.waiting.push(w),
            Verdict::Drop => {
                st.waiting.push(w);
                Inner::release(&mut st);
            }
        }
        self.inner.deliver(st, false);
    }

    /// Acks waiting for commits, and clients with owed acks.
    pub fn waiting(&self) -> (usize, usize) {
        let st = lock(&self.inner.st);
        (st.waiting.len(), st.pipes.len())
    }

    /// Acks handed to the callback, and acks never sent (closed-outbox rule, MQTT 3.1.1).
    pub fn counts(&self) -> (u64, u64) {
        let st = lock(&self.inner.st);
        (st.sent, st.dropped)
    }
}

impl Pending {
    /// `ob` appended the message as `seq`.
    pub fn took(&mut self, ob: &Outbox, seq: i64) {
        let c = ob.committer();
        match self.waits.iter_mut().find(|(w, _)| w.key() == c.key()) {
            Some(w) => w.1 = w.1.max(seq),
            None => self.waits.push((c, seq)),
        }
    }

    /// An outbox refused the message with `e`.
    pub fn refused(&mut self, e: &Error) -> Refusal {
        if self.mqtt5 {
            let r = crate::ffi::nmq_outbox_mqtt_reason(crate::ffi::code(e));
            if self.ack.reason == 0 {
                self.ack.reason = r;
            }
            Refusal::Answered(self.ack.reason)
        } else {
            Refusal::HostPath
        }
    }

    /// The packet id, for log lines.
    pub fn packet_id(&self) -> u16 {
        self.ack.packet_id
    }
}

#[cfg(test)]
#[path = "gate_tests.rs"]
mod tests;
