//! Starting and stopping the in-process broker.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio::runtime::Runtime;
use vigil_server::config::FileConfig;
use vigil_server::server::Running;

use crate::SHUTDOWN_LIMIT;

// ---------------------------------------------------------------- broker

pub(crate) struct BrokerOpts<'a> {
    pub(crate) data_dir: &'a Path,
    pub(crate) objects: &'a str,
    pub(crate) wal_object: bool,
    pub(crate) wal_window_ms: u64,
    pub(crate) upload_interval_ms: Option<u64>,
}

pub(crate) fn broker_config(o: &BrokerOpts<'_>) -> Result<vigil_server::config::ServeConfig> {
    FileConfig {
        listen: Some("127.0.0.1:0".into()),
        admin_listen: Some("127.0.0.1:0".into()),
        data_dir: Some(o.data_dir.to_path_buf()),
        object_store: Some(o.objects.to_string()),
        upload_interval_ms: o.upload_interval_ms,
        wal: Some(if o.wal_object { "object" } else { "local" }.into()),
        wal_object_window_ms: o.wal_object.then_some(o.wal_window_ms),
        ..Default::default()
    }
    .resolve()
    .context("broker settings")
}

pub(crate) fn start_broker(rt: &Runtime, o: &BrokerOpts<'_>) -> Result<Running> {
    let cfg = broker_config(o)?;
    rt.block_on(vigil_server::server::start(cfg))
        .with_context(|| format!("cannot start a broker on {}", o.objects))
}

pub(crate) fn shutdown(rt: &Runtime, running: Running) -> Result<Duration> {
    crate::common::server::shutdown(rt, running, SHUTDOWN_LIMIT)
}

pub(crate) fn file_url(dir: &Path) -> Result<String> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(format!("file://{}", dir.display()))
}
