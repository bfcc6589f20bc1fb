//! C ABI of [`crate::gate`] (`include/nmq_outbox.h`, ACK GATE): the gate, owned by the host,
//! and the ack one PUBLISH is owed while the host handles it.

use super::guard::{guard, handle, non_null};
use super::sys::*;
use crate::error::{Error, Result};
use crate::gate::{Gate, GateAck, Pending, Refusal};
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The host's callback and its context.
struct CSend {
    f: unsafe extern "C" fn(*mut c_void, *const nmq_outbox_gate_reply, usize),
    ctx: *mut c_void,
}

// SAFETY: the header makes the host responsible for a callback and context usable from any
// thread.
unsafe impl Send for CSend {}
unsafe impl Sync for CSend {}

impl CSend {
    fn call(&self, acks: &[GateAck]) {
        if acks.is_empty() {
            return;
        }
        // SAFETY: the host gave this callback and context for exactly this use; GateAck is
        // repr(C) with the fields of nmq_outbox_gate_reply (checked in tests), and the slice
        // outlives the call.
        unsafe {
            (self.f)(
                self.ctx,
                acks.as_ptr() as *const nmq_outbox_gate_reply,
                acks.len(),
            )
        }
    }
}

/// What `nmq_outbox_gate_begin` hands out.
struct CAck {
    gate: Gate,
    pending: Pending,
}

/// # Safety
/// `g` must be NULL or from `nmq_outbox_gate_new`, not yet freed.
unsafe fn gate<'a>(g: *mut nmq_outbox_gate) -> Result<&'a Gate> {
    (g as *const Gate)
        .as_ref()
        .ok_or_else(|| Error::Invalid("NULL gate".into()))
}

/// # Safety
/// `a` must be NULL or from `nmq_outbox_gate_begin`, not yet ended, used by one thread.
unsafe fn ack<'a>(a: *mut nmq_outbox_gate_ack) -> Result<&'a mut CAck> {
    (a as *mut CAck)
        .as_mut()
        .ok_or_else(|| Error::Invalid("NULL gate ack".into()))
}

fn qos_ok(qos: u8) -> Result<()> {
    if !(1..=2).contains(&qos) {
        return Err(Error::Invalid(format!("QoS {qos}")));
    }
    Ok(())
}

/// A new gate, owned by the caller (`nmq_outbox_gate_free`). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_gate_new(
    send: nmq_outbox_gate_send_fn,
    ctx: *mut c_void,
    out: *mut *mut nmq_outbox_gate,
) -> nmq_outbox_result {
    guard("nmq_outbox_gate_new", None, || {
        non_null(out, "out")?;
        *out = std::ptr::null_mut();
        let f = send.ok_or_else(|| Error::Invalid("send is NULL".into()))?;
        let cs = CSend { f, ctx };
        let g = Gate::new(move |acks: &[GateAck]| cs.call(acks))?;
        *out = Box::into_raw(Box::new(g)) as *mut nmq_outbox_gate;
        Ok(NMQ_OUTBOX_OK)
    })
}

/// Frees the gate (taken); NULL is a no-op. The last call on `g`.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_gate_free(g: *mut nmq_outbox_gate) {
    if !g.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| drop(Box::from_raw(g as *mut Gate))));
    }
}

/// `ob`'s commits release `g`'s acks. Both borrowed. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_gate_watch(
    g: *mut nmq_outbox_gate,
    ob: *mut nmq_outbox,
) -> nmq_outbox_result {
    let h = handle(ob).ok();
    guard("nmq_outbox_gate_watch", h.map(|h| h.logger()), || {
        gate(g)?.watch(handle(ob)?)?;
        Ok(NMQ_OUTBOX_OK)
    })
}

/// The ack of a QoS 1/2 PUBLISH is owed to client `pipe`, in this order. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_gate_owe(
    g: *mut nmq_outbox_gate,
    pipe: u32,
    packet_id: u16,
    qos: u8,
) -> nmq_outbox_result {
    guard("nmq_outbox_gate_owe", None, || {
        let g = gate(g)?;
        qos_ok(qos)?;
        if g.owe(pipe, packet_id, qos) {
            Ok(NMQ_OUTBOX_OK)
        } else {
            Ok(NMQ_OUTBOX_EFULL) // not an error to log: the ack goes unordered
        }
    })
}

/// Client `pipe` is gone. NULL `g` is a no-op. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_gate_pipe_gone(g: *mut nmq_outbox_gate, pipe: u32) {
    if let Ok(g) = gate(g) {
        let _ = catch_unwind(AssertUnwindSafe(|| g.pipe_gone(pipe)));
    }
}

/// The owed ack may go now, in order. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_gate_ack_now(
    g: *mut nmq_outbox_gate,
    pipe: u32,
    packet_id: u16,
    qos: u8,
    reason: u8,
) -> nmq_outbox_result {
    guard("nmq_outbox_gate_ack_now", None, || {
        let g = gate(g)?;
        qos_ok(qos)?;
        g.ack_now(GateAck {
            pipe,
            packet_id,
            qos,
            reason,
        });
        Ok(NMQ_OUTBOX_OK)
    })
}

