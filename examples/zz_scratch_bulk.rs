use std::net::Ipv4Addr;
use std::time::Instant;
use tcplab::engine::Profile;
use tcplab::sim::*;

fn main() {
    let mut world =
        World::new(WorldConfig { seed: 7, profile: Profile::default(), keep_received: false, keep_closed: false })
            .unwrap();
    world.add_host("a", Ipv4Addr::new(10, 0, 0, 1), HostKind::Tcp).unwrap();
    world.add_host("b", Ipv4Addr::new(10, 0, 0, 2), HostKind::Tcp).unwrap();
    world.set_link("a", "b", LinkParams { latency_ms: 1.0, ..LinkParams::default() }).unwrap();
    world.listen(ListenSpec { host: "b".into(), port: 80, ..ListenSpec::default() }).unwrap();
    let conn = world
        .connect(ConnectSpec { client: "a".into(), server: "b".into(), port: 80, ..ConnectSpec::default() })
        .unwrap();
    world.run_until_idle(u64::MAX, u64::MAX);
    world.take_events();
    let chunk: Vec<u8> = (0..1 << 20).map(|i| i as u8).collect();
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let t = Instant::now();
    let mut segments = 0u64;
    for _ in 0..rounds {
        let mut remaining = 16usize << 20;
        let mut steps = 0u64;
        let mut idle = false;
        loop {
            if remaining > 0 && (idle || steps % 64 == 0) {
                let queued = world.status(conn, Side::Client).unwrap().send_buffered;
                if queued < 1 << 20 {
                    let n = world.send(conn, Side::Client, &chunk[..remaining.min(1 << 20)]).unwrap();
                    remaining -= n;
                }
            }
            idle = !world.step();
            if idle && remaining == 0 {
                break;
            }
            steps += 1;
            if steps % 4096 == 0 {
                segments +=
                    world.take_events().iter().filter(|e| matches!(e.kind, EventKind::SegmentDelivered { .. })).count()
                        as u64;
            }
        }
        segments +=
            world.take_events().iter().filter(|e| matches!(e.kind, EventKind::SegmentDelivered { .. })).count() as u64;
    }
    let s = t.elapsed().as_secs_f64();
    println!("{segments} segments in {s:.3} s: {:.2} M/s", segments as f64 / s / 1e6);
}
