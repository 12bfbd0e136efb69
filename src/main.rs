//! The `tcplab` command: `serve` (the default) runs the lab server; `demo`
//! runs one connection on the simulated network and prints its events.

mod terminal;

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tcplab::engine::{Handshake, Isn, Profile, Switch};
use tcplab::server::{Server, ServerConfig, shutdown_signal};
use tcplab::sim::{ConnectSpec, Event, EventKind, HostKind, LinkParams, ListenSpec, Side, World, WorldConfig};

/// A TCP connection lab: RFC 9293 TCP on a deterministic simulated network,
/// served over REST, gRPC and a dashboard, with every session's history in SQLite.
#[derive(Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the lab server (the default when no command is given).
    Serve(ServeArgs),
    /// Show the configuration the server would use.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Open a connection from A to B, send data both ways, close it, and print every event.
    Demo(DemoArgs),
    /// List and run labs: scripted scenarios that check the seed text's claims.
    #[command(subcommand)]
    Lab(LabCommand),
    /// Run packetdrill scripts against tcplab's TCP in virtual time.
    #[command(subcommand)]
    Packetdrill(PacketdrillCommand),
    /// List the behaviour profiles, or show one's settings and their sources.
    #[command(subcommand)]
    Profile(ProfileCommand),
}

#[derive(Subcommand)]
enum PacketdrillCommand {
    /// Run scripts (files or directories, recursively *.pkt); exit code 1 if any fails.
    Run(PacketdrillRunArgs),
}

