//! Durations in configuration text, the way NanoMQ writes them: `"<n>"` (milliseconds),
//! `"<n>ms"`, `"<n>s"`, `"<n>m"`, `"<n>h"`, `"<n>d"`, to milliseconds, with a bound.
//!
//! One parser for every host that reads such keys (NanoNNG's `conf_ver2.c` calls it through
//! `nmq_outbox_parse_duration_ms`), so that the range check is done once and right: the
//! number and the unit are multiplied with overflow checks before they are compared with the
//! bound (a `strtoull` and a plain multiply wrap, and `"18446744073709551615h"` then passes a
//! check of `<= 3600000`).

use crate::error::{Error, Result};

/// The units, longest spelling first (`"ms"` before `"m"`), and their size in ms.
const UNITS: [(&str, u64); 5] = [
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

fn not_a_duration(text: &[u8]) -> Error {
    Error::Invalid(format!(
        "\"{}\" is not a duration (<n>, <n>ms, <n>s, <n>m, <n>h or <n>d)",
        String::from_utf8_lossy(text)
    ))
}

/// `text` as milliseconds, at most `max_ms`.
///
/// Grammar: optional spaces or tabs, one or more ASCII digits, optional spaces or tabs, an
/// optional unit (`ms`, `s`, `m`, `h`, `d`; lower case; none means ms), optional spaces or
/// tabs. No sign, no fraction, no exponent. Leading zeros are fine. `Error::Invalid` for
/// anything else, for a value that does not fit in 64 bits (before or after the unit), and
/// for a value above `max_ms`.
pub fn parse_ms(text: &[u8], max_ms: u64) -> Result<u64> {
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = text.iter().position(|b| !blank(b)).unwrap_or(text.len());
    let end = text
        .iter()
        .rposition(|b| !blank(b))
        .map_or(start, |i| i + 1);
    let s = &text[start..end];

    let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return Err(not_a_duration(text));
    }
    let mut n: u64 = 0;
    for b in &s[..digits] {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or_else(|| Error::Invalid(format!("duration \"{}\" is too large", show(text))))?;
    }
    let rest = &s[digits..];
    let unit = &rest[rest.iter().take_while(|b| blank(b)).count()..];
    let factor = if unit.is_empty() {
        1
    } else {
        UNITS
            .iter()
            .find(|(name, _)| name.as_bytes() == unit)
            .map(|(_, f)| *f)
            .ok_or_else(|| not_a_duration(text))?
    };
    let ms = n
        .checked_mul(factor)
        .ok_or_else(|| Error::Invalid(format!("duration \"{}\" is too large", show(text))))?;
    if ms > max_ms {
        return Err(Error::Invalid(format!(
            "duration \"{}\" is {ms} ms, above the maximum of {max_ms} ms",
            show(text)
        )));
    }
    Ok(ms)
}

fn show(text: &[u8]) -> String {
    String::from_utf8_lossy(text).into_owned()
}

/// The connect timeout of a bridge's dialer, in ms, from its configured value
/// (`bridges.mqtt.<name>.connect_timeout`) and its keepalive in seconds: a negative value (the
/// key absent) means 1.5 x keepalive, at least 5 s and at most 30 s; 0 means none (the kernel's
/// SYN retries, stock behaviour); a positive value is taken as it is, up to `i32::MAX` (nng's
/// `nng_duration` is an `int32_t`). Never negative, never overflows.
pub fn connect_timeout_ms(configured_ms: i64, keepalive_s: u32) -> i32 {
    let ms = if configured_ms < 0 {
        (keepalive_s as i64 * 1500).clamp(5_000, 30_000)
    } else {
        configured_ms
    };
    ms.min(i32::MAX as i64) as i32
}

/// The wait in ms before a bridge dials again after `failures` dials in a row that failed at
/// once (a hybrid bridge's switch to its next address, issue 22): 100 ms, doubled per failure,
/// capped at `max_ms` (the bridge's `backoff_max`; 0: 5 s). Never 0, never overflows.
pub fn retry_backoff_ms(failures: u32, max_ms: u32) -> u32 {
    let cap = if max_ms == 0 { 5_000 } else { max_ms.max(100) };
    // 100 << 40 fits a u64 and is above any u32 cap
    (100u64 << failures.min(40)).min(cap as u64) as u32
}

#[cfg(test)]
mod tests {
    #[test]
    fn retry_backoff_doubles_from_100_ms_up_to_the_cap() {
        assert_eq!(retry_backoff_ms(0, 5_000), 100);
        assert_eq!(retry_backoff_ms(1, 5_000), 200);
        assert_eq!(retry_backoff_ms(5, 5_000), 3_200);
        assert_eq!(retry_backoff_ms(6, 5_000), 5_000);
        assert_eq!(retry_backoff_ms(u32::MAX, 5_000), 5_000);
        assert_eq!(
            retry_backoff_ms(25, 5_000),
            5_000,
            "100 << 25 is beyond a u32"
        );
        assert_eq!(retry_backoff_ms(30, u32::MAX), u32::MAX);
        assert_eq!(retry_backoff_ms(3, 0), 800, "0: the default cap, 5 s");
        assert_eq!(retry_backoff_ms(10, 0), 5_000);
        assert_eq!(retry_backoff_ms(0, 1), 100, "never below the first wait");
        for cap in [60_000, u32::MAX] {
            for f in 0..64 {
                let ms = retry_backoff_ms(f, cap);
                assert!((100..=cap).contains(&ms), "{f}: {ms}");
                assert!(
                    ms >= retry_backoff_ms(f.saturating_sub(1), cap),
                    "{f}: not monotonic"
                );
            }
        }
    }

