//! A handle's life: the config from C (and its log callback), open, close, free, flush.

use super::guard::{code, guard, level_of, non_null, utf8, with_handle};
use super::sys::*;
use crate::config::{Config, FullPolicy, SyncMode};
use crate::error::{Error, Result};
use crate::log::{Level, Logger};
use crate::outbox::Outbox;
use std::ffi::{c_char, c_void, CString};

/// The host's log callback and its context pointer.
struct CLog {
    f: unsafe extern "C" fn(*mut c_void, nmq_outbox_log_level, *const c_char),
    ctx: *mut c_void,
}

// SAFETY: the header makes the host responsible for a callback and context that may be used
// from any thread.
unsafe impl Send for CLog {}
unsafe impl Sync for CLog {}

impl CLog {
    fn call(&self, level: Level, msg: &str) {
        let text = CString::new(msg.replace('\0', " ")).unwrap_or_default();
        // SAFETY: the host gave this callback and context for exactly this use.
        unsafe { (self.f)(self.ctx, level as nmq_outbox_log_level, text.as_ptr()) }
    }
}

fn level_from_c(l: nmq_outbox_log_level) -> Result<Level> {
    Ok(match l {
        NMQ_OUTBOX_LOG_ERROR => Level::Error,
        NMQ_OUTBOX_LOG_WARN => Level::Warn,
        NMQ_OUTBOX_LOG_INFO => Level::Info,
        NMQ_OUTBOX_LOG_DEBUG => Level::Debug,
        other => return Err(Error::Invalid(format!("log level {other}"))),
    })
}

/// The logger a config asks for. Only read once the ABI version matched (the layout is ours).
fn logger_from_c(c: &nmq_outbox_config) -> Result<Logger> {
    let max = level_from_c(c.log_level)?;
    let sink = c.log_fn.map(|f| {
        let cl = CLog { f, ctx: c.log_ctx };
        let sink: crate::log::LogFn =
            std::sync::Arc::new(move |level: Level, msg: &str| cl.call(level, msg));
        sink
    });
    Ok(Logger::new(sink, max))
}

unsafe fn config_from_c(c: &nmq_outbox_config, logger: Logger) -> Result<Config> {
    let mut cfg = Config::new(
        utf8(c.path, "config.path")?,
        utf8(c.bridge, "config.bridge")?,
    );
    cfg.max_messages = c.max_messages;
    cfg.max_bytes = c.max_bytes;
    cfg.max_message_bytes = c.max_message_bytes;
    cfg.group_commit_count = c.group_commit_count;
    cfg.group_commit_ms = c.group_commit_ms;
    cfg.window = c.window;
    cfg.dead_letter_limit = c.dead_letter_limit;
    cfg.max_attempts = c.max_attempts;
    cfg.backoff_ms = c.backoff_ms;
    cfg.store_qos0 = match c.store_qos0 {
        0 => false,
        1 => true,
        other => return Err(Error::Invalid(format!("config.store_qos0 {other}"))),
    };
    cfg.caller_commits = match c.caller_commits {
        0 => false,
        1 => true,
        other => return Err(Error::Invalid(format!("config.caller_commits {other}"))),
    };
    cfg.sync = match c.sync {
        NMQ_OUTBOX_SYNC_NORMAL => SyncMode::Normal,
        NMQ_OUTBOX_SYNC_FULL => SyncMode::Full,
        other => return Err(Error::Invalid(format!("config.sync {other}"))),
    };
    cfg.full_policy = match c.full_policy {
        NMQ_OUTBOX_DROP_OLDEST => FullPolicy::DropOldest,
        NMQ_OUTBOX_REJECT_NEW => FullPolicy::RejectNew,
        other => return Err(Error::Invalid(format!("config.full_policy {other}"))),
    };
    cfg.logger = logger;
    Ok(cfg)
}

