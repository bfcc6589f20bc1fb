//! The nng-facing entry points of `include/nmq_outbox_nng.h` (hooks B2, N1, N2/N3, N4), over
//! bindgen's declarations of nng's public API. Built with the `nng` feature; the nng symbols
//! come from the host at link time (NanoNNG's libnng in NanoMQ, Debian's libnng in c_tests).
//!
//! Ownership follows nng: OK consumes the message, an error leaves it with the caller.
#![allow(clippy::missing_safety_doc)]

// The safety contract of every export (valid or NULL pointers, who owns what, which calls may
// run concurrently) is stated once, in the OWNERSHIP and THREADS sections of the header.

use crate::error::{Error, Result};
use crate::mqtt::{parse_publish, split_packet};
use crate::outbox::{Decision, Outbox};

/// bindgen's declarations of the nng subset we use, and of `include/nmq_outbox_nng.h`.
#[allow(
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    dead_code
)]
#[allow(clippy::all)]
pub mod sys {
    include!(concat!(env!("OUT_DIR"), "/nng_bindings.rs"));
}

use sys::{nng_aio, nng_msg};

/// The encoded PUBLISH in `msg`, as (fixed header, rest).
///
/// # Safety
/// `msg` must be a valid nng message that outlives the returned slices.
unsafe fn msg_parts<'a>(msg: *mut nng_msg) -> (&'a [u8], &'a [u8]) {
    let slice = |p: *mut std::os::raw::c_void, n: usize| {
        if p.is_null() || n == 0 {
            &[][..]
        } else {
            std::slice::from_raw_parts(p as *const u8, n)
        }
    };
    (
        slice(sys::nng_msg_header(msg), sys::nng_msg_header_len(msg)),
        slice(sys::nng_msg_body(msg), sys::nng_msg_len(msg)),
    )
}

/// Parses `msg` and stores a copy (at the tail, or at the head for `front`). Does not free it.
///
/// # Safety
/// `msg` must be a valid nng message.
unsafe fn store_copy(ob: &Outbox, msg: *mut nng_msg, proto_ver: u8, front: bool) -> Result<u8> {
    let (h, b) = msg_parts(msg);
    let info = parse_publish(h, b, proto_ver)?;
    // The stored bytes are the header and body joined: one copy, handed over as it is.
    let mut data = Vec::with_capacity(h.len() + b.len());
    data.extend_from_slice(h);
    data.extend_from_slice(b);
    let front = front.then_some(info.packet_id);
    ob.insert_owned(info.qos, info.expiry_secs, data, front.map(|p| (p, false)))?;
    Ok(info.qos)
}

/// B2. Returns what was done: SendNow puts `msg` on `lane` for the caller to send; Store
/// consumes it. On error `msg` is untouched.
///
/// # Safety
/// `lane` and `msg` must be valid nng objects; `lane` must not be in use when `lane_busy` is 0.
pub unsafe fn publish(
    ob: &Outbox,
    lane: *mut nng_aio,
    lane_busy: bool,
    timeout_ms: sys::nng_duration,
    proto_ver: u8,
    msg: *mut nng_msg,
) -> Result<Decision> {
    let (h, b) = msg_parts(msg);
    let info = parse_publish(h, b, proto_ver)?;
    if !lane_busy && ob.decide(info.qos)? == Decision::SendNow {
        sys::nng_aio_set_timeout(lane, timeout_ms);
        sys::nng_aio_set_msg(lane, msg);
        return Ok(Decision::SendNow);
    }
    store_copy(ob, msg, proto_ver, false)?;
    sys::nng_msg_free(msg);
    Ok(Decision::Store)
}

/// N1. On OK the aio's message is stored and freed and the aio finished with 0.
///
/// # Safety
/// `aio` must be a valid aio that the caller has begun and not finished.
pub unsafe fn store_aio(ob: &Outbox, aio: *mut nng_aio, proto_ver: u8) -> Result<()> {
    let msg = sys::nng_aio_get_msg(aio);
    if msg.is_null() {
        return Err(Error::Invalid("the aio carries no message".into()));
    }
    store_copy(ob, msg, proto_ver, false)?;
    sys::nng_aio_set_msg(aio, std::ptr::null_mut());
    sys::nng_msg_free(msg);
    sys::nng_aio_finish(aio, 0);
    Ok(())
}

/// N2/N3. On OK the message is stored at the head and freed.
///
/// # Safety
/// `msg` must be a valid nng message owned by the caller.
pub unsafe fn requeue(ob: &Outbox, msg: *mut nng_msg, proto_ver: u8) -> Result<()> {
    store_copy(ob, msg, proto_ver, true)?;
    sys::nng_msg_free(msg);
    Ok(())
}

