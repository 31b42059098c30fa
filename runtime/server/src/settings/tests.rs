//! Loading settings: defaults, layering, flat and sectioned TOML, and the
//! setting named by each error. Flags and `VIGIL_*` variables are tested
//! where they are parsed, in the `vigil` binary.

use std::time::Duration;

use super::*;

fn from_toml(text: &str) -> Result<Settings, SettingsError> {
    Settings::from_layer(Layer::from_toml(text)?)
}

fn err(text: &str) -> SettingsError {
    from_toml(text).expect_err(text)
}

#[test]
fn defaults_are_the_documented_ones() {
    let s = Settings::from_layer(Layer::default()).expect("defaults are valid");
    assert_eq!(s.server.listen.to_string(), "127.0.0.1:9092");
    assert_eq!(s.server.admin_listen.to_string(), "127.0.0.1:9644");
    assert_eq!(s.server.advertised_listener, None);
    assert!(s.server.auto_create_topics);
    assert_eq!((s.server.default_partitions, s.server.node_id), (1, 0));
    assert_eq!(s.storage.data_dir, PathBuf::from("./vigil-data"));
    assert_eq!(s.storage.wal, WalKind::Local);
    assert_eq!(s.storage.wal_object_window_ms, 5);
    assert_eq!(s.storage.upload_interval_ms, 1_000);
    assert_eq!(s.storage.lease_interval_ms, 1_000);
    assert!(!s.storage.takeover);
    assert_eq!(s.groups.group_initial_rebalance_delay_ms, 300);
    let url = s.storage.object_store_url().expect("url");
    assert!(url.starts_with("file:///"), "{url}");
    assert!(url.ends_with("/vigil-data/objects"), "{url}");
}

#[test]
fn flat_keys_and_sections_mean_the_same() {
    let flat = from_toml(
        r#"
        listen = "127.0.0.1:1000"
        data-dir = "/tmp/x"
        wal = "object"
        wal-object-window-ms = 7
        group-initial-rebalance-delay-ms = 0
        auto-create-topics = false
        "#,
    )
    .expect("flat");
    let sectioned = from_toml(
        r#"
        [server]
        listen = "127.0.0.1:1000"
        auto-create-topics = false
        [storage]
        data-dir = "/tmp/x"
        wal = "object"
        wal-object-window-ms = 7
        [groups]
        group-initial-rebalance-delay-ms = 0
        "#,
    )
    .expect("sectioned");
    for s in [&flat, &sectioned] {
        assert_eq!(s.server.listen.port(), 1000);
        assert!(!s.server.auto_create_topics);
        assert_eq!(s.storage.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(s.storage.wal, WalKind::Object);
        assert_eq!(s.storage.wal_object_window_ms, 7);
        assert_eq!(s.groups.group_initial_rebalance_delay_ms, 0);
    }
    assert_eq!(flat.server, sectioned.server);
    assert_eq!(flat.storage, sectioned.storage);
    assert_eq!(flat.groups, sectioned.groups);
}

#[test]
fn later_layers_win_key_by_key() {
    let file = Layer::from_toml(
        r#"
        listen = "127.0.0.1:1000"
        node-id = 3
        [storage]
        upload-interval-ms = 50
        "#,
    )
    .expect("file");
    let mut flags = Layer::default();
    flags
        .set("server", "listen", "127.0.0.1:2000".into())
        .expect("set");
    flags.set("storage", "takeover", true.into()).expect("set");
    let s = Settings::from_layer(file.overlaid_by(flags)).expect("valid");
    assert_eq!(s.server.listen.port(), 2000, "the later layer wins");
    assert_eq!(
        s.server.node_id, 3,
        "the earlier layer fills what the later leaves"
    );
    assert_eq!(s.storage.upload_interval(), Duration::from_millis(50));
    assert!(s.storage.takeover);
    assert_eq!(s.server.admin_listen.port(), 9644, "defaults fill the rest");
}

#[test]
fn each_bad_value_names_its_setting() {
    for (text, setting) in [
        ("listen = \"nonsense\"", "listen"),
        ("[server]\nadmin-listen = 9644", "admin-listen"),
        ("advertised-listener = \"no-port\"", "advertised-listener"),
        ("default-partitions = 0", "default-partitions"),
        ("default-partitions = 10001", "default-partitions"),
        ("node-id = \"one\"", "node-id"),
        ("auto-create-topics = \"maybe\"", "auto-create-topics"),
        ("data-dir = \"\"", "data-dir"),
        ("wal = \"tape\"", "wal"),
        ("wal-object-window-ms = -1", "wal-object-window-ms"),
        ("upload-interval-ms = 0", "upload-interval-ms"),
        ("lease-interval-ms = 0", "lease-interval-ms"),
        ("takeover = 1", "takeover"),
        (
            "group-initial-rebalance-delay-ms = \"300ms\"",
            "group-initial-rebalance-delay-ms",
        ),
    ] {
        let e = err(text);
        assert_eq!(e.setting, setting, "{text}: {e}");
        assert!(
            e.to_string()
                .starts_with(&format!("invalid setting {setting}: ")),
            "{e}"
        );
    }
}

#[test]
fn unknown_keys_and_sections_are_rejected_by_name() {
    assert_eq!(err("listen-addr = \"127.0.0.1:1\"").setting, "listen-addr");
    let e = err("[server]\ndata-dir = \"/tmp/x\"");
    assert_eq!(e.setting, "data-dir", "a key in the wrong section: {e}");
    assert!(e.reason.contains("unknown field"), "{e}");
    assert_eq!(err("[broker]\nlisten = \"127.0.0.1:1\"").setting, "broker");
    assert_eq!(err("server = 1").setting, "server");
    let twice = err("listen = \"127.0.0.1:1\"\n[server]\nlisten = \"127.0.0.1:2\"");
    assert_eq!(
        twice.setting, "listen",
        "flat and sectioned in one file: {twice}"
    );
    assert_eq!(err("listen = ").setting, "config", "TOML syntax");
}

#[test]
fn a_file_is_read_and_a_missing_one_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("vigil.toml");
    std::fs::write(&path, "node-id = 7\n[storage]\nwal = \"object\"\n").expect("write");
    let s = Settings::load(Some(&path), Layer::default()).expect("load");
    assert_eq!((s.server.node_id, s.storage.wal), (7, WalKind::Object));
    let e = Settings::load(Some(&dir.path().join("missing.toml")), Layer::default())
        .expect_err("missing file");
    assert_eq!(e.setting, "config");
    assert!(e.reason.contains("missing.toml"), "{e}");
}

