//! The world's hosts: who is on the network, by id, by name and by address,
//! and what answers for each (tcplab's TCP, or nobody: a raw host).
//!
//! Why a part of its own: every other part names hosts by [`HostId`] and
//! asks this one for a name, an address or a stack; the three ways to find
//! a host are kept consistent here and nowhere else.

use std::net::Ipv4Addr;
use std::sync::Arc;

use bytes::Bytes;
use rustc_hash::FxHashMap;
use serde::Serialize;

use super::WorldError;
use crate::engine::{Profile, Stack};
use crate::time::Instant;

/// A host's index in its world.
pub type HostId = u32;

/// What kind of host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum HostKind {
    /// Runs tcplab's TCP.
    #[default]
    Tcp,
    /// No TCP: records what reaches it and never answers (a script or another
    /// implementation plays it).
    Raw,
}

/// A packet that reached a raw host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawPacket {
    /// When it arrived.
    pub at: Instant,
    /// The sender's address.
    pub src_ip: Ipv4Addr,
    /// The TCP bytes (header and payload).
    pub bytes: Bytes,
}

/// What answers for a host.
pub(super) enum HostStack {
    /// tcplab's TCP.
    Tcp(Box<Stack>),
    /// Nobody: what arrives waits here for the caller to take.
    Raw(Vec<RawPacket>),
}

/// One host.
struct Host {
    name: Arc<str>,
    ip: Ipv4Addr,
    stack: HostStack,
    /// Generation of the valid timer entry in the agenda.
    timer_gen: u64,
    /// Deadline of that entry.
    timer_at: Option<Instant>,
}

/// Every host, findable by id, name and address.
#[derive(Default)]
pub(super) struct Hosts {
    hosts: Vec<Host>,
    by_name: FxHashMap<Arc<str>, HostId>,
    by_ip: FxHashMap<Ipv4Addr, HostId>,
}

impl Hosts {
    /// Adds a host; a TCP host's stack starts with `profile`.
    pub(super) fn add(
        &mut self,
        name: &str,
        ip: Ipv4Addr,
        kind: HostKind,
        profile: &Arc<Profile>,
    ) -> Result<HostId, WorldError> {
        if name.is_empty() || name.len() > 64 {
            return Err(WorldError::BadHostName);
        }
        if self.by_name.contains_key(name) {
            return Err(WorldError::DuplicateHost(name.to_string()));
        }
        if self.by_ip.contains_key(&ip) {
            return Err(WorldError::DuplicateAddress(ip));
        }
        let id = self.hosts.len() as HostId;
        let name: Arc<str> = Arc::from(name);
        let stack = match kind {
            HostKind::Tcp => HostStack::Tcp(Box::new(Stack::new(ip, profile.clone()))),
            HostKind::Raw => HostStack::Raw(Vec::new()),
        };
        self.hosts.push(Host { name: name.clone(), ip, stack, timer_gen: 0, timer_at: None });
        self.by_name.insert(name, id);
        self.by_ip.insert(ip, id);
        Ok(id)
    }

    /// A host's id by name.
    pub(super) fn id(&self, name: &str) -> Result<HostId, WorldError> {
        self.by_name.get(name).copied().ok_or_else(|| WorldError::UnknownHost(name.to_string()))
    }

    /// The host that has an address, if one has.
    pub(super) fn by_ip(&self, ip: Ipv4Addr) -> Option<HostId> {
        self.by_ip.get(&ip).copied()
    }

    /// A host's name, if the host exists.
    pub(super) fn get_name(&self, id: HostId) -> Option<&Arc<str>> {
        self.hosts.get(id as usize).map(|h| &h.name)
    }

    /// A host's address, if the host exists.
    pub(super) fn get_ip(&self, id: HostId) -> Option<Ipv4Addr> {
        self.hosts.get(id as usize).map(|h| h.ip)
    }

    /// The name of a host the world made (ids come from [`Hosts::add`]).
    pub(super) fn name(&self, id: HostId) -> &Arc<str> {
        &self.hosts[id as usize].name
    }

    /// The address of a host the world made.
    pub(super) fn ip(&self, id: HostId) -> Ipv4Addr {
        self.hosts[id as usize].ip
    }

