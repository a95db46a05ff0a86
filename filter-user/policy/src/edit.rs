//! Changes made through the CLI, applied to the policy file's text with
//! `toml_edit` so comments and ordering survive, and written back
//! atomically (temporary file, fsync, rename, fsync of the directory).

use std::{
    fs::{self, File},
    io::Write as _,
    path::Path,
};

pub use filter_common::Direction;
use serde::{Deserialize, Serialize};
use toml_edit::{Array, ArrayOfTables, DocumentMut, InlineTable, Item, Table, Value};

/// A device as `device add` creates it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewDevice {
    pub name: String,
    pub vlan: u16,
    pub ip: Vec<String>,
    pub mac: Option<String>,
    pub profile: Option<String>,
}

/// Whose rules `allow` / `revoke` change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    Device(String),
    Profile(String),
}

/// One rule, as written in the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSpec {
    pub peer: String,
    pub proto: Option<String>,
    pub port: Option<String>,
    pub icmp_type: Option<u8>,
    /// Source port or range.
    pub sport: Option<String>,
    /// Only the peer's addresses inside this network (`within`).
    #[serde(default)]
    pub within: Option<String>,
}

impl Target {
    fn table_key(&self) -> (&'static str, &str) {
        match self {
            Target::Device(n) => ("device", n),
            Target::Profile(n) => ("profile", n),
        }
    }
}

pub fn parse(text: &str) -> Result<DocumentMut, String> {
    text.parse::<DocumentMut>().map_err(|e| e.to_string())
}

fn tables<'a>(doc: &'a mut DocumentMut, key: &str) -> Option<&'a mut ArrayOfTables> {
    doc.get_mut(key).and_then(Item::as_array_of_tables_mut)
}

fn find<'a>(doc: &'a mut DocumentMut, target: &Target) -> Result<&'a mut Table, String> {
    let (key, name) = target.table_key();
    tables(doc, key)
        .and_then(|t| t.iter_mut().find(|t| t.get("name").and_then(Item::as_str) == Some(name)))
        .ok_or_else(|| format!("no {key} named {name:?} in the policy ({key} list shows them)"))
}

pub fn add_device(doc: &mut DocumentMut, d: &NewDevice) -> Result<(), String> {
    if find(doc, &Target::Device(d.name.clone())).is_ok() {
        return Err(format!("device {:?} already exists", d.name));
    }
    let mut t = Table::new();
    t["name"] = toml_edit::value(d.name.as_str());
    t["vlan"] = toml_edit::value(i64::from(d.vlan));
    t["ip"] = toml_edit::value(d.ip.iter().map(String::as_str).collect::<Array>());
    if let Some(mac) = &d.mac {
        t["mac"] = toml_edit::value(mac.as_str());
    }
    if let Some(p) = &d.profile {
        t["profile"] = toml_edit::value(p.as_str());
    }
    if doc.get("device").is_none() {
        doc["device"] = Item::ArrayOfTables(ArrayOfTables::new());
    }
    tables(doc, "device")
        .ok_or("`device` in the policy is not a list of [[device]] tables")?
        .push(t);
    Ok(())
}

pub fn remove_device(doc: &mut DocumentMut, name: &str) -> Result<(), String> {
    let unknown = || crate::error::UnknownDevice(name.to_string()).to_string();
    let list = tables(doc, "device").ok_or_else(unknown)?;
    let index = list
        .iter()
        .position(|t| t.get("name").and_then(Item::as_str) == Some(name))
        .ok_or_else(unknown)?;
    list.remove(index);
    Ok(())
}

/// Makes profile `name` hold exactly `rules` (creating it if needed), with
/// `origin` as the comment above it: what `mud import` writes, so that a
/// newer MUD file replaces the rules of the older one.
pub fn set_profile_rules(
    doc: &mut DocumentMut,
    name: &str,
    origin: &str,
    rules: &[(Direction, RuleSpec)],
) -> Result<(), String> {
    if find(doc, &Target::Profile(name.into())).is_err() {
        let mut t = Table::new();
        t["name"] = toml_edit::value(name);
        if doc.get("profile").is_none() {
            doc["profile"] = Item::ArrayOfTables(ArrayOfTables::new());
        }
        tables(doc, "profile")
            .ok_or("`profile` in the policy is not a list of [[profile]] tables")?
            .push(t);
    }
    let table = find(doc, &Target::Profile(name.into()))?;
    table.decor_mut().set_prefix(format!("\n# {origin}\n"));
    for direction in [Direction::In, Direction::Out] {
        let mut array = Array::new();
        for (_, r) in rules.iter().filter(|(d, _)| *d == direction) {
            array.push(rule_table(direction, r));
        }
        for v in array.iter_mut() {
            v.decor_mut().set_prefix("\n  ");
        }
        array.set_trailing("\n");
        array.set_trailing_comma(true);
        table[direction.rules_key()] = toml_edit::value(array);
    }
    Ok(())
}

