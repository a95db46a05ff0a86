//! `vlanguard fleet ...`: the site's policy in etcd, proposed and approved
//! (`filter_user::fleet::admin` does the work; this prints).

use std::{io::Write as _, path::Path, process::ExitCode, time::SystemTime};

use anyhow::Context as _;
use filter_user::fleet::{
    Site, admin,
    etcd::Endpoints,
    records,
    tuf::{self, Signer},
};

use crate::args::{EtcdArgs, FleetCommand, RootKeysArgs, SiteArgs};

pub fn endpoints(a: &EtcdArgs) -> anyhow::Result<Endpoints> {
    let list = a.fleet_endpoints.as_deref().context("--fleet-endpoints is required")?;
    Ok(Endpoints {
        ca: a.fleet_ca.clone(),
        cert: a.fleet_cert.clone(),
        key: a.fleet_key.clone(),
        ..Endpoints::parse(list)?
    })
}

/// Where the site is (each request connects to the members that answer).
fn target(s: &SiteArgs) -> anyhow::Result<(Endpoints, Site)> {
    Ok((endpoints(&s.etcd)?, Site::new(&s.site)?))
}

/// Who runs the command (recorded, not authenticated: approvals are).
fn login() -> String {
    std::env::var("SUDO_USER").or_else(|_| std::env::var("USER")).unwrap_or_else(|_| {
        let uid =
            std::fs::metadata("/proc/self").map_or(0, |m| std::os::unix::fs::MetadataExt::uid(&m));
        filter_user::sys::users::user_name(uid)
    })
}

fn key_name(path: &Path) -> String {
    path.file_stem()
        .map_or("?".into(), |s| s.to_string_lossy().trim_end_matches(".pem").to_string())
}

pub fn fleet(command: FleetCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(run(command))
}

