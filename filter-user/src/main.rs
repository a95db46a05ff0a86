//! `vlanguard`: the daemon and the operator's command.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use filter_user::{
    Filter, PROGRAM_OBJECT,
    attach::AttachMode,
    compile,
    control::{self, ClientError, DEFAULT_SOCKET, Failure, Request},
    daemon::{self, Daemon},
    edit::{Direction, NewDevice, RuleSpec, Target},
    offload::VlanOffload,
    pins::{DEFAULT_PIN_DIR, PinDir},
    read_policy,
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
struct Cli {
    /// The daemon's control socket.
    #[arg(long, global = true, default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    #[command(subcommand)]
    command: Command,
}

/// Options `mud show` and `mud import` share.
#[derive(clap::Args)]
struct MudArgs {
    /// The MUD file (JSON).
    file: PathBuf,
    /// Map a MUD abstraction to a set under [peers]: `my-controller=SET`,
    /// `local-networks=SET`, `same-manufacturer=SET`,
    /// `controller:URI=SET`, `manufacturer:NAME=SET`, `model:URI=SET`.
    /// Repeat for each; an abstraction the file uses and no option maps is
    /// an error, never an open door.
    #[arg(long = "abstraction", value_name = "ABSTRACTION=SET")]
    abstractions: Vec<String>,
    /// Detached CMS signature of the file (DER or PEM); checked against
    /// --trust-anchor before anything else.
    #[arg(long, requires = "trust_anchor")]
    signature: Option<PathBuf>,
    /// Certificate(s) (PEM) the signer's certificate must chain to.
    #[arg(long, requires = "signature")]
    trust_anchor: Option<PathBuf>,
}

