//! Which kernel a script is written for (its `--profile` header or the
//! `sysctl` tree its shell lines write), and the FreeBSD and Linux `sysctl`
//! settings the conformance scripts write, mapped onto profile fields.

use crate::engine::{Profile, Switch, WindowScale};

/// Where a script's profile came from, for the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScriptProfileSource {
    /// The script's own `--profile=NAME` header line.
    Header,
    /// The kernel whose `sysctl` tree the script's shell lines write.
    SysctlTree,
}

/// The profile a script is written for, when it says so: its
/// `--profile=NAME` header line, else the kernel whose settings its
/// backtick `sysctl` lines write (`net.inet.*` is FreeBSD's tree, `net.ipv4.*`
/// and `net.core.*` Linux's). packetdrill scripts are written against one
/// kernel and expect its choices where RFC 9293 leaves them open (the window
/// it advertises, how it forms a reset), so a script that writes FreeBSD's
/// sysctls is judged against the `freebsd` profile unless the run names one.
/// `None`: the script does not say (the caller's default applies).
pub fn script_profile(script: &super::ast::Script) -> Option<(String, ScriptProfileSource)> {
    if let Some(name) = script.option("profile") {
        return Some((name.to_string(), ScriptProfileSource::Header));
    }
    script.events.iter().find_map(|event| {
        let super::ast::EventKind::Shell(cmd) = &event.kind else { return None };
        let mut words = cmd.split_whitespace();
        if words.next() != Some("sysctl") {
            return None;
        }
        let setting = words.find(|w| !w.starts_with('-'))?;
        let kernel = if setting.starts_with("net.inet.") || setting.starts_with("kern.ipc.") {
            "freebsd"
        } else if setting.starts_with("net.ipv4.") || setting.starts_with("net.core.") {
            "linux"
        } else {
            return None;
        };
        Some((kernel.to_string(), ScriptProfileSource::SysctlTree))
    })
}

/// The shift FreeBSD offers with its default kern.ipc.maxsockbuf (2 MiB).
const FREEBSD_SHIFT: u8 = 6;

fn switch(on: bool) -> Switch {
    if on { Switch::On } else { Switch::Off }
}