    /// The name to log for a packet sent to `dst_ip` and routed to `to`: `to`'s
    /// own name when it has the address (no lookup needed), else the name of
    /// the host that has it, else the address itself.
    pub(super) fn name_for(&self, to: HostId, dst_ip: Ipv4Addr) -> Arc<str> {
        let host = &self.hosts[to as usize];
        if host.ip == dst_ip {
            return host.name.clone();
        }
        match self.by_ip.get(&dst_ip) {
            Some(&h) => self.hosts[h as usize].name.clone(),
            None => Arc::from(dst_ip.to_string()),
        }
    }

    /// Every host: name, address and kind, in the order they were added.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, Ipv4Addr, HostKind)> {
        self.hosts.iter().map(|h| {
            let kind = match h.stack {
                HostStack::Tcp(_) => HostKind::Tcp,
                HostStack::Raw(_) => HostKind::Raw,
            };
            (&*h.name, h.ip, kind)
        })
    }

    /// What answers for a host.
    pub(super) fn stack(&self, id: HostId) -> &HostStack {
        &self.hosts[id as usize].stack
    }

    /// What answers for a host, to touch it.
    pub(super) fn stack_mut(&mut self, id: HostId) -> &mut HostStack {
        &mut self.hosts[id as usize].stack
    }

    /// A host's TCP stack, if it runs one.
    pub(super) fn tcp(&self, id: HostId) -> Option<&Stack> {
        match &self.hosts[id as usize].stack {
            HostStack::Tcp(stack) => Some(stack),
            HostStack::Raw(_) => None,
        }
    }

    /// A host's TCP stack, to touch it; `None` for a raw host.
    pub(super) fn tcp_mut(&mut self, id: HostId) -> Option<&mut Stack> {
        match &mut self.hosts[id as usize].stack {
            HostStack::Tcp(stack) => Some(stack),
            HostStack::Raw(_) => None,
        }
    }

    /// Every TCP stack.
    pub(super) fn tcp_stacks(&self) -> impl Iterator<Item = &Stack> {
        self.hosts.iter().filter_map(|h| match &h.stack {
            HostStack::Tcp(stack) => Some(&**stack),
            HostStack::Raw(_) => None,
        })
    }

    /// Every TCP stack, to touch it.
    pub(super) fn tcp_stacks_mut(&mut self) -> impl Iterator<Item = &mut Stack> {
        self.hosts.iter_mut().filter_map(|h| match &mut h.stack {
            HostStack::Tcp(stack) => Some(&mut **stack),
            HostStack::Raw(_) => None,
        })
    }

    /// A host's TCP stack, or [`WorldError::NotTcpHost`] naming it.
    pub(super) fn tcp_stack(&mut self, id: HostId) -> Result<&mut Stack, WorldError> {
        let h = &mut self.hosts[id as usize];
        match &mut h.stack {
            HostStack::Tcp(stack) => Ok(stack),
            HostStack::Raw(_) => Err(WorldError::NotTcpHost(h.name.to_string())),
        }
    }

    /// The host's timer entry is no longer in the agenda (it fell due or was dropped).
    pub(super) fn timer_gone(&mut self, id: HostId) {
        self.hosts[id as usize].timer_at = None;
    }

    /// Whether an agenda entry of the host's timer, armed as `generation` for
    /// `at`, still stands: `None` when a later arming replaced it, else
    /// whether the stack's earliest deadline is still exactly `at`.
    pub(super) fn timer_entry_is_current(&mut self, id: HostId, generation: u64, at: Instant) -> Option<bool> {
        let h = &mut self.hosts[id as usize];
        if h.timer_gen != generation {
            return None;
        }
        let deadline = match &mut h.stack {
            HostStack::Tcp(stack) => stack.poll_at(),
            HostStack::Raw(_) => None,
        };
        Some(deadline == Some(at))
    }

    /// Arms the host's timer for its stack's earliest deadline when that is
    /// sooner than the entry already armed: returns the deadline and the new
    /// generation to schedule, or `None` when nothing new is due.
    pub(super) fn rearm_timer(&mut self, id: HostId) -> Option<(Instant, u64)> {
        let h = &mut self.hosts[id as usize];
        let HostStack::Tcp(stack) = &mut h.stack else {
            return None;
        };
        let deadline = stack.poll_at()?;
        if h.timer_at.is_some_and(|at| deadline >= at) {
            return None;
        }
        h.timer_gen += 1;
        h.timer_at = Some(deadline);
        Some((deadline, h.timer_gen))
    }
}
