//! A Mosquitto process owned by a test, on a free loopback port, with its log kept for the
//! failure message; killed on drop.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Configuration used unless a test gives its own: no limit on queued messages, so a slow
/// subscriber in a test never loses any.
const DEFAULT_CONF: &str = "max_queued_messages 0\n";

/// A running Mosquitto.
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

    /// Its process id (for `bench idle --pid`).
    pub fn pid(&self) -> u32 {
        self.child.id()
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

/// Starts Mosquitto with the default configuration; returns once it accepts connections.
pub fn start_mosquitto() -> Mosquitto {
    start_mosquitto_with(DEFAULT_CONF)
}

/// Starts Mosquitto with `conf` (lines of mosquitto.conf; the listener is added) and returns
/// once it accepts TCP connections (at most 10 s per attempt).
pub fn start_mosquitto_with(conf: &str) -> Mosquitto {
    let binary = find_mosquitto();
    let mut failures = Vec::new();
    // A port found free may be taken before Mosquitto binds it: retry a few times.
    for _ in 0..3 {
        let port = super::free_port();
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let conf_path = dir.path().join("mosquitto.conf");
        let log = dir.path().join("mosquitto.log");
        let text = format!("listener {port} 127.0.0.1\nallow_anonymous true\n{conf}");
        std::fs::write(&conf_path, text)
            .unwrap_or_else(|e| panic!("write {}: {e}", conf_path.display()));
        let log_file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("log: {e}"));
        let err_file = log_file.try_clone().unwrap_or_else(|e| panic!("log: {e}"));
        let mut child = Command::new(&binary)
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::from(log_file))
            .stderr(Stdio::from(err_file))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        // Mosquitto buffers its log when it is not a terminal, so readiness is observed as
        // its listener accepting a connection.
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        for _ in 0..500 {
            if let Ok(Some(status)) = child.try_wait() {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                failures.push(format!("port {port}: exited with {status}: {text}"));
                break;
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
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
