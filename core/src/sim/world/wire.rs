//! The world's wire: segments on their way from one host to another, and
//! everything that can befall them there (fault rules, then the link's
//! loss, corruption, duplication, bandwidth, latency, jitter and reordering).
//!
//! Why a part of its own: this is where the seeded RNG decides a segment's
//! fate, in a fixed order of draws that a run's reproducibility depends on.
//! Keeping the whole departure pipeline in one function ([`Wire::launch`])
//! keeps that order in one place. A packet on its way waits in a slot of
//! its own until the agenda says it arrives; [`InFlight::decode`] is the
//! first step of its arrival (the receiver's checksum).

use std::net::Ipv4Addr;

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::RngCore;
use rustc_hash::FxHashMap;

use super::WorldError;
use super::agenda::{Agenda, Item};
use super::hosts::{HostId, Hosts};
use super::log::EventLog;
use crate::engine::Segment;
use crate::engine::segment::DecodeError;
use crate::sim::event::{ConnId, DropReason, EventKind, WireSegment};
use crate::sim::fault::{FaultAction, FaultRule, FaultSpec};
use crate::sim::link::{Admission, Bottleneck, LinkDir, LinkError, LinkParams, MAX_BOTTLENECKS, validate_bottleneck};
use crate::time::{Duration, Instant};

/// Where a segment comes from, as the log tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Origin {
    /// Sent by a TCP here, for the first time.
    Sent,
    /// Sent again by a TCP here: a retransmission.
    Retransmitted,
    /// Crafted by the user ([`World::inject`](super::World::inject)).
    Injected,
    /// Put on the wire by a raw host's peer implementation
    /// ([`World::raw_send`](super::World::raw_send)).
    Peer,
}

impl Origin {
    /// [`Origin::Retransmitted`] or [`Origin::Sent`], as the engine says.
    pub(super) fn from_tcp(retransmission: bool) -> Origin {
        if retransmission { Origin::Retransmitted } else { Origin::Sent }
    }
}

/// A segment leaving a host: what [`Wire::launch`] needs to know.
pub(super) struct Departure {
    /// The host it leaves.
    pub(super) from: HostId,
    /// Where it is addressed (no host may have that address).
    pub(super) dst_ip: Ipv4Addr,
    /// Its encoded bytes, when they exist already (crafted or raw segments);
    /// `None` for a segment a TCP here made, its checksum field set.
    pub(super) bytes: Option<Bytes>,
    /// The segment.
    pub(super) segment: Segment,
    /// Who made it.
    pub(super) origin: Origin,
    /// The connection that sent it, if one did.
    pub(super) connection: Option<ConnId>,
    /// Extra time before it enters the link.
    pub(super) delay: Duration,
}

/// A segment on its way across a link.
#[derive(Clone, Debug)]
pub(crate) struct InFlight {
    id: u64,
    from: HostId,
    to: HostId,
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
    /// The encoded segment. `None` while nothing has touched the segment
    /// since a TCP here encoded it: then `segment` (its checksum field set)
    /// is exactly what the bytes would decode to, so they are made only if
    /// needed (a bit to flip, a raw host to hand them to) and the receiver
    /// takes `segment` as it is, sparing an encoding and a decoding.
    /// (Boxed: rarely there, and a packet on its way is moved in and out of
    /// its slot, so it is kept small.)
    bytes: Option<Box<Bytes>>,
    /// The segment as sent (for the log; the receiver decodes `bytes` when there are any).
    segment: Segment,
    origin: Origin,
}

impl InFlight {
    /// The encoded bytes, made now if they were not yet.
    pub(super) fn bytes(&mut self) -> &Bytes {
        let (segment, src_ip, dst_ip) = (&self.segment, self.src_ip, self.dst_ip);
        self.bytes.get_or_insert_with(|| Box::new(segment.encode(src_ip, dst_ip).unwrap_or_default()))
    }

    /// Octets on the wire.
    fn wire_len(&self) -> usize {
        self.bytes.as_ref().map_or_else(|| self.segment.wire_len(), |b| b.len())
    }

    /// The host it goes to (the sender when no host has the address).
    pub(super) fn to(&self) -> HostId {
        self.to
    }

