//! The counters of a bridge as an operator reads them: a JSON object (for NanoMQ's REST API,
//! `GET /api/v4/bridges/<name>`) and Prometheus' text format (for `GET /api/v4/prometheus`).
//! Pure formatting, no I/O; what is shown and under which name comes from the one list of
//! counters in [`crate::counters`].

use crate::counters::{Json, Prom, Value, FIELDS};
use crate::outbox::Stats;
use std::fmt::Write;

/// JSON string literal of `s` (quotes and escapes as RFC 8259 requires).
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One bridge's outbox as a JSON object, e.g.
/// `{"bridge":"emqx1","file":"/var/lib/nanomq/nmq_outbox-emqx1.db","link_up":true,...}`:
/// every counter of [`FIELDS`] with a JSON key, in the list's order, the drops in a
/// `"dropped"` object at the place of the first of them.
pub fn json(bridge: &str, file: &str, s: &Stats) -> String {
    fn value(v: Value) -> String {
        match v {
            Value::U(n) => n.to_string(),
            Value::I(n) => n.to_string(),
            Value::B(b) => b.to_string(),
        }
    }
    let drops: Vec<String> = FIELDS
        .iter()
        .filter_map(|f| match f.json {
            Json::Dropped(k) => Some(format!("{}:{}", json_str(k), value((f.get)(s)))),
            _ => None,
        })
        .collect();
    let mut out = format!(
        "{{\"bridge\":{},\"file\":{}",
        json_str(bridge),
        json_str(file)
    );
    let mut dropped_done = false;
    for f in FIELDS {
        match f.json {
            Json::Top(k) => {
                let _ = write!(out, ",{}:{}", json_str(k), value((f.get)(s)));
            }
            Json::Dropped(_) if !dropped_done => {
                dropped_done = true;
                let _ = write!(out, ",\"dropped\":{{{}}}", drops.join(","));
            }
            _ => {}
        }
    }
    out.push('}');
    out
}

