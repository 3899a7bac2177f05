//! The client's IP address, as seen through trusted reverse proxies.
//!
//! Behind a load balancer every connection comes from the proxy, so the TCP peer says nothing
//! about the client; the proxy names it in `X-Forwarded-For` instead. That header is whatever
//! the sender wrote, so it is believed only from the proxies listed in `TRUSTED_PROXIES`
//! ([`TrustedProxies`]), and only as far as they vouch for it: the list is walked from the right
//! (the entry the last proxy appended) past every address that is itself a trusted proxy, and
//! the first one that is not is the client. This is what nginx's realip module does with
//! `real_ip_recursive on`. A client can write anything to the left of its own address, but the
//! walk stops before reaching it, so it cannot choose the address it is counted under (the
//! failed-login budget is kept per client address).
//!
//! With no trusted proxies (the default) the header is ignored and the client is the peer.
//! Handlers take a [`ClientIp`] rather than `ConnectInfo`, so none can forget the rule.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::HeaderValue;
use axum::http::header::HeaderMap;
use axum::http::request::Parts;
use ipnet::IpNet;

use crate::app::AppState;
use crate::error::ApiError;

/// The header a proxy appends its client's address to.
const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// The networks whose `X-Forwarded-For` is believed (`TRUSTED_PROXIES`). Empty by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// No proxy is trusted: the client is always the TCP peer.
    pub fn none() -> Self {
        Self::default()
    }

    /// `true` when no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is one of the trusted proxies. IPv4 addresses written as IPv6
    /// (`::ffff:10.0.0.1`, how a dual-stack socket reports them) count as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request from `peer` carrying these `X-Forwarded-For` values (every
    /// header line, in order, read as one comma-separated list).
    ///
    /// From an untrusted peer: the peer. From a trusted one: walking the list from the right,
    /// the first address that is not a trusted proxy; the leftmost address if all are. An entry
    /// that is not an address (`unknown`, garbage, an obfuscated name) ends the walk at the last
    /// address before it, which is a trusted proxy: a proxy that cannot name its client is
    /// counted as the client, rather than anything further left being believed.
    pub fn client_ip<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl DoubleEndedIterator<Item = &'a HeaderValue>,
    ) -> IpAddr {
        let mut client = peer.to_canonical();
        if self.is_empty() {
            return client;
        }
        let entries = forwarded_for
            .rev()
            .flat_map(|line| line.as_bytes().rsplit(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|entry| !entry.is_empty());
        for entry in entries {
            if !self.contains(client) {
                break;
            }
            match parse_forwarded_address(entry) {
                Some(ip) => client = ip,
                None => break,
            }
        }
        client
    }

    /// The client of a request from `peer` with these headers.
    pub fn client_of(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        self.client_ip(peer, headers.get_all(X_FORWARDED_FOR).iter())
    }
}

impl FromStr for TrustedProxies {
    type Err = String;

    /// Comma-separated networks in CIDR notation (`10.0.0.0/8`, `fd00::/8`); a bare address is
    /// one host (`127.0.0.1` is `127.0.0.1/32`). Host bits after the prefix are ignored.
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        raw.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                item.parse::<IpNet>()
                    .map(|net| net.trunc())
                    .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!(
                            "{item:?} is not an IP address or a CIDR network such as \
                             10.0.0.0/8 or 127.0.0.1"
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }
}

impl fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, net) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

/// One `X-Forwarded-For` entry: an IPv4 or IPv6 address, optionally with a port
/// (`192.0.2.1:4711`, `[2001:db8::1]:4711`) or in brackets (`[2001:db8::1]`), as proxies write
/// them. `None` for anything else.
fn parse_forwarded_address(entry: &[u8]) -> Option<IpAddr> {
    let entry = std::str::from_utf8(entry).ok()?;
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(socket) = entry.parse::<SocketAddr>() {
        return Some(socket.ip().to_canonical());
    }
    let bracketed = entry.strip_prefix('[')?.strip_suffix(']')?;
    bracketed
        .parse::<std::net::Ipv6Addr>()
        .ok()
        .map(|v6| IpAddr::V6(v6).to_canonical())
}