    /// The sender's address.
    pub(super) fn src_ip(&self) -> Ipv4Addr {
        self.src_ip
    }

    /// The segment as sent.
    pub(super) fn segment(&self) -> &Segment {
        &self.segment
    }

    /// What the receiver reads: `None` when nothing touched the segment since
    /// a TCP here encoded it (it is [`InFlight::segment`]), the bytes
    /// decoded otherwise, or why they are no segment (a flipped bit caught
    /// by the checksum, or a malformed header).
    pub(super) fn decode(&self) -> Result<Option<Segment>, DropReason> {
        let Some(bytes) = &self.bytes else {
            return Ok(None);
        };
        match Segment::decode(bytes, self.src_ip, self.dst_ip) {
            Ok(segment) => Ok(Some(segment)),
            Err(DecodeError::BadChecksum { .. }) => Err(DropReason::BadChecksum),
            Err(_) => Err(DropReason::Malformed),
        }
    }

    /// The segment as the log shows it.
    pub(super) fn logged(&self, hosts: &Hosts) -> WireSegment {
        WireSegment {
            id: self.id,
            from: hosts.name(self.from).clone(),
            to: hosts.name_for(self.to, self.dst_ip),
            segment: self.segment.clone(),
            retransmission: self.origin == Origin::Retransmitted,
            injected: self.origin == Origin::Injected,
        }
    }

    /// [`InFlight::logged`], taking the segment instead of copying it.
    pub(super) fn into_logged(self, hosts: &Hosts) -> WireSegment {
        WireSegment {
            id: self.id,
            from: hosts.name(self.from).clone(),
            to: hosts.name_for(self.to, self.dst_ip),
            segment: self.segment,
            retransmission: self.origin == Origin::Retransmitted,
            injected: self.origin == Origin::Injected,
        }
    }
}

/// Links, fault rules and the packets on their way.
pub(super) struct Wire {
    links: FxHashMap<(HostId, HostId), LinkDir>,
    /// Named bottlenecks, by slot (a free slot is `None`), and their slots by name.
    bottlenecks: Vec<Option<Bottleneck>>,
    bottleneck_slots: FxHashMap<String, u32>,
    /// What a pair of hosts with no link set gets.
    default_link: LinkParams,
    faults: Vec<FaultRule>,
    next_fault: u64,
    /// Packets on their way, by the slot their arrival names; `free_slots`
    /// are the empty ones.
    in_flight: Vec<Option<InFlight>>,
    free_slots: Vec<u32>,
    next_segment_id: u64,
}

impl Default for Wire {
    fn default() -> Self {
        Wire {
            links: FxHashMap::default(),
            bottlenecks: Vec::new(),
            bottleneck_slots: FxHashMap::default(),
            default_link: LinkParams::default(),
            faults: Vec::new(),
            next_fault: 1,
            in_flight: Vec::new(),
            free_slots: Vec::new(),
            next_segment_id: 1,
        }
    }
}

/// `true` with probability `p`.
fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    // 53 random bits, as a float in [0, 1).
    ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
}

/// `bytes` with one bit flipped, drawn at random.
fn flip_bit(rng: &mut ChaCha8Rng, bytes: &Bytes) -> Bytes {
    let mut v = bytes.to_vec();
    if !v.is_empty() {
        let bit = rng.next_u64() % (v.len() as u64 * 8);
        v[(bit / 8) as usize] ^= 1 << (bit % 8);
    }
    Bytes::from(v)
}

impl Wire {
    // ----- links -----

