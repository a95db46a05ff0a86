//! A fleet lab: a 3-member etcd cluster (`etcd`) and routers, each a full
//! `Lab` whose router namespace is attached to the cluster's network and
//! whose daemon follows one site. Approver keys (alice, bob, carol; dave
//! and mallory are not approvers at first) are made with `vlanguard fleet
//! keygen`; the site is created with alice's and bob's signatures,
//! threshold 2. The `fleet` commands run in the cluster's switch
//! namespace, as an operator's workstation would.
//!
//! `new_tls` builds it over a cluster that wants TLS and client
//! certificates (`EtcdCluster::start_tls`): the `fleet` commands and the
//! daemons then get `--fleet-ca`, `--fleet-cert` and `--fleet-key` (the
//! cluster's CA and client certificate) as well.
//!
//! `forge` plays a holder of one approver key (or none) writing metadata
//! straight into etcd, as an attacker with etcd write access would.

use std::{
    path::PathBuf,
    process::{Command, Output},
    thread,
    time::{Duration, Instant},
};

use filter_user::fleet::{Site, tuf};

use crate::{
    etcd::EtcdCluster,
    lab::{Lab, sh, vlanguard_bin},
};

pub const SITE: &str = "north";

/// How long a router may take to apply an approved version in the tests.
pub const CONVERGE: Duration = Duration::from_secs(20);
/// Rules for the lab policy's pump (`lab::policy`): the core servers may
/// send it UDP to 7000, 7001.
pub const UDP_7000: &str = r#"
  { from = "servers", proto = "udp", port = 7000 },"#;
pub const UDP_7001: &str = r#"
  { from = "servers", proto = "udp", port = 7001 },"#;

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Fleet tests share the machine's two CPUs badly: one at a time (each
/// starts a cluster and routers).
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub struct FleetLab {
    // Dropped first: the labs stop their daemons before etcd goes.
    pub labs: Vec<Lab>,
    pub etcd: EtcdCluster,
    pub dir: PathBuf,
    pub root: PathBuf,
}

impl FleetLab {
    /// `routers` labs following site `SITE`, daemons not started yet.
    pub fn new(routers: usize) -> FleetLab {
        FleetLab::over(EtcdCluster::start(3), routers)
    }

    /// `new` over a cluster reached over TLS with client certificates.
    pub fn new_tls(routers: usize) -> FleetLab {
        FleetLab::over(EtcdCluster::start_tls(3), routers)
    }

    fn over(mut etcd: EtcdCluster, routers: usize) -> FleetLab {
        let dir = etcd.dir.join("fleet");
        std::fs::create_dir_all(&dir).expect("fleet dir");
        let mut labs = Vec::new();
        for _ in 0..routers {
            let lab = Lab::new();
            etcd.attach(&lab.ns("r"));
            labs.push(lab);
        }
        let root = dir.join("root.json");
        let f = FleetLab { labs, etcd, dir, root };
        for k in ["alice", "bob", "carol", "dave", "mallory"] {
            let name = f.dir.join(k);
            sh(Command::new(vlanguard_bin()).args(["fleet", "keygen"]).arg(&name));
        }
        let (a, b, c) = (f.public("alice"), f.public("bob"), f.public("carol"));
        let (ka, kb, root) = (f.key("alice"), f.key("bob"), f.root.display().to_string());
        f.ok(&[
            "init",
            "--approver",
            &a,
            "--approver",
            &b,
            "--approver",
            &c,
            "--threshold",
            "2",
            "--key",
            &ka,
            "--key",
            &kb,
            "--root-out",
            &root,
        ]);
        f
    }

    pub fn key(&self, name: &str) -> String {
        self.dir.join(format!("{name}.pem")).display().to_string()
    }

    pub fn public(&self, name: &str) -> String {
        self.dir.join(format!("{name}.pub.json")).display().to_string()
    }

