//! What the daemon keeps on disk, in `state_dir`: the partner table (`peers.json`, for a
//! restart to find its partners), the pinned keys (`known_peers`), and the next run's
//! first initiation counter (`counter`). Files are written by one writer task, off the
//! engine's task, each atomically (temporary file, fsync, rename); a burst of changes to
//! the partner table is one write.

use anyhow::{Context, Result};
use std::{
    collections::HashMap,
    io::Write,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};
use vip_proto::{Fqdn, KnownPeers, engine::Partners};

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Reads the first initiation counter of this run and reserves a block of them: the file
/// then says where the next run starts, so that no counter is used twice, whatever the
/// clock does and however the daemon ends. Without a file (a new host), counters start
/// from the time, so that a host reinstalled with its old key starts above what its
/// partners remember.
pub fn reserve_counters(path: &Path) -> Result<u64> {
    let start = match std::fs::read_to_string(path) {
        Ok(text) => text
            .trim()
            .parse::<u64>()
            .with_context(|| format!("{} does not hold a counter", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secs = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_secs());
            secs << 32
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let next = start.saturating_add(vip_proto::engine::COUNTER_BLOCK);
    write_atomic(path, format!("{next}\n").as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(start)
}

/// The partner table a previous run saved, if any (a table it cannot read is ignored,
/// with a warning: its partners will negotiate again).
pub fn load_partners(path: &Path) -> Option<Partners> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            warn!("ignoring {}: {e}", path.display());
            return None;
        }
    };
    match serde_json::from_str::<Partners>(&text) {
        Ok(mut p) => {
            p.reindex();
            Some(p)
        }
        Err(e) => {
            warn!(
                "ignoring {} (written by another version?): {e}",
                path.display()
            );
            None
        }
    }
}

/// The pinned keys, by name.
pub type Pins = HashMap<Fqdn, [u8; 32]>;

/// A change to the known-peers file.
enum PinChange {
    Pin(Fqdn, [u8; 32]),
    /// Replace the key pinned for a name (one atomic write).
    Repin(Fqdn, [u8; 32]),
    Unpin(Fqdn),
    /// Read the file again (an administrator edited it); answer with its pins.
    Reload(oneshot::Sender<Result<Pins>>),
}

/// The writer task's handle.
#[derive(Clone)]
pub struct Writer {
    partners: watch::Sender<Option<String>>,
    pins: mpsc::UnboundedSender<PinChange>,
}

impl Writer {
    /// Starts the writer; it saves the partner table to `partners_path` and pins keys in
    /// `known`.
    pub fn start(
        partners_path: PathBuf,
        known: KnownPeers,
    ) -> (Self, tokio::task::JoinHandle<Result<()>>) {
        let (partners, mut partners_rx) = watch::channel(None::<String>);
        let (pins, mut pins_rx) = mpsc::unbounded_channel::<PinChange>();
        let task = tokio::spawn(async move {
            let mut known = Some(known);
            loop {
                tokio::select! {
                    changed = partners_rx.changed() => {
                        changed.context("the partner table's sender is gone")?;
                        // The latest table only: a burst of changes is one write.
                        let Some(json) = partners_rx.borrow_and_update().clone() else { continue };
                        let path = partners_path.clone();
                        let written = tokio::task::spawn_blocking(move || write_atomic(&path, json.as_bytes())).await?;
                        if let Err(e) = written {
                            warn!("cannot save {}: {e}", partners_path.display());
                        }
                    }
                    change = pins_rx.recv() => {
                        let Some(change) = change else { anyhow::bail!("the pin sender is gone") };
                        if let PinChange::Reload(reply) = change {
                            let path = known.as_ref().context("the known-peers file was lost")?.path().to_owned();
                            let loaded = tokio::task::spawn_blocking(move || KnownPeers::load(&path)).await?;
                            // A file that does not load changes nothing: the old one stays.
                            let answer = loaded
                                .map(|file| {
                                    let pins = file.iter().map(|(f, k)| (f.clone(), *k)).collect();
                                    known = Some(file);
                                    pins
                                })
                                .map_err(|e| anyhow::anyhow!("{e}"));
                            let _ = reply.send(answer);
                            continue;
                        }
                        let mut file = known.take().context("the known-peers file was lost")?;
                        let (file, result) = tokio::task::spawn_blocking(move || {
                            let r = match &change {
                                PinChange::Pin(fqdn, key) => file.pin(fqdn.clone(), *key),
                                PinChange::Repin(fqdn, key) => file.repin(fqdn.clone(), *key),
                                PinChange::Unpin(fqdn) => file.unpin(fqdn).map(drop),
                                PinChange::Reload(_) => Ok(()),
                            };
                            (file, r.map(|()| change))
                        })
                        .await?;
                        known = Some(file);
                        match result {
                            Ok(PinChange::Pin(fqdn, _)) => info!(peer = %fqdn, "key pinned in the known-peers file"),
                            Ok(PinChange::Repin(fqdn, _)) => info!(peer = %fqdn, "key replaced in the known-peers file"),
                            Ok(PinChange::Unpin(fqdn)) => info!(peer = %fqdn, "key removed from the known-peers file"),
                            Ok(PinChange::Reload(_)) => {}
                            Err(e) => warn!("cannot change the known-peers file: {e}"),
                        }
                    }
                }
            }
        });
        (Self { partners, pins }, task)
    }