/// N4. The next row as a new nng message: Ok(None) when there is nothing to send now.
///
/// # Safety
/// Calls nng's allocator; the returned message belongs to the caller.
pub unsafe fn lease(ob: &Outbox) -> Result<Option<(*mut nng_msg, i64, u16)>> {
    let Some(row) = ob.lease()? else {
        return Ok(None);
    };
    let built = (|| {
        let (h, b) = split_packet(&row.data)?;
        let mut msg: *mut nng_msg = std::ptr::null_mut();
        let rv = sys::nng_msg_alloc(&mut msg, 0);
        if rv != 0 || msg.is_null() {
            return Err(Error::Io(format!("nng_msg_alloc failed ({rv})")));
        }
        let rv = sys::nng_msg_header_append(msg, h.as_ptr().cast(), h.len());
        let rv = if rv == 0 {
            sys::nng_msg_append(msg, b.as_ptr().cast(), b.len())
        } else {
            rv
        };
        if rv != 0 {
            sys::nng_msg_free(msg);
            return Err(Error::Io(format!("nng_msg append failed ({rv})")));
        }
        Ok(msg)
    })();
    match built {
        Ok(msg) => Ok(Some((msg, row.seq, row.packet_id))),
        Err(e) => {
            // The row stays queued; it is handed out again by the next lease.
            let _ = ob.unlease(row.seq);
            Err(e)
        }
    }
}

// ---- The exports of include/nmq_outbox_nng.h -------------------------------------------------

use crate::ffi::sys::{
    nmq_outbox, nmq_outbox_decision, nmq_outbox_result, NMQ_OUTBOX_EMPTY, NMQ_OUTBOX_OK,
    NMQ_OUTBOX_SEND_NOW, NMQ_OUTBOX_STORE,
};
use crate::ffi::{non_null, with_handle};
#[allow(unused_imports)]
use sys::nng_duration;

// Every function of nmq_outbox_nng.h, checked against the exports below (generated by build.rs).
include!(concat!(env!("OUT_DIR"), "/nng_checks.rs"));

/// Hook B2. `lane` is borrowed. On OK `msg` is either on `lane` (SEND_NOW: the caller sends
/// it with nng_send_aio) or stored and freed (STORE). On error `msg` stays with the caller.
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_nng_publish(
    ob: *mut nmq_outbox,
    lane: *mut nng_aio,
    lane_busy: std::os::raw::c_int,
    timeout_ms: nng_duration,
    proto_ver: u8,
    msg: *mut nng_msg,
    decision: *mut nmq_outbox_decision,
) -> nmq_outbox_result {
    with_handle("nmq_outbox_nng_publish", ob, |h| {
        non_null(lane, "lane")?;
        non_null(msg, "msg")?;
        non_null(decision, "decision")?;
        let d = publish(h, lane, lane_busy != 0, timeout_ms, proto_ver, msg)?;
        *decision = match d {
            Decision::SendNow => NMQ_OUTBOX_SEND_NOW,
            Decision::Store => NMQ_OUTBOX_STORE,
        };
        Ok(NMQ_OUTBOX_OK)
    })
}

/// Hook N1. On OK the aio's message was stored and freed and the aio finished with 0; on error
/// the aio and its message are untouched. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_nng_store_aio(
    ob: *mut nmq_outbox,
    aio: *mut nng_aio,
    proto_ver: u8,
) -> nmq_outbox_result {
    with_handle("nmq_outbox_nng_store_aio", ob, |h| {
        non_null(aio, "aio")?;
        store_aio(h, aio, proto_ver).map(|_| NMQ_OUTBOX_OK)
    })
}

/// Hooks N2/N3. OK consumes `msg`; on error it stays with the caller. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_nng_requeue(
    ob: *mut nmq_outbox,
    msg: *mut nng_msg,
    proto_ver: u8,
) -> nmq_outbox_result {
    with_handle("nmq_outbox_nng_requeue", ob, |h| {
        non_null(msg, "msg")?;
        requeue(h, msg, proto_ver).map(|_| NMQ_OUTBOX_OK)
    })
}

/// Hook N4. On OK `*out` is a new message the caller owns. `seq` and `prev_packet_id` may be
/// NULL. EMPTY when there is nothing to send now. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_nng_lease(
    ob: *mut nmq_outbox,
    out: *mut *mut nng_msg,
    seq: *mut i64,
    prev_packet_id: *mut u16,
) -> nmq_outbox_result {
    with_handle("nmq_outbox_nng_lease", ob, |h| {
        non_null(out, "out")?;
        *out = std::ptr::null_mut();
        let Some((msg, s, pid)) = lease(h)? else {
            return Ok(NMQ_OUTBOX_EMPTY);
        };
        *out = msg;
        if !seq.is_null() {
            *seq = s;
        }
        if !prev_packet_id.is_null() {
            *prev_packet_id = pid;
        }
        Ok(NMQ_OUTBOX_OK)
    })
}
