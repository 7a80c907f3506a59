//! Taxi-v4: pick up a passenger and drop them at their destination on a 5×5 grid with walls
//! (Dietterich, 2000). Mirrors `taxi.py`, including the optional rainy (slippery) moves and the
//! fickle passenger who may change destination once after boarding.
//!
//! State index = ((row·5 + col)·5 + passenger_location)·4 + destination, where passenger
//! location 4 means "in the taxi". Actions: 0 south, 1 north, 2 east, 3 west, 4 pickup, 5 dropoff.

use rand::Rng;

use crate::env::{from_snapshot, to_snapshot, Env, Snapshot, StepResult};
use crate::envs::tabular::{TabularEnv, TabularModel, Transition};
use crate::error::Result;
use crate::options::EnvOptions;
use crate::space::{Action, Space};

const MAP: [&[u8]; 7] =
    [b"+---------+", b"|R: | : :G|", b"| : | : : |", b"| : : : : |", b"| | : | : |", b"|Y| : |B: |", b"+---------+"];
/// Pickup/dropoff locations R, G, Y, B as (row, col).
pub const LOCS: [(usize, usize); 4] = [(0, 0), (0, 4), (4, 0), (4, 3)];
const MAX_ROW: usize = 4;
const MAX_COL: usize = 4;
const IN_TAXI: usize = 4;

/// Packs (row, col, passenger location, destination) into a state index.
pub fn encode(row: usize, col: usize, pass_loc: usize, dest: usize) -> usize {
    ((row * 5 + col) * 5 + pass_loc) * 4 + dest
}

/// Unpacks a state index into (row, col, passenger location, destination).
pub fn decode(s: usize) -> (usize, usize, usize, usize) {
    (s / 100, (s / 20) % 5, (s / 4) % 5, s % 4)
}

/// No wall east of (row, col).
fn open_east(row: usize, col: usize) -> bool {
    MAP[1 + row][2 * col + 2] == b':'
}

/// No wall west of (row, col).
fn open_west(row: usize, col: usize) -> bool {
    MAP[1 + row][2 * col] == b':'
}

/// The taxi env: a [`TabularEnv`] plus the fickle passenger's extra randomness.
#[derive(Debug, Clone)]
pub struct Taxi {
    table: TabularEnv,
    fickle_passenger: bool,
    fickle_probability: f64,
    /// Whether this episode's passenger will change destination after the next move.
    fickle_step: bool,
    observation_space: Space,
}

impl Taxi {
    /// Builds Taxi. Options: `is_rainy` (default false), `rainy_probability` (0.8),
    /// `fickle_passenger` (false), `fickle_probability` (0.3).
    pub fn new(options: &mut EnvOptions) -> Result<Self> {
        let is_rainy = options.bool("is_rainy", false)?;
        let rainy_probability = options.float_in("rainy_probability", 0.8, 0.0, 1.0)?;
        let fickle_passenger = options.bool("fickle_passenger", false)?;
        let fickle_probability = options.float_in("fickle_probability", 0.3, 0.0, 1.0)?;
        let table = TabularEnv::new("Taxi", build_model(is_rainy, rainy_probability));
        Ok(Taxi {
            observation_space: table.observation_space().clone(),
            table,
            fickle_passenger,
            fickle_probability,
            fickle_step: false,
        })
    }

    /// The exact transition model (before the fickle passenger's destination change).
    pub fn model(&self) -> &TabularModel {
        self.table.model()
    }
}

fn pickup(taxi: (usize, usize), pass_idx: usize) -> (usize, f64) {
    if pass_idx < 4 && taxi == LOCS[pass_idx] {
        (IN_TAXI, -1.0)
    } else {
        (pass_idx, -10.0)
    }
}

/// Returns (new passenger location, reward, terminated).
fn dropoff(taxi: (usize, usize), pass_idx: usize, dest: usize) -> (usize, f64, bool) {
    if taxi == LOCS[dest] && pass_idx == IN_TAXI {
        (dest, 20.0, true)
    } else if pass_idx == IN_TAXI && LOCS.contains(&taxi) {
        (LOCS.iter().position(|&l| l == taxi).unwrap_or(pass_idx), -1.0, false)
    } else {
        (pass_idx, -10.0, false)
    }
}

/// Where a rainy sideways slip from (row, col) by (dr, dc) ends up: blocked by walls and edges.
fn slip(row: usize, col: usize, (dr, dc): (isize, isize)) -> (usize, usize) {
    let r = row.saturating_add_signed(dr).min(MAX_ROW);
    let c = col.saturating_add_signed(dc).min(MAX_COL);
    if (dc == 1 && MAP[1 + r][2 * c] != b':') || (dc == -1 && MAP[1 + r][2 * c + 2] != b':') {
        (row, col)
    } else {
        (r, c)
    }
}