    pub fn save_partners(&self, json: String) {
        let _ = self.partners.send(Some(json));
    }

    pub fn pin(&self, fqdn: Fqdn, key: [u8; 32]) {
        let _ = self.pins.send(PinChange::Pin(fqdn, key));
    }

    pub fn repin(&self, fqdn: Fqdn, key: [u8; 32]) {
        let _ = self.pins.send(PinChange::Repin(fqdn, key));
    }

    pub fn unpin(&self, fqdn: Fqdn) {
        let _ = self.pins.send(PinChange::Unpin(fqdn));
    }

    /// Reads the known-peers file again, after the pins queued before; its pins. On an
    /// error (a line that does not parse) the file in use stays as it was.
    pub async fn reload_pins(&self) -> Result<Pins> {
        let (reply, answer) = oneshot::channel();
        self.pins
            .send(PinChange::Reload(reply))
            .map_err(|_| anyhow::anyhow!("the state writer has stopped"))?;
        answer
            .await
            .map_err(|_| anyhow::anyhow!("the state writer has stopped"))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_reserved_in_blocks_and_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("counter");
        let first = reserve_counters(&path).unwrap();
        assert!(first > 1 << 60, "a new host starts from the time");
        let second = reserve_counters(&path).unwrap();
        assert_eq!(second, first + vip_proto::engine::COUNTER_BLOCK);
        std::fs::write(&path, "garbage").unwrap();
        assert!(reserve_counters(&path).is_err());
    }

    #[tokio::test]
    async fn after_a_reload_the_next_pin_keeps_the_administrators_edit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_peers");
        let name = |n: &str| Fqdn::new(n).unwrap();
        let mut file = KnownPeers::load(&path).unwrap();
        file.pin(name("b.vip.test"), [2; 32]).unwrap();
        file.pin(name("c.vip.test"), [3; 32]).unwrap();
        let (writer, _task) = Writer::start(dir.path().join("peers.json"), file);
        // The administrator deletes B's line while vipd runs, and reloads.
        let text = std::fs::read_to_string(&path).unwrap();
        let edited: String = text
            .lines()
            .filter(|l| !l.starts_with("b.vip.test "))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&path, edited).unwrap();
        let pins = writer.reload_pins().await.unwrap();
        assert_eq!(pins.keys().collect::<Vec<_>>(), [&name("c.vip.test")]);
        // The next pin rewrites the file from what was read again, not from the old text.
        writer.pin(name("d.vip.test"), [4; 32]);
        writer.reload_pins().await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("d.vip.test ") && text.contains("c.vip.test "),
            "{text}"
        );
        assert!(!text.contains("b.vip.test "), "{text}");
        // A file that does not parse is refused, and the one in use stays.
        std::fs::write(&path, "b.vip.test x25519 nonsense\n").unwrap();
        assert!(writer.reload_pins().await.is_err());
    }
}