fn rule_table(direction: Direction, r: &RuleSpec) -> InlineTable {
    let mut t = InlineTable::new();
    t.insert(direction.peer_key(), r.peer.as_str().into());
    if let Some(p) = &r.proto {
        t.insert("proto", p.as_str().into());
    }
    if let Some(port) = &r.port {
        t.insert("port", port.as_str().into());
    }
    if let Some(ty) = r.icmp_type {
        t.insert("icmp_type", i64::from(ty).into());
    }
    if let Some(sport) = &r.sport {
        t.insert("sport", sport.as_str().into());
    }
    if let Some(within) = &r.within {
        t.insert("within", within.as_str().into());
    }
    t
}

/// Whether an inline table in the file is `r` (ports compared as text, so
/// `443` and `"443"` are the same rule).
fn same_rule(t: &InlineTable, direction: Direction, r: &RuleSpec) -> bool {
    let text = |k: &str| {
        t.get(k).map(|v| match v {
            Value::String(s) => s.value().clone(),
            Value::Integer(i) => i.value().to_string(),
            other => other.to_string().trim().to_string(),
        })
    };
    text(direction.peer_key()).as_deref() == Some(r.peer.as_str())
        && text("proto").filter(|p| p != "any") == r.proto.clone().filter(|p| p != "any")
        && text("port") == r.port
        && text("icmp_type") == r.icmp_type.map(|t| t.to_string())
        && text("sport") == r.sport
        && text("within") == r.within
}

/// `add_rule`'s error for a rule the list already has.
pub const ALREADY_THERE: &str = "that rule is already there";

pub fn add_rule(
    doc: &mut DocumentMut,
    target: &Target,
    direction: Direction,
    r: &RuleSpec,
) -> Result<(), String> {
    let table = find(doc, target)?;
    if table.get(direction.rules_key()).is_none() {
        table[direction.rules_key()] = toml_edit::value(Array::new());
    }
    let array = table[direction.rules_key()]
        .as_array_mut()
        .ok_or_else(|| format!("{} is not a list of rules", direction.rules_key()))?;
    if array.iter().any(|v| v.as_inline_table().is_some_and(|t| same_rule(t, direction, r))) {
        return Err(ALREADY_THERE.into());
    }
    array.push(rule_table(direction, r));
    Ok(())
}

pub fn remove_rule(
    doc: &mut DocumentMut,
    target: &Target,
    direction: Direction,
    r: &RuleSpec,
) -> Result<(), String> {
    let table = find(doc, target)?;
    let profile = table.get("profile").and_then(Item::as_str).map(str::to_string);
    let removed = match table.get_mut(direction.rules_key()).and_then(Item::as_array_mut) {
        Some(array) => {
            let before = array.len();
            array.retain(|v| !v.as_inline_table().is_some_and(|t| same_rule(t, direction, r)));
            array.len() != before
        }
        None => false,
    };
    if removed {
        return Ok(());
    }
    // A device's rule may be its profile's: say which, and how to change it.
    if let (Target::Device(device), Some(profile)) = (target, profile)
        && let Ok(p) = find(doc, &Target::Profile(profile.clone()))
        && p.get(direction.rules_key()).and_then(Item::as_array).is_some_and(|a| {
            a.iter().any(|v| v.as_inline_table().is_some_and(|t| same_rule(t, direction, r)))
        })
    {
        return Err(format!(
            "device {device:?} has that {} rule from its profile {profile:?}, not its own. \
             To take it from every device of the profile: `vlanguard revoke {profile} --profile \
             {}`; to change it for {device:?} alone, give the device its own rules instead of \
             the profile (edit the policy file)",
            direction.rules_key(),
            rule_args(direction, r)
        ));
    }
    Err(format!(
        "no such {} rule in {} {:?} — `policy show` lists the rules",
        direction.rules_key(),
        target.table_key().0,
        target.table_key().1
    ))
}

