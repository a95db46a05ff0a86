//! A real etcd v3 cluster in network namespaces, for tests of vlanguard
//! against a shared store: members that can be killed and restarted, and
//! namespaces (a lab's router, say) attached to the cluster's switch that
//! can be cut off and healed.
//!
//! ```text
//!  <p>-m0 10.251.0.1 ── eth0/m0 ─┐
//!  <p>-m1 10.251.0.2 ── eth0/m1 ─┤ br0 10.251.0.254 in <p>-sw (etcdctl runs here)
//!  <p>-m2 10.251.0.3 ── eth0/m2 ─┤
//!  attached ns 10.251.0.100 ── <p>e0/a0 ─┘   (`attach`, one per namespace)
//! ```
//!
//! Every member is `etcd` (3.4, Debian's `etcd-server`) started with `ip
//! netns exec` in its own namespace, with its data directory and log under
//! /run/vlanguard-test/<prefix>/. Heartbeats every 100 ms and a 1 s election
//! timeout make a leader election take one to two seconds.
//!
//! `start_tls` makes a cluster as a site that takes its etcd seriously
//! runs it: clients reach the members over TLS (`https://IP:2379`) and must
//! show a client certificate of the cluster's CA (`--client-cert-auth`).
//! The CA, one server certificate per member (subjectAltName its address)
//! and one client certificate (for etcdctl, the `fleet` commands and the
//! daemons) are made with the `openssl` CLI in the cluster's `tls/`
//! directory ([`Tls`]). The members talk to each other in plain http on
//! the peer port 2380 either way: peer TLS is etcd's own business and not
//! what vlanguard's clients see.
//!
//! The prefix ("ve" + pid + counter) differs from `Lab`'s ("vt..."), so a
//! cluster and labs coexist in one test. Dropping the cluster (also when a
//! test panics) kills the members, deletes the veths it added to other
//! namespaces, its own namespaces and its directory.