/// The request's client address under `TRUSTED_PROXIES` (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl<S> FromRequestParts<S> for ClientIp
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let ConnectInfo(peer) = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .copied()
            .ok_or_else(|| ApiError::Internal("the connection's peer address is unknown".into()))?;
        let state = AppState::from_ref(state);
        Ok(Self(
            state
                .config
                .server
                .trusted_proxies
                .client_of(peer.ip(), &parts.headers),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(raw: &str) -> TrustedProxies {
        raw.parse().expect("valid proxies")
    }

    fn ip(raw: &str) -> IpAddr {
        raw.parse().expect("valid address")
    }

    /// The client for `peer` and these header lines.
    fn client(trusted: &str, peer: &str, lines: &[&str]) -> IpAddr {
        let values: Vec<HeaderValue> = lines
            .iter()
            .map(|line| HeaderValue::from_str(line).expect("valid header value"))
            .collect();
        proxies(trusted).client_ip(ip(peer), values.iter())
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        assert_eq!(client("", "192.0.2.9", &["203.0.113.1"]), ip("192.0.2.9"));
    }

    #[test]
    fn an_untrusted_peer_cannot_name_another_client() {
        assert_eq!(
            client("10.0.0.0/8", "192.0.2.9", &["203.0.113.1, 10.0.0.2"]),
            ip("192.0.2.9")
        );
    }

    #[test]
    fn a_trusted_peer_names_its_client() {
        assert_eq!(
            client("127.0.0.1", "127.0.0.1", &["203.0.113.1"]),
            ip("203.0.113.1")
        );
    }

    #[test]
    fn the_walk_stops_at_the_first_untrusted_address_from_the_right() {
        // The client wrote a spoofed entry; the edge proxy appended the client's real address.
        assert_eq!(
            client("10.0.0.0/8", "10.0.0.1", &["198.51.100.7, 203.0.113.1"]),
            ip("203.0.113.1")
        );
    }

    #[test]
    fn several_trusted_proxies_are_walked_past() {
        assert_eq!(
            client(
                "10.0.0.0/8, 172.16.0.5",
                "10.0.0.1",
                &["198.51.100.7, 203.0.113.1, 172.16.0.5, 10.1.2.3"]
            ),
            ip("203.0.113.1")
        );
    }

    #[test]
    fn when_every_address_is_trusted_the_leftmost_is_the_client() {
        assert_eq!(
            client("10.0.0.0/8", "10.0.0.1", &["10.9.9.9, 10.0.0.3"]),
            ip("10.9.9.9")
        );
    }

    #[test]
    fn several_header_lines_read_as_one_list() {
        assert_eq!(
            client(
                "10.0.0.0/8",
                "10.0.0.1",
                &["198.51.100.7", "203.0.113.1, 10.0.0.4", "10.0.0.5"]
            ),
            ip("203.0.113.1")
        );
    }

    #[test]
    fn ipv6_clients_proxies_and_ports() {
        assert_eq!(
            client("fd00::/8", "fd00::1", &["2001:db8::7, fd00::2"]),
            ip("2001:db8::7")
        );
        assert_eq!(
            client("fd00::/8", "fd00::1", &["[2001:db8::7]:51234"]),
            ip("2001:db8::7")
        );
        assert_eq!(
            client("fd00::/8", "fd00::1", &["[2001:db8::8]"]),
            ip("2001:db8::8")
        );
        assert_eq!(
            client("10.0.0.0/8", "10.0.0.1", &["203.0.113.1:4711"]),
            ip("203.0.113.1")
        );
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_ipv4() {
        assert_eq!(
            client("127.0.0.1/32", "::ffff:127.0.0.1", &["::ffff:203.0.113.1"]),
            ip("203.0.113.1")
        );
        assert_eq!(client("", "::ffff:192.0.2.9", &[]), ip("192.0.2.9"));
    }

    #[test]
    fn a_malformed_entry_ends_the_walk_at_the_proxy_before_it() {
        assert_eq!(
            client("10.0.0.0/8", "10.0.0.1", &["203.0.113.1, unknown"]),
            ip("10.0.0.1")
        );
        assert_eq!(
            client(
                "10.0.0.0/8",
                "10.0.0.1",
                &["203.0.113.1, garbage, 10.0.0.2"]
            ),
            ip("10.0.0.2")
        );
        assert_eq!(
            client("10.0.0.0/8", "10.0.0.1", &["999.1.1.1"]),
            ip("10.0.0.1")
        );
        // Garbage left of the client's own address is never reached.
        assert_eq!(
            client("10.0.0.0/8", "10.0.0.1", &["garbage, 203.0.113.1"]),
            ip("203.0.113.1")
        );
    }

    #[test]
    fn empty_entries_and_spaces_are_skipped() {
        assert_eq!(
            client("10.0.0.0/8", "10.0.0.1", &[" 203.0.113.1 ,, ", ""]),
            ip("203.0.113.1")
        );
        assert_eq!(client("10.0.0.0/8", "10.0.0.1", &[]), ip("10.0.0.1"));
    }

    #[test]
    fn non_utf8_entries_are_malformed() {
        let value = HeaderValue::from_bytes(b"203.0.113.1, \xff").expect("opaque bytes");
        assert_eq!(
            proxies("10.0.0.0/8").client_ip(ip("10.0.0.1"), [&value].into_iter()),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn configuration_accepts_networks_and_single_hosts() {
        let parsed = proxies(" 10.0.0.0/8, 127.0.0.1 ,fd00::/8,::1,192.168.1.77/24 ");
        for inside in ["10.255.0.1", "127.0.0.1", "fd12::1", "::1", "192.168.1.3"] {
            assert!(parsed.contains(ip(inside)), "{inside}");
        }
        for outside in ["11.0.0.1", "127.0.0.2", "fe80::1", "::2", "192.168.2.1"] {
            assert!(!parsed.contains(ip(outside)), "{outside}");
        }
        assert_eq!(
            parsed.to_string(),
            "10.0.0.0/8,127.0.0.1/32,fd00::/8,::1/128,192.168.1.0/24"
        );
        assert!(proxies("").is_empty());
        assert!(proxies(" , ").is_empty());
    }

    #[test]
    fn configuration_refuses_what_is_not_a_network() {
        for bad in [
            "10.0.0.0/33",
            "localhost",
            "10.0.0",
            "10.0.0.0/8;",
            "::1/129",
        ] {
            let err = bad.parse::<TrustedProxies>().unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }
}