/// Fills `*cfg` (borrowed for the call) with the defaults. NULL is ignored (logged).
/// Thread-safe: it touches nothing but `*cfg`.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_config_init(cfg: *mut nmq_outbox_config) {
    let _ = guard("nmq_outbox_config_init", None, || {
        non_null(cfg, "cfg")?;
        let d = Config::new("", "");
        *cfg = nmq_outbox_config {
            abi_version: NMQ_OUTBOX_ABI_VERSION,
            path: std::ptr::null(),
            bridge: std::ptr::null(),
            max_messages: 0,
            max_bytes: 0,
            max_message_bytes: d.max_message_bytes,
            group_commit_count: d.group_commit_count,
            group_commit_ms: d.group_commit_ms,
            window: d.window,
            sync: NMQ_OUTBOX_SYNC_NORMAL,
            full_policy: NMQ_OUTBOX_DROP_OLDEST,
            log_fn: None,
            log_ctx: std::ptr::null_mut(),
            log_level: NMQ_OUTBOX_LOG_INFO,
            caller_commits: 0,
            dead_letter_limit: d.dead_letter_limit,
            max_attempts: d.max_attempts,
            backoff_ms: d.backoff_ms,
            store_qos0: 0,
        };
        Ok(NMQ_OUTBOX_OK)
    });
}

/// Opens a handle. `cfg` and its strings are borrowed for the call (copied, never kept);
/// `*out` receives a handle the caller owns (free it with `nmq_outbox_free`), or NULL on error.
/// `cfg.log_fn`/`cfg.log_ctx` are kept until the handle is freed. Thread-safe; a second open of
/// the same bridge of the same file in this process gives EBUSY.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_open(
    cfg: *const nmq_outbox_config,
    out: *mut *mut nmq_outbox,
) -> nmq_outbox_result {
    guard("nmq_outbox_open", None, || {
        non_null(out, "out")?;
        *out = std::ptr::null_mut();
        non_null(cfg, "cfg")?;
        let c = &*cfg;
        if c.abi_version != NMQ_OUTBOX_ABI_VERSION {
            return Err(Error::AbiMismatch {
                expected: NMQ_OUTBOX_ABI_VERSION,
                got: c.abi_version,
            });
        }
        // From here on errors go to the configured logger (there is no handle yet).
        let logger = logger_from_c(c)?;
        match config_from_c(c, logger.clone()).and_then(Outbox::open) {
            Ok(ob) => {
                *out = Box::into_raw(Box::new(ob)) as *mut nmq_outbox;
                Ok(NMQ_OUTBOX_OK)
            }
            Err(e) => {
                // Logged here, on the configured logger (there is no handle).
                logger.log(level_of(&e), &format!("nmq_outbox_open: {e}"));
                Ok(code(&e))
            }
        }
    })
}

/// Commits and closes; the handle stays allocated (later calls give ECLOSED) and the caller
/// still owns it. `ob` is borrowed (NULL gives EINVAL). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_close(ob: *mut nmq_outbox) -> nmq_outbox_result {
    with_handle("nmq_outbox_close", ob, |h| h.close().map(|_| NMQ_OUTBOX_OK))
}

/// Closes if needed and frees the handle, which the caller gives up. NULL is a no-op. Must be
/// the last call on `ob`: not thread-safe with any other call on the same handle.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_free(ob: *mut nmq_outbox) {
    if ob.is_null() {
        return;
    }
    // SAFETY: `ob` came from `Box::into_raw` in `nmq_outbox_open` and is freed only here.
    let ob = Box::from_raw(ob as *mut Outbox);
    let log = ob.logger().clone();
    let _ = guard("nmq_outbox_free", Some(&log), move || {
        // Free has no result to return: the guard logs a failed final commit, once.
        let res = ob.close();
        drop(ob);
        res.map(|_| NMQ_OUTBOX_OK)
    });
}

/// Commits every pending write. `ob` is borrowed (NULL gives EINVAL). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_flush(ob: *mut nmq_outbox) -> nmq_outbox_result {
    with_handle("nmq_outbox_flush", ob, |h| h.flush().map(|_| NMQ_OUTBOX_OK))
}

/// Commits and closes every handle of this process that is still open and logs each one's
/// counters on its own logger. Handles stay allocated and owned by their callers.
/// Thread-safe; idempotent.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_close_all() {
    let _ = guard("nmq_outbox_close_all", None, || {
        crate::outbox::close_all();
        Ok(NMQ_OUTBOX_OK)
    });
}

/// For the host's exit: commits every open handle and makes each later append commit before
/// it returns; logs each one's counters. Handles stay open and owned by their callers.
/// Thread-safe; may be called again.
#[no_mangle]
pub unsafe extern "C" fn nmq_outbox_exit_all() {
    let _ = guard("nmq_outbox_exit_all", None, || {
        crate::outbox::exit_all();
        Ok(NMQ_OUTBOX_OK)
    });
}