use std::{
    fs,
    io::{Read, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use crate::lab::sh;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The cluster's subnet: member `i` is `SUBNET.(i+1)`, attached namespaces
/// `SUBNET.(100+k)`, the switch `SUBNET.254`.
pub const SUBNET: &str = "10.251.0";

/// How long `start` and `restart` wait for every member to be healthy.
pub const HEALTHY_WITHIN: Duration = Duration::from_secs(30);

/// How long `leader` waits for the members to agree on a live leader.
pub const LEADER_WITHIN: Duration = Duration::from_secs(20);

/// The longest any single etcdctl run may take before it is killed.
const ETCDCTL_LIMIT: Duration = Duration::from_secs(30);

/// Lines of a member's log quoted when a wait fails.
const TAIL_LINES: usize = 25;

struct Member {
    ns: String,
    ip: String,
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    starts: usize,
}

struct Attached {
    ns: String,
    /// The veth end on the cluster's bridge, in the switch namespace.
    port: String,
    addr: String,
}

/// A certificate authority made with the `openssl` CLI: `NAME.crt` and
/// `NAME.key` (ECDSA P-256) in a directory, where it also puts what it
/// signs.
pub struct Ca {
    pub cert: PathBuf,
    key: PathBuf,
    dir: PathBuf,
}

/// Runs `openssl ARGS` in `dir`, panicking with its output if it fails.
fn openssl(dir: &Path, args: &[&[&str]]) {
    sh(Command::new("openssl").current_dir(dir).args(args.concat()));
}

/// `openssl req` arguments for a new P-256 key, unencrypted, in `key`.
fn new_key(key: &str) -> [&str; 7] {
    ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key]
}

/// How long the test certificates are valid: a test run, with room.
const CERT_DAYS: &str = "7";

impl Ca {
    /// A new self-signed CA `NAME` in `dir` (created if need be).
    pub fn new(dir: &Path, name: &str) -> Ca {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let (cert, key) = (format!("{name}.crt"), format!("{name}.key"));
        openssl(
            dir,
            &[
                &["req", "-x509"][..],
                &new_key(&key),
                &[
                    "-out",
                    &cert,
                    "-days",
                    CERT_DAYS,
                    "-subj",
                    &format!("/CN=vlanguard test {name}"),
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            ],
        );
        Ca { cert: dir.join(cert), key: dir.join(key), dir: dir.to_path_buf() }
    }

    /// A certificate `NAME.crt` and its key `NAME.key` signed by this CA:
    /// with `server_ip`, a server certificate for that address (etcd also
    /// presents it as a client, to its own gRPC gateway: so both usages);
    /// without, a client certificate.
    pub fn issue(&self, name: &str, server_ip: Option<&str>) -> (PathBuf, PathBuf) {
        let (cert, key, csr, ext) = (
            format!("{name}.crt"),
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.ext"),
        );
        let usage = match server_ip {
            Some(ip) => format!("extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:{ip}\n"),
            None => "extendedKeyUsage=clientAuth\n".to_string(),
        };
        let extensions = format!(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n{usage}"
        );
        fs::write(self.dir.join(&ext), extensions).expect("certificate extensions");
        openssl(
            &self.dir,
            &[
                &["req", "-new"][..],
                &new_key(&key),
                &["-out", &csr, "-subj", &format!("/CN={name}")],
            ],
        );
        let (ca_cert, ca_key) = (self.cert.display().to_string(), self.key.display().to_string());
        openssl(
            &self.dir,
            &[&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_cert,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &cert,
                "-days",
                CERT_DAYS,
                "-extfile",
                &ext,
            ]],
        );
        (self.dir.join(cert), self.dir.join(key))
    }
}

/// The TLS material of a cluster made by `start_tls`, in its `tls/`
/// directory: the CA every member's certificate is signed by, and the
/// client certificate the members accept.
pub struct Tls {
    pub ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// The directory, with `m<i>.crt`/`m<i>.key` for member `i`.
    pub dir: PathBuf,
}

pub struct EtcdCluster {
    pub prefix: String,
    pub dir: PathBuf,
    /// Client TLS with client certificates (`start_tls`), or plain http.
    tls: Option<Tls>,
    token: String,
    members: Vec<Member>,
    attached: Vec<Attached>,
    /// Every namespace this cluster created, deleted on drop.
    namespaces: Vec<String>,
}

fn ip(args: &str) {
    sh(Command::new("ip").args(args.split_whitespace()));
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Runs `cmd` with its output captured, killing it (and failing) after
/// `limit`: etcdctl has timeouts of its own, this bounds it if they fail.
fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for etcdctl") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} still ran after {limit:?}: killed");
        }
        thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

impl EtcdCluster {
    /// A cluster of `members` (1 to 99) etcd members, all healthy when
    /// this returns (waiting at most `HEALTHY_WITHIN`).
    pub fn start(members: usize) -> EtcdCluster {
        EtcdCluster::start_with(members, false)
    }

    /// `start`, the members serving their clients over TLS only and
    /// requiring a client certificate of the cluster's CA (see `Tls`).
    pub fn start_tls(members: usize) -> EtcdCluster {
        EtcdCluster::start_with(members, true)
    }

