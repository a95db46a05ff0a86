//! What the `fleet` commands do in etcd: create a site, propose, approve
//! and publish versions, refresh the timestamp, rotate approver keys, and
//! read the routers' status and the site's history. Writes that depend on
//! what was read are etcd transactions guarded by the keys' revisions, so
//! two approvers signing at once cannot lose a signature or publish twice.

use std::time::Duration;

use anyhow::Context as _;
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use tough::schema::{Root, Signed, Snapshot, Targets, Timestamp};

use super::{
    Site,
    records::{self, Approval, Proposal, RootProposal, RouterStatus},
    tuf::{self, SignatureReport, Signer},
};

/// A key's value and its modification revision.
async fn get(client: &mut Client, key: &str) -> anyhow::Result<Option<(Vec<u8>, i64)>> {
    let resp = client.get(key, None).await.with_context(|| format!("reading {key}"))?;
    Ok(resp.kvs().first().map(|kv| (kv.value().to_vec(), kv.mod_revision())))
}

async fn list(client: &mut Client, prefix: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let resp = client
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .with_context(|| format!("listing {prefix}"))?;
    Ok(resp
        .kvs()
        .iter()
        .map(|kv| (String::from_utf8_lossy(kv.key()).into_owned(), kv.value().to_vec()))
        .collect())
}

/// Runs `txn`; an error if its comparisons failed (someone else wrote).
async fn commit(client: &mut Client, txn: Txn, what: &str) -> anyhow::Result<()> {
    let resp = client.txn(txn).await.with_context(|| format!("writing {what}"))?;
    anyhow::ensure!(
        resp.succeeded(),
        "{what}: changed by someone else meanwhile; run the command again"
    );
    Ok(())
}

fn absent(key: &str) -> Compare {
    Compare::version(key, CompareOp::Equal, 0)
}

/// `key` unchanged since revision `rev` (`None`: still absent).
fn unchanged(key: &str, rev: Option<i64>) -> Compare {
    match rev {
        Some(r) => Compare::mod_revision(key, CompareOp::Equal, r),
        None => absent(key),
    }
}

fn next_timestamp(previous: Option<Signed<Timestamp>>) -> u64 {
    tuf::next_timestamp_version(previous.map(|p| p.signed.version.get()))
}

/// Creates the site: root version 1, signed by `signers`.
pub async fn init(
    client: &mut Client,
    site: &Site,
    keys: &tuf::RootKeys,
    signers: &[Signer],
) -> anyhow::Result<Vec<u8>> {
    let mut root = tuf::root(keys, 1)?;
    for s in signers {
        tuf::sign(&mut root, s).await?;
    }
    let report = tuf::signatures(&root.signed, &root);
    anyhow::ensure!(
        report.met(),
        "the root needs {} signatures of listed approvers: {report} (give --key of approvers)",
        keys.threshold
    );
    let bytes = tuf::to_bytes(&root)?;
    let key = site.metadata("1.root.json");
    let txn =
        Txn::new().when([absent(&key)]).and_then([TxnOp::put(key.as_str(), bytes.clone(), None)]);
    commit(client, txn, &format!("site {} (it exists already?)", site.name)).await?;
    Ok(bytes)
}

/// The site's newest root whose chain from version 1 holds (each signed by
/// its predecessor's threshold and its own).
pub async fn current_root(client: &mut Client, site: &Site) -> anyhow::Result<Signed<Root>> {
    let (bytes, _) = get(client, &site.metadata("1.root.json")).await?.with_context(|| {
        format!("site {:?} has no root: create it with `vlanguard fleet init`", site.name)
    })?;
    let mut root: Signed<Root> = tuf::from_bytes(&bytes)?;
    loop {
        let next = root.signed.version.get() + 1;
        let Some((bytes, _)) = get(client, &site.metadata(&format!("{next}.root.json"))).await?
        else {
            return Ok(root);
        };
        let n: Signed<Root> = tuf::from_bytes(&bytes)?;
        if !tuf::follows(&root.signed, &n) {
            return Ok(root);
        }
        root = n;
    }
}