/// The ack a PUBLISH being handled is owed, owned by the caller until `nmq_outbox_gate_end`;
/// NULL for a NULL `g` or a bad QoS. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_gate_begin(
    g: *mut nmq_outbox_gate,
    pipe: u32,
    packet_id: u16,
    qos: u8,
    mqtt5: std::os::raw::c_int,
) -> *mut nmq_outbox_gate_ack {
    let mut out = std::ptr::null_mut();
    guard("nmq_outbox_gate_begin", None, || {
        let g = gate(g)?;
        qos_ok(qos)?;
        let a = CAck {
            gate: g.clone(),
            pending: g.begin(pipe, packet_id, qos, mqtt5 != 0),
        };
        out = Box::into_raw(Box::new(a)) as *mut nmq_outbox_gate_ack;
        Ok(NMQ_OUTBOX_OK)
    });
    out
}

/// `ob` (borrowed) appended the message as `seq`.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_gate_took(
    a: *mut nmq_outbox_gate_ack,
    ob: *mut nmq_outbox,
    seq: i64,
) -> nmq_outbox_result {
    let h = handle(ob).ok();
    guard("nmq_outbox_gate_took", h.map(|h| h.logger()), || {
        ack(a)?.pending.took(handle(ob)?, seq);
        Ok(NMQ_OUTBOX_OK)
    })
}

/// For `nmq_outbox_nng_gate_append`: an append by `ob` gave `res`; noted in `a`. `Ok(true)`:
/// the message is consumed (appended, or refused and its MQTT 5 publisher answered: logged);
/// `Ok(false)`: refused, the publisher (MQTT 3.1.1) cannot be told, the caller keeps it;
/// `Err`: `a` is NULL.
///
/// # Safety
/// As [`ack`].
#[cfg(feature = "nng")]
pub(crate) unsafe fn note_append(
    a: *mut nmq_outbox_gate_ack,
    ob: &crate::outbox::Outbox,
    res: &Result<i64>,
) -> Result<bool> {
    let a = ack(a)?;
    match res {
        Ok(seq) => {
            a.pending.took(ob, *seq);
            Ok(true)
        }
        Err(e) => match a.pending.refused(e) {
            Refusal::Answered(r) => {
                ob.logger().warn(&format!(
                    "bridge {:?}: outbox refused a message ({e}): publisher acked with reason \
                     0x{r:02x}, not forwarded",
                    ob.bridge()
                ));
                Ok(true)
            }
            Refusal::HostPath => Ok(false),
        },
    }
}

/// The error a refused append gave, as the library's error (for the gate's rule).
pub(crate) fn error_of(why: nmq_outbox_result) -> Result<Error> {
    let e = match why {
        NMQ_OUTBOX_EFULL => Error::Full,
        NMQ_OUTBOX_ENOSPC => Error::NoSpace,
        NMQ_OUTBOX_ETOOBIG => Error::TooBig { len: 0, max: 0 },
        NMQ_OUTBOX_ECLOSED => Error::Closed,
        r if r < 0 => Error::Io(format!("result {r}")),
        r => return Err(Error::Invalid(format!("result {r} is not a refusal"))),
    };
    Ok(e)
}

/// An outbox refused the message with `why`: OK (MQTT 5: answered), or `why` back (the host's
/// path).
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_gate_refused(
    a: *mut nmq_outbox_gate_ack,
    why: nmq_outbox_result,
) -> nmq_outbox_result {
    guard("nmq_outbox_gate_refused", None, || {
        let a = ack(a)?;
        let e = error_of(why)?;
        Ok(match a.pending.refused(&e) {
            Refusal::Answered(_) => NMQ_OUTBOX_OK,
            Refusal::HostPath => why,
        })
    })
}

/// Done with the PUBLISH (takes `a`; NULL is a no-op): commits, then the ack goes now or later.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_gate_end(a: *mut nmq_outbox_gate_ack) {
    if a.is_null() {
        return;
    }
    // SAFETY: `a` came from `Box::into_raw` in `nmq_outbox_gate_begin`, ended once.
    let a = Box::from_raw(a as *mut CAck);
    let _ = guard("nmq_outbox_gate_end", None, move || {
        let CAck { gate, pending } = *a;
        gate.end(pending);
        Ok(NMQ_OUTBOX_OK)
    });
}

#[cfg(test)]
mod layout {
    use super::*;
    use std::mem::{align_of, offset_of, size_of};

    /// The callback is handed GateAck's slice as nmq_outbox_gate_reply's array.
    #[test]
    fn gate_ack_is_the_c_reply_field_for_field() {
        assert_eq!(size_of::<GateAck>(), size_of::<nmq_outbox_gate_reply>());
        assert_eq!(align_of::<GateAck>(), align_of::<nmq_outbox_gate_reply>());
        macro_rules! same_offset {
            ($($f:ident),*) => {$(
                assert_eq!(
                    offset_of!(GateAck, $f),
                    offset_of!(nmq_outbox_gate_reply, $f),
                    stringify!($f)
                );
            )*};
        }
        same_offset!(pipe, packet_id, qos, reason);
    }
}
