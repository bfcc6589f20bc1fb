//! The queue: routing a new message, appends, the replay (lease, bind, sent, acks), QoS 0
//! confirmation, the replay kick, losses on the host's path, the stock import.

use super::guard::{bytes, guard, non_null, utf8, with_handle};
use super::sys::*;
use crate::error::{Error, Result};
use crate::outbox::{AckKind, AckOutcome, Decision, LostReason, NewMessage, Outbox};
use std::ffi::c_char;

/// Send now or store. `ob` is borrowed (NULL gives EINVAL). `out` is borrowed and written on OK. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_decide(
    ob: *mut nmq_outbox,
    qos: u8,
    out: *mut nmq_outbox_decision,
) -> nmq_outbox_result {
    with_handle("nmq_outbox_decide", ob, |h| {
        non_null(out, "out")?;
        *out = match h.decide(qos)? {
            Decision::SendNow => NMQ_OUTBOX_SEND_NOW,
            Decision::Store => NMQ_OUTBOX_STORE,
        };
        Ok(NMQ_OUTBOX_OK)
    })
}

unsafe fn insert(
    ob: *mut nmq_outbox,
    front: Option<u16>,
    qos: u8,
    expiry_secs: u32,
    data: *const u8,
    len: usize,
    seq_out: *mut i64,
) -> nmq_outbox_result {
    let what = if front.is_some() {
        "nmq_outbox_requeue_front"
    } else {
        "nmq_outbox_append"
    };
    with_handle(what, ob, |h| {
        let msg = NewMessage {
            qos,
            expiry_secs,
            data: bytes(data, len, h.max_message_bytes())?,
        };
        let seq = match front {
            Some(pid) => h.requeue_front(&msg, pid)?,
            None => h.append(&msg)?,
        };
        if !seq_out.is_null() {
            *seq_out = seq;
        }
        Ok(NMQ_OUTBOX_OK)
    })
}

/// Copies `len` bytes at `data` (borrowed, NULL only with `len` 0) to the tail. `ob` is borrowed (NULL gives EINVAL).
/// `seq_out` (borrowed) may be NULL. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_append(
    ob: *mut nmq_outbox,
    qos: u8,
    expiry_secs: u32,
    data: *const u8,
    len: usize,
    seq_out: *mut i64,
) -> nmq_outbox_result {
    insert(ob, None, qos, expiry_secs, data, len, seq_out)
}

/// Copies `len` bytes at `data` (borrowed, NULL only with `len` 0) to the head. `ob` is borrowed (NULL gives EINVAL).
/// `seq_out` (borrowed) may be NULL. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_requeue_front(
    ob: *mut nmq_outbox,
    qos: u8,
    expiry_secs: u32,
    packet_id: u16,
    data: *const u8,
    len: usize,
    seq_out: *mut i64,
) -> nmq_outbox_result {
    insert(ob, Some(packet_id), qos, expiry_secs, data, len, seq_out)
}

/// Fills `*item` (borrowed); on OK the caller owns `item->data` until `nmq_outbox_item_free`.
/// EMPTY when there is nothing to send now (the item is zeroed). `ob` is borrowed (NULL gives EINVAL). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_lease(
    ob: *mut nmq_outbox,
    item: *mut nmq_outbox_item,
) -> nmq_outbox_result {
    with_handle("nmq_outbox_lease", ob, |h| {
        non_null(item, "item")?;
        *item = nmq_outbox_item::default();
        let Some(row) = h.lease()? else {
            return Ok(NMQ_OUTBOX_EMPTY);
        };
        let data: Box<[u8]> = row.data.into_boxed_slice();
        let len = data.len();
        *item = nmq_outbox_item {
            seq: row.seq,
            qos: row.qos,
            dup: row.dup as u8,
            packet_id: row.packet_id,
            expiry_secs: row.expiry_secs,
            data: Box::into_raw(data) as *mut u8,
            len,
            released: row.released as u8,
        };
        Ok(NMQ_OUTBOX_OK)
    })
}

