//! The C ABI of `include/nmq_outbox.h`: a thin translation layer over [`crate::outbox`].
//!
//! Every export runs its body through [`guard`], which catches panics (they become
//! `NMQ_OUTBOX_EINTERNAL`, never an unwind into C), maps [`Error`] to one result code in
//! [`code`], and logs every error through the handle's logger. The types of the exports are
//! bindgen's translation of the header, and `build.rs` checks every signature against it.
//!
//! Ownership and threading rules are stated once, at the top of the header.
//!
//! One concern per file: [`guard`] (what every export shares), `handle` (config, open,
//! close), `link`, `queue` (routing, the replay, acks, QoS 0), `stats`, `commit`, `text`,
//! `ack_order`, `gate` (the ack-after-commit gate); `checks` holds every signature of the
//! header against them. No file imports
//! one that imports it back: each takes what it needs from `guard` and `sys`.

#![allow(clippy::missing_safety_doc)]

// The safety contract of every export (valid or NULL pointers, who owns what, which calls may
// run concurrently) is stated once, in the OWNERSHIP and THREADS sections of the header.

/// bindgen's translation of `include/nmq_outbox.h` (types and constants).
#[allow(
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    dead_code
)]
#[allow(clippy::all)]
pub mod sys {
    include!(concat!(env!("OUT_DIR"), "/header.rs"));
}

pub mod ack_order;
mod checks;
pub mod commit;
pub mod gate;
pub mod guard;
pub mod handle;
pub mod link;
pub mod queue;
pub mod stats;
#[cfg(test)]
mod tests;
pub mod text;

// Every export, as `nmq_outbox::ffi::<name>` (Rust callers and tests).
pub use ack_order::*;
pub use commit::*;
pub use gate::*;
pub use guard::code;
pub use handle::*;
pub use link::*;
pub use queue::*;
pub use stats::*;
pub use text::*;
