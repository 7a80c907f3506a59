//! Where an algorithm's gradient goes — the seam that lets one algorithm file run alone, as a
//! thread of an embedded cluster, or as a worker process, unchanged.
//!
//! An algorithm computes a gradient and calls [`Updater::step`]. Alone, that is its own
//! optimizer. Attached to a parameter store ([`Updater::attach`]) it becomes, by update mode:
//! - *sync / async* ([`Updater::Remote`]): push the gradient (the server averages a round of
//!   them or applies each on arrival, with its own optimizer) and pull the result;
//! - *average / EASGD* ([`Updater::Averaging`]): step the local optimizer, and every `every`
//!   steps push the local parameters and continue from what the round returns.
//!
//! In an all-reduce group ([`Updater::join`]) there is no store: the group sums the gradient,
//! and every member takes the same step of its own optimizer on the mean.

use std::sync::Arc;

use shoal_dist::{AllReduce, ParamStore, PushOutcome};
use shoal_nn::optim::Masked;
use shoal_nn::prune::PruneMask;
use shoal_nn::{Optimizer, Sgd};

use crate::error::{config_err, Result};
use crate::metrics::Metrics;

/// Push and pull counters of a worker attached to a store.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinkStats {
    pub pushes: u64,
    /// Pushes the store refused as too stale (the worker pulled and went on).
    pub stale: u64,
    /// Sum of the staleness the store reported for applied pushes.
    pub staleness: u64,
}

/// A worker's connection to a parameter store.
pub struct Link {
    pub store: Arc<dyn ParamStore>,
    pub rank: usize,
    /// The store version the worker's parameters come from (`None` before the first pull).
    pub version: Option<u64>,
    pub stats: LinkStats,
    /// The last step pulled already: nothing happened since, so the next sync need not ask
    /// again (a round trip per rollout saved for a worker process).
    just_pulled: bool,
    /// Overlap each push's round trip with the next rollout (see [`Link::overlapping`]).
    overlap: bool,
    /// A push was sent and its reply is still to be read.
    in_flight: bool,
}

impl Link {
    pub fn new(store: Arc<dyn ParamStore>, rank: usize) -> Self {
        Link {
            store,
            rank,
            version: None,
            stats: LinkStats::default(),
            just_pulled: false,
            overlap: false,
            in_flight: false,
        }
    }

    /// With `overlap`, a gradient step sends the gradient and returns at once; the reply — the
    /// parameters after it — is read at the next step, once that step's gradient is computed.
    /// The rollout in between runs on the parameters the previous reply brought, so the round
    /// trip hides behind acting and every gradient is one update staler than without. Only
    /// where the store can ([`ParamStore::start_push_gradient_and_pull`]); blocking otherwise.
    pub fn overlapping(mut self, overlap: bool) -> Self {
        self.overlap = overlap;
        self
    }

    /// Pulls the store's parameters into `params` if they are newer than the worker's.
    fn pull(&mut self, params: &mut [f32]) -> Result<()> {
        self.settle(params)?;
        if let Some(version) = self.store.pull(self.version, params)? {
            self.version = Some(version);
        }
        Ok(())
    }

    /// Reads the reply to a push still in flight: its outcome, and the parameters after it
    /// into `params`.
    fn settle(&mut self, params: &mut [f32]) -> Result<()> {
        if std::mem::take(&mut self.in_flight) {
            let (outcome, pulled) = self.store.finish_push_gradient_and_pull(params)?;
            self.count(outcome);
            if pulled.is_some() {
                self.version = pulled;
            }
        }
        Ok(())
    }

    /// Pushes `grads`, computed at `params`, and leaves the store's newer parameters in
    /// `params` — now, or (overlapping) the previous push's at once and this one's next time.
    fn push_and_pull(&mut self, params: &mut [f32], grads: &[f32]) -> Result<()> {
        let base = self.version.unwrap_or(0);
        self.just_pulled = true;
        if self.overlap {
            // `grads` are computed: `params` may take the previous push's reply now.
            self.settle(params)?;
            self.in_flight = self.store.start_push_gradient_and_pull(self.rank, base, grads, self.version)?;
            if self.in_flight {
                return Ok(());
            }
        }
        let (outcome, pulled) = self.store.push_gradient_and_pull(self.rank, base, grads, self.version, params)?;
        self.count(outcome);
        if pulled.is_some() {
            self.version = pulled;
        }
        Ok(())
    }

