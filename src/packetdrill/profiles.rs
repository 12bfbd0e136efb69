//! Behaviour profiles as data: `profiles/*.toml`, embedded in the binary,
//! each setting with its source in a comment; and the FreeBSD `sysctl`
//! settings the conformance scripts write, mapped onto profile fields.

use crate::engine::{Profile, Switch};

/// The shipped profiles: name and TOML text.
const SOURCES: [(&str, &str); 4] = [
    ("rfc793", include_str!("../../profiles/rfc793.toml")),
    ("rfc9293", include_str!("../../profiles/rfc9293.toml")),
    ("freebsd", include_str!("../../profiles/freebsd.toml")),
    ("linux", include_str!("../../profiles/linux.toml")),
];

/// The profile used when none is named.
pub const DEFAULT_PROFILE: &str = "rfc9293";

/// A profile that is not shipped or does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileLookupError {
    /// No profile by that name.
    #[error("unknown profile {name:?} (known: {known})")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The shipped names.
        known: String,
    },
    /// The embedded TOML is wrong (a build-time mistake, caught by the tests).
    #[error("profile {name}: {message}")]
    Invalid {
        /// The profile.
        name: String,
        /// The parser's or validator's message.
        message: String,
    },
}

/// The names of the shipped profiles.
pub fn profile_names() -> Vec<&'static str> {
    SOURCES.iter().map(|(n, _)| *n).collect()
}

/// The one-line description of a shipped profile (its first comment line).
pub fn profile_description(name: &str) -> Option<&'static str> {
    let (_, text) = SOURCES.iter().find(|(n, _)| *n == name)?;
    text.lines().next().and_then(|l| l.strip_prefix('#')).map(str::trim)
}

/// A shipped profile by name.
///
/// # Errors
/// [`ProfileLookupError`] for an unknown name or a profile that does not parse.
pub fn named_profile(name: &str) -> Result<Profile, ProfileLookupError> {
    let Some((_, text)) = SOURCES.iter().find(|(n, _)| *n == name) else {
        return Err(ProfileLookupError::Unknown { name: name.to_string(), known: profile_names().join(", ") });
    };
    let invalid = |message: String| ProfileLookupError::Invalid { name: name.to_string(), message };
    let profile: Profile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
    profile.validate().map_err(|e| invalid(e.to_string()))?;
    Ok(profile)
}

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
        // TCP options tcplab does not negotiate are compared only with
        // --strict-options; the rest are no-ops in a simulated world with no
        // host cache, no ECN and no socket-buffer ceiling.
        "net.inet.tcp.rfc1323" | "net.inet.tcp.sack.enable" => {}
        "net.inet.tcp.ecn.enable" | "net.inet.tcp.hostcache.purgenow" | "kern.ipc.maxsockbuf" => {}
        // blackhole=0 is what tcplab does (RST to closed ports); other values are not modelled.
        "net.inet.tcp.blackhole" => return value == 0,
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_profile_parses_validates_and_documents_itself() {
        for name in profile_names() {
            let p = named_profile(name).unwrap_or_else(|e| panic!("{e}"));
            assert!(p.validate().is_ok());
            assert!(profile_description(name).is_some_and(|d| !d.is_empty()));
            let (_, text) = SOURCES.iter().find(|(n, _)| *n == name).unwrap();
            // Each setting has its source in a comment line right above it.
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate().skip(1) {
                if line.contains('=') && !line.starts_with('#') {
                    let key = line.split('=').next().unwrap().trim();
                    if ["handshake", "time_wait", "isn", "window", "send_buffer", "rfc5961"].contains(&key) {
                        continue;
                    }
                    let above =
                        lines[..i].iter().rev().take_while(|l| !l.trim().is_empty()).any(|l| l.starts_with('#'));
                    assert!(above, "{name}: {key} has no comment");
                }
            }
        }
        assert!(matches!(named_profile("bsd"), Err(ProfileLookupError::Unknown { .. })));
    }

    #[test]
    fn the_default_profile_is_the_shipped_rfc9293() {
        // A session, lab or listener without a profile gets Profile::default();
        // the API and `tcplab profile list` call rfc9293 the default: they must agree.
        let mut shipped = named_profile(DEFAULT_PROFILE).unwrap();
        let default = Profile::default();
        assert_eq!(
            (shipped.rst_challenge(), shipped.syn_challenge()),
            (default.rst_challenge(), default.syn_challenge())
        );
        shipped.rfc5961_rst = None;
        shipped.rfc5961_syn = None;
        assert_eq!(shipped, default);
    }

    #[test]
    fn profiles_differ_where_their_sources_do() {
        let rfc793 = named_profile("rfc793").unwrap();
        let rfc9293 = named_profile("rfc9293").unwrap();
        let linux = named_profile("linux").unwrap();
        let freebsd = named_profile("freebsd").unwrap();
        assert!(!rfc793.rst_challenge() && !rfc793.syn_challenge());
        assert!(rfc9293.rst_challenge() && rfc9293.syn_challenge());
        assert_eq!((linux.rto_min_ms, linux.time_wait_ns()), (200, 60_000_000_000));
        assert_eq!((freebsd.window, freebsd.rto_initial_ms), (65_536, 1000));
    }

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
    }
}
