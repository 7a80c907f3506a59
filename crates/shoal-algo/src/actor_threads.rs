//! The embedded actor–learner loop that Ape-X and IMPALA share: actors act on threads of their
//! own and insert into an in-process replay (or trajectory queue) while the learner updates on
//! the caller's thread as fast as the replay allows; the actors' parameter lag; and the run's
//! cluster status (parameter server, learner, replay, each actor) for `shoal dashboard`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use shoal_dist::status::{host_name, unix_seconds};
use shoal_dist::{ClusterStatus, LocalReplay, Member, ParamServer, RateMeter, ReplayStats, ReplayStore};

use crate::error::{config_err, Result};

/// An actor's parameter pulls, for the parameter-lag metric.
#[derive(Debug, Clone, Copy, Default)]
pub struct ActorStats {
    pub pulls: u64,
    /// Σ (store version − actor version) at each pull: how far behind the actor was acting.
    pub lag_sum: u64,
}

/// What the loop needs of an actor.
pub(crate) trait ActorThread: Send {
    /// Acts for one iteration (`amount`: Ape-X's vector steps, IMPALA's fragments),
    /// inserting into `replay`.
    fn act(&mut self, amount: usize, replay: &dyn ReplayStore) -> Result<()>;
    fn env_steps(&self) -> u64;
    fn pulls(&self) -> ActorStats;
}

/// What the loop needs of a learner.
pub(crate) trait LearnerTurn {
    /// Whether a batch can be taken from a replay in state `replay`.
    fn ready(&self, replay: &ReplayStats) -> bool;
    fn update(&mut self, replay: &dyn ReplayStore, progress: f64) -> Result<()>;
    fn updates(&self) -> u64;
}

/// One iteration: every actor acts `amount` on its own thread while the learner updates
/// whenever the replay lets it; once the actors are done the learner catches up to what the
/// replay allows, so every iteration has the same update-to-data ratio.
pub(crate) fn iterate<A: ActorThread, L: LearnerTurn>(
    actors: &mut [A],
    learner: &mut L,
    replay: &LocalReplay,
    amount: usize,
    progress: f64,
) -> Result<()> {
    let running = AtomicUsize::new(actors.len());
    let results = std::thread::scope(|scope| {
        let handles: Vec<_> = actors
            .iter_mut()
            .map(|actor| {
                let running = &running;
                scope.spawn(move || {
                    let result = actor.act(amount, replay);
                    running.fetch_sub(1, Ordering::Release);
                    result
                })
            })
            .collect();
        let learned = (|| -> Result<()> {
            loop {
                let actors_done = running.load(Ordering::Acquire) == 0;
                if learner.ready(&replay.stats()?) {
                    learner.update(replay, progress)?;
                } else if actors_done {
                    return Ok(());
                } else {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
        })();
        let mut out: Vec<Result<()>> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(config_err("an actor thread panicked"))))
            .collect();
        out.push(learned);
        out
    });
    results.into_iter().collect::<Result<Vec<()>>>()?;
    Ok(())
}

/// The actors' parameter lag: mean over their pulls of (server version − actor version).
pub(crate) fn parameter_lag<A: ActorThread>(actors: &[A]) -> f64 {
    let (lag, pulls) = actors.iter().map(A::pulls).fold((0, 0), |(l, p), s| (l + s.lag_sum, p + s.pulls));
    lag as f64 / pulls.max(1) as f64
}

/// Rates kept between status snapshots of an embedded actor–learner run.
#[derive(Default)]
pub(crate) struct StatusMeters {
    run: RateMeter,
    learner: RateMeter,
    inserts: RateMeter,
    actors: BTreeMap<usize, RateMeter>,
}

impl StatusMeters {
    /// The run as it is now: the parameter server the learner publishes to, the learner
    /// (updates/s), the replay (`replay_name`: size, inserts/s) and each actor (env steps/s,
    /// parameter lag).
    pub(crate) fn status<A: ActorThread, L: LearnerTurn>(
        &mut self,
        actors: &[A],
        learner: &L,
        replay: ReplayStats,
        replay_name: &str,
        server: &ParamServer,
    ) -> ClusterStatus {
        let host = host_name();
        let now = unix_seconds(SystemTime::now());
        let env_steps: u64 = actors.iter().map(A::env_steps).sum();
        let stats = server.stats();
        let learner_updates = learner.updates();
        let member = |role: &str, name: String| Member {
            role: role.into(),
            name,
            host: host.clone(),
            last_seen_unix: now,
            ..Member::default()
        };
        let mut members = vec![
            Member {
                env_steps,
                env_steps_per_s: self.run.record(env_steps),
                version: Some(stats.updates),
                ..member("server", "shard 0".into())
            },
            Member {
                version: Some(learner_updates),
                last_push_unix: stats.workers.values().map(|p| unix_seconds(p.last)).reduce(f64::max),
                detail: Some(format!("{:.0} updates/s", self.learner.record(learner_updates))),
                ..member("learner", "learner".into())
            },
            Member {
                detail: Some(format!(
                    "{} of {} rows, {:.0} inserted/s",
                    replay.len,
                    replay.capacity,
                    self.inserts.record(replay.inserted)
                )),
                ..member("replay", replay_name.into())
            },
        ];
        for (rank, actor) in actors.iter().enumerate() {
            let pulls = actor.pulls();
            members.push(Member {
                env_steps: actor.env_steps(),
                env_steps_per_s: self.actors.entry(rank).or_default().record(actor.env_steps()),
                staleness: Some(pulls.lag_sum as f64 / pulls.pulls.max(1) as f64),
                ..member("actor", format!("actor {rank}"))
            });
        }
        ClusterStatus::now(members)
    }
}