async fn run(command: FleetCommand) -> anyhow::Result<ExitCode> {
    match command {
        FleetCommand::Keygen { name } => keygen(&name),
        FleetCommand::Init { site, root, keys, root_out } => {
            let (ep, site) = target(&site)?;
            let root_keys = root_keys(&root)?;
            let signers =
                keys.iter().map(|p| Signer::load(p)).collect::<anyhow::Result<Vec<_>>>()?;
            let root =
                ep.retry(async |c| admin::init(c, &site, &root_keys, &signers).await).await?;
            std::fs::write(&root_out, &root)
                .with_context(|| format!("writing {}", root_out.display()))?;
            println!(
                "site {}: root 1 with {} approver keys, threshold {}; give routers {} as --fleet-root",
                site.name,
                root_keys.approvers.len(),
                root_keys.threshold,
                root_out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::Propose { file, site, name, expires } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let new = filter_user::resolve_policy(&text)
                .map_err(|e| anyhow::anyhow!(e.render(&file, &text)))?;
            let (ep, site) = target(&site)?;
            let old = ep.retry(async |c| admin::approved(c, &site).await).await?;
            let proposer = name.unwrap_or_else(login);
            let p = ep
                .retry(async |c| admin::propose(c, &site, &text, &proposer, expires).await)
                .await?;
            println!("proposed version {} of site {} (sha256 {})", p.version, site.name, p.sha256);
            print_diff(old.as_ref().map(|(v, t)| (*v, t.as_str())), &new);
            println!(
                "approve it with: vlanguard fleet approve {} --site {} --key YOUR_KEY",
                p.version, site.name
            );
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::Approve { version, site, key, name, yes, fresh_for } => {
            let signer = Signer::load(&key)?;
            let name = name.unwrap_or_else(|| key_name(&key));
            let (ep, site) = target(&site)?;
            if let Some(n) = version.strip_prefix("root-") {
                let n: u64 = n.parse().context("root-N: N a number")?;
                return approve_root(&ep, &site, n, &signer, &name).await;
            }
            let v: u64 = version.parse().context("VERSION: a number, or root-N")?;
            let (p, _) = ep.retry(async |c| admin::proposal(c, &site, v).await).await?;
            let body = ep.retry(async |c| admin::proposal_body(c, &site, &p).await).await?;
            let new = filter_user::resolve_policy(&body).map_err(|e| {
                anyhow::anyhow!(e.render(Path::new(&format!("version {v}")), &body))
            })?;
            let old = ep.retry(async |c| admin::approved(c, &site).await).await?;
            println!(
                "version {v} of site {}, proposed by {} at {}:",
                site.name, p.proposer, p.proposed_at
            );
            print_diff(old.as_ref().map(|(v, t)| (*v, t.as_str())), &new);
            if !yes
                && !confirm(&format!(
                    "sign version {v} with key {} as {name}?",
                    records::short(&signer.keyid)
                ))?
            {
                println!("not signed");
                return Ok(ExitCode::from(1));
            }
            let a = ep
                .retry(async |c| admin::approve(c, &site, v, &signer, &name, fresh_for).await)
                .await?;
            if a.published {
                println!(
                    "signed; {}: version {v} is approved and published, routers apply it now",
                    a.report
                );
            } else {
                println!("signed; {}: not published until the threshold is reached", a.report);
            }
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::Refresh { site, key, fresh_for } => {
            let signer = Signer::load(&key)?;
            let (ep, site) = target(&site)?;
            let v = ep.retry(async |c| admin::refresh(c, &site, &signer, fresh_for).await).await?;
            println!(
                "timestamp {v} of site {} signed; routers accept it for {}",
                site.name,
                humantime::format_duration(fresh_for)
            );
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::Rotate { site, root, name } => {
            let keys = root_keys(&root)?;
            let (ep, site) = target(&site)?;
            let proposer = name.unwrap_or_else(login);
            let v = ep.retry(async |c| admin::rotate(c, &site, &keys, &proposer).await).await?;
            println!(
                "proposed root {v}: {} approver keys, threshold {}; it needs the threshold of \
                 the current keys and of the new: vlanguard fleet approve root-{v} --site {} --key KEY",
                keys.approvers.len(),
                keys.threshold,
                site.name
            );
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::Status { site, json } => status(&site, json).await,
        FleetCommand::Log { site, json } => log(&site, json).await,
    }
}

/// The public keys and threshold a root is to list.
fn root_keys(a: &RootKeysArgs) -> anyhow::Result<tuf::RootKeys> {
    let read = |files: &[std::path::PathBuf]| -> anyhow::Result<Vec<_>> {
        files.iter().map(|p| tuf::read_public(p)).collect()
    };
    Ok(tuf::RootKeys {
        approvers: read(&a.approvers)?,
        publishers: read(&a.publishers)?,
        threshold: a.threshold,
    })
}

fn keygen(name: &Path) -> anyhow::Result<ExitCode> {
    let private = name.with_extension("pem");
    let public = name.with_extension("pub.json");
    anyhow::ensure!(!private.exists(), "{} exists already", private.display());
    let pem = tuf::generate_key()?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode_private()
        .open(&private)
        .with_context(|| format!("creating {}", private.display()))?;
    f.write_all(pem.as_bytes())?;
    let signer = Signer::load(&private)?;
    std::fs::write(&public, serde_json::to_vec_pretty(&signer.public())?)?;
    println!(
        "private key {} (keep it offline), public key {} (key id {})",
        private.display(),
        public.display(),
        signer.keyid
    );
    Ok(ExitCode::SUCCESS)
}

trait ModePrivate {
    fn mode_private(&mut self) -> &mut Self;
}

impl ModePrivate for std::fs::OpenOptions {
    fn mode_private(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, 0o600)
    }
}

async fn approve_root(
    ep: &Endpoints,
    site: &Site,
    n: u64,
    signer: &Signer,
    name: &str,
) -> anyhow::Result<ExitCode> {
    let a = ep.retry(async |c| admin::approve_root(c, site, n, signer, name).await).await?;
    if a.published {
        println!(
            "signed; root {n} is published (current keys: {}; new keys: {})",
            a.current, a.new
        );
    } else {
        println!(
            "signed; root {n} is not published yet: current keys {}; new keys {}",
            a.current, a.new
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_diff(old: Option<(u64, &str)>, new: &filter_user::Resolved) {
    match old {
        None => println!("changes: the site's first version ({} devices)", new.devices.len()),
        Some((v, text)) => match filter_user::resolve_policy(text) {
            Ok(old) => {
                let changes = filter_user::diff::diff(&old, new);
                println!("changes against the approved version {v}:");
                if changes.is_empty() {
                    println!("  none");
                }
                for c in changes {
                    println!("  {c}");
                }
            }
            Err(_) => println!("(the approved version {v} does not validate here; no diff)"),
        },
    }
}

fn confirm(question: &str) -> anyhow::Result<bool> {
    print!("{question} [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

async fn status(s: &SiteArgs, json: bool) -> anyhow::Result<ExitCode> {
    let (ep, site) = target(s)?;
    let newest = ep.retry(async |c| admin::approved(c, &site).await).await?.map(|a| a.0);
    let routers = ep.retry(async |c| admin::routers(c, &site).await).await?;
    if json {
        let list: Vec<serde_json::Value> = routers
            .iter()
            .map(|(r, alive)| {
                let mut v = serde_json::to_value(r).unwrap_or_default();
                v["alive"] = (*alive).into();
                v["behind"] = behind(newest, r.applied_version).into();
                v["seconds_since_seen"] = seconds_since(&r.written_at).into();
                v
            })
            .collect();
        let out =
            serde_json::json!({ "site": site.name, "approved_version": newest, "routers": list });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "site {}: approved version {}",
        site.name,
        newest.map_or("none yet".into(), |v| v.to_string())
    );
    if routers.is_empty() {
        println!("no router has reported");
    }
    for (r, alive) in routers {
        let applied = r.applied_version.map_or("local policy".into(), |v| format!("version {v}"));
        let since = r.applied_at.as_deref().unwrap_or("-");
        let lag = behind(newest, r.applied_version);
        let seen = seconds_since(&r.written_at).map_or("?".into(), |s| format!("{s:.0} s ago"));
        let state = if alive { "in contact" } else { "NOT in contact" };
        println!(
            "  {:<16} {applied:<12} since {since}  behind {lag}  last seen {seen} ({state})",
            r.router
        );
        if let Some(e) = &r.last_error {
            println!("    last error ({}): {e}", r.last_error_at.as_deref().unwrap_or("?"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn behind(newest: Option<u64>, applied: Option<u64>) -> u64 {
    newest.unwrap_or(0).saturating_sub(applied.unwrap_or(0))
}

fn seconds_since(at: &str) -> Option<f64> {
    let t = filter_user::time::parse(at)?;
    Some(SystemTime::now().duration_since(t).map_or(0.0, |d| d.as_secs_f64()))
}

async fn log(s: &SiteArgs, json: bool) -> anyhow::Result<ExitCode> {
    let (ep, site) = target(s)?;
    let proposals = ep.retry(async |c| admin::proposals(c, &site).await).await?;
    let roots = ep.retry(async |c| admin::root_proposals(c, &site).await).await?;
    if json {
        let out = serde_json::json!({
            "site": site.name,
            "versions": proposals.iter().map(|p| serde_json::json!({
                "version": p.version, "sha256": p.sha256, "proposer": p.proposer,
                "proposed_at": p.proposed_at, "approvals": p.approvals, "published_at": p.published_at,
            })).collect::<Vec<_>>(),
            "roots": roots.iter().map(|r| serde_json::json!({
                "version": r.version, "proposer": r.proposer, "proposed_at": r.proposed_at,
                "approvals": r.approvals, "published_at": r.published_at,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    for p in &proposals {
        let what = format!("version {}", p.version);
        let proposed =
            format!("{} at {}, sha256 {}", p.proposer, p.proposed_at, records::short(&p.sha256));
        print_history(&what, &proposed, p.published_at.as_deref(), &p.approvals);
    }
    for r in &roots {
        let proposed = format!("{} at {}", r.proposer, r.proposed_at);
        print_history(
            &format!("root {}", r.version),
            &proposed,
            r.published_at.as_deref(),
            &r.approvals,
        );
    }
    if proposals.is_empty() && roots.is_empty() {
        println!("site {}: nothing proposed yet", site.name);
    }
    Ok(ExitCode::SUCCESS)
}

/// One proposal of `fleet log` and its approvals.
fn print_history(
    what: &str,
    proposed: &str,
    published_at: Option<&str>,
    approvals: &[records::Approval],
) {
    let state = published_at.map_or("pending".into(), |t| format!("published {t}"));
    println!("{what} ({state}): proposed by {proposed}");
    for a in approvals {
        println!("  approved by {} (key {}) at {}", a.name, records::short(&a.keyid), a.at);
    }
}
