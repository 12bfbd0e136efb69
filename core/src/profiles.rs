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
    #[error("unknown profile {name:?}{suggestion} (known: {known})")]
    Unknown {
        /// The name asked for.
        name: String,
        /// ` (did you mean "x"?)` when a shipped name is close, else empty.
        suggestion: String,
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
        return Err(ProfileLookupError::Unknown {
            name: name.to_string(),
            suggestion: crate::suggest::did_you_mean(name, profile_names()),
            known: profile_names().join(", "),
        });
    };
    let invalid = |message: String| ProfileLookupError::Invalid { name: name.to_string(), message };
    let profile: Profile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
    profile.validate().map_err(|e| invalid(e.to_string()))?;
    Ok(profile)
}

/// The settings an open connection or listener reads where it uses them,
/// as a kernel reads a sysctl each time: a change applies to every endpoint
/// at once. The others (the handshake, the ISN, the MSS and buffers, the RTO
/// bounds, SACK and congestion control) are fixed when an endpoint opens, as
/// FreeBSD copies `recvspace`, `rexmit_min` or `sack.enable` into each new
/// connection.
pub const RUNTIME_SETTINGS: [&str; 15] = [
    "time_wait",
    "msl_ms",
    "max_retries",
    "rfc5961",
    "rfc5961_rst",
    "rfc5961_syn",
    "drop_synfin",
    "syn_reset_acks",
    "ack_repeats_fin",
    "challenge_ack_limit",
    "listen_drops_syn_ack",
    "time_wait_acks_all",
    "limited_transmit",
    "delayed_ack",
    "delayed_ack_ms",
];

/// A setting a profile choice could not take, named as the request named it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct OverrideError {
    /// `profile.<key>` (or `profile.name`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// "A named profile plus overrides", the one way every door into tcplab
/// chooses a profile: REST's `profile` object and gRPC's `Profile` message
/// (as the JSON object of the fields they set), a lab file's `[profile]`
/// table, a packetdrill run's profile. `settings` may name a shipped profile
/// (`"name": "freebsd"`), which then is the base instead of `base`; every
/// other key replaces that one setting. Nothing is validated beyond each
/// value's type ([`Profile::validate`] is the caller's, so that its error
/// names the field in the caller's terms).
///
/// # Errors
/// An unknown shipped name, a key that is not a setting (with the known
/// ones), a value of the wrong type; each names `profile.<key>`.
pub fn with_overrides(
    base: &Profile,
    mut settings: serde_json::Map<String, serde_json::Value>,
) -> Result<Profile, OverrideError> {
    let error = |key: &str, message: String| OverrideError { field: format!("profile.{key}"), message };
    let named = match settings.remove("name") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(name)) => Some(named_profile(&name).map_err(|e| error("name", e.to_string()))?),
        Some(_) => return Err(error("name", "expected the name of a shipped profile".into())),
    };
    let base = named.as_ref().unwrap_or(base);
    let serde_json::Value::Object(mut merged) =
        serde_json::to_value(base).map_err(|e| error("name", format!("the base does not serialize: {e}")))?
    else {
        return Err(error("name", "the base does not serialize as an object".into()));
    };
    let known: Vec<String> = serde_json::to_value(Profile {
        // Optional settings are left out when unset; name them all.
        rfc5961_rst: Some(crate::engine::Switch::On),
        rfc5961_syn: Some(crate::engine::Switch::On),
        ..Profile::default()
    })
    .ok()
    .and_then(|v| v.as_object().map(|m| m.keys().cloned().collect()))
    .unwrap_or_default();
    for (key, value) in &settings {
        if !known.contains(key) {
            let hint = crate::suggest::did_you_mean(key, known.iter().map(String::as_str));
            return Err(error(key, format!("unknown setting `{key}`{hint}, expected one of {}", known.join(", "))));
        }
        // Each key alone first, so that a bad value's error names its key.
        let one = serde_json::Value::Object([(key.clone(), value.clone())].into_iter().collect());
        if let Err(e) = serde_json::from_value::<Profile>(one) {
            return Err(error(key, e.to_string()));
        }
    }
    merged.extend(settings);
    serde_json::from_value(serde_json::Value::Object(merged))
        .map_err(|e| OverrideError { field: "profile".into(), message: e.to_string() })
}

/// A shipped profile for people to read (`tcplab profile show NAME`): its
/// file as shipped, where each setting cites the RFC section or kernel source
/// it follows, then every setting the file leaves out, at the value it takes
/// (tcplab's default), so that the whole profile is on the screen.
///
/// # Errors
/// [`ProfileLookupError`] for an unknown name.
pub fn describe(name: &str) -> Result<String, ProfileLookupError> {
    let profile = named_profile(name)?;
    let text = SOURCES.iter().find(|(n, _)| *n == name).map_or("", |(_, t)| *t);
    let named: toml::Table = toml::from_str(text).unwrap_or_default();
    let all = toml::Table::try_from(&profile)
        .map_err(|e| ProfileLookupError::Invalid { name: name.to_string(), message: e.to_string() })?;
    let mut out = format!("# profiles/{name}.toml\n{}", text.trim_end());
    let rest: toml::Table = all.into_iter().filter(|(key, _)| !named.contains_key(key)).collect();
    if !rest.is_empty() {
        out.push_str("\n\n# Not set above, so tcplab's defaults (the rfc9293 reading) apply:\n");
        out.push_str(toml::to_string(&rest).unwrap_or_default().trim_end());
    }
    out.push('\n');
    Ok(out)
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
        let shown = describe("freebsd").expect("shown");
        assert!(shown.contains("msl_ms = 30000") && shown.contains("TCPTV_MSL"), "{shown}");
        // Every setting is on the screen once, named or defaulted.
        let table: toml::Table = toml::from_str(&shown).expect("the description is TOML");
        let all = toml::Table::try_from(named_profile("freebsd").expect("shipped")).expect("a table");
        assert_eq!(table.keys().collect::<Vec<_>>(), all.keys().collect::<Vec<_>>());
        let freebsd = named_profile("freebsd").expect("shipped");
        let choose =
            |v: serde_json::Value| with_overrides(&Profile::default(), v.as_object().cloned().unwrap_or_default());
        assert_eq!(choose(serde_json::json!({})), Ok(Profile::default()));
        assert_eq!(choose(serde_json::json!({"name": "freebsd"})), Ok(freebsd.clone()));
        let changed = choose(serde_json::json!({"name": "freebsd", "msl_ms": 1000})).expect("chosen");
        assert_eq!(changed, Profile { msl_ms: 1000, ..freebsd });
        let bad = choose(serde_json::json!({"msl_ms": "long"})).expect_err("a bad value");
        assert_eq!(bad.field, "profile.msl_ms");
        let unknown = choose(serde_json::json!({"mls_ms": 5})).expect_err("an unknown key");
        assert_eq!(unknown.field, "profile.mls_ms");
        assert!(unknown.message.contains("did you mean \"msl_ms\"?"), "{unknown}");
        assert_eq!(choose(serde_json::json!({"name": "bsd"})).expect_err("unknown").field, "profile.name");
        let typo = named_profile("fredbsd").expect_err("a typo").to_string();
        assert!(typo.contains("did you mean \"freebsd\"?"), "{typo}");
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
