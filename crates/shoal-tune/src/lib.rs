//! `shoal-tune`: hyperparameter search over Shoal's train configs, as Ray Tune and Optuna do
//! it — a study file names a base config, a search space over its keys, a searcher that picks
//! each trial's values and a scheduler that stops or continues trials early; the tuner runs
//! the trials (each a normal run directory) and keeps the whole study in SQLite, so a killed
//! study resumes.
//!
//! Layers, top down: `remote` (trials served to `shoal tune-worker` processes) over `tuner`
//! (the loop, and which searcher and scheduler a study gets) over `summary`, `store`, the
//! searchers (`searcher`: grid and random, `tpe`) and the schedulers (`scheduler`: FIFO, ASHA,
//! median stopping; `pbt`), over `study` (the checked study file) and `space` (distributions).

pub mod error;
pub mod pbt;
pub mod remote;
pub mod scheduler;
pub mod searcher;
pub mod space;
pub mod store;
pub mod study;
pub mod summary;
pub mod tpe;
pub mod tuner;

pub use error::{Result, TuneError};
pub use scheduler::{Decision, Exploit, Job, Scheduler};
pub use searcher::Searcher;
pub use space::{Domain, Params, Space};
pub use store::{StudyStore, TrialRow, TrialState};
pub use study::{Direction, Study};
pub use tuner::{run_study, store_path, trial_dir, JobEnd, Observer, Report, TrialJob, TrialRunner};
