//! `vlanguard top` in a real terminal: tmux runs it against the lab's
//! daemon; the captured screen shows the device rows and the inventory's
//! unknown host; `q` quits.

use std::{
    process::{Command, Output},
    thread,
    time::{Duration, Instant},
};

use vlanguard_tests::{
    lab::{self, Lab, MONITOR, NURSE, PUMP, ROGUE},
    privileged,
};

/// The rogue's MAC, of a real IEEE assignment (Apple's 00:1B:63).
const ROGUE_MAC: &str = "00:1b:63:84:45:e6";

/// A tmux server of this test's own (never the user's), killed on drop.
struct Tmux(String);

impl Tmux {
    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.0])
            .args(args)
            .output()
            .expect("tmux (Debian package tmux)")
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

#[test]
fn top_renders_the_devices_in_a_real_terminal() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    lab.set_mac("rogue", ROGUE_MAC);
    lab.start_daemon();
    assert_eq!(lab.ping("nurse", PUMP, 2), 2);
    assert_eq!(lab.ping("nurse", MONITOR, 2), 0);
    // No device: dropped, and in the inventory as unknown.
    assert_eq!(lab.ping("rogue", NURSE, 1), 0);

    let tmux = Tmux(format!("{}-top", lab.prefix));
    let command =
        format!("{} --socket {} top", lab::vlanguard_bin().display(), lab.socket.display());
    let out = tmux.run(&["new-session", "-d", "-s", "top", "-x", "140", "-y", "40", &command]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let deadline = Instant::now() + Duration::from_secs(15);
    let screen = loop {
        let screen =
            String::from_utf8_lossy(&tmux.run(&["capture-pane", "-p", "-t", "top"]).stdout)
                .into_owned();
        let ready = screen.contains("DEVICE")
            && screen.contains("pump")
            && screen.contains("monitor")
            && screen.contains(ROGUE_MAC);
        if ready || Instant::now() > deadline {
            break screen;
        }
        thread::sleep(Duration::from_millis(200));
    };
    assert!(screen.contains("vlanguard top"), "{screen}");
    assert!(screen.contains("DROP/s") && screen.contains("top drop reasons"), "{screen}");
    let monitor = screen.lines().find(|l| l.contains("monitor")).expect("a monitor row");
    assert!(monitor.contains("120"), "the monitor's VLAN: {monitor}");
    // Columns as wide as their content: the VLAN right after the short
    // name, not pushed across a 140-column screen.
    let at = monitor.find("120").expect("VLAN");
    assert!(at < 20, "the device column stretched: {monitor:?}");
    assert!(screen.contains("not-allowed"), "{screen}");
    // The rogue is the one unknown host; known devices seen by their ARP
    // are in the inventory too.
    assert!(screen.contains("unknown hosts: 1 of "), "{screen}");
    let rogue = screen.lines().find(|l| l.contains(ROGUE_MAC)).expect("the rogue's row");
    assert!(rogue.contains(ROGUE) && rogue.contains(" 110 "), "MAC, VLAN, address: {rogue}");
    if std::path::Path::new("/usr/share/ieee-data/oui.csv").exists() {
        assert!(rogue.contains("Apple"), "the vendor: {rogue}");
    }

    tmux.run(&["send-keys", "-t", "top", "q"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while tmux.run(&["has-session", "-t", "top"]).status.success() {
        assert!(Instant::now() < deadline, "q did not quit top");
        thread::sleep(Duration::from_millis(100));
    }
}
