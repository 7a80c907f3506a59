//! CliffWalking-v1: walk along a 4×12 grid's bottom edge to the goal without stepping off the
//! cliff (Sutton & Barto, Example 6.6). −1 per step; the cliff costs −100 and returns the agent
//! to the start without ending the episode. Mirrors `cliffwalking.py`.

use crate::envs::tabular::{TabularEnv, TabularModel, Transition};
use crate::error::Result;
use crate::options::EnvOptions;

const ROWS: usize = 4;
const COLS: usize = 12;
const START: usize = 3 * COLS;
const GOAL: (usize, usize) = (ROWS - 1, COLS - 1);
/// Row/column offsets of UP, RIGHT, DOWN, LEFT (Gymnasium's action order).
const MOVES: [(isize, isize); 4] = [(-1, 0), (0, 1), (1, 0), (0, -1)];

/// Builds CliffWalking; option `is_slippery` (default false): the move goes sideways with
/// probability 2/3 (Gymnasium's CliffWalkingSlippery-v1).
pub fn cliff_walking(options: &mut EnvOptions) -> Result<TabularEnv> {
    let is_slippery = options.bool("is_slippery", false)?;
    let mut model = TabularModel::new(ROWS * COLS, 4);
    model.initial[START] = 1.0;
    let is_cliff = |row: usize, col: usize| row == ROWS - 1 && (1..COLS - 1).contains(&col);
    for s in 0..ROWS * COLS {
        let (row, col) = (s / COLS, s % COLS);
        for a in 0..4 {
            let moves: Vec<usize> = if is_slippery { vec![(a + 3) % 4, a, (a + 1) % 4] } else { vec![a] };
            let prob = 1.0 / moves.len() as f64;
            let outcomes = moves.iter().map(|&m| {
                let (dr, dc) = MOVES[m];
                let r = row.saturating_add_signed(dr).min(ROWS - 1);
                let c = col.saturating_add_signed(dc).min(COLS - 1);
                if is_cliff(r, c) {
                    Transition { prob, next_state: START, reward: -100.0, terminated: false }
                } else {
                    Transition { prob, next_state: r * COLS + c, reward: -1.0, terminated: (r, c) == GOAL }
                }
            });
            model.outcomes_mut(s, a).extend(outcomes);
        }
    }
    Ok(TabularEnv::new("CliffWalking", model))
}
