//! What every export shares: the one mapping from [`Error`] to a result code, the panic
//! guard, the handle and pointer checks.

use super::sys::*;
use crate::error::{Error, Result};
use crate::log::{Level, Logger};
use crate::outbox::Outbox;
use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The one mapping from [`Error`] to a C result code.
pub fn code(e: &Error) -> nmq_outbox_result {
    match e {
        Error::Invalid(_) => NMQ_OUTBOX_EINVAL,
        Error::AbiMismatch { .. } => NMQ_OUTBOX_EABI,
        Error::TooBig { .. } => NMQ_OUTBOX_ETOOBIG,
        Error::Full => NMQ_OUTBOX_EFULL,
        Error::NoSpace => NMQ_OUTBOX_ENOSPC,
        Error::Io(_) => NMQ_OUTBOX_EIO,
        Error::Corrupt(_) => NMQ_OUTBOX_ECORRUPT,
        Error::Closed => NMQ_OUTBOX_ECLOSED,
        Error::Busy(_) => NMQ_OUTBOX_EBUSY,
        Error::NoMemory(_) => NMQ_OUTBOX_ENOMEM,
        Error::Internal(_) => NMQ_OUTBOX_EINTERNAL,
        Error::Refused(_) => NMQ_OUTBOX_EREFUSED,
    }
}

pub(super) fn level_of(e: &Error) -> Level {
    match e {
        Error::NoSpace
        | Error::Io(_)
        | Error::Corrupt(_)
        | Error::NoMemory(_)
        | Error::Internal(_) => Level::Error,
        _ => Level::Warn,
    }
}

/// Runs an export's body: no panic escapes, every error is logged (on `log`, or on stderr
/// when there is no handle yet) and turned into its code.
pub(crate) fn guard(
    what: &str,
    log: Option<&Logger>,
    body: impl FnOnce() -> Result<nmq_outbox_result>,
) -> nmq_outbox_result {
    let res = catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|p| {
        let why = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Err(Error::Internal(format!("panic caught: {why}")))
    });
    match res {
        Ok(rc) => rc,
        Err(e) => {
            let default = Logger::default();
            log.unwrap_or(&default)
                .log(level_of(&e), &format!("{what}: {e}"));
            code(&e)
        }
    }
}

/// The handle behind a C pointer, or EINVAL for NULL.
///
/// # Safety
/// `ob` must be NULL or a pointer returned by `nmq_outbox_open` and not yet freed.
pub(crate) unsafe fn handle<'a>(ob: *mut nmq_outbox) -> Result<&'a Outbox> {
    (ob as *const Outbox)
        .as_ref()
        .ok_or_else(|| Error::Invalid("NULL handle".into()))
}

/// Runs a body that needs the handle; errors are logged on the handle's logger.
///
/// # Safety
/// As [`handle`].
pub(crate) unsafe fn with_handle(
    what: &str,
    ob: *mut nmq_outbox,
    body: impl FnOnce(&Outbox) -> Result<nmq_outbox_result>,
) -> nmq_outbox_result {
    let h = handle(ob).ok();
    guard(what, h.map(|h| h.logger()), || body(handle(ob)?))
}

pub(crate) fn non_null<T>(p: *const T, name: &str) -> Result<()> {
    if p.is_null() {
        return Err(Error::Invalid(format!("{name} is NULL")));
    }
    Ok(())
}

/// A byte slice from C of at most `max` bytes; NULL is allowed only with length 0. The length
/// is checked before any slice exists (a slice longer than isize::MAX is undefined behaviour).
pub(super) unsafe fn bytes<'a>(data: *const u8, len: usize, max: usize) -> Result<&'a [u8]> {
    if len > max {
        return Err(Error::TooBig { len, max });
    }
    if data.is_null() {
        if len == 0 {
            return Ok(&[]);
        }
        return Err(Error::Invalid("data is NULL with a non-zero length".into()));
    }
    if len > isize::MAX as usize {
        return Err(Error::Invalid(format!(
            "length {len} is not a valid length"
        )));
    }
    Ok(std::slice::from_raw_parts(data, len))
}

pub(super) unsafe fn utf8<'a>(p: *const c_char, name: &str) -> Result<&'a str> {
    non_null(p, name)?;
    CStr::from_ptr(p)
        .to_str()
        .map_err(|_| Error::Invalid(format!("{name} is not UTF-8")))
}