    fn start_with(members: usize, tls: bool) -> EtcdCluster {
        assert!((1..100).contains(&members), "1 to 99 members, not {members}");
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("ve{:x}{n}", std::process::id() % 0xffff);
        let dir = PathBuf::from(format!("/run/vlanguard-test/{prefix}"));
        let mut cluster = EtcdCluster {
            token: format!("vlanguard-test-{prefix}-{}", std::process::id()),
            prefix,
            dir,
            tls: None,
            members: Vec::new(),
            attached: Vec::new(),
            namespaces: Vec::new(),
        };
        // A stale directory of an earlier run with the same pid would make
        // the members "restart" a foreign cluster.
        let _ = fs::remove_dir_all(&cluster.dir);
        fs::create_dir_all(&cluster.dir).expect("cluster directory");

        let sw = cluster.ns("sw");
        cluster.add_ns(&sw);
        ip(&format!("-n {sw} link add br0 type bridge"));
        ip(&format!("-n {sw} addr add {SUBNET}.254/24 dev br0"));
        ip(&format!("-n {sw} link set br0 up"));
        for i in 0..members {
            let ns = cluster.ns(&format!("m{i}"));
            cluster.add_ns(&ns);
            let addr = format!("{SUBNET}.{}", i + 1);
            ip(&format!("link add eth0 netns {ns} type veth peer name m{i} netns {sw}"));
            ip(&format!("-n {sw} link set m{i} master br0"));
            ip(&format!("-n {sw} link set m{i} up"));
            ip(&format!("-n {ns} addr add {addr}/24 dev eth0"));
            ip(&format!("-n {ns} link set eth0 up"));
            let data = cluster.dir.join(format!("m{i}"));
            let log = cluster.dir.join(format!("m{i}.log"));
            cluster.members.push(Member { ns, ip: addr, data, log, child: None, starts: 0 });
        }
        if tls {
            let dir = cluster.dir.join("tls");
            let ca = Ca::new(&dir, "ca");
            for (i, m) in cluster.members.iter().enumerate() {
                ca.issue(&format!("m{i}"), Some(&m.ip));
            }
            let (client_cert, client_key) = ca.issue("client", None);
            cluster.tls = Some(Tls { ca: ca.cert, client_cert, client_key, dir });
        }
        for i in 0..members {
            cluster.spawn(i, "new");
        }
        cluster.wait_healthy("the new cluster");
        cluster
    }

    /// The namespace name of `role` ("sw", "m0", ...).
    pub fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    fn add_ns(&mut self, ns: &str) {
        ip(&format!("netns add {ns}"));
        self.namespaces.push(ns.to_string());
        ip(&format!("-n {ns} link set lo up"));
    }

