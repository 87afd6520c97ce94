//! The network address a request came from, as far as the server can trust it.
//!
//! Behind a reverse proxy every connection comes from the proxy, so the client's own address is
//! in `X-Forwarded-For`. That header is written by whoever sent the request, so only the part
//! appended by proxies the operator trusts means anything: walk it from the right, skipping
//! trusted proxies, and take the first address that is not one (nginx's `real_ip_recursive`
//! reads it the same way; RFC 7239 §5.2 describes the same chain for `Forwarded`).

use std::net::IpAddr;
use std::str::FromStr;

/// An address range in CIDR notation (`10.0.0.0/8`, `::1/128`, or a bare address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    base: IpAddr,
    prefix: u8,
}

impl IpRange {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.base, canonical(ip)) {
            (IpAddr::V4(b), IpAddr::V4(a)) => {
                masked(u128::from(u32::from(b)), 32, self.prefix) == masked(u128::from(u32::from(a)), 32, self.prefix)
            }
            (IpAddr::V6(b), IpAddr::V6(a)) => masked(u128::from(b), 128, self.prefix) == masked(u128::from(a), 128, self.prefix),
            _ => false,
        }
    }
}

impl FromStr for IpRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let base = canonical(addr.parse::<IpAddr>().map_err(|_| format!("{s:?} is not an address or a CIDR range"))?);
        let bits = if base.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => {
                p.parse::<u8>().ok().filter(|p| *p <= bits).ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {bits}"))?
            }
        };
        Ok(Self { base, prefix })
    }
}

fn masked(v: u128, bits: u8, prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        v >> (bits - prefix)
    }
}

/// An IPv4 address mapped into IPv6 (`::ffff:10.0.0.1`, as dual-stack sockets report it) is
/// the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client's address: the connection's peer, unless the peer is a trusted proxy, in which
/// case the rightmost address of `forwarded_for` that is not a trusted proxy. Malformed entries
/// end the walk at the last address that was trusted, so a forged header can only ever name
/// the proxy itself.
pub fn client_address(peer: IpAddr, forwarded_for: &[&str], trusted: &[IpRange]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|r| r.contains(ip));
    let mut current = canonical(peer);
    if !is_trusted(current) {
        return current;
    }
    // Several headers count as one list, in order (RFC 9110 §5.3).
    let hops = forwarded_for.iter().flat_map(|h| h.split(',')).map(str::trim).filter(|h| !h.is_empty());
    for hop in hops.collect::<Vec<_>>().into_iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) => {
                current = canonical(ip);
                if !is_trusted(current) {
                    return current;
                }
            }
            Err(_) => return current,
        }
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(r: &[&str]) -> Vec<IpRange> {
        r.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_parse_and_match() {
        let r: IpRange = "10.0.0.0/8".parse().unwrap();
        assert!(r.contains(ip("10.1.2.3")));
        assert!(r.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped addresses are IPv4");
        assert!(!r.contains(ip("11.0.0.1")));
        assert!(!r.contains(ip("::1")));
        let one: IpRange = "192.168.1.7".parse().unwrap();
        assert!(one.contains(ip("192.168.1.7")) && !one.contains(ip("192.168.1.8")));
        let v6: IpRange = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        let all: IpRange = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        for bad in ["10.0.0.0/33", "10.0.0/8", "::/129", "proxy", "10.0.0.0/x"] {
            assert!(bad.parse::<IpRange>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn the_peer_is_the_client_unless_it_is_a_trusted_proxy() {
        let trusted = ranges(&["10.0.0.0/8"]);
        // A client that is not a proxy cannot name another address.
        assert_eq!(client_address(ip("203.0.113.9"), &["198.51.100.1"], &trusted), ip("203.0.113.9"));
        // No trusted proxies: the header is ignored.
        assert_eq!(client_address(ip("10.0.0.2"), &["198.51.100.1"], &[]), ip("10.0.0.2"));
    }

    #[test]
    fn forwarded_for_is_read_from_the_right_past_trusted_proxies() {
        let trusted = ranges(&["10.0.0.0/8"]);
        // The client forged the leftmost entry; the proxies appended the real one.
        let chain = ["1.2.3.4, 203.0.113.9, 10.0.0.5"];
        assert_eq!(client_address(ip("10.0.0.2"), &chain, &trusted), ip("203.0.113.9"));
        // Several header lines are one list.
        assert_eq!(client_address(ip("10.0.0.2"), &["1.2.3.4", "203.0.113.9"], &trusted), ip("203.0.113.9"));
        // Garbage stops the walk at the last trusted hop.
        assert_eq!(client_address(ip("10.0.0.2"), &["203.0.113.9, junk"], &trusted), ip("10.0.0.2"));
        // Only proxies: the leftmost one is the best answer.
        assert_eq!(client_address(ip("10.0.0.2"), &["10.9.9.9"], &trusted), ip("10.9.9.9"));
        assert_eq!(client_address(ip("10.0.0.2"), &[], &trusted), ip("10.0.0.2"));
    }
}