#[test]
fn sections_know_their_keys() {
    let [server, storage, groups, admin, security, detectors] = sections();
    assert!(security.1.contains(&"tls-client-ca"), "{:?}", security.1);
    assert!(
        admin.1.contains(&"admin-header-read-timeout-ms"),
        "{:?}",
        admin.1
    );
    assert!(
        detectors.1.contains(&"rebuild-records"),
        "{:?}",
        detectors.1
    );
    assert_eq!(server.0, "server");
    assert!(server.1.contains(&"advertised-listener"), "{:?}", server.1);
    assert!(storage.1.contains(&"object-store") && storage.1.contains(&"takeover"));
    assert_eq!(
        groups.1,
        &[
            "group-initial-rebalance-delay-ms",
            "offsets-retention-minutes",
            "offsets-retention-check-interval-ms"
        ]
    );
    // Every default key is a known key (the Option ones have no default).
    for (name, keys) in sections() {
        let defaults = match name {
            "server" => toml::Table::try_from(ServerSettings::default()),
            "storage" => toml::Table::try_from(StorageSettings::default()),
            "groups" => toml::Table::try_from(GroupSettings::default()),
            "admin" => toml::Table::try_from(AdminSettings::default()),
            "security" => toml::Table::try_from(super::SecuritySettings::default()),
            _ => toml::Table::try_from(vigil_engine::EngineSettings::default()),
        }
        .expect("serializable");
        for k in defaults.keys() {
            assert!(
                keys.contains(&k.as_str()),
                "{name}.{k} missing from {keys:?}"
            );
        }
    }
}

#[test]
fn storage_and_group_settings_convert_in_one_place() {
    let s = from_toml(
        "wal = \"object\"\nwal-object-window-ms = 9\nupload-interval-ms = 20\nlease-interval-ms = 30\ntakeover = true\ngroup-initial-rebalance-delay-ms = 40",
    )
    .expect("valid");
    let log = s.storage.log_config("vigil-0@here".into());
    assert_eq!(log.broker_id, "vigil-0@here");
    assert!(matches!(
        log.wal_mode,
        vigil_storage::config::WalMode::Object { window } if window == Duration::from_millis(9)
    ));
    assert_eq!(log.upload_interval, Duration::from_millis(20));
    assert_eq!(log.lease_interval, Duration::from_millis(30));
    assert!(log.takeover);
    assert_eq!(
        s.groups.group_config().initial_rebalance_delay,
        Duration::from_millis(40)
    );
}

