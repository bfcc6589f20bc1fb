//! The nng-facing entry points of `include/nmq_outbox_nng.h` (hooks B2, N1, N2/N3, N4), over
//! bindgen's declarations of nng's public API. Built with the `nng` feature; the nng symbols
//! come from the host at link time (NanoNNG's libnng in NanoMQ, Debian's libnng in c_tests).
//!
//! Ownership follows nng: OK consumes the message, an error leaves it with the caller.
#![allow(clippy::missing_safety_doc)]

// The safety contract of every export (valid or NULL pointers, who owns what, which calls may
// run concurrently) is stated once, in the OWNERSHIP and THREADS sections of the header.

use crate::error::{Error, Result};
use crate::mqtt::{parse_publish, prepare_resend, pubrel, pubrel_packet_id, set_packet_id};
use crate::outbox::{Decision, Leased, Outbox, RowKind};

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

/// The header and body of `msg`, writable.
///
/// # Safety
/// `msg` must be a valid nng message that outlives the returned slices, and nothing else may
/// use it meanwhile.
unsafe fn msg_parts_mut<'a>(msg: *mut nng_msg) -> (&'a mut [u8], &'a mut [u8]) {
    let slice = |p: *mut std::os::raw::c_void, n: usize| {
        if p.is_null() || n == 0 {
            &mut [][..]
        } else {
            std::slice::from_raw_parts_mut(p as *mut u8, n)
        }
    };
    (
        slice(sys::nng_msg_header(msg), sys::nng_msg_header_len(msg)),
        slice(sys::nng_msg_body(msg), sys::nng_msg_len(msg)),
    )
}

/// A new nng message with `header` in its header and `body` in its body.
///
/// # Safety
/// Calls nng's allocator; the returned message belongs to the caller.
unsafe fn new_msg(header: &[u8], body: &[u8]) -> Result<*mut nng_msg> {
    let mut msg: *mut nng_msg = std::ptr::null_mut();
    let rv = sys::nng_msg_alloc(&mut msg, 0);
    if rv != 0 || msg.is_null() {
        return Err(Error::Io(format!("nng_msg_alloc failed ({rv})")));
    }
    let mut rv = sys::nng_msg_header_append(msg, header.as_ptr().cast(), header.len());
    if rv == 0 && !body.is_empty() {
        rv = sys::nng_msg_append(msg, body.as_ptr().cast(), body.len());
    }
    if rv != 0 {
        sys::nng_msg_free(msg);
        return Err(Error::Io(format!("nng_msg append failed ({rv})")));
    }
    Ok(msg)
}

/// Parses `msg` and stores a copy (at the tail, or at the head for `front`, with `released`).
/// Does not free it.
///
/// # Safety
/// `msg` must be a valid nng message.
unsafe fn store_copy(
    ob: &Outbox,
    msg: *mut nng_msg,
    proto_ver: u8,
    front: bool,
    released: bool,
) -> Result<(u8, i64)> {
    let (h, b) = msg_parts(msg);
    let info = parse_publish(h, b, proto_ver)?;
    if released && (info.qos != 2 || !front) {
        return Err(Error::Invalid(format!(
            "only a requeued QoS 2 PUBLISH can be released (QoS {})",
            info.qos
        )));
    }
    // The stored bytes are the header and body joined: one copy, handed over as it is.
    let mut data = Vec::with_capacity(h.len() + b.len());
    data.extend_from_slice(h);
    data.extend_from_slice(b);
    let front = front.then_some((info.packet_id, released));
    let seq = ob.insert_owned(info.qos, info.expiry_secs, data, front)?;
    Ok((info.qos, seq))
}

/// nng's "no timeout" (`NNG_DURATION_INFINITE`).
const NNG_DURATION_INFINITE: sys::nng_duration = -1;

