//! The one error type of the crate. Every fallible call returns [`Result`]; the C ABI maps each
//! variant to one `nmq_outbox_result` code (see `Error::code` in `ffi`).

use std::fmt;

/// Everything that can go wrong, one variant per C result code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// An argument is invalid: NULL pointer, QoS outside 0..=2, empty bridge name, bad config.
    Invalid(String),
    /// The config was built for another ABI version of the header.
    AbiMismatch { expected: u32, got: u32 },
    /// The message is larger than `max_message_bytes`.
    TooBig { len: usize, max: usize },
    /// The bridge's limit is reached and the policy is `reject_new`.
    Full,
    /// The disk (or the file system quota) is full; nothing was accepted.
    NoSpace,
    /// Any other I/O or SQLite error.
    Io(String),
    /// The database file is corrupt.
    Corrupt(String),
    /// The handle was closed.
    Closed,
    /// This bridge of this file is already open in this process, or another process holds
    /// the file.
    Busy(String),
    /// Memory for this many bytes could not be had (the call failed, nothing was changed).
    NoMemory(usize),
    /// A bug: a panic was caught.
    Internal(String),
    /// The remote refused the connection (a CONNACK with a reason code >= 0x80, or a 3.1.1
    /// return code other than 0): the link stays down.
    Refused(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid(s) => write!(f, "invalid argument: {s}"),
            Error::AbiMismatch { expected, got } => {
                write!(f, "ABI version mismatch: library {expected}, caller {got}")
            }
            Error::TooBig { len, max } => {
                write!(f, "message of {len} bytes exceeds the limit of {max}")
            }
            Error::Full => write!(f, "outbox full (policy reject_new)"),
            Error::NoSpace => write!(f, "disk full"),
            Error::Io(s) => write!(f, "I/O error: {s}"),
            Error::Corrupt(s) => write!(f, "database corrupt: {s}"),
            Error::Closed => write!(f, "outbox closed"),
            Error::Busy(s) => write!(f, "busy: {s}"),
            Error::NoMemory(n) => write!(f, "out of memory (allocating {n} bytes)"),
            Error::Internal(s) => write!(f, "internal error: {s}"),
            Error::Refused(s) => write!(f, "refused by the remote: {s}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ffi::ErrorCode;
        match e.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => Error::NoSpace,
            Some(ErrorCode::OutOfMemory) => Error::NoMemory(0),
            Some(ErrorCode::DatabaseCorrupt) | Some(ErrorCode::NotADatabase) => {
                Error::Corrupt(e.to_string())
            }
            _ => Error::Io(e.to_string()),
        }
    }
}
