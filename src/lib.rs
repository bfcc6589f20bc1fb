//! nmq-outbox: a durable SQLite outbox for NanoMQ's MQTT bridge.
//!
//! * [`store`]: SQLite (schema, group commit, quarantine of corrupt files, the disk reserve).
//! * [`dead`]: dead letters, the rows the remote refused for good (their SQL).
//! * [`files`]: which database files this process holds (OS lock, identity by inode).
//! * [`outbox`]: the logic (routing, replay window, acks, limits, expiry, counters).
//! * `ffi`: the C ABI of `include/nmq_outbox.h`, a thin translation layer.

pub mod ack_order;
pub mod config;
pub mod counters;
pub mod dead;
pub mod duration;
pub mod error;
pub mod ffi;
pub mod files;
pub mod gate;
pub mod log;
pub mod metrics;
pub mod mqtt;
#[cfg(feature = "nng")]
pub mod nng;
pub mod notify;
pub mod outbox;
pub mod send_order;
pub mod stock;
pub mod store;

pub use config::{Config, FullPolicy, SyncMode};
pub use error::{Error, Result};
pub use log::{Level, LogFn, Logger};
pub use outbox::{
    AckKind, AckOutcome, Decision, Leased, LostReason, NewMessage, Outbox, RowKind, Stats,
};