#[derive(clap::Args)]
struct PacketdrillRunArgs {
    /// Script files or directories.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// The behaviour profile of the tested stack (see `tcplab profile list`). Without it each
    /// script runs under the profile it names (`--profile=NAME` header line) or the kernel whose
    /// sysctls it writes (`net.inet.*`: freebsd, `net.ipv4.*`: linux), else rfc9293.
    #[arg(long)]
    profile: Option<String>,
    /// A name `#ifdef` sees as defined (STANDARD always is).
    #[arg(long = "define", value_name = "NAME")]
    defines: Vec<String>,
    /// Timing tolerance for expected segments, overriding --tolerance_usecs in scripts.
    #[arg(long)]
    tolerance_ms: Option<f64>,
    /// Do not compare TCP options (by default an expected segment's options
    /// must match, EOL padding aside, TSval not compared, `<...>` any).
    #[arg(long)]
    ignore_options: bool,
    /// Options are compared by default; kept so that older command lines work.
    #[arg(long, hide = true)]
    strict_options: bool,
    /// Write a JUnit XML report to FILE.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Print the ladder of passing scripts too.
    #[arg(long)]
    verbose: bool,
    /// Write one pcap per script (NAME.pcap, segments as sent, in virtual time) into DIR.
    #[arg(long, value_name = "DIR")]
    pcap: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ProfileCommand {
    /// List the shipped profiles.
    List,
    /// Print a shipped profile: its file (every setting with the RFC section or
    /// kernel source it follows), then the settings it leaves at tcplab's defaults.
    Show {
        /// The profile's name (see `tcplab profile list`).
        name: String,
    },
}

#[derive(Subcommand)]
enum LabCommand {
    /// List the built-in labs.
    List,
    /// Run a built-in lab by name, or a lab file; exit code 0 only if every check passes.
    Run(LabRunArgs),
}

#[derive(clap::Args)]
struct LabRunArgs {
    /// A built-in lab's name or a path to a lab file (.toml).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    lab: Option<String>,
    /// Run every built-in lab.
    #[arg(long)]
    all: bool,
    /// Run only this variant of the lab (repeatable; see the lab's `[[variant]]` names).
    #[arg(long = "variant", value_name = "VARIANT", conflicts_with = "all")]
    variants: Vec<String>,
    /// Print the machine-readable result (JSON) instead of the diagram.
    #[arg(long)]
    json: bool,
    /// Also write every segment sent (lost ones included) to FILE as a pcap
    /// for Wireshark/tshark. A lab with several variants writes one file per
    /// variant, named FILE's stem, `-VARIANT`, and FILE's extension.
    #[arg(long, value_name = "FILE", conflicts_with = "all")]
    pcap: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (flags > environment > file > defaults) as TOML.
    Print(ServeArgs),
}

/// `serve`'s settings. Addresses, database and limits can also come from a
/// TOML file (see `tcplab::config`); precedence: flags > environment > file > defaults.
#[derive(clap::Args, Clone)]
struct ServeArgs {
    /// TOML configuration file [default: tcplab.toml in the working directory, if present].
    #[arg(long, env = "TCPLAB_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// REST API and dashboard address [default: 127.0.0.1:8080].
    #[arg(long, env = "TCPLAB_HTTP")]
    http: Option<SocketAddr>,
    /// gRPC address [default: 127.0.0.1:50051].
    #[arg(long, env = "TCPLAB_GRPC")]
    grpc: Option<SocketAddr>,
    /// SQLite database, created with its migrations on first start: a file path
    /// or an sqlx URL (`sqlite://data/x.db`, `sqlite:x.db?mode=rwc`) [default: tcplab.db].
    #[arg(long, env = "TCPLAB_DB", value_name = "PATH|URL")]
    db: Option<String>,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    access: AccessArgs,
}

/// Who may use the server (see `tcplab::auth`): with a token set, every REST
/// call, the dashboard and every gRPC call need it (`/healthz`, gRPC health
/// and reflection stay open).
#[derive(clap::Args, Clone, Default)]
#[command(next_help_heading = "Access")]
struct AccessArgs {
    /// Full-access token: clients send `Authorization: Bearer TOKEN`.
    #[arg(long, env = "TCPLAB_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Read-only token for observers: may read and watch, not change (needs --token).
    #[arg(long, env = "TCPLAB_READ_TOKEN", hide_env_values = true)]
    read_token: Option<String>,
    /// Allow browsers on ORIGIN (e.g. http://localhost:3000) to call the API (CORS); repeatable. Off by default.
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    cors_origins: Vec<String>,
}

/// The server's limits: each refusal names the limit it hit, so a class
/// sharing one server can be given room (or kept in check) without a rebuild.
/// Unset flags keep the config file's values, else `tcplab::service::Limits::default`.
#[derive(clap::Args, Clone, Default)]
#[command(next_help_heading = "Limits")]
struct LimitArgs {
    /// Live sessions at once.
    #[arg(long, env = "TCPLAB_MAX_SESSIONS")]
    max_sessions: Option<usize>,
    /// Hosts per session.
    #[arg(long, env = "TCPLAB_MAX_HOSTS")]
    max_hosts: Option<usize>,
    /// Connections per session.
    #[arg(long, env = "TCPLAB_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Fault rules per session.
    #[arg(long, env = "TCPLAB_MAX_FAULTS")]
    max_faults: Option<usize>,
    /// Octets buffered for sending per connection end.
    #[arg(long, env = "TCPLAB_MAX_BUFFERED_BYTES")]
    max_buffered_bytes: Option<u32>,
    /// Recent events kept in memory per session for late subscribers.
    #[arg(long, env = "TCPLAB_MAX_EVENTS_IN_MEMORY")]
    max_events_in_memory: Option<usize>,
    /// Event streams per session.
    #[arg(long, env = "TCPLAB_MAX_SUBSCRIBERS")]
    max_subscribers: Option<usize>,
    /// Events a live subscriber may fall behind before it is told it lagged.
    #[arg(long, env = "TCPLAB_BROADCAST_CAPACITY")]
    broadcast_capacity: Option<usize>,
    /// Scheduled items one call may process (a clock call, a lab run, a packetdrill script).
    #[arg(long, env = "TCPLAB_RUN_MAX_EVENTS")]
    run_max_events: Option<u64>,
    /// Virtual time one call may cover, in ms (a clock call, a lab step, a script's timeline).
    #[arg(long, env = "TCPLAB_RUN_MAX_MS")]
    run_max_ms: Option<u64>,
    /// Events published and not yet in SQLite (all sessions) at which a running session waits.
    #[arg(long, env = "TCPLAB_MAX_PENDING_EVENTS")]
    max_pending_events: Option<usize>,
    /// Largest request body, in octets.
    #[arg(long, env = "TCPLAB_MAX_BODY_BYTES")]
    max_body_bytes: Option<usize>,
    /// Largest packetdrill script or lab file, in octets.
    #[arg(long, env = "TCPLAB_MAX_SCRIPT_BYTES")]
    max_script_bytes: Option<usize>,
    /// Lines of a packetdrill script.
    #[arg(long, env = "TCPLAB_MAX_SCRIPT_LINES")]
    max_script_lines: Option<usize>,
    /// Nesting of [ ] and { } in a packetdrill expression.
    #[arg(long, env = "TCPLAB_MAX_NESTING_DEPTH")]
    max_nesting_depth: Option<usize>,
    /// Octets one write may ask for (send, a lab's send, a packetdrill write).
    #[arg(long, env = "TCPLAB_MAX_WRITE_BYTES")]
    max_write_bytes: Option<usize>,
    /// Steps of a lab file, all variants together.
    #[arg(long, env = "TCPLAB_MAX_LAB_STEPS")]
    max_lab_steps: Option<usize>,
    /// Events a lab run or packetdrill script keeps in memory to check and draw.
    #[arg(long, env = "TCPLAB_MAX_REPORT_EVENTS")]
    max_report_events: Option<usize>,
    /// End a realtime session after this many seconds with no API call on it and no event subscriber (0: never).
    #[arg(long = "session-idle-timeout", env = "TCPLAB_SESSION_IDLE_TIMEOUT", value_name = "SECONDS")]
    idle_timeout_s: Option<u64>,
}

impl LimitArgs {
    /// The limits set by flag or environment, by their names in `tcplab::service::Limits`
    /// (and in the config file's `[limits]` table).
    fn overrides(&self) -> Vec<(&'static str, u64)> {
        let all = [
            ("max_sessions", self.max_sessions.map(|v| v as u64)),
            ("max_hosts", self.max_hosts.map(|v| v as u64)),
            ("max_connections", self.max_connections.map(|v| v as u64)),
            ("max_faults", self.max_faults.map(|v| v as u64)),
            ("max_buffered_bytes", self.max_buffered_bytes.map(u64::from)),
            ("max_events_in_memory", self.max_events_in_memory.map(|v| v as u64)),
            ("max_subscribers", self.max_subscribers.map(|v| v as u64)),
            ("broadcast_capacity", self.broadcast_capacity.map(|v| v as u64)),
            ("run_max_events", self.run_max_events),
            ("run_max_ms", self.run_max_ms),
            ("max_pending_events", self.max_pending_events.map(|v| v as u64)),
            ("max_body_bytes", self.max_body_bytes.map(|v| v as u64)),
            ("max_script_bytes", self.max_script_bytes.map(|v| v as u64)),
            ("max_script_lines", self.max_script_lines.map(|v| v as u64)),
            ("max_nesting_depth", self.max_nesting_depth.map(|v| v as u64)),
            ("max_write_bytes", self.max_write_bytes.map(|v| v as u64)),
            ("max_lab_steps", self.max_lab_steps.map(|v| v as u64)),
            ("max_report_events", self.max_report_events.map(|v| v as u64)),
            ("idle_timeout_s", self.idle_timeout_s),
        ];
        all.into_iter().filter_map(|(name, value)| Some((name, value?))).collect()
    }
}

impl ServeArgs {
    /// The effective configuration and the file it read, if any.
    fn config(&self) -> anyhow::Result<(tcplab::config::Config, Option<PathBuf>)> {
        let cwd = std::env::current_dir().context("the working directory")?;
        let file = tcplab::config::locate(self.config.as_deref(), &cwd);
        let overrides = tcplab::config::Overrides {
            http: self.http,
            grpc: self.grpc,
            db: self.db.clone(),
            limits: self.limits.overrides(),
        };
        Ok((tcplab::config::load(file.as_deref(), &overrides)?, file))
    }
}

#[derive(Parser)]
struct DemoArgs {
    /// RNG seed: the same seed gives the same events.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Client ISN (the seed text's example uses 300, so data starts at 301).
    #[arg(long, default_value_t = 300)]
    client_isn: u32,
    /// Server ISN.
    #[arg(long, default_value_t = 500)]
    server_isn: u32,
    /// Octets the client sends.
    #[arg(long, default_value_t = 100)]
    client_bytes: usize,
    /// Octets the server sends.
    #[arg(long, default_value_t = 200)]
    server_bytes: usize,
    /// One-way link latency in milliseconds.
    #[arg(long, default_value_t = 10.0)]
    latency_ms: f64,
    /// Loss probability on the link, each way.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Use the two-way handshake variant.
    #[arg(long)]
    two_way: bool,
    /// Skip TIME_WAIT.
    #[arg(long)]
    no_time_wait: bool,
    /// Print events as JSON lines instead of text.
    #[arg(long)]
    json: bool,
}

/// Exit statuses: 0 success, 1 a lab or script failed, 2 the input itself
/// is at fault (an unknown lab, a script that does not parse, a bad flag or
/// configuration) or the server could not start.
fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        // The reader went away (`| head`): stop without a word, as cat does.
        Err(e) if terminal::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", terminal::said_once(&e));
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let colour = terminal::colour_stdout();
    let mut out = terminal::Verdicts::new(std::io::stdout().lock(), colour);
    let code = match cli.command {
        Some(Command::Demo(args)) => demo(&args, &mut out)?,
        Some(Command::Lab(command)) => lab(command, &mut out)?,
        Some(Command::Packetdrill(PacketdrillCommand::Run(args))) => packetdrill(args, &mut out)?,
        Some(Command::Profile(ProfileCommand::List)) => {
            for name in tcplab::profiles::profile_names() {
                let about = tcplab::profiles::profile_description(name).unwrap_or("");
                writeln!(out, "{name:10} {about}")?;
            }
            ExitCode::SUCCESS
        }
        Some(Command::Profile(ProfileCommand::Show { name })) => {
            write!(out, "{}", tcplab::profiles::describe(&name)?)?;
            ExitCode::SUCCESS
        }
        Some(Command::Serve(args)) => {
            drop(out);
            serve(args)?;
            return Ok(ExitCode::SUCCESS);
        }
        Some(Command::Config(ConfigCommand::Print(args))) => {
            let (config, file) = args.config()?;
            write!(out, "{}", config.to_toml(file.as_deref()))?;
            ExitCode::SUCCESS
        }
        None => {
            drop(out);
            serve(cli.serve)?;
            return Ok(ExitCode::SUCCESS);
        }
    };
    out.flush()?;
    Ok(code)
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let (config, file) = args.config()?;
    if let Some(file) = &file {
        tracing::info!(file = %file.display(), "configuration file read");
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let db = config.db.clone();
        let config = ServerConfig { http: config.http, grpc: config.grpc, db: config.db, limits: config.limits };
        let a = &args.access;
        let access = tcplab::auth::AccessConfig::new(a.token.clone(), a.read_token.clone(), a.cors_origins.clone())
            .map_err(anyhow::Error::msg)?;
        let server = Server::bind(config).await?.with_access(access);
        tracing::info!(
            http = %server.http_addr()?,
            grpc = %server.grpc_addr()?,
            db = %db.display(),
            "tcplab listening: REST and dashboard on http://{}/, gRPC on {}",
            server.http_addr()?,
            server.grpc_addr()?
        );
        server.run(shutdown_signal()).await?;
        Ok::<(), anyhow::Error>(())
    })
}

