//! The site's approvals as TUF metadata (The Update Framework), made and
//! checked with tough. The policy file is the one target; approvers sign
//! `targets` (threshold 2 by default), any one of them signs `snapshot`
//! and `timestamp` when publishing or refreshing, and `root` lists the
//! approver keys (a rotation needs a threshold of the old keys and of the
//! new). tough enforces thresholds, the root chain, expiry and rollback;
//! a router also refuses any version older than the one it enforces
//! (tough forgets its rollback state when a rotation changes the snapshot
//! or timestamp keys, TUF 5.3.11).
//!
//! Consistent snapshots: `<V>.targets.json`, `<V>.snapshot.json` and
//! `<sha256>.policy.toml` never change once written, so `timestamp.json`
//! is the only key a publish replaces.

use std::{
    collections::{BTreeMap, HashMap},
    num::NonZeroU64,
    path::Path,
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use aws_lc_rs::{
    digest::{SHA256, digest},
    rand::SystemRandom,
};
use olpc_cjson::CanonicalFormatter;
use serde::{Serialize, de::DeserializeOwned};
use tough::{
    Bytes, ExpirationEnforcement, IntoVec as _, RepositoryLoader, TargetName, Transport,
    TransportError, TransportErrorKind, TransportStream, async_trait,
    schema::{
        Hashes, Metafile, Role, RoleKeys, RoleType, Root, Signature, Signed, Snapshot, Target,
        Targets, Timestamp, decoded::Decoded, key::Key,
    },
    sign::{Sign, parse_keypair},
};
use url::Url;

use super::POLICY_TARGET;

const SPEC_VERSION: &str = "1.0.0";
const METADATA_URL: &str = "vlanguard-etcd:///metadata/";
const TARGETS_URL: &str = "vlanguard-etcd:///targets/";

/// An approver's private key (ed25519 PKCS#8, PEM or DER), loaded.
pub struct Signer {
    key: Box<dyn Sign>,
    pub keyid: String,
}

impl Signer {
    pub fn load(path: &Path) -> anyhow::Result<Signer> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        // tough takes ed25519 keys as PKCS#8 DER only.
        let der = pem::parse(&bytes).map(pem::Pem::into_contents).unwrap_or(bytes);
        let key = parse_keypair(&der).map_err(|e| {
            anyhow::anyhow!("{}: not an ed25519 private key in PKCS#8 ({e})", path.display())
        })?;
        let keyid = hex::encode(key.tuf_key().key_id().context("key id")?.as_ref());
        Ok(Signer { key: Box::new(key), keyid })
    }

    pub fn public(&self) -> Key {
        self.key.tuf_key()
    }
}

/// A new ed25519 private key, as PKCS#8 PEM (`fleet keygen`).
pub fn generate_key() -> anyhow::Result<String> {
    let doc = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map_err(|_| anyhow::anyhow!("generating an ed25519 key failed"))?;
    Ok(pem::encode(&pem::Pem::new("PRIVATE KEY", doc.as_ref().to_vec())))
}

/// A public key as a file holds it: the TUF key object (JSON).
pub fn read_public(path: &Path) -> anyhow::Result<Key> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| {
        format!("{}: not a public key as `vlanguard fleet keygen` writes it", path.display())
    })
}

pub fn key_id(key: &Key) -> anyhow::Result<String> {
    Ok(hex::encode(key.key_id().context("key id")?.as_ref()))
}

/// `after` from now, in whole seconds.
pub fn expiry(after: Duration) -> anyhow::Result<jiff::Timestamp> {
    seconds_from_now(i64::try_from(after.as_secs())?)
}

/// `secs` from now (in the past if negative), in whole seconds.
pub fn seconds_from_now(secs: i64) -> anyhow::Result<jiff::Timestamp> {
    Ok(jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() + secs)?)
}

/// The next timestamp's version: after `previous`, and at least the Unix
/// time, so a timestamp an attacker put back (an older one, replayed) is
/// not what the next publish counts from: routers that saw a newer one
/// would take the next for a rollback.
pub fn next_timestamp_version(previous: Option<u64>) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    previous.map_or(1, |p| p + 1).max(now)
}