    #[test]
    fn connect_timeout_follows_keepalive_within_5_and_30_s_unless_set() {
        assert_eq!(connect_timeout_ms(-1, 0), 5_000);
        assert_eq!(connect_timeout_ms(-1, 3), 5_000);
        assert_eq!(connect_timeout_ms(-1, 10), 15_000);
        assert_eq!(connect_timeout_ms(-1, 60), 30_000);
        assert_eq!(connect_timeout_ms(-1, u32::MAX), 30_000);
        assert_eq!(connect_timeout_ms(i64::MIN, 10), 15_000);
        assert_eq!(connect_timeout_ms(0, 60), 0);
        assert_eq!(connect_timeout_ms(2_500, 60), 2_500);
        assert_eq!(connect_timeout_ms(i64::MAX, 60), i32::MAX);
    }

    use super::*;

    const HOUR: u64 = 3_600_000;

    fn ok(text: &str, max: u64) -> u64 {
        match parse_ms(text.as_bytes(), max) {
            Ok(ms) => ms,
            Err(e) => panic!("{text:?}: {e}"),
        }
    }

    fn bad(text: &str, max: u64) -> String {
        match parse_ms(text.as_bytes(), max) {
            Ok(ms) => panic!("{text:?} gave {ms} ms, wanted an error"),
            Err(Error::Invalid(why)) => why,
            Err(e) => panic!("{text:?}: {e}, wanted Invalid"),
        }
    }

    #[test]
    fn every_unit() {
        assert_eq!(ok("1500", HOUR), 1500);
        assert_eq!(ok("1500ms", HOUR), 1500);
        assert_eq!(ok("5s", HOUR), 5_000);
        assert_eq!(ok("2m", HOUR), 120_000);
        assert_eq!(ok("1h", HOUR), HOUR);
        assert_eq!(ok("1d", u64::MAX), 86_400_000);
        assert_eq!(ok("0", HOUR), 0);
        assert_eq!(ok("0s", HOUR), 0);
        assert_eq!(ok("0d", HOUR), 0);
        assert_eq!(ok("007s", HOUR), 7_000);
    }

    #[test]
    fn spaces_around_the_number_and_the_unit() {
        assert_eq!(ok(" 5s", HOUR), 5_000);
        assert_eq!(ok("5s ", HOUR), 5_000);
        assert_eq!(ok("5 s", HOUR), 5_000);
        assert_eq!(ok("\t500 ms\t", HOUR), 500);
        assert_eq!(ok("  42  ", HOUR), 42);
        bad("5 0s", HOUR);
        bad("5m s", HOUR);
        bad("5\ns", HOUR);
    }

    #[test]
    fn the_bound_is_inclusive_and_checked_after_the_unit() {
        assert_eq!(ok("3600000", HOUR), HOUR);
        assert_eq!(ok("60m", HOUR), HOUR);
        assert_eq!(ok("3600s", HOUR), HOUR);
        let why = bad("3600001", HOUR);
        assert!(why.contains("above the maximum of 3600000 ms"), "{why}");
        bad("3601s", HOUR);
        bad("61m", HOUR);
        bad("2h", HOUR);
        bad("1d", HOUR);
        assert_eq!(ok("0", 0), 0);
        bad("1", 0);
        assert_eq!(ok("18446744073709551615", u64::MAX), u64::MAX);
        assert_eq!(ok("18446744073709551615ms", u64::MAX), u64::MAX);
    }

    /// What the C parser of the NanoNNG patch let through: `strtoull` then a plain multiply,
    /// which wraps modulo 2^64; these wrap to 384, 8384, 2048384, 3584000 and 34448384 ms, the
    /// first four within its `<= 3600000` check.
    #[test]
    fn a_value_that_overflows_is_refused_not_wrapped() {
        for text in [
            "18446744073709552s",
            "307445734561826m",
            "5124095576031h",
            "5124095576030432h",
            "213503982335d",
            "18446744073709551615h",
            "18446744073709551615s",
            "18446744073709551615m",
            "18446744073709551615d",
            "50000000000000000s",
        ] {
            let why = bad(text, HOUR);
            assert!(why.contains("too large"), "{text}: {why}");
            let why = bad(text, u64::MAX);
            assert!(why.contains("too large"), "{text}: {why}");
        }
        // fits in u64, far above the bound
        let why = bad("5000000000000000s", HOUR);
        assert!(why.contains("above the maximum"), "{why}");
        // more digits than u64 holds, with or without a unit
        for text in [
            "18446744073709551616",
            "18446744073709551616ms",
            "99999999999999999999999999999999s",
        ] {
            let why = bad(text, u64::MAX);
            assert!(why.contains("too large"), "{text}: {why}");
        }
    }

    #[test]
    fn empty_negative_and_garbage_are_refused() {
        for text in [
            "",
            " ",
            "\t",
            "s",
            "ms",
            "-1",
            "-1s",
            "+1",
            "+5s",
            "1.5s",
            "1e3",
            "0x10",
            "5S",
            "5Ms",
            "5sec",
            "5 seconds",
            "5ss",
            "5msx",
            "s5",
            "five",
            "5s5",
            "5,000",
            "١٢",
            "5\u{a0}s",
        ] {
            let why = bad(text, u64::MAX);
            assert!(why.contains("is not a duration"), "{text:?}: {why}");
        }
        assert!(parse_ms(b"5\xffs", HOUR).is_err());
        assert!(parse_ms(b"\xff", HOUR).is_err());
    }

    #[test]
    fn long_input_is_fine() {
        let zeros = "0".repeat(10_000) + "1s";
        assert_eq!(ok(&zeros, HOUR), 1_000);
        let spaces = " ".repeat(10_000) + "1s" + &" ".repeat(10_000);
        assert_eq!(ok(&spaces, HOUR), 1_000);
    }
}
