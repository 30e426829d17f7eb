//! The gateway's listeners and lifecycle, through its public entry point: start on ephemeral
//! ports, the admin endpoints, the HTTP index, start-up refusals, and shutdown.

mod common;

use common::{PATIENCE, get, test_config};
use gateway::config::ConfigError;
use gateway::server::{Gateway, StartError};

#[tokio::test]
async fn admin_endpoints_answer_while_running() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gw = Gateway::start(test_config(dir.path()))
        .await
        .expect("gateway starts");
    for addr in [gw.mqtt_addr(), gw.http_addr(), gw.admin_addr()] {
        assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    }

    let health = get(gw.admin_addr(), "/healthz", &[]).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.body.trim(), "ok");

    let ready = get(gw.admin_addr(), "/readyz", &[]).await;
    assert_eq!(ready.status, 200, "{}", ready.body);

    let metrics = get(gw.admin_addr(), "/metrics", &[]).await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .is_some_and(|v| v.starts_with("text/plain")),
        "{:?}",
        metrics.headers
    );
    for line in [
        "# TYPE gateway_uptime_seconds gauge",
        "gateway_ready 1",
        "gateway_mqtt_clients 0",
        "gateway_mqtt_ws_connections 0",
        "# TYPE gateway_log_released_seq gauge",
    ] {
        assert!(
            metrics.body.contains(line),
            "missing {line:?} in:\n{}",
            metrics.body
        );
    }

    let missing = get(gw.admin_addr(), "/nope", &[]).await;
    assert_eq!(missing.status, 404);

    let index = get(gw.http_addr(), "/", &[]).await;
    assert_eq!(index.status, 200);
    assert!(index.body.contains("/mqtt"), "{}", index.body);

    gw.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_every_listener() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gw = Gateway::start(test_config(dir.path()))
        .await
        .expect("gateway starts");
    let addrs = [gw.mqtt_addr(), gw.http_addr(), gw.admin_addr()];
    tokio::time::timeout(PATIENCE * 3, gw.shutdown())
        .await
        .expect("shutdown finishes");
    for addr in addrs {
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "{addr} still accepts connections after shutdown"
        );
    }
}

#[tokio::test]
async fn creates_the_data_directory_and_restarts_on_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("nested").join("data");
    let gw = Gateway::start(test_config(&data))
        .await
        .expect("gateway starts");
    let epoch = gw.log().epoch();
    gw.shutdown().await;
    assert!(data.is_dir());
    assert!(
        std::fs::read_dir(&data).expect("list data dir").count() > 0,
        "the log wrote nothing to the data directory"
    );

    let gw = Gateway::start(test_config(&data))
        .await
        .expect("gateway restarts on the same data");
    assert_eq!(
        gw.log().epoch(),
        epoch,
        "reopening the store kept its epoch"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn refuses_a_non_loopback_listener() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(dir.path());
    config.mqtt.listen = "0.0.0.0:0".into();
    match Gateway::start(config).await {
        Err(StartError::Config(ConfigError::Invalid { field, message })) => {
            assert_eq!(field, "mqtt.listen");
            assert!(message.contains("authentication"), "{message}");
        }
        Err(other) => panic!("expected a config error, got {other}"),
        Ok(gw) => {
            gw.shutdown().await;
            panic!("started on 0.0.0.0 without authentication");
        }
    }
    let entries = std::fs::read_dir(dir.path())
        .expect("list data dir")
        .count();
    assert_eq!(
        entries, 0,
        "a refused start must not touch the data directory"
    );
}

#[tokio::test]
async fn reports_a_taken_port_by_setting() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(dir.path());
    config.http.listen = taken.local_addr().expect("addr").to_string();
    match Gateway::start(config).await {
        Err(StartError::Bind { field, .. }) => assert_eq!(field, "http.listen"),
        Err(other) => panic!("expected a bind error, got {other}"),
        Ok(gw) => {
            gw.shutdown().await;
            panic!("started on a port that is taken");
        }
    }
}
