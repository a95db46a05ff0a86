//! MUD import in the namespace lab: the pump's maker says it opens TCP 8443
//! to its update server (by DNS name, answered by a DNS server the test runs
//! on the router's loopback) and NTP to an address, and that its controller
//! (a MUD abstraction, mapped to the nurse stations) may open TCP 8080 to
//! it. After `vlanguard mud import` exactly those flows open, in the
//! declared direction only; a changed DNS answer moves the rule.

use std::{
    fs, thread,
    time::{Duration, Instant},
};

use vlanguard_tests::{
    dns::Dns,
    lab::{self, CORE, Lab, NURSE, PUMP, socket_addr, tcp_echo, tcp_works},
    privileged,
};

const UPDATES: &str = "updates.lab.test";
/// The core host's second address (the lab's NTP server).
const CORE2: &str = "10.20.1.123";

const MUD: &str = r#"{
  "ietf-mud:mud": {
    "mud-version": 1,
    "mud-url": "https://pumps.lab.test/p7",
    "last-update": "2026-11-01T10:00:00Z",
    "systeminfo": "lab infusion pump",
    "from-device-policy": {"access-lists": {"access-list": [{"name": "from"}]}},
    "to-device-policy": {"access-lists": {"access-list": [{"name": "to"}]}}
  },
  "ietf-access-control-list:acls": {"acl": [
    {"name": "from", "type": "ipv4-acl-type", "aces": {"ace": [
      {"name": "updates", "matches": {
         "ipv4": {"protocol": 6, "ietf-acldns:dst-dnsname": "updates.lab.test"},
         "tcp": {"destination-port": {"operator": "eq", "port": 8443},
                 "ietf-mud:direction-initiated": "from-device"}},
       "actions": {"forwarding": "accept"}},
      {"name": "ntp", "matches": {
         "ipv4": {"protocol": 17, "destination-ipv4-network": "10.20.1.123/32"},
         "udp": {"destination-port": {"operator": "eq", "port": 123}}},
       "actions": {"forwarding": "accept"}},
      {"name": "controller-reply", "matches": {
         "ietf-mud:mud": {"my-controller": [null]},
         "ipv4": {"protocol": 6},
         "tcp": {"source-port": {"operator": "eq", "port": 8080},
                 "ietf-mud:direction-initiated": "to-device"}},
       "actions": {"forwarding": "accept"}}
    ]}},
    {"name": "to", "type": "ipv4-acl-type", "aces": {"ace": [
      {"name": "updates-reply", "matches": {
         "ipv4": {"protocol": 6, "ietf-acldns:src-dnsname": "updates.lab.test"},
         "tcp": {"source-port": {"operator": "eq", "port": 8443},
                 "ietf-mud:direction-initiated": "from-device"}},
       "actions": {"forwarding": "accept"}},
      {"name": "ntp-reply", "matches": {
         "ipv4": {"protocol": 17, "source-ipv4-network": "10.20.1.123/32"},
         "udp": {"source-port": {"operator": "eq", "port": 123}}},
       "actions": {"forwarding": "accept"}},
      {"name": "controller", "matches": {
         "ietf-mud:mud": {"my-controller": [null]},
         "ipv4": {"protocol": 6},
         "tcp": {"destination-port": {"operator": "eq", "port": 8080},
                 "ietf-mud:direction-initiated": "to-device"}},
       "actions": {"forwarding": "accept"}}
    ]}}
  ]}
}"#;

/// The pump uses the (still empty) profile the import fills; its DNS
/// names are resolved again every 2 s.
fn policy() -> String {
    format!(
        r#"
[settings]
allow_arp = true
allow_ndp = true
dns_refresh = "2s"

{vlans}
[peers]
controllers = ["10.30.0.0/16"]

[[profile]]
name = "pump-mud"

[[device]]
name = "pump"
vlan = 110
ip = ["10.110.0.7", "2001:db8:110::7"]
mac = "02:00:00:00:00:07"
profile = "pump-mud"

[[device]]
name = "monitor"
vlan = 120
ip = ["10.120.0.11", "2001:db8:120::11"]
"#,
        vlans = lab::VLANS
    )
}

