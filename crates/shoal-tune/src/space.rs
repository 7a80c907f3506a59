//! Search spaces: the values each tuned config key may take, named as Ray Tune names them
//! (`grid`, `choice`, `uniform`, `quniform`, `loguniform`, `randint`, `qrandint`) and written
//! in a study file as one-key inline tables:
//!
//! ```toml
//! [space]
//! "ppo.learning_rate" = { loguniform = [1e-5, 1e-2] }
//! "ppo.gamma" = { choice = [0.98, 0.99, 0.995] }
//! "ppo.num_steps" = { qrandint = [16, 256, 16] }
//! ```

use std::collections::BTreeMap;

use rand::Rng;

use crate::error::{spec_err, Result};

/// One configuration of a trial: a value for every key of the space, ordered by key.
pub type Params = BTreeMap<String, toml::Value>;

/// Parameters as `key=value` pairs, for a line of output.
pub fn show(params: &Params) -> String {
    params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

/// What one key may take.
#[derive(Debug, Clone, PartialEq)]
pub enum Domain {
    /// Every value, each combined with every value of the other grid keys (Tune's
    /// `grid_search`; the whole grid repeats `num_samples` times).
    Grid(Vec<toml::Value>),
    /// One of the values, each equally likely.
    Choice(Vec<toml::Value>),
    /// A float uniform in `[low, high)`.
    Uniform { low: f64, high: f64 },
    /// A uniform float rounded to a multiple of `q`.
    QUniform { low: f64, high: f64, q: f64 },
    /// A float whose logarithm is uniform: for scales (learning rates, coefficients).
    LogUniform { low: f64, high: f64 },
    /// An integer uniform in `[low, high)` (Tune's `randint`: `high` excluded).
    RandInt { low: i64, high: i64 },
    /// An integer uniform in `[low, high]` rounded to a multiple of `q` (Tune's `qrandint`:
    /// `high` included).
    QRandInt { low: i64, high: i64, q: i64 },
}

/// The names a space entry may use, for error messages.
const NAMES: &str = "grid, choice, uniform, quniform, loguniform, randint, qrandint";

impl Domain {
    /// Parses `{ name = [arguments] }` for config key `key` (named in every error).
    pub fn parse(key: &str, value: &toml::Value) -> Result<Self> {
        let err = |m: String| spec_err(format!("space.\"{key}\": {m}"));
        let table = value.as_table().filter(|t| t.len() == 1).ok_or_else(|| {
            err(format!("write one distribution as an inline table, e.g. {{ loguniform = [1e-5, 1e-2] }} ({NAMES})"))
        })?;
        let (name, args) = table.iter().next().ok_or_else(|| err("empty table".into()))?;
        let args = args.as_array().ok_or_else(|| err(format!("{name} takes an array, e.g. {name} = [...]")))?;
        let floats = |n: usize| -> Result<Vec<f64>> {
            let values: Option<Vec<f64>> =
                args.iter().map(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64))).collect();
            match values {
                Some(v) if v.len() == n && v.iter().all(|x| x.is_finite()) => Ok(v),
                _ => Err(err(format!("{name} takes {n} finite numbers, got {}", toml::Value::Array(args.clone())))),
            }
        };
        let ints = |n: usize| -> Result<Vec<i64>> {
            let values: Option<Vec<i64>> = args.iter().map(toml::Value::as_integer).collect();
            match values {
                Some(v) if v.len() == n => Ok(v),
                _ => Err(err(format!("{name} takes {n} integers, got {}", toml::Value::Array(args.clone())))),
            }
        };
        let ordered = |low: f64, high: f64, strict: bool| -> Result<()> {
            if low > high || (strict && low == high) {
                let need = if strict { "low < high" } else { "low ≤ high" };
                return Err(err(format!("{name} needs {need}, got low = {low}, high = {high}")));
            }
            Ok(())
        };
        let domain = match name.as_str() {
            "grid" | "choice" => {
                if args.is_empty() {
                    return Err(err(format!("{name} needs at least one value")));
                }
                match name.as_str() {
                    "grid" => Domain::Grid(args.clone()),
                    _ => Domain::Choice(args.clone()),
                }
            }
            "uniform" => {
                let v = floats(2)?;
                ordered(v[0], v[1], false)?;
                Domain::Uniform { low: v[0], high: v[1] }
            }
            "quniform" => {
                let v = floats(3)?;
                ordered(v[0], v[1], false)?;
                if v[2] <= 0.0 {
                    return Err(err(format!("quniform's step q must be > 0, got {}", v[2])));
                }
                Domain::QUniform { low: v[0], high: v[1], q: v[2] }
            }
            "loguniform" => {
                let v = floats(2)?;
                ordered(v[0], v[1], false)?;
                if v[0] <= 0.0 {
                    return Err(err(format!("loguniform needs 0 < low, got low = {}", v[0])));
                }
                Domain::LogUniform { low: v[0], high: v[1] }
            }
            "randint" => {
                let v = ints(2)?;
                ordered(v[0] as f64, v[1] as f64, true)?;
                Domain::RandInt { low: v[0], high: v[1] }
            }
            "qrandint" => {
                let v = ints(3)?;
                ordered(v[0] as f64, v[1] as f64, false)?;
                if v[2] <= 0 {
                    return Err(err(format!("qrandint's step q must be > 0, got {}", v[2])));
                }
                Domain::QRandInt { low: v[0], high: v[1], q: v[2] }
            }
            other => return Err(err(format!("unknown distribution `{other}`; use one of {NAMES}"))),
        };
        Ok(domain)
    }

    /// A value drawn from the domain (a grid draws like a choice: [`crate::searcher`]
    /// enumerates grids itself).
    pub fn sample(&self, rng: &mut impl Rng) -> toml::Value {
        match self {
            Domain::Grid(values) | Domain::Choice(values) => values[rng.random_range(0..values.len())].clone(),
            Domain::Uniform { low, high } => toml::Value::Float(uniform(rng, *low, *high)),
            Domain::QUniform { low, high, q } => {
                toml::Value::Float(round_to(uniform(rng, *low, *high), *q).clamp(*low, *high))
            }
            Domain::LogUniform { low, high } => toml::Value::Float(uniform(rng, low.ln(), high.ln()).exp()),
            Domain::RandInt { low, high } => toml::Value::Integer(rng.random_range(*low..*high)),
            Domain::QRandInt { low, high, q } => {
                let x = rng.random_range(*low..=*high) as f64;
                toml::Value::Integer((round_to(x, *q as f64) as i64).clamp(*low, *high))
            }
        }
    }

    /// Where `value` sits on a numeric axis (for plots): its index among listed values, the
    /// base-10 logarithm for `loguniform`, the number itself otherwise.
    pub fn axis_position(&self, value: &toml::Value) -> Option<f64> {
        if let Some(values) = self.values() {
            return values.iter().position(|v| v == value).map(|i| i as f64);
        }
        let x = value.as_float().or_else(|| value.as_integer().map(|i| i as f64))?;
        Some(match self {
            Domain::LogUniform { .. } => x.log10(),
            _ => x,
        })
    }

    /// Every value of a grid or a choice, in order (`None` for a continuous or integer range).
    pub fn values(&self) -> Option<&[toml::Value]> {
        match self {
            Domain::Grid(values) | Domain::Choice(values) => Some(values),
            _ => None,
        }
    }
}

