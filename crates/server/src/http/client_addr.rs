//! The client's address: what every per-address limit (failed sign-ins and passkeys,
//! reset requests and links, sign-up mails), sessions and the audit log count by.
//! Decided here and nowhere else.
//!
//! The TCP peer is the client unless it is one of `server.trusted_proxies`. Then the
//! proxy names the client in `server.forwarded_header` (`X-Forwarded-For`, or RFC
//! 7239 `Forwarded`), and the chain there is read from the right, the end the
//! nearest proxy wrote, past every further trusted proxy: the first address that is
//! not a trusted proxy is the client. Whatever lies to its left the client sent
//! itself, so it may be forged and is never read. An entry that cannot be read where
//! the walk needs it (`unknown`, an obfuscated name, garbage) leaves the last trusted
//! proxy as the client: the last address anyone vouched for. Only the configured
//! header is read: a proxy that sets one passes the other on from the client as is.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use actix_web::http::header::{self, HeaderMap, HeaderName};
use gatehouse_core::config::{ForwardedHeader, ServerConfig};
use gatehouse_core::net::IpNet;

/// One entry of a forwarding chain: an address, or something that is none.
type Hop = Option<IpAddr>;

/// The client of a request whose TCP peer is `peer`; `None` only without a peer
/// (a Unix socket, or tests that build requests by hand).
pub fn client_ip(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    server: &ServerConfig,
) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    let trusted = &server.trusted_proxies;
    if !is_trusted(peer, trusted) {
        return Some(peer);
    }
    let chain = match server.forwarded_header {
        ForwardedHeader::XForwardedFor => {
            x_forwarded_for(header_values(headers, &header::X_FORWARDED_FOR))
        }
        ForwardedHeader::Forwarded => forwarded(header_values(headers, &header::FORWARDED)),
    };
    Some(walk(peer, &chain, trusted))
}

fn is_trusted(address: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(address))
}

/// From the trusted `peer` leftwards through the chain, while the address reached
/// is a trusted proxy.
fn walk(peer: IpAddr, chain: &[Hop], trusted: &[IpNet]) -> IpAddr {
    let mut client = peer;
    for hop in chain.iter().rev() {
        if !is_trusted(client, trusted) {
            break;
        }
        match hop {
            Some(address) => client = *address,
            None => break,
        }
    }
    client
}

/// Every line of a header, in order (a list may be split over several lines); a
/// line that is not visible ASCII is `None`.
fn header_values<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> impl Iterator<Item = Option<&'a str>> {
    headers.get_all(name).map(|value| value.to_str().ok())
}

/// `X-Forwarded-For: client, proxy1, proxy2`, with or without ports.
fn x_forwarded_for<'a>(lines: impl Iterator<Item = Option<&'a str>>) -> Vec<Hop> {
    let mut chain = Vec::new();
    for line in lines {
        let Some(line) = line else {
            chain.push(None);
            continue;
        };
        chain.extend(
            line.split(',')
                .map(str::trim)
                // An empty list element is nothing (RFC 9110 §5.6.1).
                .filter(|entry| !entry.is_empty())
                .map(address),
        );
    }
    chain
}

/// An address as proxies write it: `192.0.2.1`, `2001:db8::1`, `192.0.2.1:4711`,
/// `[2001:db8::1]` or `[2001:db8::1]:4711`.
fn address(entry: &str) -> Hop {
    let entry = entry.trim();
    if let Ok(address) = entry.parse::<IpAddr>() {
        return Some(address.to_canonical());
    }
    if let Ok(socket) = entry.parse::<SocketAddr>() {
        return Some(socket.ip().to_canonical());
    }
    entry
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse::<Ipv6Addr>().ok())
        .map(|address| IpAddr::V6(address).to_canonical())
}