/// Applies `sysctl -w name=value` to a profile; `false` when the setting is
/// not one tcplab models. Settings that only restate what tcplab does anyway
/// (the defaults the scripts reset first) are accepted as they are.
pub fn apply_sysctl(profile: &mut Profile, name: &str, value: i64) -> bool {
    let positive = |v: i64| u32::try_from(v).ok().filter(|v| *v > 0);
    match name {
        "net.inet.tcp.insecure_rst" => profile.rfc5961_rst = Some(switch(value == 0)),
        "net.inet.tcp.insecure_syn" => profile.rfc5961_syn = Some(switch(value == 0)),
        "net.inet.tcp.drop_synfin" => profile.drop_synfin = switch(value != 0),
        "net.inet.tcp.rexmit_initial" => match u64::try_from(value) {
            Ok(ms) if ms > 0 => profile.rto_initial_ms = ms,
            _ => return false,
        },
        "net.inet.tcp.rexmit_min" => match u64::try_from(value) {
            Ok(ms) if ms > 0 && ms <= profile.rto_max_ms => profile.rto_min_ms = ms,
            _ => return false,
        },
        "net.inet.tcp.keepinit" => match u64::try_from(value) {
            Ok(ms) if ms <= 864_000_000 => profile.keepinit_ms = ms,
            _ => return false,
        },
        "net.inet.tcp.rexmit_drop_options" => profile.syn_rexmit_drop_options = switch(value != 0),
        "net.inet.tcp.rexmit_slop" => match u64::try_from(value) {
            Ok(ms) if ms <= 60_000 => profile.rto_slop_ms = ms,
            _ => return false,
        },
        "net.inet.tcp.msl" => match u64::try_from(value) {
            Ok(ms) => profile.msl_ms = ms,
            _ => return false,
        },
        "net.inet.tcp.recvspace" => match positive(value) {
            Some(v) => profile.window = v,
            None => return false,
        },
        "net.inet.tcp.sendspace" => match positive(value) {
            Some(v) => profile.send_buffer = v,
            None => return false,
        },
        "net.inet.tcp.ack_war_cnt" => match u32::try_from(value) {
            Ok(v) => profile.challenge_ack_limit = v,
            Err(_) => return false,
        },
        "net.inet.tcp.sack.enable" => profile.sack = switch(value != 0),
        "net.inet.tcp.delayed_ack" => profile.delayed_ack = switch(value != 0),
        "net.inet.tcp.delacktime" => match u64::try_from(value) {
            Ok(ms) if (1..=500).contains(&ms) => profile.delayed_ack_ms = ms,
            _ => return false,
        },
        // RFC 7323: 0 neither option, 1 both, 2 window scaling only, 3
        // timestamps only (sys/netinet/tcp_subr.c, V_tcp_do_rfc1323).
        "net.inet.tcp.rfc1323" => {
            let (scale, stamps) = match value {
                0 => (false, false),
                1 => (true, true),
                2 => (true, false),
                3 => (false, true),
                _ => return false,
            };
            profile.window_scale = match (scale, profile.window_scale) {
                (false, _) => WindowScale::Off,
                (true, WindowScale::Off) => WindowScale::Shift(FREEBSD_SHIFT),
                (true, kept) => kept,
            };
            profile.timestamps = switch(stamps);
        }
        // The shift a SYN offers covers the largest socket buffer (tcp_output.c).
        "kern.ipc.maxsockbuf" => match u64::try_from(value) {
            Ok(max) if max > 0 => {
                if profile.window_scale != WindowScale::Off {
                    let mut shift = 0;
                    while shift < crate::engine::profile::MAX_WINDOW_SHIFT && (65_535u64 << shift) < max {
                        shift += 1;
                    }
                    profile.window_scale = WindowScale::Shift(shift);
                }
            }
            _ => return false,
        },
        // No-ops in a simulated world with no host cache and no ECN.
        "net.inet.tcp.ecn.enable" | "net.inet.tcp.hostcache.purgenow" => {}
        // blackhole=0 is what tcplab does (RST to closed ports); other values are not modelled.
        "net.inet.tcp.blackhole" => return value == 0,
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiles::named_profile;

    #[test]
    fn sysctls_change_single_settings() {
        let mut p = named_profile("freebsd").unwrap();
        assert!(apply_sysctl(&mut p, "net.inet.tcp.insecure_rst", 1));
        assert!(!p.rst_challenge() && p.syn_challenge());
        assert!(apply_sysctl(&mut p, "net.inet.tcp.insecure_syn", 1));
        assert!(!p.syn_challenge());
        assert!(apply_sysctl(&mut p, "net.inet.tcp.drop_synfin", 1));
        assert_eq!(p.drop_synfin, Switch::On);
        assert!(apply_sysctl(&mut p, "net.inet.tcp.rexmit_initial", 3000));
        assert_eq!(p.rto_initial_ms, 3000);
        assert!(apply_sysctl(&mut p, "net.inet.tcp.recvspace", 1000));
        assert_eq!(p.window, 1000);
        assert!(!apply_sysctl(&mut p, "net.inet.tcp.blackhole", 2));
        assert!(!apply_sysctl(&mut p, "net.inet.tcp.cc.algorithm", 1));
        assert!(!apply_sysctl(&mut p, "net.inet.tcp.recvspace", 0));
        assert!(apply_sysctl(&mut p, "net.inet.tcp.sack.enable", 0));
        assert_eq!(p.sack, Switch::Off);
        assert!(apply_sysctl(&mut p, "net.inet.tcp.delacktime", 100));
        assert_eq!(p.delayed_ack_ms, 100);
        assert!(!apply_sysctl(&mut p, "net.inet.tcp.delacktime", 501));
        assert!(apply_sysctl(&mut p, "net.inet.tcp.delayed_ack", 0));
        assert_eq!(p.delayed_ack, Switch::Off);
        assert!(apply_sysctl(&mut p, "net.inet.tcp.rfc1323", 0));
        assert_eq!((p.window_scale, p.timestamps), (WindowScale::Off, Switch::Off));
        assert!(apply_sysctl(&mut p, "net.inet.tcp.rfc1323", 1));
        assert_eq!((p.window_scale, p.timestamps), (WindowScale::Shift(6), Switch::On));
        assert!(apply_sysctl(&mut p, "kern.ipc.maxsockbuf", 4_294_967_295));
        assert_eq!(p.window_scale, WindowScale::Shift(14));
        assert!(apply_sysctl(&mut p, "kern.ipc.maxsockbuf", 2_097_152));
        assert_eq!(p.window_scale, WindowScale::Shift(6));
    }
}
