//! The connection to the site's etcd cluster, for the daemon and the
//! `fleet` commands alike.

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use tonic::Code;

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
/// A member that does not answer a status request within this is left out.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

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

    /// A client of the members that answer now; fails when none does.
    /// (The client balances over the endpoints it is given and keeps
    /// sending some requests to a dead member: so only the live ones.)
    pub async fn connect(&self) -> anyhow::Result<Client> {
        let options = self.options()?;
        let probes = self.urls.iter().map(|u| {
            let options = options.clone();
            async move {
                let probe = async {
                    let mut c = Client::connect([u], Some(options)).await?;
                    c.status().await
                };
                match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
                    Ok(Ok(_)) => Ok(u.clone()),
                    Ok(Err(e)) => Err(format!("{u}: {}", causes(&e))),
                    Err(_) => Err(format!("{u}: no answer within {PROBE_TIMEOUT:?}")),
                }
            }
        });
        let probed = futures::future::join_all(probes).await;
        let live: Vec<String> = probed.iter().filter_map(|p| p.as_ref().ok().cloned()).collect();
        if live.is_empty() {
            let why: Vec<&str> =
                probed.iter().filter_map(|p| p.as_ref().err()).map(String::as_str).collect();
            return Err(NoMember {
                at: self.shown(),
                why: why.join("; "),
                hint: self.tls_hint(&why),
            }
            .into());
        }
        Client::connect(&live, Some(options))
            .await
            .with_context(|| format!("connecting to etcd at {}", live.join(",")))
    }

    /// What may be wrong with TLS, said when no member answers (`why`):
    /// a member that refuses the client's certificate (or its absence)
    /// sends an alert and closes the connection, and the client mostly
    /// sees only the connection closed, which says nothing of certificates.
    fn tls_hint(&self, why: &[&str]) -> String {
        if !self.urls.iter().any(|u| u.starts_with("https://")) {
            return String::new();
        }
        let closed = |w: &&str| {
            ["connection closed", "broken pipe", "reset by peer", "alert"]
                .iter()
                .any(|c| w.contains(c))
        };
        let mut hints = Vec::new();
        if self.ca.is_none() {
            hints.push("no --fleet-ca given to verify the members' certificates with");
        }
        if self.cert.is_none() {
            hints.push(
                "no client certificate given (--fleet-cert, --fleet-key), \
                 which etcd run with --client-cert-auth requires",
            );
        } else if !why.is_empty() && why.iter().all(closed) {
            hints.push(
                "every member closed the connection, as etcd does to a client \
                 certificate (--fleet-cert) that its --trusted-ca-file did not sign",
            );
        }
        if hints.is_empty() {
            return String::new();
        }
        format!("; TLS: {}", hints.join("; "))
    }

    pub fn shown(&self) -> String {
        self.urls.join(",")
    }
}

/// What `e` says down to its root cause (a refused connection, a TLS
/// alert): etcd_client's errors do not chain their causes themselves.
fn causes(e: &etcd_client::Error) -> String {
    use std::error::Error as _;
    match e {
        // A failed call's status says the root cause; its source, the
        // transport error, what failed.
        etcd_client::Error::GRpcStatus(s) => {
            let mut out = s.source().map(super::error_chain).unwrap_or_default();
            if !out.contains(s.message()) {
                if !out.is_empty() {
                    out.push_str(": ");
                }
                out.push_str(s.message());
            }
            out
        }
        etcd_client::Error::TransportError(t) => super::error_chain(t),
        other => other.to_string(),
    }
}

/// No member of the cluster answered (`Endpoints::connect`).
#[derive(Debug, thiserror::Error)]
#[error("no etcd member answers at {at} ({why}){hint}")]
pub struct NoMember {
    at: String,
    why: String,
    hint: String,
}

/// Whether `e` is etcd being briefly unable to answer (a leader election,
/// a member gone, a timeout): worth asking again.
pub fn transient(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| match cause.downcast_ref::<etcd_client::Error>() {
        Some(etcd_client::Error::GRpcStatus(s)) => {
            matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded | Code::Aborted)
        }
        Some(etcd_client::Error::TransportError(_)) => true,
        _ => false,
    })
}

impl Endpoints {
    /// Connects and runs `op` until it succeeds, fails for good, or
    /// `RETRIES` transient failures have passed (about 10 s), connecting
    /// again each time: what etcd's own clients do.
    pub async fn retry<T>(
        &self,
        mut op: impl AsyncFnMut(&mut Client) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let mut wait = Duration::from_millis(200);
        for attempt in 0..RETRIES {
            let result = match self.connect().await {
                Ok(mut client) => op(&mut client).await,
                // No member at all: asked again twice, not for 10 s.
                Err(e) if attempt >= 2 => return Err(e),
                Err(e) => Err(e),
            };
            match result {
                Err(e) if transient(&e) || e.is::<NoMember>() => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
                done => return done,
            }
        }
        op(&mut self.connect().await?).await
    }
}

const RETRIES: usize = 8;