/// The lane's timeout for a direct send: NanoMQ's `cancel_timeout`, where 0 means none. Given
/// to nng as is, 0 would fail every send at once (NanoNNG's `nni_aio_schedule` refuses a zero
/// timeout) and the stock path would free the message (issue 20, uncounted paths).
fn lane_timeout(cancel_timeout_ms: sys::nng_duration) -> sys::nng_duration {
    if cancel_timeout_ms == 0 {
        NNG_DURATION_INFINITE
    } else {
        cancel_timeout_ms
    }
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
    // as the remote's limits see it (a packet id may still be added: 2 bytes); one they would
    // change is stored, never sent directly
    let size = h.len() + b.len() + 2;
    let retain = h.first().is_some_and(|b| b & 1 == 1);
    if !lane_busy && ob.decide_publish(info.qos, retain, size)? == Decision::SendNow {
        sys::nng_aio_set_timeout(lane, lane_timeout(timeout_ms));
        sys::nng_aio_set_msg(lane, msg);
        return Ok(Decision::SendNow);
    }
    store_copy(ob, msg, proto_ver, false, false)?;
    sys::nng_msg_free(msg);
    Ok(Decision::Store)
}

/// Ack after commit: stores a copy of `msg` at the tail and frees it; its seq. On error `msg`
/// is untouched.
///
/// # Safety
/// `msg` must be a valid nng message owned by the caller.
pub unsafe fn append(ob: &Outbox, proto_ver: u8, msg: *mut nng_msg) -> Result<i64> {
    let (_, seq) = store_copy(ob, msg, proto_ver, false, false)?;
    sys::nng_msg_free(msg);
    Ok(seq)
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
    store_copy(ob, msg, proto_ver, false, false)?;
    sys::nng_aio_set_msg(aio, std::ptr::null_mut());
    sys::nng_msg_free(msg);
    sys::nng_aio_finish(aio, 0);
    Ok(())
}

/// N2/N3. On OK the message is stored at the head and freed. `released`: its PUBREC came.
///
/// # Safety
/// `msg` must be a valid nng message owned by the caller.
pub unsafe fn requeue(ob: &Outbox, msg: *mut nng_msg, proto_ver: u8, released: bool) -> Result<()> {
    store_copy(ob, msg, proto_ver, true, released)?;
    sys::nng_msg_free(msg);
    Ok(())
}

/// What became of a direct send handed to [`requeue_unacked`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Left with the caller (its error logged).
    No,
    /// Queued at the head: the replay sends it again.
    Requeued,
    /// In flight, bound to its packet id ([`Outbox::adopt`]): its acks complete it.
    InFlight,
}

/// Stores a copy of direct send `msg` in flight ([`Outbox::adopt`]) and frees it.
unsafe fn adopt(ob: &Outbox, msg: *mut nng_msg, proto_ver: u8, released: bool) -> Result<bool> {
    let (h, b) = msg_parts(msg);
    let info = parse_publish(h, b, proto_ver)?;
    let mut data = Vec::with_capacity(h.len() + b.len());
    data.extend_from_slice(h);
    data.extend_from_slice(b);
    let m = crate::outbox::NewMessage {
        qos: info.qos,
        expiry_secs: info.expiry_secs,
        data: &data,
    };
    let (_, adopted) = ob.adopt(&m, info.packet_id, released)?;
    sys::nng_msg_free(msg);
    Ok(adopted)
}

