//! The `--broker` address: `mqtt://HOST:PORT`, `tcp://HOST:PORT` or `HOST:PORT` (plain TCP;
//! the benchmarks measure brokers, not TLS stacks).

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use super::BenchError;

/// A broker reachable over plain TCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port; 1883 when the URL has none.
    pub port: u16,
}

impl BrokerUrl {
    /// Resolves the host to a socket address (the first one the resolver returns).
    pub async fn resolve(&self) -> Result<SocketAddr, BenchError> {
        let mut addrs = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|source| BenchError::Resolve {
                broker: self.to_string(),
                source,
            })?;
        addrs.next().ok_or_else(|| BenchError::Resolve {
            broker: self.to_string(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
        })
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "mqtt://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "mqtt://{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for BrokerUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let rest = match text.split_once("://") {
            Some(("mqtt" | "tcp", rest)) => rest,
            Some((scheme, _)) => {
                return Err(format!(
                    "`{scheme}://` is not supported by bench; use mqtt://HOST:PORT (plain TCP)"
                ));
            }
            None => text,
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') {
            return Err(format!("`{text}` has a path; use mqtt://HOST:PORT"));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("`{text}`: missing `]` after the IPv6 address"))?;
            (host, after.strip_prefix(':'))
        } else {
            match rest.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(format!("`{text}` has no host; use mqtt://HOST:PORT"));
        }
        let port = match port {
            None => 1883,
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| format!("`{p}` is not a TCP port (1-65535)"))?,
        };
        if port == 0 {
            return Err("port 0 cannot be connected to; give the broker's port".into());
        }
        Ok(Self {
            host: host.to_string(),
            port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> BrokerUrl {
        match text.parse() {
            Ok(u) => u,
            Err(e) => panic!("{text}: {e}"),
        }
    }

    #[test]
    fn accepts_the_usual_spellings() {
        assert_eq!(url("mqtt://127.0.0.1:1884").port, 1884);
        assert_eq!(url("tcp://broker:1885").host, "broker");
        assert_eq!(url("localhost:1886").port, 1886);
        assert_eq!(url("mqtt://example").port, 1883);
        assert_eq!(url("mqtt://[::1]:1887").host, "::1");
        assert_eq!(url("mqtt://[::1]:1887").to_string(), "mqtt://[::1]:1887");
        assert_eq!(url("mqtt://h:1/").to_string(), "mqtt://h:1");
    }

    #[test]
    fn refuses_what_it_cannot_measure() {
        for bad in [
            "mqtts://h:8883",
            "ws://h/mqtt",
            "mqtt://:1883",
            "mqtt://h:99999",
            "mqtt://h:0",
            "mqtt://h:1/x",
            "mqtt://[::1",
        ] {
            assert!(bad.parse::<BrokerUrl>().is_err(), "{bad} was accepted");
        }
    }
}
