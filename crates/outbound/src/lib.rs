//! The one outbound HTTP client, for every feature that must call out (back-channel
//! logout today; federation metadata and tokens later). Calls out to addresses an
//! attacker chooses — a client's registered logout URI, a partner's metadata URL —
//! are a server-side request forgery risk, so by default the client refuses targets
//! that are not public: loopback, private (RFC 1918, unique-local), link-local (the
//! cloud metadata address 169.254.169.254 among them), carrier-grade NAT,
//! unspecified, multicast and broadcast. The check is made on the addresses the
//! connection will actually use — IP literals in the URL and every address a name
//! resolves to — so a public name that resolves to a private address is refused
//! too. Redirects are never followed; every call has a timeout; bodies read through
//! [`Outbound::read_limited`] have a size cap.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// The HTTP types callers build requests with.
pub use reqwest;

/// What the client may reach and how long it waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundPolicy {
    /// Allow loopback, private and link-local targets (development, tests, or a
    /// deployment whose relying parties live on the private network).
    pub allow_private_networks: bool,
    /// For the whole call: connect, send, answer.
    pub timeout: Duration,
    /// The most a response body may hold when read.
    pub max_body_bytes: usize,
}

impl Default for OutboundPolicy {
    fn default() -> Self {
        OutboundPolicy {
            allow_private_networks: false,
            timeout: Duration::from_secs(5),
            max_body_bytes: 1024 * 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("{0}: not an http(s) URL")]
    BadUrl(String),
    #[error(
        "{0}: refused, the address is not public (set outbound.allow_private_networks to allow)"
    )]
    PrivateTarget(String),
    #[error("the response body is larger than {0} bytes")]
    TooLarge(usize),
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    #[error("no HTTP client: {0}")]
    Setup(String),
}

/// The client. Cheap to clone (one connection pool).
#[derive(Debug, Clone)]
pub struct Outbound {
    client: reqwest::Client,
    policy: Arc<OutboundPolicy>,
}

impl Outbound {
    /// The client the configuration describes.
    pub fn from_config(
        config: &gatehouse_core::config::OutboundConfig,
    ) -> Result<Outbound, OutboundError> {
        Outbound::new(OutboundPolicy {
            allow_private_networks: config.allow_private_networks,
            timeout: config.timeout(),
            max_body_bytes: config.max_body_bytes(),
        })
    }

    pub fn new(policy: OutboundPolicy) -> Result<Outbound, OutboundError> {
        let client = reqwest::Client::builder()
            .timeout(policy.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(PublicOnly {
                allow_private: policy.allow_private_networks,
            }))
            .build()
            .map_err(|e| OutboundError::Setup(e.to_string()))?;
        Ok(Outbound {
            client,
            policy: Arc::new(policy),
        })
    }

    pub fn policy(&self) -> &OutboundPolicy {
        &self.policy
    }

    /// A request builder for `url` after the target check (names are checked again
    /// when they resolve).
    pub fn request(
        &self,
        method: reqwest::Method,
        url: &str,
    ) -> Result<reqwest::RequestBuilder, OutboundError> {
        self.check(url)?;
        Ok(self.client.request(method, url))
    }

    /// Checks the URL's scheme and, for an IP literal, the address.
    pub fn check(&self, url: &str) -> Result<(), OutboundError> {
        let parsed = url::Url::parse(url).map_err(|_| OutboundError::BadUrl(url.to_owned()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(OutboundError::BadUrl(url.to_owned()));
        }
        let literal = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => None,
            None => return Err(OutboundError::BadUrl(url.to_owned())),
        };
        match literal {
            Some(ip) if !self.policy.allow_private_networks && !is_public(ip) => {
                Err(OutboundError::PrivateTarget(url.to_owned()))
            }
            _ => Ok(()),
        }
    }

    /// Reads a response body, refusing one over the policy's size.
    pub async fn read_limited(
        &self,
        mut response: reqwest::Response,
    ) -> Result<Vec<u8>, OutboundError> {
        let max = self.policy.max_body_bytes;
        if response.content_length().is_some_and(|n| n > max as u64) {
            return Err(OutboundError::TooLarge(max));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > max {
                return Err(OutboundError::TooLarge(max));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Resolves with the system resolver and keeps only public addresses (all, when
/// private targets are allowed). A name with none left fails to resolve.
#[derive(Debug)]
struct PublicOnly {
    allow_private: bool,
}

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = found
                .into_iter()
                .filter(|addr| allow_private || is_public(addr.ip()))
                .collect();
            if kept.is_empty() {
                tracing::warn!(%host, "outbound call refused: the name resolves to no public address");
                return Err(format!("{host}: resolves to no public address").into());
            }
            let addrs: Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

/// Whether `ip` is a public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        // Carrier-grade NAT, 100.64.0.0/10.
        || (a == 100 && (64..128).contains(&b))
        // IETF protocol assignments and benchmarking, 192.0.0.0/24 and 198.18.0.0/15.
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || (a == 198 && (b == 18 || b == 19))
        // Reserved, 240.0.0.0/4.
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // Unique local fc00::/7, link-local fe80::/10, documentation 2001:db8::/32.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)
        // IPv4-compatible and NAT64 forms of private addresses are not worth the risk.
        || first == 0
        || (first == 0x0064 && ip.segments()[1] == 0xff9b))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn only_public_unicast_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "2001:db8::1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn literal_private_targets_are_refused_unless_allowed() {
        let strict = Outbound::new(OutboundPolicy::default()).unwrap();
        for url in [
            "http://127.0.0.1:8080/logout",
            "https://169.254.169.254/latest/meta-data",
            "http://[::1]/x",
            "http://0x7f.1/x",
        ] {
            assert!(
                matches!(strict.check(url), Err(OutboundError::PrivateTarget(_))),
                "{url}"
            );
        }
        assert!(strict.check("https://rp.example/logout").is_ok());
        assert!(matches!(
            strict.check("file:///etc/passwd"),
            Err(OutboundError::BadUrl(_))
        ));
        let open = Outbound::new(OutboundPolicy {
            allow_private_networks: true,
            ..OutboundPolicy::default()
        })
        .unwrap();
        assert!(open.check("http://127.0.0.1:8080/logout").is_ok());
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let strict = Outbound::new(OutboundPolicy::default()).unwrap();
        // `localhost` is a name: the literal check passes it, the resolver must not.
        let url = format!("http://localhost:{port}/");
        let sent = strict
            .request(reqwest::Method::GET, &url)
            .unwrap()
            .send()
            .await;
        assert!(sent.is_err(), "a loopback target was reached");
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0_u8; 1024];
            let _ = socket.read(&mut request).await.unwrap();
            let body = "x".repeat(2048);
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(answer.as_bytes()).await.unwrap();
        });
        let client = Outbound::new(OutboundPolicy {
            allow_private_networks: true,
            max_body_bytes: 1024,
            ..OutboundPolicy::default()
        })
        .unwrap();
        let response = client
            .request(reqwest::Method::GET, &format!("http://127.0.0.1:{port}/"))
            .unwrap()
            .send()
            .await
            .unwrap();
        assert!(matches!(
            client.read_limited(response).await,
            Err(OutboundError::TooLarge(1024))
        ));
    }
}
