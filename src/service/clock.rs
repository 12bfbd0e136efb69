//! A session's virtual clock: step, advance, run until idle, pause, resume.
//! Long runs go in turns on the actor within the run budget.

use super::command::Command;
use super::model::*;
use super::parse::millis_ns;
use super::session::{self, SessionState};
use super::{Error, LabService, LimitHit, Limits};

impl LabService {
    /// Steps, advances, runs until idle, pauses or resumes a session's clock.
    ///
    /// `advance` and `run_until_idle` run in turns of [`session::STEPS_PER_TURN`]
    /// items on the session's actor (publishing after each, so subscribers
    /// watch the run as it goes), within the budget `run_max_events` items
    /// and `run_max_ms` of virtual time: a run that reaches it stops there
    /// with `"stopped_by": "limit"` and the limit named; an `advance` asking
    /// for more than `run_max_ms` is refused before it starts.
    ///
    /// # Errors
    /// Bad action or values; an `advance` over `run_max_ms`.
    pub async fn clock(&self, sid: u64, req: ClockRequest) -> Result<ClockState, Error> {
        let limits = &self.inner.limits;
        let ms = req.ms.map(|ms| millis_ns("ms", ms)).transpose()?;
        if let Some(speed) = req.speed {
            if !speed.is_finite() || speed <= 0.0 || speed > 1e6 {
                return Err(Error::invalid("speed", format!("must be > 0 and at most 1000000, got {speed}")));
            }
        }
        let max_ms = req.max_ms.map(|ms| millis_ns("max_ms", ms)).transpose()?;
        if req.action == ClockAction::SetSpeed && req.speed.is_none() {
            return Err(Error::invalid("speed", "set_speed needs speed"));
        }
        let cap_ns = limits.run_max_ms.saturating_mul(1_000_000);
        let run = match req.action {
            ClockAction::Advance => {
                let ms = ms.ok_or_else(|| Error::invalid("ms", "advance needs ms"))?;
                if ms > cap_ns {
                    return Err(Error::over_budget(
                        "run_max_ms",
                        limits.run_max_ms,
                        format!("ms: {} ms of virtual time in one call", ms / 1_000_000),
                    ));
                }
                Some(ClockRun::advance(ms, limits))
            }
            ClockAction::RunUntilIdle => Some(ClockRun::until_idle(req.max_events, max_ms, limits)),
            ClockAction::Step | ClockAction::Pause | ClockAction::Resume | ClockAction::SetSpeed => None,
        };
        let record = Command::Clock { args: req.clone() };
        let handle = self.live_for_command(sid).await?;
        let Some(mut run) = run else {
            return handle
                .command(move |s| {
                    s.record_command(record);
                    let mut steps = 0;
                    match req.action {
                        ClockAction::Step => {
                            if s.world.step() {
                                steps = 1;
                            }
                        }
                        ClockAction::Pause => s.paused = true,
                        ClockAction::Resume | ClockAction::SetSpeed => {
                            if req.action == ClockAction::Resume {
                                s.paused = false;
                            }
                            if let Some(speed) = req.speed {
                                s.speed = speed;
                            }
                        }
                        // Run in turns below.
                        ClockAction::Advance | ClockAction::RunUntilIdle => {}
                    }
                    s.reanchor();
                    Ok(clock_state(s, steps, None, None))
                })
                .await;
        };
        let mut record = Some(record);
        handle
            .command_in_turns(move |s| {
                if let Some(record) = record.take() {
                    s.record_command(record);
                    run.start(s.world.now().as_nanos());
                }
                let poll = run.turn(s);
                if poll.is_ready() {
                    s.reanchor();
                }
                poll
            })
            .await
    }
}

/// The clock as a clock call leaves it.
pub(super) fn clock_state(
    s: &mut SessionState,
    steps: u64,
    stopped_by: Option<StopReason>,
    limit: Option<LimitHit>,
) -> ClockState {
    ClockState {
        now_ns: s.world.now().as_nanos(),
        clock: s.clock,
        paused: s.paused,
        speed: s.speed,
        steps,
        idle: s.world.next_event_at().is_none(),
        stopped_by,
        limit,
    }
}

