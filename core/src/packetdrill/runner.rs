//! Runs a parsed script against tcplab's TCP: the tested stack is a tcplab
//! host in a [`World`], the script is a raw peer on a zero-latency link, and
//! the script's timeline is played in virtual time.
//!
//! Sequence numbers follow packetdrill: inbound (`<`) sequence numbers are
//! the script's own (its ISN is 0) and their `ack` is relative to the tested
//! stack's ISN; outbound (`>`) lines the other way round. The tested stack's
//! ISN is learnt from each SYN it sends (before any, the profile's fixed ISN
//! is used, so that a RST to a closed port maps the same way).

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use bytes::Bytes;

use super::ast::{Direction, Event, EventKind, Expr, Packet, PdOption, Script, Syscall, Time, TimePoint};
use crate::engine::{ConnError, Flags, Isn, Keepalive, Profile, Segment, StackError, State, TcpOption, UserError};
use crate::ladder::ladder;
use crate::sim::{
    ConnId, ConnectSpec, HostKind, InjectSpec, LinkParams, ListenSpec, Side, Unaccepted, World, WorldConfig, WorldError,
};
use crate::time::{Duration, Instant};

/// The tested host's name in the world (the left line of the ladder).
pub const TESTED: &str = "tcplab";
/// The script's raw host (the right line of the ladder).
pub const PEER: &str = "script";
/// The tested host's address.
pub const TESTED_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);
/// The script's host's address.
pub const PEER_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// packetdrill's default port for `bind` and for the remote end of `connect`.
const SCRIPT_PORT: u16 = 8080;
/// The script's port when it plays the client of a listening socket.
const PEER_EPHEMERAL: u16 = 49_999;
/// The tested stack's ISN until it sends a SYN.
pub const TESTED_ISN: u32 = 1_000_000;
/// packetdrill's default tolerance (`--tolerance_usecs`).
const DEFAULT_TOLERANCE_US: i64 = 4_000;
/// How long a blocking call may wait for its condition, in virtual time.
const BLOCK_LIMIT_NS: u64 = 600 * 1_000_000_000;

/// How to run scripts.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// The tested stack's profile at the start of each script (`sysctl` lines change a copy).
    pub profile: Profile,
    /// Tolerance for outbound packets, overriding the script's `--tolerance_usecs`.
    pub tolerance_us: Option<i64>,
    /// Leave TCP options of outbound packets uncompared (by default they are:
    /// the same options in the same order, EOL padding aside, TSval not
    /// compared, and a script's `<...>` matches any).
    pub ignore_options: bool,
    /// Whether a script that names its own profile runs under it instead of `profile`.
    pub script_profile: ScriptProfilePolicy,
    /// What one script may make the world and the runner do.
    pub budget: ScriptBudget,
}

/// What one script may do: the scheduled items the world processes for it
/// in all (a script that keeps a busy world running stops there, with a
/// FAIL naming the limit), the items per call of [`ScriptRun::step`] (a
/// turn: the run comes back to its caller and continues on the next call),
/// and the octets one `write` may ask for (the runner allocates them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScriptBudget {
    /// Items in all (the server's `run_max_events`).
    pub max_items: u64,
    /// Items per turn.
    pub items_per_turn: u64,
    /// Octets of one `write`/`send` (the server's `max_write_bytes`).
    pub max_write_bytes: usize,
}

impl Default for ScriptBudget {
    /// The server's defaults, in one turn (the CLI, tests).
    fn default() -> Self {
        ScriptBudget {
            max_items: crate::sim::DEFAULT_RUN_MAX_ITEMS,
            items_per_turn: u64::MAX,
            max_write_bytes: 16 * 1024 * 1024,
        }
    }
}

/// The budget limit that stopped a script: its configuration name and value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScriptLimit {
    /// `run_max_events` or `max_write_bytes`.
    pub name: &'static str,
    /// Its value.
    pub max: u64,
}

/// Whether a script may choose the profile it runs under (see
/// [`super::kernel::script_profile`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ScriptProfilePolicy {
    /// The run's profile applies (the caller named one).
    #[default]
    Ignore,
    /// A `--profile=NAME` header line applies.
    Header,
    /// A `--profile=NAME` header line, else the kernel whose sysctls the script writes.
    HeaderOrSysctl,
}

/// The first difference between the script and what tcplab did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The script's line.
    pub line: usize,
    /// The line as written.
    pub expected: String,
    /// What tcplab did instead, in the script's syntax (`None`: nothing).
    pub actual: Option<String>,
    /// Why it does not match.
    pub reason: String,
    /// Virtual time of the mismatch, in nanoseconds.
    pub t_ns: u64,
    /// The ASCII ladder up to the mismatch.
    pub ladder: String,
}

/// A script's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every line matched.
    Pass,
    /// A line did not match.
    Fail(Box<Failure>),
    /// The script needs something tcplab does not model: the feature and its line.
    Skip {
        /// The line that needs it.
        line: usize,
        /// What is not supported.
        feature: String,
    },
    /// The script itself is broken (it does not parse, or cannot be read):
    /// nothing was asked of tcplab's TCP, so this is no verdict on it.
    Error {
        /// The line at fault (0 when the file could not be read).
        line: usize,
        /// The column at fault (0 when unknown).
        column: usize,
        /// What is wrong with the script.
        message: String,
    },
}

/// The result of one script.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The script's path.
    pub path: String,
    /// PASS, FAIL or SKIP.
    pub verdict: Verdict,
    /// Virtual time at the end, in nanoseconds.
    pub virtual_ns: u64,
    /// The ladder of the whole run.
    pub ladder: String,
    /// Every event of the run (empty when it never started), for `--pcap`.
    pub events: Vec<crate::sim::Event>,
    /// The profile the script chose for itself (header or sysctl tree), when it did.
    pub profile: Option<String>,
    /// The budget limit that stopped the script (its verdict is then a FAIL saying so).
    pub limit: Option<ScriptLimit>,
}

/// Why a line stopped the run, or paused it.
enum Stop {
    Fail {
        actual: Option<String>,
        reason: String,
    },
    Skip(String),
    /// The budget is spent: the script stops here.
    Limit(ScriptLimit),
    /// The turn's items are spent before the line did anything: run the
    /// same line again on the next turn.
    Yield,
}

type Step<T = ()> = Result<T, Stop>;

fn fail<T>(reason: impl Into<String>) -> Step<T> {
    Err(Stop::Fail { actual: None, reason: reason.into() })
}

fn skip<T>(feature: impl Into<String>) -> Step<T> {
    Err(Stop::Skip(feature.into()))
}

#[derive(Debug, Clone)]
enum FdKind {
    Fresh,
    Listener { id: u64, port: u16 },
    Conn { conn: ConnId, side: Side },
}

#[derive(Debug, Clone)]
struct Fd {
    kind: FdKind,
    nonblocking: bool,
    port: Option<u16>,
    linger_abort: bool,
    mss: Option<u16>,
    /// TCP_NODELAY was set.
    nodelay: bool,
    /// TCP_KEEPINIT, in ms: the connection-establishment limit of what this socket opens.
    keepinit_ms: Option<u64>,
    /// SO_KEEPALIVE was set, with the TCP_KEEP* values given.
    keepalive: Option<Keepalive>,
    /// The TCP_KEEP* values, SO_KEEPALIVE on or not (FreeBSD's defaults until set).
    keepalive_settings: Keepalive,
    /// Octets of the end's `received` log already read.
    consumed: usize,
    /// The error SO_ERROR already reported (it reports each once).
    error_reported: bool,
}

/// A blocking call waiting for the stack while later script lines run (as
/// packetdrill runs a blocking call on a thread of its own): it must return
/// within its line's time (`0.1...0.2 connect(...) = 0` returns at 0.2).
struct Parked {
    call: Syscall,
    line: usize,
    fd: i64,
    /// The earliest and latest world time it may return at (tolerance included).
    window_ns: (u64, u64),
}

/// A packet that reached the script's host.
struct Sniffed {
    t_ns: u64,
    segment: Segment,
}

struct Runner {
    world: World,
    profile: Profile,
    ignore_options: bool,
    /// World time of the script's time 0 (a session's world may be past 0).
    base_ns: u64,
    fds: BTreeMap<i64, Fd>,
    accepted: HashSet<ConnId>,
    sniffed: VecDeque<Sniffed>,
    local_port: u16,
    remote_port: u16,
    /// The port `bind` gives: packetdrill's 8080, or the next one the tested
    /// host never used when an earlier script in the same world did.
    bind_port: u16,
    local_isn: u32,
    /// tcplab's TSval less the script's for the same segment: the script's
    /// TSecr values are in its own numbers and are shifted by this, as
    /// packetdrill maps them.
    ts_delta: u32,
    /// The endpoint `%{ }%` asserts look at: the last one a call opened
    /// (kept after its fd is closed, as the endpoint lives on).
    current: Option<FdKind>,
    tolerance_ns: u64,
    /// The time window of the system call line being run (world ns).
    call_window_ns: (u64, u64),
    /// The line being run.
    current_line: usize,
    /// A blocking call still waiting (at most one, as in packetdrill).
    parked: Option<Parked>,
    /// How a parked call ended when that differed from its line: the line and why.
    parked_failure: Option<(usize, Stop)>,
    budget: ScriptBudget,
    /// Items the script may still process in all, and in this turn.
    items_left: u64,
    turn_left: u64,
    /// Until when a blocking accept() being run waits (fixed on its first turn).
    accept_until: Option<u64>,
    /// The largest send buffer a socket of this run can have (a write
    /// allocates no more than that).
    max_send_buffer: usize,
}

/// Runs one parsed script in a world of its own.
pub fn run_script(script: &Script, opts: &RunOptions) -> Outcome {
    match ScriptRun::new(script, opts) {
        Err(outcome) => *outcome,
        Ok(mut run) => {
            while run.step() {}
            run.finish()
        }
    }
}

/// A script run one event at a time, so that a caller holding the world
/// elsewhere (a session actor) can publish what each event did before the
/// next one: [`ScriptRun::world_mut`] is the world the run acts on.
pub struct ScriptRun {
    script: Script,
    runner: Runner,
    next: usize,
    last_us: i64,
    verdict: Option<Verdict>,
    chosen: Option<String>,
    /// After the last line: until when a call still blocked may return
    /// (fixed on the first turn of that wait).
    final_wait_until: Option<u64>,
    limit: Option<ScriptLimit>,
}

