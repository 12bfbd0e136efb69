//! The `tcplab` command: `serve` (the default) runs the lab server; `demo`
//! runs one connection on the simulated network and prints its events.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tcplab::engine::{Handshake, Isn, Profile, Switch};
use tcplab::server::{Server, ServerConfig, shutdown_signal};
use tcplab::service::Limits;
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
    /// Open a connection from A to B, send data both ways, close it, and print every event.
    Demo(DemoArgs),
    /// List and run labs: scripted scenarios that check the seed text's claims.
    #[command(subcommand)]
    Lab(LabCommand),
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
    /// Print the machine-readable result (JSON) instead of the diagram.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Clone)]
struct ServeArgs {
    /// REST API and dashboard address.
    #[arg(long, env = "TCPLAB_HTTP", default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// gRPC address.
    #[arg(long, env = "TCPLAB_GRPC", default_value = "127.0.0.1:50051")]
    grpc: SocketAddr,
    /// SQLite database file (created with its migrations on first start).
    #[arg(long, env = "TCPLAB_DB", default_value = "tcplab.db")]
    db: PathBuf,
    #[command(flatten)]
    limits: LimitArgs,
}

/// The server's limits: each refusal names the limit it hit, so a class
/// sharing one server can be given room (or kept in check) without a rebuild.
/// Unset flags keep the defaults of [`Limits::default`].
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
    /// Events one run_until_idle may process.
    #[arg(long, env = "TCPLAB_RUN_MAX_EVENTS")]
    run_max_events: Option<u64>,
    /// Virtual time one run_until_idle may cover, in ms.
    #[arg(long, env = "TCPLAB_RUN_MAX_MS")]
    run_max_ms: Option<u64>,
    /// Largest request body, in octets.
    #[arg(long, env = "TCPLAB_MAX_BODY_BYTES")]
    max_body_bytes: Option<usize>,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        let d = Limits::default();
        Limits {
            max_sessions: self.max_sessions.unwrap_or(d.max_sessions),
            max_hosts: self.max_hosts.unwrap_or(d.max_hosts),
            max_connections: self.max_connections.unwrap_or(d.max_connections),
            max_faults: self.max_faults.unwrap_or(d.max_faults),
            max_buffered_bytes: self.max_buffered_bytes.unwrap_or(d.max_buffered_bytes),
            max_events_in_memory: self.max_events_in_memory.unwrap_or(d.max_events_in_memory),
            max_subscribers: self.max_subscribers.unwrap_or(d.max_subscribers),
            run_max_events: self.run_max_events.unwrap_or(d.run_max_events),
            run_max_ms: self.run_max_ms.unwrap_or(d.run_max_ms),
            max_body_bytes: self.max_body_bytes.unwrap_or(d.max_body_bytes),
            ..d
        }
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

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Demo(args)) => demo(&args),
        Some(Command::Lab(command)) => lab(command),
        Some(Command::Serve(args)) => serve(args),
        None => serve(cli.serve),
    }
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
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let config =
            ServerConfig { http: args.http, grpc: args.grpc, db: args.db.clone(), limits: args.limits.limits() };
        let server = Server::bind(config).await?;
        tracing::info!(
            http = %server.http_addr()?,
            grpc = %server.grpc_addr()?,
            db = %args.db.display(),
            "tcplab listening: REST and dashboard on http://{}/, gRPC on {}",
            server.http_addr()?,
            server.grpc_addr()?
        );
        server.run(shutdown_signal()).await?;
        Ok::<(), anyhow::Error>(())
    })
}

/// `tcplab lab ...`: exits with 1 when a lab fails, 2 when one cannot be loaded.
fn lab(command: LabCommand) -> anyhow::Result<()> {
    match command {
        LabCommand::List => {
            for (name, text) in tcplab::lab::builtin() {
                let title = tcplab::lab::builtin_lab(name).map_or_else(|e| format!("(broken: {e})"), |l| l.title);
                let _ = text;
                println!("{name:<26} {title}");
            }
            Ok(())
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
                let lab = match tcplab::lab::load(name) {
                    Ok(lab) => lab,
                    Err(e) => {
                        eprintln!("error: {e}");
                        std::process::exit(2);
                    }
                };
                let report = tcplab::lab::run(&lab);
                if !report.passed {
                    failed.push(report.name.clone());
                }
                if !args.json {
                    print!("{}", tcplab::lab::render_report(&report));
                    println!();
                }
                reports.push(report);
            }
            if args.json {
                let value = if args.all { serde_json::to_value(&reports)? } else { serde_json::to_value(&reports[0])? };
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else if names.len() > 1 {
                println!("{} of {} labs passed", names.len() - failed.len(), names.len());
            }
            if !failed.is_empty() {
                if !args.json {
                    eprintln!("failed: {}", failed.join(", "));
                }
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

fn demo(args: &DemoArgs) -> anyhow::Result<()> {
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
    world.listen(ListenSpec { host: "B".into(), port: 80, isn: Some(args.server_isn), profile: None })?;
    let conn = world.connect(ConnectSpec {
        client: "A".into(),
        server: "B".into(),
        port: 80,
        client_port: Some(40000),
        ..ConnectSpec::default()
    })?;
    const STEPS: u64 = 1_000_000;
    world.run_until_idle(STEPS, u64::MAX);
    world.send(conn, Side::Client, &vec![b'a'; args.client_bytes])?;
    world.run_until_idle(STEPS, u64::MAX);
    world.send(conn, Side::Server, &vec![b'b'; args.server_bytes])?;
    world.run_until_idle(STEPS, u64::MAX);
    world.close(conn, Side::Client)?;
    world.run_until_idle(STEPS, u64::MAX);
    if world.status(conn, Side::Server)?.state == tcplab::engine::State::CloseWait {
        world.close(conn, Side::Server)?;
    }
    world.run_until_idle(STEPS, u64::MAX);
    for event in world.take_events() {
        if args.json {
            println!("{}", serde_json::to_string(&event)?);
        } else {
            println!("{}", describe(&event));
        }
    }
    Ok(())
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
