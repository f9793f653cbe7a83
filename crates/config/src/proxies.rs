//! TRUSTED_PROXIES, read the same way by every role that sits behind a proxy (the API behind
//! nginx and the web app, the web app behind nginx), so both agree on who the client is.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::reader::Reader;

/// Addresses and CIDR ranges whose `X-Forwarded-For` is believed; empty believes no one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }

    /// The client's address: the TCP peer, or, when the peer is a trusted proxy, the nearest
    /// untrusted address in `X-Forwarded-For`. It is read right to left because each proxy
    /// appends the address it saw: everything left of the first untrusted hop was written by
    /// the client itself and may be forged.
    pub fn client_ip(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        if !self.contains(&peer) {
            return peer;
        }
        let Some(xff) = forwarded_for else {
            return peer;
        };
        let mut client = peer;
        for hop in xff.rsplit(',').map(str::trim) {
            match hop.parse::<IpAddr>() {
                Ok(ip) if self.contains(&ip) => client = ip,
                Ok(ip) => return ip,
                Err(_) => break,
            }
        }
        client
    }
}

impl fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&items.join(","))
    }
}

impl Reader<'_> {
    /// TRUSTED_PROXIES: comma-separated IP addresses or CIDR ranges.
    pub(crate) fn trusted_proxies(&mut self) -> TrustedProxies {
        let mut nets = Vec::new();
        for item in self.list("TRUSTED_PROXIES") {
            match item
                .parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
            {
                Ok(net) => nets.push(net),
                Err(_) => self.errors.push(format!(
                    "TRUSTED_PROXIES: '{item}' is not an IP address or CIDR range"
                )),
            }
        }
        TrustedProxies(nets)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn read(value: &str) -> (TrustedProxies, Vec<String>) {
        let vars = HashMap::from([("TRUSTED_PROXIES".to_string(), value.to_string())]);
        let mut r = Reader::new(&vars);
        let t = r.trusted_proxies();
        (t, r.errors)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_and_ranges_are_accepted_and_shown_back() {
        let (t, errors) = read(" 172.28.0.0/24 , 127.0.0.1,::1 ");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(t.to_string(), "172.28.0.0/24,127.0.0.1/32,::1/128");
        assert!(t.contains(&ip("172.28.0.77")));
        assert!(!t.contains(&ip("172.28.1.1")));
        assert!(t.contains(&ip("::1")));
    }

    #[test]
    fn a_bad_entry_names_the_variable() {
        let (_, errors) = read("10.0.0.1,nginx");
        assert_eq!(
            errors,
            vec!["TRUSTED_PROXIES: 'nginx' is not an IP address or CIDR range".to_string()]
        );
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let (trusted, _) = read("10.0.0.0/8");
        let peer = ip("10.0.0.5");
        let outsider = ip("203.0.113.9");
        assert_eq!(trusted.client_ip(outsider, Some("1.2.3.4")), outsider);
        assert_eq!(
            trusted.client_ip(peer, Some("1.2.3.4, 203.0.113.9, 10.0.0.7")),
            outsider
        );
        assert_eq!(trusted.client_ip(peer, None), peer);
        assert_eq!(trusted.client_ip(peer, Some("garbage")), peer);
        assert_eq!(
            TrustedProxies::default().client_ip(peer, Some("1.2.3.4")),
            peer
        );
    }
}