/// `r` as the rule arguments of `allow`/`revoke`.
fn rule_args(direction: Direction, r: &RuleSpec) -> String {
    let mut args = vec![direction.name().to_string(), r.peer.clone()];
    for (flag, value) in [
        ("--proto", r.proto.clone()),
        ("--port", r.port.clone()),
        ("--icmp-type", r.icmp_type.map(|t| t.to_string())),
        ("--sport", r.sport.clone()),
        ("--within", r.within.clone()),
    ] {
        if let Some(v) = value {
            args.push(format!("{flag} {v}"));
        }
    }
    args.join(" ")
}

/// Replaces `path` with `text` so that readers (and a crash) see either the
/// old or the new file, never a torn one.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let written = (|| {
        let mut f = File::create(&tmp)?;
        if let Ok(meta) = fs::metadata(path) {
            f.set_permissions(meta.permissions())?;
        }
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        // A full disk or an error midway leaves no half-written copy behind.
        let _ = fs::remove_file(&tmp);
    }
    written?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# the site policy
[[vlan]]
id = 110
name = "pumps"          # infusion pumps
subnets = ["10.110.0.0/24"]

[[device]]
name = "a"
vlan = 110
ip = ["10.110.0.1"]
allow_in = [ { from = "10.30.0.0/16", proto = "tcp", port = 443 } ]
"#;

    #[test]
    fn edits_keep_comments_and_round_trip() {
        let mut doc = parse(TEXT).expect("parses");
        let new = NewDevice {
            name: "b".into(),
            vlan: 110,
            ip: vec!["10.110.0.2".into()],
            mac: None,
            profile: None,
        };
        add_device(&mut doc, &new).expect("added");
        assert!(add_device(&mut doc, &new).expect_err("twice").contains("already exists"));
        let rule = RuleSpec {
            peer: "10.30.0.0/16".into(),
            proto: Some("tcp".into()),
            port: Some("443".into()),
            icmp_type: None,
            sport: None,
            within: None,
        };
        let target = Target::Device("b".into());
        add_rule(&mut doc, &target, Direction::In, &rule).expect("rule added");
        let text = doc.to_string();
        assert!(text.contains("# the site policy") && text.contains("# infusion pumps"), "{text}");
        let resolved = crate::Policy::from_toml(&text).expect("parses").resolve().expect("valid");
        assert_eq!(resolved.devices[1].allow_in.len(), 1);

        // `443` in the file and "443" from the CLI are the same rule.
        remove_rule(&mut doc, &Target::Device("a".into()), Direction::In, &rule).expect("revoked");
        let err = remove_rule(&mut doc, &Target::Device("a".into()), Direction::In, &rule)
            .expect_err("gone");
        assert!(err.contains("no such allow_in rule"), "{err}");
        remove_device(&mut doc, "b").expect("removed");
        assert!(remove_device(&mut doc, "b").expect_err("gone").contains("no device named \"b\""));
        assert!(find(&mut doc, &Target::Profile("p".into())).is_err());
    }

    /// Revoking a device's rule that its profile gives it names the
    /// profile and the command that would change it; nothing changes.
    #[test]
    fn a_profile_rule_is_revoked_at_the_profile() {
        let text = r#"[[profile]]
name = "pump"
allow_in = [ { from = "nurses", proto = "udp", port = "5000-5010" } ]

[[device]]
name = "pump-1"
vlan = 110
ip = ["10.110.0.7"]
profile = "pump"
"#;
        let mut doc = parse(text).expect("parses");
        let rule = RuleSpec {
            peer: "nurses".into(),
            proto: Some("udp".into()),
            port: Some("5000-5010".into()),
            icmp_type: None,
            sport: None,
            within: None,
        };
        let err = remove_rule(&mut doc, &Target::Device("pump-1".into()), Direction::In, &rule)
            .expect_err("not the device's own");
        assert!(err.contains("from its profile \"pump\""), "{err}");
        assert!(
            err.contains("vlanguard revoke pump --profile in nurses --proto udp --port 5000-5010"),
            "{err}"
        );
        assert_eq!(doc.to_string(), text, "nothing changed");
        remove_rule(&mut doc, &Target::Profile("pump".into()), Direction::In, &rule)
            .expect("revoked at the profile");
    }

    #[test]
    fn atomic_write_replaces_the_file() {
        let dir = std::env::temp_dir().join(format!("vlanguard-edit-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("policy.toml");
        fs::write(&path, "old").expect("write");
        write_atomically(&path, "new").expect("atomic write");
        assert_eq!(fs::read_to_string(&path).expect("read"), "new");
        assert_eq!(fs::read_dir(&dir).expect("dir").count(), 1, "no temporary file left");
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
