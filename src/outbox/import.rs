//! Stock NanoMQ's cache taken over: the rows its SQLite bridge cache (`mqtt_client.db`) left
//! for this bridge, appended here and then deleted there.

use super::*;

impl Outbox {
    /// Takes over the rows stock NanoMQ left for this bridge in its own cache (`mqtt_client.db`,
    /// `config_name` = NanoMQ's bridge name): appended in their order (the sent-but-unacked
    /// ones first), committed, then deleted there. A row that is not a PUBLISH is counted in
    /// `dropped_malformed` and deleted too. A crash between the commit and the delete imports
    /// those rows again at the next attach (duplicates, never a loss). Returns how many were
    /// imported; a missing file or bridge imports nothing.
    pub fn import_stock(&self, path: &std::path::Path, config_name: &str) -> Result<u64> {
        self.shared.check_open()?;
        let Some(mut cache) = crate::stock::StockCache::open(path, config_name)? else {
            return Ok(0);
        };
        let rows = cache.rows()?;
        if rows.is_empty() {
            return Ok(0);
        }
        let (mut imported, mut malformed) = (0u64, 0u64);
        for r in &rows {
            let parsed = crate::stock::split(&r.data).and_then(|(h, b)| {
                crate::mqtt::parse_publish(h, b, r.proto_ver)
                    .ok()
                    .map(|info| (h, b, info))
            });
            let Some((h, b, info)) = parsed else {
                malformed += 1;
                continue;
            };
            let mut data = Vec::new();
            data.try_reserve_exact(h.len() + b.len())
                .map_err(|_| Error::NoMemory(h.len() + b.len()))?;
            data.extend_from_slice(h);
            data.extend_from_slice(b);
            self.shared
                .insert(info.qos, info.expiry_secs, Cow::Owned(data), None)?;
            imported += 1;
        }
        // On disk here before the rows go there.
        self.shared.flush_inner()?;
        if malformed > 0 {
            let mut st = lock(&self.shared.state);
            st.dropped_malformed = st.dropped_malformed.saturating_add(malformed);
        }
        cache.remove(&rows)?;
        self.shared.log.info(&format!(
            "bridge {:?}: took over {imported} messages from the stock cache {}{}",
            self.shared.cfg.bridge,
            path.display(),
            if malformed > 0 {
                format!(" ({malformed} that were not a PUBLISH dropped)")
            } else {
                String::new()
            }
        ));
        Ok(imported)
    }
}
