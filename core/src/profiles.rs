//! Behaviour profiles as data: `profiles/*.toml`, embedded in the binary,
//! each setting with its source in a comment. A profile is named by the
//! catalog here and adjusted setting by setting; REST, gRPC, lab files and
//! packetdrill scripts all choose one the same way.

use crate::engine::Profile;

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
}