fn version(v: u64) -> anyhow::Result<NonZeroU64> {
    NonZeroU64::new(v).context("versions start at 1")
}

/// What a root lists: `threshold` of the `approvers` sign root and
/// targets, any one of them or of the `publishers` (keys that may only
/// publish and refresh, e.g. for a timer) snapshot and timestamp.
#[derive(Clone, Debug)]
pub struct RootKeys {
    pub approvers: Vec<Key>,
    pub publishers: Vec<Key>,
    pub threshold: u64,
}

/// How long a root is valid: rotations replace it, not expiry.
const ROOT_LIFETIME: Duration = Duration::from_secs(10 * 365 * 86400);

/// Root version `v` listing `keys`. Unsigned.
pub fn root(keys: &RootKeys, v: u64) -> anyhow::Result<Signed<Root>> {
    let RootKeys { approvers, publishers, threshold } = keys;
    let threshold = *threshold;
    anyhow::ensure!(
        threshold >= 1 && threshold as usize <= approvers.len(),
        "a threshold of {threshold} needs at least {threshold} approver keys ({} given)",
        approvers.len()
    );
    let mut keys = HashMap::new();
    let mut keyids = Vec::new();
    for k in approvers {
        let id = k.key_id().context("key id")?;
        anyhow::ensure!(
            keys.insert(id.clone(), k.clone()).is_none(),
            "an approver key is listed twice"
        );
        keyids.push(id);
    }
    let mut publishing = keyids.clone();
    for k in publishers {
        let id = k.key_id().context("key id")?;
        anyhow::ensure!(keys.insert(id.clone(), k.clone()).is_none(), "a key is listed twice");
        publishing.push(id);
    }
    let role = |keyids: &Vec<Decoded<tough::schema::decoded::Hex>>, threshold: u64| RoleKeys {
        keyids: keyids.clone(),
        threshold: NonZeroU64::new(threshold).unwrap_or(NonZeroU64::MIN),
        _extra: HashMap::new(),
    };
    let roles = HashMap::from([
        (RoleType::Root, role(&keyids, threshold)),
        (RoleType::Targets, role(&keyids, threshold)),
        (RoleType::Snapshot, role(&publishing, 1)),
        (RoleType::Timestamp, role(&publishing, 1)),
    ]);
    Ok(unsigned(Root {
        spec_version: SPEC_VERSION.into(),
        consistent_snapshot: true,
        version: version(v)?,
        expires: expiry(ROOT_LIFETIME)?,
        keys,
        roles,
        _extra: HashMap::new(),
    }))
}

/// Targets version `v`: the policy `body`, unsigned.
pub fn targets(body: &[u8], v: u64, expires: jiff::Timestamp) -> anyhow::Result<Signed<Targets>> {
    let mut t = Targets::new(SPEC_VERSION.into(), version(v)?, expires);
    t.delegations = None;
    t.add_target(
        TargetName::new(POLICY_TARGET).context("target name")?,
        Target {
            length: body.len() as u64,
            hashes: hashes(body),
            custom: HashMap::new(),
            _extra: HashMap::new(),
        },
    );
    Ok(unsigned(t))
}

fn unsigned<T>(signed: T) -> Signed<T> {
    Signed { signed, signatures: Vec::new() }
}

/// Adds `key`'s signature (replacing its earlier one) over the canonical
/// form of `signed`.
pub async fn sign<T: Role>(signed: &mut Signed<T>, key: &Signer) -> anyhow::Result<()> {
    let msg = signed.signed.canonical_form().context("canonical form")?;
    let sig = key
        .key
        .sign(&msg, &SystemRandom::new())
        .await
        .map_err(|e| anyhow::anyhow!("signing: {e}"))?;
    let keyid = key.public().key_id().context("key id")?;
    signed.signatures.retain(|s| s.keyid != keyid);
    signed.signatures.push(Signature { keyid, sig: sig.into() });
    Ok(())
}

