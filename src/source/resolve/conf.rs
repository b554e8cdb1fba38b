//! The two configuration files of a stub resolver: `/etc/hosts` and `/etc/resolv.conf`.
//!
//! Both parsers take the file's text and never fail: like the C library, they skip lines they
//! do not understand, so a file written for another resolver still works here.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The addresses `/etc/hosts` gives `host` (exact, case-insensitive match on the canonical
/// name or an alias; a trailing dot on `host` is ignored), in file order, without duplicates.
pub(crate) fn hosts_lookup(text: &str, host: &str) -> Vec<IpAddr> {
    let host = host.strip_suffix('.').unwrap_or(host);
    let mut found = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let Some(addr) = fields.next() else { continue };
        // Link-local IPv6 with a zone (`fe80::1%eth0`) needs the interface index: skipped.
        let Ok(addr) = addr.parse::<IpAddr>() else {
            continue;
        };
        if fields.any(|name| name.eq_ignore_ascii_case(host)) && !found.contains(&addr) {
            found.push(addr);
        }
    }
    found
}

/// Nameservers used at most, as in glibc (`MAXNS`).
pub(crate) const MAX_NAMESERVERS: usize = 3;

/// What the resolver takes from `resolv.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResolvConf {
    /// At most [`MAX_NAMESERVERS`], in file order.
    pub(crate) nameservers: Vec<SocketAddr>,
    /// Wait for one answer (`options timeout:N`, 1..=30 s; default 5 s).
    pub(crate) timeout: Duration,
    /// Rounds over all nameservers (`options attempts:N`, 1..=5; default 2).
    pub(crate) attempts: u32,
    /// Ask over TCP from the start (`options use-vc` / `usevc`).
    pub(crate) use_tcp: bool,
}

