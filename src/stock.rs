//! The cache stock NanoMQ keeps for a bridge (NanoNNG's `mqtt_client.db`,
//! `src/supplemental/mqtt/mqtt_qos_db.c`, the same in 0.24.6 and 0.25.x), read so that the rows
//! it left behind can be taken over by the outbox when it attaches to that bridge.
//!
//! Tables: `t_client_info(id, config_name UNIQUE, ...)`, the messages queued while offline
//! `t_client_offline_msg(id, data, info_id, proto_ver, ts)` and the messages sent but not
//! acknowledged `t_client_msg(id, packet_id, pipe_id, data, info_id, proto_ver, ts)`. `data` is
//! `nni_mqtt_msg_serialize()`: a big-endian u32 header length, the header, a big-endian u32 body
//! length, the body, then a u64 timestamp and a u64 aio address (ignored here).

use crate::error::{Error, Result};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::time::Duration;

/// One row of the stock cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockRow {
    /// `t_client_msg` (sent, not acknowledged) or `t_client_offline_msg`.
    pub sent: bool,
    pub id: i64,
    pub proto_ver: u8,
    pub data: Vec<u8>,
}

/// The (header, body) of a serialized stock message; None when the blob is malformed.
pub fn split(blob: &[u8]) -> Option<(&[u8], &[u8])> {
    let u32_at = |b: &[u8], at: usize| -> Option<usize> {
        let s = b.get(at..at.checked_add(4)?)?;
        Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize)
    };
    let hlen = u32_at(blob, 0)?;
    let header = blob.get(4..4usize.checked_add(hlen)?)?;
    let at = 4 + hlen;
    let blen = u32_at(blob, at)?;
    let body = blob.get(at + 4..(at + 4).checked_add(blen)?)?;
    Some((header, body))
}

/// The stock cache of one bridge (`config_name`, NanoMQ's bridge name).
pub struct StockCache {
    conn: Connection,
    info_id: Option<i64>,
}

impl StockCache {
    /// Opens the file if it exists (None otherwise). Not an nmq-outbox file: NanoNNG's.
    pub fn open(path: &Path, config_name: &str) -> Result<Option<StockCache>> {
        if !path.exists() {
            return Ok(None);
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_millis(
            crate::config::DEFAULT_BUSY_TIMEOUT_MS as u64,
        ))?;
        let has_info: bool = conn
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 't_client_info'",
                [],
                |_| Ok(true),
            )
            .optional()?
            .unwrap_or(false);
        let info_id = if has_info {
            conn.query_row(
                "SELECT id FROM t_client_info WHERE config_name = ?1",
                params![config_name],
                |r| r.get(0),
            )
            .optional()?
        } else {
            None
        };
        Ok(Some(StockCache { conn, info_id }))
    }

    fn has_table(&self, name: &str) -> Result<bool> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
                params![name],
                |_| Ok(true),
            )
            .optional()?
            .unwrap_or(false))
    }

    /// Every row of the bridge, oldest first: the sent-but-unacknowledged ones, then the
    /// offline queue, each by id.
    pub fn rows(&self) -> Result<Vec<StockRow>> {
        let Some(info) = self.info_id else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (table, sent) in [("t_client_msg", true), ("t_client_offline_msg", false)] {
            if !self.has_table(table)? {
                continue;
            }
            let mut sel = self.conn.prepare(&format!(
                "SELECT id, coalesce(proto_ver, 4), data FROM {table} WHERE info_id = ?1
                 ORDER BY id"
            ))?;
            let rows = sel.query_map(params![info], |r| {
                Ok(StockRow {
                    sent,
                    id: r.get(0)?,
                    proto_ver: r.get::<_, i64>(1)?.clamp(0, 255) as u8,
                    data: r.get::<_, Option<Vec<u8>>>(2)?.unwrap_or_default(),
                })
            })?;
            for r in rows {
                out.push(r?);
            }
        }
        Ok(out)
    }

    /// Deletes the given rows, in one transaction.
    pub fn remove(&mut self, rows: &[StockRow]) -> Result<()> {
        let tx = self.conn.transaction()?;
        for (table, sent) in [("t_client_msg", true), ("t_client_offline_msg", false)] {
            let ids: Vec<i64> = rows
                .iter()
                .filter(|r| r.sent == sent)
                .map(|r| r.id)
                .collect();
            if ids.is_empty() {
                continue;
            }
            let mut del = tx.prepare(&format!("DELETE FROM {table} WHERE id = ?1"))?;
            for id in ids {
                del.execute(params![id]).map_err(Error::from)?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_reads_the_serialized_layout_and_refuses_short_blobs() {
        let mut b = Vec::new();
        b.extend_from_slice(&2u32.to_be_bytes());
        b.extend_from_slice(&[0x32, 0x05]);
        b.extend_from_slice(&5u32.to_be_bytes());
        b.extend_from_slice(b"abcde");
        b.extend_from_slice(&[0; 16]);
        assert_eq!(split(&b), Some((&[0x32u8, 0x05][..], &b"abcde"[..])));
        assert_eq!(split(&b[..10]), None);
        assert_eq!(split(&[]), None);
        let mut huge = u32::MAX.to_be_bytes().to_vec();
        huge.extend_from_slice(&[0; 8]);
        assert_eq!(split(&huge), None);
    }
}