fn build_model(is_rainy: bool, rainy_probability: f64) -> TabularModel {
    let mut model = TabularModel::new(500, 6);
    for s in 0..500 {
        let (row, col, pass_idx, dest) = decode(s);
        if pass_idx < 4 && pass_idx != dest {
            model.initial[s] += 1.0;
        }
        for action in 0..6 {
            *model.outcomes_mut(s, action) = outcomes(row, col, pass_idx, dest, action, is_rainy, rainy_probability);
        }
    }
    model.normalize_initial();
    model
}

/// Intended move, then the two lateral slips, per movement action (Gymnasium's `moves`).
const MOVES: [[(isize, isize); 3]; 4] =
    [[(1, 0), (0, 1), (0, -1)], [(-1, 0), (0, -1), (0, 1)], [(0, 1), (-1, 0), (1, 0)], [(0, -1), (1, 0), (-1, 0)]];

/// The outcomes of `action` in state (row, col, pass_idx, dest), as Gymnasium's
/// `_build_dry_transitions` / `_build_rainy_transitions` list them.
fn outcomes(
    row: usize,
    col: usize,
    pass_idx: usize,
    dest: usize,
    action: usize,
    is_rainy: bool,
    rainy_probability: f64,
) -> Vec<Transition> {
    let can_move = match action {
        0 => row < MAX_ROW,
        1 => row > 0,
        2 => open_east(row, col),
        3 => open_west(row, col),
        _ => false,
    };
    let (mut new_row, mut new_col) = (row, col);
    let (mut new_pass, mut reward, mut terminated) = (pass_idx, -1.0, false);
    match action {
        0..=3 if can_move => {
            let (dr, dc) = MOVES[action][0];
            new_row = row.saturating_add_signed(dr).min(MAX_ROW);
            new_col = col.saturating_add_signed(dc).min(MAX_COL);
        }
        4 => (new_pass, reward) = pickup((row, col), pass_idx),
        5 => (new_pass, reward, terminated) = dropoff((row, col), pass_idx, dest),
        _ => {}
    }
    let intended = encode(new_row, new_col, new_pass, dest);
    if !(is_rainy && action <= 3) {
        return vec![Transition { prob: 1.0, next_state: intended, reward, terminated }];
    }
    let (left, right) = if can_move {
        (slip(row, col, MOVES[action][1]), slip(row, col, MOVES[action][2]))
    } else {
        ((row, col), (row, col))
    };
    let lateral = (1.0 - rainy_probability) / 2.0;
    [
        (rainy_probability, intended),
        (lateral, encode(left.0, left.1, new_pass, dest)),
        (lateral, encode(right.0, right.1, new_pass, dest)),
    ]
    .into_iter()
    .map(|(prob, next_state)| Transition { prob, next_state, reward: -1.0, terminated })
    .collect()
}

impl Env for Taxi {
    fn name(&self) -> &str {
        "Taxi"
    }
    fn observation_space(&self) -> &Space {
        &self.observation_space
    }
    fn action_space(&self) -> &Space {
        self.table.action_space()
    }

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<()> {
        self.table.reset(seed, obs)?;
        self.fickle_step = self.fickle_passenger && self.table.rng().get().random::<f64>() < self.fickle_probability;
        Ok(())
    }

    fn reset_to_state(&mut self, state: &[f64], obs: &mut [f32]) -> Result<()> {
        self.fickle_step = false;
        self.table.reset_to_state(state, obs)
    }

    fn snapshot(&self) -> Result<Snapshot> {
        to_snapshot(self.name(), &(self.table.snapshot()?, self.fickle_step))
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<()> {
        let (table, fickle_step): (Snapshot, bool) = from_snapshot(self.name(), snapshot)?;
        self.table.restore(&table)?;
        self.fickle_step = fickle_step;
        Ok(())
    }

    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<StepResult> {
        let before = self.table.state();
        let t = self.table.sample_step(action)?;
        let mut next = t.next_state;
        if let Some(before) = before {
            let (old_row, old_col, old_pass, old_dest) = decode(before);
            let (row, col, pass, _) = decode(next);
            // A passenger riding in a taxi that just moved may change their mind, once.
            if self.fickle_step && old_pass == IN_TAXI && (row, col) != (old_row, old_col) {
                self.fickle_step = false;
                let others: Vec<usize> = (0..4).filter(|&d| d != old_dest).collect();
                let pick = self.table.rng().get().random_range(0..others.len());
                next = encode(row, col, pass, others[pick]);
            }
        }
        self.table.set_state(next, obs)?;
        Ok(StepResult { reward: t.reward, terminated: t.terminated, truncated: false })
    }
}