/// How `signed`'s signatures stand against `root`: valid ones' key ids,
/// the threshold, and why each other one does not count.
pub fn signatures<T: Role + Clone>(root: &Root, signed: &Signed<T>) -> SignatureReport {
    let Some(keys) = root.roles.get(&T::TYPE) else {
        return SignatureReport::default();
    };
    let mut one = root.clone();
    if let Some(r) = one.roles.get_mut(&T::TYPE) {
        r.threshold = NonZeroU64::MIN;
    }
    let mut report = SignatureReport { threshold: keys.threshold.get(), ..Default::default() };
    for sig in &signed.signatures {
        let id = hex::encode(sig.keyid.as_ref());
        let short = super::records::short(&id);
        if !keys.keyids.contains(&sig.keyid) {
            report.not_counted.push(format!("{short}: not an approver key"));
            continue;
        }
        let single = Signed { signed: signed.signed.clone(), signatures: vec![sig.clone()] };
        if one.verify_role(&single).is_ok() {
            report.valid.push(id);
        } else {
            report.not_counted.push(format!("{short}: bad signature"));
        }
    }
    report
}

#[derive(Debug, Default)]
pub struct SignatureReport {
    pub valid: Vec<String>,
    pub threshold: u64,
    pub not_counted: Vec<String>,
}

impl SignatureReport {
    pub fn met(&self) -> bool {
        self.threshold > 0 && self.valid.len() as u64 >= self.threshold
    }
}

impl std::fmt::Display for SignatureReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} valid signature(s) of {} required", self.valid.len(), self.threshold)?;
        if !self.not_counted.is_empty() {
            write!(f, " ({})", self.not_counted.join("; "))?;
        }
        Ok(())
    }
}

/// Canonical JSON: the same bytes for the same metadata (tough's maps
/// would serialize in any order, and snapshot and timestamp hash bytes).
pub fn to_bytes<T: Serialize>(value: &T) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, CanonicalFormatter::new());
    value.serialize(&mut ser).context("canonical JSON")?;
    Ok(buf)
}

pub fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> anyhow::Result<T> {
    serde_json::from_slice(bytes).context("malformed TUF metadata")
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(digest(&SHA256, bytes))
}

fn hashes(bytes: &[u8]) -> Hashes {
    Hashes {
        sha256: Decoded::from(digest(&SHA256, bytes).as_ref().to_vec()),
        _extra: HashMap::new(),
    }
}

fn metafile(bytes: &[u8], v: NonZeroU64) -> Metafile {
    Metafile {
        length: Some(bytes.len() as u64),
        hashes: Some(hashes(bytes)),
        version: v,
        _extra: HashMap::new(),
    }
}

/// The snapshot (version `targets`' own) and a timestamp (version
/// `timestamp_version`) that publish the signed `targets`, signed by `key`.
pub async fn publish(
    targets_json: &[u8],
    timestamp_version: u64,
    snapshot_expires: jiff::Timestamp,
    timestamp_expires: jiff::Timestamp,
    key: &Signer,
) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let targets: Signed<Targets> = from_bytes(targets_json)?;
    let mut snapshot = Snapshot::new(SPEC_VERSION.into(), targets.signed.version, snapshot_expires);
    snapshot.meta.insert("targets.json".into(), metafile(targets_json, targets.signed.version));
    let mut snapshot = unsigned(snapshot);
    sign(&mut snapshot, key).await?;
    let snapshot_json = to_bytes(&snapshot)?;
    let timestamp = timestamp(&snapshot_json, timestamp_version, timestamp_expires, key).await?;
    Ok((snapshot_json, timestamp))
}

/// A timestamp for `snapshot_json`, signed by `key` (publish, refresh).
pub async fn timestamp(
    snapshot_json: &[u8],
    v: u64,
    expires: jiff::Timestamp,
    key: &Signer,
) -> anyhow::Result<Vec<u8>> {
    let snapshot: Signed<Snapshot> = from_bytes(snapshot_json)?;
    let mut ts = Timestamp::new(SPEC_VERSION.into(), version(v)?, expires);
    ts.meta.insert("snapshot.json".into(), metafile(snapshot_json, snapshot.signed.version));
    let mut ts = unsigned(ts);
    sign(&mut ts, key).await?;
    to_bytes(&ts)
}

/// The site's repository as the router mirrors it: `metadata/<file>` and
/// `targets/<file>`, served to tough.
#[derive(Clone, Debug)]
struct Mirror(Arc<BTreeMap<String, Vec<u8>>>);