/// RFC 7239 `Forwarded: for=client;proto=https, for="[2001:db8::1]:4711"`: one
/// element per proxy, its `for` parameter naming whom the proxy heard from.
fn forwarded<'a>(lines: impl Iterator<Item = Option<&'a str>>) -> Vec<Hop> {
    let mut chain = Vec::new();
    for line in lines {
        let Some(line) = line else {
            chain.push(None);
            continue;
        };
        for element in split_outside_quotes(line, ',') {
            if element.trim().is_empty() {
                continue;
            }
            let nodes: Vec<&str> = split_outside_quotes(element, ';')
                .into_iter()
                .filter_map(|pair| pair.split_once('='))
                .filter(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
                .map(|(_, value)| value.trim())
                .collect();
            // No `for`, two of them, `unknown`, an obfuscated `_name`: nobody to
            // count by.
            let node = match nodes.as_slice() {
                [node] => unquote(node),
                _ => None,
            };
            chain.push(node.as_deref().and_then(address));
        }
    }
    chain
}

/// Splits at `separator` where it is not inside a quoted string.
fn split_outside_quotes(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (at, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == separator && !quoted {
            parts.push(&text[start..at]);
            start = at + c.len_utf8();
        }
    }
    parts.push(&text[start..]);
    parts
}

/// A token as it is, a quoted string without its quotes and escapes; `None` for a
/// quoted string that does not end.
fn unquote(value: &str) -> Option<String> {
    let Some(inner) = value.strip_prefix('"') else {
        return Some(value.to_owned());
    };
    let inner = inner.strip_suffix('"')?;
    let mut unquoted = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        unquoted.push(if c == '\\' { chars.next()? } else { c });
    }
    Some(unquoted)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use actix_web::http::header::HeaderValue;

    use super::*;

    const XFF: &str = "x-forwarded-for";
    const FORWARDED: &str = "forwarded";

    fn config(trusted: &[&str], header: ForwardedHeader) -> ServerConfig {
        ServerConfig {
            trusted_proxies: trusted.iter().map(|net| net.parse().unwrap()).collect(),
            forwarded_header: header,
            ..ServerConfig::default()
        }
    }

    fn behind(trusted: &[&str]) -> ServerConfig {
        config(trusted, ForwardedHeader::XForwardedFor)
    }

    fn headers(lines: &[(&str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in lines {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        map
    }

    /// The client of a request from `peer` with these header lines.
    fn client(server: &ServerConfig, peer: &str, lines: &[(&str, &[u8])]) -> String {
        client_ip(Some(peer.parse().unwrap()), &headers(lines), server)
            .unwrap()
            .to_string()
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client_whatever_the_headers_say() {
        let direct = ServerConfig::default();
        let spoofed: &[(&str, &[u8])] = &[
            (XFF, b"198.51.100.1"),
            (FORWARDED, b"for=198.51.100.2"),
            ("x-real-ip", b"198.51.100.3"),
        ];
        assert_eq!(client(&direct, "203.0.113.9", spoofed), "203.0.113.9");
        // A proxy elsewhere is trusted; this peer is not.
        let proxied = behind(&["10.0.0.0/8"]);
        assert_eq!(client(&proxied, "203.0.113.9", spoofed), "203.0.113.9");
        let proxied = config(&["10.0.0.0/8"], ForwardedHeader::Forwarded);
        assert_eq!(client(&proxied, "203.0.113.9", spoofed), "203.0.113.9");
        assert_eq!(client_ip(None, &headers(spoofed), &proxied), None);
    }

    #[test]
    fn a_trusted_proxy_names_the_client() {
        let server = behind(&["10.0.0.1"]);
        assert_eq!(
            client(&server, "10.0.0.1", &[(XFF, b"203.0.113.9")]),
            "203.0.113.9"
        );
        // The proxy sent nothing: the request is the proxy's own.
        assert_eq!(client(&server, "10.0.0.1", &[]), "10.0.0.1");
        assert_eq!(client(&server, "10.0.0.1", &[(XFF, b"")]), "10.0.0.1");
    }

    #[test]
    fn chains_are_read_from_the_right_past_trusted_proxies_only() {
        let server = behind(&["10.0.0.0/8", "192.0.2.7"]);
        // client → 10.0.0.2 → 192.0.2.7 (the peer).
        assert_eq!(
            client(&server, "192.0.2.7", &[(XFF, b"203.0.113.9, 10.0.0.2")]),
            "203.0.113.9"
        );
        // The client put an address of its choice in front: never read.
        assert_eq!(
            client(
                &server,
                "192.0.2.7",
                &[(XFF, b"198.51.100.1, 10.0.0.3, 203.0.113.9, 10.0.0.2")]
            ),
            "203.0.113.9"
        );
        // Several lines are one list, in order.
        assert_eq!(
            client(
                &server,
                "10.0.0.1",
                &[(XFF, b"198.51.100.1, 203.0.113.9"), (XFF, b"10.0.0.2")]
            ),
            "203.0.113.9"
        );
        // Every hop trusted: the first one is where the request came from.
        assert_eq!(
            client(&server, "10.0.0.1", &[(XFF, b"10.0.0.3,10.0.0.2")]),
            "10.0.0.3"
        );
        // Ports, brackets and empty elements.
        assert_eq!(
            client(&server, "10.0.0.1", &[(XFF, b"203.0.113.9:51234, ,")]),
            "203.0.113.9"
        );
    }

    #[test]
    fn ipv6_clients_and_proxies() {
        let server = behind(&["2001:db8:1::/48", "10.0.0.0/8"]);
        assert_eq!(
            client(&server, "2001:db8:1::5", &[(XFF, b"2001:db8:ffff::17")]),
            "2001:db8:ffff::17"
        );
        assert_eq!(
            client(
                &server,
                "2001:db8:1::5",
                &[(XFF, b"[2001:db8:ffff::17]:4711")]
            ),
            "2001:db8:ffff::17"
        );
        assert_eq!(
            client(&server, "2001:db8:1::5", &[(XFF, b"[2001:db8:ffff::18]")]),
            "2001:db8:ffff::18"
        );
        // A dual-stack listener reports an IPv4 proxy as IPv4-mapped IPv6.
        assert_eq!(
            client(&server, "::ffff:10.0.0.1", &[(XFF, b"::ffff:203.0.113.9")]),
            "203.0.113.9"
        );
        assert_eq!(client(&server, "::ffff:203.0.113.9", &[]), "203.0.113.9");
        let server = config(&["2001:db8:1::/48"], ForwardedHeader::Forwarded);
        assert_eq!(
            client(
                &server,
                "2001:db8:1::5",
                &[(FORWARDED, b"for=\"[2001:db8:ffff::17]:4711\";proto=https")]
            ),
            "2001:db8:ffff::17"
        );
    }

    #[test]
    fn rfc_7239_elements_parameters_and_quoting() {
        let server = config(&["10.0.0.0/8"], ForwardedHeader::Forwarded);
        let forwarded = |value: &[u8]| client(&server, "10.0.0.1", &[(FORWARDED, value)]);
        assert_eq!(forwarded(b"for=203.0.113.9"), "203.0.113.9");
        assert_eq!(
            forwarded(b"for=198.51.100.1;proto=http, For=\"203.0.113.9:80\";by=10.0.0.1"),
            "203.0.113.9"
        );
        assert_eq!(
            forwarded(b"proto=https;for=203.0.113.9;host=\"id.example.com\", for=10.0.0.2"),
            "203.0.113.9"
        );
        // A quoted string may hold separators and escapes.
        assert_eq!(
            forwarded(b"for=203.0.113.9;by=\"a,b;c\\\"d\", for=10.0.0.2"),
            "203.0.113.9"
        );
        // Only the configured header counts: this one is the client's own.
        let other = client(&server, "10.0.0.1", &[(XFF, b"198.51.100.1")]);
        assert_eq!(other, "10.0.0.1");
        let xff = behind(&["10.0.0.0/8"]);
        assert_eq!(
            client(&xff, "10.0.0.1", &[(FORWARDED, b"for=198.51.100.1")]),
            "10.0.0.1"
        );
    }

    #[test]
    fn unreadable_entries_stop_at_the_last_trusted_proxy() {
        let server = behind(&["10.0.0.0/8"]);
        for value in [
            &b"garbage"[..],
            b"203.0.113.9, not-an-address",
            b"203.0.113.9, 10.0.0.2, 999.1.1.1",
            b"203.0.113.9 10.0.0.2",
            b"[2001:db8::1",
            b"\xff\xfe",
        ] {
            let found = client(&server, "10.0.0.1", &[(XFF, value)]);
            assert_eq!(found, "10.0.0.1", "{}", String::from_utf8_lossy(value));
        }
        // The walk stops at what it reaches first; junk further left is never read.
        assert_eq!(
            client(&server, "10.0.0.1", &[(XFF, b"junk, 203.0.113.9")]),
            "203.0.113.9"
        );
        assert_eq!(
            client(
                &server,
                "10.0.0.1",
                &[(XFF, b"\xff"), (XFF, b"203.0.113.9")]
            ),
            "203.0.113.9"
        );
        // One trusted hop read, then junk: the hop it reached is the client.
        assert_eq!(
            client(&server, "10.0.0.1", &[(XFF, b"junk, 10.0.0.2")]),
            "10.0.0.2"
        );

        let server = config(&["10.0.0.0/8"], ForwardedHeader::Forwarded);
        for value in [
            &b"for=unknown"[..],
            b"for=_hidden",
            b"proto=https",
            b"for=\"203.0.113.9",
            b"for=\"[2001:db8::1]:80\\",
            b"for",
            b"for=203.0.113.9;for=\"[::1",
        ] {
            let found = client(&server, "10.0.0.1", &[(FORWARDED, value)]);
            assert_eq!(found, "10.0.0.1", "{}", String::from_utf8_lossy(value));
        }
        assert_eq!(
            client(
                &server,
                "10.0.0.1",
                &[(FORWARDED, b"for=unknown, for=203.0.113.9")]
            ),
            "203.0.113.9"
        );
    }
}