/// An `advance` or a `run_until_idle` in progress: its budget and how far it got.
struct ClockRun {
    /// `advance`: run to `now + span_ns` (all of it is run, then the clock
    /// is set there); `run_until_idle`: stop when idle or at `now + span_ns`.
    until_idle: bool,
    span_ns: u64,
    /// Where the run ends in virtual time (set by [`ClockRun::start`]).
    until: u64,
    max_steps: u64,
    steps: u64,
    /// Whether the caps are the server's limits (else the request's own, smaller ones).
    steps_cap_is_limit: bool,
    time_cap_is_limit: bool,
    limits: Limits,
}

impl ClockRun {
    fn advance(span_ns: u64, limits: &Limits) -> ClockRun {
        ClockRun {
            until_idle: false,
            span_ns,
            until: 0,
            max_steps: limits.run_max_events,
            steps: 0,
            steps_cap_is_limit: true,
            time_cap_is_limit: false,
            limits: limits.clone(),
        }
    }

    fn until_idle(max_events: Option<u64>, max_ns: Option<u64>, limits: &Limits) -> ClockRun {
        let cap_ns = limits.run_max_ms.saturating_mul(1_000_000);
        ClockRun {
            until_idle: true,
            span_ns: max_ns.map_or(cap_ns, |ns| ns.min(cap_ns)),
            until: 0,
            max_steps: max_events.map_or(limits.run_max_events, |n| n.min(limits.run_max_events)),
            steps: 0,
            steps_cap_is_limit: max_events.is_none_or(|n| n >= limits.run_max_events),
            time_cap_is_limit: max_ns.is_none_or(|ns| ns >= cap_ns),
            limits: limits.clone(),
        }
    }

    /// Fixes the end of the run from the clock when the command starts.
    fn start(&mut self, now: u64) {
        self.until = now.saturating_add(self.span_ns);
    }

    /// One turn: at most [`session::STEPS_PER_TURN`] items.
    fn turn(&mut self, s: &mut SessionState) -> std::task::Poll<Result<ClockState, Error>> {
        use std::task::Poll;
        let chunk = (self.max_steps - self.steps).min(session::STEPS_PER_TURN);
        let stopped = if self.until_idle {
            let outcome = s.world.run_until_idle(
                chunk,
                crate::time::Instant::from_nanos(self.until).saturating_duration_since(s.world.now()),
            );
            self.steps += outcome.steps;
            match outcome.stopped_by {
                None => Some(None),
                Some(crate::sim::RunCap::Time) => Some(Some(if self.time_cap_is_limit {
                    (StopReason::Limit, Some(LimitHit::new("run_max_ms", self.limits.run_max_ms)))
                } else {
                    (StopReason::Time, None)
                })),
                Some(crate::sim::RunCap::Steps) => None,
            }
        } else {
            let (n, reached) = s.world.run_until_bounded(crate::time::Instant::from_nanos(self.until), chunk);
            self.steps += n;
            reached.then_some(None)
        };
        if let Some(stop) = stopped {
            let (by, limit) = stop.unzip();
            return Poll::Ready(Ok(clock_state(s, self.steps, by, limit.flatten())));
        }
        if self.steps >= self.max_steps {
            let (by, limit) = if self.steps_cap_is_limit {
                (StopReason::Limit, Some(LimitHit::new("run_max_events", self.limits.run_max_events)))
            } else {
                (StopReason::Events, None)
            };
            return Poll::Ready(Ok(clock_state(s, self.steps, Some(by), limit)));
        }
        if std::mem::take(&mut s.backlogged) {
            let limit = LimitHit::new("max_pending_events", self.limits.max_pending_events as u64);
            return Poll::Ready(Ok(clock_state(s, self.steps, Some(StopReason::Limit), Some(limit))));
        }
        Poll::Pending
    }
}
