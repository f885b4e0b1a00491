//! `vipctl reload` and SIGHUP: the configuration file and the known-peers file read again.
//! The pinned keys become the file's (an administrator may delete or add lines while vipd
//! runs; before this, the daemon wrote its old lines back at the next pin); the settings a
//! running engine can change take effect (timers, garbage collection, limits); the others
//! are named as needing a restart and keep their running values. A file that does not load
//! changes nothing. The known-peers file is read in the engine's task (`Input::Reload`),
//! so that no pin made meanwhile is lost.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use tokio::sync::oneshot;
use vip_proto::engine::PinsReloaded;

use crate::config::Config;
use crate::driver::{Handle, Input};

/// What a reload did.
#[derive(Debug)]
pub struct Reloaded {
    pub pins: PinsReloaded,
    /// Settings that differ in the file and take effect only at the next start.
    pub need_restart: Vec<&'static str>,
}

/// Reads the files again on request.
pub struct Reloader {
    /// The configuration file vipd started from.
    pub path: PathBuf,
    /// The configuration vipd started with: what the daemon itself cannot change is
    /// compared with it.
    pub running: Config,
    pub home_vip: Ipv4Addr,
    pub engine: Handle,
    pub running_reload: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub async fn reload(&self) -> Result<Reloaded> {
        // One at a time (SIGHUPs and clients may overlap): a later reload is never
        // overtaken by an earlier one.
        let _one = self.running_reload.lock().await;
        let (path, home_vip) = (self.path.clone(), self.home_vip);
        // Files, and /proc/cpuinfo for the engine's view of AES: off the runtime's threads.
        let (config, engine_config) = tokio::task::spawn_blocking(move || {
            let config = Config::load(&path)?;
            let engine_config = config.engine(home_vip);
            anyhow::Ok((config, engine_config))
        })
        .await??;
        let mut need_restart = self.running.need_restart(&config);
        let (reply, answer) = oneshot::channel();
        self.engine
            .send(Input::Reload {
                config: Box::new(engine_config),
                reply,
            })
            .await;
        let (engine_need_restart, pins) = answer
            .await
            .context("the engine has stopped")?
            .map_err(|e| anyhow::anyhow!(e))?;
        need_restart.extend(engine_need_restart);
        Ok(Reloaded { pins, need_restart })
    }
}
