//! The gateway the session target runs against: a current-thread tokio runtime with a paused
//! clock, a real embedded log in a temporary directory, and a real broker over it.
//!
//! The clock is paused, so keep-alives, connect timeouts and the target's own deadlines cost
//! no wall time: whenever every task waits, tokio moves the clock to the next timer. (It does
//! not move while a log commit runs on a blocking thread.) The limits are small so that short
//! inputs reach them.

use gateway::broker::Broker;
use gateway::config::MqttConfig;
use gateway::core::namespace::{HistoryPolicy, NamespaceRule, NamespaceRules};
use gateway::log::{EmbeddedLog, LogOptions};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Runtime;

/// Inputs run against one store before it is replaced by a fresh one, so that the
/// messages and retained values the inputs leave behind do not pile up.
const INPUTS_PER_STORE: u64 = 2_000;

/// Name prefix of the temporary store directories, followed by the process id.
const PREFIX: &str = "gateway-fuzz-";

/// The broker, its log and the runtime that drives them.
pub struct World {
    /// Runs every input; tasks left over from one input keep running in the next.
    pub rt: Runtime,
    /// The broker every connection is served by.
    pub broker: Arc<Broker>,
    log: Arc<EmbeddedLog>,
    _dir: tempfile::TempDir,
    /// Inputs run so far (also makes client ids unique).
    pub inputs: u64,
}

impl World {
    /// Builds the runtime, opens a fresh log and starts the broker.
    pub fn new() -> World {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("cannot build a tokio runtime");
        let (dir, broker, log) = rt.block_on(open());
        World {
            rt,
            broker,
            log,
            _dir: dir,
            inputs: 0,
        }
    }

    /// Counts an input; every [`INPUTS_PER_STORE`] inputs, shuts the broker and the log down
    /// and starts over on a fresh store.
    pub fn next_input(&mut self) -> u64 {
        self.inputs += 1;
        if self.inputs.is_multiple_of(INPUTS_PER_STORE) {
            let (dir, broker, log) = self.rt.block_on(async {
                self.broker.shutdown().await;
                self.log.close().await;
                open().await
            });
            self.broker = broker;
            self.log = log;
            self._dir = dir;
        }
        self.inputs
    }
}

/// A fresh store in a temporary directory (on tmpfs when there is one: the log fsyncs every
/// reliable message), and a broker over it.
async fn open() -> (tempfile::TempDir, Arc<Broker>, Arc<EmbeddedLog>) {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    remove_stale(&base);
    let dir = tempfile::Builder::new()
        .prefix(&format!("{PREFIX}{}-", std::process::id()))
        .tempdir_in(&base)
        .expect("cannot create a temporary directory for the log");
    let short = HistoryPolicy {
        max_messages: 4,
        max_age: Some(Duration::from_secs(60)),
        store_qos0: false,
    };
    let rules = NamespaceRules::new(
        vec![NamespaceRule {
            name: "short".into(),
            filter: "s/#".into(),
            history: short,
        }],
        HistoryPolicy {
            max_messages: 64,
            ..HistoryPolicy::default()
        },
    );
    let opts = LogOptions {
        max_batch: 16,
        retention_interval: Duration::from_secs(600),
        ..LogOptions::default()
    };
    let (log, feed) = EmbeddedLog::open(dir.path(), Arc::new(rules), opts)
        .expect("cannot open the log in a temporary directory");
    let broker = Broker::start(log.clone(), feed, settings());
    (dir, broker, log)
}

/// Removes the stores of fuzzing processes that have ended: libFuzzer leaves by `exit` or
/// `abort`, so the last store of a process is never dropped. (Linux: a process is alive
/// while `/proc/<pid>` exists; elsewhere nothing is removed.)
fn remove_stale(base: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// MQTT limits small enough for short inputs to reach.
fn settings() -> MqttConfig {
    MqttConfig {
        listen: "127.0.0.1:0".into(),
        max_packet_size: 2048,
        connect_timeout: Duration::from_secs(1),
        max_keep_alive: 0,
        receive_maximum: 8,
        max_inflight: 4,
        topic_alias_maximum: 4,
        max_session_expiry: 120,
        max_offline_messages: 16,
        outbound_queue: 64,
        max_topic_levels: 8,
        max_topic_length: 128,
        max_client_id_length: 32,
        max_subscriptions_per_client: 8,
    }
}
