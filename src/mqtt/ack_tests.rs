//! Tests of the acks read from the raw packet (`parse_ack`).

use super::*;
use crate::outbox::AckKind;

#[test]
fn an_ack_is_read_from_the_raw_packet() {
    let p = |h: &[u8], b: &[u8], v| parse_ack(h, b, v).ok();
    assert_eq!(
        p(&[0x40, 2], &[1, 2], 4),
        Some((AckKind::PubAck, 0x0102, 0))
    );
    assert_eq!(
        p(&[0x50, 3], &[0, 9, 0x87], 5),
        Some((AckKind::PubRec, 9, 0x87))
    );
    assert_eq!(
        p(&[0x50, 3], &[0, 9, 0x87], 4),
        Some((AckKind::PubRec, 9, 0))
    );
    assert_eq!(p(&[0x70, 2], &[0, 1], 5), Some((AckKind::PubComp, 1, 0)));
    assert_eq!(p(&[0x62, 2], &[0, 1], 5), None, "a PUBREL");
    assert_eq!(p(&[0x40, 1], &[0], 5), None, "no packet id");
    assert_eq!(p(&[], &[0, 1], 5), None);
}