impl ScriptRun {
    /// A run in a new world with the tested host and the script's raw host.
    ///
    /// # Errors
    /// The outcome at once: a SKIP (not IPv4) or a FAIL (the world cannot be built).
    pub fn new(script: &Script, opts: &RunOptions) -> Result<ScriptRun, Box<Outcome>> {
        let (profile, _) = start_profile(script, opts)?;
        match build_world(&profile) {
            Ok(world) => ScriptRun::in_world(script, opts, world),
            Err(e) => Err(Box::new(failed_at_start(script, format!("cannot build the world: {e}"), None))),
        }
    }

    /// A run in `world`, which has hosts [`TESTED`] (TCP) and [`PEER`] (raw)
    /// at [`TESTED_IP`] and [`PEER_IP`]; the script's time 0 is the world's now.
    ///
    /// # Errors
    /// The outcome at once: a SKIP for a script that is not IPv4.
    pub fn in_world(script: &Script, opts: &RunOptions, world: World) -> Result<ScriptRun, Box<Outcome>> {
        if let Some(v) = script.option("ip_version").filter(|v| *v != "ipv4") {
            let verdict = Verdict::Skip { line: 0, feature: format!("--ip_version={v} (IPv4 only)") };
            return Err(Box::new(Outcome {
                path: script.path.clone(),
                verdict,
                virtual_ns: 0,
                ladder: String::new(),
                events: Vec::new(),
                profile: None,
                limit: None,
            }));
        }
        let (profile, chosen) = start_profile(script, opts)?;
        let tolerance_us = opts
            .tolerance_us
            .or_else(|| script.option("tolerance_usecs").and_then(|v| v.parse().ok()))
            .unwrap_or(DEFAULT_TOLERANCE_US)
            .max(0);
        let base_ns = world.now().as_nanos();
        let bind_port = fresh_bind_port(&world);
        let runner = Runner {
            world,
            profile,
            ignore_options: opts.ignore_options,
            base_ns,
            fds: BTreeMap::new(),
            accepted: HashSet::new(),
            sniffed: VecDeque::new(),
            local_port: SCRIPT_PORT,
            remote_port: PEER_EPHEMERAL,
            bind_port,
            // packetdrill maps the tested stack's numbers only once it has seen that
            // stack's SYN; before that (a RST from a closed port) they are absolute.
            local_isn: 0,
            ts_delta: 0,
            current: None,
            tolerance_ns: tolerance_us as u64 * 1_000,
            call_window_ns: (0, 0),
            current_line: 0,
            parked: None,
            parked_failure: None,
            budget: opts.budget,
            items_left: opts.budget.max_items,
            turn_left: opts.budget.items_per_turn,
            accept_until: None,
            max_send_buffer: 0,
        };
        Ok(ScriptRun {
            script: script.clone(),
            runner,
            next: 0,
            last_us: 0,
            verdict: None,
            chosen,
            final_wait_until: None,
            limit: None,
        })
    }

    /// The world the run acts on (a caller may swap its own in and out).
    pub fn world_mut(&mut self) -> &mut World {
        &mut self.runner.world
    }

    /// Makes the world's now the script's time 0, and picks the bind port
    /// afresh (after another world was swapped in before the first step).
    pub fn start_at_now(&mut self) {
        self.runner.base_ns = self.runner.world.now().as_nanos();
        self.runner.bind_port = fresh_bind_port(&self.runner.world);
    }

    /// Runs the next event, or a turn of it (see [`ScriptBudget`]); `false`
    /// once the script is done (passed or stopped). The tested stack's
    /// connections made meanwhile keep what arrives in their receive buffers
    /// until the script reads it, also in a session's world whose other
    /// connections read at once.
    pub fn step(&mut self) -> bool {
        let auto_read = self.runner.world.set_auto_read_default(false);
        let more = self.step_inner();
        self.runner.world.set_auto_read_default(auto_read);
        more
    }

    fn step_inner(&mut self) -> bool {
        if self.verdict.is_some() {
            return false;
        }
        self.runner.turn_left = self.runner.budget.items_per_turn;
        let Some(event) = self.script.events.get(self.next) else {
            // A call still blocked may yet return within its line's time.
            if let Some(until) = self.runner.parked.as_ref().map(|p| p.window_ns.1) {
                // Bounded: a `*` line allows any time, which is not a time to run to.
                let now = self.runner.world.now().as_nanos();
                let until = *self.final_wait_until.get_or_insert(until.min(now.saturating_add(BLOCK_LIMIT_NS)));
                match self.runner.catch_up(until) {
                    Err(Stop::Yield) if self.runner.parked_failure.is_none() => return true,
                    Err(Stop::Limit(limit)) => {
                        let line = self.runner.parked.as_ref().map_or(0, |p| p.line);
                        self.verdict = Some(self.stopped(line, Stop::Limit(limit)));
                        return false;
                    }
                    _ => {}
                }
            }
            let stopped = self.runner.parked_failure.take().or_else(|| {
                let p = self.runner.parked.take()?;
                let reason = format!("the blocking {}() never returned", p.call.name);
                Some((p.line, Stop::Fail { actual: None, reason }))
            });
            self.verdict = Some(match stopped {
                Some((line, stop)) => self.stopped(line, stop),
                None => Verdict::Pass,
            });
            return false;
        };
        self.next += 1;
        let last_us = self.last_us;
        let (lo_us, hi_us, base_us) = match event.time {
            Time::Absolute(t) => (t, t, t),
            Time::Relative(d) => (last_us.saturating_add(d), last_us.saturating_add(d), last_us.saturating_add(d)),
            Time::Range(a, b) => {
                let point = |p| match p {
                    TimePoint::Absolute(t) => t,
                    TimePoint::Relative(d) => last_us.saturating_add(d),
                };
                (point(a), point(b), point(b))
            }
            Time::Any => (0, i64::MAX / 4, last_us),
        };
        self.last_us = base_us;
        let result = self.runner.event(event, lo_us, hi_us);
        if event.time == Time::Any && result.is_ok() {
            // packetdrill: a `*` line's time is when it happened, and the
            // next `+N` counts from there.
            let now_ns = self.runner.world.now().as_nanos().saturating_sub(self.runner.base_ns);
            self.last_us = i64::try_from(now_ns / 1000).unwrap_or(i64::MAX / 4);
        }
        if matches!(result, Err(Stop::Yield)) && self.runner.parked_failure.is_none() {
            // The line has not acted yet: it runs again on the next turn.
            self.next -= 1;
            self.last_us = last_us;
            return true;
        }
        // A parked blocking call that returned wrongly (or not in time) while
        // this line ran is the first difference: it happened before this line's own.
        let stopped = match (self.runner.parked_failure.take(), result) {
            (Some(parked), _) => parked,
            (None, Err(stop)) => (event.line, stop),
            (None, Ok(())) => return true,
        };
        self.verdict = Some(self.stopped(stopped.0, stopped.1));
        false
    }

    /// The verdict for a run stopped at `line` (the script's line as written,
    /// the virtual time and the ladder so far with a failure).
    fn stopped(&mut self, line: usize, stop: Stop) -> Verdict {
        let (actual, reason) = match stop {
            Stop::Skip(feature) => return Verdict::Skip { line, feature },
            Stop::Fail { actual, reason } => (actual, reason),
            Stop::Limit(limit) => {
                self.limit = Some(limit);
                let what = match limit.name {
                    "max_write_bytes" => format!("{} octets in one write", limit.max),
                    _ => format!("{} scheduled items in one script", limit.max),
                };
                (None, format!("stopped at the limit {} = {what}", limit.name))
            }
            Stop::Yield => (None, "the run paused where it cannot resume (a bug of the runner)".to_string()),
        };
        Verdict::Fail(Box::new(Failure {
            line,
            expected: self.script.events.iter().find(|e| e.line == line).map_or_else(String::new, |e| e.text.clone()),
            actual,
            reason,
            t_ns: self.runner.world.now().as_nanos(),
            ladder: self.runner.ladder(),
        }))
    }

    /// The outcome, with the ladder of the world's events still in it.
    pub fn finish(self) -> Outcome {
        let ladder = self.runner.ladder();
        Outcome {
            path: self.script.path,
            verdict: self.verdict.unwrap_or(Verdict::Pass),
            virtual_ns: self.runner.world.now().as_nanos(),
            ladder,
            events: self.runner.world.events().to_vec(),
            profile: self.chosen,
            limit: self.limit,
        }
    }
}

/// packetdrill's bind port (8080), or the first port above it that the
/// tested host has never listened on nor used for a connection: a second
/// script in the same session then meets neither the first one's listener
/// nor its connections (in TIME-WAIT, say). Scripts never show their ports.
fn fresh_bind_port(world: &World) -> u16 {
    let Ok(host) = world.host_id(TESTED) else { return SCRIPT_PORT };
    let mut used: HashSet<u16> = world.listeners().iter().filter(|l| l.host == host).map(|l| l.port).collect();
    for conn in world.connections() {
        for side in [Side::Client, Side::Server] {
            if conn.end(side).is_some_and(|end| end.host == host) {
                if let Ok(status) = world.status(conn.id, side) {
                    used.insert(status.local_port);
                }
            }
        }
    }
    (SCRIPT_PORT..=u16::MAX).find(|p| !used.contains(p)).unwrap_or(SCRIPT_PORT)
}

/// A FAIL before the first line ran.
fn failed_at_start(script: &Script, reason: String, profile: Option<String>) -> Outcome {
    let f = Failure { line: 0, expected: String::new(), actual: None, reason, t_ns: 0, ladder: String::new() };
    Outcome {
        path: script.path.clone(),
        verdict: Verdict::Fail(Box::new(f)),
        virtual_ns: 0,
        ladder: String::new(),
        events: Vec::new(),
        profile,
        limit: None,
    }
}

/// The tested stack's starting profile (the run's, or the one the script
/// names when the policy lets it) and the name the script chose, if any.
fn start_profile(script: &Script, opts: &RunOptions) -> Result<(Profile, Option<String>), Box<Outcome>> {
    use super::kernel::{ScriptProfileSource, script_profile};
    use crate::profiles::named_profile;
    let chosen = match (opts.script_profile, script_profile(script)) {
        (ScriptProfilePolicy::Ignore, _) | (_, None) => None,
        (ScriptProfilePolicy::Header, Some((_, ScriptProfileSource::SysctlTree))) => None,
        (_, Some((name, _))) => Some(name),
    };
    let Some(name) = chosen else { return Ok((tested_profile(&opts.profile), None)) };
    match named_profile(&name) {
        Ok(profile) => Ok((tested_profile(&profile), Some(name))),
        Err(e) => Err(Box::new(failed_at_start(script, format!("--profile={name}: {e}"), Some(name)))),
    }
}

/// A random ISN becomes the fixed one scripts expect.
fn tested_profile(profile: &Profile) -> Profile {
    let mut profile = profile.clone();
    if let Isn::Random = profile.isn {
        profile.isn = Isn::Fixed(TESTED_ISN);
    }
    profile
}

