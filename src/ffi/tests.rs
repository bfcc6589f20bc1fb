//! The C ABI from Rust: values that must match the header, result codes.

use super::guard::*;
use super::sys::*;
use super::text::*;
use crate::error::{Error, Result};
use crate::log::{Level, Logger};
use crate::outbox::AckKind;
use std::ffi::CStr;

#[test]
fn log_levels_and_abi_match_the_header() {
    assert_eq!(Level::Error as nmq_outbox_log_level, NMQ_OUTBOX_LOG_ERROR);
    assert_eq!(Level::Warn as nmq_outbox_log_level, NMQ_OUTBOX_LOG_WARN);
    assert_eq!(Level::Info as nmq_outbox_log_level, NMQ_OUTBOX_LOG_INFO);
    assert_eq!(Level::Debug as nmq_outbox_log_level, NMQ_OUTBOX_LOG_DEBUG);
    assert_eq!(AckKind::PubAck as nmq_outbox_ack_type, NMQ_OUTBOX_PUBACK);
    assert_eq!(AckKind::PubRec as nmq_outbox_ack_type, NMQ_OUTBOX_PUBREC);
    assert_eq!(AckKind::PubComp as nmq_outbox_ack_type, NMQ_OUTBOX_PUBCOMP);
}

#[test]
fn every_error_has_a_distinct_negative_code_and_a_message() {
    let all = [
        Error::Invalid(String::new()),
        Error::AbiMismatch {
            expected: 1,
            got: 2,
        },
        Error::TooBig { len: 2, max: 1 },
        Error::Full,
        Error::NoSpace,
        Error::Io(String::new()),
        Error::Corrupt(String::new()),
        Error::Closed,
        Error::Busy(String::new()),
        Error::NoMemory(1),
        Error::Internal(String::new()),
        Error::Refused(String::new()),
    ];
    let codes: std::collections::BTreeSet<_> = all.iter().map(code).collect();
    assert_eq!(codes.len(), all.len());
    for c in codes {
        assert!(c < 0);
        let s = unsafe { CStr::from_ptr(nmq_outbox_strerror(c)) };
        assert_ne!(s.to_str().unwrap(), "unknown result code");
    }
}

#[test]
fn parse_duration_ms_leaves_the_output_alone_on_error() {
    let mut ms = 7u64;
    let rc = unsafe { nmq_outbox_parse_duration_ms(c"2m".as_ptr(), 3_600_000, &mut ms) };
    assert_eq!((rc, ms), (NMQ_OUTBOX_OK, 120_000));
    for text in [c"18446744073709552s", c"2h", c"", c"-1", c"1.5s"] {
        let mut ms = 7u64;
        let rc = unsafe { nmq_outbox_parse_duration_ms(text.as_ptr(), 3_600_000, &mut ms) };
        assert_eq!((rc, ms), (NMQ_OUTBOX_EINVAL, 7), "{text:?}");
    }
    let rc = unsafe { nmq_outbox_parse_duration_ms(std::ptr::null(), 1, &mut ms) };
    assert_eq!(rc, NMQ_OUTBOX_EINVAL);
    let rc = unsafe { nmq_outbox_parse_duration_ms(c"1".as_ptr(), 1, std::ptr::null_mut()) };
    assert_eq!(rc, NMQ_OUTBOX_EINVAL);
}

#[test]
fn a_panic_becomes_einternal() {
    let rc = guard("test", None, || panic!("boom"));
    assert_eq!(rc, NMQ_OUTBOX_EINTERNAL);
}

#[test]
fn a_panic_and_an_error_are_logged_on_the_given_logger() {
    use std::sync::{Arc, Mutex};
    let lines = Arc::new(Mutex::new(Vec::<(Level, String)>::new()));
    let sink = lines.clone();
    let log = Logger::new(
        Some(Arc::new(move |l: Level, m: &str| {
            sink.lock().unwrap().push((l, m.to_string()))
        })),
        Level::Debug,
    );
    let rc = guard(
        "nmq_outbox_x",
        Some(&log),
        || -> Result<nmq_outbox_result> { panic!("boom {}", 7) },
    );
    assert_eq!(rc, NMQ_OUTBOX_EINTERNAL);
    let rc = guard("nmq_outbox_y", Some(&log), || Err(Error::Closed));
    assert_eq!(rc, NMQ_OUTBOX_ECLOSED);
    assert_eq!(
        guard("nmq_outbox_z", Some(&log), || Ok(NMQ_OUTBOX_EMPTY)),
        1
    );
    let lines = lines.lock().unwrap();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0].0, Level::Error);
    assert!(lines[0].1.starts_with("nmq_outbox_x: ") && lines[0].1.contains("boom 7"));
    assert_eq!(lines[1].0, Level::Warn);
    assert!(lines[1].1.starts_with("nmq_outbox_y: "));
}
