//! Sharding (model parallelism of the parameter vector): the flat vector is cut into S
//! contiguous ranges, each held by its own server with its own version and optimizer state.
//! [`ShardedStore`] is the client side: it splits pushes, merges pulls, and remembers each
//! shard's version, so one worker sees the shards as one [`ParamStore`].
//!
//! Elementwise optimizers (SGD, Adam, RMSProp) give exactly the unsharded result, because
//! every parameter's update reads only its own gradient and moments. Gradient clipping runs at
//! the worker, on the whole gradient, before the split.

use std::ops::Range;
use std::sync::Mutex;

use crate::error::{check_len, DistError, Result};
use crate::monitor::{Coordinator, RunStatus};
use crate::store::{ParamStore, PushOutcome};

/// Shard `index`'s range of a `len`-parameter vector cut into `count` near-equal parts.
pub fn shard_range(len: usize, index: usize, count: usize) -> Range<usize> {
    let count = count.max(1);
    let (base, extra) = (len / count, len % count);
    let start = index * base + index.min(extra);
    start..start + base + usize::from(index < extra)
}

/// One worker's view of S shards. Not shared between workers: the remembered versions are
/// this worker's.
pub struct ShardedStore<S> {
    shards: Vec<S>,
    ranges: Vec<Range<usize>>,
    versions: Mutex<Vec<Option<u64>>>,
    /// The versions the worker's parameters had before the last overlapped reply replaced
    /// them: the gradient it starts next was computed at those.
    replaced: Mutex<Option<Vec<Option<u64>>>>,
    len: usize,
}

impl<S: ParamStore> ShardedStore<S> {
    /// Joins `shards`, in order; their lengths must add up to the model's `len`, laid out by
    /// [`shard_range`].
    pub fn new(shards: Vec<S>, len: usize) -> Result<Self> {
        let ranges: Vec<Range<usize>> = (0..shards.len()).map(|i| shard_range(len, i, shards.len())).collect();
        for (i, (shard, range)) in shards.iter().zip(&ranges).enumerate() {
            if shard.len() != range.len() {
                return Err(DistError::Setup(format!(
                    "shard {i} holds {} parameters, expected {} ({} parameters over {} shards): are all shards started with the same config and shard count?",
                    shard.len(),
                    range.len(),
                    len,
                    shards.len()
                )));
            }
        }
        let versions = Mutex::new(vec![None; shards.len()]);
        Ok(ShardedStore { shards, ranges, versions, replaced: Mutex::new(None), len })
    }

    /// The shards' stores, in order (for what only a shard's client knows, such as how often
    /// its server answered busy).
    pub fn shards(&self) -> &[S] {
        &self.shards
    }

    fn versions(&self) -> std::sync::MutexGuard<'_, Vec<Option<u64>>> {
        self.versions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn replaced(&self) -> std::sync::MutexGuard<'_, Option<Vec<Option<u64>>>> {
        self.replaced.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The combined version: the sum of the shards' versions, which grows with every update.
    fn combined(versions: &[Option<u64>]) -> u64 {
        versions.iter().map(|v| v.unwrap_or(0)).sum()
    }

