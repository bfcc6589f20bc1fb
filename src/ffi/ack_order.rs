//! C ABI of [`crate::ack_order`] (`include/nmq_outbox.h`, ACK ORDER): one queue per client
//! connection, owned by the caller, not thread-safe (the caller serialises the calls).

use super::guard::{guard, non_null};
use super::sys::*;
use crate::ack_order::AckOrder;
use crate::error::{Error, Result};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// # Safety
/// `q` must be NULL or a pointer from `nmq_outbox_ack_order_new` not yet freed, used by one
/// thread at a time.
unsafe fn queue<'a>(q: *mut nmq_outbox_ack_order) -> Result<&'a mut AckOrder> {
    (q as *mut AckOrder)
        .as_mut()
        .ok_or_else(|| Error::Invalid("NULL queue".into()))
}

/// A new, empty queue, owned by the caller (`nmq_outbox_ack_order_free`); NULL when a panic
/// (allocation) was caught. Thread-safe.
#[no_mangle]
pub extern "C" fn nmq_outbox_ack_order_new() -> *mut nmq_outbox_ack_order {
    catch_unwind(|| Box::into_raw(Box::new(AckOrder::new())) as *mut nmq_outbox_ack_order)
        .unwrap_or(std::ptr::null_mut())
}

/// Frees `q` (taken) and what is in it; NULL is a no-op. Not concurrently with another call
/// on `q`.
///
/// # Safety
/// `q` is NULL or from `nmq_outbox_ack_order_new`, freed once.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_ack_order_free(q: *mut nmq_outbox_ack_order) {
    if !q.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| drop(Box::from_raw(q as *mut AckOrder))));
    }
}

/// Queues the deferred ack of a QoS 1/2 PUBLISH. `q` borrowed; the caller serialises calls.
///
/// # Safety
/// As [`queue`].
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_ack_order_push(
    q: *mut nmq_outbox_ack_order,
    packet_id: u16,
    qos: u8,
) -> nmq_outbox_result {
    guard("nmq_outbox_ack_order_push", None, || {
        let q = queue(q)?;
        if !(1..=2).contains(&qos) {
            return Err(Error::Invalid(format!("QoS {qos}")));
        }
        if q.push(packet_id, qos) {
            Ok(NMQ_OUTBOX_OK)
        } else {
            Err(Error::Full)
        }
    })
}

/// Marks the oldest pending ack of `packet_id` ready; NOT_OURS when there is none. `q`
/// borrowed; the caller serialises calls.
///
/// # Safety
/// As [`queue`].
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_ack_order_ready(
    q: *mut nmq_outbox_ack_order,
    packet_id: u16,
    reason: u8,
) -> nmq_outbox_result {
    guard("nmq_outbox_ack_order_ready", None, || {
        Ok(if queue(q)?.ready(packet_id, reason) {
            NMQ_OUTBOX_OK
        } else {
            NMQ_OUTBOX_NOT_OURS
        })
    })
}

/// OK and `*out` (borrowed, caller-owned) = the oldest ack when it is ready; EMPTY otherwise.
/// `q` borrowed; the caller serialises calls.
///
/// # Safety
/// As [`queue`]; `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_ack_order_pop(
    q: *mut nmq_outbox_ack_order,
    out: *mut nmq_outbox_pub_ack,
) -> nmq_outbox_result {
    guard("nmq_outbox_ack_order_pop", None, || {
        non_null(out, "out")?;
        Ok(match queue(q)?.pop() {
            Some(a) => {
                *out = nmq_outbox_pub_ack {
                    packet_id: a.packet_id,
                    qos: a.qos,
                    reason: a.reason,
                };
                NMQ_OUTBOX_OK
            }
            None => NMQ_OUTBOX_EMPTY,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn through_the_c_abi() {
        unsafe {
            let q = nmq_outbox_ack_order_new();
            assert!(!q.is_null());
            let mut a = nmq_outbox_pub_ack {
                packet_id: 0,
                qos: 0,
                reason: 0,
            };
            assert_eq!(nmq_outbox_ack_order_push(q, 1, 1), NMQ_OUTBOX_OK);
            assert_eq!(nmq_outbox_ack_order_push(q, 2, 2), NMQ_OUTBOX_OK);
            assert_eq!(nmq_outbox_ack_order_push(q, 3, 0), NMQ_OUTBOX_EINVAL);
            assert_eq!(nmq_outbox_ack_order_ready(q, 2, 0x97), NMQ_OUTBOX_OK);
            assert_eq!(nmq_outbox_ack_order_ready(q, 9, 0), NMQ_OUTBOX_NOT_OURS);
            assert_eq!(nmq_outbox_ack_order_pop(q, &mut a), NMQ_OUTBOX_EMPTY);
            assert_eq!(nmq_outbox_ack_order_ready(q, 1, 0), NMQ_OUTBOX_OK);
            assert_eq!(nmq_outbox_ack_order_pop(q, &mut a), NMQ_OUTBOX_OK);
            assert_eq!((a.packet_id, a.qos, a.reason), (1, 1, 0));
            assert_eq!(nmq_outbox_ack_order_pop(q, &mut a), NMQ_OUTBOX_OK);
            assert_eq!((a.packet_id, a.qos, a.reason), (2, 2, 0x97));
            assert_eq!(nmq_outbox_ack_order_pop(q, &mut a), NMQ_OUTBOX_EMPTY);
            assert_eq!(
                nmq_outbox_ack_order_pop(q, std::ptr::null_mut()),
                NMQ_OUTBOX_EINVAL
            );
            assert_eq!(nmq_outbox_ack_order_push(q, 4, 1), NMQ_OUTBOX_OK); // freed unsent
            nmq_outbox_ack_order_free(q);
            nmq_outbox_ack_order_free(std::ptr::null_mut());
            assert_eq!(
                nmq_outbox_ack_order_push(std::ptr::null_mut(), 1, 1),
                NMQ_OUTBOX_EINVAL
            );
        }
    }
}
