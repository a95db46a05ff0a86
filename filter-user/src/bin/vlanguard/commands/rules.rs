//! `vlanguard allow` and `revoke`: one rule of a device or profile, edited
//! in the policy file by the daemon.

use std::{path::Path, process::ExitCode};

use filter_user::{
    control::Request,
    edit::{Direction, RuleSpec, Target},
};

use super::ask;
use crate::args::RuleArgs;

pub fn allow(socket: &Path, args: RuleArgs) -> anyhow::Result<ExitCode> {
    let (target, direction, rule) = args.split();
    ask(socket, &Request::Allow { target, direction, rule }, false)
}

pub fn revoke(socket: &Path, args: RuleArgs) -> anyhow::Result<ExitCode> {
    let (target, direction, rule) = args.split();
    ask(socket, &Request::Revoke { target, direction, rule }, false)
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
