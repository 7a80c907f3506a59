//! FrozenLake-v1: cross a frozen lake from S to G without falling into a hole H.
//!
//! Mirrors `frozen_lake.py`'s transition table: on slippery ice the intended move happens with
//! probability `success_rate` and each perpendicular move with half the rest.

use crate::envs::tabular::{TabularEnv, TabularModel, Transition};
use crate::error::{EnvError, Result};
use crate::options::EnvOptions;

const LEFT: usize = 0;
const DOWN: usize = 1;
const RIGHT: usize = 2;
const UP: usize = 3;

/// Gymnasium's built-in maps.
pub fn builtin_map(name: &str) -> Option<&'static [&'static str]> {
    match name {
        "4x4" => Some(&["SFFF", "FHFH", "FFFH", "HFFG"]),
        "8x8" => {
            Some(&["SFFFFFFF", "FFFFFFFF", "FFFHFFFF", "FFFFFHFF", "FFFHFFFF", "FHHFFFHF", "FHFFHFHF", "FFFHFFFG"])
        }
        _ => None,
    }
}

/// Builds FrozenLake. Options: `map_name` ("4x4" | "8x8"), `desc` (rows of S/F/H/G, overrides
/// `map_name`), `is_slippery` (default true), `success_rate` (default 1/3), and
/// `reward_schedule` (three numbers: goal, hole, frozen; default 1,0,0).
pub fn frozen_lake(options: &mut EnvOptions) -> Result<TabularEnv> {
    let map_name = options.choice("map_name", "4x4", &["4x4", "8x8"])?;
    let desc: Vec<String> = match options.list("desc")? {
        Some(rows) => rows,
        None => builtin_map(&map_name).unwrap_or_default().iter().map(|r| r.to_string()).collect(),
    };
    let is_slippery = options.bool("is_slippery", true)?;
    let success_rate = options.float_in("success_rate", 1.0 / 3.0, 0.0, 1.0)?;
    let reward_schedule = match options.list("reward_schedule")? {
        None => [1.0, 0.0, 0.0],
        Some(items) => parse_schedule(&items)?,
    };
    Ok(TabularEnv::new("FrozenLake", build_model(&desc, is_slippery, success_rate, reward_schedule)?))
}

fn parse_schedule(items: &[String]) -> Result<[f64; 3]> {
    let bad = || EnvError::BadOption {
        env: "FrozenLake".into(),
        key: "reward_schedule".into(),
        problem: format!("expected three numbers (goal,hole,frozen), got `{}`", items.join(",")),
    };
    let values: Vec<f64> = items.iter().map(|s| s.parse().map_err(|_| bad())).collect::<Result<_>>()?;
    values.try_into().map_err(|_| bad())
}

fn validate_desc(desc: &[String]) -> Result<(usize, usize)> {
    let bad = |problem: String| EnvError::BadOption { env: "FrozenLake".into(), key: "desc".into(), problem };
    let nrow = desc.len();
    let ncol = desc.first().map_or(0, |r| r.len());
    if nrow == 0 || ncol == 0 || desc.iter().any(|r| r.len() != ncol) {
        return Err(bad("rows must be non-empty and of equal length".into()));
    }
    if let Some(c) = desc.iter().flat_map(|r| r.chars()).find(|c| !"SFHG".contains(*c)) {
        return Err(bad(format!("unknown tile `{c}`; tiles are S, F, H, G")));
    }
    if !desc.iter().any(|r| r.contains('S')) {
        return Err(bad("the map needs a start tile S".into()));
    }
    Ok((nrow, ncol))
}

fn build_model(
    desc: &[String],
    is_slippery: bool,
    success_rate: f64,
    reward_schedule: [f64; 3],
) -> Result<TabularModel> {
    let (nrow, ncol) = validate_desc(desc)?;
    let tiles: Vec<&[u8]> = desc.iter().map(|r| r.as_bytes()).collect();
    let mut model = TabularModel::new(nrow * ncol, 4);
    let to_s = |row: usize, col: usize| row * ncol + col;
    let inc = |row: usize, col: usize, a: usize| match a {
        LEFT => (row, col.saturating_sub(1)),
        DOWN => ((row + 1).min(nrow - 1), col),
        RIGHT => (row, (col + 1).min(ncol - 1)),
        UP => (row.saturating_sub(1), col),
        _ => (row, col),
    };
    let outcome = |prob: f64, row: usize, col: usize, a: usize| {
        let (r, c) = inc(row, col, a);
        let letter = tiles[r][c];
        let reward = match letter {
            b'G' => reward_schedule[0],
            b'H' => reward_schedule[1],
            _ => reward_schedule[2],
        };
        Transition { prob, next_state: to_s(r, c), reward, terminated: letter == b'G' || letter == b'H' }
    };
    let fail_rate = (1.0 - success_rate) / 2.0;
    for (row, line) in tiles.iter().enumerate() {
        for (col, &letter) in line.iter().enumerate() {
            let s = to_s(row, col);
            model.initial[s] = if letter == b'S' { 1.0 } else { 0.0 };
            for a in 0..4 {
                let outcomes = model.outcomes_mut(s, a);
                if matches!(letter, b'G' | b'H') {
                    outcomes.push(Transition { prob: 1.0, next_state: s, reward: 0.0, terminated: true });
                } else if is_slippery {
                    for b in [(a + 3) % 4, a, (a + 1) % 4] {
                        outcomes.push(outcome(if b == a { success_rate } else { fail_rate }, row, col, b));
                    }
                } else {
                    outcomes.push(outcome(1.0, row, col, a));
                }
            }
        }
    }
    model.normalize_initial();
    Ok(model)
}
