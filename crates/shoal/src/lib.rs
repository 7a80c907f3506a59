//! The library half of the `shoal` crate: run directories and training into them, which the
//! command-line tool (`src/main.rs`) and the Python package (`python/`) share, so a run started
//! from Python is the same run directory `shoal eval`, `shoal plot` and `--resume` read.

pub mod run;
pub mod training;
