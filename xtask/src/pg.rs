//! Is the test PostgreSQL up? Checked before the suite so that a missing server is one
//! clear message instead of every store test failing after the build.

use std::io::ErrorKind;
use std::net::{TcpStream, ToSocketAddrs};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Same variable and default as `gatehouse_identity_store::testing::pg_admin_url`.
const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const TIMEOUT: Duration = Duration::from_secs(3);

pub fn test_url() -> String {
    std::env::var("GATEHOUSE_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// A TCP connect proves something listens; `psql` (when installed) proves it is
/// PostgreSQL and accepts these credentials, which a port check cannot.
pub fn check_reachable(url: &str) -> Result<(), String> {
    let (host, port) = host_port(url)?;
    tcp_connect(&host, port)?;
    psql_select_1(url)
}

fn tcp_connect(host: &str, port: u16) -> Result<(), String> {
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    let mut last = format!("{host} resolved to no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, TIMEOUT) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("TCP connect to {addr} failed: {e}"),
        }
    }
    Err(last)
}

fn psql_select_1(url: &str) -> Result<(), String> {
    let output = Command::new("psql")
        // -X: ignore ~/.psqlrc; -w: never prompt for a password (CI has no terminal).
        .args(["-X", "-w", "-q", "-c", "select 1", url])
        .env("PGCONNECT_TIMEOUT", TIMEOUT.as_secs().to_string())
        .stdin(Stdio::null())
        .output();
    match output {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        // psql is optional: the TCP check already passed.
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot run psql: {e}")),
    }
}

/// Host and port from `postgres://[user[:password]@]host[:port][/db][?params]`.
fn host_port(url: &str) -> Result<(String, u16), String> {
    let (_, rest) = url
        .split_once("://")
        .ok_or_else(|| "not a postgres:// URL".to_owned())?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    // The password may contain '@' only percent-encoded, so the last '@' ends the userinfo.
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = match host_port.strip_prefix('[') {
        // IPv6 literal: [::1]:5432
        Some(v6) => {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| "unclosed '[' in host".to_owned())?;
            (host, after.strip_prefix(':'))
        }
        None => match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        },
    };
    if host.is_empty() {
        // Unix-socket URLs have no host; the check (and CI) expects TCP.
        return Err("the URL names no host; use a TCP address such as 127.0.0.1:5432".to_owned());
    }
    let port = match port {
        None | Some("") => 5432,
        Some(p) => p.parse().map_err(|_| format!("bad port `{p}`"))?,
    };
    Ok((host.to_owned(), port))
}

/// The URL with any password hidden, for messages that end up in CI logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn parses_host_and_port() {
        let hp = |u| host_port(u).unwrap();
        assert_eq!(hp(DEFAULT_URL), ("127.0.0.1".into(), 5432));
        assert_eq!(hp("postgresql://db:6543"), ("db".into(), 6543));
        assert_eq!(
            hp("postgres://u:p@ss@h/x?sslmode=disable"),
            ("h".into(), 5432)
        );
        assert_eq!(hp("postgres://u@[::1]:5433/x"), ("::1".into(), 5433));
        assert!(host_port("postgres:///x?host=/run/postgresql").is_err());
        assert!(host_port("postgres://h:port/x").is_err());
        assert!(host_port("127.0.0.1:5432").is_err());
    }

    #[test]
    fn redacts_password_only() {
        assert_eq!(
            redact("postgres://u:secret@h:1/db?x=y"),
            "postgres://u:***@h:1/db?x=y"
        );
        assert_eq!(redact(DEFAULT_URL), DEFAULT_URL);
    }

    #[test]
    fn closed_port_is_unreachable() {
        // Port 1 (tcpmux) is closed on any sane test machine; the check must not pass.
        assert!(check_reachable("postgres://postgres@127.0.0.1:1/postgres").is_err());
    }
}