/// `tcplab packetdrill run`: the report goes to stdout; exit status 1 when a
/// script failed, 2 when none failed but one could not be read or parsed.
fn packetdrill(args: PacketdrillRunArgs, out: &mut dyn std::io::Write) -> anyhow::Result<ExitCode> {
    let cmd = tcplab::scripts::Command {
        paths: args.paths,
        profile: args.profile,
        defines: args.defines,
        tolerance_ms: args.tolerance_ms,
        ignore_options: args.ignore_options && !args.strict_options,
        junit: args.junit,
        verbose: args.verbose,
        pcap: args.pcap,
    };
    let summary = tcplab::scripts::run_command(&cmd, out)?;
    Ok(if summary.failed > 0 {
        ExitCode::FAILURE
    } else if summary.errors > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// `tcplab lab ...`: exits with 1 when a lab fails, 2 when one cannot be loaded.
fn lab(command: LabCommand, out: &mut dyn std::io::Write) -> anyhow::Result<ExitCode> {
    match command {
        LabCommand::List => {
            for (name, _) in tcplab::lab::builtin() {
                let title = tcplab::lab::builtin_lab(name).map_or_else(|e| format!("(broken: {e})"), |l| l.title);
                writeln!(out, "{name:<26} {title}")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Run(args) => {
            let names: Vec<String> = match (&args.lab, args.all) {
                (_, true) => tcplab::lab::builtin().into_iter().map(|(n, _)| n.to_string()).collect(),
                (Some(lab), false) => vec![lab.clone()],
                (None, false) => anyhow::bail!("name a lab or pass --all"),
            };
            let mut reports = Vec::new();
            let mut failed = Vec::new();
            for name in &names {
                let mut lab = tcplab::scripts::load_lab(name)?;
                if !args.variants.is_empty() {
                    select_variants(&mut lab, &args.variants)?;
                }
                let report = tcplab::lab::run(&lab);
                if let Some(path) = &args.pcap {
                    write_lab_pcaps(&lab, &report, path)?;
                }
                if !report.passed {
                    failed.push(report.name.clone());
                }
                if !args.json {
                    write!(out, "{}", tcplab::lab::render_report(&report))?;
                    writeln!(out)?;
                }
                reports.push(report);
            }
            if args.json {
                let value = if args.all { serde_json::to_value(&reports)? } else { serde_json::to_value(&reports[0])? };
                writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
            } else if names.len() > 1 {
                writeln!(out, "{} of {} labs passed", names.len() - failed.len(), names.len())?;
            }
            if !failed.is_empty() {
                if !args.json {
                    eprintln!("failed: {}", failed.join(", "));
                }
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Keeps only the named variants of `lab`, in the order the lab gives them.
///
/// # Errors
/// A name that is not one of the lab's variants, with the closest one.
fn select_variants(lab: &mut tcplab::lab::Lab, wanted: &[String]) -> anyhow::Result<()> {
    let known: Vec<String> = lab.variants.iter().map(|v| v.name.clone()).collect();
    for name in wanted {
        if !known.contains(name) {
            let hint = tcplab::suggest::did_you_mean(name, known.iter().map(String::as_str));
            anyhow::bail!("lab {} has no variant `{name}`{hint} (its variants: {})", lab.name, known.join(", "));
        }
    }
    lab.variants.retain(|v| wanted.contains(&v.name));
    Ok(())
}

/// Writes one pcap per variant of a lab run (see `LabRunArgs::pcap`), built
/// from the world's events with the lab's host addresses.
fn write_lab_pcaps(
    lab: &tcplab::lab::Lab,
    report: &tcplab::lab::LabReport,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    let resolve = |name: &str| lab.hosts.iter().find(|h| h.name == name).map(|h| h.ip);
    let several = report.variants.len() > 1;
    for variant in &report.variants {
        let captured = tcplab::pcap::from_events(&variant.events, resolve)
            .with_context(|| format!("variant {}: building the capture", variant.name))?;
        let bytes = tcplab::pcap::build(&captured)
            .with_context(|| format!("variant {}: building the capture", variant.name))?;
        let file = if several {
            let stem = path.file_stem().map_or_else(|| "capture".into(), |s| s.to_string_lossy().into_owned());
            let name = match path.extension() {
                Some(ext) => format!("{stem}-{}.{}", variant.name, ext.to_string_lossy()),
                None => format!("{stem}-{}", variant.name),
            };
            path.with_file_name(name)
        } else {
            path.to_path_buf()
        };
        std::fs::write(&file, &bytes).with_context(|| format!("writing {}", file.display()))?;
        eprintln!("wrote {} ({} packets, variant {})", file.display(), captured.len(), variant.name);
    }
    Ok(())
}

fn demo(args: &DemoArgs, out: &mut dyn std::io::Write) -> anyhow::Result<ExitCode> {
    let profile = Profile {
        handshake: if args.two_way { Handshake::TwoWay } else { Handshake::ThreeWay },
        time_wait: if args.no_time_wait { Switch::Off } else { Switch::On },
        isn: Isn::Fixed(args.client_isn),
        ..Profile::default()
    };
    let mut world = World::new(WorldConfig { seed: args.seed, profile, ..WorldConfig::default() })?;
    world.add_host("A", Ipv4Addr::new(10, 0, 0, 1), HostKind::Tcp)?;
    world.add_host("B", Ipv4Addr::new(10, 0, 0, 2), HostKind::Tcp)?;
    let link = LinkParams { latency_ms: args.latency_ms, loss: args.loss, ..LinkParams::default() };
    world.set_link("A", "B", link).context("link")?;
    world.listen(ListenSpec {
        host: "B".into(),
        port: 80,
        isn: Some(args.server_isn),
        profile: None,
        backlog: None,
        nodelay: false,
        keepalive: None,
    })?;
    let conn = world.connect(ConnectSpec {
        client: "A".into(),
        server: "B".into(),
        port: 80,
        client_port: Some(40000),
        ..ConnectSpec::default()
    })?;
    const STEPS: u64 = 1_000_000;
    world.run_until_idle(STEPS, tcplab::time::Duration::MAX);
    world.send(conn, Side::Client, &vec![b'a'; args.client_bytes])?;
    world.run_until_idle(STEPS, tcplab::time::Duration::MAX);
    world.send(conn, Side::Server, &vec![b'b'; args.server_bytes])?;
    world.run_until_idle(STEPS, tcplab::time::Duration::MAX);
    world.close(conn, Side::Client)?;
    world.run_until_idle(STEPS, tcplab::time::Duration::MAX);
    if world.status(conn, Side::Server)?.state == tcplab::engine::State::CloseWait {
        world.close(conn, Side::Server)?;
    }
    world.run_until_idle(STEPS, tcplab::time::Duration::MAX);
    for event in world.take_events() {
        if args.json {
            writeln!(out, "{}", serde_json::to_string(&event)?)?;
        } else {
            writeln!(out, "{}", describe(&event))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(event: &Event) -> String {
    let head = format!("{:>4} {:>12.3} ms  ", event.seq, event.t_ns as f64 / 1e6);
    let body = match &event.kind {
        EventKind::StateChanged { host, side, from, to, rfc, .. } => {
            let side = side.map_or(String::new(), |s| format!(" ({})", s.name()));
            format!("{host}{side}: {from} -> {to}   [RFC 9293 {rfc}]")
        }
        EventKind::SegmentSent { segment: w, .. }
        | EventKind::SegmentDelivered { segment: w, .. }
        | EventKind::SegmentDropped { segment: w, .. } => {
            let s = &w.segment;
            let extra = match &event.kind {
                EventKind::SegmentDropped { reason, .. } => format!("  DROPPED ({reason:?})"),
                _ if w.retransmission => "  (retransmission)".to_string(),
                _ => String::new(),
            };
            format!(
                "{:<17} {} -> {}: {} seq={} ack={} len={} win={}{extra}",
                event.kind.name(),
                w.from,
                w.to,
                s.flags,
                s.seq,
                s.ack,
                s.payload.len(),
                s.window
            )
        }
        EventKind::TimerFired { host, timer, .. } => format!("{host}: timer {timer:?} fired"),
        EventKind::ConnectionError { host, error, .. } => format!("{host}: error {}", error.errno()),
        other => other.name().to_string(),
    };
    head + &body
}
