//! MQTT client helpers over rumqttc (3.1.1 and 5) that keep the event loop polled in a task
//! and hand the test the packets it receives.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a test waits for one expected packet before failing.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A 3.1.1 client whose incoming packets arrive on a channel.
pub struct V4 {
    /// Send side (publish, subscribe…).
    pub client: rumqttc::AsyncClient,
    /// Every incoming packet, and connection errors as `Err(text)`.
    pub events: mpsc::UnboundedReceiver<Result<rumqttc::Packet, String>>,
    task: tokio::task::JoinHandle<()>,
}

/// Options for a 3.1.1 client.
pub fn v4_options(addr: SocketAddr, id: &str) -> rumqttc::MqttOptions {
    let mut o = rumqttc::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(1 << 20, 1 << 20);
    o
}

impl V4 {
    /// Connects and waits for CONNACK; returns the client and whether a session was present.
    pub async fn connect(opts: rumqttc::MqttOptions) -> (V4, rumqttc::ConnAck) {
        let (client, mut el) = rumqttc::AsyncClient::new(opts, 1000);
        let (tx, mut events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(rumqttc::Event::Incoming(p)) => {
                        if tx.send(Ok(p)).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                }
            }
        });
        let ack = loop {
            match tokio::time::timeout(PATIENCE, events.recv()).await {
                Ok(Some(Ok(rumqttc::Packet::ConnAck(a)))) => break a,
                Ok(Some(Ok(_))) => continue,
                other => panic!("no CONNACK: {other:?}"),
            }
        };
        (
            V4 {
                client,
                events,
                task,
            },
            ack,
        )
    }

    /// The next PUBLISH, skipping other packets; panics after [`PATIENCE`].
    pub async fn next_publish(&mut self) -> rumqttc::Publish {
        self.try_next_publish(PATIENCE)
            .await
            .expect("a PUBLISH in time")
    }

    /// The next PUBLISH within `wait`, or `None`.
    pub async fn try_next_publish(&mut self, wait: Duration) -> Option<rumqttc::Publish> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Ok(rumqttc::Packet::Publish(p)))) => return Some(p),
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(e))) => panic!("connection error while waiting: {e}"),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Waits for the SUBACK of the subscription just sent.
    pub async fn suback(&mut self) -> rumqttc::SubAck {
        loop {
            match tokio::time::timeout(PATIENCE, self.events.recv()).await {
                Ok(Some(Ok(rumqttc::Packet::SubAck(a)))) => return a,
                Ok(Some(Ok(_))) => continue,
                other => panic!("no SUBACK: {other:?}"),
            }
        }
    }

    /// Waits for the PUBACK of packet `pkid`.
    pub async fn puback(&mut self) -> u16 {
        loop {
            match tokio::time::timeout(PATIENCE, self.events.recv()).await {
                Ok(Some(Ok(rumqttc::Packet::PubAck(a)))) => return a.pkid,
                Ok(Some(Ok(_))) => continue,
                other => panic!("no PUBACK: {other:?}"),
            }
        }
    }

    /// Subscribes and waits for the SUBACK.
    pub async fn subscribe(&mut self, filter: &str, qos: rumqttc::QoS) -> rumqttc::SubAck {
        self.client
            .subscribe(filter, qos)
            .await
            .expect("subscribe queued");
        self.suback().await
    }

    /// Sends DISCONNECT and stops the event loop.
    pub async fn disconnect(self) {
        let _ = self.client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.task).await;
    }

    /// Drops the TCP connection without DISCONNECT (as a crashed device would).
    pub fn kill(self) {
        self.task.abort();
    }
}

/// A MQTT 5 client whose incoming packets arrive on a channel.
pub struct V5 {
    /// Send side.
    pub client: rumqttc::v5::AsyncClient,
    /// Every incoming packet, and connection errors as `Err(text)`.
    pub events: mpsc::UnboundedReceiver<Result<rumqttc::v5::mqttbytes::v5::Packet, String>>,
    task: tokio::task::JoinHandle<()>,
}

/// Options for a MQTT 5 client.
pub fn v5_options(addr: SocketAddr, id: &str) -> rumqttc::v5::MqttOptions {
    let mut o = rumqttc::v5::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(Some(1 << 20));
    o
}

impl V5 {
    /// Connects and waits for CONNACK.
    pub async fn connect(
        opts: rumqttc::v5::MqttOptions,
    ) -> (V5, rumqttc::v5::mqttbytes::v5::ConnAck) {
        use rumqttc::v5::mqttbytes::v5::Packet;
        let (client, mut el) = rumqttc::v5::AsyncClient::new(opts, 1000);
        let (tx, mut events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(rumqttc::v5::Event::Incoming(p)) => {
                        if tx.send(Ok(p)).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                }
            }
        });
        let ack = loop {
            match tokio::time::timeout(PATIENCE, events.recv()).await {
                Ok(Some(Ok(Packet::ConnAck(a)))) => break a,
                Ok(Some(Ok(_))) => continue,
                other => panic!("no CONNACK: {other:?}"),
            }
        };
        (
            V5 {
                client,
                events,
                task,
            },
            ack,
        )
    }

    /// The next PUBLISH within `wait`, or `None`.
    pub async fn try_next_publish(
        &mut self,
        wait: Duration,
    ) -> Option<rumqttc::v5::mqttbytes::v5::Publish> {
        use rumqttc::v5::mqttbytes::v5::Packet;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Ok(Packet::Publish(p)))) => return Some(p),
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(e))) => panic!("connection error while waiting: {e}"),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// The next PUBLISH; panics after [`PATIENCE`].
    pub async fn next_publish(&mut self) -> rumqttc::v5::mqttbytes::v5::Publish {
        self.try_next_publish(PATIENCE)
            .await
            .expect("a PUBLISH in time")
    }

    /// The next packet of any kind (or the connection error), within [`PATIENCE`].
    pub async fn next_packet(&mut self) -> Result<rumqttc::v5::mqttbytes::v5::Packet, String> {
        match tokio::time::timeout(PATIENCE, self.events.recv()).await {
            Ok(Some(r)) => r,
            Ok(None) => Err("event loop ended".into()),
            Err(_) => Err("nothing within patience".into()),
        }
    }

    /// Waits for a SUBACK.
    pub async fn suback(&mut self) -> rumqttc::v5::mqttbytes::v5::SubAck {
        use rumqttc::v5::mqttbytes::v5::Packet;
        loop {
            match self.next_packet().await {
                Ok(Packet::SubAck(a)) => return a,
                Ok(_) => continue,
                Err(e) => panic!("no SUBACK: {e}"),
            }
        }
    }

    /// Waits for the next PUBACK.
    pub async fn puback(&mut self) -> rumqttc::v5::mqttbytes::v5::PubAck {
        use rumqttc::v5::mqttbytes::v5::Packet;
        loop {
            match self.next_packet().await {
                Ok(Packet::PubAck(a)) => return a,
                Ok(_) => continue,
                Err(e) => panic!("no PUBACK: {e}"),
            }
        }
    }

    /// Sends DISCONNECT and stops the event loop.
    pub async fn disconnect(self) {
        let _ = self.client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.task).await;
    }

    /// Drops the TCP connection without DISCONNECT.
    pub fn kill(self) {
        self.task.abort();
    }
}
