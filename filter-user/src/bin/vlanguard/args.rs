//! The command line: every clap type of `vlanguard`, in one file, so the
//! command set (and the man pages and completions generated from it) reads
//! in one place. What each command does is in `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use filter_user::{
    control::DEFAULT_SOCKET,
    datapath::{attach::AttachMode, offload::VlanOffload, pins::DEFAULT_PIN_DIR},
    edit::Direction,
};

/// vlanguard: an XDP firewall for the VLANs that hold medical and IoT
/// devices. Traffic to and from a protected VLAN is dropped unless the
/// policy file allows it, per device.
///
/// Exit codes: 0 done; 1 refused (invalid policy or input, unknown device);
/// 2 bad command line; 3 the daemon is not reachable; 4 not authorised.
#[derive(Parser)]
#[command(
    name = "vlanguard",
    version,
    about = "XDP firewall for the VLANs of medical and IoT devices",
    long_about
)]
pub struct Cli {
    /// The daemon's control socket.
    #[arg(long, global = true, default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the daemon: enforce the policy file on the interfaces. The
    /// program, maps and links are pinned under --pin-dir, so the filter
    /// keeps enforcing when the daemon stops or crashes; a new daemon adopts
    /// them without a gap. SIGHUP reloads the file (an invalid file is
    /// reported and the running policy stays). Needs root.
    Run(Box<RunArgs>),
    /// Show interfaces, attach mode, policy revision and map fill.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Packets and bytes per device, direction and verdict, and of every
    /// frame by verdict and reason: the rows that counted something
    /// (--all: every row, zeros included). With --device, also the
    /// device's recent drop events by reason (why its frames were dropped;
    /// a sample, as events are rate-limited).
    Stats {
        /// Only this device.
        #[arg(long)]
        device: Option<String>,
        /// Every row, also those still at zero.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Recent drop events (time, interface, VLAN, device, direction,
    /// addresses, ports, reason); --follow keeps printing new ones.
    Events {
        #[arg(long)]
        device: Option<String>,
        #[arg(long)]
        follow: bool,
        #[arg(long)]
        json: bool,
    },
    /// A live view of per-device pass and drop rates and the top drop
    /// reasons, refreshed every second; `q` quits.
    Top,
    /// Hosts seen on the protected VLANs: MAC, vendor (from the MAC's
    /// IEEE assignment), VLAN, addresses, the declared device each is (or
    /// "(unknown)"), what its DHCP client said, first and last seen. Hosts
    /// are seen by their frames the filter drops as unknown-device.
    Inventory {
        #[command(subcommand)]
        command: Option<InventoryCommand>,
        /// Only hosts that are no declared device.
        #[arg(long)]
        unknown: bool,
        /// Only this VLAN's hosts.
        #[arg(long)]
        vlan: Option<u16>,
        #[arg(long)]
        json: bool,
    },
    /// Write the man pages (`--man DIR`: vlanguard.1 and one page per
    /// subcommand) and shell completions (`--completions DIR`: bash, zsh,
    /// fish), generated from these definitions so they never drift from
    /// --help. For packaging.
    #[command(hide = true)]
    Generate {
        #[arg(long)]
        man: Option<PathBuf>,
        #[arg(long)]
        completions: Option<PathBuf>,
    },
    /// Many routers, one policy: propose, approve (two people by default)
    /// and follow the site's policy in etcd. Each approver signs with a key
    /// of their own; routers (`run --fleet-endpoints`) apply a version only
    /// when enough approver signatures verify, never an older one, and keep
    /// the last good version when etcd is away. README "Many routers".
    Fleet {
        #[command(subcommand)]
        command: FleetCommand,
    },
    /// Work with policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Manufacturer Usage Descriptions (RFC 8520): what a device's maker
    /// says it needs, turned into a profile. Workflow: `mud show` the file,
    /// `mud import` it as a profile, give devices `profile = NAME` with
    /// `mode = "monitor"` first, then enforce.
    Mud {
        #[command(subcommand)]
        command: MudCommand,
    },
    /// Drop every frame from or to an address or network, device or not,
    /// now, whatever the policy says (monitor mode included). The program
    /// lifts it when --for runs out, daemon or not; it survives daemon
    /// restarts. Audit-logged.
    Block {
        /// An address or CIDR, IPv4 or IPv6.
        net: String,
        /// How long, e.g. "15m", "2h"; without it, until `unblock`.
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        duration: Option<std::time::Duration>,
        /// Why (kept with the entry, at most 48 bytes).
        #[arg(long)]
        reason: String,
        #[arg(long)]
        json: bool,
    },
    /// Lift a block: the exact address or network that was blocked.
    Unblock {
        net: String,
        #[arg(long)]
        json: bool,
    },
    /// Blocked addresses and quarantined devices in force, with time left.
    Blocks {
        #[arg(long)]
        json: bool,
    },
    /// Cut a device off from everything but the `[settings] management`
    /// networks (existing flows included), e.g. while it is examined.
    /// Expires like `block`; survives daemon restarts. Audit-logged.
    Quarantine {
        device: String,
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        duration: Option<std::time::Duration>,
        #[arg(long, default_value = "")]
        reason: String,
        #[arg(long)]
        json: bool,
    },
    /// Lift a device's quarantine.
    Release {
        device: String,
        #[arg(long)]
        json: bool,
    },
    /// List, add or remove devices (changes are written to the policy file).
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// Add a rule to a device or profile (written to the policy file).
    Allow(RuleArgs),
    /// Remove a rule from a device or profile (written to the policy file).
    Revoke(RuleArgs),
    /// Remove the filter completely: detach from every interface, delete the
    /// pinned program and maps. A running daemon does it and stops.
    Detach {
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
    /// Load the XDP program into the kernel (verifier included) without
    /// attaching it, and report its size. Needs root.
    Check {
        /// Load this object file instead of the embedded program (for
        /// checking other builds of it).
        #[arg(long, hide = true)]
        object: Option<PathBuf>,
    },
}

#[derive(Args)]
pub struct RunArgs {
    /// The policy file (TOML); see examples/hospital.toml.
    #[arg(long)]
    pub config: PathBuf,
    /// Interface to filter (repeat for several): the uplink and the trunk
    /// or access ports in front of the device VLANs.
    #[arg(long = "iface", required = true)]
    pub ifaces: Vec<String>,
    /// Native runs in the driver at line rate; generic works on any
    /// interface, slower.
    #[arg(long, value_enum, default_value = "native")]
    pub xdp_mode: AttachMode,
    /// What to do on an interface whose NIC takes 802.1Q tags out of
    /// received frames (rx VLAN offload, on by default on most NICs and on
    /// veth), where XDP would see device VLAN frames untagged: read (enforce
    /// there at TC ingress, where the tag stays with the packet), disable
    /// (turn the NIC's offload off, logged, and use XDP) or refuse (attach
    /// nothing to it and say so). See README "VLAN offload".
    #[arg(long, value_enum, default_value = "read")]
    pub vlan_offload: VlanOffload,
    /// Where program, maps and links are pinned (on a BPF filesystem).
    #[arg(long, default_value = DEFAULT_PIN_DIR)]
    pub pin_dir: PathBuf,
    /// Members of this group may use the control socket (root always may).
    #[arg(long)]
    pub group: Option<String>,
    /// Append-only JSON-lines record of every change made through the socket.
    #[arg(long, default_value = "/var/log/vlanguard/audit.log")]
    pub audit_log: PathBuf,
    /// Log drop events here, one JSON object per line ("off": do not).
    #[arg(long, default_value = "/var/log/vlanguard/events.log")]
    pub events_log: String,
    /// The inventory of hosts seen on protected VLANs, an SQLite database
    /// kept across restarts ("off": in memory only).
    #[arg(long, default_value = filter_user::inventory::DEFAULT_DB)]
    pub inventory_db: String,
    /// Hosts the inventory keeps at most; beyond, the unknown hosts seen
    /// longest ago are evicted (counted in
    /// vlanguard_inventory_evictions_total). Declared devices are kept.
    #[arg(long, default_value_t = filter_user::inventory::DEFAULT_CAPACITY,
          value_parser = clap::value_parser!(u32).range(100..=10_000_000))]
    pub inventory_capacity: u32,
    /// MUD files (RFC 8520) of the devices' makers, found by the mud-url
    /// each holds: `inventory` names the file for the MUD URL a host
    /// announced, `inventory adopt --mud` imports it.
    #[arg(long, default_value = filter_user::inventory::view::MUD_DIR)]
    pub mud_dir: PathBuf,
    /// Serve Prometheus metrics at http://ADDR/metrics ("off": not at all).
    /// Loopback by default: expose it deliberately.
    #[arg(long, default_value = "127.0.0.1:9880")]
    pub metrics_addr: String,
    /// Print counters every this many seconds (0: only when stopping).
    #[arg(long, default_value_t = 0)]
    pub stats_interval: u64,
    /// Devices the per-device counters hold, up to 131072 (default: as many
    /// as fit 96 MiB on this machine's possible CPUs: 131072 up to 4, 16384
    /// at 32). The counters and rule hits are kept per CPU and preallocated,
    /// 192 bytes per device and CPU. Fixed when the filter is first loaded and kept across
    /// restarts and upgrades; to change it, `vlanguard detach` and start
    /// again. A policy with more devices is refused.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=131072))]
    pub device_capacity: Option<u32>,
    /// Follow a fleet site's policy in etcd (README "Many routers"); needs
    /// --site and --fleet-root. The daemon starts from its last good
    /// version (or --config before the first) and never waits for etcd;
    /// local policy edits are refused.
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// The fleet site this router follows.
    #[arg(long, requires = "fleet_endpoints")]
    pub site: Option<String>,
    /// The site's first root (`fleet init --root-out`): the approver keys
    /// this router trusts to begin with, handed over out of band.
    #[arg(long, requires = "fleet_endpoints")]
    pub fleet_root: Option<PathBuf>,
    /// Where the last good fleet version and the verified metadata are kept.
    #[arg(long, default_value = "/var/lib/vlanguard/fleet")]
    pub fleet_state: PathBuf,
    /// This router's name in `fleet status` (default: the host name).
    #[arg(long)]
    pub router_name: Option<String>,
}