fn build_world(profile: &Profile) -> Result<World, WorldError> {
    let mut world =
        World::new(WorldConfig { seed: 1, profile: profile.clone(), auto_read: false, ..WorldConfig::default() })?;
    world.add_host(TESTED, TESTED_IP, HostKind::Tcp)?;
    world.add_host(PEER, PEER_IP, HostKind::Raw)?;
    world.set_link(TESTED, PEER, LinkParams { latency_ms: 0.0, ..LinkParams::default() })?;
    Ok(world)
}

fn us_to_ns(us: i64) -> u64 {
    u64::try_from(us).unwrap_or(0).saturating_mul(1_000)
}

/// Script flag letters as control bits.
pub fn parse_flags(letters: &str) -> Option<Flags> {
    let mut flags = Flags::NONE;
    for c in letters.chars() {
        let f = match c {
            'S' => Flags::SYN,
            'F' => Flags::FIN,
            'R' => Flags::RST,
            'P' => Flags::PSH,
            '.' => Flags::ACK,
            'U' => Flags::URG,
            'E' => Flags::ECE,
            'W' => Flags::CWR,
            _ => return None,
        };
        flags |= f;
    }
    Some(flags)
}

fn flag_letters(flags: Flags) -> String {
    let mut s = String::new();
    for (f, c) in [
        (Flags::SYN, 'S'),
        (Flags::FIN, 'F'),
        (Flags::RST, 'R'),
        (Flags::PSH, 'P'),
        (Flags::URG, 'U'),
        (Flags::ECE, 'E'),
        (Flags::CWR, 'W'),
        (Flags::ACK, '.'),
    ] {
        if flags.contains(f) {
            s.push(c);
        }
    }
    s
}

fn to_engine_option(o: &PdOption) -> TcpOption {
    match o {
        PdOption::Mss(v) => TcpOption::Mss { value: *v },
        PdOption::Nop => TcpOption::Nop,
        PdOption::Eol => TcpOption::Eol,
        PdOption::Wscale(v) => TcpOption::WindowScale { value: *v },
        PdOption::SackOk => TcpOption::SackPermitted,
        PdOption::Timestamp { val, ecr } => TcpOption::Timestamps { val: *val, ecr: *ecr },
        PdOption::Sack(blocks) => TcpOption::Sack { blocks: blocks.clone() },
    }
}

fn option_text(o: &TcpOption) -> String {
    match o {
        TcpOption::Eol => "eol".into(),
        TcpOption::Nop => "nop".into(),
        TcpOption::Mss { value } => format!("mss {value}"),
        TcpOption::WindowScale { value } => format!("wscale {value}"),
        TcpOption::SackPermitted => "sackOK".into(),
        TcpOption::Sack { blocks } => {
            let b: Vec<String> = blocks.iter().map(|(l, r)| format!("{l}:{r}")).collect();
            format!("sack {}", b.join(" "))
        }
        TcpOption::Timestamps { val, ecr } => format!("TS val {val} ecr {ecr}"),
        TcpOption::Raw { kind, data } => format!("kind {kind} len {}", data.len() + 2),
    }
}

/// The errno a socket call would report for an engine refusal.
fn errno_for(e: &WorldError) -> &'static str {
    match e {
        WorldError::Stack(StackError::AddressInUse) => "EADDRINUSE",
        WorldError::Stack(StackError::NoFreePort) => "EADDRNOTAVAIL",
        WorldError::Stack(StackError::User(UserError::Failed(c))) => c.errno(),
        WorldError::Stack(StackError::User(UserError::Closing)) => "EPIPE",
        WorldError::Stack(StackError::User(UserError::BufferFull)) => "EWOULDBLOCK",
        WorldError::Stack(StackError::User(UserError::NotConnected)) => "ENOTCONN",
        _ => "EINVAL",
    }
}

/// Errno names that mean the same thing on FreeBSD and Linux.
fn same_errno(a: &str, b: &str) -> bool {
    let norm = |e: &str| if e == "EAGAIN" { "EWOULDBLOCK".to_string() } else { e.to_string() };
    norm(a) == norm(b)
}

impl Runner {
    /// World time of script time `us`.
    fn at(&self, us: i64) -> u64 {
        self.base_ns.saturating_add(us_to_ns(us))
    }

    fn ladder(&self) -> String {
        ladder(self.world.events(), TESTED, PEER, &BTreeMap::new(), &[])
    }

    /// Counts one world item against the budget before it runs: the
    /// script's whole budget, and (when `may_yield`, at a point where the
    /// line has not acted yet) the turn's.
    fn spend(&mut self, may_yield: bool) -> Step {
        if self.items_left == 0 {
            return Err(Stop::Limit(ScriptLimit { name: "run_max_events", max: self.budget.max_items }));
        }
        if may_yield && self.turn_left == 0 {
            return Err(Stop::Yield);
        }
        self.items_left -= 1;
        self.turn_left = self.turn_left.saturating_sub(1);
        Ok(())
    }

    /// One world item, counted; collects what reaches the script.
    fn world_step(&mut self, may_yield: bool) -> Step {
        self.spend(may_yield)?;
        self.world.step();
        self.collect();
        Ok(())
    }

    /// Runs the world up to `t_ns` (within the budget), collecting what
    /// reaches the script: for what follows an action of the line.
    fn run_until(&mut self, t_ns: u64) -> Step {
        self.run_to(t_ns, false)
    }

    /// [`Runner::run_until`] before the line acts: it may end the turn
    /// part-way ([`Stop::Yield`]), to be called again.
    fn catch_up(&mut self, t_ns: u64) -> Step {
        self.run_to(t_ns, true)
    }

    fn run_to(&mut self, t_ns: u64, may_yield: bool) -> Step {
        while self.world.next_event_at().map(Instant::as_nanos).is_some_and(|at| at <= t_ns) {
            self.world_step(may_yield)?;
        }
        self.world.run_until(Instant::from_nanos(t_ns));
        self.collect();
        Ok(())
    }

    fn collect(&mut self) {
        if let Ok(packets) = self.world.take_raw_inbox(PEER) {
            for p in packets {
                if let Ok(segment) = Segment::decode_unverified(&p.bytes) {
                    self.sniffed.push_back(Sniffed { t_ns: p.at.as_nanos(), segment });
                }
            }
        }
        self.poll_parked();
    }

    /// Returns a parked blocking call once the stack lets it: checks when it
    /// returned and what, and keeps the first difference for the step.
    fn poll_parked(&mut self) {
        let Some(parked) = &self.parked else { return };
        let (fd, deadline) = (parked.fd, parked.window_ns.1);
        let is_connect = parked.call.name == "connect";
        let max = parked.call.args.get(2).and_then(Expr::int).unwrap_or(0);
        let peek = recv_peeks(&parked.call);
        let outcome = if is_connect { self.connect_outcome(fd) } else { self.read_outcome(fd, max, peek) };
        let now = self.world.now().as_nanos();
        let Ok(Some(got)) = outcome else {
            if now > deadline {
                // Still blocked after its time: that is the first difference,
                // whatever the lines after it do.
                if let Some(parked) = self.parked.take() {
                    let reason = format!(
                        "the blocking {}() had not returned by {:.6} s",
                        parked.call.name,
                        parked.window_ns.1 as f64 / 1e9
                    );
                    self.parked_failure.get_or_insert((parked.line, Stop::Fail { actual: None, reason }));
                }
            }
            return;
        };
        let Some(parked) = self.parked.take() else { return };
        let (lo, hi) = parked.window_ns;
        let result = if now < lo || now > hi {
            Err(Stop::Fail {
                actual: Some(format!("{:.6} {}(...) returned", now as f64 / 1e9, parked.call.name)),
                reason: format!(
                    "the blocking {}() returned at {:.6} s, outside the expected {:.6}..{:.6} s",
                    parked.call.name,
                    now as f64 / 1e9,
                    lo as f64 / 1e9,
                    hi as f64 / 1e9
                ),
            })
        } else {
            self.check_result(&parked.call, got)
        };
        if let Err(stop) = result {
            self.parked_failure.get_or_insert((parked.line, stop));
        }
    }

    /// Parks a blocking call that cannot return yet (see [`Parked`]).
    fn park(&mut self, call: &Syscall, fd: i64) -> Step {
        if self.parked.is_some() {
            return skip(format!("a second blocking call ({}) while one waits", call.name));
        }
        let line = self.current_line;
        self.parked = Some(Parked { call: call.clone(), line, fd, window_ns: self.call_window_ns });
        Ok(())
    }

    fn event(&mut self, event: &Event, lo_us: i64, hi_us: i64) -> Step {
        match &event.kind {
            EventKind::Packet(p) if p.direction == Direction::Outbound => self.expect(p, lo_us, hi_us),
            EventKind::Packet(p) => {
                self.catch_up(self.at(lo_us))?;
                self.inject(p)
            }
            EventKind::Syscall(call) => {
                self.catch_up(self.at(lo_us))?;
                let tol = self.tolerance_ns;
                // A blocking call returns at the end of its line's time (packetdrill's `start...end`).
                self.call_window_ns = (self.at(hi_us).saturating_sub(tol), self.at(hi_us).saturating_add(tol));
                self.current_line = event.line;
                if self.parked.is_some() {
                    return skip(format!("{}() while a blocking call waits", call.name));
                }
                self.syscall(call)?;
                let now = self.world.now().as_nanos();
                self.run_until(now)
            }
            EventKind::Shell(cmd) => {
                self.catch_up(self.at(lo_us))?;
                self.shell(cmd)
            }
            EventKind::Python(code) => {
                self.catch_up(self.at(lo_us))?;
                self.python(code)
            }
        }
    }

    // ----- packets -----

    fn inject(&mut self, p: &Packet) -> Step {
        let Some(flags) = parse_flags(&p.flags) else {
            return skip(format!("TCP flags {:?}", p.flags));
        };
        let ack = p.ack.map_or(0, |a| a.wrapping_add(self.local_isn));
        // SACK blocks acknowledge tcplab's data: relative to its ISN, as seq
        // and ack are; TSecr echoes tcplab's clock in the script's numbers.
        let (local_isn, ts_delta) = (self.local_isn, self.ts_delta);
        let options = p
            .options
            .clone()
            .flatten()
            .unwrap_or_default()
            .iter()
            .map(|o| match to_engine_option(o) {
                TcpOption::Sack { blocks } => TcpOption::Sack {
                    blocks: blocks
                        .iter()
                        .map(|(l, r)| (l.wrapping_add(local_isn), r.wrapping_add(local_isn)))
                        .collect(),
                },
                TcpOption::Timestamps { val, ecr } if ecr != 0 => {
                    TcpOption::Timestamps { val, ecr: ecr.wrapping_add(ts_delta) }
                }
                other => other,
            })
            .collect();
        let spec = InjectSpec {
            from: PEER.into(),
            to: TESTED.into(),
            src_port: self.remote_port,
            dst_port: self.local_port,
            seq: p.start,
            ack,
            flags,
            window: p.win.map_or(65_535, |w| w.min(65_535) as u16),
            urgent: 0,
            options,
            payload: Bytes::from(vec![0u8; p.len as usize]),
            delay: Duration::ZERO,
        };
        if let Err(e) = self.world.inject(spec) {
            return fail(format!("cannot inject: {e}"));
        }
        let now = self.world.now().as_nanos();
        self.run_until(now)
    }