/// A manufacturer's CA and signing certificate, and a stranger's, made
/// with the openssl command in the lab's directory.
struct Pki {
    dir: std::path::PathBuf,
    /// The maker's CA certificate (PEM): the trust anchor.
    anchor: String,
}

impl Pki {
    fn new(dir: &std::path::Path) -> Pki {
        let dir = dir.join("pki");
        fs::create_dir_all(&dir).expect("pki dir");
        let openssl = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        for who in ["maker", "stranger"] {
            let (ca, key, csr, cert) = (
                format!("{who}-ca"),
                format!("{who}.key"),
                format!("{who}.csr"),
                format!("{who}.pem"),
            );
            openssl(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN={who} CA"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
            ]);
            openssl(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={who}"),
                "-keyout",
                &key,
                "-out",
                &csr,
            ]);
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &format!("{ca}.pem"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &cert,
            ]);
        }
        let anchor = dir.join("maker-ca.pem").to_string_lossy().to_string();
        Pki { dir, anchor }
    }

    /// A detached DER CMS signature of `file` by `who`; returns its path.
    fn sign(&self, file: &str, who: &str) -> String {
        let out = self.dir.join(format!("{who}.p7s")).to_string_lossy().to_string();
        let status = std::process::Command::new("openssl")
            .args(["cms", "-sign", "-binary", "-outform", "DER", "-in", file, "-out", &out])
            .arg("-signer")
            .arg(self.dir.join(format!("{who}.pem")))
            .arg("-inkey")
            .arg(self.dir.join(format!("{who}.key")))
            .status()
            .expect("openssl cms");
        assert!(status.success(), "signing");
        out
    }
}

fn ok(out: &std::process::Output) -> String {
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    text
}

