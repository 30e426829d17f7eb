//! A real Mosquitto broker for one test: its own config file and data directory in a
//! temporary directory, a free loopback port, started and stopped by the test (stopping with
//! SIGTERM lets it save its persistence file, so a restart keeps sessions and queues), and
//! killed on drop.
//!
//! ```no_run
//! # async fn demo() {
//! let mut m = e2e_tests::mosquitto::Mosquitto::builder().persistence(true).start().await;
//! let address = m.address(); // "127.0.0.1:<port>"
//! m.stop().await;
//! m.restart().await; // same port, same data
//! # let _ = address;
//! # }
//! ```
//!
//! Needs Debian's `mosquitto` (`/usr/sbin/mosquitto`, or `mosquitto` on `PATH`);
//! `scripts/test.sh` installs it.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// How long the broker has to start accepting connections, or to exit after SIGTERM.
const PATIENCE: Duration = Duration::from_secs(10);

/// TLS files for a Mosquitto TLS listener.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// CA that signed the server certificate (and, for mutual TLS, the client's).
    pub ca: PathBuf,
    /// Server certificate chain.
    pub cert: PathBuf,
    /// Server private key.
    pub key: PathBuf,
    /// Require a client certificate signed by `ca`.
    pub require_client_cert: bool,
}

/// Builds a [`Mosquitto`].
#[derive(Debug, Default)]
pub struct MosquittoBuilder {
    persistence: bool,
    tls: Option<TlsFiles>,
    plain_listener: bool,
    extra: Vec<String>,
}

impl MosquittoBuilder {
    /// Keeps sessions and queued messages across [`Mosquitto::restart`].
    pub fn persistence(mut self, on: bool) -> Self {
        self.persistence = on;
        self
    }

    /// The listener speaks TLS with these files.
    pub fn tls(mut self, files: TlsFiles) -> Self {
        self.tls = Some(files);
        self
    }

    /// Adds a second, plain TCP listener ([`Mosquitto::plain_addr`]), for test clients of a
    /// TLS broker.
    pub fn plain_listener(mut self) -> Self {
        self.plain_listener = true;
        self
    }

    /// Adds a line to the configuration file.
    pub fn config_line(mut self, line: &str) -> Self {
        self.extra.push(line.to_string());
        self
    }

    /// Writes the configuration and starts the broker; returns once it accepts TCP
    /// connections. Panics with what to do when mosquitto is not installed.
    pub async fn start(self) -> Mosquitto {
        let dir = tempfile::tempdir().expect("temp dir for mosquitto");
        let port = free_port();
        let plain_port = self.plain_listener.then(free_port);
        let config = dir.path().join("mosquitto.conf");
        std::fs::write(&config, self.config_text(dir.path(), port, plain_port))
            .expect("write mosquitto.conf");
        let mut m = Mosquitto {
            binary: binary(),
            child: None,
            port,
            plain_port,
            config,
            dir,
        };
        m.spawn().await;
        m
    }

    fn config_text(&self, dir: &Path, port: u16, plain_port: Option<u16>) -> String {
        let mut lines = vec![
            format!("listener {port} 127.0.0.1"),
            "allow_anonymous true".into(),
            format!("persistence {}", self.persistence),
            format!("persistence_location {}/", dir.display()),
            // Queue everything for offline persistent sessions: the tests count messages.
            "max_queued_messages 0".into(),
            format!("log_dest file {}", dir.join("mosquitto.log").display()),
            "log_type error".into(),
            "log_type warning".into(),
            "log_type notice".into(),
            "log_type information".into(),
        ];
        if is_root() {
            // Otherwise mosquitto switches to its own user and cannot read this directory.
            lines.push("user root".into());
        }
        if let Some(t) = &self.tls {
            lines.push(format!("cafile {}", t.ca.display()));
            lines.push(format!("certfile {}", t.cert.display()));
            lines.push(format!("keyfile {}", t.key.display()));
            lines.push(format!("require_certificate {}", t.require_client_cert));
        }
        lines.extend(self.extra.iter().cloned());
        // Last: options written after a listener line belong to that listener.
        if let Some(p) = plain_port {
            lines.push(format!("listener {p} 127.0.0.1"));
        }
        lines.join("\n") + "\n"
    }
}

/// A running (or stopped) Mosquitto owned by a test.
pub struct Mosquitto {
    binary: PathBuf,
    child: Option<Child>,
    port: u16,
    plain_port: Option<u16>,
    config: PathBuf,
    dir: tempfile::TempDir,
}

impl Mosquitto {
    /// A builder (no persistence, plain TCP).
    pub fn builder() -> MosquittoBuilder {
        MosquittoBuilder::default()
    }

    /// The listener's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The plain TCP listener added by [`MosquittoBuilder::plain_listener`].
    pub fn plain_addr(&self) -> SocketAddr {
        let port = self
            .plain_port
            .expect("the broker was built with plain_listener()");
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// The listener's address as `host:port` text, as a bridge's `address` takes it.
    pub fn address(&self) -> String {
        self.addr().to_string()
    }

    /// The broker's directory (configuration, persistence, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The broker's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// Stops the broker with SIGTERM (it saves its persistence file) and waits until it
    /// has exited.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        if tokio::time::timeout(PATIENCE, child.wait()).await.is_err() {
            let _ = child.kill().await;
            panic!("mosquitto did not exit within {PATIENCE:?} of SIGTERM");
        }
    }

    /// Starts the broker again on the same port with the same configuration and data.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.spawn().await;
    }

    async fn spawn(&mut self) {
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e}; run scripts/test.sh, which installs Debian's \
                     mosquitto",
                    self.binary.display()
                )
            });
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if tokio::net::TcpStream::connect(self.addr()).await.is_ok() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "mosquitto exited at start ({status}); its log:\n{}",
                    self.log()
                );
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "mosquitto does not accept connections on {} after {PATIENCE:?}; its \
                     log:\n{}",
                    self.addr(),
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// The mosquitto binary: Debian's `/usr/sbin/mosquitto`, or `mosquitto` on `PATH`.
fn binary() -> PathBuf {
    let debian = PathBuf::from("/usr/sbin/mosquitto");
    if debian.is_file() {
        return debian;
    }
    if let Some(found) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("mosquitto"))
            .find(|p| p.is_file())
    }) {
        return found;
    }
    panic!(
        "mosquitto is not installed: run scripts/test.sh (it installs Debian's mosquitto), or \
         apt-get install mosquitto"
    );
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