    fn describe(&self, s: &Segment) -> String {
        let mut text = format!(
            "{} {}:{}({})",
            flag_letters(s.flags),
            s.seq.0.wrapping_sub(self.local_isn),
            s.seq.0.wrapping_sub(self.local_isn).wrapping_add(s.payload.len() as u32),
            s.payload.len()
        );
        if s.flags.contains(Flags::ACK) {
            let _ = write!(text, " ack {}", s.ack.0);
        }
        let _ = write!(text, " win {}", s.window);
        if !s.options.is_empty() {
            let opts: Vec<String> = s.options.iter().map(option_text).collect();
            let _ = write!(text, " <{}>", opts.join(","));
        }
        text
    }

    fn expect(&mut self, p: &Packet, lo_us: i64, hi_us: i64) -> Step {
        let tol = self.tolerance_ns;
        let lo = self.at(lo_us).saturating_sub(tol);
        let hi = self.at(hi_us).saturating_add(tol);
        while self.sniffed.is_empty() {
            match self.world.next_event_at().map(Instant::as_nanos) {
                // Nothing has been checked yet: the wait may end the turn.
                Some(at) if at <= hi => self.world_step(true)?,
                _ => {
                    self.run_until(hi)?;
                    return fail(format!("no segment from tcplab by {:.6} s", hi as f64 / 1e9));
                }
            }
        }
        let Some(got) = self.sniffed.pop_front() else {
            return fail("no segment");
        };
        let Some(flags) = parse_flags(&p.flags) else {
            return skip(format!("TCP flags {:?}", p.flags));
        };
        let s = &got.segment;
        if s.flags.contains(Flags::SYN) && flags.contains(Flags::SYN) {
            self.local_isn = s.seq.0.wrapping_sub(p.start);
        }
        let actual = Some(format!("{:.6} {}", got.t_ns as f64 / 1e9, self.describe(s)));
        let mismatch = |reason: String| Err(Stop::Fail { actual: actual.clone(), reason });
        if got.t_ns < lo || got.t_ns > hi {
            return mismatch(format!(
                "sent at {:.6} s, outside the expected {:.6}..{:.6} s",
                got.t_ns as f64 / 1e9,
                lo as f64 / 1e9,
                hi as f64 / 1e9
            ));
        }
        if s.dst_port != self.remote_port || s.src_port != self.local_port {
            return mismatch(format!(
                "ports {} -> {}, expected {} -> {}",
                s.src_port, s.dst_port, self.local_port, self.remote_port
            ));
        }
        if s.flags != flags {
            return mismatch(format!("flags {}, expected {}", flag_letters(s.flags), p.flags));
        }
        let script_ts = p.options.iter().flatten().flatten().find_map(|o| match o {
            PdOption::Timestamp { val, .. } => Some(*val),
            _ => None,
        });
        if let (Some(script), Some((actual, _))) = (script_ts, s.timestamps()) {
            self.ts_delta = actual.wrapping_sub(script);
        }
        let seq = s.seq.0.wrapping_sub(self.local_isn);
        if seq != p.start {
            return mismatch(format!("seq {seq}, expected {}", p.start));
        }
        if s.payload.len() as u32 != p.len || p.end != p.start.wrapping_add(p.len) {
            return mismatch(format!("{} octets of data, expected {}", s.payload.len(), p.len));
        }
        if let Some(ack) = p.ack {
            if s.ack.0 != ack {
                return mismatch(format!("ack {}, expected {ack}", s.ack.0));
            }
        }
        if let Some(win) = p.win {
            if u32::from(s.window) != win {
                return mismatch(format!("win {}, expected {win}", s.window));
            }
        }
        if !self.ignore_options {
            if let Some(Some(expected)) = &p.options {
                if !options_match(expected, &s.options) {
                    return mismatch("TCP options differ".to_string());
                }
            }
        }
        Ok(())
    }

    // ----- system calls -----

    fn fd_arg(&self, call: &Syscall) -> Step<i64> {
        match call.args.first().and_then(Expr::int) {
            Some(fd) if self.fds.contains_key(&fd) => Ok(fd),
            Some(fd) => fail(format!("{}: fd {fd} is not open", call.name)),
            None => skip(format!("{} with a symbolic fd", call.name)),
        }
    }

    fn fd(&mut self, fd: i64) -> Step<&mut Fd> {
        match self.fds.get_mut(&fd) {
            Some(f) => Ok(f),
            None => fail(format!("fd {fd} is not open")),
        }
    }

    /// Compares a call's outcome (`Ok(value)` or `Err(errno)`) with the script's.
    fn check_result(&self, call: &Syscall, got: Result<i64, &str>) -> Step {
        let expected = match (&call.result, call.errno.as_deref()) {
            (Expr::Int(-1), Some(errno)) => Err(errno.to_string()),
            (Expr::Int(n), _) => Ok(*n),
            (Expr::Ellipsis, _) => return Ok(()),
            (other, _) => return skip(format!("{} result {other:?}", call.name)),
        };
        let ok = match (&expected, &got) {
            (Ok(a), Ok(b)) => a == b,
            (Err(a), Err(b)) => same_errno(a, b),
            _ => false,
        };
        if ok {
            return Ok(());
        }
        let actual = match got {
            Ok(v) => format!("{}(...) = {v}", call.name),
            Err(e) => format!("{}(...) = -1 {e}", call.name),
        };
        Err(Stop::Fail { actual: Some(actual), reason: "system call result differs".into() })
    }

    fn syscall(&mut self, call: &Syscall) -> Step {
        match call.name.as_str() {
            "socket" => {
                let stream = call.args.get(1).and_then(Expr::name) == Some("SOCK_STREAM");
                if !stream {
                    return skip("socket() other than SOCK_STREAM");
                }
                let fd = (3..).find(|n| !self.fds.contains_key(n)).unwrap_or(3);
                self.fds.insert(
                    fd,
                    Fd {
                        kind: FdKind::Fresh,
                        nonblocking: false,
                        port: None,
                        linger_abort: false,
                        mss: None,
                        nodelay: false,
                        keepinit_ms: None,
                        keepalive: None,
                        keepalive_settings: FREEBSD_KEEPALIVE,
                        consumed: 0,
                        error_reported: false,
                    },
                );
                self.check_result(call, Ok(fd))
            }
            "bind" => {
                let fd = self.fd_arg(call)?;
                self.fd(fd)?.port = Some(self.bind_port);
                self.local_port = self.bind_port;
                self.remote_port = PEER_EPHEMERAL;
                self.check_result(call, Ok(0))
            }
            "listen" => {
                let fd = self.fd_arg(call)?;
                let port = self.fd(fd)?.port.unwrap_or(self.bind_port);
                let mut profile = self.profile.clone();
                if let Some(mss) = self.fd(fd)?.mss {
                    profile.mss = mss;
                }
                if let Some(ms) = self.fd(fd)?.keepinit_ms {
                    profile.keepinit_ms = ms;
                }
                let (nodelay, keepalive) = (self.fd(fd)?.nodelay, self.fd(fd)?.keepalive);
                let spec = ListenSpec {
                    host: TESTED.into(),
                    port,
                    isn: None,
                    profile: Some(profile),
                    backlog: None,
                    nodelay,
                    keepalive,
                };
                match self.world.listen(spec) {
                    Ok(id) => {
                        self.fd(fd)?.kind = FdKind::Listener { id, port };
                        self.current = Some(FdKind::Listener { id, port });
                        self.local_port = port;
                        self.remote_port = PEER_EPHEMERAL;
                        self.check_result(call, Ok(0))
                    }
                    Err(e) => self.check_result(call, Err(errno_for(&e))),
                }
            }
            "connect" => self.connect(call),
            "accept" => self.accept(call),
            "write" | "send" => self.write(call),
            "read" | "recv" => self.read(call),
            "shutdown" => {
                let fd = self.fd_arg(call)?;
                match call.args.get(1).and_then(Expr::name) {
                    Some("SHUT_WR") => {}
                    other => return skip(format!("shutdown({})", other.unwrap_or("?"))),
                }
                let FdKind::Conn { conn, side } = self.fd(fd)?.kind else {
                    return self.check_result(call, Err("ENOTCONN"));
                };
                let r = match self.world.close(conn, side) {
                    Ok(()) => Ok(0),
                    Err(WorldError::Stack(StackError::User(UserError::Closing))) => Ok(0),
                    Err(e) => Err(errno_for(&e)),
                };
                self.check_result(call, r)
            }
            "close" => self.close(call),
            "setsockopt" => self.setsockopt(call),
            "getsockopt" => self.getsockopt(call),
            "fcntl" => self.fcntl(call),
            other => skip(format!("system call {other}()")),
        }
    }

    fn connect(&mut self, call: &Syscall) -> Step {
        let fd = self.fd_arg(call)?;
        let f = self.fd(fd)?.clone();
        let mut profile = self.profile.clone();
        if let Some(mss) = f.mss {
            profile.mss = mss;
        }
        if let Some(ms) = f.keepinit_ms {
            profile.keepinit_ms = ms;
        }
        let spec = ConnectSpec {
            client: TESTED.into(),
            server: PEER.into(),
            port: SCRIPT_PORT,
            client_port: f.port,
            isn: None,
            profile: Some(profile),
            nodelay: f.nodelay,
            keepalive: f.keepalive,
        };
        match self.world.connect(spec) {
            Ok(conn) => {
                let local = self.world.status(conn, Side::Client).map(|s| s.local_port).unwrap_or(SCRIPT_PORT);
                let entry = self.fd(fd)?;
                entry.kind = FdKind::Conn { conn, side: Side::Client };
                entry.port = Some(local);
                self.local_port = local;
                self.remote_port = SCRIPT_PORT;
                self.current = Some(FdKind::Conn { conn, side: Side::Client });
                if f.nonblocking {
                    return self.check_result(call, Err("EINPROGRESS"));
                }
                match self.connect_outcome(fd)? {
                    Some(r) => self.check_result(call, r),
                    None => self.park(call, fd),
                }
            }
            Err(e) => self.check_result(call, Err(errno_for(&e))),
        }
    }