#[test]
fn detector_engine_settings_come_from_their_section_and_are_validated() {
    let s = from_toml("[detectors]\nrebuild-records = 7\nreplay-threads = 1\n").expect("valid");
    assert_eq!(s.detectors.rebuild_records, 7);
    assert_eq!(s.detectors.replay_threads, 1);
    assert_eq!(s.detectors.checkpoint_interval_ms, 1000, "default kept");
    // Flat, like every other section's keys.
    let flat = from_toml("rebuild-records = 9\n").expect("valid");
    assert_eq!(flat.detectors.rebuild_records, 9);
    assert_eq!(
        err("[detectors]\ncheckpoint-interval-ms = 0\n").setting,
        "checkpoint-interval-ms"
    );
}

/// Issue 11 item 6: the upload backlog limit and the object store client's
/// timeouts and retries, with their defaults, bounds and where they go.
#[test]
fn outage_settings_load_validate_and_reach_the_log_and_the_store() {
    let d = Settings::from_layer(Layer::default()).expect("defaults");
    assert_eq!(d.storage.max_unuploaded_bytes, 1 << 30);
    assert_eq!(
        d.storage.store_options(),
        vigil_storage::StoreOptions::default(),
        "the defaults are object_store's own"
    );
    let s = from_toml(
        "[storage]\nmax-unuploaded-bytes = 2097152\nobject-store-timeout-ms = 1500\n\
         object-store-connect-timeout-ms = 250\nobject-store-max-retries = 0\n\
         object-store-retry-timeout-ms = 9000\nobject-store-backoff-initial-ms = 5\n\
         object-store-backoff-max-ms = 50\n",
    )
    .expect("valid");
    assert_eq!(
        s.storage.log_config("b".into()).max_unuploaded_bytes,
        2 << 20
    );
    let o = s.storage.store_options();
    assert_eq!(
        (o.timeout, o.connect_timeout, o.max_retries, o.retry_timeout),
        (
            Duration::from_millis(1500),
            Duration::from_millis(250),
            0,
            Duration::from_secs(9)
        )
    );
    assert_eq!(
        (o.backoff_initial, o.backoff_max),
        (Duration::from_millis(5), Duration::from_millis(50))
    );
    for (text, setting) in [
        ("max-unuploaded-bytes = 1000", "max-unuploaded-bytes"),
        ("max-unuploaded-bytes = -1", "max-unuploaded-bytes"),
        ("object-store-timeout-ms = 0", "object-store-timeout-ms"),
        (
            "object-store-connect-timeout-ms = 0",
            "object-store-connect-timeout-ms",
        ),
        (
            "object-store-retry-timeout-ms = 0",
            "object-store-retry-timeout-ms",
        ),
        (
            "object-store-backoff-initial-ms = 0",
            "object-store-backoff-initial-ms",
        ),
        (
            "object-store-backoff-initial-ms = 100\nobject-store-backoff-max-ms = 10",
            "object-store-backoff-max-ms",
        ),
        (
            "object-store-max-retries = \"many\"",
            "object-store-max-retries",
        ),
    ] {
        assert_eq!(err(text).setting, setting, "{text}");
    }
}

#[test]
fn bloat_limits_are_validated_and_reach_the_components() {
    let s = Settings::default();
    assert_eq!(s.storage.max_partitions, 10_000);
    assert_eq!(s.groups.offsets_retention_minutes, 7 * 24 * 60);
    assert_eq!(
        s.groups.group_config().offsets_retention,
        std::time::Duration::from_secs(7 * 24 * 3600)
    );
    assert_eq!(s.storage.log_config("b".into()).max_partitions, 10_000);
    for (toml, setting) in [
        ("max-partitions = 0", "max-partitions"),
        ("offsets-retention-minutes = 0", "offsets-retention-minutes"),
        (
            "offsets-retention-check-interval-ms = 0",
            "offsets-retention-check-interval-ms",
        ),
    ] {
        let layer = Layer::from_toml(toml).expect("parses");
        match Settings::from_layer(layer) {
            Err(e) => assert_eq!(e.setting, setting, "{toml}"),
            Ok(_) => panic!("{toml} was accepted"),
        }
    }
}