/// N2/N3 for every direct send still open on a connection: `msgs[i]` (with `released[i]`)
/// goes back to the head in the order the messages were first sent (by packet id, see
/// [`crate::send_order`]), so that the oldest is replayed first; with `keep_in_flight` (the
/// connection is alive: a cancel timeout) each stays in flight on it instead, not sent again
/// ([`Outbox::adopt`]). `taken[i]` says what became of each; one not taken is left untouched
/// with the caller, its error logged.
///
/// # Safety
/// Each `msgs[i]` must be a valid nng message owned by the caller.
pub unsafe fn requeue_unacked(
    ob: &Outbox,
    msgs: &[*mut nng_msg],
    released: &[bool],
    next_packet_id: u16,
    proto_ver: u8,
    keep_in_flight: bool,
    taken: &mut [Taken],
) {
    let pids: Vec<u16> = msgs
        .iter()
        .map(|&m| {
            let (h, b) = msg_parts(m);
            parse_publish(h, b, proto_ver).map_or(0, |i| i.packet_id)
        })
        .collect();
    // requeue_front puts each before every held row: newest first leaves the oldest at the head
    for i in crate::send_order::oldest_first(&pids, next_packet_id)
        .into_iter()
        .rev()
    {
        let r = if keep_in_flight {
            adopt(ob, msgs[i], proto_ver, released[i]).map(|a| {
                if a {
                    Taken::InFlight
                } else {
                    Taken::Requeued
                }
            })
        } else {
            requeue(ob, msgs[i], proto_ver, released[i]).map(|()| Taken::Requeued)
        };
        match r {
            Ok(t) => taken[i] = t,
            Err(e) => {
                taken[i] = Taken::No;
                ob.logger().warn(&format!(
                    "bridge {:?}: a direct send (packet id {}) not requeued: {e}",
                    ob.bridge(),
                    pids[i]
                ));
            }
        }
    }
}

/// A leased row as handed to the hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseInfo {
    pub seq: i64,
    /// The packet id the row was last sent with (0 = never sent).
    pub prev_packet_id: u16,
    /// The message is a PUBREL for `prev_packet_id` (QoS 2 whose PUBREC came).
    pub released: bool,
    /// The QoS the row goes out with.
    pub qos: u8,
}

/// Malformed rows dropped by one lease call at most; then it says EMPTY (the next call goes on).
const MAX_DROPS_PER_LEASE: usize = 1024;

/// The packet (fixed header, rest) that resends `row`: a PUBREL for a released QoS 2 row, else
/// the stored PUBLISH with its previous packet id (or the stored one when never sent), DUP
/// cleared and the remaining Message Expiry Interval.
fn resend_packet(row: &Leased, proto_ver: u8) -> Result<(Vec<u8>, Vec<u8>)> {
    if row.released {
        if row.qos != 2 || row.packet_id == 0 {
            return Err(Error::Invalid(format!(
                "row marked released is QoS {} with packet id {}",
                row.qos, row.packet_id
            )));
        }
        let (h, b) = pubrel(row.packet_id);
        return Ok((h.to_vec(), b.to_vec()));
    }
    prepare_resend(
        &row.data,
        proto_ver,
        row.qos,
        row.packet_id,
        row.expiry_secs,
    )
}

/// Removes a row that cannot be sent: counted (`dropped_malformed`) and logged by the library,
/// never handed out again.
fn drop_malformed(ob: &Outbox, row: &Leased, why: &Error) -> Result<()> {
    ob.drop_row(row.seq, &why.to_string())
}

/// N4. The next row as a new nng message ready to send but for its packet id: Ok(None) when
/// there is nothing to send now. A row that does not make a packet is dropped (counted, logged)
/// and the next one is tried.
///
/// # Safety
/// Calls nng's allocator; the returned message belongs to the caller.
pub unsafe fn lease(ob: &Outbox, proto_ver: u8) -> Result<Option<(*mut nng_msg, LeaseInfo)>> {
    if !matches!(proto_ver, 3..=5) {
        return Err(Error::Invalid(format!(
            "MQTT protocol version {proto_ver} is not 3, 4 or 5"
        )));
    }
    for _ in 0..MAX_DROPS_PER_LEASE {
        let Some(row) = ob.lease()? else {
            return Ok(None);
        };
        let (h, b) = match resend_packet(&row, proto_ver) {
            Ok(p) => p,
            Err(e) => {
                drop_malformed(ob, &row, &e)?;
                continue;
            }
        };
        return match new_msg(&h, &b) {
            Ok(msg) => Ok(Some((
                msg,
                LeaseInfo {
                    seq: row.seq,
                    prev_packet_id: row.packet_id,
                    released: row.released,
                    qos: row.qos,
                },
            ))),
            Err(e) => {
                // The row stays queued; it is handed out again by the next lease.
                let _ = ob.unlease(row.seq);
                Err(e)
            }
        };
    }
    Ok(None)
}