/// Waits up to 15 s for `status` to show `needle`.
fn status_shows(lab: &Lab, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = ok(&lab.cli(&["status"]));
        if text.contains(needle) || Instant::now() > deadline {
            return text;
        }
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_imported_mud_profile_opens_exactly_the_declared_flows() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    fs::write(&lab.policy_file, policy()).expect("policy");
    let dns = Dns::start(&lab, "r", &[(UPDATES, CORE)]);
    lab.resolv_conf("r", "nameserver 127.0.0.1\noptions timeout:1 attempts:2\n");
    lab.start_daemon();
    let mud = lab.dir.join("pump.json");
    fs::write(&mud, MUD).expect("MUD file");
    let mud = mud.to_string_lossy().to_string();

    // Shown in operator terms; nothing changes.
    let before = fs::read_to_string(&lab.policy_file).expect("policy");
    let shown =
        ok(&lab.vlanguard(&["mud", "show", &mud, "--abstraction", "my-controller=controllers"]));
    assert!(shown.contains("open TCP port 8443 to updates.lab.test"), "{shown}");
    assert!(shown.contains("accept TCP port 8080 from controllers"), "{shown}");

    // Signed by the maker's CA: checked before anything else. A tampered
    // file, or one signed under another CA, imports nothing.
    let pki = Pki::new(&lab.dir);
    let signature = pki.sign(&mud, "maker");
    let tampered = lab.dir.join("tampered.json");
    fs::write(&tampered, MUD.replace("8443", "8444")).expect("tampered file");
    let foreign = pki.sign(&mud, "stranger");
    for (file, sig) in
        [(tampered.to_string_lossy().to_string(), &signature), (mud.clone(), &foreign)]
    {
        let out = lab.vlanguard(&[
            "mud",
            "import",
            &file,
            "--profile",
            "pump-mud",
            "--abstraction",
            "my-controller=controllers",
            "--signature",
            sig,
            "--trust-anchor",
            &pki.anchor,
        ]);
        let text = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(text.contains("does not verify") && text.contains("nothing imported"), "{text}");
    }
    assert_eq!(fs::read_to_string(&lab.policy_file).expect("policy"), before);

    // An abstraction nobody mapped is an error, not an open door.
    let refused = lab.vlanguard(&["mud", "import", &mud, "--profile", "pump-mud"]);
    assert_eq!(refused.status.code(), Some(1));
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(text.contains("my-controller") && text.contains("not mapped"), "{text}");
    assert_eq!(fs::read_to_string(&lab.policy_file).expect("policy"), before);

    let imported = ok(&lab.vlanguard(&[
        "mud",
        "import",
        &mud,
        "--profile",
        "pump-mud",
        "--abstraction",
        "my-controller=controllers",
    ]));
    assert!(imported.contains("applied as revision"), "{imported}");
    let file = fs::read_to_string(&lab.policy_file).expect("policy");
    assert!(file.contains("# imported from MUD file https://pumps.lab.test/p7"), "{file}");
    let status = status_shows(&lab, &format!("{UPDATES} -> {CORE}"));
    assert!(status.contains(&format!("{UPDATES} -> {CORE}")), "{status}");
    assert!(dns.queries.lock().expect("queries").iter().any(|q| q == UPDATES));
    let audit = fs::read_to_string(&lab.audit_log).expect("audit log");
    assert!(audit.contains("mud-import"), "{audit}");

    // By name: the pump opens TCP 8443 to the update server, and only that.
    let _s = tcp_echo(&lab, "core", socket_addr(CORE, 8443));
    assert!(tcp_works(&lab, "pump", socket_addr(CORE, 8443)), "pump -> updates:8443");
    let _s = tcp_echo(&lab, "core", socket_addr(CORE, 8444));
    assert!(
        !tcp_works(&lab, "pump", socket_addr(CORE, 8444)),
        "pump -> updates:8444 is not declared"
    );
    // direction-initiated from-device: the server may not open to the pump.
    let _s = tcp_echo(&lab, "pump", socket_addr(PUMP, 8443));
    assert!(!tcp_works(&lab, "core", socket_addr(PUMP, 8443)), "server -> pump");

    // By address: NTP to the declared server and port only.
    assert_eq!(lab.udp("pump", "core", CORE2, 123), 20, "NTP request");
    assert_eq!(lab.udp("pump", "core", CORE2, 124), 0, "another port");

    // The controller abstraction behaves as the nurse stations: they may
    // open TCP 8080 to the pump; the pump may not open to them.
    let _s = tcp_echo(&lab, "pump", socket_addr(PUMP, 8080));
    assert!(tcp_works(&lab, "nurse", socket_addr(PUMP, 8080)), "controller -> pump:8080");
    let _s = tcp_echo(&lab, "nurse", socket_addr(NURSE, 8080));
    assert!(!tcp_works(&lab, "pump", socket_addr(NURSE, 8080)), "pump -> controller");

    // Entries vlanguard would enforce more strictly than the file (here TCP
    // without direction-initiated, which only one side may then open) need
    // the operator's explicit consent.
    let stricter = lab.dir.join("stricter.json");
    let text = MUD.replacen(
        r#"{"destination-port": {"operator": "eq", "port": 8080},
                 "ietf-mud:direction-initiated": "to-device"}"#,
        r#"{"destination-port": {"operator": "eq", "port": 8080}}"#,
        1,
    );
    assert_ne!(text, MUD);
    fs::write(&stricter, text).expect("file");
    let stricter = stricter.to_string_lossy().to_string();
    let args = [
        "mud",
        "import",
        &stricter,
        "--profile",
        "spare",
        "--abstraction",
        "my-controller=controllers",
    ];
    let out = lab.vlanguard(&args);
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("ACE controller") && text.contains("--accept-stricter"), "{text}");
    ok(&lab.vlanguard(&[&args[..], &["--accept-stricter"]].concat()));
    assert!(fs::read_to_string(&lab.policy_file).expect("policy").contains("name = \"spare\""));

    // The name moves: the next refresh applies the new address and drops
    // the old one.
    dns.set(UPDATES, CORE2);
    let status = status_shows(&lab, &format!("{UPDATES} -> {CORE2}"));
    assert!(status.contains(&format!("{UPDATES} -> {CORE2}")), "{status}");
    let _s = tcp_echo(&lab, "core", socket_addr(CORE2, 8443));
    assert!(tcp_works(&lab, "pump", socket_addr(CORE2, 8443)), "pump -> new address");
    let _s = tcp_echo(&lab, "core", socket_addr(CORE, 8443));
    assert!(!tcp_works(&lab, "pump", socket_addr(CORE, 8443)), "pump -> old address");
}