/// Frees `item->data` (allocated by `nmq_outbox_lease`, given back here) and zeroes the item,
/// which stays the caller's. NULL-safe and idempotent. Thread-safe (for different items).
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_item_free(item: *mut nmq_outbox_item) {
    if item.is_null() {
        return;
    }
    let _ = guard("nmq_outbox_item_free", None, || {
        let it = &mut *item;
        if !it.data.is_null() {
            drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                it.data, it.len,
            )));
        }
        *it = nmq_outbox_item::default();
        Ok(NMQ_OUTBOX_OK)
    });
}

/// A leased QoS 0 row was written. `ob` is borrowed (NULL gives EINVAL). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_sent(ob: *mut nmq_outbox, seq: i64) -> nmq_outbox_result {
    with_handle("nmq_outbox_sent", ob, |h| {
        h.sent(seq).map(|_| NMQ_OUTBOX_OK)
    })
}

/// Whether the host should write a PINGREQ now (QoS 0 rows await a confirmation). `ob` and
/// `due` are borrowed (NULL gives EINVAL). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_ping_due(
    ob: *mut nmq_outbox,
    due: *mut std::os::raw::c_int,
) -> nmq_outbox_result {
    yes_no("nmq_outbox_ping_due", ob, due, Outbox::ping_due)
}

/// An export that answers yes (1) or no (0) in `*out`: a question to the handle.
unsafe fn yes_no(
    what: &str,
    ob: *mut nmq_outbox,
    out: *mut std::os::raw::c_int,
    ask: impl FnOnce(&Outbox) -> Result<bool>,
) -> nmq_outbox_result {
    with_handle(what, ob, |h| {
        non_null(out, "the answer")?;
        *out = ask(h)? as std::os::raw::c_int;
        Ok(NMQ_OUTBOX_OK)
    })
}

/// The host wrote a PINGREQ. `ob` is borrowed (NULL gives EINVAL). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_ping_sent(ob: *mut nmq_outbox) -> nmq_outbox_result {
    with_handle("nmq_outbox_ping_sent", ob, |h| {
        h.ping_sent().map(|_| NMQ_OUTBOX_OK)
    })
}

/// A PINGRESP arrived. `ob` is borrowed (NULL gives EINVAL); `confirmed` may be NULL.
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_pong(
    ob: *mut nmq_outbox,
    confirmed: *mut u64,
) -> nmq_outbox_result {
    with_handle("nmq_outbox_pong", ob, |h| {
        let n = h.pong()?;
        if !confirmed.is_null() {
            *confirmed = n;
        }
        Ok(NMQ_OUTBOX_OK)
    })
}

/// Whether the host should run its replay now. `ob` and `due` are borrowed (NULL gives
/// EINVAL). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_replay_due(
    ob: *mut nmq_outbox,
    due: *mut std::os::raw::c_int,
) -> nmq_outbox_result {
    yes_no("nmq_outbox_replay_due", ob, due, Outbox::replay_due)
}

/// Whether the link is up, without waiting for a commit. `ob` and `up` are borrowed (NULL
/// gives EINVAL). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_link_is_up(
    ob: *mut nmq_outbox,
    up: *mut std::os::raw::c_int,
) -> nmq_outbox_result {
    yes_no("nmq_outbox_link_is_up", ob, up, Outbox::link_is_up)
}

/// Drops a leased row that cannot be sent. `ob` is borrowed (NULL gives EINVAL). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_drop(
    ob: *mut nmq_outbox,
    seq: i64,
    reason: nmq_outbox_drop_reason,
) -> nmq_outbox_result {
    with_handle("nmq_outbox_drop", ob, |h| {
        let why = match reason {
            NMQ_OUTBOX_DROP_MALFORMED => "malformed, as the host reports",
            other => return Err(Error::Invalid(format!("drop reason {other}"))),
        };
        h.drop_row(seq, why).map(|_| NMQ_OUTBOX_OK)
    })
}