    /// `--fleet-ca CA --fleet-cert CERT --fleet-key KEY` of the cluster's
    /// TLS material; none without TLS.
    pub fn tls_args(&self) -> Vec<String> {
        let Some(t) = self.etcd.tls() else {
            return Vec::new();
        };
        [("--fleet-ca", &t.ca), ("--fleet-cert", &t.client_cert), ("--fleet-key", &t.client_key)]
            .into_iter()
            .flat_map(|(flag, path)| [flag.to_string(), path.display().to_string()])
            .collect()
    }

    /// `vlanguard fleet ARGS --fleet-endpoints ... --site SITE` (keygen
    /// takes neither) and the TLS options, from the cluster's switch
    /// namespace.
    pub fn fleet(&self, args: &[&str]) -> Output {
        let tls = self.tls_args();
        let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
        self.fleet_with(&tls, args)
    }

    /// `fleet` with the TLS options `tls` instead of the cluster's.
    pub fn fleet_with(&self, tls: &[&str], args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.etcd.ns("sw")])
            .arg(vlanguard_bin())
            .arg("fleet")
            .args(args)
            .args(["--fleet-endpoints", &self.etcd.endpoints(), "--site", SITE])
            .args(tls)
            .output()
            .expect("run vlanguard fleet")
    }

    /// `fleet`, which must succeed; its output.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.fleet(args);
        assert!(
            out.status.success(),
            "vlanguard fleet {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Proposes `text` (written to a file first); the version.
    pub fn propose(&self, text: &str) -> u64 {
        let file = self.dir.join(format!("proposal-{}.toml", Instant::now().elapsed().as_nanos()));
        std::fs::write(&file, text).expect("policy file");
        let out = self.ok(&["propose", &file.display().to_string(), "--as", "nina"]);
        out.split_whitespace()
            .skip_while(|w| *w != "version")
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no version in {out}"))
    }

    pub fn approve(&self, version: u64, key: &str) -> String {
        self.ok(&["approve", &version.to_string(), "--key", &self.key(key), "--yes"])
    }

    /// The `vlanguard run` arguments of fleet mode for router `i`, the
    /// TLS options included.
    pub fn run_args(&self, i: usize) -> Vec<String> {
        let mut args = self.run_args_without_tls(i);
        args.extend(self.tls_args());
        args
    }

    /// `run_args` without `--fleet-ca/--fleet-cert/--fleet-key`.
    pub fn run_args_without_tls(&self, i: usize) -> Vec<String> {
        let state = self.labs[i].dir.join("fleet-state");
        [
            "--fleet-endpoints",
            &self.etcd.endpoints(),
            "--site",
            SITE,
            "--fleet-root",
            &self.root.display().to_string(),
            "--fleet-state",
            &state.display().to_string(),
            "--router-name",
            &format!("r{i}"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    pub fn start_daemon(&mut self, i: usize) -> String {
        let args = self.run_args(i);
        self.start_daemon_args(i, &args)
    }

    /// Starts router `i`'s daemon with fleet arguments `args` (from
    /// `run_args` or `run_args_without_tls`, say).
    pub fn start_daemon_args(&mut self, i: usize, args: &[String]) -> String {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.labs[i].start_daemon_with(&args)
    }

    /// `new` with every router's daemon started.
    pub fn running(routers: usize) -> FleetLab {
        let mut f = FleetLab::new(routers);
        f.start_daemons();
        f
    }

    pub fn start_daemons(&mut self) {
        for i in 0..self.labs.len() {
            self.start_daemon(i);
        }
    }

    /// Router `i`'s `status` fleet section.
    pub fn status(&self, i: usize) -> serde_json::Value {
        let out = self.labs[i].cli(&["status", "--json"]);
        assert!(out.status.success(), "status: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
        v["fleet"].clone()
    }

    pub fn applied(&self, i: usize) -> Option<u64> {
        self.status(i)["applied_version"].as_u64()
    }

    /// Waits until router `i` enforces `version`; how long it took.
    #[track_caller]
    pub fn wait_version(&self, i: usize, version: u64, within: Duration) -> Duration {
        let start = Instant::now();
        loop {
            if self.applied(i) == Some(version) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "router {i} did not apply version {version} within {within:?}: {:#}\n{}",
                self.status(i),
                self.labs[i].daemon_log()
            );
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits until router `i` has rejected a version for `reason` (the
    /// metric's label); its last error.
    #[track_caller]
    pub fn wait_rejected(&self, i: usize, reason: &str, before: u64, within: Duration) -> String {
        let start = Instant::now();
        loop {
            let s = self.status(i);
            if s["rejected"][reason].as_u64().unwrap_or(0) > before {
                return s["last_error"].as_str().unwrap_or_default().to_string();
            }
            assert!(
                start.elapsed() < within,
                "router {i} did not reject for {reason} within {within:?}: {s:#}\n{}",
                self.labs[i].daemon_log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// UDP datagrams from the core server to the pump's `port` through
    /// router `i`, out of 20.
    pub fn core_to_pump(&self, i: usize, port: u16) -> usize {
        self.labs[i].udp("core", "pump", crate::lab::PUMP, port)
    }

    pub fn rejected(&self, i: usize, reason: &str) -> u64 {
        self.status(i)["rejected"][reason].as_u64().unwrap_or(0)
    }

    /// `fleet status --json`.
    pub fn fleet_status(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["status", "--json"])).expect("fleet status JSON")
    }

    /// A key of the site as etcd holds it.
    pub fn get(&self, key: &str) -> Option<String> {
        self.etcd.get(key)
    }

    pub fn site() -> Site {
        Site::new(SITE).expect("site name")
    }
}

/// Signed metadata for version `version` of `body`, as someone holding
/// `signers` (and claiming `forged`: key ids with made-up signatures)
/// would write it, published with a timestamp signed by `signers[0]`
/// that expires `fresh_secs` from now (negative: already expired).
pub struct Forgery<'a> {
    pub body: &'a str,
    pub version: u64,
    pub signers: &'a [&'a str],
    pub forged: &'a [&'a str],
    pub fresh_secs: i64,
}

impl FleetLab {
    /// Writes `f` into etcd: body, targets, snapshot, then timestamp.
    pub fn forge(&self, f: &Forgery) {
        let site = Self::site();
        let signers: Vec<tuf::Signer> = f
            .signers
            .iter()
            .map(|k| tuf::Signer::load(std::path::Path::new(&self.key(k))).expect("key"))
            .collect();
        let ts_version = self.get(&site.metadata("timestamp.json")).map_or(0, |t| {
            serde_json::from_str::<serde_json::Value>(&t).expect("timestamp")["signed"]["version"]
                .as_u64()
                .expect("version")
        });
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let (targets, snapshot, timestamp) = runtime.block_on(async {
            let mut t = tuf::targets(
                f.body.as_bytes(),
                f.version,
                tuf::seconds_from_now(86_400).expect("time"),
            )
            .expect("targets");
            for s in &signers {
                tuf::sign(&mut t, s).await.expect("sign");
            }
            let mut value = serde_json::to_value(&t).expect("json");
            for k in f.forged {
                let keyid =
                    tuf::Signer::load(std::path::Path::new(&self.key(k))).expect("key").keyid;
                value["signatures"].as_array_mut().expect("signatures").push(serde_json::json!({
                    "keyid": keyid,
                    "sig": "ab".repeat(64),
                }));
            }
            let targets = serde_json::to_vec(&value).expect("json");
            let (snapshot, timestamp) = tuf::publish(
                &targets,
                tuf::next_timestamp_version(Some(ts_version)),
                tuf::seconds_from_now(86_400).expect("time"),
                tuf::seconds_from_now(f.fresh_secs).expect("time"),
                &signers[0],
            )
            .await
            .expect("publish");
            (targets, snapshot, timestamp)
        });
        let text = |b: Vec<u8>| String::from_utf8(b).expect("JSON is text");
        let sha = tuf::sha256_hex(f.body.as_bytes());
        self.etcd.put(&site.target(&format!("{sha}.policy.toml")), f.body);
        self.etcd.put(&site.metadata(&format!("{}.targets.json", f.version)), &text(targets));
        self.etcd.put(&site.metadata(&format!("{}.snapshot.json", f.version)), &text(snapshot));
        self.etcd.put(&site.metadata("timestamp.json"), &text(timestamp));
    }
}