/// Whether `root` lists `signer`'s key for `role`.
fn holds(root: &Signed<Root>, role: tough::schema::RoleType, signer: &Signer) -> bool {
    root.signed
        .roles
        .get(&role)
        .is_some_and(|r| r.keyids.iter().any(|k| hex::encode(k.as_ref()) == signer.keyid))
}

/// The approved version and its policy text, if any.
pub async fn approved(client: &mut Client, site: &Site) -> anyhow::Result<Option<(u64, String)>> {
    let Some((v, _)) = get(client, &site.approved()).await? else { return Ok(None) };
    let v: u64 = String::from_utf8_lossy(&v).trim().parse().context("the approved key")?;
    let Some((t, _)) = get(client, &site.metadata(&format!("{v}.targets.json"))).await? else {
        return Ok(None);
    };
    let body = body_of(client, site, &tuf::from_bytes(&t)?).await?;
    Ok(Some((v, body)))
}

/// The policy text a targets file names.
async fn body_of(
    client: &mut Client,
    site: &Site,
    targets: &Signed<Targets>,
) -> anyhow::Result<String> {
    let name = tough::TargetName::new(super::POLICY_TARGET).context("target name")?;
    let target = targets.signed.targets.get(&name).context("no policy in the targets")?;
    let sha = hex::encode(target.hashes.sha256.as_ref());
    let (body, _) = get(client, &site.target(&format!("{sha}.{}", super::POLICY_TARGET)))
        .await?
        .with_context(|| format!("the policy body {sha} is missing"))?;
    anyhow::ensure!(tuf::sha256_hex(&body) == sha, "the policy body {sha} does not match its hash");
    String::from_utf8(body).context("the policy is not UTF-8")
}

