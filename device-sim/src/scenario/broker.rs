//! The broker address of a run: `mqtt://HOST:PORT` (plain TCP, default port 1883),
//! `mqtts://HOST:PORT` (TLS, 8883), `ws://HOST:PORT/PATH` (MQTT over WebSocket, 80,
//! path `/mqtt` when none is given) or `wss://HOST:PORT/PATH` (443). `tcp://` and
//! `ssl://`/`tls://` are accepted spellings; a bare `HOST:PORT` is plain TCP.

use std::fmt;
use std::str::FromStr;

/// How the devices reach the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// MQTT over TCP.
    Tcp,
    /// MQTT over TLS.
    Tls,
    /// MQTT over WebSocket.
    Ws,
    /// MQTT over WebSocket over TLS.
    Wss,
}

/// A parsed broker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// Transport.
    pub transport: Transport,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// WebSocket path (starts with `/`); empty for TCP and TLS.
    pub path: String,
}

impl Broker {
    /// Whether the connection is encrypted.
    pub fn uses_tls(&self) -> bool {
        matches!(self.transport, Transport::Tls | Transport::Wss)
    }

    /// The same broker reached at another host and port (the fault proxy's address).
    pub fn via(&self, host: &str, port: u16) -> Self {
        Self {
            host: host.to_owned(),
            port,
            ..self.clone()
        }
    }

    /// `host:port` with brackets around an IPv6 address.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.transport {
            Transport::Tcp => "mqtt",
            Transport::Tls => "mqtts",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        };
        write!(f, "{scheme}://{}{}", self.authority(), self.path)
    }
}

impl FromStr for Broker {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (transport, rest) = match text.split_once("://") {
            Some(("mqtt" | "tcp", rest)) => (Transport::Tcp, rest),
            Some(("mqtts" | "ssl" | "tls", rest)) => (Transport::Tls, rest),
            Some(("ws", rest)) => (Transport::Ws, rest),
            Some(("wss", rest)) => (Transport::Wss, rest),
            Some((scheme, _)) => {
                return Err(format!(
                    "`{scheme}://` is not a broker scheme; use mqtt://, mqtts://, ws:// or wss://"
                ));
            }
            None => (Transport::Tcp, text),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let path = match transport {
            Transport::Ws | Transport::Wss if path.is_empty() || path == "/" => "/mqtt",
            Transport::Ws | Transport::Wss => path,
            _ if path.is_empty() || path == "/" => "",
            _ => {
                return Err(format!(
                    "`{text}` has a path; only ws:// and wss:// take one"
                ));
            }
        };
        let default_port = match transport {
            Transport::Tcp => 1883,
            Transport::Tls => 8883,
            Transport::Ws => 80,
            Transport::Wss => 443,
        };
        let (host, port) = host_port(authority, default_port, text)?;
        Ok(Self {
            transport,
            host,
            port,
            path: path.to_owned(),
        })
    }
}

/// Splits `host[:port]` or `[v6][:port]` (`text` is the whole URL, for messages); a missing
/// port is `default_port`.
pub(crate) fn host_port(
    authority: &str,
    default_port: u16,
    text: &str,
) -> Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("`{text}`: missing `]` after the IPv6 address"))?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!(
            "`{text}` has no host; write one, e.g. 127.0.0.1:PORT"
        ));
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(format!("`{p}` is not a TCP port (1-65535)")),
            Ok(p) => p,
        },
    };
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Broker {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn accepts_every_transport() {
        assert_eq!(url("mqtt://h:1884").to_string(), "mqtt://h:1884");
        assert_eq!(url("h").to_string(), "mqtt://h:1883");
        assert_eq!(url("mqtts://h").port, 8883);
        assert!(url("mqtts://h").uses_tls());
        assert_eq!(
            url("ws://127.0.0.1:8080").to_string(),
            "ws://127.0.0.1:8080/mqtt"
        );
        assert_eq!(url("wss://h/x/mqtt").path, "/x/mqtt");
        assert_eq!(url("mqtt://[::1]:1").authority(), "[::1]:1");
        assert_eq!(
            url("ws://h:1/mqtt").via("127.0.0.1", 9).to_string(),
            "ws://127.0.0.1:9/mqtt"
        );
    }

    #[test]
    fn refuses_what_cannot_be_reached() {
        for bad in [
            "http://h",
            "mqtt://:1",
            "mqtt://h:0",
            "mqtt://h:x",
            "mqtt://h/p",
            "[::1",
        ] {
            assert!(bad.parse::<Broker>().is_err(), "{bad} was accepted");
        }
    }
}