#[test]
fn the_wal_group_hold_is_off_by_default_bounded_and_reaches_the_log() {
    let s = Settings::default();
    assert_eq!(s.storage.wal_group_hold_us, 0);
    let s = from_toml("[storage]\nwal-group-hold-us = 1500\n").expect("sectioned");
    assert_eq!(
        s.storage.log_config("b".into()).wal_group_hold,
        Duration::from_micros(1500)
    );
    match from_toml("[storage]\nwal-group-hold-us = 50001\n") {
        Err(e) => assert_eq!(e.setting, "wal-group-hold-us"),
        Ok(_) => panic!("a hold above 50 ms was accepted"),
    }
}

#[test]
fn admin_limits_load_sectioned_or_flat_and_bad_ones_are_named() {
    let s = from_toml("[admin]\nadmin-max-connections = 8\nadmin-header-read-timeout-ms = 2000\n")
        .expect("sectioned");
    let limits = s.admin.limits();
    assert_eq!(limits.max_connections, 8);
    assert_eq!(limits.header_read_timeout, Duration::from_secs(2));
    assert_eq!(limits.json_body, 1 << 20);
    let flat = from_toml("admin-max-concurrent-requests = 3\n").expect("flat");
    assert_eq!(flat.admin.limits().max_concurrent, 3);
    for bad in [
        "admin-max-connections = 0",
        "admin-header-read-timeout-ms = 0",
        "admin-json-body-bytes = 10",
    ] {
        let e = err(bad);
        assert_eq!(e.setting, bad.split(' ').next().unwrap_or_default(), "{e}");
    }
    let e = err("[detectors]\nmax-compiled-modules = 0\n");
    assert_eq!(e.setting, "max-compiled-modules", "{e}");
}

#[test]
fn connection_and_request_limits_have_kafka_defaults_and_bounds() {
    let s = Settings::from_layer(Layer::default()).expect("defaults are valid");
    let c = &s.server;
    assert_eq!(c.message_max_bytes, 1_048_588, "Kafka's message.max.bytes");
    assert_eq!(c.fetch_max_bytes, 52_428_800, "Kafka's fetch.max.bytes");
    assert_eq!(c.connections_max_idle_ms, 600_000, "Kafka's idle default");
    assert_eq!(c.fetch_max_wait(), Duration::from_secs(30));
    assert_eq!(c.request_read_timeout(), Duration::from_secs(30));
    assert_eq!(
        (c.max_connections, c.max_connections_per_ip),
        (4_096, 1_024)
    );
    assert_eq!(c.max_in_flight_requests_per_connection, 64);
    // Derived from message.max.bytes, far below Kafka's 100 MiB.
    assert_eq!(c.socket_request_max_bytes, None);
    assert_eq!(c.max_frame_bytes(), 8 * 1_048_588 + 1024 * 1024);
    let derived = from_toml("message-max-bytes = 100000").expect("valid");
    assert_eq!(derived.server.max_frame_bytes(), 800_000 + 1024 * 1024);
    let set = from_toml("[server]\nsocket-request-max-bytes = 2000000").expect("valid");
    assert_eq!(set.server.max_frame_bytes(), 2_000_000);
    for (text, setting) in [
        ("fetch-max-bytes = 0", "fetch-max-bytes"),
        ("fetch-max-wait-ms = 0", "fetch-max-wait-ms"),
        ("max-connections = 0", "max-connections"),
        ("max-connections-per-ip = 0", "max-connections-per-ip"),
        ("connections-max-idle-ms = 0", "connections-max-idle-ms"),
        ("request-read-timeout-ms = 0", "request-read-timeout-ms"),
        (
            "max-in-flight-requests-per-connection = 0",
            "max-in-flight-requests-per-connection",
        ),
        ("message-max-bytes = 10", "message-max-bytes"),
        (
            "socket-request-max-bytes = 1000",
            "socket-request-max-bytes",
        ),
        (
            "socket-request-max-bytes = 4000000000",
            "socket-request-max-bytes",
        ),
        ("max-connections = -1", "max-connections"),
    ] {
        let e = err(text);
        assert_eq!(e.setting, setting, "{text}: {e}");
    }
}