    /// What a blocking connect() on `fd` returns now: 0 once synchronized,
    /// the error once the attempt failed, `None` while it is under way.
    fn connect_outcome(&mut self, fd: i64) -> Step<Option<Result<i64, &'static str>>> {
        let Some((conn, side)) = self.conn_of(fd)? else { return Ok(Some(Err("ENOTCONN"))) };
        let Ok(status) = self.world.status(conn, side) else { return Ok(Some(Err("ECONNREFUSED"))) };
        Ok(match (status.error, status.state) {
            (Some(e), _) => {
                self.fd(fd)?.error_reported = true;
                Some(Err(e.errno()))
            }
            (None, State::SynSent | State::SynReceived) => None,
            (None, State::Closed) => Some(Err("ECONNREFUSED")),
            (None, _) => Some(Ok(0)),
        })
    }

    /// The next connection a listener completed and nobody accepted yet.
    fn ready_connection(&self, port: u16) -> Option<ConnId> {
        self.world
            .connections()
            .into_iter()
            .filter(|c| !self.accepted.contains(&c.id))
            .find(|c| {
                c.server.as_ref().is_some_and(|end| {
                    !matches!(end.state, State::SynReceived | State::Listen | State::Closed)
                        && self.world.status(c.id, Side::Server).is_ok_and(|s| s.local_port == port)
                })
            })
            .map(|c| c.id)
    }

    fn accept(&mut self, call: &Syscall) -> Step {
        let fd = self.fd_arg(call)?;
        let f = self.fd(fd)?.clone();
        let FdKind::Listener { port, .. } = f.kind else {
            return self.check_result(call, Err("EINVAL"));
        };
        let mut ready = self.ready_connection(port);
        if ready.is_none() && !f.nonblocking {
            // Nothing has happened for this line yet: the wait may end the turn
            // and continue on the next (its deadline fixed on the first).
            let limit = *self.accept_until.get_or_insert(self.world.now().as_nanos().saturating_add(BLOCK_LIMIT_NS));
            while ready.is_none() {
                match self.world.next_event_at().map(Instant::as_nanos) {
                    Some(at) if at <= limit => {
                        let seen = self.world.events().len();
                        self.world_step(true)?;
                        // Only a change of state can make a connection ready to accept.
                        let changed = self.world.events()[seen.min(self.world.events().len())..]
                            .iter()
                            .any(|e| matches!(e.kind, crate::sim::EventKind::StateChanged { .. }));
                        if changed {
                            ready = self.ready_connection(port);
                        }
                    }
                    _ => break,
                }
            }
        }
        self.accept_until = None;
        let Some(conn) = ready else {
            return self.check_result(call, Err("EWOULDBLOCK"));
        };
        self.accepted.insert(conn);
        let new_fd = (3..).find(|n| !self.fds.contains_key(n)).unwrap_or(3);
        self.fds.insert(
            new_fd,
            Fd {
                kind: FdKind::Conn { conn, side: Side::Server },
                nonblocking: false,
                port: Some(port),
                linger_abort: false,
                mss: None,
                nodelay: f.nodelay,
                keepinit_ms: f.keepinit_ms,
                keepalive: f.keepalive,
                keepalive_settings: f.keepalive_settings,
                consumed: 0,
                error_reported: false,
            },
        );
        self.current = Some(FdKind::Conn { conn, side: Side::Server });
        self.check_result(call, Ok(new_fd))
    }

    fn conn_of(&mut self, fd: i64) -> Step<Option<(ConnId, Side)>> {
        Ok(match self.fd(fd)?.kind {
            FdKind::Conn { conn, side } => Some((conn, side)),
            _ => None,
        })
    }

    fn write(&mut self, call: &Syscall) -> Step {
        let fd = self.fd_arg(call)?;
        let Some(len) = call.args.get(2).and_then(Expr::int) else {
            return skip(format!("{}() without a length", call.name));
        };
        // The length is checked before anything is allocated for it.
        let len = usize::try_from(len).unwrap_or(0);
        if len > self.budget.max_write_bytes {
            let max = self.budget.max_write_bytes as u64;
            return Err(Stop::Limit(ScriptLimit { name: "max_write_bytes", max }));
        }
        let Some((conn, side)) = self.conn_of(fd)? else {
            return self.check_result(call, Err("ENOTCONN"));
        };
        // Only what the send buffer can take is allocated (the rest would be
        // refused anyway): a script of many huge writes costs what they queue.
        self.max_send_buffer = self.max_send_buffer.max(self.profile.send_buffer as usize);
        let buffered = self.world.status(conn, side).map_or(0, |s| s.send_buffered);
        let room = self.max_send_buffer.saturating_sub(buffered).max(1);
        let data = vec![0u8; len.min(room)];
        let r = match self.world.send(conn, side, &data) {
            Ok(n) => Ok(n as i64),
            // A connection that failed reports its error; one closed normally, EPIPE.
            Err(e) => Err(match self.world.status(conn, side) {
                Ok(status) if status.error.is_some() => status.error.map_or("EIO", ConnError::errno),
                Ok(status) if status.state == State::Closed => "EPIPE",
                _ => errno_for(&e),
            }),
        };
        self.check_result(call, r)
    }

    fn read(&mut self, call: &Syscall) -> Step {
        let fd = self.fd_arg(call)?;
        let Some(max) = call.args.get(2).and_then(Expr::int) else {
            return skip(format!("{}() without a length", call.name));
        };
        if call.name == "recv" {
            match call.args.get(3) {
                None | Some(Expr::Int(0)) => {}
                Some(Expr::Name(flag)) if flag == "MSG_PEEK" => {}
                Some(other) => return skip(format!("recv() flags {other:?}")),
            }
        }
        let nonblocking = self.fd(fd)?.nonblocking;
        match self.read_outcome(fd, max, recv_peeks(call))? {
            Some(r) => self.check_result(call, r),
            None if nonblocking => self.check_result(call, Err("EWOULDBLOCK")),
            None => self.park(call, fd),
        }
    }

    /// What read() on `fd` returns now (consuming what it returns unless
    /// `peek`, recv()'s MSG_PEEK): data, 0 at the end of the stream, a
    /// pending error; `None` when it would block. Data waits in the tested
    /// stack's receive buffer (narrowing its window) until read; what an end
    /// had not read when it closed was moved to its `received` log.
    fn read_outcome(&mut self, fd: i64, max: i64, peek: bool) -> Step<Option<Result<i64, &'static str>>> {
        let consumed = self.fd(fd)?.consumed;
        let Some((conn, side)) = self.conn_of(fd)? else {
            return Ok(Some(Err("ENOTCONN")));
        };
        let logged = self.world.received(conn, side).map(|r| r.len().saturating_sub(consumed)).unwrap_or(0);
        let status = self.world.status(conn, side).ok();
        let buffered = status.as_ref().filter(|s| s.state != State::Closed).map_or(0, |s| s.recv_buffered);
        let want = usize::try_from(max).unwrap_or(0);
        if logged + buffered > 0 {
            let n = if peek {
                (logged + buffered).min(want)
            } else if logged > 0 {
                logged.min(want)
            } else {
                self.world.read(conn, side, want).unwrap_or(0)
            };
            if !peek {
                self.fd(fd)?.consumed += n;
            }
            return Ok(Some(Ok(n as i64)));
        }
        Ok(match status {
            Some(s) if s.error.is_some() && !self.fd(fd)?.error_reported => {
                self.fd(fd)?.error_reported = true;
                Some(Err(s.error.map_or("EIO", ConnError::errno)))
            }
            Some(s)
                if matches!(
                    s.state,
                    State::CloseWait | State::LastAck | State::Closing | State::TimeWait | State::Closed
                ) =>
            {
                Some(Ok(0))
            }
            _ => None,
        })
    }

    fn close(&mut self, call: &Syscall) -> Step {
        let fd = self.fd_arg(call)?;
        let Some(f) = self.fds.remove(&fd) else {
            return fail(format!("fd {fd} is not open"));
        };
        match f.kind {
            FdKind::Fresh => {}
            FdKind::Listener { id, port } => {
                let _ = self.world.close_listener(id, Unaccepted::LiveOn);
                // Connections nobody accepted go with the listening socket.
                while let Some(conn) = self.pending_on(port) {
                    self.accepted.insert(conn);
                    let _ = self.world.abort(conn, Side::Server);
                }
            }
            FdKind::Conn { conn, side } => {
                let live =
                    self.world.connection(conn).and_then(|c| c.end(side)).is_some_and(|e| e.state != State::Closed);
                if live {
                    let _ =
                        if f.linger_abort { self.world.abort(conn, side) } else { self.world.close_socket(conn, side) };
                }
            }
        }
        self.check_result(call, Ok(0))
    }

    /// A connection the listener on `port` made that was never accepted and is not CLOSED.
    fn pending_on(&self, port: u16) -> Option<ConnId> {
        self.world
            .connections()
            .into_iter()
            .filter(|c| !self.accepted.contains(&c.id) && c.client.is_none())
            .find(|c| {
                c.server.as_ref().is_some_and(|e| e.state != State::Closed)
                    && self.world.status(c.id, Side::Server).is_ok_and(|s| s.local_port == port)
            })
            .map(|c| c.id)
    }

    fn setsockopt(&mut self, call: &Syscall) -> Step {
        let fd = self.fd_arg(call)?;
        let name = call.args.get(2).and_then(Expr::name).unwrap_or("?").to_string();
        match name.as_str() {
            "SO_REUSEADDR" | "SO_REUSEPORT" => {}
            "TCP_KEEPINIT" => {
                // Seconds, as FreeBSD takes it; it applies to what the socket opens next.
                let Some(secs) = call.args.get(3).and_then(Expr::int).and_then(|v| u64::try_from(v).ok()) else {
                    return skip("TCP_KEEPINIT without a number");
                };
                if secs > 864_000 {
                    return self.check_result(call, Err("EINVAL"));
                }
                self.fd(fd)?.keepinit_ms = Some(secs * 1000);
            }
            "SO_KEEPALIVE" | "TCP_KEEPIDLE" | "TCP_KEEPINTVL" | "TCP_KEEPCNT" => {
                let Some(v) = call.args.get(3).and_then(Expr::int) else {
                    return skip(format!("{name} without a number"));
                };
                let f = self.fd(fd)?;
                let mut k = f.keepalive_settings;
                let on = match name.as_str() {
                    "SO_KEEPALIVE" => v != 0,
                    // FreeBSD takes these in seconds, and they apply whether or not SO_KEEPALIVE is on yet.
                    "TCP_KEEPIDLE" => {
                        k.idle_ms = u64::try_from(v).unwrap_or(0).saturating_mul(1000);
                        f.keepalive.is_some()
                    }
                    "TCP_KEEPINTVL" => {
                        k.interval_ms = u64::try_from(v).unwrap_or(0).saturating_mul(1000);
                        f.keepalive.is_some()
                    }
                    _ => {
                        k.count = u32::try_from(v).unwrap_or(0);
                        f.keepalive.is_some()
                    }
                };
                if k.validate().is_err() {
                    return self.check_result(call, Err("EINVAL"));
                }
                f.keepalive_settings = k;
                f.keepalive = on.then_some(k);
                let (kind, keepalive) = (f.kind.clone(), f.keepalive);
                let done = match kind {
                    FdKind::Conn { conn, side } => self.world.set_keepalive(conn, side, keepalive),
                    FdKind::Listener { id, .. } => self.world.set_listener_keepalive(id, keepalive),
                    FdKind::Fresh => Ok(()),
                };
                if let Err(e) = done {
                    return self.check_result(call, Err(errno_for(&e)));
                }
            }
            "TCP_NODELAY" => {
                let Some(on) = call.args.get(3).and_then(Expr::int).map(|v| v != 0) else {
                    return skip("TCP_NODELAY without a number");
                };
                let f = self.fd(fd)?;
                f.nodelay = on;
                let kind = f.kind.clone();
                let done = match kind {
                    FdKind::Conn { conn, side } => self.world.set_nodelay(conn, side, on),
                    FdKind::Listener { id, .. } => self.world.set_listener_nodelay(id, on),
                    _ => Ok(()),
                };
                if let Err(e) = done {
                    return self.check_result(call, Err(errno_for(&e)));
                }
            }
            "SO_LINGER" => {
                let fields = match call.args.get(3) {
                    Some(Expr::Struct(fields)) => fields.clone(),
                    _ => return skip("SO_LINGER without {l_onoff, l_linger}"),
                };
                let get = |n: &str| fields.iter().find(|(k, _)| k == n).and_then(|(_, v)| v.int());
                let abort = get("l_onoff").unwrap_or(0) != 0 && get("l_linger") == Some(0);
                if get("l_onoff").unwrap_or(0) != 0 && !abort {
                    return skip("SO_LINGER with a non-zero timeout");
                }
                self.fd(fd)?.linger_abort = abort;
            }
            "TCP_MAXSEG" => {
                let Some(mss) = call.args.get(3).and_then(Expr::int).and_then(|m| u16::try_from(m).ok()) else {
                    return skip("TCP_MAXSEG without a number");
                };
                self.fd(fd)?.mss = Some(mss);
            }
            other => return skip(format!("setsockopt {other}")),
        }
        self.check_result(call, Ok(0))
    }

    fn getsockopt(&mut self, call: &Syscall) -> Step {
        let fd = self.fd_arg(call)?;
        let name = call.args.get(2).and_then(Expr::name).unwrap_or("?").to_string();
        match name.as_str() {
            // Buffer sizes are compared leniently: tcplab's buffers are not a kernel's.
            "SO_RCVBUF" | "SO_SNDBUF" => self.check_result(call, Ok(0)),
            "SO_ERROR" => {
                let pending = match self.conn_of(fd)? {
                    Some((conn, side)) if !self.fd(fd)?.error_reported => {
                        self.world.status(conn, side).ok().and_then(|s| s.error)
                    }
                    _ => None,
                };
                if pending.is_some() {
                    self.fd(fd)?.error_reported = true;
                }
                let got = pending.map_or("0".to_string(), |e| e.errno().to_string());
                let want = call.args.get(3);
                let ok = match want {
                    Some(w) if w.int() == Some(0) => pending.is_none(),
                    Some(w) => w.name().is_some_and(|n| pending.is_some_and(|p| n == p.errno())),
                    None => false,
                };
                if !ok {
                    return Err(Stop::Fail {
                        actual: Some(format!("getsockopt(SO_ERROR) gives [{got}]")),
                        reason: "pending socket error differs".into(),
                    });
                }
                self.check_result(call, Ok(0))
            }
            other => skip(format!("getsockopt {other}")),
        }
    }

    fn fcntl(&mut self, call: &Syscall) -> Step {
        let fd = self.fd_arg(call)?;
        match call.args.get(1).and_then(Expr::name) {
            Some("F_GETFL") => {
                // FreeBSD's O_RDWR is 2 and O_NONBLOCK 4.
                let flags = 0x02 | if self.fd(fd)?.nonblocking { 0x04 } else { 0 };
                self.check_result(call, Ok(flags))
            }
            Some("F_SETFL") => {
                let names: Vec<&str> = match call.args.get(2) {
                    Some(Expr::Or(items)) => items.iter().filter_map(Expr::name).collect(),
                    Some(e) => e.name().into_iter().collect(),
                    None => Vec::new(),
                };
                if let Some(unknown) = names.iter().find(|n| !matches!(**n, "O_RDWR" | "O_NONBLOCK")) {
                    return skip(format!("fcntl F_SETFL {unknown}"));
                }
                self.fd(fd)?.nonblocking = names.contains(&"O_NONBLOCK");
                self.check_result(call, Ok(0))
            }
            other => skip(format!("fcntl {}", other.unwrap_or("?"))),
        }
    }

    // ----- shell and python lines -----

    fn shell(&mut self, cmd: &str) -> Step {
        let words: Vec<&str> = cmd.split_whitespace().collect();
        match words.first().copied() {
            Some("sysctl") => self.sysctl(&words),
            Some("sockstat") => self.sockstat(cmd),
            Some("tcpdrop") => self.tcpdrop(&words),
            _ => skip(format!("shell command `{cmd}`")),
        }
    }

    fn sysctl(&mut self, words: &[&str]) -> Step {
        let Some(setting) = words.iter().skip(1).find(|w| !w.starts_with('-')) else {
            return skip(format!("`{}`", words.join(" ")));
        };
        // FreeBSD's sysctl(8) writes `name=value` with or without -w; a
        // bare name only prints the value, which changes nothing.
        let Some((name, value)) = setting.split_once('=') else {
            return Ok(());
        };
        let Ok(n) = value.parse::<i64>() else {
            return skip(format!("sysctl {name}={value}"));
        };
        if !super::kernel::apply_sysctl(&mut self.profile, name, n) {
            return skip(format!("sysctl {name}"));
        }
        Ok(())
    }

    /// `sockstat ... | grep -c STATE | grep N`: the shell succeeds when the
    /// count of tcplab's endpoints in STATE, printed in decimal, contains N.
    fn sockstat(&mut self, cmd: &str) -> Step {
        let stages: Vec<&str> = cmd.split('|').map(str::trim).collect();
        let mut state = None;
        let mut pattern = None;
        for stage in &stages[1..] {
            let words: Vec<&str> = stage.split_whitespace().collect();
            match words.as_slice() {
                ["grep", "-c", s] => state = Some(s.to_string()),
                ["grep", p] if state.is_some() => pattern = Some(p.to_string()),
                ["grep", _] => {}
                _ => return skip(format!("shell command `{cmd}`")),
            }
        }
        let (Some(state), Some(pattern)) = (state, pattern) else {
            return skip(format!("shell command `{cmd}`"));
        };
        let count = self.count_state(&state)?;
        if count.to_string().contains(&pattern) {
            Ok(())
        } else {
            Err(Stop::Fail {
                actual: Some(format!("{count} endpoint(s) in {state}")),
                reason: format!("sockstat count of {state} does not match {pattern}"),
            })
        }
    }

    fn count_state(&self, name: &str) -> Step<usize> {
        let Some(state) = state_by_sockstat_name(name) else {
            return skip(format!("sockstat state {name}"));
        };
        let mut count = 0;
        if state == State::Closed {
            // Sockets that exist (an open fd) but have no connection in progress.
            for f in self.fds.values() {
                match f.kind {
                    FdKind::Fresh => count += 1,
                    FdKind::Conn { conn, side } => {
                        if self
                            .world
                            .connection(conn)
                            .and_then(|c| c.end(side))
                            .is_some_and(|e| e.state == State::Closed)
                        {
                            count += 1;
                        }
                    }
                    FdKind::Listener { .. } => {}
                }
            }
            return Ok(count);
        }
        if state == State::Listen {
            return Ok(self.fds.values().filter(|f| matches!(f.kind, FdKind::Listener { .. })).count());
        }
        for c in self.world.connections() {
            for side in [Side::Client, Side::Server] {
                if let Some(end) = c.end(side) {
                    if end.state == state && self.world.host_name(end.host) == TESTED {
                        count += 1;
                    }
                }
            }
        }
        Ok(count)
    }

    fn tcpdrop(&mut self, words: &[&str]) -> Step {
        let ["tcpdrop", "-s", name] = words else {
            return skip(format!("`{}`", words.join(" ")));
        };
        let Some(state) = state_by_sockstat_name(name) else {
            return skip(format!("tcpdrop -s {name}"));
        };
        let mut victims = Vec::new();
        for c in self.world.connections() {
            for side in [Side::Client, Side::Server] {
                if c.end(side).is_some_and(|e| e.state == state && self.world.host_name(e.host) == TESTED) {
                    victims.push((c.id, side));
                }
            }
        }
        for (conn, side) in victims {
            let _ = self.world.abort(conn, side);
        }
        Ok(())
    }

    fn python(&mut self, code: &str) -> Step {
        for stmt in code.lines().flat_map(|l| l.split(';')).map(str::trim).filter(|s| !s.is_empty()) {
            let words: Vec<&str> = stmt.split_whitespace().collect();
            if let ["assert", name @ ("tcpi_snd_cwnd" | "tcpi_snd_ssthresh"), op, want] = words.as_slice() {
                self.assert_window(name, op, want)?;
                continue;
            }
            let ["assert", "tcpi_state", "==", want] = words.as_slice() else {
                return skip(format!("python statement `{stmt}`"));
            };
            let Some(name) = want.strip_prefix("TCPI_") else {
                return skip(format!("python value {want}"));
            };
            let Some(state) = state_by_sockstat_name(name) else {
                return skip(format!("tcpi_state {want}"));
            };
            let got = match self.current.clone() {
                Some(FdKind::Conn { conn, side }) => {
                    self.world.connection(conn).and_then(|c| c.end(side)).map_or(State::Closed, |e| e.state)
                }
                Some(FdKind::Listener { id, .. }) => {
                    if self.world.listeners().iter().any(|l| l.id == id && l.open) {
                        State::Listen
                    } else {
                        State::Closed
                    }
                }
                _ => State::Closed,
            };
            if got != state {
                return Err(Stop::Fail {
                    actual: Some(format!("tcpi_state == TCPI_{}", got.name())),
                    reason: "connection state differs".into(),
                });
            }
        }
        Ok(())
    }

    /// `assert tcpi_snd_cwnd OP N` or `tcpi_snd_ssthresh`: the current
    /// endpoint's cwnd or ssthresh in segments of its SMSS, as Linux's
    /// `tcp_info` reports them (ssthresh "arbitrarily high" is
    /// `TCP_INFINITE_SSTHRESH`, 2147483647).
    fn assert_window(&self, name: &str, op: &str, want: &str) -> Step {
        let Ok(want) = want.parse::<u64>() else {
            return fail(format!("{name}: expected a number of segments 0..=18446744073709551615, got `{want}`"));
        };
        let Some(FdKind::Conn { conn, side }) = self.current.clone() else {
            return fail(format!("{name}: no connection to read it from (no accept or connect yet)"));
        };
        let status = match self.world.status(conn, side) {
            Ok(status) => status,
            Err(e) => return fail(format!("{name}: {e}")),
        };
        let smss = u64::from(status.snd_mss.max(1));
        let got = match name {
            "tcpi_snd_cwnd" => u64::from(status.cwnd) / smss,
            _ => status.ssthresh.map_or(TCP_INFINITE_SSTHRESH, |s| u64::from(s) / smss),
        };
        let holds = match op {
            "==" => got == want,
            "!=" => got != want,
            "<" => got < want,
            "<=" => got <= want,
            ">" => got > want,
            ">=" => got >= want,
            _ => return skip(format!("python operator `{op}`")),
        };
        if holds {
            return Ok(());
        }
        Err(Stop::Fail {
            actual: Some(format!("{name} == {got}")),
            reason: format!("expected {name} {op} {want} (segments of {smss} octets)"),
        })
    }
}

