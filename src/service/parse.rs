//! Request values the model types cannot check alone: ports that must not be
//! 0, milliseconds that must be finite, kind filters, injection endpoints.
//! Each error names the field it is about.

use super::Error;
use super::model::*;
use crate::sim::EventKind;

pub(super) fn port(field: &'static str, value: u32) -> Result<u16, Error> {
    match u16::try_from(value) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(Error::invalid(field, format!("must be between 1 and 65535, got {value}"))),
    }
}

pub(super) fn millis_ns(field: &'static str, ms: f64) -> Result<u64, Error> {
    if !ms.is_finite() || !(0.0..=86_400_000.0 * 365.0).contains(&ms) {
        return Err(Error::invalid(field, format!("must be a number of milliseconds >= 0, got {ms}")));
    }
    Ok((ms * 1e6) as u64)
}

pub(super) fn parse_kinds(kinds: Option<&str>) -> Result<Vec<String>, Error> {
    let Some(kinds) = kinds else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for kind in kinds.split(',').map(str::trim).filter(|k| !k.is_empty()) {
        if !EventKind::NAMES.contains(&kind) {
            return Err(Error::invalid(
                "kind",
                format!("unknown event kind {kind:?} (expected one of {})", EventKind::NAMES.join(", ")),
            ));
        }
        out.push(kind.to_string());
    }
    Ok(out)
}

pub(super) fn endpoint(
    field: &'static str,
    port_field: &'static str,
    ep: &InjectEndpoint,
    port_value: Option<u32>,
) -> Result<(String, u16), Error> {
    match ep {
        InjectEndpoint::Host(host) => {
            let p =
                port_value.ok_or_else(|| Error::invalid(port_field, format!("needed when {field} is a host name")))?;
            Ok((host.clone(), port(port_field, p)?))
        }
        InjectEndpoint::HostPort { host, port: p } => Ok((host.clone(), port(field, *p)?)),
    }
}
