//! The counters: as a struct, as JSON, as Prometheus text.

use super::guard::{guard, handle, non_null, with_handle};

use super::sys::*;
use crate::error::Result;
use std::ffi::c_char;

/// A counter's value as the C struct's field type (booleans are 0 or 1).
trait ToC<T> {
    fn to_c(self) -> T;
}
impl<T> ToC<T> for T {
    fn to_c(self) -> T {
        self
    }
}
impl ToC<u8> for bool {
    fn to_c(self) -> u8 {
        self as u8
    }
}

macro_rules! stats_to_c {
    ($($f:ident),*) => {
        /// The C struct, field by field from the one list of counters: a field missing on
        /// either side fails the build.
        fn to_c(s: &crate::outbox::Stats) -> nmq_outbox_stats {
            nmq_outbox_stats { $($f: ToC::to_c(s.$f)),* }
        }
    };
}
crate::counters::for_each_counter!(stats_to_c);

/// Writes the counters to `*out` (borrowed). `ob` is borrowed (NULL gives EINVAL). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_get_stats(
    ob: *mut nmq_outbox,
    out: *mut nmq_outbox_stats,
) -> nmq_outbox_result {
    with_handle("nmq_outbox_get_stats", ob, |h| {
        non_null(out, "out")?;
        *out = to_c(&h.stats()?);
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

/// Every open outbox of this process (`nmq_outbox_free` not yet called) in Prometheus' text
/// format into `buf` (borrowed, `cap` bytes); `*len` (borrowed) gets the size needed. No outbox:
/// OK with an empty text. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_stats_prometheus_all(
    buf: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> nmq_outbox_result {
    guard("nmq_outbox_stats_prometheus_all", None, || {
        let all = crate::outbox::stats_all();
        if all.is_empty() {
            return to_buf("", buf, cap, len);
        }
        let refs: Vec<(&str, &crate::outbox::Stats)> =
            all.iter().map(|(b, s)| (b.as_str(), s)).collect();
        to_buf(&crate::metrics::prometheus(&refs), buf, cap, len)
    })
}

/// Counts `n` host events `what` on `ob` (borrowed; NULL gives EINVAL) and writes the new
/// total to `*total` (borrowed; may be NULL). Works on a closed handle. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_count_event(
    ob: *mut nmq_outbox,
    what: nmq_outbox_event,
    n: u64,
    total: *mut u64,
) -> nmq_outbox_result {
    with_handle("nmq_outbox_count_event", ob, |h| {
        let what = match what {
            NMQ_OUTBOX_EVENT_QOS0_DROPPED => crate::outbox::HostEvent::Qos0Dropped,
            NMQ_OUTBOX_EVENT_FALLBACK => crate::outbox::HostEvent::Fallback,
            other => return Err(crate::error::Error::Invalid(format!("event {other}"))),
        };
        let t = h.count_event(what, n);
        if !total.is_null() {
            *total = t;
        }
        Ok(NMQ_OUTBOX_OK)
    })
}