/// Linux's `TCP_INFINITE_SSTHRESH` (include/net/tcp.h): what `tcp_info`
/// reports for an ssthresh that no loss has set yet.
const TCP_INFINITE_SSTHRESH: u64 = 0x7fff_ffff;

/// A state by the name sockstat or `tcp_info` give it.
fn state_by_sockstat_name(name: &str) -> Option<State> {
    Some(match name {
        "CLOSED" | "CLOSE" => State::Closed,
        "LISTEN" => State::Listen,
        "SYN_SENT" => State::SynSent,
        "SYN_RCVD" | "SYN_RECV" | "SYN_RECEIVED" => State::SynReceived,
        "ESTABLISHED" => State::Established,
        "FIN_WAIT_1" | "FIN_WAIT1" => State::FinWait1,
        "FIN_WAIT_2" | "FIN_WAIT2" => State::FinWait2,
        "CLOSE_WAIT" => State::CloseWait,
        "CLOSING" => State::Closing,
        "LAST_ACK" => State::LastAck,
        "TIME_WAIT" => State::TimeWait,
        _ => return None,
    })
}

/// Options match when they are the same list; TS val is the stack's own
/// clock, so only its presence is compared.
/// FreeBSD's keepalive defaults (sys/netinet/tcp_timer.h: TCPTV_KEEP_IDLE
/// 2 h, TCPTV_KEEPINTVL 75 s, TCPTV_KEEPCNT 8).
const FREEBSD_KEEPALIVE: Keepalive = Keepalive { idle_ms: 7_200_000, interval_ms: 75_000, count: 8 };

