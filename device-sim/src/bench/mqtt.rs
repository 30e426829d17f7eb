//! Helpers around rumqttc (MQTT 3.1.1, tokio) for the scenarios that move messages: client
//! options, waiting for CONNACK and SUBACK, and naming connection errors for reports.

use std::collections::BTreeMap;
use std::time::Duration;

use rumqttc::mqttbytes::v4::SubscribeReasonCode;
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, NetworkOptions, Packet, QoS,
    StateError,
};
use tokio::time::{Instant, timeout_at};

use super::{BenchError, BrokerUrl};

/// Error tallies by kind, as reports carry them.
pub type Tally = BTreeMap<String, u64>;

/// Adds one error of `kind` to a tally.
pub fn bump(tally: &mut Tally, kind: &str) {
    *tally.entry(kind.to_string()).or_insert(0) += 1;
}

/// Adds every count of `from` into `into`.
pub fn merge(into: &mut Tally, from: &Tally) {
    for (kind, n) in from {
        *into.entry(kind.clone()).or_insert(0) += n;
    }
}

/// Keep-alive of benchmark clients: long, so a busy broker's late PINGRESP is not an error.
const KEEP_ALIVE: Duration = Duration::from_secs(60);

/// MQTT QoS from the command line's 0/1/2.
pub fn qos(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// Options for one benchmark client: clean session, 60 s keep-alive, packets up to
/// `max_packet` bytes both ways, `inflight` unacknowledged QoS > 0 publishes.
pub fn options(
    broker: &BrokerUrl,
    client_id: String,
    max_packet: usize,
    inflight: u16,
) -> MqttOptions {
    let mut opts = MqttOptions::new(client_id, broker.host.clone(), broker.port);
    opts.set_keep_alive(KEEP_ALIVE)
        .set_clean_session(true)
        .set_max_packet_size(max_packet, max_packet)
        .set_inflight(inflight.max(1));
    opts
}

/// Creates a client and its event loop; `queue` bounds the requests waiting for the loop.
pub fn client(opts: MqttOptions, queue: usize) -> (AsyncClient, EventLoop) {
    AsyncClient::new(opts, queue.max(1))
}

/// As [`client`], with TCP_NODELAY on the client's socket, for the scenarios that time single
/// messages. rumqttc leaves Nagle's algorithm on: a small publish then waits for the ACK of the
/// one before, and the broker's kernel delays that ACK by up to 40 ms whenever it has nothing
/// to send back (QoS 0). Both brokers set TCP_NODELAY on their side; without it on the client
/// too, an unpinned run measured 25-40 ms p99 stalls against either of them.
pub fn latency_client(opts: MqttOptions, queue: usize) -> (AsyncClient, EventLoop) {
    let (client, mut eventloop) = client(opts, queue);
    let mut network = NetworkOptions::new();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    (client, eventloop)
}

/// Polls a fresh event loop until the broker accepts the connection (CONNACK), or fails.
pub async fn connect(
    eventloop: &mut EventLoop,
    broker: &BrokerUrl,
    deadline: Instant,
) -> Result<(), BenchError> {
    let unreachable = |detail: String| BenchError::Unreachable {
        broker: broker.to_string(),
        detail,
    };
    match timeout_at(deadline, eventloop.poll()).await {
        Err(_) => Err(unreachable("no CONNACK before the timeout".into())),
        Ok(Err(e)) => Err(unreachable(e.to_string())),
        Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => Ok(()),
        Ok(Ok(other)) => Err(unreachable(format!("expected CONNACK, got {other:?}"))),
    }
}

/// Subscribes to `filter` and polls until its SUBACK arrives; a refusal is an error.
pub async fn subscribe(
    client: &AsyncClient,
    eventloop: &mut EventLoop,
    filter: &str,
    qos: QoS,
    deadline: Instant,
) -> Result<(), BenchError> {
    client
        .subscribe(filter, qos)
        .await
        .map_err(|e| BenchError::Setup(format!("cannot queue SUBSCRIBE {filter}: {e}")))?;
    loop {
        match timeout_at(deadline, eventloop.poll()).await {
            Err(_) => {
                return Err(BenchError::Setup(format!(
                    "no SUBACK for {filter} before the timeout"
                )));
            }
            Ok(Err(e)) => {
                return Err(BenchError::Setup(format!("subscribing to {filter}: {e}")));
            }
            Ok(Ok(Event::Incoming(Packet::SubAck(ack)))) => {
                return if ack
                    .return_codes
                    .iter()
                    .all(|c| matches!(c, SubscribeReasonCode::Success(_)))
                {
                    Ok(())
                } else {
                    Err(BenchError::Setup(format!(
                        "the broker refused the subscription to {filter}"
                    )))
                };
            }
            Ok(Ok(_)) => {}
        }
    }
}

/// Sends DISCONNECT and polls briefly so it reaches the socket; errors are irrelevant here.
pub async fn disconnect(client: &AsyncClient, eventloop: &mut EventLoop) {
    if client.try_disconnect().is_err() {
        return;
    }
    let until = Instant::now() + Duration::from_secs(1);
    while let Ok(Ok(event)) = timeout_at(until, eventloop.poll()).await {
        if matches!(event, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
            return;
        }
    }
}

/// A short stable name for a connection error, for error tallies in reports.
pub fn error_kind(error: &ConnectionError) -> &'static str {
    match error {
        ConnectionError::MqttState(state) => match state {
            StateError::Io(_) => "socket_error",
            StateError::ConnectionAborted => "closed_by_broker",
            StateError::Deserialization(rumqttc::mqttbytes::Error::Io(_)) => "socket_error",
            StateError::Deserialization(_) => "malformed_packet",
            StateError::AwaitPingResp => "no_pingresp",
            StateError::Unsolicited(_) => "unsolicited_ack",
            StateError::CollisionTimeout => "packet_id_collision",
            _ => "protocol_state",
        },
        ConnectionError::NetworkTimeout => "network_timeout",
        ConnectionError::FlushTimeout => "flush_timeout",
        ConnectionError::Io(_) => "socket_error",
        ConnectionError::ConnectionRefused(_) => "connack_refused",
        ConnectionError::NotConnAck(_) => "unexpected_packet",
        ConnectionError::RequestsDone => "client_closed",
        _ => "connection_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_levels() {
        assert_eq!(qos(0), QoS::AtMostOnce);
        assert_eq!(qos(1), QoS::AtLeastOnce);
        assert_eq!(qos(2), QoS::ExactlyOnce);
    }

    #[test]
    fn tally_counts() {
        let mut t = Tally::new();
        bump(&mut t, "a");
        bump(&mut t, "a");
        assert_eq!(t.get("a"), Some(&2));
    }

    #[test]
    fn errors_have_stable_names() {
        let e = ConnectionError::MqttState(StateError::ConnectionAborted);
        assert_eq!(error_kind(&e), "closed_by_broker");
        assert_eq!(
            error_kind(&ConnectionError::NetworkTimeout),
            "network_timeout"
        );
    }
}
