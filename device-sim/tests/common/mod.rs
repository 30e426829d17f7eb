//! Fixtures of the verify and proxy tests: a real Mosquitto on a free loopback port, a TCP
//! echo server, and a publisher of crafted stamped streams (rumqttc, MQTT 5, QoS 1, in order).
//!
//! Mosquitto comes from Debian's `mosquitto` package; `./scripts/test.sh` installs it.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use device_sim::stamp::Stamp;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A Mosquitto process owned by the test; killed on drop.
pub struct Mosquitto {
    child: Child,
    /// Its MQTT port on 127.0.0.1.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_mosquitto() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(["/usr/sbin".into(), "/usr/local/sbin".into()]);
    for dir in dirs {
        let candidate = dir.join("mosquitto");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "the `mosquitto` broker is not installed: run `./scripts/test.sh`, which installs \
         Debian's mosquitto (or `apt-get install mosquitto`)"
    );
}

/// Starts Mosquitto on a free loopback port; returns once it accepts TCP connections.
pub fn start_mosquitto() -> Mosquitto {
    let binary = find_mosquitto();
    let mut failures = Vec::new();
    // A port found free may be taken before Mosquitto binds it: retry a few times.
    for _ in 0..3 {
        let port = match StdListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
            Ok(addr) => addr.port(),
            Err(e) => panic!("cannot find a free port: {e}"),
        };
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let conf = dir.path().join("mosquitto.conf");
        let log = dir.path().join("mosquitto.log");
        let text =
            format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n");
        std::fs::write(&conf, text).unwrap_or_else(|e| panic!("write {}: {e}", conf.display()));
        let log_file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("log: {e}"));
        let err_file = log_file.try_clone().unwrap_or_else(|e| panic!("log: {e}"));
        let mut child = Command::new(&binary)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::from(log_file))
            .stderr(Stdio::from(err_file))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        for _ in 0..500 {
            if let Ok(Some(status)) = child.try_wait() {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                failures.push(format!("port {port}: exited with {status}: {text}"));
                break;
            }
            if StdStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return Mosquitto {
                    child,
                    port,
                    _dir: dir,
                };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        failures.push(format!("port {port}: not accepting connections after 10 s"));
    }
    panic!("mosquitto did not start:\n{}", failures.join("\n"));
}

/// A TCP echo server on a free loopback port; aborted on drop.
pub struct Echo {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts an echo server: every connection gets back what it sends.
pub async fn start_echo() -> Echo {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind echo: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("echo address: {e}"));
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            conns.spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    Echo { addr, task }
}

/// One message of a crafted stream.
#[derive(Debug, Clone, Copy)]
pub enum Crafted<'a> {
    /// Stamped in the JSON payload.
    Payload(&'a str, u64),
    /// Stamped in MQTT 5 user properties (the payload is not JSON).
    Props(&'a str, u64),
    /// No stamp at all.
    Unstamped,
}

/// Publishes `stream` in order to `topic/<device>` at QoS 1 (MQTT 5), `pace` apart, and
/// waits until every PUBACK is in.
pub async fn publish_stream(
    broker: SocketAddr,
    topic: &str,
    stream: &[Crafted<'_>],
    pace: Duration,
) {
    let id = format!("pub-{}-{}", std::process::id(), topic.replace('/', "-"));
    let mut opts = MqttOptions::new(id, broker.ip().to_string(), broker.port());
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut el) = AsyncClient::new(opts, 1000);
    let expected = stream.len();
    let poller = tokio::spawn(async move {
        let mut acks = 0;
        while acks < expected {
            match el.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => acks += 1,
                Ok(_) => {}
                Err(e) => panic!("publisher connection failed: {e}"),
            }
        }
    });
    for m in stream {
        let (channel, payload, props) = match *m {
            Crafted::Payload(dev, seq) => {
                let mut obj = serde_json::Map::new();
                obj.insert("temp".into(), json!(21.5));
                Stamp::now(dev, seq).insert_into(&mut obj);
                let body = serde_json::Value::Object(obj).to_string();
                (format!("{topic}/{dev}"), body.into_bytes(), None)
            }
            Crafted::Props(dev, seq) => {
                let props = PublishProperties {
                    user_properties: Stamp::now(dev, seq).user_properties(),
                    ..PublishProperties::default()
                };
                (
                    format!("{topic}/{dev}"),
                    b"\xff\x00raw".to_vec(),
                    Some(props),
                )
            }
            Crafted::Unstamped => (format!("{topic}/plain"), b"21.5".to_vec(), None),
        };
        let sent = match props {
            Some(p) => {
                client
                    .publish_with_properties(channel, QoS::AtLeastOnce, false, payload, p)
                    .await
            }
            None => {
                client
                    .publish(channel, QoS::AtLeastOnce, false, payload)
                    .await
            }
        };
        sent.unwrap_or_else(|e| panic!("publish: {e}"));
        if !pace.is_zero() {
            tokio::time::sleep(pace).await;
        }
    }
    match tokio::time::timeout(Duration::from_secs(20), poller).await {
        Ok(Ok(())) => {}
        other => panic!("not every PUBACK arrived: {other:?}"),
    }
    let _ = client.disconnect().await;
}

/// `count` messages per device, interleaved round-robin, all stamped in the payload.
pub fn clean_stream<'a>(devices: &[&'a str], count: u64) -> Vec<Crafted<'a>> {
    let mut out = Vec::new();
    for seq in 1..=count {
        for dev in devices {
            out.push(Crafted::Payload(dev, seq));
        }
    }
    out
}