/// recv(fd, buf, len, flags) with MSG_PEEK among its flags.
fn recv_peeks(call: &Syscall) -> bool {
    call.name == "recv" && call.args.get(3).and_then(Expr::name) == Some("MSG_PEEK")
}

/// The option lists carry the same options in the same order and take the
/// same room in the header. EOLs at the end are padding (a decoder stops at
/// the first, so `eol,eol` on the wire comes back as one); TSval is the
/// stack's own clock and not compared.
fn options_match(expected: &[PdOption], actual: &[TcpOption]) -> bool {
    let words = |len: usize| len.div_ceil(4);
    let expected_len: usize = expected.iter().map(|o| to_engine_option(o).wire_len()).sum();
    let actual_len: usize = actual.iter().map(TcpOption::wire_len).sum();
    let trim_e = expected.iter().rposition(|o| *o != PdOption::Eol).map_or(0, |i| i + 1);
    let trim_a = actual.iter().rposition(|o| *o != TcpOption::Eol).map_or(0, |i| i + 1);
    let (expected, actual) = (&expected[..trim_e], &actual[..trim_a]);
    words(expected_len) == words(actual_len)
        && expected.len() == actual.len()
        && expected.iter().zip(actual).all(|(e, a)| match (e, a) {
            (PdOption::Timestamp { ecr, .. }, TcpOption::Timestamps { ecr: got, .. }) => ecr == got,
            (e, a) => &to_engine_option(e) == a,
        })
}