/// Where the site's etcd cluster is, and the client TLS to reach it.
#[derive(Args, Clone)]
pub struct EtcdArgs {
    /// etcd members, comma-separated: http://HOST:2379 or https://HOST:2379.
    #[arg(long, value_name = "URL[,URL...]")]
    pub fleet_endpoints: Option<String>,
    /// CA certificate (PEM) of the members' TLS certificates.
    #[arg(long, requires = "fleet_endpoints")]
    pub fleet_ca: Option<PathBuf>,
    /// Client certificate (PEM), when etcd asks for one.
    #[arg(long, requires_all = ["fleet_endpoints", "fleet_key"])]
    pub fleet_cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long, requires_all = ["fleet_endpoints", "fleet_cert"])]
    pub fleet_key: Option<PathBuf>,
}

/// `fleet` commands' common options.
#[derive(Args, Clone)]
pub struct SiteArgs {
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// The fleet site.
    #[arg(long)]
    pub site: String,
}

/// What a site's root lists (`fleet init`, `fleet rotate`).
#[derive(Args, Clone)]
pub struct RootKeysArgs {
    /// Every approver's public key (repeat).
    #[arg(long = "approver", required = true)]
    pub approvers: Vec<PathBuf>,
    /// Signatures a version (and a key rotation) needs.
    #[arg(long, default_value_t = 2)]
    pub threshold: u64,
    /// A key that may only publish and refresh (`fleet refresh` from a
    /// timer), never approve (repeat).
    #[arg(long = "publisher")]
    pub publishers: Vec<PathBuf>,
}

