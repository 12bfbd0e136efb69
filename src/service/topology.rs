//! A session's network: hosts and the links between them.

use std::net::Ipv4Addr;

use super::command::Command;
use super::model::*;
use super::{Error, LabService};
use crate::sim::LinkParams;

impl LabService {
    /// Adds a host to a session.
    ///
    /// # Errors
    /// Bad name or address, duplicates, the host limit.
    pub async fn add_host(&self, sid: u64, req: AddHost) -> Result<HostInfo, Error> {
        let ip: Ipv4Addr =
            req.ip.parse().map_err(|_| Error::invalid("ip", format!("not an IPv4 address: {:?}", req.ip)))?;
        let kind = req.kind.unwrap_or_default();
        if req.name.is_empty() || req.name.len() > 64 {
            return Err(Error::invalid("name", "must be 1 to 64 characters"));
        }
        let record = Command::AddHost { args: req.clone() };
        self.command(sid, record, move |s| {
            if s.world.hosts().count() >= s.limits.max_hosts {
                return Err(Error::LimitExceeded { limit: "max_hosts", max: s.limits.max_hosts as u64 });
            }
            s.world.add_host(&req.name, ip, kind)?;
            Ok(HostInfo { name: req.name, ip: ip.to_string(), kind })
        })
        .await
    }

    /// The hosts of a session.
    ///
    /// # Errors
    /// Unknown or ended session.
    pub async fn list_hosts(&self, sid: u64) -> Result<Vec<HostInfo>, Error> {
        self.live(sid)
            .await?
            .call(|s| {
                Ok(s.world
                    .hosts()
                    .map(|(name, ip, kind)| HostInfo { name: name.to_string(), ip: ip.to_string(), kind })
                    .collect())
            })
            .await
    }

    /// Sets the link between two hosts (both directions).
    ///
    /// # Errors
    /// Unknown hosts or out-of-range settings.
    pub async fn set_link(&self, sid: u64, req: SetLink) -> Result<LinkInfo, Error> {
        let defaults = LinkParams::default();
        let params = LinkParams {
            latency_ms: req.latency_ms.unwrap_or(defaults.latency_ms),
            jitter_ms: req.jitter_ms.unwrap_or(0.0),
            loss: req.loss.unwrap_or(0.0),
            duplicate: req.duplicate.unwrap_or(0.0),
            reorder: req.reorder.unwrap_or(0.0),
            corrupt: req.corrupt.unwrap_or(0.0),
            bandwidth_bps: req.bandwidth_bps.unwrap_or(0),
            queue_bytes: req.queue_bytes.unwrap_or(0),
            queue_packets: req.queue_packets.unwrap_or(0),
        };
        params.validate().map_err(|e| Error::invalid(e.field, e.message))?;
        if req.a == req.b {
            return Err(Error::invalid("b", "a link joins two different hosts"));
        }
        let record = Command::SetLink { args: req.clone() };
        self.command(sid, record, move |s| {
            s.world.set_link_through(&req.a, &req.b, params.clone(), req.bottleneck.as_deref())?;
            let (a, b) = (s.world.host_id(&req.a)?, s.world.host_id(&req.b)?);
            let queued = s.world.link_queue(a, b);
            Ok(link_info(&req.a, &req.b, s.world.link(a, b), queued, s.world.link_bottleneck(a, b)))
        })
        .await
    }

    /// Every link direction set explicitly (others use the default 10 ms link).
    ///
    /// # Errors
    /// Unknown or ended session.
    pub async fn list_links(&self, sid: u64) -> Result<Vec<LinkInfo>, Error> {
        self.live(sid)
            .await?
            .call(|s| {
                Ok(s.world
                    .links()
                    .map(|(a, b, p)| {
                        let queued = s.world.link_queue(a, b);
                        let bottleneck = s.world.link_bottleneck(a, b);
                        link_info(s.world.host_name(a), s.world.host_name(b), p, queued, bottleneck)
                    })
                    .collect())
            })
            .await
    }
}

/// A link direction as the API shows it, with what waits in its queue (`queued`: octets, segments).
pub(super) fn link_info(
    a: &str,
    b: &str,
    p: &LinkParams,
    queued: (u64, u32),
    bottleneck: Option<(&str, bool)>,
) -> LinkInfo {
    LinkInfo {
        a: a.to_string(),
        b: b.to_string(),
        latency_ms: p.latency_ms,
        jitter_ms: p.jitter_ms,
        loss: p.loss,
        duplicate: p.duplicate,
        reorder: p.reorder,
        corrupt: p.corrupt,
        bandwidth_bps: p.bandwidth_bps,
        queue_bytes: p.queue_bytes,
        queue_packets: p.queue_packets,
        queued_bytes: queued.0,
        queued_packets: queued.1,
        bottleneck: bottleneck.map(|(name, _)| name.to_string()),
        bottleneck_forward: bottleneck.is_some_and(|(_, forward)| forward),
    }
}