/// Binds a packet id to a leased row. `ob` is borrowed (NULL gives EINVAL). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_bind(
    ob: *mut nmq_outbox,
    seq: i64,
    packet_id: u16,
) -> nmq_outbox_result {
    with_handle("nmq_outbox_bind", ob, |h| {
        h.bind(seq, packet_id).map(|_| NMQ_OUTBOX_OK)
    })
}

/// Returns a leased row to the queue. `ob` is borrowed (NULL gives EINVAL). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_unlease(ob: *mut nmq_outbox, seq: i64) -> nmq_outbox_result {
    with_handle("nmq_outbox_unlease", ob, |h| {
        h.unlease(seq).map(|_| NMQ_OUTBOX_OK)
    })
}

/// An acknowledgement. `ob` is borrowed (NULL gives EINVAL). `outcome` (borrowed) may be NULL. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_ack(
    ob: *mut nmq_outbox,
    packet_id: u16,
    type_: nmq_outbox_ack_type,
    reason_code: u8,
    outcome: *mut nmq_outbox_ack_outcome,
) -> nmq_outbox_result {
    with_handle("nmq_outbox_ack", ob, |h| {
        let kind = match type_ {
            NMQ_OUTBOX_PUBACK => AckKind::PubAck,
            NMQ_OUTBOX_PUBREC => AckKind::PubRec,
            NMQ_OUTBOX_PUBCOMP => AckKind::PubComp,
            other => return Err(Error::Invalid(format!("ack type {other}"))),
        };
        let out = match h.ack(packet_id, kind, reason_code)? {
            AckOutcome::Done => NMQ_OUTBOX_ACK_DONE,
            AckOutcome::Progress => NMQ_OUTBOX_ACK_PROGRESS,
            AckOutcome::Rejected => NMQ_OUTBOX_ACK_REJECTED,
            AckOutcome::Retry => NMQ_OUTBOX_ACK_RETRY,
            AckOutcome::NotOurs => return Ok(NMQ_OUTBOX_NOT_OURS),
        };
        if !outcome.is_null() {
            *outcome = out;
        }
        Ok(NMQ_OUTBOX_OK)
    })
}

/// Counts messages the outbox refused that the host then lost. `ob` is borrowed (NULL gives
/// EINVAL); also after close. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_count_lost(
    ob: *mut nmq_outbox,
    reason: nmq_outbox_lost_reason,
    n: u64,
) -> nmq_outbox_result {
    with_handle("nmq_outbox_count_lost", ob, |h| {
        let why = match reason {
            NMQ_OUTBOX_LOST_QUEUE_FULL => LostReason::QueueFull,
            NMQ_OUTBOX_LOST_SEND_FAILED => LostReason::SendFailed,
            other => return Err(Error::Invalid(format!("lost reason {other}"))),
        };
        h.count_lost(why, n);
        Ok(NMQ_OUTBOX_OK)
    })
}

/// Imports the stock cache's rows of a bridge. `path` and `config_name` are borrowed UTF-8
/// strings, `imported` (borrowed) may be NULL. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_import_stock(
    ob: *mut nmq_outbox,
    path: *const c_char,
    config_name: *const c_char,
    imported: *mut u64,
) -> nmq_outbox_result {
    with_handle("nmq_outbox_import_stock", ob, |h| {
        let path = utf8(path, "path")?;
        let name = utf8(config_name, "config_name")?;
        let n = h.import_stock(std::path::Path::new(path), name)?;
        if !imported.is_null() {
            *imported = n;
        }
        Ok(NMQ_OUTBOX_OK)
    })
}

/// PACKET IDS: whether `packet_id` is bound to a row of this outbox in flight. `bound`
/// (borrowed) must not be NULL. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_packet_id_bound(
    ob: *mut nmq_outbox,
    packet_id: u16,
    bound: *mut std::os::raw::c_int,
) -> nmq_outbox_result {
    with_handle("nmq_outbox_packet_id_bound", ob, |h| {
        non_null(bound, "bound")?;
        *bound = h.packet_id_bound(packet_id)? as std::os::raw::c_int;
        Ok(NMQ_OUTBOX_OK)
    })
}