/// N4. Binds leased row `seq` to `packet_id` and writes it into `msg` (from `lease`): DUP set
/// when it is the id the message was sent with before. A PUBREL keeps its id: `packet_id` must
/// be that id. On error `msg` and the row are unchanged.
///
/// # Safety
/// `msg` must be a valid nng message owned by the caller.
pub unsafe fn bind(ob: &Outbox, seq: i64, packet_id: u16, msg: *mut nng_msg) -> Result<()> {
    if packet_id == 0 {
        return Err(Error::Invalid("packet id 0".into()));
    }
    let (h, b) = msg_parts_mut(msg);
    if let Some(pid) = pubrel_packet_id(h, b) {
        if pid != packet_id {
            return Err(Error::Invalid(format!(
                "a PUBREL resumes on its own packet id {pid}, not {packet_id}"
            )));
        }
        return ob.bind(seq, packet_id);
    }
    let info = parse_publish(h, b, 4)?;
    if info.qos == 0 {
        return Err(Error::Invalid(
            "a QoS 0 row has no packet id: nmq_outbox_sent() completes it".into(),
        ));
    }
    ob.bind(seq, packet_id)?;
    let dup = info.packet_id != 0 && info.packet_id == packet_id;
    set_packet_id(h, b, packet_id, dup)
}

/// A leased row with its packet id bound: what the host needs to send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundRow {
    pub seq: i64,
    /// 0 for a QoS 0 row.
    pub packet_id: u16,
    pub qos: u8,
    pub kind: RowKind,
    /// A PUBLISH sent before on `packet_id` (DUP set).
    pub dup: bool,
}

/// N4 in one step: `lease`, then the packet id chosen and bound by the outbox
/// (`Outbox::bind_free`, asking `host_busy`) and written into the message. Ok(None) when there
/// is nothing to send now or no packet id is free (the row stays queued).
///
/// # Safety
/// Calls nng's allocator; the returned message belongs to the caller.
pub unsafe fn lease_bind(
    ob: &Outbox,
    proto_ver: u8,
    host_busy: &mut dyn FnMut(u16) -> bool,
) -> Result<Option<(*mut nng_msg, BoundRow)>> {
    let Some((msg, info)) = lease(ob, proto_ver)? else {
        return Ok(None);
    };
    let mut row = BoundRow {
        seq: info.seq,
        packet_id: 0,
        qos: info.qos,
        kind: if info.released {
            RowKind::Pubrel
        } else if info.qos == 0 {
            RowKind::Qos0
        } else {
            RowKind::Publish
        },
        dup: false,
    };
    if row.kind == RowKind::Qos0 {
        return Ok(Some((msg, row)));
    }
    let bound = ob
        .bind_free(info.seq, info.prev_packet_id, info.released, host_busy)
        .and_then(|id| {
            let Some(id) = id else { return Ok(None) };
            row.packet_id = id;
            if row.kind == RowKind::Publish {
                row.dup = info.prev_packet_id == id;
                let (h, b) = msg_parts_mut(msg);
                set_packet_id(h, b, id, row.dup)?;
            }
            Ok(Some(id))
        });
    match bound {
        Ok(Some(_)) => Ok(Some((msg, row))),
        other => {
            sys::nng_msg_free(msg);
            // back at its place: leased again once an id is free
            let _ = ob.unlease(info.seq);
            other.map(|_| None)
        }
    }
}

/// N5. An ack as received (`ack`: fixed header, rest): (what it did, reason code); what it did
/// is None when its packet id is bound to no row of the outbox (the host's own send's).
///
/// # Safety
/// `ack` must be a valid nng message.
pub unsafe fn ack(
    ob: &Outbox,
    ack: *mut nng_msg,
    proto_ver: u8,
) -> Result<(Option<crate::outbox::AckOutcome>, u8)> {
    let (h, b) = msg_parts(ack);
    let (kind, packet_id, reason) = crate::mqtt::parse_ack(h, b, proto_ver)?;
    Ok((ob.ack_bound(packet_id, kind, reason)?, reason))
}

mod exports;
pub use exports::*;
