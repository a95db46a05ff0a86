//! The connection to the site's etcd cluster, for the daemon and the
//! `fleet` commands alike.

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

/// Where etcd is and how to prove who we are to it.
#[derive(Clone, Debug, Default)]
pub struct Endpoints {
    /// `http://HOST:PORT` or `https://HOST:PORT`, one per member.
    pub urls: Vec<String>,
    /// The CA that signed the members' certificates (`https` endpoints).
    pub ca: Option<PathBuf>,
    /// A client certificate and its key, when etcd asks for one.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// A request that etcd has not answered within this is failed: a router
/// cut off from etcd notices it within about this long.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

impl Endpoints {
    /// `list`: URLs separated by commas.
    pub fn parse(list: &str) -> anyhow::Result<Endpoints> {
        let urls: Vec<String> =
            list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
        anyhow::ensure!(!urls.is_empty(), "no etcd endpoint given");
        for u in &urls {
            let rest = u.strip_prefix("http://").or_else(|| u.strip_prefix("https://"));
            let port = rest
                .and_then(|r| r.trim_end_matches('/').rsplit_once(':'))
                .filter(|(host, _)| !host.is_empty())
                .and_then(|(_, port)| port.parse::<u16>().ok());
            anyhow::ensure!(
                port.is_some(),
                "etcd endpoint {u:?}: want http://HOST:PORT or https://HOST:PORT"
            );
        }
        Ok(Endpoints { urls, ..Endpoints::default() })
    }

    fn options(&self) -> anyhow::Result<ConnectOptions> {
        let mut o = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout(REQUEST_TIMEOUT)
            // A member that went away without closing the connection (a
            // partition, a power cut) is noticed by the HTTP/2 pings.
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
            .with_keep_alive_while_idle(true);
        let tls = self.urls.iter().any(|u| u.starts_with("https://"));
        if tls || self.ca.is_some() || self.cert.is_some() {
            let mut t = TlsOptions::new();
            if let Some(ca) = &self.ca {
                let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
                t = t.ca_certificate(Certificate::from_pem(pem));
            }
            match (&self.cert, &self.key) {
                (Some(c), Some(k)) => {
                    let cert =
                        std::fs::read(c).with_context(|| format!("reading {}", c.display()))?;
                    let key =
                        std::fs::read(k).with_context(|| format!("reading {}", k.display()))?;
                    t = t.identity(Identity::from_pem(cert, key));
                }
                (None, None) => {}
                _ => anyhow::bail!("a client certificate needs its key, and a key its certificate"),
            }
            o = o.with_tls(t);
        }
        Ok(o)
    }

    /// A client; connecting fails when no member answers.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        Client::connect(&self.urls, Some(self.options()?))
            .await
            .with_context(|| format!("connecting to etcd at {}", self.urls.join(",")))
    }

    pub fn shown(&self) -> String {
        self.urls.join(",")
    }
}
