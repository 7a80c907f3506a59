//! Synchronous data parallelism without a parameter server: every process computes a gradient
//! on its own data, the group sums the gradients (MPI_Allreduce), and each process takes the
//! same optimizer step on the mean — so the parameters never diverge and no server holds them.
//! [`LocalGroup`] does it between threads of one process (the reference the tests compare
//! against); [`MpiGroup`] (cargo feature `mpi`) between the ranks of `mpirun`.

use std::sync::{Arc, Condvar, Mutex};

use crate::error::{DistError, Result};

/// A fixed group of peers that sum vectors together. Every member must make the same calls in
/// the same order (a collective), or the group waits forever.
pub trait AllReduce: Send + Sync {
    /// This member's index in `0..size`.
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    /// Replaces `values` with the element-wise sum of every member's `values`.
    fn sum(&self, values: &mut [f32]) -> Result<()>;
    /// The same for counters and flags.
    fn sum_f64(&self, values: &mut [f64]) -> Result<()>;

    /// Replaces `values` with member 0's (a broadcast, as a sum with zeros elsewhere).
    fn broadcast_from_0(&self, values: &mut [f32]) -> Result<()> {
        if self.rank() != 0 {
            values.fill(0.0);
        }
        self.sum(values)
    }
}

/// Threads of one process as a group: members meet at a barrier per call and each reads the
/// total. Summation runs in rank order, so the result is the same on every member.
pub struct LocalGroup {
    rank: usize,
    shared: Arc<Shared>,
}

struct Shared {
    size: usize,
    state: Mutex<Round>,
    turned: Condvar,
}

#[derive(Default)]
struct Round {
    /// Every member's contribution to the current round, by rank.
    parts: Vec<Option<Vec<f64>>>,
    /// The sum of the last completed round, and how many members have read it.
    total: Vec<f64>,
    read: usize,
    generation: u64,
}

impl LocalGroup {
    /// The `size` members of a new group, in rank order.
    pub fn new(size: usize) -> Vec<LocalGroup> {
        let shared = Arc::new(Shared {
            size,
            state: Mutex::new(Round { parts: vec![None; size], read: size, ..Round::default() }),
            turned: Condvar::new(),
        });
        (0..size).map(|rank| LocalGroup { rank, shared: Arc::clone(&shared) }).collect()
    }

    fn reduce(&self, values: &[f64]) -> Result<Vec<f64>> {
        let poisoned = |_| DistError::Setup("a member of the local all-reduce group panicked".into());
        let mut state = self.shared.state.lock().map_err(poisoned)?;
        // Wait until every member has read the previous round's total.
        while state.read < self.shared.size {
            state = self.shared.turned.wait(state).map_err(poisoned)?;
        }
        let generation = state.generation;
        state.parts[self.rank] = Some(values.to_vec());
        if state.parts.iter().all(Option::is_some) {
            let mut total = vec![0.0; values.len()];
            for part in state.parts.iter_mut().map(|p| p.take().unwrap_or_default()) {
                if part.len() != total.len() {
                    return Err(DistError::Length {
                        what: "an all-reduce contribution",
                        got: part.len(),
                        expected: total.len(),
                    });
                }
                total.iter_mut().zip(part).for_each(|(t, p)| *t += p);
            }
            state.total = total;
            state.read = 0;
            state.generation += 1;
            self.shared.turned.notify_all();
        }
        while state.generation == generation {
            state = self.shared.turned.wait(state).map_err(poisoned)?;
        }
        let total = state.total.clone();
        state.read += 1;
        if state.read == self.shared.size {
            self.shared.turned.notify_all();
        }
        Ok(total)
    }
}

impl AllReduce for LocalGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.shared.size
    }

    fn sum(&self, values: &mut [f32]) -> Result<()> {
        let wide: Vec<f64> = values.iter().map(|&v| f64::from(v)).collect();
        let total = self.reduce(&wide)?;
        values.iter_mut().zip(total).for_each(|(v, t)| *v = t as f32);
        Ok(())
    }

    fn sum_f64(&self, values: &mut [f64]) -> Result<()> {
        let total = self.reduce(values)?;
        values.copy_from_slice(&total);
        Ok(())
    }
}

#[cfg(feature = "mpi")]
pub use self::mpi_group::MpiGroup;

#[cfg(feature = "mpi")]
mod mpi_group {
    use std::sync::Mutex;

    use mpi::collective::SystemOperation;
    use mpi::topology::{Communicator, SimpleCommunicator};
    use mpi::traits::CommunicatorCollectives;
    use mpi::Threading;

    use super::AllReduce;
    use crate::error::{DistError, Result};

    /// The ranks of `mpirun` (MPI_COMM_WORLD) as a group.
    pub struct MpiGroup {
        rank: usize,
        size: usize,
        world: Mutex<World>,
    }

    struct World {
        comm: SimpleCommunicator,
        /// Finalizes MPI when the group is dropped.
        _universe: mpi::environment::Universe,
    }

    // SAFETY: MPI is initialized with MPI_THREAD_SERIALIZED, which allows calls from any
    // thread as long as no two run at once; the mutex around `World` serializes every call.
    unsafe impl Send for World {}

    impl MpiGroup {
        /// Initializes MPI (once per process) and joins MPI_COMM_WORLD.
        pub fn init() -> Result<Self> {
            let (universe, threading) = mpi::initialize_with_threading(Threading::Serialized)
                .ok_or_else(|| DistError::Setup("MPI is already initialized in this process".into()))?;
            if threading < Threading::Serialized {
                return Err(DistError::Setup(format!(
                    "this MPI library offers thread level {threading:?}; shoal needs Serialized"
                )));
            }
            let comm = universe.world();
            let (rank, size) = (comm.rank() as usize, comm.size() as usize);
            Ok(MpiGroup { rank, size, world: Mutex::new(World { comm, _universe: universe }) })
        }

        fn world(&self) -> Result<std::sync::MutexGuard<'_, World>> {
            self.world.lock().map_err(|_| DistError::Setup("a thread panicked inside an MPI call".into()))
        }
    }

    impl AllReduce for MpiGroup {
        fn rank(&self) -> usize {
            self.rank
        }

        fn size(&self) -> usize {
            self.size
        }

        fn sum(&self, values: &mut [f32]) -> Result<()> {
            let send = values.to_vec();
            self.world()?.comm.all_reduce_into(&send[..], values, SystemOperation::sum());
            Ok(())
        }

        fn sum_f64(&self, values: &mut [f64]) -> Result<()> {
            let send = values.to_vec();
            self.world()?.comm.all_reduce_into(&send[..], values, SystemOperation::sum());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_group_sums_and_broadcasts_round_after_round() {
        let members = LocalGroup::new(3);
        let handles: Vec<_> = members
            .into_iter()
            .map(|member| {
                std::thread::spawn(move || {
                    let mut out = Vec::new();
                    for round in 0..50 {
                        let mut values = vec![member.rank() as f32 + round as f32, 1.0];
                        member.sum(&mut values).unwrap();
                        out.push(values);
                    }
                    let mut params = vec![member.rank() as f32 + 10.0; 4];
                    member.broadcast_from_0(&mut params).unwrap();
                    (out, params)
                })
            })
            .collect();
        for handle in handles {
            let (sums, params) = handle.join().unwrap();
            for (round, values) in sums.iter().enumerate() {
                assert_eq!(values, &vec![3.0 + 3.0 * round as f32, 3.0]);
            }
            assert_eq!(params, vec![10.0; 4]);
        }
    }
}