/// A float uniform in `[low, high)` (`low` when the range is empty).
fn uniform(rng: &mut impl Rng, low: f64, high: f64) -> f64 {
    if high > low {
        rng.random_range(low..high)
    } else {
        low
    }
}

/// `x` rounded to the nearest multiple of `q`.
fn round_to(x: f64, q: f64) -> f64 {
    (x / q).round() * q
}

/// A study's space: its keys in order, each with its domain.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Space {
    pub keys: Vec<(String, Domain)>,
}

impl Space {
    /// Parses the `[space]` table of a study file.
    pub fn parse(table: &toml::Table) -> Result<Self> {
        if table.is_empty() {
            return Err(spec_err(
                "[space] is empty: give at least one key, e.g. \"ppo.learning_rate\" = { loguniform = [1e-5, 1e-2] }",
            ));
        }
        let keys = table.iter().map(|(k, v)| Ok((k.clone(), Domain::parse(k, v)?))).collect::<Result<_>>()?;
        Ok(Space { keys })
    }

    /// The grid keys and their values, in key order.
    pub fn grid(&self) -> Vec<(&str, &[toml::Value])> {
        self.keys
            .iter()
            .filter_map(|(k, d)| match d {
                Domain::Grid(values) => Some((k.as_str(), values.as_slice())),
                _ => None,
            })
            .collect()
    }

