//! Who may use a lab server, decided in one place for REST, the dashboard and
//! gRPC.
//!
//! A server shared by a class may be given two secrets: a full-access token
//! (`--token` / `TCPLAB_TOKEN`) and a read-only token for observers
//! (`--read-token` / `TCPLAB_READ_TOKEN`). With neither set, everybody may do
//! everything (the lab on one's own machine). With a token set, every request
//! must present one of them, else it is refused as unauthenticated; the
//! read-only token may read and watch (REST `GET`, SSE, `Get*`/`List*`/`Watch*`
//! RPCs) but any change is refused as permission denied, naming the token as
//! read-only.
//!
//! The transports only find the presented token (a Bearer header, gRPC
//! metadata, `?token=` or a cookie for the browser) and say whether the
//! request changes anything; [`AccessConfig::check`] decides. Tokens are
//! compared in constant time, so the time an answer takes says nothing about
//! how much of a guess was right.
//!
//! Left open on purpose: `GET /healthz` and the gRPC health and reflection
//! services, so that probes and tools like `grpcurl` work without a secret
//! (they reveal no session data).

use crate::service::Error;

/// The access settings of a server: its tokens and the origins allowed to
/// call it from a browser page served elsewhere (CORS).
#[derive(Clone, Default)]
pub struct AccessConfig {
    /// Full access; `None` with no read token means no authentication at all.
    token: Option<String>,
    /// Read-only access for observers.
    read_token: Option<String>,
    /// Origins that browsers may call the REST API from (CORS); empty: CORS is off.
    pub cors_origins: Vec<String>,
}

impl std::fmt::Debug for AccessConfig {
    // Never print the secrets themselves.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessConfig")
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("read_token", &self.read_token.as_ref().map(|_| "<set>"))
            .field("cors_origins", &self.cors_origins)
            .finish()
    }
}

/// What a request may do, once its token has been looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Anything: the full token, or no authentication configured.
    Allow,
    /// Read and watch only: the read-only token.
    ReadOnly,
    /// Nothing: no token, or a wrong one.
    Deny,
}

/// The message of every refusal for a missing token, saying how to send one.
pub const MISSING: &str = "missing token: send the header `Authorization: Bearer <token>` (gRPC metadata \
                           `authorization`), or `?token=<token>` in a browser";

/// The message of the refusal of a change asked for with the read-only token.
pub const READ_ONLY: &str = "the token is read-only: it may read and watch, not change anything";

impl AccessConfig {
    /// Checks the settings: tokens must be non-empty visible ASCII (they
    /// travel in headers) and differ from each other; a read-only token
    /// needs a full one (else nobody could change anything).
    ///
    /// # Errors
    /// A sentence naming the setting that is wrong.
    pub fn new(
        token: Option<String>,
        read_token: Option<String>,
        cors_origins: Vec<String>,
    ) -> Result<AccessConfig, String> {
        for (name, value) in [("--token", &token), ("--read-token", &read_token)] {
            if let Some(v) = value {
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(format!("{name}: must be non-empty visible ASCII (no spaces)"));
                }
            }
        }
        if read_token.is_some() && token.is_none() {
            return Err("--read-token: needs --token too, else nobody could change anything".into());
        }
        if token.is_some() && token == read_token {
            return Err("--read-token: must differ from --token".into());
        }
        for origin in &cors_origins {
            if origin.is_empty() || origin.ends_with('/') || !origin.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!("--cors-origin: {origin:?} is not an origin like http://host:port"));
            }
        }
        Ok(AccessConfig { token, read_token, cors_origins })
    }

    /// Whether requests need a token at all.
    pub fn enabled(&self) -> bool {
        self.token.is_some() || self.read_token.is_some()
    }

    /// What the presented token allows.
    pub fn decide(&self, presented: Option<&str>) -> Decision {
        if !self.enabled() {
            return Decision::Allow;
        }
        let Some(presented) = presented else { return Decision::Deny };
        // Compare against both, always, so the time taken does not say which matched.
        let full = self.token.as_deref().is_some_and(|t| constant_time_eq(presented.as_bytes(), t.as_bytes()));
        let read = self.read_token.as_deref().is_some_and(|t| constant_time_eq(presented.as_bytes(), t.as_bytes()));
        match (full, read) {
            (true, _) => Decision::Allow,
            (false, true) => Decision::ReadOnly,
            (false, false) => Decision::Deny,
        }
    }

    /// The one check every transport calls: may a request presenting
    /// `presented` do what it asks (`changes`: it would change something)?
    ///
    /// # Errors
    /// [`Error::Unauthenticated`] for a missing or wrong token,
    /// [`Error::PermissionDenied`] for a change asked with the read-only token.
    pub fn check(&self, presented: Option<&str>, changes: bool) -> Result<Decision, Error> {
        match self.decide(presented) {
            Decision::Deny if presented.is_none() => Err(Error::Unauthenticated(MISSING.into())),
            Decision::Deny => Err(Error::Unauthenticated("invalid token".into())),
            Decision::ReadOnly if changes => Err(Error::PermissionDenied(READ_ONLY.into())),
            decision => Ok(decision),
        }
    }
}