    fn count(&mut self, outcome: PushOutcome) {
        self.stats.pushes += 1;
        match outcome {
            PushOutcome::Applied { staleness, .. } => self.stats.staleness += staleness,
            PushOutcome::Stale { .. } => self.stats.stale += 1,
        }
    }
}

/// How a worker in averaging mode behaves between pushes.
pub struct Averaging {
    pub optimizer: Box<dyn Optimizer<f32>>,
    pub link: Link,
    /// Local optimizer steps between two parameter pushes.
    pub every: u64,
    steps: u64,
}

/// The destination of an algorithm's gradients.
pub enum Updater {
    /// This process's own optimizer.
    Local(Box<dyn Optimizer<f32>>),
    /// Gradients to a store that optimizes (sync or async mode).
    Remote(Link),
    /// Local optimization, parameters averaged through a store (averaging or EASGD mode).
    Averaging(Averaging),
    /// The mean gradient of an all-reduce group, stepped by this process's optimizer.
    Group(GroupStep),
}

/// A member of an all-reduce group: its optimizer and the group.
pub struct GroupStep {
    pub optimizer: Box<dyn Optimizer<f32>>,
    pub group: Arc<dyn AllReduce>,
    /// Whether the parameters came from member 0 yet (every member starts from them).
    synced: bool,
    /// The group's mean gradient, reused every step.
    mean: Vec<f32>,
}

impl Updater {
    /// Sends future steps through `link`: gradients when `push_params_every` is `None`,
    /// otherwise local steps with a parameter push every that many steps.
    pub fn attach(&mut self, link: Link, push_params_every: Option<u64>) {
        let local = std::mem::replace(self, Updater::Remote(Link::new(Arc::clone(&link.store), link.rank)));
        *self = match (local, push_params_every) {
            (Updater::Local(optimizer), Some(every))
            | (Updater::Averaging(Averaging { optimizer, .. }), Some(every)) => {
                Updater::Averaging(Averaging { optimizer, link, every: every.max(1), steps: 0 })
            }
            (_, _) => Updater::Remote(link),
        };
    }

    /// Makes this updater a member of `group`, keeping its optimizer (a local updater only).
    pub fn join(&mut self, group: Arc<dyn AllReduce>) -> Result<()> {
        let Updater::Local(optimizer) = self else {
            return Err(config_err("only a local updater can join an all-reduce group"));
        };
        // The group takes the optimizer over; an empty SGD holds its place for the swap.
        let optimizer = std::mem::replace(optimizer, Box::new(Sgd::new(0, 0.0, false)));
        *self = Updater::Group(GroupStep { optimizer, group, synced: false, mean: Vec::new() });
        Ok(())
    }

    /// The optimizer whose state a checkpoint keeps (none when the server optimizes).
    pub fn optimizer(&self) -> Option<&dyn Optimizer<f32>> {
        match self {
            Updater::Local(optimizer)
            | Updater::Averaging(Averaging { optimizer, .. })
            | Updater::Group(GroupStep { optimizer, .. }) => Some(optimizer.as_ref()),
            Updater::Remote(_) => None,
        }
    }

    pub fn optimizer_mut(&mut self) -> Option<&mut dyn Optimizer<f32>> {
        match self {
            Updater::Local(optimizer)
            | Updater::Averaging(Averaging { optimizer, .. })
            | Updater::Group(GroupStep { optimizer, .. }) => Some(optimizer.as_mut()),
            Updater::Remote(_) => None,
        }
    }

    /// Keeps the weights `mask` prunes at zero through every future local step (fine-tuning
    /// a pruned model), replacing any earlier mask; only an updater that owns its optimizer
    /// can.
    pub fn fix_mask(&mut self, mask: PruneMask) -> Result<()> {
        match self {
            Updater::Local(optimizer)
            | Updater::Averaging(Averaging { optimizer, .. })
            | Updater::Group(GroupStep { optimizer, .. }) => {
                if let Some(current) = optimizer.prune_mask_mut() {
                    *current = mask;
                    return Ok(());
                }
                let inner = std::mem::replace(optimizer, Box::new(Sgd::new(0, 0.0, false)));
                *optimizer = Box::new(Masked::new(inner, mask));
                Ok(())
            }
            Updater::Remote(_) => Err(config_err("a worker whose server optimizes cannot hold a pruning mask")),
        }
    }