#[derive(Subcommand)]
enum MudCommand {
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

/// Reads, checks the signature of, and converts a MUD file.
fn read_mud(
    args: &MudArgs,
) -> anyhow::Result<(filter_user::mud::Mud, filter_user::mud::Conversion)> {
    use filter_user::mud;
    let data =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    if let (Some(sig), Some(anchor)) = (&args.signature, &args.trust_anchor) {
        let sig = std::fs::read(sig).with_context(|| format!("reading {}", sig.display()))?;
        let anchor =
            std::fs::read(anchor).with_context(|| format!("reading {}", anchor.display()))?;
        mud::verify_signature(&data, &sig, &anchor)
            .map_err(|e| anyhow::anyhow!("{}: {e}; nothing imported", args.file.display()))?;
        eprintln!("vlanguard: signature verified against the trust anchor");
    }
    let text = String::from_utf8(data).context("the MUD file is not UTF-8 text")?;
    let fail = |errors: Vec<String>| {
        anyhow::anyhow!(
            "{}: cannot be enforced as written:\n  {}",
            args.file.display(),
            errors.join("\n  ")
        )
    };
    let parsed = mud::parse(&text).map_err(fail)?;
    let mut map = std::collections::BTreeMap::new();
    for a in &args.abstractions {
        let (key, set) = a
            .rsplit_once('=')
            .with_context(|| format!("--abstraction {a:?}: want ABSTRACTION=SET"))?;
        let key: mud::Abstraction =
            key.parse().map_err(|e: String| anyhow::anyhow!("--abstraction {a:?}: {e}"))?;
        map.insert(key, set.to_string());
    }
    let conversion = mud::convert(&parsed, &map).map_err(fail)?;
    Ok((parsed, conversion))
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: enforce the policy file on the interfaces. The
    /// program, maps and links are pinned under --pin-dir, so the filter
    /// keeps enforcing when the daemon stops or crashes; a new daemon adopts
    /// them without a gap. SIGHUP reloads the file (an invalid file is
    /// reported and the running policy stays). Needs root.
    Run(RunArgs),
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
struct RunArgs {
    /// The policy file (TOML); see examples/hospital.toml.
    #[arg(long)]
    config: PathBuf,
    /// Interface to filter (repeat for several): the uplink and the trunk
    /// or access ports in front of the device VLANs.
    #[arg(long = "iface", required = true)]
    ifaces: Vec<String>,
    /// Native runs in the driver at line rate; generic works on any
    /// interface, slower.
    #[arg(long, value_enum, default_value = "native")]
    xdp_mode: AttachMode,
    /// What to do on an interface whose NIC takes 802.1Q tags out of
    /// received frames (rx VLAN offload, on by default on most NICs and on
    /// veth), where XDP would see device VLAN frames untagged: read (enforce
    /// there at TC ingress, where the tag stays with the packet), disable
    /// (turn the NIC's offload off, logged, and use XDP) or refuse (attach
    /// nothing to it and say so). See README "VLAN offload".
    #[arg(long, value_enum, default_value = "read")]
    vlan_offload: VlanOffload,
    /// Where program, maps and links are pinned (on a BPF filesystem).
    #[arg(long, default_value = DEFAULT_PIN_DIR)]
    pin_dir: PathBuf,
    /// Members of this group may use the control socket (root always may).
    #[arg(long)]
    group: Option<String>,
    /// Append-only JSON-lines record of every change made through the socket.
    #[arg(long, default_value = "/var/log/vlanguard/audit.log")]
    audit_log: PathBuf,
    /// Log drop events here, one JSON object per line ("off": do not).
    #[arg(long, default_value = "/var/log/vlanguard/events.log")]
    events_log: String,
    /// Serve Prometheus metrics at http://ADDR/metrics ("off": not at all).
    /// Loopback by default: expose it deliberately.
    #[arg(long, default_value = "127.0.0.1:9880")]
    metrics_addr: String,
    /// Print counters every this many seconds (0: only when stopping).
    #[arg(long, default_value_t = 0)]
    stats_interval: u64,
    /// Devices the per-device counters hold, up to 131072 (default: as many
    /// as fit 96 MiB on this machine's possible CPUs: 131072 up to 4, 16384
    /// at 32). The counters and rule hits are kept per CPU and preallocated,
    /// 192 bytes per device and CPU. Fixed when the filter is first loaded and kept across
    /// restarts and upgrades; to change it, `vlanguard detach` and start
    /// again. A policy with more devices is refused.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=131072))]
    device_capacity: Option<u32>,
}

#[derive(Subcommand)]
enum PolicyCommand {
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
enum DeviceCommand {
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
struct RuleArgs {
    /// The device (or, with --profile, the profile) to change.
    name: String,
    /// NAME is a profile: every device using it is affected.
    #[arg(long)]
    profile: bool,
    /// `in`: traffic to the device from PEER; `out`: from the device to PEER.
    #[arg(value_enum)]
    direction: Direction,
    /// `any`, an address, a CIDR or a [peers] set.
    peer: String,
    /// any, a protocol name (tcp, udp, icmp, icmpv6, igmp, gre, esp, ah,
    /// ospf, pim, vrrp, sctp, ...) or an IP protocol number.
    #[arg(long)]
    proto: Option<String>,
    /// Port or range (the device's for `in`, the peer's for `out`).
    #[arg(long)]
    port: Option<String>,
    /// ICMP or ICMPv6 message type.
    #[arg(long)]
    icmp_type: Option<u8>,
    /// Source port or range (TCP, UDP): the packet must come from it.
    #[arg(long)]
    sport: Option<String>,
    /// Only the peer's addresses inside this network: 0.0.0.0/0 or ::/0
    /// for one address family, or a network a name or set must lie in.
    #[arg(long)]
    within: Option<String>,
}

impl RuleArgs {
    fn split(self) -> (Target, Direction, RuleSpec) {
        let target =
            if self.profile { Target::Profile(self.name) } else { Target::Device(self.name) };
        let rule = RuleSpec {
            peer: self.peer,
            proto: self.proto,
            port: self.port,
            icmp_type: self.icmp_type,
            sport: self.sport,
            within: self.within,
        };
        (target, self.direction, rule)
    }
}

/// Exit codes scripts can rely on.
const EXIT_REFUSED: u8 = 1;
const EXIT_UNREACHABLE: u8 = 3;
const EXIT_DENIED: u8 = 4;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vlanguard: {e:#}");
            match e.downcast_ref::<ClientError>() {
                Some(ClientError::Unreachable { .. }) => ExitCode::from(EXIT_UNREACHABLE),
                Some(ClientError::Denied { .. }) => ExitCode::from(EXIT_DENIED),
                _ => ExitCode::from(EXIT_REFUSED),
            }
        }
    }
}

/// Sends `request` to the daemon and prints the answer.
fn ask(socket: &Path, request: &Request, json: bool) -> anyhow::Result<ExitCode> {
    let reply = control::call(socket, request)?;
    if reply.ok {
        if json {
            println!("{}", serde_json::to_string_pretty(&reply.data)?);
        } else {
            println!("{}", reply.message.trim_end());
        }
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("vlanguard: {}", reply.message);
    Ok(ExitCode::from(match reply.failure {
        Some(Failure::Denied) => EXIT_DENIED,
        _ => EXIT_REFUSED,
    }))
}

/// `vlanguard events`: the recent ones, then (with --follow) new ones.
fn events(
    socket: &Path,
    device: Option<String>,
    follow: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use filter_user::events::Event;
    let mut code = ExitCode::SUCCESS;
    let mut first = true;
    control::stream(socket, &Request::Events { device, follow }, |line| {
        if first {
            first = false;
            let Ok(reply) = serde_json::from_str::<control::Reply>(line) else { return false };
            if !reply.ok {
                eprintln!("vlanguard: {}", reply.message);
                code = ExitCode::from(if reply.failure == Some(Failure::Denied) {
                    EXIT_DENIED
                } else {
                    EXIT_REFUSED
                });
                return false;
            }
            let list: control::replies::Events =
                serde_json::from_value(reply.data).unwrap_or_default();
            for e in list.events {
                println!(
                    "{}",
                    if json { serde_json::to_string(&e).unwrap_or_default() } else { e.line() }
                );
            }
            return follow;
        }
        if let Ok(e) = serde_json::from_str::<Event>(line) {
            println!("{}", if json { line.to_string() } else { e.line() });
        }
        true
    })?;
    Ok(code)
}

fn absolute(file: Option<PathBuf>) -> Option<PathBuf> {
    file.map(|f| std::path::absolute(&f).unwrap_or(f))
}

fn read_text(file: Option<PathBuf>) -> anyhow::Result<Option<String>> {
    file.map(|f| std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display())))
        .transpose()
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let socket = cli.socket;
    match cli.command {
        Command::Run(args) => {
            let config = daemon::Config {
                policy: args.config,
                ifaces: args.ifaces,
                mode: args.xdp_mode,
                vlan_offload: args.vlan_offload,
                pin_dir: args.pin_dir,
                socket,
                group: args.group,
                audit_log: args.audit_log,
                events_log: (args.events_log != "off").then(|| PathBuf::from(&args.events_log)),
                metrics_addr: match args.metrics_addr.as_str() {
                    "off" => None,
                    addr => Some(addr.parse().with_context(|| {
                        format!("--metrics-addr {addr:?}: want ADDRESS:PORT or off")
                    })?),
                },
                stats_interval: args.stats_interval,
                device_capacity: args.device_capacity,
            };
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async { Daemon::start(config)?.serve().await })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { json } => ask(&socket, &Request::Status, json),
        Command::Top => {
            filter_user::top::run(&socket)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Events { device, follow, json } => events(&socket, device, follow, json),
        Command::Stats { device, all, json } => ask(&socket, &Request::Stats { device, all }, json),
        Command::Generate { man, completions } => {
            use clap::CommandFactory as _;
            if let Some(dir) = man {
                std::fs::create_dir_all(&dir)?;
                clap_mangen::generate_to(Cli::command(), &dir)
                    .with_context(|| format!("writing man pages to {}", dir.display()))?;
            }
            if let Some(dir) = completions {
                std::fs::create_dir_all(&dir)?;
                for shell in [
                    clap_complete::Shell::Bash,
                    clap_complete::Shell::Zsh,
                    clap_complete::Shell::Fish,
                ] {
                    clap_complete::generate_to(shell, &mut Cli::command(), "vlanguard", &dir)
                        .with_context(|| format!("writing completions to {}", dir.display()))?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Mud { command } => match command {
            MudCommand::Show { args } => {
                let (parsed, conversion) = read_mud(&args)?;
                print!("{}", filter_user::mud::describe(&parsed, &conversion));
                Ok(ExitCode::SUCCESS)
            }
            MudCommand::Import { args, profile, accept_stricter, json } => {
                let (parsed, conversion) = read_mud(&args)?;
                if !conversion.stricter.is_empty() && !accept_stricter {
                    let list: Vec<String> = conversion
                        .stricter
                        .iter()
                        .map(|(ace, why)| format!("ACE {ace}: {why}"))
                        .collect();
                    anyhow::bail!(
                        "{}: not imported: vlanguard would enforce some entries more strictly than the file says:\n  {}\n\
                         review them (`vlanguard mud show`) and pass --accept-stricter to import anyway",
                        args.file.display(),
                        list.join("\n  ")
                    );
                }
                if conversion.rules.is_empty() {
                    anyhow::bail!("{}: allows nothing; no profile imported", args.file.display());
                }
                let rules = conversion.rules.into_iter().map(|(d, r, _)| (d, r)).collect();
                ask(&socket, &Request::MudImport { profile, url: parsed.url, rules }, json)
            }
        },
        Command::Policy { command } => match command {
            PolicyCommand::Validate { file } => {
                let resolved = read_policy(&file)?;
                let c = compile(&resolved);
                println!(
                    "{}: valid: {} vlans, {} devices, {} device addresses, {} rule sets \
                     ({} rule entries, {} peer-set networks)",
                    file.display(),
                    c.vlans.len(),
                    c.devices.len(),
                    c.devices.iter().map(|d| d.addrs.len()).sum::<usize>(),
                    c.rule_sets.len(),
                    c.rule_entries(),
                    c.peer_nets(),
                );
                Ok(ExitCode::SUCCESS)
            }
            PolicyCommand::Diff { file, json } => {
                let text = read_text(file.clone())?;
                ask(&socket, &Request::PolicyDiff { text, file: absolute(file) }, json)
            }
            PolicyCommand::Apply { file, json } => {
                let text = read_text(file.clone())?;
                ask(&socket, &Request::PolicyApply { text, file: absolute(file) }, json)
            }
            PolicyCommand::Show => ask(&socket, &Request::PolicyShow, false),
            PolicyCommand::Suggest { device, since, json } => ask(
                &socket,
                &Request::PolicySuggest { device, since_secs: since.map(|d| d.as_secs()) },
                json,
            ),
            PolicyCommand::Merge { file, json } => {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?;
                ask(&socket, &Request::PolicyMerge { text, file: absolute(Some(file)) }, json)
            }
        },
        Command::Device { command } => match command {
            DeviceCommand::List { json } => ask(&socket, &Request::DeviceList, json),
            DeviceCommand::Add { name, vlan, ips, mac, profile } => {
                let device = NewDevice { name, vlan, ip: ips, mac, profile };
                ask(&socket, &Request::DeviceAdd { device }, false)
            }
            DeviceCommand::Remove { name } => ask(&socket, &Request::DeviceRemove { name }, false),
        },
        Command::Allow(rule) => {
            let (target, direction, rule) = rule.split();
            ask(&socket, &Request::Allow { target, direction, rule }, false)
        }
        Command::Revoke(rule) => {
            let (target, direction, rule) = rule.split();
            ask(&socket, &Request::Revoke { target, direction, rule }, false)
        }
        Command::Block { net, duration, reason, json } => ask(
            &socket,
            &Request::Block { net, for_secs: duration.map(|d| d.as_secs().max(1)), reason },
            json,
        ),
        Command::Unblock { net, json } => ask(&socket, &Request::Unblock { net }, json),
        Command::Blocks { json } => ask(&socket, &Request::Blocks, json),
        Command::Quarantine { device, duration, reason, json } => ask(
            &socket,
            &Request::Quarantine { device, for_secs: duration.map(|d| d.as_secs().max(1)), reason },
            json,
        ),
        Command::Release { device, json } => ask(&socket, &Request::Release { device }, json),
        Command::Detach { pin_dir } => {
            // A running daemon detaches and stops; otherwise do it here.
            match control::call(&socket, &Request::Detach) {
                Ok(reply) if reply.ok => {
                    println!("{}", reply.message);
                    return Ok(ExitCode::SUCCESS);
                }
                Ok(reply) => {
                    eprintln!("vlanguard: {}", reply.message);
                    return Ok(ExitCode::from(if reply.failure == Some(Failure::Denied) {
                        EXIT_DENIED
                    } else {
                        EXIT_REFUSED
                    }));
                }
                Err(ClientError::Unreachable { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            let pins = PinDir::new(&pin_dir);
            if !pins.root().exists() {
                anyhow::bail!("nothing to detach: {} does not exist", pin_dir.display());
            }
            let lock = pins.lock()?;
            let ifaces = pins.detach_all(&lock)?;
            println!(
                "detached from {}; removed {}",
                if ifaces.is_empty() { "no interface".to_string() } else { ifaces.join(", ") },
                pin_dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { object } => {
            let bytes = match &object {
                Some(path) => {
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
                }
                None => PROGRAM_OBJECT.to_vec(),
            };
            let mut filter = Filter::load(&bytes)?;
            let info = filter.program().info()?;
            println!(
                "program loaded: {} instructions verified, {} bytes translated",
                info.verified_instruction_count().unwrap_or_default(),
                info.size_translated().unwrap_or_default(),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
