//! Range checks of config values, with errors that name the key (`ppo.gamma = 1.5 is out of
//! range: it must be in [0, 1]`), shared by every section's validation.

use crate::error::{config_err, Result};

/// Checks `value` lies in `[lo, hi]`, naming `key` otherwise.
pub(crate) fn check_range(key: &str, value: f64, lo: f64, hi: f64) -> Result<()> {
    if !(lo..=hi).contains(&value) {
        return Err(config_err(format!("{key} = {value} is out of range: it must be in [{lo}, {hi}]")));
    }
    Ok(())
}

/// Checks a count is positive, naming `key` otherwise.
pub(crate) fn check_positive(key: &str, value: usize) -> Result<()> {
    if value == 0 {
        return Err(config_err(format!("{key} must be at least 1")));
    }
    Ok(())
}