    /// Brings `params` up to date before collecting experience: the newest parameters of a
    /// gradient store; the store's parameters once at the start in averaging mode.
    pub fn sync(&mut self, params: &mut [f32]) -> Result<()> {
        match self {
            Updater::Local(_) => Ok(()),
            Updater::Remote(link) => match std::mem::take(&mut link.just_pulled) {
                true => Ok(()),
                false => link.pull(params),
            },
            Updater::Averaging(avg) if avg.link.version.is_none() => avg.link.pull(params),
            Updater::Averaging(_) => Ok(()),
            Updater::Group(member) if !member.synced => {
                member.group.broadcast_from_0(params)?;
                member.synced = true;
                Ok(())
            }
            Updater::Group(_) => Ok(()),
        }
    }

    /// Applies one gradient step to `params` (`lr` is the local optimizer's; a store uses
    /// its own schedule).
    pub fn step(&mut self, params: &mut [f32], grads: &[f32], lr: f32) -> Result<()> {
        match self {
            Updater::Local(optimizer) => optimizer.step(params, grads, lr),
            Updater::Remote(link) => link.push_and_pull(params, grads)?,
            Updater::Group(member) => {
                member.mean.clear();
                member.mean.extend_from_slice(grads);
                member.group.sum(&mut member.mean)?;
                let scale = 1.0 / member.group.size() as f32;
                member.mean.iter_mut().for_each(|g| *g *= scale);
                member.optimizer.step(params, &member.mean, lr);
            }
            Updater::Averaging(avg) => {
                avg.optimizer.step(params, grads, lr);
                if self.averaging_due() {
                    self.push_average(params)?;
                }
            }
        }
        Ok(())
    }

    /// Counts one update of an agent that steps its own optimizers (SAC and TD3 keep one per
    /// network) and says whether, in averaging or EASGD mode, its parameters are due for a
    /// push ([`Updater::push_average`]) — every `push_every` updates; never otherwise.
    pub fn averaging_due(&mut self) -> bool {
        match self {
            Updater::Averaging(avg) => {
                avg.steps += 1;
                avg.steps % avg.every == 0
            }
            _ => false,
        }
    }

    /// Pushes `params` into the averaging round and continues from its result (in `params`).
    pub fn push_average(&mut self, params: &mut [f32]) -> Result<()> {
        if let Updater::Averaging(avg) = self {
            let outcome = avg.link.store.push_params(avg.link.rank, params)?;
            avg.link.count(outcome);
            if let PushOutcome::Applied { version, .. } = outcome {
                avg.link.version = Some(version);
            }
        }
        Ok(())
    }

    /// `ps/…` metrics of an attached worker (none when local).
    pub fn metrics(&self) -> Metrics {
        let link = match self {
            Updater::Local(_) | Updater::Group(_) => return Vec::new(),
            Updater::Remote(link) | Updater::Averaging(Averaging { link, .. }) => link,
        };
        let applied = (link.stats.pushes - link.stats.stale).max(1);
        vec![
            ("ps/version", link.version.unwrap_or(0) as f64),
            ("ps/pushes", link.stats.pushes as f64),
            ("ps/stale", link.stats.stale as f64),
            ("ps/staleness_mean", link.stats.staleness as f64 / applied as f64),
        ]
    }

    /// Reads the reply to a push still in flight (an overlapping worker's last), so that
    /// `params` are the store's and the push is counted.
    pub fn settle(&mut self, params: &mut [f32]) -> Result<()> {
        match self {
            Updater::Remote(link) => link.settle(params),
            _ => Ok(()),
        }
    }

