//! IP networks in CIDR notation, for settings that name hosts or address ranges
//! (`server.trusted_proxies`).
//!
//! Addresses are compared in canonical form: an IPv4-mapped IPv6 address
//! (`::ffff:192.0.2.1`, which a dual-stack listener reports for IPv4 clients) is the
//! IPv4 address it carries.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A network such as `10.0.0.0/8` or `2001:db8::/32`; a bare address is a network of
/// one (`/32`, `/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    network: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `address` lies in this network.
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.network, address.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(address) & mask == u32::from(network)
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(address) & mask == u128::from(network)
            }
            _ => false,
        }
    }
}

fn max_prefix(address: IpAddr) -> u8 {
    match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(text: &str) -> Result<IpNet, String> {
        let text = text.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network = address
            .parse::<IpAddr>()
            .map_err(|_| format!("`{text}` is not an IP address or CIDR network"))?
            .to_canonical();
        let max = max_prefix(network);
        let prefix = match prefix {
            None => max,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|prefix| *prefix <= max)
                .ok_or_else(|| format!("`{text}`: the prefix length must be 0 to {max}"))?,
        };
        let net = IpNet { network, prefix };
        // Host bits set (`10.1.2.3/8`) is most likely a typo for a narrower network;
        // refusing it beats trusting a quarter of the internet by accident.
        if !net.is_network_address() {
            return Err(format!(
                "`{text}` has bits set beyond its /{prefix} prefix; write the network \
                 address (for example `10.0.0.0/8`) or a single address"
            ));
        }
        Ok(net)
    }
}

impl IpNet {
    fn is_network_address(&self) -> bool {
        match self.network {
            IpAddr::V4(network) => {
                let host = u32::MAX.checked_shr(u32::from(self.prefix)).unwrap_or(0);
                u32::from(network) & host == 0
            }
            IpAddr::V6(network) => {
                let host = u128::MAX.checked_shr(u32::from(self.prefix)).unwrap_or(0);
                u128::from(network) & host == 0
            }
        }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix == max_prefix(self.network) {
            write!(f, "{}", self.network)
        } else {
            write!(f, "{}/{}", self.network, self.prefix)
        }
    }
}

impl Serialize for IpNet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<IpNet, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn networks_contain_their_addresses_only() {
        let private: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(private.contains(ip("10.255.0.1")));
        assert!(!private.contains(ip("11.0.0.1")));
        assert!(!private.contains(ip("::1")));
        // What a dual-stack listener reports for an IPv4 client.
        assert!(private.contains(ip("::ffff:10.1.2.3")));

        let host: IpNet = "192.0.2.7".parse().unwrap();
        assert!(host.contains(ip("192.0.2.7")));
        assert!(!host.contains(ip("192.0.2.8")));
        assert_eq!(host.to_string(), "192.0.2.7");

        let v6: IpNet = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert_eq!(v6.to_string(), "2001:db8::/32");

        let everyone: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(everyone.contains(ip("203.0.113.1")));
        let everyone: IpNet = "::/0".parse().unwrap();
        assert!(everyone.contains(ip("2001:db8::1")));

        let mapped: IpNet = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(mapped, "192.0.2.1".parse().unwrap());
    }

    #[test]
    fn malformed_networks_are_refused_with_a_reason() {
        for (text, words) in [
            ("10.1.2.3/8", "beyond its /8 prefix"),
            ("10.0.0.0/33", "0 to 32"),
            ("2001:db8::/129", "0 to 128"),
            ("10.0.0.0/", "prefix length"),
            ("10.0.0.0/-1", "prefix length"),
            ("proxy.internal", "not an IP address"),
            ("", "not an IP address"),
            ("10.0.0.0/8/8", "prefix length"),
        ] {
            let error = text.parse::<IpNet>().unwrap_err();
            assert!(error.contains(words), "{text}: {error}");
        }
    }

    #[test]
    fn round_trips_through_serde_as_a_string() {
        let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()];
        let json = serde_json::to_string(&nets).unwrap();
        assert_eq!(json, r#"["10.0.0.0/8","::1"]"#);
        assert_eq!(serde_json::from_str::<Vec<IpNet>>(&json).unwrap(), nets);
        assert!(serde_json::from_str::<Vec<IpNet>>(r#"["10.0.0.1/8"]"#).is_err());
    }
}