    /// Configurations in the grid: the product of the grid keys' value counts (1 without one).
    pub fn grid_size(&self) -> usize {
        self.grid().iter().map(|(_, v)| v.len()).product()
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_pcg::Pcg64Mcg;

    use super::*;

    fn domain(text: &str) -> Result<Domain> {
        let value: toml::Table = format!("d = {text}").parse().unwrap();
        Domain::parse("ppo.x", &value["d"])
    }

    fn draws(text: &str, n: usize) -> Vec<toml::Value> {
        let d = domain(text).unwrap();
        let mut rng = Pcg64Mcg::seed_from_u64(7);
        (0..n).map(|_| d.sample(&mut rng)).collect()
    }

    /// Kolmogorov–Smirnov distance between `xs` and a CDF.
    fn ks(mut xs: Vec<f64>, cdf: impl Fn(f64) -> f64) -> f64 {
        xs.sort_by(f64::total_cmp);
        let n = xs.len() as f64;
        xs.iter()
            .enumerate()
            .map(|(i, &x)| (cdf(x) - i as f64 / n).abs().max((cdf(x) - (i + 1) as f64 / n).abs()))
            .fold(0.0, f64::max)
    }

    /// The critical KS distance at the 0.1% level for n samples.
    fn ks_critical(n: usize) -> f64 {
        1.95 / (n as f64).sqrt()
    }

    #[test]
    fn continuous_draws_follow_their_law_within_bounds() {
        let n = 20_000;
        let xs: Vec<f64> = draws("{ uniform = [-2.0, 3.0] }", n).iter().map(|v| v.as_float().unwrap()).collect();
        assert!(xs.iter().all(|&x| (-2.0..3.0).contains(&x)));
        assert!(ks(xs, |x| (x + 2.0) / 5.0) < ks_critical(n));
        let xs: Vec<f64> = draws("{ loguniform = [1e-5, 1e-2] }", n).iter().map(|v| v.as_float().unwrap()).collect();
        assert!(xs.iter().all(|&x| (1e-5..=1e-2).contains(&x)));
        let (lo, hi) = (1e-5f64.ln(), 1e-2f64.ln());
        assert!(ks(xs.clone(), |x| (x.ln() - lo) / (hi - lo)) < ks_critical(n), "log-uniform");
        assert!(ks(xs, |x| (x - 1e-5) / (1e-2 - 1e-5)) > 0.5, "and not uniform");
        let xs: Vec<f64> = draws("{ quniform = [0.0, 1.0, 0.25] }", n).iter().map(|v| v.as_float().unwrap()).collect();
        for (k, expected) in [(0.0, 0.125), (0.25, 0.25), (0.5, 0.25), (0.75, 0.25), (1.0, 0.125)] {
            let share = xs.iter().filter(|&&x| x == k).count() as f64 / n as f64;
            assert!((share - expected).abs() < 0.015, "quniform {k}: {share}");
        }
    }

    #[test]
    fn discrete_draws_are_uniform_over_their_values() {
        let n = 30_000;
        let counts = |values: Vec<toml::Value>, support: &[toml::Value]| -> Vec<f64> {
            assert!(values.iter().all(|v| support.contains(v)), "a value outside the support");
            support.iter().map(|s| values.iter().filter(|v| *v == s).count() as f64).collect()
        };
        // Chi-square against equal shares; 0.1% critical values for 2 and 9 degrees of freedom.
        let chi2 = |c: &[f64]| -> f64 {
            let e = c.iter().sum::<f64>() / c.len() as f64;
            c.iter().map(|o| (o - e).powi(2) / e).sum()
        };
        let support: Vec<toml::Value> = ["a", "b", "c"].iter().map(|s| toml::Value::String(s.to_string())).collect();
        assert!(chi2(&counts(draws("{ choice = [\"a\", \"b\", \"c\"] }", n), &support)) < 13.8);
        let support: Vec<toml::Value> = (3..13).map(toml::Value::Integer).collect();
        assert!(chi2(&counts(draws("{ randint = [3, 13] }", n), &support)) < 27.9, "randint excludes high");
        let support: Vec<toml::Value> = (1..=16).map(|k| toml::Value::Integer(16 * k)).collect();
        let xs = draws("{ qrandint = [16, 256, 16] }", n);
        let c = counts(xs, &support);
        // Rounding gives the end points half a step each; the inner multiples share the rest.
        let inner: Vec<f64> = c[1..15].to_vec();
        assert!(chi2(&inner) < 36.1, "qrandint's inner multiples equally likely");
        assert!(c[0] > 0.0 && c[15] > 0.0, "both end points reachable (high included)");
    }

    #[test]
    fn bad_entries_name_the_key_and_the_fix() {
        let cases = [
            ("{ loguniform = [0.0, 1e-2] }", "0 < low"),
            ("{ uniform = [2.0, 1.0] }", "low ≤ high"),
            ("{ randint = [5, 5] }", "low < high"),
            ("{ grid = [] }", "at least one value"),
            ("{ qrandint = [1, 9, 0] }", "q must be > 0"),
            ("{ uniform = [1.0] }", "takes 2 finite numbers"),
            ("{ gaussian = [0.0, 1.0] }", "unknown distribution `gaussian`"),
            ("[1, 2]", "inline table"),
            ("{ randint = [1.5, 3] }", "takes 2 integers"),
        ];
        for (text, expected) in cases {
            let err = domain(text).unwrap_err().to_string();
            assert!(err.contains("space.\"ppo.x\"") && err.contains(expected), "{text}: {err}");
        }
    }
}
