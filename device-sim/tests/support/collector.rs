//! What the `run` tests watch with: an MQTT 5 subscriber that records every message with the
//! stamp it carries, the check that every device's sequence is whole, and the small scenario
//! the tests run.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use device_sim::stamp::Stamp;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};

/// One message a [`Collector`] received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Topic.
    pub topic: String,
    /// Payload.
    pub payload: Bytes,
    /// The stamp, from user properties or the payload.
    pub stamp: Option<Stamp>,
    /// MQTT 5 correlation data.
    pub correlation: Option<Bytes>,
}

/// An MQTT 5 client subscribed to a filter that records every message it receives.
pub struct Collector {
    /// The client, for publishing commands.
    pub client: AsyncClient,
    got: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Collector {
    /// Connects to `addr`, subscribes to `filter` at QoS 1 and waits for the SUBACK.
    pub async fn start(addr: SocketAddr, id: &str, filter: &str) -> Collector {
        let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        o.set_keep_alive(Duration::from_secs(30));
        o.set_max_packet_size(Some(1 << 20));
        let (client, mut el) = AsyncClient::new(o, 1000);
        let got = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        let sink = got.clone();
        client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap_or_else(|e| panic!("subscribe: {e}"));
        let task = tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let (props, correlation) = match &p.properties {
                            Some(pp) => (pp.user_properties.clone(), pp.correlation_data.clone()),
                            None => (Vec::new(), None),
                        };
                        let stamp = Stamp::from_user_properties(
                            props.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                        )
                        .or_else(|| Stamp::from_payload(&p.payload));
                        let r = Received {
                            topic: String::from_utf8_lossy(&p.topic).into_owned(),
                            payload: p.payload.clone(),
                            stamp,
                            correlation,
                        };
                        if let Ok(mut g) = sink.lock() {
                            g.push(r);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        if tokio::time::timeout(Duration::from_secs(10), ready)
            .await
            .is_err()
        {
            panic!("no SUBACK for {filter} from {addr}");
        }
        Collector { client, got, task }
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.got.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// Waits until nothing new arrived for `quiet` (at most `limit` in all).
    pub async fn settle(&self, quiet: Duration, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        let mut last = usize::MAX;
        while tokio::time::Instant::now() < deadline {
            let n = self.received().len();
            if n == last {
                return;
            }
            last = n;
            tokio::time::sleep(quiet).await;
        }
    }

    /// The distinct sequence numbers received per device.
    pub fn seqs(&self) -> BTreeMap<String, BTreeSet<u64>> {
        let mut out: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
        for r in self.received() {
            if let Some(s) = r.stamp {
                out.entry(s.device).or_default().insert(s.seq);
            }
        }
        out
    }
}

/// Asserts that every device's sequence numbers are exactly 1..=max (nothing lost), and
/// returns how many distinct messages arrived per device.
pub fn assert_no_gaps(seqs: &BTreeMap<String, BTreeSet<u64>>) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for (dev, set) in seqs {
        let max = set.iter().next_back().copied().unwrap_or(0);
        let missing: Vec<u64> = (1..=max).filter(|s| !set.contains(s)).collect();
        assert!(
            missing.is_empty(),
            "{dev}: missing sequence numbers {missing:?}"
        );
        counts.insert(dev.clone(), max);
    }
    counts
}

/// A small scenario: three MQTT 3.1.1 meters with a QoS 0 and a QoS 1 JSON stream, and two
/// MQTT 5 valves with a text stream (stamped in user properties) that answer commands.
pub fn scenario(prefix: &str, duration: &str) -> String {
    format!(
        r#"
name = "{prefix}"
duration = "{duration}"
seed = 7

[[classes]]
name = "meter"
count = 3
client_id = "{prefix}-meter-{{n}}"

[[classes.telemetry]]
topic = "{prefix}/{{class}}/{{id}}/fast"
interval = "100ms"
qos = 0
payload = {{ model = "json", fields = {{ n = {{ model = "counter" }}, dev = "{{id}}" }} }}

[[classes.telemetry]]
topic = "{prefix}/{{class}}/{{id}}/slow"
interval = "250ms"
jitter = "50ms"
qos = 1
payload = {{ model = "json", fields = {{ v = {{ model = "sine", period = "2s", amplitude = 5.0 }} }} }}

[[classes]]
name = "valve"
count = 2
client_id = "{prefix}-valve-{{n}}"
protocol = 5

[[classes.telemetry]]
topic = "{prefix}/{{class}}/{{id}}/position"
interval = "200ms"
qos = 1
payload = {{ model = "choice", values = ["open", "closed"] }}

[[classes.commands]]
topic = "{prefix}/{{class}}/{{id}}/set"
qos = 1
reply_topic = "{prefix}/{{class}}/{{id}}/ack"
reply = {{ ok = true, request = "{{cmd.id}}", device = "{{id}}" }}
"#
    )
}