/// Defines the runner starts from when none are given.
pub fn default_defines() -> BTreeSet<String> {
    ["STANDARD".to_string()].into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packetdrill::parser::parse_script;

    fn run(text: &str) -> Verdict {
        let script = parse_script("t.pkt", text, &default_defines()).unwrap();
        run_script(&script, &RunOptions::default()).verdict
    }

    fn fail_reason(v: Verdict) -> String {
        match v {
            Verdict::Fail(f) => format!("{}: {}", f.line, f.reason),
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn a_script_chooses_its_profile_by_header_or_by_the_sysctls_it_writes() {
        // A SYN+ACK at a listener: rfc9293 resets it, freebsd drops it.
        let body = "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 bind(3, ..., ...) = 0
+0 listen(3, 1) = 0
+0.1 < S. 17:20(3) ack 34 win 32767
+0.1 < S 0:0(0) win 32767 <mss 1460>
+0 > S. 0:0(0) ack 1 win 65535 <mss 1460>
";
        let verdict = |text: &str, script_profile| {
            let script = parse_script("t.pkt", text, &default_defines()).unwrap();
            let opts = RunOptions { script_profile, ..RunOptions::default() };
            let outcome = run_script(&script, &opts);
            (outcome.verdict, outcome.profile)
        };
        let header = format!("--profile=freebsd\n{body}");
        let sysctl = format!("0 `sysctl -w net.inet.tcp.drop_synfin=0`\n{body}");
        let reason = fail_reason(verdict(body, ScriptProfilePolicy::HeaderOrSysctl).0);
        assert!(reason.starts_with("6: sent at 0.100000 s"), "the reset comes first: {reason}");
        assert_eq!(verdict(&header, ScriptProfilePolicy::Header), (Verdict::Pass, Some("freebsd".into())));
        assert_eq!(verdict(&sysctl, ScriptProfilePolicy::HeaderOrSysctl), (Verdict::Pass, Some("freebsd".into())));
        // Only the run's own profile when the caller named one, or only headers.
        assert!(matches!(verdict(&header, ScriptProfilePolicy::Ignore).0, Verdict::Fail(_)));
        assert!(matches!(verdict(&sysctl, ScriptProfilePolicy::Header).0, Verdict::Fail(_)));
        // A name that is not shipped fails the script, naming it.
        let bad = format!("--profile=bsd\n{body}");
        assert!(fail_reason(verdict(&bad, ScriptProfilePolicy::Header).0).contains("unknown profile \"bsd\""));
    }

    // The ACK of data leaves before the blocked read() takes it: its window
    // is the buffer less the 10 octets (rfc9293's unrounded 65535).
    const BLOCKING: &str = "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
0.1...0.2 connect(3, ..., ...) = 0
0.1 > S 0:0(0) win 65535
0.2 < S. 0:0(0) ack 1 win 65535
0.2 > . 1:1(0) ack 1 win 65535
0.3...0.4 read(3, ..., 100) = 10
0.4 < P. 1:11(10) ack 1 win 65535
0.4 > . 1:1(0) ack 11 win 65525
0.5 close(3) = 0
0.5 > F. 1:1(0) ack 11 win 65535
";

    #[test]
    fn blocking_connect_and_read_return_when_later_lines_let_them() {
        assert_eq!(run(BLOCKING), Verdict::Pass);
        // The SYN+ACK comes after the time the connect line allows.
        let late = BLOCKING.replace("0.2 < S. 0:0(0)", "0.25 < S. 0:0(0)").replace("0.2 > . 1:1(0)", "0.25 > . 1:1(0)");
        let reason = fail_reason(run(&late));
        assert!(reason.starts_with("2: the blocking connect() had not returned by 0.204000 s"), "{reason}");
        // A read whose data never comes.
        let never = BLOCKING.lines().take(6).collect::<Vec<_>>().join("\n");
        let reason = fail_reason(run(&never));
        assert!(reason.starts_with("6: the blocking read() never returned"), "{reason}");
        // Still blocked when a later line runs: a failure of the blocked line, not a skip of the next.
        let overdue = format!("{never}\n0.5 close(3) = 0\n");
        let reason = fail_reason(run(&overdue));
        assert!(reason.starts_with("6: the blocking read() had not returned by 0.404000 s"), "{reason}");
        // `*` allows any time: the run waits a bounded while, not to the end of time.
        let any = BLOCKING.replace("0.3...0.4 read", "* read").lines().take(6).collect::<Vec<_>>().join("\n");
        let reason = fail_reason(run(&any));
        assert!(reason.starts_with("6: the blocking read() never returned"), "{reason}");
        // A refused connect returns its error.
        let refused = "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
0.1...0.2 connect(3, ..., ...) = -1 ECONNREFUSED (Connection refused)
0.1 > S 0:0(0) win 65535
0.2 < R. 0:0(0) ack 1 win 0
";
        assert_eq!(run(refused), Verdict::Pass);
    }

    const CONNECTED: &str = "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 fcntl(3, F_SETFL, O_RDWR | O_NONBLOCK) = 0
+0 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)
+0 > S 0:0(0) win 65535
+0.1 < S. 0:0(0) ack 1 win 1000
+0 > . 1:1(0) ack 1 win 65535
";

    #[test]
    fn socket_calls_map_to_user_calls_with_socket_errnos() {
        assert_eq!(run("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 fcntl(3, F_GETFL) = 0x02\n"), Verdict::Pass);
        assert_eq!(
            run(
                "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 fcntl(3, F_SETFL, O_RDWR | O_NONBLOCK) = 0\n+0 fcntl(3, F_GETFL) = 0x6\n"
            ),
            Verdict::Pass
        );
        // A non-blocking accept with nothing established: EAGAIN is EWOULDBLOCK.
        let text = "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 fcntl(3, F_SETFL, O_RDWR | O_NONBLOCK) = 0
+0 bind(3, ..., ...) = 0
+0 listen(3, 1) = 0
+0 accept(3, ..., ...) = -1 EAGAIN (Resource temporarily unavailable)
";
        assert_eq!(run(text), Verdict::Pass);
        // Reads: nothing yet, then data (its ACK's window counts the 3
        // octets not read yet), then the end of the stream.
        let text = format!(
            "{CONNECTED}+0 read(3, ..., 10) = -1 EWOULDBLOCK (Operation would block)
+0 < P. 1:4(3) ack 1 win 1000
+0 > . 1:1(0) ack 4 win 65532
+0 read(3, ..., 2) = 2
+0 read(3, ..., 10) = 1
+0 < F. 4:4(0) ack 1 win 1000
+0 > . 1:1(0) ack 5 win 65535
+0 read(3, ..., 10) = 0
+0 write(3, ..., 5) = 5
+0 > P. 1:6(5) ack 5 win 65535
"
        );
        assert_eq!(run(&text), Verdict::Pass);
        // A reset connection: SO_ERROR reports ECONNRESET once, then 0; write gives the errno.
        let text = format!(
            "{CONNECTED}+0 < R. 1:1(0) ack 1 win 0
+0 getsockopt(3, SOL_SOCKET, SO_ERROR, [ECONNRESET], [4]) = 0
+0 getsockopt(3, SOL_SOCKET, SO_ERROR, [0], [4]) = 0
+0 write(3, ..., 5) = -1 ECONNRESET (Connection reset by peer)
"
        );
        assert_eq!(run(&text), Verdict::Pass);
        // SO_LINGER 0: close aborts with a RST.
        let text = format!(
            "{CONNECTED}+0 setsockopt(3, SOL_SOCKET, SO_LINGER, {{l_onoff=1, l_linger=0}}, 8) = 0
+0 close(3) = 0
+0 > R 1:1(0) win 0
"
        );
        assert_eq!(run(&text), Verdict::Pass);
        // A wrong errno is a failure naming the line.
        let text = "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 fcntl(3, F_SETFL, O_RDWR | O_NONBLOCK) = 0\n+0 bind(3, ..., ...) = 0\n+0 listen(3, 1) = 0\n+0 accept(3, ..., ...) = 4\n";
        assert_eq!(fail_reason(run(text)), "5: system call result differs");
    }

    #[test]
    fn unsupported_things_skip_and_name_the_feature() {
        let skip = |text: &str| match run(text) {
            Verdict::Skip { feature, .. } => feature,
            other => panic!("expected a skip, got {other:?}"),
        };
        assert_eq!(skip("0 socket(..., SOCK_DGRAM, IPPROTO_UDP) = 3\n"), "socket() other than SOCK_STREAM");
        assert_eq!(skip("0 `ifconfig tun0 mtu 1280`\n"), "shell command `ifconfig tun0 mtu 1280`");
        assert_eq!(skip("0 `sysctl -w net.inet.tcp.cc.algorithm=1`\n"), "sysctl net.inet.tcp.cc.algorithm");
        assert_eq!(skip("0 %{ assert tcpi_rto == 1000 }%\n"), "python statement `assert tcpi_rto == 1000`");
        assert_eq!(
            skip("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 sendmsg(3, {}, 0) = 0\n"),
            "system call sendmsg()"
        );
        assert_eq!(
            skip(
                "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n0...1 connect(3, ..., ...) = 0\n0.5 write(3, ..., 10) = 10\n"
            ),
            "write() while a blocking call waits"
        );
        assert!(matches!(
            run("--ip_version=ipv6\n0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n"),
            Verdict::Skip { .. }
        ));
    }

    #[test]
    fn outbound_packets_are_checked_field_by_field_and_in_time() {
        let wrong = |from: &str, to: &str| fail_reason(run(&CONNECTED.replace(from, to)));
        assert_eq!(wrong("+0 > . 1:1(0) ack 1 win 65535", "+0 > . 1:1(0) ack 2 win 65535"), "6: ack 1, expected 2");
        assert_eq!(wrong("+0 > . 1:1(0) ack 1 win 65535", "+0 > . 1:1(0) ack 1 win 500"), "6: win 65535, expected 500");
        assert_eq!(wrong("+0 > . 1:1(0) ack 1 win 65535", "+0 > F. 1:1(0) ack 1 win 65535"), "6: flags ., expected F.");
        assert_eq!(wrong("+0 > . 1:1(0) ack 1 win 65535", "+0 > . 2:2(0) ack 1 win 65535"), "6: seq 1, expected 2");
        assert!(wrong("+0 > S 0:0(0) win 65535", "+0.5 > S 0:0(0) win 65535").starts_with("4: sent at 0.000000 s"));
        assert!(
            wrong("+0 > . 1:1(0) ack 1 win 65535\n", "+0 > . 1:1(0) ack 1 win 65535\n+0 > . 1:1(0) ack 1\n")
                .starts_with("7: no segment from tcplab")
        );
        // A range and `*` accept any time inside.
        assert_eq!(run(&CONNECTED.replace("+0 > S 0:0(0) win 65535", "0...0.5 > S 0:0(0) win 65535")), Verdict::Pass);
        assert_eq!(run(&CONNECTED.replace("+0 > S 0:0(0) win 65535", "* > S 0:0(0) win 65535")), Verdict::Pass);
    }

    #[test]
    fn the_initial_rto_follows_sysctl_and_retransmissions_are_timed() {
        let text = "0 `sysctl -w net.inet.tcp.rexmit_initial=3000`
+0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 fcntl(3, F_SETFL, O_RDWR | O_NONBLOCK) = 0
+0 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)
+0 > S 0:0(0) win 65535
+3 > S 0:0(0) win 65535
+6 > S 0:0(0) win 65535
";
        assert_eq!(run(text), Verdict::Pass);
        assert_eq!(fail_reason(run(&text.replace("+6 > S", "+5 > S"))), "7: no segment from tcplab by 8.004000 s");
        assert!(fail_reason(run(&text.replace("+6 > S", "+7 > S"))).starts_with("7: sent at 9.000000 s, outside"));
    }

    #[test]
    fn sockstat_counts_like_grep_and_tcpdrop_aborts() {
        let text = format!(
            "{CONNECTED}+0 `sockstat -4 -P tcp -s | grep -c ESTABLISHED | grep 1`
+0 `sockstat -4 -P tcp -s | grep -c TIME_WAIT | grep 0`
+0 shutdown(3, SHUT_WR) = 0
+0 > F. 1:1(0) ack 1 win 65535
+0 < F. 1:1(0) ack 2 win 1000
+0 > . 2:2(0) ack 2 win 65535
+0 `sockstat -4 -P tcp -s | grep packetdril | grep -c TIME_WAIT | grep 1`
+0 `tcpdrop -s TIME_WAIT`
+0 `sockstat -4 -P tcp -s | grep -c TIME_WAIT | grep 0`
+0 `sockstat -4 -P tcp -s | grep -c CLOSED | grep 1`
+0 %{{ assert tcpi_state == TCPI_CLOSED }}%
"
        );
        assert_eq!(run(&text), Verdict::Pass);
        let bad = format!("{CONNECTED}+0 `sockstat -4 -P tcp -s | grep -c ESTABLISHED | grep 2`\n");
        assert_eq!(fail_reason(run(&bad)), "7: sockstat count of ESTABLISHED does not match 2");
    }

    #[test]
    fn options_are_compared_unless_ignored() {
        let text = "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 fcntl(3, F_SETFL, O_RDWR | O_NONBLOCK) = 0
+0 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)
+0 > S 0:0(0) win 65535 <mss 1460,nop,wscale 6>
";
        let script = parse_script("t.pkt", text, &default_defines()).unwrap();
        let loose = RunOptions { ignore_options: true, ..RunOptions::default() };
        assert_eq!(run_script(&script, &loose).verdict, Verdict::Pass);
        let strict = RunOptions::default();
        assert!(matches!(run_script(&script, &strict).verdict, Verdict::Fail(_)));
        let exact =
            parse_script("t.pkt", &text.replace("<mss 1460,nop,wscale 6>", "<mss 1460>"), &default_defines()).unwrap();
        assert_eq!(run_script(&exact, &strict).verdict, Verdict::Pass);
        assert!(options_match(&[PdOption::Timestamp { val: 1, ecr: 0 }], &[TcpOption::Timestamps { val: 77, ecr: 0 }]));
        // Trailing EOLs are padding: `eol,eol` is what one EOL and a zero octet decode to.
        let sack_ok = [TcpOption::Mss { value: 1460 }, TcpOption::SackPermitted, TcpOption::Eol];
        assert!(options_match(&[PdOption::Mss(1460), PdOption::SackOk, PdOption::Eol, PdOption::Eol], &sack_ok));
        assert!(!options_match(&[PdOption::Mss(1460), PdOption::SackOk], &sack_ok[..1]));
    }

    /// A FreeBSD script's receiver: data waits in the buffer (the window
    /// shrinks, rounded as BSD rounds its buffer) until recv() reads it;
    /// MSG_PEEK reads without taking; sysctl writes with or without -w.
    #[test]
    fn recv_peeks_and_reads_from_the_receive_buffer() {
        let text = "--ip_version=ipv4
0 `sysctl net.inet.tcp.delacktime=100`
+0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 bind(3, ..., ...) = 0
+0 listen(3, 1) = 0
+0 < S 0:0(0) win 65535 <mss 1460>
+0 > S. 0:0(0) ack 1 win 65535 <mss 1460>
+0 < . 1:1(0) ack 1 win 65535
+0 accept(3, ..., ...) = 4
+0 < . 1:1001(1000) ack 1 win 65535
+0 recv(4, ..., 10, MSG_PEEK) = 10
+0 recv(4, ..., 2000, MSG_PEEK) = 1000
+0.1 > . 1:1(0) ack 1001 win 64700
+0 recv(4, ..., 600, 0) = 600
+0 recv(4, ..., 600, 0) = 400
+0 recv(4, ..., 600, MSG_WAITALL) = 0
";
        let script = parse_script("t.pkt", text, &default_defines()).unwrap();
        let opts = RunOptions { script_profile: ScriptProfilePolicy::HeaderOrSysctl, ..RunOptions::default() };
        let outcome = run_script(&script, &opts);
        match outcome.verdict {
            Verdict::Skip { feature, .. } => assert!(feature.contains("recv() flags"), "{feature}"),
            other => panic!("expected the MSG_WAITALL line to skip, got {other:?}"),
        }
        let shorter = text.replace("+0 recv(4, ..., 600, MSG_WAITALL) = 0\n", "");
        let script = parse_script("t.pkt", &shorter, &default_defines()).unwrap();
        assert_eq!(run_script(&script, &opts).verdict, Verdict::Pass, "the delayed ACK after delacktime=100");
    }
}
