//! Starting and stopping the in-process broker.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio::runtime::Runtime;
use vigil_server::server::Running;
use vigil_server::settings::{Settings, WalKind};
use vigil_server::Components;

use crate::SHUTDOWN_LIMIT;

// ---------------------------------------------------------------- broker

pub(crate) struct BrokerOpts<'a> {
    pub(crate) data_dir: &'a Path,
    pub(crate) objects: &'a str,
    pub(crate) wal_object: bool,
    pub(crate) wal_window_ms: u64,
    pub(crate) upload_interval_ms: Option<u64>,
}

pub(crate) fn broker_config(o: &BrokerOpts<'_>) -> Result<(Settings, Components)> {
    let mut settings = Settings::embedded(o.data_dir);
    settings.storage.object_store = Some(o.objects.to_string());
    if let Some(ms) = o.upload_interval_ms {
        settings.storage.upload_interval_ms = ms;
    }
    if o.wal_object {
        settings.storage.wal = WalKind::Object;
        settings.storage.wal_object_window_ms = o.wal_window_ms;
    } else {
        settings.storage.wal = WalKind::Local;
    }
    settings.validate().context("broker settings")?;
    let components = Components::from_settings(&settings).context("broker components")?;
    Ok((settings, components))
}

pub(crate) fn start_broker(rt: &Runtime, o: &BrokerOpts<'_>) -> Result<Running> {
    let (settings, components) = broker_config(o)?;
    rt.block_on(vigil_server::server::start(settings, components))
        .with_context(|| format!("cannot start a broker on {}", o.objects))
}

pub(crate) fn shutdown(rt: &Runtime, running: Running) -> Result<Duration> {
    crate::common::server::shutdown(rt, running, SHUTDOWN_LIMIT)
}

pub(crate) fn file_url(dir: &Path) -> Result<String> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(format!("file://{}", dir.display()))
}