    /// Sets one direction of a link (its settings already checked), crossing
    /// the bottleneck named, forward or back, or none. Joining a bottleneck
    /// sets its rate and queue capacity for every link that crosses it: they
    /// share one wire.
    ///
    /// # Errors
    /// A bad bottleneck name, one without a rate, or too many bottlenecks.
    pub(super) fn set_link(
        &mut self,
        from: HostId,
        to: HostId,
        params: LinkParams,
        bottleneck: Option<(&str, bool)>,
    ) -> Result<(), LinkError> {
        let joined = match bottleneck {
            None => None,
            Some((name, forward)) => Some((self.bottleneck_slot(name, &params)?, forward)),
        };
        let dir = self.links.entry((from, to)).or_default();
        let left = dir.bottleneck.map(|(slot, _)| slot);
        dir.params = params.clone();
        dir.bottleneck = joined;
        if let Some((slot, _)) = joined {
            let shared = self.bottlenecks[slot as usize].as_mut().expect("a slot just resolved is in use");
            shared.members += 1;
            shared.params = params.clone();
            for dir in self.links.values_mut().filter(|d| d.bottleneck.map(|b| b.0) == Some(slot)) {
                dir.params.bandwidth_bps = params.bandwidth_bps;
                dir.params.queue_bytes = params.queue_bytes;
                dir.params.queue_packets = params.queue_packets;
            }
        }
        if let Some(slot) = left {
            let gone = self.bottlenecks[slot as usize].as_mut().is_some_and(|b| {
                b.members -= 1;
                b.members == 0
            });
            if gone {
                if let Some(b) = self.bottlenecks[slot as usize].take() {
                    self.bottleneck_slots.remove(&b.name);
                }
            }
        }
        Ok(())
    }

    /// The slot of the bottleneck named, made when it is new.
    fn bottleneck_slot(&mut self, name: &str, params: &LinkParams) -> Result<u32, LinkError> {
        validate_bottleneck(name, params)?;
        if let Some(&slot) = self.bottleneck_slots.get(name) {
            return Ok(slot);
        }
        if self.bottleneck_slots.len() >= MAX_BOTTLENECKS {
            let message = format!("at most {MAX_BOTTLENECKS} bottlenecks per session");
            return Err(LinkError { field: "bottleneck", message });
        }
        let fresh = Bottleneck { name: name.to_string(), ..Bottleneck::default() };
        let slot = match self.bottlenecks.iter().position(Option::is_none) {
            Some(free) => {
                self.bottlenecks[free] = Some(fresh);
                free
            }
            None => {
                self.bottlenecks.push(Some(fresh));
                self.bottlenecks.len() - 1
            }
        };
        self.bottleneck_slots.insert(name.to_string(), slot as u32);
        Ok(slot as u32)
    }

    /// The link settings from one host to another (the default link when none was set).
    pub(super) fn link(&self, from: HostId, to: HostId) -> &LinkParams {
        self.links.get(&(from, to)).map_or(&self.default_link, |d| &d.params)
    }

    /// The bottleneck the link `from` -> `to` crosses, and whether forward.
    pub(super) fn bottleneck(&self, from: HostId, to: HostId) -> Option<(&str, bool)> {
        let (slot, forward) = self.links.get(&(from, to))?.bottleneck?;
        Some((self.bottlenecks.get(slot as usize)?.as_ref()?.name.as_str(), forward))
    }

    /// Octets and segments waiting in the queue the link `from` -> `to`
    /// feeds at `now` (a bottleneck's queue is the same for every link crossing it).
    pub(super) fn queue(&self, from: HostId, to: HostId, now: Instant) -> (u64, u32) {
        let Some(dir) = self.links.get(&(from, to)) else {
            return (0, 0);
        };
        match dir.bottleneck.and_then(|(slot, fwd)| Some((self.bottlenecks.get(slot as usize)?.as_ref()?, fwd))) {
            Some((b, forward)) => if forward { &b.forward } else { &b.reverse }.occupancy(now),
            None => dir.tx.occupancy(now),
        }
    }

    /// Every explicitly set link direction, in host order.
    pub(super) fn links(&self) -> impl Iterator<Item = (HostId, HostId, &LinkParams)> {
        let mut keys: Vec<_> = self.links.keys().copied().collect();
        keys.sort_unstable();
        keys.into_iter().map(|k| (k.0, k.1, &self.links[&k].params))
    }

    // ----- fault rules -----

    /// Installs a fault rule between the hosts named (resolved already); returns its id.
    pub(super) fn add_fault(&mut self, spec: FaultSpec, from: Option<HostId>, to: Option<HostId>) -> u64 {
        let id = self.next_fault;
        self.next_fault += 1;
        self.faults.push(FaultRule { id, spec, from, to, matched: 0, acted: 0, held: Vec::new() });
        id
    }