    /// `data` cut into the shards' slices.
    fn slices<'a>(&self, data: &'a mut [f32]) -> Vec<&'a mut [f32]> {
        let mut slices = Vec::with_capacity(self.shards.len());
        let mut rest = data;
        for range in &self.ranges {
            let (head, tail) = rest.split_at_mut(range.len());
            slices.push(head);
            rest = tail;
        }
        slices
    }

    /// Runs `f` on every shard with its slice, in parallel when there is more than one.
    fn each<T: Send>(&self, data: &mut [f32], f: impl Fn(usize, &S, &mut [f32]) -> Result<T> + Sync) -> Result<Vec<T>>
    where
        S: Sync,
    {
        let mut slices = self.slices(data);
        if self.shards.len() == 1 {
            return Ok(vec![f(0, &self.shards[0], slices.pop().unwrap_or_default())?]);
        }
        std::thread::scope(|scope| {
            let handles: Vec<_> = slices
                .into_iter()
                .enumerate()
                .map(|(i, slice)| {
                    let (f, shard) = (&f, &self.shards[i]);
                    scope.spawn(move || f(i, shard, slice))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(DistError::Setup("a shard call panicked".into()))))
                .collect()
        })
    }

    /// The shard versions this worker holds (forgotten when it says it holds none).
    fn known(&self, have: Option<u64>) -> Vec<Option<u64>> {
        if have.is_none() {
            self.versions().fill(None);
        }
        self.versions().clone()
    }

    /// Records the versions shards sent; the combined version if any shard sent parameters.
    fn remember(&self, pulled: Vec<Option<u64>>) -> Option<u64> {
        let mut versions = self.versions();
        let mut changed = false;
        for (v, got) in versions.iter_mut().zip(pulled) {
            if let Some(got) = got {
                *v = Some(got);
                changed = true;
            }
        }
        changed.then(|| Self::combined(&versions))
    }

    /// Sends a push of its slice of `grad` (computed at `bases`, pulling what is newer than
    /// `known`) to every shard; false when the shards cannot split a push from its reply. If
    /// a send fails, the replies already on their way are read and dropped, so that every
    /// connection is left ready for its next call.
    fn start_all(&self, worker: usize, bases: &[Option<u64>], known: &[Option<u64>], grad: &[f32]) -> Result<bool> {
        for (i, shard) in self.shards.iter().enumerate() {
            let slice = &grad[self.ranges[i].clone()];
            let started = shard.start_push_gradient_and_pull(worker, bases[i].unwrap_or(0), slice, known[i]);
            let error = match started {
                Ok(true) => continue,
                Ok(false) if i == 0 => return Ok(false),
                Ok(false) => DistError::Setup(format!("shard {i} cannot overlap a push where shard 0 did")),
                Err(e) => e,
            };
            for (j, sent) in self.shards[..i].iter().enumerate() {
                let _ = sent.finish_push_gradient_and_pull(&mut vec![0.0; self.ranges[j].len()]);
            }
            return Err(error);
        }
        Ok(true)
    }

    /// Reads every shard's reply to what [`ShardedStore::start_all`] sent, one after another
    /// (the servers answered meanwhile), each into its slice of `out`; a shard that answered
    /// busy is answered by `busy` instead. The first error after all are read.
    fn finish_all(
        &self,
        out: &mut [f32],
        busy: impl Fn(usize, &S, &mut [f32]) -> Result<(PushOutcome, Option<u64>)>,
    ) -> Result<Vec<(PushOutcome, Option<u64>)>> {
        let mut results = Vec::with_capacity(self.shards.len());
        for (i, (shard, slice)) in self.shards.iter().zip(self.slices(out)).enumerate() {
            results.push(match shard.finish_push_gradient_and_pull(slice) {
                Err(DistError::Busy { .. }) => busy(i, shard, slice),
                other => other,
            });
        }
        results.into_iter().collect()
    }

    fn check(&self, what: &'static str, got: usize) -> Result<()> {
        check_len(what, got, self.len)
    }
}

impl<S: ParamStore> ParamStore for ShardedStore<S> {
    fn len(&self) -> usize {
        self.len
    }

    fn version(&self) -> u64 {
        self.shards.iter().map(|s| s.version()).sum()
    }

    fn pull(&self, have: Option<u64>, out: &mut [f32]) -> Result<Option<u64>> {
        self.check("pull buffer", out.len())?;
        let known = self.known(have);
        let pulled = self.each(out, |i, shard, slice| shard.pull(known[i], slice))?;
        *self.replaced() = None;
        Ok(self.remember(pulled))
    }

    /// Where the shards split a push and its reply (the data plane), the request goes to every
    /// shard first and the replies are read after, so the shards work at once without a thread
    /// per shard (a thread spawned per shard per call cost 2 shards of a 10 KB model 80% of
    /// their calls per second: `shoal bench load`); in-memory shards take one thread each.
    fn push_gradient_and_pull(
        &self,
        worker: usize,
        _base_version: u64,
        grad: &[f32],
        have: Option<u64>,
        out: &mut [f32],
    ) -> Result<(PushOutcome, Option<u64>)> {
        self.check("gradient", grad.len())?;
        self.check("pull buffer", out.len())?;
        let known = self.known(have);
        let results = if self.start_all(worker, &known, &known, grad)? {
            // A shard that answered busy gets the push again, waiting as the store waits.
            self.finish_all(out, |i, shard, slice| {
                shard.push_gradient_and_pull(
                    worker,
                    known[i].unwrap_or(0),
                    &grad[self.ranges[i].clone()],
                    known[i],
                    slice,
                )
            })?
        } else {
            self.each(out, |i, shard, slice| {
                let base = known[i].unwrap_or(0);
                shard.push_gradient_and_pull(worker, base, &grad[self.ranges[i].clone()], known[i], slice)
            })?
        };
        let (outcomes, pulled): (Vec<_>, Vec<_>) = results.into_iter().unzip();
        Ok((merge(&outcomes), self.remember(pulled)))
    }