#[async_trait]
impl Transport for Mirror {
    async fn fetch(&self, url: Url) -> Result<TransportStream, TransportError> {
        let key = url.path().trim_start_matches('/');
        match self.0.get(key) {
            // FileNotFound ends tough's search for the next root version.
            None => Err(TransportError::new(TransportErrorKind::FileNotFound, url)),
            Some(b) => {
                let item: Result<Bytes, TransportError> = Ok(Bytes::from(b.clone()));
                Ok(Box::pin(futures::stream::iter([item])))
            }
        }
    }
}

/// A policy version that verified.
#[derive(Clone, Debug)]
pub struct Verified {
    pub version: u64,
    pub sha256: String,
    pub body: String,
    /// Key ids of the valid targets signatures.
    pub approvers: Vec<String>,
    /// When the timestamp expires (a refresh is due before).
    pub fresh_until: jiff::Timestamp,
}

/// Why a version was not accepted; `reason` is the metric's label.
#[derive(Clone, Debug)]
pub struct Rejection {
    pub reason: Reason,
    /// The version concerned, if its metadata could be read.
    pub version: Option<u64>,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Too few valid approver signatures (bad ones, unknown keys).
    Signatures,
    /// A root (key rotation) without its thresholds.
    Root,
    /// Older than what the router has seen or enforces.
    Rollback,
    /// Metadata past its expiry (not refreshed: a freeze).
    Expired,
    /// The policy body does not match its signed hash.
    Hash,
    /// Metadata or body missing or malformed.
    Malformed,
    /// It verified, but the policy does not validate on this router.
    InvalidPolicy,
}

impl Reason {
    pub const ALL: [Reason; 7] = [
        Reason::Signatures,
        Reason::Root,
        Reason::Rollback,
        Reason::Expired,
        Reason::Hash,
        Reason::Malformed,
        Reason::InvalidPolicy,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Reason::Signatures => "signatures",
            Reason::Root => "root",
            Reason::Rollback => "rollback",
            Reason::Expired => "expired",
            Reason::Hash => "hash",
            Reason::Malformed => "malformed",
            Reason::InvalidPolicy => "invalid-policy",
        }
    }
}

/// The newest targets version the mirror holds, by file name (unverified).
pub fn newest_version(mirror: &BTreeMap<String, Vec<u8>>) -> Option<u64> {
    mirror
        .keys()
        .filter_map(|k| k.strip_prefix("metadata/")?.strip_suffix(".targets.json")?.parse().ok())
        .max()
}

/// Verifies the mirrored repository from the trusted root (the datastore's
/// newest, else `shipped_root`) and reads the policy. `Ok(None)`: nothing
/// published yet.
pub async fn verify(
    mirror: &BTreeMap<String, Vec<u8>>,
    shipped_root: &Path,
    datastore: &Path,
) -> Result<Option<Verified>, Rejection> {
    if !mirror.contains_key("metadata/timestamp.json") {
        return Ok(None);
    }
    let unverified = unverified_targets(mirror);
    let reject = |reason, message: String| Rejection {
        reason,
        version: unverified.as_ref().map(|t| t.signed.version.get()),
        message,
    };
    std::fs::create_dir_all(datastore)
        .map_err(|e| reject(Reason::Malformed, format!("{}: {e}", datastore.display())))?;
    let root = std::fs::read(datastore.join("root.json"))
        .or_else(|_| std::fs::read(shipped_root))
        .map_err(|e| {
            reject(Reason::Malformed, format!("the trusted root {}: {e}", shipped_root.display()))
        })?;
    let urls =
        (Url::parse(METADATA_URL).expect("constant"), Url::parse(TARGETS_URL).expect("constant"));
    let loaded = RepositoryLoader::new(&root, urls.0, urls.1)
        .transport(Mirror(Arc::new(mirror.clone())))
        .datastore(datastore)
        .expiration_enforcement(ExpirationEnforcement::Safe)
        .load()
        .await;
    let repo = match loaded {
        Ok(r) => r,
        Err(e) => {
            let (reason, detail) = classify(&e, mirror, &root);
            return Err(reject(reason, detail));
        }
    };
    let name = TargetName::new(POLICY_TARGET).expect("constant");
    // The stream checks length and hash against the signed targets.
    let body = match repo.read_target(&name).await {
        Ok(Some(stream)) => stream.into_vec().await,
        Ok(None) => {
            return Err(reject(Reason::Malformed, format!("targets lists no {POLICY_TARGET}")));
        }
        Err(e) => Err(e),
    };
    let body = body.map_err(|e| reject(classify(&e, mirror, &root).0, super::error_chain(&e)))?;
    let body = String::from_utf8(body)
        .map_err(|_| reject(Reason::Malformed, format!("{POLICY_TARGET} is not UTF-8")))?;
    let targets = repo.targets();
    let report = signatures(&repo.root().signed, targets);
    Ok(Some(Verified {
        version: targets.signed.version.get(),
        sha256: sha256_hex(body.as_bytes()),
        body,
        approvers: report.valid,
        fresh_until: repo.timestamp().signed.expires,
    }))
}

