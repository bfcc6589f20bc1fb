//! Tests of the merge of a batch's writes.

use super::*;

fn row(seq: i64, packet_id: u16, released: bool) -> Row {
    Row {
        seq,
        qos: 2,
        expires_at: 0,
        enqueued_at: 0,
        packet_id,
        released,
        attempts: 0,
        data: vec![1],
    }
}

/// A batch that failed to commit goes back before the newer writes; when those hold a
/// session reset, the older packet ids and PUBRECs belong to the session that ended.
#[test]
fn a_session_reset_wins_over_the_older_writes_it_is_merged_with() {
    let older = Batch {
        inserts: vec![row(1, 5, true)],
        binds: vec![(2, 6)],
        releases: vec![3],
        ..Batch::default()
    };
    let mut newer = Batch::default();
    newer.reset_session();
    newer.binds.push((4, 9)); // new session
    newer.releases.push(4);
    older.prepend_to(&mut newer);
    assert!(newer.reset_all);
    assert_eq!(newer.inserts, vec![row(1, 0, false)]);
    assert_eq!((newer.binds, newer.releases), (vec![(4, 9)], vec![4]));
    // An older reset stays with the newer writes after it.
    let mut older = Batch::default();
    older.reset_session();
    let mut newer = Batch {
        binds: vec![(7, 1)],
        ..Batch::default()
    };
    older.prepend_to(&mut newer);
    assert!(newer.reset_all && newer.binds == vec![(7, 1)]);
    assert_eq!((newer.len(), newer.acks(), newer.messages()), (2, 2, 0));
}
