//! Fault rules (drop, delay, duplicate, corrupt, hold a matching segment) and
//! crafted segments injected as if by a host.

use base64::Engine as _;
use bytes::Bytes;

use super::command::Command;
use super::model::*;
use super::parse::{endpoint, millis_ns};
use super::session::SessionState;
use super::{Error, LabService};
use crate::sim::{FaultAction, FaultSpec, InjectSpec, SegmentMatch};

impl LabService {
    /// Installs a fault rule.
    ///
    /// # Errors
    /// Bad values, unknown hosts, the fault limit.
    pub async fn add_fault(&self, sid: u64, req: AddFault) -> Result<FaultInfo, Error> {
        let action = req.action;
        let delay_ns = millis_ns("delay_ms", req.delay_ms.unwrap_or(0.0))?;
        if action == FaultAction::Delay && delay_ns == 0 {
            return Err(Error::invalid("delay_ms", "a delay rule needs delay_ms > 0"));
        }
        let m = req.matcher.clone().unwrap_or_default();
        let flags = m.flags;
        let spec = FaultSpec {
            from: req.from.clone(),
            to: req.to.clone(),
            matcher: SegmentMatch {
                flags,
                len: m.len,
                seq: m.seq,
                seq_range: m.seq_range.map(|[a, b]| (a, b)),
                ack: m.ack,
                src_port: m.src_port,
                dst_port: m.dst_port,
            },
            skip: req.skip.unwrap_or(0),
            count: req.count,
            action,
            delay_ns,
        };
        let record = Command::AddFault { args: req.clone() };
        self.command(sid, record, move |s| {
            if s.world.faults().len() >= s.limits.max_faults {
                return Err(Error::LimitExceeded { limit: "max_faults", max: s.limits.max_faults as u64 });
            }
            let id = s.world.add_fault(spec)?;
            fault_info(s, id)
        })
        .await
    }

    /// The installed fault rules with their counters.
    ///
    /// # Errors
    /// Unknown or ended session.
    pub async fn list_faults(&self, sid: u64) -> Result<Vec<FaultInfo>, Error> {
        self.live(sid)
            .await?
            .call(|s| {
                let ids: Vec<u64> = s.world.faults().iter().map(|f| f.id).collect();
                ids.into_iter().map(|id| fault_info(s, id)).collect()
            })
            .await
    }

    /// Removes a fault rule (releasing what it holds).
    ///
    /// # Errors
    /// Unknown ids.
    pub async fn delete_fault(&self, sid: u64, fid: u64) -> Result<(), Error> {
        let record = Command::DeleteFault { fault: fid };
        self.command(sid, record, move |s| Ok(s.world.remove_fault(fid)?)).await
    }

    /// Sends the segments a rule holds on their way; returns how many.
    ///
    /// # Errors
    /// Unknown ids.
    pub async fn release_fault(&self, sid: u64, fid: u64) -> Result<u64, Error> {
        let record = Command::ReleaseFault { fault: fid };
        self.command(sid, record, move |s| Ok(s.world.release_fault(fid)? as u64)).await
    }

    /// Injects a crafted segment.
    ///
    /// # Errors
    /// Bad values or unknown hosts.
    pub async fn inject(&self, sid: u64, req: Inject) -> Result<InjectResult, Error> {
        let (from, src_port) = endpoint("from", "src_port", &req.from, req.src_port)?;
        let (to, dst_port) = endpoint("to", "dst_port", &req.to, req.dst_port)?;
        let flags = req.flags;
        let window = req.window.unwrap_or(65_535);
        let window = u16::try_from(window)
            .map_err(|_| Error::invalid("window", format!("must be at most 65535, got {window}")))?;
        let urgent = req.urgent.unwrap_or(0);
        let urgent = u16::try_from(urgent)
            .map_err(|_| Error::invalid("urgent", format!("must be at most 65535, got {urgent}")))?;
        let payload = match (&req.payload, &req.payload_base64) {
            (Some(text), None) => Bytes::copy_from_slice(text.as_bytes()),
            (None, Some(b64)) => Bytes::from(
                base64::engine::general_purpose::STANDARD
                    .decode(b64.as_bytes())
                    .map_err(|e| Error::invalid("payload_base64", e.to_string()))?,
            ),
            (None, None) => Bytes::new(),
            (Some(_), Some(_)) => {
                return Err(Error::invalid("payload", "give at most one of payload and payload_base64"));
            }
        };
        if payload.len() > 65_000 {
            return Err(Error::invalid("payload", "at most 65000 octets"));
        }
        let delay_ns = millis_ns("delay_ms", req.delay_ms.unwrap_or(0.0))?;
        let spec = InjectSpec {
            from,
            to,
            src_port,
            dst_port,
            seq: req.seq,
            ack: req.ack,
            flags,
            window,
            urgent,
            options: req.options.clone(),
            payload,
            delay: crate::time::Duration::from_nanos(delay_ns),
        };
        let record = Command::Inject { args: req.clone() };
        self.command(sid, record, move |s| Ok(InjectResult { segment_id: s.world.inject(spec)? })).await
    }
}

pub(super) fn fault_info(s: &SessionState, fid: u64) -> Result<FaultInfo, Error> {
    let rule = s.world.faults().iter().find(|f| f.id == fid).ok_or_else(|| Error::not_found("fault", fid))?;
    let spec = &rule.spec;
    let m = &spec.matcher;
    Ok(FaultInfo {
        id: rule.id,
        from: spec.from.clone(),
        to: spec.to.clone(),
        matcher: FaultMatch {
            flags: m.flags,
            len: m.len,
            seq: m.seq,
            seq_range: m.seq_range.map(|(a, b)| [a, b]),
            ack: m.ack,
            src_port: m.src_port,
            dst_port: m.dst_port,
        },
        skip: spec.skip,
        count: spec.count,
        action: spec.action,
        delay_ms: spec.delay_ns as f64 / 1e6,
        matched: rule.matched,
        acted: rule.acted,
        held: rule.held_count() as u64,
    })
}