/// Proposes `body` as the next version.
pub async fn propose(
    client: &mut Client,
    site: &Site,
    body: &str,
    proposer: &str,
    expires: Duration,
) -> anyhow::Result<Proposal> {
    current_root(client, site).await?;
    let approved = approved(client, site).await?.map_or(0, |a| a.0);
    let last_proposed = list(client, &site.proposals())
        .await?
        .iter()
        .filter_map(|(k, _)| k.rsplit('/').next()?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    let version = approved.max(last_proposed) + 1;
    let targets = tuf::targets(body.as_bytes(), version, tuf::expiry(expires)?)?;
    let sha = tuf::sha256_hex(body.as_bytes());
    let proposal = Proposal {
        version,
        sha256: sha.clone(),
        length: body.len() as u64,
        proposer: proposer.to_string(),
        proposed_at: records::now(),
        targets: serde_json::to_value(&targets)?,
        approvals: Vec::new(),
        published_at: None,
    };
    let key = site.proposal(version);
    let body_key = site.target(&format!("{sha}.{}", super::POLICY_TARGET));
    let txn = Txn::new().when([absent(&key)]).and_then([
        TxnOp::put(key.as_str(), serde_json::to_vec(&proposal)?, None),
        TxnOp::put(body_key.as_str(), body.as_bytes(), None),
    ]);
    commit(client, txn, &format!("proposal {version}")).await?;
    Ok(proposal)
}

pub async fn proposal(
    client: &mut Client,
    site: &Site,
    version: u64,
) -> anyhow::Result<(Proposal, i64)> {
    let (bytes, rev) = get(client, &site.proposal(version)).await?.with_context(|| {
        format!("site {:?} has no proposal {version} (fleet log lists them)", site.name)
    })?;
    Ok((serde_json::from_slice(&bytes).context("a malformed proposal")?, rev))
}

/// The policy text of a proposal.
pub async fn proposal_body(
    client: &mut Client,
    site: &Site,
    p: &Proposal,
) -> anyhow::Result<String> {
    let targets: Signed<Targets> = serde_json::from_value(p.targets.clone())?;
    body_of(client, site, &targets).await
}

/// What an approval did.
#[derive(Debug)]
pub struct Approved {
    pub report: SignatureReport,
    pub published: bool,
}

/// Adds `signer`'s approval to proposal `version`; publishes it when that
/// reaches the threshold.
pub async fn approve(
    client: &mut Client,
    site: &Site,
    version: u64,
    signer: &Signer,
    name: &str,
    fresh_for: Duration,
) -> anyhow::Result<Approved> {
    let root = current_root(client, site).await?;
    let (mut p, rev) = proposal(client, site, version).await?;
    anyhow::ensure!(p.published_at.is_none(), "version {version} is published already");
    let approved_now = approved(client, site).await?.map_or(0, |a| a.0);
    anyhow::ensure!(
        version > approved_now,
        "version {version} is older than the approved version {approved_now}: propose it again"
    );
    anyhow::ensure!(
        holds(&root, tough::schema::RoleType::Targets, signer),
        "key {} is not an approver key of site {:?}",
        signer.keyid,
        site.name
    );
    let mut targets: Signed<Targets> = serde_json::from_value(p.targets.clone())?;
    tuf::sign(&mut targets, signer).await?;
    let report = tuf::signatures(&root.signed, &targets);
    Approval::record(&mut p.approvals, name, &signer.keyid);
    p.targets = serde_json::to_value(&targets)?;
    let key = site.proposal(version);
    let mut ops = Vec::new();
    let mut guards = vec![unchanged(&key, Some(rev))];
    let published = report.met();
    if published {
        p.published_at = Some(records::now());
        let targets_json = tuf::to_bytes(&targets)?;
        let ts_key = site.metadata("timestamp.json");
        let ts = get(client, &ts_key).await?;
        let ts_version = match &ts {
            Some((b, _)) => next_timestamp(Some(tuf::from_bytes::<Signed<Timestamp>>(b)?)),
            None => next_timestamp(None),
        };
        let expires = targets.signed.expires;
        let (snapshot, timestamp) =
            tuf::publish(&targets_json, ts_version, expires, tuf::expiry(fresh_for)?, signer)
                .await?;
        guards.push(unchanged(&ts_key, ts.map(|t| t.1)));
        ops.extend([
            TxnOp::put(site.metadata(&format!("{version}.targets.json")), targets_json, None),
            TxnOp::put(site.metadata(&format!("{version}.snapshot.json")), snapshot, None),
            TxnOp::put(ts_key, timestamp, None),
            TxnOp::put(site.approved(), version.to_string(), None),
        ]);
    }
    ops.push(TxnOp::put(key, serde_json::to_vec(&p)?, None));
    commit(
        client,
        Txn::new().when(guards).and_then(ops),
        &format!("approval of version {version}"),
    )
    .await?;
    Ok(Approved { report, published })
}

/// A new timestamp for the published snapshot, valid for `fresh_for`.
pub async fn refresh(
    client: &mut Client,
    site: &Site,
    signer: &Signer,
    fresh_for: Duration,
) -> anyhow::Result<u64> {
    let root = current_root(client, site).await?;
    anyhow::ensure!(
        holds(&root, tough::schema::RoleType::Timestamp, signer),
        "key {} may not sign site {:?}'s timestamp (neither an approver nor a publisher key)",
        signer.keyid,
        site.name
    );
    let key = site.metadata("timestamp.json");
    let (bytes, rev) = get(client, &key).await?.context("nothing published yet")?;
    let old: Signed<Timestamp> = tuf::from_bytes(&bytes)?;
    let sv = old.signed.meta.get("snapshot.json").context("a timestamp without snapshot")?.version;
    let (snapshot, _) = get(client, &site.metadata(&format!("{sv}.snapshot.json")))
        .await?
        .context("the published snapshot is missing")?;
    tuf::from_bytes::<Signed<Snapshot>>(&snapshot)?;
    let version = next_timestamp(Some(old));
    let ts = tuf::timestamp(&snapshot, version, tuf::expiry(fresh_for)?, signer).await?;
    let txn = Txn::new().when([unchanged(&key, Some(rev))]).and_then([TxnOp::put(
        key.as_str(),
        ts,
        None,
    )]);
    commit(client, txn, "the timestamp").await?;
    Ok(version)
}

/// Proposes a new root listing `keys`.
pub async fn rotate(
    client: &mut Client,
    site: &Site,
    keys: &tuf::RootKeys,
    proposer: &str,
) -> anyhow::Result<u64> {
    let current = current_root(client, site).await?;
    let version = current.signed.version.get() + 1;
    let root = tuf::root(keys, version)?;
    let p = RootProposal {
        version,
        proposer: proposer.to_string(),
        proposed_at: records::now(),
        root: serde_json::to_value(&root)?,
        approvals: Vec::new(),
        published_at: None,
    };
    let key = site.root_proposal(version);
    // A newer proposal for the same version replaces an unpublished one.
    let txn = Txn::new()
        .when([absent(&site.metadata(&format!("{version}.root.json")))])
        .and_then([TxnOp::put(key.as_str(), serde_json::to_vec(&p)?, None)]);
    commit(client, txn, &format!("root proposal {version}")).await?;
    Ok(version)
}

/// What a root approval did: the thresholds of the current and the new root.
#[derive(Debug)]
pub struct RootApproved {
    pub current: SignatureReport,
    pub new: SignatureReport,
    pub published: bool,
}

pub async fn approve_root(
    client: &mut Client,
    site: &Site,
    version: u64,
    signer: &Signer,
    name: &str,
) -> anyhow::Result<RootApproved> {
    let current = current_root(client, site).await?;
    anyhow::ensure!(
        current.signed.version.get() + 1 == version,
        "root {version} does not follow the current root {}",
        current.signed.version
    );
    let key = site.root_proposal(version);
    let (bytes, rev) =
        get(client, &key).await?.with_context(|| format!("no root proposal {version}"))?;
    let mut p: RootProposal = serde_json::from_slice(&bytes)?;
    let mut root: Signed<Root> = serde_json::from_value(p.root.clone())?;
    tuf::sign(&mut root, signer).await?;
    let (old, new) =
        (tuf::signatures(&current.signed, &root), tuf::signatures(&root.signed, &root));
    anyhow::ensure!(
        !old.valid.is_empty() || !new.valid.is_empty() || !p.approvals.is_empty(),
        "key {} is in neither the current nor the proposed root",
        signer.keyid
    );
    Approval::record(&mut p.approvals, name, &signer.keyid);
    p.root = serde_json::to_value(&root)?;
    let published = old.met() && new.met();
    let mut ops = Vec::new();
    let root_key = site.metadata(&format!("{version}.root.json"));
    if published {
        p.published_at = Some(records::now());
        ops.push(TxnOp::put(root_key.as_str(), tuf::to_bytes(&root)?, None));
    }
    ops.push(TxnOp::put(key.as_str(), serde_json::to_vec(&p)?, None));
    let txn = Txn::new().when([unchanged(&key, Some(rev)), absent(&root_key)]).and_then(ops);
    commit(client, txn, &format!("approval of root {version}")).await?;
    Ok(RootApproved { current: old, new, published })
}

/// Every router that wrote a status, and whether its lease is alive.
pub async fn routers(
    client: &mut Client,
    site: &Site,
) -> anyhow::Result<Vec<(RouterStatus, bool)>> {
    let alive: Vec<String> = list(client, &site.alive())
        .await?
        .into_iter()
        .filter_map(|(k, _)| k.strip_prefix(&site.alive()).map(String::from))
        .collect();
    Ok(list(client, &site.routers())
        .await?
        .into_iter()
        .filter_map(|(_, v)| serde_json::from_slice::<RouterStatus>(&v).ok())
        .map(|s| {
            let up = alive.contains(&s.router);
            (s, up)
        })
        .collect())
}

/// Every proposal, oldest first.
pub async fn proposals(client: &mut Client, site: &Site) -> anyhow::Result<Vec<Proposal>> {
    records_under(client, &site.proposals()).await
}

/// Every root proposal, oldest first.
pub async fn root_proposals(client: &mut Client, site: &Site) -> anyhow::Result<Vec<RootProposal>> {
    records_under(client, &site.root_proposals()).await
}

/// The JSON records under `prefix`, in key order; malformed ones skipped.
async fn records_under<T: serde::de::DeserializeOwned>(
    client: &mut Client,
    prefix: &str,
) -> anyhow::Result<Vec<T>> {
    Ok(list(client, prefix)
        .await?
        .into_iter()
        .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
        .collect())
}