#[derive(Subcommand)]
pub enum FleetCommand {
    /// Make an approver key pair: NAME.pem (private: keep it offline, see
    /// README) and NAME.pub.json (public: goes into the site's root).
    Keygen {
        /// Path and name, without extension.
        name: PathBuf,
    },
    /// Create a site: its first root lists the approver keys and the
    /// threshold; signed by at least that many of them. Writes the root
    /// for the routers' --fleet-root.
    Init {
        #[command(flatten)]
        site: SiteArgs,
        #[command(flatten)]
        root: RootKeysArgs,
        /// Private keys that sign the root now (at least --threshold).
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        /// Where to write the root for the routers.
        #[arg(long)]
        root_out: PathBuf,
    },
    /// Propose a policy file as the site's next version; validated here
    /// first. Nothing changes on any router until it is approved.
    Propose {
        file: PathBuf,
        #[command(flatten)]
        site: SiteArgs,
        /// Your name in `fleet log` (default: the login name).
        #[arg(long = "as")]
        name: Option<String>,
        /// How long the approved version stays valid.
        #[arg(long, default_value = "365d", value_parser = humantime::parse_duration)]
        expires: std::time::Duration,
    },
    /// Sign a proposed version (or `root-N`, a key rotation) after
    /// showing what it changes against the approved version. The
    /// signature that reaches the threshold publishes it.
    Approve {
        /// A version number, or root-N.
        version: String,
        #[command(flatten)]
        site: SiteArgs,
        /// Your private key.
        #[arg(long)]
        key: PathBuf,
        /// Your name in `fleet log` (default: the key file's name).
        #[arg(long = "as")]
        name: Option<String>,
        /// Sign without asking.
        #[arg(long)]
        yes: bool,
        /// How long routers accept the published metadata before it must
        /// be refreshed (`fleet refresh`): freeze protection.
        #[arg(long, default_value = "1d", value_parser = humantime::parse_duration)]
        fresh_for: std::time::Duration,
    },
    /// Re-sign the site's timestamp so routers keep accepting the approved
    /// version (run it regularly, e.g. hourly, well within --fresh-for).
    Refresh {
        #[command(flatten)]
        site: SiteArgs,
        #[arg(long)]
        key: PathBuf,
        #[arg(long, default_value = "1d", value_parser = humantime::parse_duration)]
        fresh_for: std::time::Duration,
    },
    /// Propose new approver keys or threshold (a root rotation); approve it
    /// with `fleet approve root-N`: it needs the threshold of the current
    /// keys and of the new ones.
    Rotate {
        #[command(flatten)]
        site: SiteArgs,
        /// The new root's keys and threshold.
        #[command(flatten)]
        root: RootKeysArgs,
        #[arg(long = "as")]
        name: Option<String>,
    },
    /// Every router of the site: the version in force, since when, how far
    /// behind the newest approved one, its last error, when it last wrote.
    Status {
        #[command(flatten)]
        site: SiteArgs,
        #[arg(long)]
        json: bool,
    },
    /// Who proposed and who approved each version.
    Log {
        #[command(flatten)]
        site: SiteArgs,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Check a policy file and report what it compiles to. Changes nothing;
    /// needs no daemon.
    Validate {
        /// The policy file (TOML).
        file: PathBuf,
    },
    /// What applying FILE (default: the daemon's policy file as it is now
    /// on disk) would change, in devices and rules.
    Diff {
        file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Apply FILE (it replaces the daemon's policy file), or re-read the
    /// daemon's policy file. Atomic: the new generation replaces the old
    /// with one map write. Prints the revision installed (it counts applies and never goes back).
    Apply {
        file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Print the policy file the daemon runs.
    Show,
    /// Propose allow rules for what monitor mode would have dropped
    /// (`not-allowed` would-drops among the drop events the daemon keeps),
    /// grouped by device, peers named by their `[peers]` set. Prints a
    /// policy fragment to review and pass to `policy merge`.
    Suggest {
        /// Only this device's rules.
        #[arg(long)]
        device: Option<String>,
        /// Only events of this recent window, e.g. "1h", "30m".
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<std::time::Duration>,
        #[arg(long)]
        json: bool,
    },
    /// Add the rules of FILE (a fragment as `policy suggest` prints it:
    /// `[[device]]` tables with `name` and `allow_in` / `allow_out`) to the
    /// daemon's policy file, validate and apply it. Rules already there are
    /// skipped; anything invalid changes nothing.
    Merge {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum MudCommand {
    /// Print what the MUD file allows, in operator terms: the rules it
    /// becomes, what flow tracking covers, and what vlanguard would enforce
    /// more strictly than the file. Changes nothing.
    Show {
        #[command(flatten)]
        args: MudArgs,
    },
    /// Make profile NAME hold exactly the file's rules (created if new,
    /// replaced on a later import), then validate, apply and audit-log it
    /// like any policy edit. DNS names in the file are resolved when the
    /// policy is applied and again every `[settings] dns_refresh`.
    Import {
        #[command(flatten)]
        args: MudArgs,
        /// The profile's name.
        #[arg(long)]
        profile: String,
        /// Import even though some entries are enforced more strictly than
        /// the file says (`mud show` lists them): e.g. replies only, where
        /// the file would also let the peer open.
        #[arg(long)]
        accept_stricter: bool,
        #[arg(long)]
        json: bool,
    },
}

/// Options `mud show` and `mud import` share.
#[derive(Args)]
pub struct MudArgs {
    /// The MUD file (JSON).
    pub file: PathBuf,
    /// Map a MUD abstraction to a set under [peers]: `my-controller=SET`,
    /// `local-networks=SET`, `same-manufacturer=SET`,
    /// `controller:URI=SET`, `manufacturer:NAME=SET`, `model:URI=SET`.
    /// Repeat for each; an abstraction the file uses and no option maps is
    /// an error, never an open door.
    #[arg(long = "abstraction", value_name = "ABSTRACTION=SET")]
    pub abstractions: Vec<String>,
    /// Detached CMS signature of the file (DER or PEM); checked against
    /// --trust-anchor before anything else.
    #[arg(long, requires = "trust_anchor")]
    pub signature: Option<PathBuf>,
    /// Certificate(s) (PEM) the signer's certificate must chain to.
    #[arg(long, requires = "signature")]
    pub trust_anchor: Option<PathBuf>,
}

/// `vlanguard inventory ...`
#[derive(Subcommand)]
pub enum InventoryCommand {
    /// Make a host of the inventory a device: a [[device]] named NAME is
    /// added to the policy file (bound to the host's MAC, with the
    /// addresses it used in its VLAN's subnets and PROFILE's rules), then
    /// validated, applied and audited like `device add`.
    Adopt {
        /// The host's MAC, as `inventory` shows it.
        mac: String,
        #[arg(long)]
        name: String,
        #[arg(long, conflicts_with = "mud")]
        profile: Option<String>,
        /// Give the device the profile of the MUD file for the MUD URL the
        /// host announced (DHCP option 161 or DHCPv6 112), from the
        /// daemon's --mud-dir: imported and checked as `mud import` does,
        /// the profile named by the URL. Refused when the host announced
        /// none or no file there holds it.
        #[arg(long)]
        mud: bool,
        /// As `mud import --abstraction`.
        #[arg(long = "abstraction", value_name = "ABSTRACTION=SET", requires = "mud")]
        abstractions: Vec<String>,
        /// As `mud import --accept-stricter`.
        #[arg(long, requires = "mud")]
        accept_stricter: bool,
    },
}

#[derive(Subcommand)]
pub enum DeviceCommand {
    /// The devices of the running policy.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Add a device to the policy file and apply it.
    Add {
        name: String,
        #[arg(long)]
        vlan: u16,
        /// Address (repeat for several, IPv4 and IPv6).
        #[arg(long = "ip", required = true)]
        ips: Vec<String>,
        /// Bind the device's addresses to this MAC.
        #[arg(long)]
        mac: Option<String>,
        #[arg(long)]
        profile: Option<String>,
    },
    /// Remove a device from the policy file and apply it.
    Remove { name: String },
}

#[derive(Args)]
pub struct RuleArgs {
    /// The device (or, with --profile, the profile) to change.
    pub name: String,
    /// NAME is a profile: every device using it is affected.
    #[arg(long)]
    pub profile: bool,
    /// `in`: traffic to the device from PEER; `out`: from the device to PEER.
    #[arg(value_enum)]
    pub direction: Direction,
    /// `any`, an address, a CIDR or a [peers] set.
    pub peer: String,
    /// any, a protocol name (tcp, udp, icmp, icmpv6, igmp, gre, esp, ah,
    /// ospf, pim, vrrp, sctp, ...) or an IP protocol number.
    #[arg(long)]
    pub proto: Option<String>,
    /// Port or range (the device's for `in`, the peer's for `out`).
    #[arg(long)]
    pub port: Option<String>,
    /// ICMP or ICMPv6 message type.
    #[arg(long)]
    pub icmp_type: Option<u8>,
    /// Source port or range (TCP, UDP): the packet must come from it.
    #[arg(long)]
    pub sport: Option<String>,
    /// Only the peer's addresses inside this network: 0.0.0.0/0 or ::/0
    /// for one address family, or a network a name or set must lie in.
    #[arg(long)]
    pub within: Option<String>,
}