fn unverified_targets(mirror: &BTreeMap<String, Vec<u8>>) -> Option<Signed<Targets>> {
    let ts: Signed<Timestamp> = from_bytes(mirror.get("metadata/timestamp.json")?).ok()?;
    let sv = ts.signed.meta.get("snapshot.json")?.version;
    let snap: Signed<Snapshot> =
        from_bytes(mirror.get(&format!("metadata/{sv}.snapshot.json"))?).ok()?;
    let tv = snap.signed.meta.get("targets.json")?.version;
    from_bytes(mirror.get(&format!("metadata/{tv}.targets.json"))?).ok()
}

/// tough's error as a reason and a message an operator can act on.
fn classify(
    e: &tough::error::Error,
    mirror: &BTreeMap<String, Vec<u8>>,
    trusted_root: &[u8],
) -> (Reason, String) {
    use tough::error::Error as E;
    let chain = super::error_chain(e);
    let reason = match e {
        E::VerifyMetadata { role: RoleType::Root, .. } | E::VerifyTrustedMetadata { .. } => {
            Reason::Root
        }
        E::VerifyMetadata { .. } => Reason::Signatures,
        E::OlderMetadata { .. }
        | E::OlderSnapshotInTimestamp { .. }
        | E::SnapshotRoleRollback { .. }
        | E::SnapshotRoleMissing { .. } => Reason::Rollback,
        E::ExpiredMetadata { .. } => Reason::Expired,
        E::HashMismatch { .. } | E::MaxSizeExceeded { .. } => Reason::Hash,
        E::Transport { source, .. } => {
            match std::error::Error::source(source).and_then(|s| s.downcast_ref::<E>()) {
                Some(E::HashMismatch { .. } | E::MaxSizeExceeded { .. }) => Reason::Hash,
                _ => Reason::Malformed,
            }
        }
        _ => Reason::Malformed,
    };
    // Which signatures did not count, for the targets the site holds.
    if reason == Reason::Signatures
        && let (Some(t), Ok(root)) =
            (unverified_targets(mirror), from_bytes::<Signed<Root>>(trusted_root))
    {
        let root = newest_verified_root(mirror, root);
        return (
            reason,
            format!("targets version {}: {}", t.signed.version, signatures(&root, &t)),
        );
    }
    (reason, chain)
}

/// The trusted root followed along the mirror's newer roots as far as each
/// is signed by its predecessor's threshold (for messages only; tough did
/// the real check).
fn newest_verified_root(mirror: &BTreeMap<String, Vec<u8>>, mut root: Signed<Root>) -> Root {
    loop {
        let next = root.signed.version.get() + 1;
        let Some(Ok(n)) = mirror
            .get(&format!("metadata/{next}.root.json"))
            .map(|b| from_bytes::<Signed<Root>>(b))
        else {
            return root.signed;
        };
        if !follows(&root.signed, &n) {
            return root.signed;
        }
        root = n;
    }
}

/// Whether `next` may replace `root`: signed by the threshold of `root`'s
/// keys and of its own (TUF 5.3.4).
pub fn follows(root: &Root, next: &Signed<Root>) -> bool {
    signatures(root, next).met() && signatures(&next.signed, next).met()
}