impl ResolvConf {
    /// Parses the text of a `resolv.conf`.
    ///
    /// `nameserver ADDR` lines give the servers (port 53). As an extension (OpenBSD's
    /// syntax, which glibc skips) `nameserver [ADDR]:PORT` gives another port. `options`
    /// `timeout:N`, `attempts:N` and `use-vc` are honoured; `search`, `domain`, `ndots`,
    /// `rotate`, `edns0`, `sortlist` and the rest are ignored. `RES_OPTIONS` and
    /// `LOCALDOMAIN` from the environment are not read.
    pub(crate) fn parse(text: &str) -> ResolvConf {
        let mut conf = ResolvConf {
            nameservers: Vec::new(),
            timeout: Duration::from_secs(5),
            attempts: 2,
            use_tcp: false,
        };
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut fields = line.split_whitespace();
            match fields.next() {
                Some("nameserver") => {
                    if let Some(server) = fields.next().and_then(parse_nameserver) {
                        if conf.nameservers.len() < MAX_NAMESERVERS
                            && !conf.nameservers.contains(&server)
                        {
                            conf.nameservers.push(server);
                        }
                    }
                }
                Some("options") => {
                    for option in fields {
                        let (key, value) = option.split_once(':').unwrap_or((option, ""));
                        let number = value.parse::<u32>().ok();
                        match (key, number) {
                            ("timeout", Some(n)) => {
                                conf.timeout = Duration::from_secs(n.clamp(1, 30).into())
                            }
                            ("attempts", Some(n)) => conf.attempts = n.clamp(1, 5),
                            ("use-vc" | "usevc", _) => conf.use_tcp = true,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        conf
    }
}

/// `ADDR` (port 53), `[ADDR]:PORT` or `ADDR:PORT` for IPv4. A zone (`fe80::1%eth0`) needs the
/// interface index, which only the C library can give: such lines are skipped, unless the
/// zone is already a number.
fn parse_nameserver(field: &str) -> Option<SocketAddr> {
    if let Ok(ip) = field.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 53));
    }
    if let Some(rest) = field.strip_prefix('[') {
        let (addr, port) = rest.split_once("]:")?;
        let port = port.parse().ok()?;
        return match addr.parse::<IpAddr>() {
            Ok(ip) => Some(SocketAddr::new(ip, port)),
            Err(_) => with_numeric_zone(addr, port),
        };
    }
    if let Ok(addr) = field.parse::<SocketAddr>() {
        return Some(addr);
    }
    with_numeric_zone(field, 53)
}

fn with_numeric_zone(field: &str, port: u16) -> Option<SocketAddr> {
    let (addr, zone) = field.split_once('%')?;
    let addr = addr.parse::<std::net::Ipv6Addr>().ok()?;
    let zone = zone.parse::<u32>().ok()?;
    Some(SocketAddr::V6(std::net::SocketAddrV6::new(
        addr, port, 0, zone,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTS: &str = "\
# comment line
127.0.0.1\tlocalhost
::1 localhost ip6-localhost # trailing comment
10.1.2.3   Tiles.Example.org tiles   # a host and its alias
10.1.2.4 tiles.example.org
fe80::1%eth0 linklocal
not-an-ip bogus
2001:db8::7 tiles.example.org
10.1.2.3 tiles
";

    #[test]
    fn hosts_match_exact_names_case_insensitively() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            hosts_lookup(HOSTS, "tiles.example.ORG"),
            vec![ip("10.1.2.3"), ip("10.1.2.4"), ip("2001:db8::7")]
        );
        assert_eq!(hosts_lookup(HOSTS, "tiles."), vec![ip("10.1.2.3")]);
        assert_eq!(
            hosts_lookup(HOSTS, "localhost"),
            vec![ip("127.0.0.1"), ip("::1")]
        );
        assert!(hosts_lookup(HOSTS, "example.org").is_empty());
        assert!(hosts_lookup(HOSTS, "tiles.example").is_empty());
        assert!(hosts_lookup(HOSTS, "comment").is_empty());
        assert!(hosts_lookup(HOSTS, "linklocal").is_empty());
        assert!(hosts_lookup(HOSTS, "bogus").is_empty());
        assert!(hosts_lookup("", "tiles").is_empty());
    }

    #[test]
    fn resolv_conf_servers_and_options() {
        let conf = ResolvConf::parse(
            "\
# generated by NetworkManager
search lan example.org
nameserver 192.0.2.53
nameserver 2001:db8::53 # v6
nameserver 192.0.2.53
nameserver bogus
options ndots:2 timeout:3 attempts:4 rotate
nameserver [127.0.0.1]:5353
nameserver 192.0.2.99
",
        );
        let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(
            conf.nameservers,
            vec![
                sa("192.0.2.53:53"),
                sa("[2001:db8::53]:53"),
                sa("127.0.0.1:5353")
            ]
        );
        assert_eq!(conf.timeout, Duration::from_secs(3));
        assert_eq!(conf.attempts, 4);
        assert!(!conf.use_tcp);
    }

    #[test]
    fn resolv_conf_defaults_and_bounds() {
        let conf = ResolvConf::parse("");
        assert!(conf.nameservers.is_empty());
        assert_eq!((conf.timeout, conf.attempts), (Duration::from_secs(5), 2));
        let conf = ResolvConf::parse("options timeout:0 attempts:99 use-vc\noptions timeout:x");
        assert_eq!((conf.timeout, conf.attempts), (Duration::from_secs(1), 5));
        assert!(conf.use_tcp);
        let conf = ResolvConf::parse("options timeout:1000\n");
        assert_eq!(conf.timeout, Duration::from_secs(30));
    }

    #[test]
    fn nameserver_forms() {
        let sa = |s: &str| s.parse::<SocketAddr>().ok();
        assert_eq!(parse_nameserver("::1"), sa("[::1]:53"));
        assert_eq!(parse_nameserver("[::1]:5353"), sa("[::1]:5353"));
        assert_eq!(parse_nameserver("127.0.0.1:5300"), sa("127.0.0.1:5300"));
        assert_eq!(parse_nameserver("fe80::1%2"), sa("[fe80::1%2]:53"));
        assert_eq!(parse_nameserver("fe80::1%eth0"), None);
        assert_eq!(parse_nameserver("[::1]"), None);
        assert_eq!(parse_nameserver("[::1]:x"), None);
        assert_eq!(parse_nameserver("dns.example"), None);
    }
}