/// The token of an `Authorization` header value: `Bearer <token>` (the
/// scheme in any case); `None` for other schemes.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// Whether a gRPC method of `tcplab.v1.LabService` only reads: by the
/// naming rule of the service, `Get*`, `List*` and `Watch*` read, every other
/// RPC changes something (so a new RPC is a change unless named as a read).
pub fn grpc_method_reads(method: &str) -> bool {
    ["Get", "List", "Watch"].iter().any(|p| method.starts_with(p))
}

/// Equality whose time depends only on the lengths, not on where the bytes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(std::hint::black_box(x ^ y));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both() -> AccessConfig {
        AccessConfig::new(Some("full-secret".into()), Some("read-secret".into()), vec![]).expect("valid")
    }

    #[test]
    fn without_tokens_everything_is_allowed() {
        let open = AccessConfig::default();
        assert!(!open.enabled());
        assert_eq!(open.decide(None), Decision::Allow);
        assert_eq!(open.check(Some("anything"), true).ok(), Some(Decision::Allow));
    }

    #[test]
    fn tokens_decide_allow_read_only_or_deny() {
        let access = both();
        assert_eq!(access.decide(Some("full-secret")), Decision::Allow);
        assert_eq!(access.decide(Some("read-secret")), Decision::ReadOnly);
        assert_eq!(access.decide(Some("full-secre")), Decision::Deny);
        assert_eq!(access.decide(Some("full-secretX")), Decision::Deny);
        assert_eq!(access.decide(Some("")), Decision::Deny);
        assert_eq!(access.decide(None), Decision::Deny);
    }

    #[test]
    fn check_names_the_refusal() {
        let access = both();
        assert!(matches!(access.check(None, false), Err(Error::Unauthenticated(m)) if m.starts_with("missing token")));
        assert!(matches!(access.check(Some("nope"), false), Err(Error::Unauthenticated(m)) if m == "invalid token"));
        let denied = access.check(Some("read-secret"), true);
        assert!(matches!(&denied, Err(Error::PermissionDenied(m)) if m.contains("read-only")), "{denied:?}");
        assert_eq!(access.check(Some("read-secret"), false).ok(), Some(Decision::ReadOnly));
        assert_eq!(access.check(Some("full-secret"), true).ok(), Some(Decision::Allow));
    }

    #[test]
    fn settings_are_validated() {
        assert!(AccessConfig::new(None, Some("r".into()), vec![]).is_err());
        assert!(AccessConfig::new(Some("same".into()), Some("same".into()), vec![]).is_err());
        assert!(AccessConfig::new(Some(String::new()), None, vec![]).is_err());
        assert!(AccessConfig::new(Some("has space".into()), None, vec![]).is_err());
        assert!(AccessConfig::new(None, None, vec!["http://a:1/".into()]).is_err());
        assert!(AccessConfig::new(Some("t".into()), None, vec!["http://a:1".into()]).is_ok());
        assert!(!format!("{:?}", both()).contains("secret"));
    }

    #[test]
    fn bearer_header_values() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("abc"), None);
    }

    #[test]
    fn read_methods_by_name() {
        for m in ["GetSession", "ListEvents", "WatchEvents", "GetReceived"] {
            assert!(grpc_method_reads(m), "{m}");
        }
        for m in ["CreateSession", "Send", "Clock", "EndSession", "Inject", ""] {
            assert!(!grpc_method_reads(m), "{m}");
        }
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }
}