    /// Forgets the store version (after a restore: pull again before the next step).
    pub fn reset_version(&mut self) {
        if let Updater::Remote(link) | Updater::Averaging(Averaging { link, .. }) = self {
            link.version = None;
            link.just_pulled = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use shoal_dist::{ParamServer, UpdateMode};

    use super::*;

    /// A store whose pushes can be overlapped, as a remote one's: the push is applied when it
    /// starts, and the reply — the parameters newer than what the push said it had — is read
    /// when it finishes.
    struct Overlappable {
        server: ParamServer,
        sent: Mutex<Option<(PushOutcome, Option<u64>)>>,
    }

    impl ParamStore for Overlappable {
        fn len(&self) -> usize {
            self.server.len()
        }
        fn version(&self) -> u64 {
            self.server.version()
        }
        fn pull(&self, have: Option<u64>, out: &mut [f32]) -> shoal_dist::Result<Option<u64>> {
            self.server.pull(have, out)
        }
        fn push_gradient(&self, worker: usize, base: u64, grad: &[f32]) -> shoal_dist::Result<PushOutcome> {
            self.server.push_gradient(worker, base, grad)
        }
        fn push_params(&self, worker: usize, params: &mut [f32]) -> shoal_dist::Result<PushOutcome> {
            self.server.push_params(worker, params)
        }
        fn start_push_gradient_and_pull(
            &self,
            worker: usize,
            base: u64,
            grad: &[f32],
            have: Option<u64>,
        ) -> shoal_dist::Result<bool> {
            let outcome = self.server.push_gradient(worker, base, grad)?;
            *self.sent.lock().unwrap() = Some((outcome, have));
            Ok(true)
        }
        fn finish_push_gradient_and_pull(&self, out: &mut [f32]) -> shoal_dist::Result<(PushOutcome, Option<u64>)> {
            let (outcome, have) = self.sent.lock().unwrap().take().expect("a push was started");
            Ok((outcome, self.server.pull(have, out)?))
        }
    }

    fn store(init: &[f32]) -> Arc<Overlappable> {
        let mode = UpdateMode::Async { max_staleness: None };
        let server = ParamServer::new(init.to_vec(), Box::new(Sgd::new(init.len(), 0.0, false)), 0.5, mode);
        Arc::new(Overlappable { server, sent: Mutex::new(None) })
    }

    fn metric(updater: &Updater, name: &str) -> f64 {
        updater.metrics().into_iter().find(|(n, _)| *n == name).map(|(_, v)| v).unwrap()
    }

    /// An overlapping worker acts on the parameters one push behind: each step sends its
    /// gradient and takes the reply to the previous one, every gradient after the first is
    /// one update stale, and `settle` brings in the last reply.
    #[test]
    fn an_overlapping_link_reads_each_reply_one_step_later() {
        let init = [1.0f32, 2.0, 3.0];
        let (g1, g2) = ([1.0f32, 0.0, 0.0], [0.0f32, 1.0, 0.0]);
        for overlap in [false, true] {
            let store = store(&init);
            let mut updater = Updater::Local(Box::new(Sgd::new(3, 0.0, false)));
            updater.attach(Link::new(store.clone(), 0).overlapping(overlap), None);
            let mut params = [0.0f32; 3];
            updater.sync(&mut params).unwrap();
            assert_eq!(params, init);
            updater.step(&mut params, &g1, 0.0).unwrap();
            let after_g1 = store.server.params();
            assert_eq!(params.to_vec(), if overlap { init.to_vec() } else { after_g1.clone() }, "overlap {overlap}");
            updater.sync(&mut params).unwrap();
            assert_eq!(params.to_vec(), if overlap { init.to_vec() } else { after_g1.clone() }, "no pull in between");
            updater.step(&mut params, &g2, 0.0).unwrap();
            assert_eq!(params.to_vec(), if overlap { after_g1 } else { store.server.params() }, "overlap {overlap}");
            updater.settle(&mut params).unwrap();
            assert_eq!(params.to_vec(), store.server.params(), "settled: the store's parameters");
            assert_eq!(metric(&updater, "ps/pushes"), 2.0);
            // The second gradient was computed at version 0 when overlapping, and applied at 1.
            assert_eq!(metric(&updater, "ps/staleness_mean"), if overlap { 0.5 } else { 0.0 });
            // SGD with learning rate 0.5: each gradient applied once.
            assert_eq!(store.server.params(), vec![0.5, 1.5, 3.0]);
        }
    }
}