    /// Number of members, running or killed.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The TLS material, if the cluster was made by `start_tls`.
    pub fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }

    /// Member `i`'s client URL (`https` with TLS).
    pub fn endpoint(&self, i: usize) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}:2379", self.members[i].ip)
    }

    /// Every member's client URL, comma-separated (killed ones too: what a
    /// client is configured with).
    pub fn endpoints(&self) -> String {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect::<Vec<_>>().join(",")
    }

    /// The client URLs of the members that run.
    pub fn live_endpoints(&self) -> String {
        self.live().map(|i| self.endpoint(i)).collect::<Vec<_>>().join(",")
    }

    fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.members.len()).filter(|&i| self.members[i].child.is_some())
    }

    /// Whether member `i` runs (was not killed).
    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }

    /// Member `i`'s log file (every start appends to it).
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.members[i].log.clone()
    }

    /// The last lines of member `i`'s log.
    pub fn log_tail(&self, i: usize) -> String {
        let text = fs::read_to_string(&self.members[i].log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
    }

    /// The tails of every member's log, for panic messages.
    pub fn logs(&self) -> String {
        (0..self.members.len())
            .map(|i| format!("--- m{i} ({}) log tail:\n{}", self.members[i].ip, self.log_tail(i)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn spawn(&mut self, i: usize, state: &str) {
        let initial_cluster = (0..self.members.len())
            .map(|j| format!("m{j}=http://{}:2380", self.members[j].ip))
            .collect::<Vec<_>>()
            .join(",");
        let client = self.endpoint(i);
        // Clients over TLS with certificates of the cluster's CA only.
        let client_tls: Vec<String> = match &self.tls {
            Some(t) => {
                let file = |ext: &str| t.dir.join(format!("m{i}.{ext}")).display().to_string();
                vec![
                    "--cert-file".into(),
                    file("crt"),
                    "--key-file".into(),
                    file("key"),
                    "--trusted-ca-file".into(),
                    t.ca.display().to_string(),
                    "--client-cert-auth".into(),
                ]
            }
            None => Vec::new(),
        };
        let m = &mut self.members[i];
        assert!(m.child.is_none(), "member m{i} already runs");
        m.starts += 1;
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .unwrap_or_else(|e| panic!("{}: {e}", m.log.display()));
        let _ = writeln!(
            log,
            "=== vlanguard test: start {} (--initial-cluster-state {state})",
            m.starts
        );
        // Peers stay plain http, TLS or not (see the module's comment).
        let peer = format!("http://{}:2380", m.ip);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &m.ns, "etcd"])
            .args(["--name", &format!("m{i}")])
            .arg("--data-dir")
            .arg(&m.data)
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(&client_tls)
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial_cluster])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", &self.token])
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            // 3.4 defaults to the deprecated capnslog logger.
            .args(["--logger", "zap", "--log-outputs", "stderr"]);
        // The machine's ETCD_* settings (Debian's /etc/default/etcd is not
        // read, but a caller's environment would be) must not leak in.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCD") {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting etcd m{i}: {e}"));
        m.child = Some(child);
    }

    /// Panics (with the log tail) if a member that should run has exited.
    fn check_running(&mut self, what: &str) {
        for i in 0..self.members.len() {
            let exited = self.members[i].child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.members[i].child = None;
                panic!("waiting for {what}: etcd m{i} exited with {status}\n{}", self.log_tail(i));
            }
        }
    }

    /// Waits (at most `HEALTHY_WITHIN`) until every running member reports
    /// healthy to `etcdctl endpoint health`.
    fn wait_healthy(&mut self, what: &str) {
        let deadline = Instant::now() + HEALTHY_WITHIN;
        let want: Vec<usize> = self.live().collect();
        let mut last = String::new();
        for _attempt in 0..300 {
            self.check_running(what);
            let out =
                self.etcdctl(&["endpoint", "health", "--dial-timeout=1s", "--command-timeout=2s"]);
            last = text(&out);
            let healthy = want
                .iter()
                .filter(|&&i| last.contains(&format!("{} is healthy", self.endpoint(i))))
                .count();
            if out.status.success() && healthy == want.len() {
                return;
            }
            if Instant::now() >= deadline {
                break;
            }
            thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "waiting {HEALTHY_WITHIN:?} for {what}: members {want:?} never all healthy; \
             last etcdctl endpoint health:\n{last}\n{}",
            self.logs()
        );
    }

    /// `etcdctl ARGS` (v3) in `ns` against `endpoints`, bounded.
    fn etcdctl_with(&self, ns: &str, endpoints: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, "etcdctl"]).env("ETCDCTL_API", "3");
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCDCTL_") && k != "ETCDCTL_API" {
                cmd.env_remove(k);
            }
        }
        cmd.arg(format!("--endpoints={endpoints}"));
        if let Some(t) = &self.tls {
            cmd.arg("--cacert").arg(&t.ca);
            cmd.arg("--cert").arg(&t.client_cert);
            cmd.arg("--key").arg(&t.client_key);
        }
        if !args.iter().any(|a| a.starts_with("--dial-timeout")) {
            cmd.arg("--dial-timeout=2s");
        }
        if !args.iter().any(|a| a.starts_with("--command-timeout")) {
            cmd.arg("--command-timeout=5s");
        }
        run_bounded(cmd.args(args), ETCDCTL_LIMIT)
    }

    /// `etcdctl ARGS` in the switch namespace against every running
    /// member. Defaults `--dial-timeout=2s --command-timeout=5s` unless
    /// `args` set them.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        self.etcdctl_with(&self.ns("sw"), &self.live_endpoints(), args)
    }

    /// `etcdctl` in namespace `ns` (one given to `attach`) against every
    /// running member.
    pub fn etcdctl_from(&self, ns: &str, args: &[&str]) -> Output {
        self.etcdctl_with(ns, &self.live_endpoints(), args)
    }

    /// `etcdctl` in the switch namespace against member `i` only.
    pub fn etcdctl_member(&self, i: usize, args: &[&str]) -> Output {
        self.etcdctl_with(&self.ns("sw"), &self.endpoint(i), args)
    }

    /// `etcdctl`, panicking with its output and the logs unless it succeeds.
    #[track_caller]
    pub fn etcdctl_ok(&self, args: &[&str]) -> String {
        let out = self.etcdctl(args);
        assert!(out.status.success(), "etcdctl {args:?} failed: {}\n{}", text(&out), self.logs());
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[track_caller]
    pub fn put(&self, key: &str, value: &str) {
        self.etcdctl_ok(&["put", key, value]);
    }

    /// The value of `key` (linearizable read), `None` if absent.
    #[track_caller]
    pub fn get(&self, key: &str) -> Option<String> {
        let out = self.etcdctl_ok(&["get", key, "--print-value-only"]);
        out.strip_suffix('\n').map(str::to_string)
    }

    /// The store's current revision (a linearizable read's header).
    #[track_caller]
    pub fn revision(&self) -> i64 {
        let out = self.etcdctl_ok(&["get", "vlanguard-test/revision-probe", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("etcdctl get -w json is not JSON ({e}): {out}"));
        v["header"]["revision"].as_i64().unwrap_or_else(|| panic!("no revision in {out}"))
    }

    /// Compacts the history up to the current revision (`--physical`: the
    /// call returns once the members have removed it); returns that
    /// revision. Compacting again with no writes in between is a no-op.
    #[track_caller]
    pub fn compact(&self) -> i64 {
        let rev = self.revision();
        let out = self.etcdctl(&["compact", &rev.to_string(), "--physical"]);
        let said = text(&out);
        assert!(
            out.status.success() || said.contains("required revision has been compacted"),
            "etcdctl compact {rev} --physical failed: {said}\n{}",
            self.logs()
        );
        rev
    }

    /// The index of the member that leads, once every running member
    /// reports the same leader and that leader is one of them (after a
    /// leader dies the others name it until they time out). Waits at most
    /// `LEADER_WITHIN`. This is what the members say: a leader that has
    /// just lost its quorum still names itself until it steps down, one
    /// election timeout (1 s) later.
    #[track_caller]
    pub fn leader(&self) -> usize {
        let deadline = Instant::now() + LEADER_WITHIN;
        let live: Vec<usize> = self.live().collect();
        assert!(!live.is_empty(), "no member runs: no leader");
        let mut last = String::new();
        for _attempt in 0..1000 {
            let out = self.etcdctl(&[
                "endpoint",
                "status",
                "-w",
                "json",
                "--dial-timeout=1s",
                "--command-timeout=1s",
            ]);
            last = text(&out);
            if let Some(i) = self.agreed_leader(&live, &out.stdout) {
                return i;
            }
            if Instant::now() >= deadline {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "waiting {LEADER_WITHIN:?} for members {live:?} to agree on a running leader; \
             last etcdctl endpoint status:\n{last}\n{}",
            self.logs()
        );
    }

    fn agreed_leader(&self, live: &[usize], json: &[u8]) -> Option<usize> {
        let v: serde_json::Value = serde_json::from_slice(json).ok()?;
        // (member index, its member ID, the leader ID it reports)
        let mut seen = Vec::new();
        for e in v.as_array()? {
            let endpoint = e["Endpoint"].as_str()?;
            let i = live.iter().copied().find(|&i| self.endpoint(i) == endpoint)?;
            let id = e["Status"]["header"]["member_id"].as_u64()?;
            let leader = e["Status"]["leader"].as_u64()?;
            seen.push((i, id, leader));
        }
        if seen.len() != live.len() {
            return None;
        }
        let leader = seen[0].2;
        if leader == 0 || seen.iter().any(|s| s.2 != leader) {
            return None;
        }
        seen.iter().find(|s| s.1 == leader).map(|s| s.0)
    }

    /// SIGKILLs member `i` and reaps it.
    pub fn kill(&mut self, i: usize) {
        let Some(mut child) = self.members[i].child.take() else {
            panic!("kill m{i}: it does not run");
        };
        // `ip netns exec` execs etcd, so the child is etcd.
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts killed member `i` again on its data directory and waits
    /// until every running member is healthy.
    pub fn restart(&mut self, i: usize) {
        self.spawn(i, "existing");
        self.wait_healthy(&format!("m{i} to rejoin"));
    }

    /// Starts every killed member again, then waits until all are healthy
    /// (after a whole-cluster outage no member alone has a quorum).
    pub fn restart_all(&mut self) {
        let down: Vec<usize> = (0..self.len()).filter(|&i| !self.is_running(i)).collect();
        for &i in &down {
            self.spawn(i, "existing");
        }
        self.wait_healthy(&format!("members {down:?} to come back"));
    }

    /// Connects namespace `ns` (made elsewhere) to the cluster's bridge
    /// with a new veth (`<prefix>e<k>` in `ns`, `a<k>` on the bridge) and
    /// gives it 10.251.0.(100+k)/24; returns that address.
    pub fn attach(&mut self, ns: &str) -> String {
        let k = self.attached.len();
        assert!(k < 100, "at most 100 attached namespaces");
        let far = format!("{}e{k}", self.prefix);
        assert!(far.len() <= 15, "interface name {far} too long");
        let (port, addr, sw) = (format!("a{k}"), format!("{SUBNET}.{}", 100 + k), self.ns("sw"));
        ip(&format!("link add {far} netns {ns} type veth peer name {port} netns {sw}"));
        self.attached.push(Attached { ns: ns.to_string(), port: port.clone(), addr: addr.clone() });
        ip(&format!("-n {sw} link set {port} master br0"));
        ip(&format!("-n {sw} link set {port} up"));
        ip(&format!("-n {ns} addr add {addr}/24 dev {far}"));
        ip(&format!("-n {ns} link set {far} up"));
        addr
    }

    fn attached(&self, ns: &str) -> &Attached {
        self.attached
            .iter()
            .find(|a| a.ns == ns)
            .unwrap_or_else(|| panic!("{ns} is not attached to etcd cluster {}", self.prefix))
    }

    /// The address `attach` gave `ns`.
    pub fn attached_addr(&self, ns: &str) -> String {
        self.attached(ns).addr.clone()
    }

    /// Cuts `ns` off from the cluster: the bridge drops every frame from
    /// and to its port (an nftables table of the bridge family in the
    /// switch namespace). The link stays up, so for `ns` the packets just
    /// vanish, as behind a failed switch or router upstream: clients see
    /// timeouts, not an immediate "network unreachable" or a carrier loss
    /// a daemon could react to, which taking the port down would give
    /// (the veth in `ns` would go NO-CARRIER). This kernel has no tc
    /// classifiers and ignores bridge port states set by hand, hence
    /// nftables.
    pub fn partition(&self, ns: &str) {
        let sw = self.ns("sw");
        let a = self.attached(ns);
        let (table, port) = (format!("cut_{}", a.port), a.port.clone());
        // Declaring then deleting the table makes this idempotent.
        let script = format!(
            "table bridge {table}\n\
             delete table bridge {table}\n\
             table bridge {table} {{\n\
             \tchain through {{ type filter hook forward priority 0; iifname \"{port}\" drop; oifname \"{port}\" drop; }}\n\
             \tchain to_switch {{ type filter hook input priority 0; iifname \"{port}\" drop; }}\n\
             \tchain from_switch {{ type filter hook output priority 0; oifname \"{port}\" drop; }}\n\
             }}\n"
        );
        nft(&sw, &script);
    }

    /// Undoes `partition(ns)` (a no-op if `ns` is not cut off).
    pub fn heal(&self, ns: &str) {
        let table = format!("cut_{}", self.attached(ns).port);
        nft(&self.ns("sw"), &format!("table bridge {table}\ndelete table bridge {table}\n"));
    }
}

/// Runs nftables `script` in namespace `ns`.
fn nft(ns: &str, script: &str) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running nft: {e}"));
    let written = child.stdin.take().expect("nft stdin").write_all(script.as_bytes());
    let out = child.wait_with_output().expect("nft");
    written.expect("writing the nft script");
    assert!(out.status.success(), "nft in {ns} failed: {}\nscript:\n{script}", text(&out));
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut child) = m.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let sw = self.ns("sw");
        // Deleting our end deletes the one in the foreign namespace too
        // (which may already be gone with its namespace).
        for a in &self.attached {
            let _ = Command::new("ip")
                .args(["-n", &sw, "link", "del", &a.port])
                .stderr(Stdio::null())
                .status();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = fs::remove_dir_all(&self.dir);
        // The shared parent goes with the last lab or cluster.
        let _ = self.dir.parent().map(fs::remove_dir);
    }
}
