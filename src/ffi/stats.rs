//! The counters: as a struct, as JSON, as Prometheus text.

use super::guard::{guard, handle, non_null, with_handle};

use super::sys::*;
use crate::error::Result;
use std::ffi::c_char;

/// Writes the counters to `*out` (borrowed). `ob` is borrowed (NULL gives EINVAL). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_get_stats(
    ob: *mut nmq_outbox,
    out: *mut nmq_outbox_stats,
) -> nmq_outbox_result {
    with_handle("nmq_outbox_get_stats", ob, |h| {
        non_null(out, "out")?;
        let s = h.stats()?;
        *out = nmq_outbox_stats {
            messages: s.messages,
            bytes: s.bytes,
            inflight: s.inflight,
            enqueued: s.enqueued,
            acked: s.acked,
            resent: s.resent,
            dropped_full: s.dropped_full,
            dropped_expired: s.dropped_expired,
            dropped_rejected: s.dropped_rejected,
            dropped_malformed: s.dropped_malformed,
            dropped_unwritten: s.dropped_unwritten,
            refused_nospace: s.refused_nospace,
            oldest_age_ms: s.oldest_age_ms,
            committed_seq: s.committed_seq,
            window: s.window,
            link_up: s.link_up as u8,
            space_low: s.space_low as u8,
            lost_fallback_queue: s.lost_fallback_queue,
            lost_fallback_send: s.lost_fallback_send,
            qos_downgraded: s.qos_downgraded,
            retain_cleared: s.retain_cleared,
            dead_letters: s.dead_letters,
            dead_lettered: s.dead_lettered,
            dropped_dead_letters: s.dropped_dead_letters,
            backoffs: s.backoffs,
            backing_off: s.backing_off as u8,
            probing: s.probing as u8,
            acks_ignored: s.acks_ignored,
        };
        Ok(NMQ_OUTBOX_OK)
    })
}

/// Copies `text` and a NUL into the caller's `buf` of `cap` bytes; `*len` = bytes needed.
unsafe fn to_buf(
    text: &str,
    buf: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> Result<nmq_outbox_result> {
    non_null(len, "len")?;
    let need = text.len() + 1;
    *len = need;
    if cap < need {
        return Ok(NMQ_OUTBOX_ETOOBIG);
    }
    non_null(buf, "buf")?;
    std::ptr::copy_nonoverlapping(text.as_ptr(), buf as *mut u8, text.len());
    *buf.add(text.len()) = 0;
    Ok(NMQ_OUTBOX_OK)
}

/// This bridge's counters as JSON into `buf` (borrowed, `cap` bytes); `*len` (borrowed) gets
/// the size needed. ETOOBIG when it does not fit (not logged: the caller retries). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_stats_json(
    ob: *mut nmq_outbox,
    buf: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> nmq_outbox_result {
    with_handle("nmq_outbox_stats_json", ob, |h| {
        let text = crate::metrics::json(h.bridge(), &h.path().display().to_string(), &h.stats()?);
        to_buf(&text, buf, cap, len)
    })
}

/// The counters of `n` handles (`obs` borrowed, each entry a handle) in Prometheus' text
/// format into `buf` (borrowed, `cap` bytes); `*len` gets the size needed. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_stats_prometheus(
    obs: *const *mut nmq_outbox,
    n: usize,
    buf: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> nmq_outbox_result {
    guard("nmq_outbox_stats_prometheus", None, || {
        if n > 0 {
            non_null(obs, "obs")?;
        }
        let mut all = Vec::with_capacity(n);
        for i in 0..n {
            let h = handle(*obs.add(i))?;
            all.push((h.bridge(), h.stats()?));
        }
        let refs: Vec<(&str, &crate::outbox::Stats)> = all.iter().map(|(b, s)| (*b, s)).collect();
        to_buf(&crate::metrics::prometheus(&refs), buf, cap, len)
    })
}
