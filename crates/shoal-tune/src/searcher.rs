//! Searchers choose each trial's parameters. Every searcher is a function of the study seed,
//! the trial's index and the results it was told of, so a resumed study, rebuilt from its
//! stored results, suggests what the first run would have.

use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

use crate::space::{Domain, Params, Space};

/// Chooses the parameters of trial after trial (ask), learning from their results (tell).
pub trait Searcher: Send {
    /// Parameters for trial `index`.
    fn suggest(&mut self, index: usize) -> Params;
    /// Trial `index`'s final result as a score (larger is better), `None` when it failed.
    fn observe(&mut self, index: usize, params: &Params, score: Option<f64>);
}

/// A generator for trial `index` alone: the same draws whatever order trials are asked in.
pub(crate) fn trial_rng(seed: u64, index: usize) -> Pcg64Mcg {
    Pcg64Mcg::seed_from_u64(seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// Every combination of the grid keys (the last key varying fastest), repeated; the other
/// keys drawn for each trial.
pub struct GridSearch {
    space: Space,
    seed: u64,
}

impl GridSearch {
    pub fn new(space: Space, seed: u64) -> Self {
        GridSearch { space, seed }
    }
}

impl Searcher for GridSearch {
    fn suggest(&mut self, index: usize) -> Params {
        let mut rng = trial_rng(self.seed, index);
        let mut cell = index % self.space.grid_size().max(1);
        let mut params = Params::new();
        // Mixed-radix digits of the cell number, the last grid key least significant.
        let grid = self.space.grid();
        for (key, values) in grid.iter().rev() {
            params.insert(key.to_string(), values[cell % values.len()].clone());
            cell /= values.len();
        }
        for (key, domain) in &self.space.keys {
            if !matches!(domain, Domain::Grid(_)) {
                params.insert(key.clone(), domain.sample(&mut rng));
            }
        }
        params
    }

    fn observe(&mut self, _: usize, _: &Params, _: Option<f64>) {}
}

/// Every key drawn independently for every trial.
pub struct RandomSearch {
    space: Space,
    seed: u64,
}

impl RandomSearch {
    pub fn new(space: Space, seed: u64) -> Self {
        RandomSearch { space, seed }
    }
}

impl Searcher for RandomSearch {
    fn suggest(&mut self, index: usize) -> Params {
        let mut rng = trial_rng(self.seed, index);
        self.space.keys.iter().map(|(k, d)| (k.clone(), d.sample(&mut rng))).collect()
    }

    fn observe(&mut self, _: usize, _: &Params, _: Option<f64>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(text: &str) -> Space {
        Space::parse(&text.parse::<toml::Table>().unwrap()).unwrap()
    }

    #[test]
    fn a_grid_enumerates_every_combination_once_per_pass() {
        let space = space("a = { grid = [1, 2, 3] }\nb = { grid = [\"x\", \"y\"] }\nc = { uniform = [0.0, 1.0] }");
        assert_eq!(space.grid_size(), 6);
        let mut grid = GridSearch::new(space, 3);
        let trials: Vec<Params> = (0..12).map(|i| grid.suggest(i)).collect();
        let cells: Vec<(i64, String)> =
            trials.iter().map(|p| (p["a"].as_integer().unwrap(), p["b"].as_str().unwrap().to_string())).collect();
        let pass: Vec<(i64, String)> =
            [1, 2, 3].iter().flat_map(|&a| ["x", "y"].iter().map(move |b| (a, b.to_string()))).collect();
        assert_eq!(cells[..6], pass[..], "the first pass, in order");
        assert_eq!(cells[6..], pass[..], "the second pass repeats it");
        let c: Vec<f64> = trials.iter().map(|p| p["c"].as_float().unwrap()).collect();
        assert!(c.iter().all(|x| (0.0..1.0).contains(x)));
        assert_ne!(c[0], c[6], "sampled keys are drawn anew for each trial");
        assert_eq!(grid.suggest(4), trials[4], "a trial's parameters depend on its index alone");
    }

    #[test]
    fn random_search_is_reproducible_from_the_seed() {
        let space = space("lr = { loguniform = [1e-5, 1e-2] }\nn = { choice = [64, 128] }");
        let mut a = RandomSearch::new(space.clone(), 11);
        let mut b = RandomSearch::new(space.clone(), 11);
        let mut c = RandomSearch::new(space, 12);
        let (first, again, other) = (a.suggest(5), b.suggest(5), c.suggest(5));
        assert_eq!(first, again);
        assert_ne!(first, other);
        assert_ne!(a.suggest(6), first);
    }
}
