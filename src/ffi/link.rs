//! The link: up (with the CONNACK), down (and why).

use super::guard::{bytes, with_handle};
use super::sys::*;
use crate::error::Result;
use crate::outbox::Outbox;

/// The link is up. `ob` is borrowed (NULL gives EINVAL). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_link_up(
    ob: *mut nmq_outbox,
    receive_maximum: u16,
) -> nmq_outbox_result {
    with_handle("nmq_outbox_link_up", ob, |h| {
        h.link_up(receive_maximum).map(|_| NMQ_OUTBOX_OK)
    })
}

/// What was parsed, for the host.
pub(crate) fn connack_to_c(c: &crate::mqtt::Connack) -> nmq_outbox_connack {
    nmq_outbox_connack {
        proto_ver: c.proto_ver,
        reason_code: c.reason_code,
        session_present: c.session_present as u8,
        maximum_qos: c.max_qos(),
        retain_available: c.retain() as u8,
        has_server_keep_alive: c.server_keep_alive.is_some() as u8,
        has_session_expiry_interval: c.session_expiry_interval.is_some() as u8,
        receive_maximum: c.receive_max(),
        topic_alias_maximum: c.topic_alias_maximum.unwrap_or(0),
        server_keep_alive: c.server_keep_alive.unwrap_or(0),
        maximum_packet_size: c.maximum_packet_size.unwrap_or(0),
        session_expiry_interval: c.session_expiry_interval.unwrap_or(0),
    }
}

/// Link up with a parsed CONNACK: `*out` (may be NULL) gets what it says, also when it is a
/// refusal; zeroed when it cannot be parsed.
///
/// # Safety
/// `out` must be NULL or valid for writes.
pub(crate) unsafe fn link_up_with(
    h: &Outbox,
    parsed: Result<crate::mqtt::Connack>,
    out: *mut nmq_outbox_connack,
) -> Result<nmq_outbox_result> {
    if !out.is_null() {
        *out = nmq_outbox_connack::default();
    }
    let c = parsed?;
    if !out.is_null() {
        *out = connack_to_c(&c);
    }
    h.link_up_connack(&c).map(|_| NMQ_OUTBOX_OK)
}

/// Link up from the raw CONNACK `packet` (`len` bytes, borrowed). `ob` is borrowed (NULL gives
/// EINVAL); `out` (borrowed) may be NULL. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_link_up_connack(
    ob: *mut nmq_outbox,
    proto_ver: u8,
    packet: *const u8,
    len: usize,
    out: *mut nmq_outbox_connack,
) -> nmq_outbox_result {
    with_handle("nmq_outbox_link_up_connack", ob, |h| {
        let parsed = bytes(packet, len, usize::MAX)
            .and_then(|p| crate::mqtt::parse_connack_packet(p, proto_ver));
        link_up_with(h, parsed, out)
    })
}

/// The link is down. `ob` is borrowed (NULL gives EINVAL). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_link_down(ob: *mut nmq_outbox) -> nmq_outbox_result {
    with_handle("nmq_outbox_link_down", ob, |h| {
        h.link_down().map(|_| NMQ_OUTBOX_OK)
    })
}

/// The link is down, and why (`had_disconnect`: the remote's DISCONNECT, with
/// `disconnect_reason`). `ob` is borrowed (NULL gives EINVAL). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_link_down_reason(
    ob: *mut nmq_outbox,
    disconnect_reason: u8,
    had_disconnect: std::os::raw::c_int,
) -> nmq_outbox_result {
    with_handle("nmq_outbox_link_down_reason", ob, |h| {
        h.link_down_reason(disconnect_reason, had_disconnect != 0)
            .map(|_| NMQ_OUTBOX_OK)
    })
}
