//! The order in which a connection's packets were first sent, from their packet ids.
//!
//! A client hands out packet ids in increasing order, wrapping after 65535 (0 is no id), and a
//! resend keeps its id: so among the exchanges still open on a connection, the oldest is the
//! one whose id lies furthest behind the id the client gives next. Timestamps do not tell:
//! NanoNNG's resend timer rewrites a message's timestamp at each resend, and a message sent
//! first and resent later then looks newer than the one sent after it (issue 20, requeue
//! order). At most 65535 exchanges can be open at once, so the distance is unambiguous.

/// Indexes into `packet_ids`, oldest first, given the id the client hands out next.
/// Equal ids keep their given order.
pub fn oldest_first(packet_ids: &[u16], next_packet_id: u16) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..packet_ids.len()).collect();
    idx.sort_by_key(|&i| std::cmp::Reverse(age(packet_ids[i], next_packet_id)));
    idx
}

/// How many ids were handed out since `id` (1: the last one), skipping 0. A message without a
/// packet id (0) counts as the newest.
fn age(id: u16, next: u16) -> u32 {
    let (id, next) = (u32::from(id), u32::from(next));
    if id == 0 {
        0
    } else if next > id {
        next - id
    } else {
        // wrapped: ids id..=65535, then 1..next (0 is never handed out)
        (65536 - id) + next.saturating_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_is_furthest_behind_the_next_id() {
        assert_eq!(oldest_first(&[7, 5, 6], 8), [1, 2, 0]);
    }

    #[test]
    fn order_holds_across_the_wrap() {
        // sent: 65534, 65535, 1, 2; next 3
        assert_eq!(oldest_first(&[1, 65535, 2, 65534], 3), [3, 1, 0, 2]);
        // next id itself wrapped to 1
        assert_eq!(oldest_first(&[65535, 65534], 1), [1, 0]);
    }

    #[test]
    fn equal_ids_keep_their_order_and_empty_is_empty() {
        assert_eq!(oldest_first(&[4, 4], 9), [0, 1]);
        assert_eq!(oldest_first(&[0, 4], 9), [1, 0], "no packet id: the newest");
        assert!(oldest_first(&[], 1).is_empty());
    }

    #[test]
    fn ages_are_distinct_for_every_id_but_the_next() {
        let next = 300u16;
        let mut seen = std::collections::HashSet::new();
        for id in 1..=65535u16 {
            if id != next {
                assert!(seen.insert(age(id, next)), "id {id}");
            }
        }
        assert_eq!(age(next - 1, next), 1);
    }
}
