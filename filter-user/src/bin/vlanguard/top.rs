//! `vlanguard top`: a live terminal view of per-device pass and drop rates,
//! the top drop reasons and the inventory's unknown hosts, refreshed every
//! second from the daemon. Works over SSH (any terminal); `q` quits.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    time::{Duration, Instant},
};

use ratatui::{
    Frame,
    crossterm::event::{self, Event, KeyCode, KeyModifiers},
    layout::{Constraint, Layout},
    style::{Modifier, Style},
    text::Line,
    widgets::{Block, Borders, Paragraph, Row, Table},
};

use filter_user::control::{self, Request, replies};

/// (device, vlan) -> (passed, dropped) packets, reason -> dropped, and the
/// inventory's unknown hosts.
#[derive(Clone, Default)]
struct Sample {
    devices: BTreeMap<(String, u64), (u64, u64)>,
    reasons: HashMap<String, u64>,
    inventory: replies::InventorySummary,
    at: Option<Instant>,
}

fn fetch(socket: &Path) -> anyhow::Result<Sample> {
    let reply = control::call(socket, &Request::Stats { device: None, all: true })?;
    if !reply.ok {
        anyhow::bail!("{}", reply.message);
    }
    let stats: replies::Stats = serde_json::from_value(reply.data).unwrap_or_default();
    // The inventory as `status` counts it (no database read in the daemon);
    // a daemon without it shows none.
    let status = control::call(socket, &Request::Status)?;
    let inventory = serde_json::from_value(status.data["inventory"].clone()).unwrap_or_default();
    let mut s = Sample { at: Some(Instant::now()), inventory, ..Sample::default() };
    for r in stats.devices {
        let entry = s.devices.entry((r.device, u64::from(r.vlan))).or_default();
        if r.verdict == "drop" {
            entry.1 += r.packets;
        } else {
            entry.0 += r.packets;
        }
    }
    for r in stats.global {
        if r.verdict == "drop" {
            *s.reasons.entry(r.reason).or_default() += r.packets;
        }
    }
    Ok(s)
}

/// Per-second rates between two samples.
fn rate(now: u64, before: u64, secs: f64) -> f64 {
    now.saturating_sub(before) as f64 / secs
}

fn draw(frame: &mut Frame<'_>, socket: &Path, now: &Sample, before: &Sample, error: Option<&str>) {
    let secs = match (now.at, before.at) {
        (Some(a), Some(b)) => a.duration_since(b).as_secs_f64().max(0.001),
        _ => 1.0,
    };
    let [head, devices, reasons, unknown] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(5),
        Constraint::Length(10),
        Constraint::Length(RECENT_ROWS),
    ])
    .areas(frame.area());
    let status = error.map_or_else(
        || format!("vlanguard top — {} — q quits", socket.display()),
        |e| format!("vlanguard top — {e}"),
    );
    frame.render_widget(Paragraph::new(Line::from(status)), head);

    let mut rows: Vec<(f64, Row<'_>)> = now
        .devices
        .iter()
        .map(|((device, vlan), (pass, drop))| {
            let (bp, bd) =
                before.devices.get(&(device.clone(), *vlan)).copied().unwrap_or((*pass, *drop));
            let (pr, dr) = (rate(*pass, bp, secs), rate(*drop, bd, secs));
            let row = Row::new(vec![
                device.clone(),
                vlan.to_string(),
                format!("{pr:.1}"),
                format!("{dr:.1}"),
                pass.to_string(),
                drop.to_string(),
            ]);
            (dr, row)
        })
        .collect();
    // Busiest droppers first.
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    let header = Row::new(["DEVICE", "VLAN", "PASS/s", "DROP/s", "PASSED", "DROPPED"])
        .style(Style::default().add_modifier(Modifier::BOLD));
    // Each column as wide as its content, the rest of the line left empty
    // (a stretched device column pushed the numbers off to the right).
    let name = now.devices.keys().map(|(d, _)| d.chars().count()).max().unwrap_or(0).max(6);
    let widths = [
        Constraint::Length(name as u16),
        Constraint::Length(6),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(12),
        Constraint::Length(12),
    ];
    frame.render_widget(
        Table::new(rows.into_iter().map(|(_, r)| r), widths)
            .flex(ratatui::layout::Flex::Start)
            .header(header)
            .block(Block::default().borders(Borders::ALL).title("devices")),
        devices,
    );

    let mut top: Vec<(&String, f64)> = now
        .reasons
        .iter()
        .map(|(r, n)| (r, rate(*n, before.reasons.get(r).copied().unwrap_or(*n), secs)))
        .collect();
    top.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    let lines: Vec<Line<'_>> =
        top.iter().map(|(r, per_s)| Line::from(format!("{r:<16} {per_s:>10.1} drops/s"))).collect();
    frame.render_widget(
        Paragraph::new(lines)
            .block(Block::default().borders(Borders::ALL).title("top drop reasons")),
        reasons,
    );
    unknown_hosts(frame, unknown, &now.inventory);
}

/// The unknown hosts' panel: the latest few, a header and the borders.
const RECENT_ROWS: u16 = filter_user::inventory::tally::RECENT as u16 + 3;

/// How many hosts the inventory holds that are no declared device, and the
/// ones seen last.
fn unknown_hosts(
    frame: &mut Frame<'_>,
    area: ratatui::layout::Rect,
    s: &replies::InventorySummary,
) {
    let cut = |t: &str, n: usize| t.chars().take(n).collect::<String>();
    let rows = s.recent_unknown.iter().map(|h| {
        Row::new(vec![
            h.mac.clone(),
            cut(h.vendor.as_deref().unwrap_or("-"), 24),
            h.vlan.to_string(),
            h.addresses.first().map_or("-".into(), ToString::to_string),
            h.last_seen.clone(),
        ])
    });
    let header = Row::new(["MAC", "VENDOR", "VLAN", "ADDRESS", "LAST SEEN"])
        .style(Style::default().add_modifier(Modifier::BOLD));
    let widths = [
        Constraint::Length(17),
        Constraint::Length(24),
        Constraint::Length(6),
        Constraint::Length(28),
        Constraint::Length(20),
    ];
    let title = format!("unknown hosts: {} of {} in the inventory", s.unknown, s.hosts);
    frame.render_widget(
        Table::new(rows, widths)
            .flex(ratatui::layout::Flex::Start)
            .header(header)
            .block(Block::default().borders(Borders::ALL).title(title)),
        area,
    );
}

/// Runs until `q`, Esc or Ctrl-C.
pub fn run(socket: &Path) -> anyhow::Result<()> {
    // Fail before taking over the terminal if the daemon is not there.
    let mut before = fetch(socket)?;
    let mut now = before.clone();
    let mut terminal = ratatui::init();
    let result = (|| -> anyhow::Result<()> {
        let mut error: Option<String> = None;
        let mut next = Instant::now();
        loop {
            terminal.draw(|f| draw(f, socket, &now, &before, error.as_deref()))?;
            let wait = next.saturating_duration_since(Instant::now());
            if event::poll(wait)?
                && let Event::Key(key) = event::read()?
            {
                let ctrl_c =
                    key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
                if matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c {
                    return Ok(());
                }
            }
            if Instant::now() >= next {
                next = Instant::now() + Duration::from_secs(1);
                match fetch(socket) {
                    Ok(s) => {
                        before = std::mem::replace(&mut now, s);
                        error = None;
                    }
                    Err(e) => error = Some(format!("{e:#}")),
                }
            }
        }
    })();
    ratatui::restore();
    result
}
