//! The `--source` URL: where the verifier subscribes. `ws://HOST:PORT/ws` (the gateway's
//! WebSocket protocol), `http://HOST:PORT/sse` (its Server-Sent Events) or `mqtt://HOST:PORT`
//! (any MQTT broker). Plain TCP only.

use crate::scenario::broker::host_port;
use std::fmt;
use std::str::FromStr;

/// Where to subscribe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The gateway's WebSocket endpoint; the full URL.
    Ws(String),
    /// The gateway's SSE endpoint.
    Sse {
        /// Host name or address (IPv6 without brackets).
        host: String,
        /// TCP port (80 when the URL has none).
        port: u16,
        /// Path, e.g. `/sse`, plus any query the URL had.
        path: String,
    },
    /// An MQTT broker.
    Mqtt {
        /// Host name or address (IPv6 without brackets).
        host: String,
        /// TCP port (1883 when the URL has none).
        port: u16,
    },
}

impl Source {
    /// A short name of the transport: `ws`, `sse` or `mqtt`.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Ws(_) => "ws",
            Source::Sse { .. } => "sse",
            Source::Mqtt { .. } => "mqtt",
        }
    }
}

impl FromStr for Source {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err(format!(
                "`{text}` has no scheme; use ws://HOST:PORT/ws, http://HOST:PORT/sse or \
                 mqtt://HOST:PORT"
            ));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        match scheme {
            "ws" => {
                host_port(authority, 80, text)?;
                Ok(Source::Ws(text.to_string()))
            }
            "http" => {
                let (host, port) = host_port(authority, 80, text)?;
                let path = if path.is_empty() { "/sse" } else { path };
                Ok(Source::Sse {
                    host,
                    port,
                    path: path.to_string(),
                })
            }
            "mqtt" | "tcp" => {
                if !path.trim_matches('/').is_empty() {
                    return Err(format!("`{text}` has a path; use mqtt://HOST:PORT"));
                }
                let (host, port) = host_port(authority, 1883, text)?;
                Ok(Source::Mqtt { host, port })
            }
            "wss" | "https" | "mqtts" | "ssl" => Err(format!(
                "`{scheme}://` (TLS) is not supported by verify; use the plain listener"
            )),
            other => Err(format!(
                "`{other}://` is not a source; use ws://, http:// (SSE) or mqtt://"
            )),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = |h: &str| {
            if h.contains(':') {
                format!("[{h}]")
            } else {
                h.to_string()
            }
        };
        match self {
            Source::Ws(url) => f.write_str(url),
            Source::Sse {
                host: h,
                port,
                path,
            } => write!(f, "http://{}:{port}{path}", host(h)),
            Source::Mqtt { host: h, port } => write!(f, "mqtt://{}:{port}", host(h)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Source {
        match text.parse() {
            Ok(s) => s,
            Err(e) => panic!("{text}: {e}"),
        }
    }

    #[test]
    fn the_three_transports() {
        assert_eq!(
            parse("ws://127.0.0.1:8080/ws"),
            Source::Ws("ws://127.0.0.1:8080/ws".into())
        );
        assert_eq!(
            parse("http://localhost:8080/sse"),
            Source::Sse {
                host: "localhost".into(),
                port: 8080,
                path: "/sse".into()
            }
        );
        assert_eq!(parse("http://gw").to_string(), "http://gw:80/sse");
        assert_eq!(
            parse("mqtt://[::1]:1884"),
            Source::Mqtt {
                host: "::1".into(),
                port: 1884
            }
        );
        assert_eq!(parse("mqtt://[::1]:1884").to_string(), "mqtt://[::1]:1884");
        assert_eq!(parse("tcp://b").kind(), "mqtt");
    }

    #[test]
    fn refusals_say_why() {
        for bad in [
            "127.0.0.1:1883",
            "wss://h/ws",
            "ftp://h",
            "mqtt://h:0",
            "mqtt://h/x",
            "http://:80/sse",
            "ws://[::1/ws",
        ] {
            assert!(bad.parse::<Source>().is_err(), "{bad} accepted");
        }
    }
}
