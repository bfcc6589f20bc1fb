//! Texts and values with no handle: the MQTT reason for a result, durations, the error
//! strings, the version.

use super::guard::{guard, non_null};
use super::sys::*;
use std::ffi::{c_char, CStr};

/// The MQTT 5 PUBACK/PUBREC reason code for an append's result: 0x00 for OK, 0x97 (quota
/// exceeded) for EFULL, ENOSPC and ETOOBIG, 0x80 (unspecified error) for every other error.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn nmq_outbox_mqtt_reason(result: nmq_outbox_result) -> u8 {
    match result {
        NMQ_OUTBOX_OK => 0x00,
        NMQ_OUTBOX_EFULL | NMQ_OUTBOX_ENOSPC | NMQ_OUTBOX_ETOOBIG => 0x97,
        r if r > 0 => 0x00,
        _ => 0x80,
    }
}

/// A configuration duration (`text`, borrowed NUL-terminated bytes) as milliseconds, at most
/// `max_ms`, into `*out_ms` (borrowed). EINVAL for a NULL argument (logged) and for a text that
/// is not such a duration or is above `max_ms` (not logged: the caller says which key; `*out_ms`
/// is then untouched). Thread-safe: it touches nothing but `*out_ms`.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_parse_duration_ms(
    text: *const c_char,
    max_ms: u64,
    out_ms: *mut u64,
) -> nmq_outbox_result {
    guard("nmq_outbox_parse_duration_ms", None, || {
        non_null(text, "text")?;
        non_null(out_ms, "out_ms")?;
        match crate::duration::parse_ms(CStr::from_ptr(text).to_bytes(), max_ms) {
            Ok(ms) => {
                *out_ms = ms;
                Ok(NMQ_OUTBOX_OK)
            }
            Err(_) => Ok(NMQ_OUTBOX_EINVAL),
        }
    })
}

/// The connect timeout of a bridge's dialer, in ms (see the header). Pure; thread-safe.
#[no_mangle]
pub extern "C" fn nmq_outbox_connect_timeout_ms(configured_ms: i64, keepalive_s: u32) -> i32 {
    crate::duration::connect_timeout_ms(configured_ms, keepalive_s)
}

/// The wait before a bridge dials again after failed dials (see the header). Pure; thread-safe.
#[no_mangle]
pub extern "C" fn nmq_outbox_retry_backoff_ms(failures: u32, max_ms: u32) -> u32 {
    crate::duration::retry_backoff_ms(failures, max_ms)
}

/// A static string for any code. Never NULL; the caller must not free it. Thread-safe.
#[no_mangle]
pub extern "C" fn nmq_outbox_strerror(result: nmq_outbox_result) -> *const c_char {
    let s: &'static CStr = match result {
        NMQ_OUTBOX_OK => c"success",
        NMQ_OUTBOX_EMPTY => c"nothing to send now",
        NMQ_OUTBOX_NOT_OURS => c"packet id not bound to a row of this outbox",
        NMQ_OUTBOX_PENDING => c"the writer was checkpointing; it commits the rest",
        NMQ_OUTBOX_EINVAL => c"invalid argument",
        NMQ_OUTBOX_EABI => c"ABI version mismatch",
        NMQ_OUTBOX_ETOOBIG => c"message too big",
        NMQ_OUTBOX_EFULL => c"outbox full",
        NMQ_OUTBOX_ENOSPC => c"disk full",
        NMQ_OUTBOX_EIO => c"I/O error",
        NMQ_OUTBOX_ECORRUPT => c"database corrupt",
        NMQ_OUTBOX_ECLOSED => c"outbox closed",
        NMQ_OUTBOX_EBUSY => c"bridge already open in this process, or file held by another process",
        NMQ_OUTBOX_ENOMEM => c"out of memory",
        NMQ_OUTBOX_EINTERNAL => c"internal error",
        NMQ_OUTBOX_EREFUSED => c"the remote refused the connection (CONNACK)",
        _ => c"unknown result code",
    };
    s.as_ptr()
}

/// The library version: a static string, never NULL, not to be freed. Thread-safe.
#[no_mangle]
pub extern "C" fn nmq_outbox_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}