    /// Starts the push on every shard in turn (each request is read by its server while the
    /// next is written); each shard judges staleness against the version the gradient was
    /// computed at.
    fn start_push_gradient_and_pull(
        &self,
        worker: usize,
        _base_version: u64,
        grad: &[f32],
        have: Option<u64>,
    ) -> Result<bool> {
        self.check("gradient", grad.len())?;
        let known = self.known(have);
        let bases = self.replaced().take().unwrap_or_else(|| known.clone());
        self.start_all(worker, &bases, &known, grad)
    }

    fn finish_push_gradient_and_pull(&self, out: &mut [f32]) -> Result<(PushOutcome, Option<u64>)> {
        self.check("pull buffer", out.len())?;
        *self.replaced() = Some(self.versions().clone());
        // The gradient is gone: a push a shard answered busy counts as stale, and the worker
        // goes on from that shard's current parameters.
        let results = self.finish_all(out, |_, shard, slice| {
            let pulled = shard.pull(None, slice)?;
            Ok((PushOutcome::Stale { version: pulled.unwrap_or(0), staleness: 0 }, pulled))
        })?;
        let (outcomes, pulled): (Vec<_>, Vec<_>) = results.into_iter().unzip();
        Ok((merge(&outcomes), self.remember(pulled)))
    }

    fn push_gradient(&self, worker: usize, _base_version: u64, grad: &[f32]) -> Result<PushOutcome> {
        self.check("gradient", grad.len())?;
        // Each shard judges staleness against the version this worker last pulled from it.
        let known = self.versions().clone();
        let mut grad = grad.to_vec();
        let outcomes =
            self.each(&mut grad, |i, shard, slice| shard.push_gradient(worker, known[i].unwrap_or(0), slice))?;
        Ok(merge(&outcomes))
    }

    fn push_params(&self, worker: usize, params: &mut [f32]) -> Result<PushOutcome> {
        self.check("parameters", params.len())?;
        let outcomes = self.each(params, |_, shard, slice| shard.push_params(worker, slice))?;
        Ok(merge(&outcomes))
    }
}

/// Reports go to every shard, so each knows the run's progress (for its learning-rate
/// schedule and the stop rule); shard 0's answer is the run's.
impl<S: ParamStore + Coordinator> Coordinator for ShardedStore<S> {
    fn report(&self, worker: usize, env_steps: u64, episodes: &[(f64, u64)]) -> Result<RunStatus> {
        let mut statuses =
            self.shards.iter().map(|s| s.report(worker, env_steps, episodes)).collect::<Result<Vec<_>>>()?;
        Ok(statuses.swap_remove(0))
    }

    fn solved(&self, worker: usize) -> Result<RunStatus> {
        let mut statuses = self.shards.iter().map(|s| s.solved(worker)).collect::<Result<Vec<_>>>()?;
        Ok(statuses.swap_remove(0))
    }

    /// Statistics are the run's, not a shard's: shard 0 keeps them.
    fn share_statistics(&self, worker: usize, values: &[f64]) -> Result<Vec<Vec<f64>>> {
        self.shards[0].share_statistics(worker, values)
    }
}

/// One outcome for the whole vector: stale if any shard found it stale; versions summed.
fn merge(outcomes: &[PushOutcome]) -> PushOutcome {
    let mut stale = false;
    let (mut version, mut staleness) = (0, 0);
    for outcome in outcomes {
        let (v, s) = match *outcome {
            PushOutcome::Applied { version, staleness } => (version, staleness),
            PushOutcome::Stale { version, staleness } => {
                stale = true;
                (version, staleness)
            }
        };
        version += v;
        staleness = staleness.max(s);
    }
    if stale {
        PushOutcome::Stale { version, staleness }
    } else {
        PushOutcome::Applied { version, staleness }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_tile_the_vector() {
        for (len, count) in [(10, 3), (7, 7), (5, 1), (1000, 4), (3, 5)] {
            let ranges: Vec<_> = (0..count).map(|i| shard_range(len, i, count)).collect();
            assert_eq!(ranges[0].start, 0);
            assert_eq!(ranges.last().unwrap().end, len);
            assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));
            assert!(ranges.iter().all(|r| r.len() <= len / count + 1));
        }
    }
}
