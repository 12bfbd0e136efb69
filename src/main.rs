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
        .init();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let config = ServerConfig { http: args.http, grpc: args.grpc, db: args.db.clone(), limits: Limits::default() };
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