    /// The installed fault rules.
    pub(super) fn faults(&self) -> &[FaultRule] {
        &self.faults
    }

    /// Removes a fault rule (release what it holds first).
    pub(super) fn remove_fault(&mut self, id: u64) {
        self.faults.retain(|f| f.id != id);
    }

    /// Sends the segments a rule holds on their way (each logged as
    /// released, then crossing the link's latency); returns how many.
    pub(super) fn release_fault(
        &mut self,
        id: u64,
        hosts: &Hosts,
        agenda: &mut Agenda,
        log: &mut EventLog,
    ) -> Result<usize, WorldError> {
        let rule = self.faults.iter_mut().find(|f| f.id == id).ok_or(WorldError::UnknownFault(id))?;
        let held = std::mem::take(&mut rule.held);
        let n = held.len();
        for packet in held {
            log.push(agenda.now(), EventKind::SegmentReleased { fault: id, segment: packet.logged(hosts) });
            let latency = self.link(packet.from, packet.to).latency();
            let slot = self.park(packet);
            agenda.schedule(agenda.now() + latency, Item::Arrival(slot));
        }
        Ok(n)
    }

    // ----- departures -----

    /// A segment leaves a host: log it, apply fault rules and the link,
    /// schedule its arrival (or arrivals). Returns the segment's id.
    pub(super) fn launch(
        &mut self,
        departure: Departure,
        hosts: &Hosts,
        rng: &mut ChaCha8Rng,
        agenda: &mut Agenda,
        log: &mut EventLog,
    ) -> u64 {
        let Departure { from, dst_ip, bytes, mut segment, origin, connection, delay: extra_delay } = departure;
        let now = agenda.now();
        let id = self.next_segment_id;
        self.next_segment_id += 1;
        if let Some(bytes) = bytes.as_ref().filter(|b| b.len() >= 18) {
            segment.checksum = u16::from_be_bytes([bytes[16], bytes[17]]);
        }
        let src_ip = hosts.ip(from);
        let to = hosts.by_ip(dst_ip);
        let bytes = bytes.map(Box::new);
        let mut packet = InFlight { id, from, to: to.unwrap_or(from), src_ip, dst_ip, bytes, segment, origin };
        log.push(now, EventKind::SegmentSent { connection, segment: packet.logged(hosts) });
        let Some(to) = to else {
            let segment = packet.logged(hosts);
            log.push(now, EventKind::SegmentDropped { reason: DropReason::NoRoute, fault: None, segment });
            return id;
        };

        // Fault rules, in the order they were added: every rule counts, the first in turn acts.
        let mut action = None;
        for rule in &mut self.faults {
            if rule.consider(from, Some(to), &packet.segment) && action.is_none() {
                action = Some((rule.id, rule.spec.action, rule.spec.delay_ns));
            }
        }
        let mut delay = extra_delay;
        let mut copies = 1;
        let mut dup_fault = None;
        let mut corrupted = false;
        match action {
            Some((fault, FaultAction::Drop, _)) => {
                let segment = packet.logged(hosts);
                log.push(now, EventKind::SegmentDropped { reason: DropReason::Fault, fault: Some(fault), segment });
                return id;
            }
            Some((fault, FaultAction::Hold, _)) => {
                log.push(now, EventKind::SegmentHeld { fault, segment: packet.logged(hosts) });
                if let Some(rule) = self.faults.iter_mut().find(|f| f.id == fault) {
                    rule.held.push(packet);
                }
                return id;
            }
            Some((fault, FaultAction::Delay, delay_ns)) => {
                log.push(now, EventKind::SegmentDelayed { fault, delay_ns, segment: packet.logged(hosts) });
                delay += Duration::from_nanos(delay_ns);
            }
            Some((fault, FaultAction::Duplicate, _)) => {
                copies = 2;
                dup_fault = Some(fault);
            }
            Some((_, FaultAction::Corrupt, _)) => {
                let flipped = flip_bit(rng, packet.bytes());
                packet.bytes = Some(Box::new(flipped));
                corrupted = true;
            }
            None => {}
        }

        // The link's impairments, drawn from the seeded RNG in a fixed order.
        let params = self.link(from, to).clone();
        if params.loss > 0.0 && chance(rng, params.loss) {
            let segment = packet.logged(hosts);
            log.push(now, EventKind::SegmentDropped { reason: DropReason::Loss, fault: None, segment });
            return id;
        }
        // Drawn whether or not a fault already corrupted the segment (the RNG
        // sequence stays the same), but one flipped bit is enough: a second
        // flip could cancel the first in the ones' complement sum (the same
        // bit position, opposite directions) and let damaged octets through
        // a checksum that is meant to catch them here.
        if params.corrupt > 0.0 && chance(rng, params.corrupt) && !corrupted {
            let flipped = flip_bit(rng, packet.bytes());
            packet.bytes = Some(Box::new(flipped));
        }
        if params.duplicate > 0.0 && chance(rng, params.duplicate) {
            copies = 2;
        }
        let start = now + delay;
        // (The link is looked up again only when it has a bandwidth to keep busy.)
        let transmitter = match (params.bandwidth_bps > 0).then(|| self.links.get_mut(&(from, to))).flatten() {
            Some(dir) => match dir.bottleneck {
                Some((slot, forward)) => match self.bottlenecks.get_mut(slot as usize).and_then(Option::as_mut) {
                    Some(shared) if forward => Some(&mut shared.forward),
                    Some(shared) => Some(&mut shared.reverse),
                    None => Some(&mut dir.tx),
                },
                None => Some(&mut dir.tx),
            },
            None => None,
        };
        let leaves = match transmitter {
            Some(tx) => match tx.admit(start, packet.wire_len(), &params) {
                Admission::Sent(leaves) => leaves,
                Admission::Queued { transmit, leaves, bytes, packets } => {
                    log.push(
                        now,
                        EventKind::SegmentQueued {
                            queued_bytes: bytes,
                            queued_packets: packets,
                            transmit_ns: transmit.as_nanos(),
                            segment: packet.logged(hosts),
                        },
                    );
                    leaves
                }
                Admission::Full => {
                    let segment = packet.logged(hosts);
                    log.push(now, EventKind::SegmentDropped { reason: DropReason::QueueFull, fault: None, segment });
                    return id;
                }
            },
            None => start,
        };
        if copies == 2 {
            log.push(now, EventKind::SegmentDuplicated { fault: dup_fault, segment: packet.logged(hosts) });
            // The copy is scheduled first, then the original (as ever: the RNG draws follow that order).
            self.cross(packet.clone(), leaves, &params, rng, agenda);
        }
        self.cross(packet, leaves, &params, rng, agenda);
        id
    }

