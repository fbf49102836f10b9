//! Where a service's instances are: fixed URLs, or a DNS name whose
//! addresses are the instances (a Kubernetes headless Service resolves to
//! one address per ready pod).
//!
//! `dns://chat-headless:50051` makes every address the name resolves to
//! an instance at port 50051, reread every `upstream.dns_refresh`;
//! `http://host:port` is one instance however many addresses `host` has.
//! A list may mix both.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use async_trait::async_trait;

/// One entry of an endpoints value (see [`crate::endpoints`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// One instance at this URL.
    Url(String),
    /// One instance per address of `host`, each at `port`.
    Dns { host: String, port: u16 },
}

impl Source {
    /// Parses one entry: `dns://host:port` or an `http(s)://` URL.
    pub(crate) fn parse(entry: &str) -> Result<Self, String> {
        let Some(rest) = entry.strip_prefix("dns://") else {
            return Ok(Self::Url(entry.to_owned()));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("`{entry}` needs a port: dns://host:port"))?;
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("`{entry}` has an invalid port"))?;
        if host.is_empty() || host.contains('/') {
            return Err(format!("`{entry}` needs a host name: dns://host:port"));
        }
        Ok(Self::Dns {
            host: host.to_owned(),
            port,
        })
    }

    /// Whether the instances can change while the caller runs.
    pub(crate) fn is_dynamic(&self) -> bool {
        matches!(self, Self::Dns { .. })
    }
}

/// Every entry of an endpoints value.
pub(crate) fn sources(endpoints: &str) -> Result<Vec<Source>, String> {
    crate::endpoints::instances(endpoints)
        .into_iter()
        .map(Source::parse)
        .collect()
}

/// The URL of the instance at `addr`.
pub(crate) fn instance_url(addr: SocketAddr) -> String {
    // SocketAddr's Display brackets IPv6 addresses, as URLs need.
    format!("http://{addr}")
}

/// Name resolution, so discovery can be tested without a DNS server.
#[async_trait]
pub(crate) trait Resolve: Send + Sync + 'static {
    /// The addresses of `host`, each with `port`.
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>>;
}

/// The system resolver (`getaddrinfo`, so `/etc/hosts` and cluster DNS).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SystemDns;

#[async_trait]
impl Resolve for SystemDns {
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((host, port)).await?.collect())
    }
}

/// The instance URLs `sources` stand for now. A name that fails to resolve
/// or resolves to nothing is an error: the caller keeps what it had rather
/// than dropping every instance because a lookup failed.
pub(crate) async fn resolve_all(
    sources: &[Source],
    resolver: &dyn Resolve,
) -> Result<BTreeSet<String>, String> {
    let mut urls = BTreeSet::new();
    for source in sources {
        match source {
            Source::Url(url) => {
                urls.insert(url.clone());
            }
            Source::Dns { host, port } => {
                let addrs = resolver
                    .resolve(host, *port)
                    .await
                    .map_err(|e| format!("cannot resolve {host}: {e}"))?;
                if addrs.is_empty() {
                    return Err(format!("{host} resolves to no address"));
                }
                urls.extend(addrs.into_iter().map(instance_url));
            }
        }
    }
    Ok(urls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse() {
        assert_eq!(
            Source::parse("http://chat:50051").unwrap(),
            Source::Url("http://chat:50051".into())
        );
        assert_eq!(
            Source::parse("dns://chat-headless.default.svc:50051").unwrap(),
            Source::Dns {
                host: "chat-headless.default.svc".into(),
                port: 50051
            }
        );
        for bad in ["dns://chat", "dns://:50051", "dns://chat:0", "dns://chat:x"] {
            assert!(Source::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn ipv6_instances_get_bracketed_urls() {
        let v6: SocketAddr = "[::1]:7000".parse().unwrap();
        assert_eq!(instance_url(v6), "http://[::1]:7000");
        let v4: SocketAddr = "10.0.0.7:7000".parse().unwrap();
        assert_eq!(instance_url(v4), "http://10.0.0.7:7000");
    }

    #[tokio::test]
    async fn the_system_resolver_finds_localhost() {
        let sources = sources("dns://localhost:7000").unwrap();
        let urls = resolve_all(&sources, &SystemDns).await.unwrap();
        assert!(
            urls.iter()
                .any(|u| u == "http://127.0.0.1:7000" || u == "http://[::1]:7000"),
            "{urls:?}"
        );
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_an_error() {
        let sources = sources("dns://no-such-host.invalid:7000").unwrap();
        assert!(resolve_all(&sources, &SystemDns).await.is_err());
    }
}