/// Label value in Prometheus' text format (backslash, quote and newline escaped).
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Every bridge's outbox in Prometheus' text exposition format: one family per counter or
/// gauge of [`FIELDS`] (`nanomq_bridge_outbox_*`), each with its HELP and TYPE lines once and
/// one sample per bridge, labelled `bridge="<name>"`; the drops in one family
/// `nanomq_bridge_outbox_dropped_total`, labelled by `reason` too.
pub fn prometheus(bridges: &[(&str, &Stats)]) -> String {
    let mut out = String::new();
    for f in FIELDS {
        if let Prom::Family {
            name,
            kind,
            help,
            div,
        } = f.prom
        {
            let _ = writeln!(out, "# HELP nanomq_bridge_outbox_{name} {help}");
            let _ = writeln!(out, "# TYPE nanomq_bridge_outbox_{name} {kind}");
            for (bridge, s) in bridges {
                let _ = writeln!(
                    out,
                    "nanomq_bridge_outbox_{name}{{bridge=\"{}\"}} {}",
                    label(bridge),
                    (f.get)(s).as_u64() / div.max(1)
                );
            }
        }
    }
    out.push_str(
        "# HELP nanomq_bridge_outbox_dropped_total Messages dropped or refused, by reason.\n",
    );
    out.push_str("# TYPE nanomq_bridge_outbox_dropped_total counter\n");
    for (bridge, s) in bridges {
        for f in FIELDS {
            if let Prom::Drop(reason) = f.prom {
                let _ = writeln!(
                    out,
                    "nanomq_bridge_outbox_dropped_total{{bridge=\"{}\",reason=\"{reason}\"}} {}",
                    label(bridge),
                    (f.get)(s).as_u64()
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Stats {
        Stats {
            messages: 812,
            bytes: 81_200,
            inflight: 32,
            enqueued: 1170,
            acked: 358,
            resent: 3,
            dropped_full: 1,
            dropped_expired: 2,
            dropped_rejected: 3,
            dropped_malformed: 4,
            dropped_unwritten: 5,
            refused_nospace: 6,
            lost_fallback_queue: 7,
            lost_fallback_send: 8,
            oldest_age_ms: 95_500,
            committed_seq: 1170,
            link_up: true,
            window: 32,
            space_low: false,
            qos_downgraded: 9,
            retain_cleared: 10,
            dead_letters: 11,
            dead_lettered: 12,
            dropped_dead_letters: 13,
            backoffs: 14,
            backing_off: true,
            probing: true,
            acks_ignored: 15,
            dropped_qos0: 16,
            fallbacks: 17,
        }
    }

    #[test]
    fn json_has_every_counter_and_escapes_names() {
        let j = json("em\"qx\\1\n", "/var/lib/nanomq/x.db", &sample());
        assert!(j.starts_with("{\"bridge\":\"em\\\"qx\\\\1\\n\",\"file\":\"/var/lib/nanomq/x.db\""));
        for part in [
            "\"link_up\":true",
            "\"messages\":812",
            "\"inflight\":32",
            "\"oldest_age_ms\":95500",
            concat!(
                "\"dropped\":{\"full\":1,\"expired\":2,\"rejected\":3,\"malformed\":4,",
                "\"unwritten\":5,\"fallback_queue\":7,\"fallback_send\":8,",
                "\"dead_letters\":13}"
            ),
            "\"refused_nospace\":6",
            "\"space_low\":false",
            "\"committed_seq\":1170,\"qos_downgraded\":9,\"retain_cleared\":10,",
            "\"dead_letters\":11,\"dead_lettered\":12,\"backoffs\":14,\"backing_off\":true,",
            "\"probing\":true,\"acks_ignored\":15,\"dropped_qos0\":16,\"fallbacks\":17}",
        ] {
            assert!(j.contains(part), "{part} in {j}");
        }
        assert_eq!(j.matches('{').count(), j.matches('}').count());
        assert_eq!(json_str("\u{1}"), "\"\\u0001\"");
    }

    #[test]
    fn prometheus_groups_each_family_once_with_a_sample_per_bridge() {
        let a = sample();
        let mut b = sample();
        b.messages = 0;
        b.link_up = false;
        let text = prometheus(&[("emqx1", &a), ("b\"2", &b)]);
        assert!(text.ends_with('\n'));
        assert!(text.contains("nanomq_bridge_outbox_messages{bridge=\"emqx1\"} 812\n"));
        assert!(text.contains("nanomq_bridge_outbox_messages{bridge=\"b\\\"2\"} 0\n"));
        assert!(text.contains("nanomq_bridge_outbox_oldest_age_seconds{bridge=\"emqx1\"} 95\n"));
        assert!(text.contains(
            "nanomq_bridge_outbox_dropped_total{bridge=\"emqx1\",reason=\"refused_nospace\"} 6\n"
        ));
        assert!(text.contains(
            "nanomq_bridge_outbox_dropped_total{bridge=\"emqx1\",reason=\"fallback_queue\"} 7\n"
        ));
        assert!(text.contains(
            "nanomq_bridge_outbox_dropped_total{bridge=\"b\\\"2\",reason=\"fallback_send\"} 8\n"
        ));
        // Each family's HELP and TYPE appear once, before all of its samples.
        let mut seen = std::collections::HashSet::new();
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap().to_string();
                assert!(seen.insert(name.clone()), "{name} twice");
                current = name;
            } else if !line.starts_with('#') {
                let name = line.split('{').next().unwrap();
                assert_eq!(name, current, "{line} outside its family");
            }
        }
        assert!(text.contains(
            "nanomq_bridge_outbox_dropped_total{bridge=\"emqx1\",reason=\"dead_letters\"} 13\n"
        ));
        assert!(text.contains("nanomq_bridge_outbox_dead_letters{bridge=\"emqx1\"} 11\n"));
        assert!(text
            .contains("nanomq_bridge_outbox_dropped_total{bridge=\"emqx1\",reason=\"qos0\"} 16\n"));
        assert!(text.contains("nanomq_bridge_outbox_fallbacks_total{bridge=\"emqx1\"} 17\n"));
        assert_eq!(seen.len(), 18);
    }
}