    /// A packet that left its link's transmitter at `leaves` crosses the
    /// link: latency, then jitter and reordering as drawn; its arrival is scheduled.
    fn cross(
        &mut self,
        packet: InFlight,
        leaves: Instant,
        params: &LinkParams,
        rng: &mut ChaCha8Rng,
        agenda: &mut Agenda,
    ) {
        let mut at = leaves + params.latency();
        let jitter = params.jitter().as_nanos();
        if jitter > 0 {
            at += Duration::from_nanos(rng.next_u64() % (jitter + 1));
        }
        if params.reorder > 0.0 && chance(rng, params.reorder) {
            at += params.latency() + Duration::from_millis(1);
        }
        let slot = self.park(packet);
        agenda.schedule(at, Item::Arrival(slot));
    }

    // ----- packets on their way -----

    /// Keeps a packet on its way in a free slot.
    fn park(&mut self, packet: InFlight) -> u32 {
        match self.free_slots.pop() {
            Some(slot) => {
                self.in_flight[slot as usize] = Some(packet);
                slot
            }
            None => {
                self.in_flight.push(Some(packet));
                (self.in_flight.len() - 1) as u32
            }
        }
    }

    /// Takes the packet out of its slot (each slot is scheduled exactly once).
    pub(super) fn unpark(&mut self, slot: u32) -> Option<InFlight> {
        let packet = self.in_flight.get_mut(slot as usize)?.take()?;
        self.free_slots.push(slot);
        Some(packet)
    }
}
