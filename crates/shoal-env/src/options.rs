//! Keyword options for `make`, like Gymnasium's `gym.make(id, **kwargs)`.
//!
//! An env's constructor asks for each option it knows by name and type; whatever is left over
//! afterwards was a typo or an option of another env, and `make` reports it with the list of
//! options the env accepts.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::{EnvError, Result};

/// One option value. Parsed from strings as bool, then integer, then float, else string.
#[derive(Debug, Clone, PartialEq)]
pub enum OptionValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// A list of strings, e.g. a FrozenLake map given row by row.
    List(Vec<String>),
}

impl OptionValue {
    /// Parses a command-line value: `true`/`false`, an integer, a float, a comma-free string,
    /// or a comma-separated list (`SFFF,FHFH,…`).
    pub fn parse(text: &str) -> Self {
        if let Ok(b) = text.parse::<bool>() {
            OptionValue::Bool(b)
        } else if let Ok(i) = text.parse::<i64>() {
            OptionValue::Int(i)
        } else if let Ok(f) = text.parse::<f64>() {
            OptionValue::Float(f)
        } else if text.contains(',') {
            OptionValue::List(text.split(',').map(|s| s.trim().to_string()).collect())
        } else {
            OptionValue::Str(text.to_string())
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            OptionValue::Bool(_) => "a bool",
            OptionValue::Int(_) => "an integer",
            OptionValue::Float(_) => "a float",
            OptionValue::Str(_) => "a string",
            OptionValue::List(_) => "a list",
        }
    }
}

impl fmt::Display for OptionValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionValue::Bool(b) => write!(f, "{b}"),
            OptionValue::Int(i) => write!(f, "{i}"),
            OptionValue::Float(x) => write!(f, "{x}"),
            OptionValue::Str(s) => write!(f, "{s}"),
            OptionValue::List(items) => write!(f, "{}", items.join(",")),
        }
    }
}

impl From<bool> for OptionValue {
    fn from(v: bool) -> Self {
        OptionValue::Bool(v)
    }
}
impl From<i64> for OptionValue {
    fn from(v: i64) -> Self {
        OptionValue::Int(v)
    }
}
impl From<f64> for OptionValue {
    fn from(v: f64) -> Self {
        OptionValue::Float(v)
    }
}
impl From<&str> for OptionValue {
    fn from(v: &str) -> Self {
        OptionValue::Str(v.to_string())
    }
}

/// The options given to one `make` call, consumed by the env's constructor.
#[derive(Debug, Clone, Default)]
pub struct EnvOptions {
    env: String,
    values: BTreeMap<String, OptionValue>,
    asked: Vec<String>,
}

impl EnvOptions {
    /// Options for the env named `env` (the name appears in error messages).
    pub fn new(env: &str) -> Self {
        EnvOptions { env: env.to_string(), ..Default::default() }
    }

    /// Adds or replaces an option.
    pub fn set(&mut self, key: &str, value: impl Into<OptionValue>) -> &mut Self {
        self.values.insert(key.to_string(), value.into());
        self
    }

    /// Builder form of [`EnvOptions::set`].
    pub fn with(mut self, key: &str, value: impl Into<OptionValue>) -> Self {
        self.set(key, value);
        self
    }

    fn take(&mut self, key: &str) -> Option<OptionValue> {
        self.asked.push(key.to_string());
        self.values.remove(key)
    }

    /// Takes every option not yet taken, for envs that pass their options on as keyword
    /// arguments (Python envs through the Gymnasium bridge).
    pub fn take_all(&mut self) -> Vec<(String, OptionValue)> {
        self.asked.extend(self.values.keys().cloned());
        std::mem::take(&mut self.values).into_iter().collect()
    }

    fn bad(&self, key: &str, problem: String) -> EnvError {
        EnvError::BadOption { env: self.env.clone(), key: key.to_string(), problem }
    }

    /// A boolean option.
    pub fn bool(&mut self, key: &str, default: bool) -> Result<bool> {
        match self.take(key) {
            None => Ok(default),
            Some(OptionValue::Bool(b)) => Ok(b),
            Some(other) => Err(self.bad(key, format!("expected true or false, got {} `{other}`", other.kind()))),
        }
    }

    /// A float option (integers are accepted).
    pub fn float(&mut self, key: &str, default: f64) -> Result<f64> {
        match self.take(key) {
            None => Ok(default),
            Some(OptionValue::Float(x)) => Ok(x),
            Some(OptionValue::Int(i)) => Ok(i as f64),
            Some(other) => Err(self.bad(key, format!("expected a number, got {} `{other}`", other.kind()))),
        }
    }

    /// A float option that must lie in `[lo, hi]`.
    pub fn float_in(&mut self, key: &str, default: f64, lo: f64, hi: f64) -> Result<f64> {
        let x = self.float(key, default)?;
        if !(lo..=hi).contains(&x) {
            return Err(self.bad(key, format!("{x} is outside the allowed range [{lo}, {hi}]")));
        }
        Ok(x)
    }

    /// A non-negative integer option; `None` when absent.
    pub fn count(&mut self, key: &str) -> Result<Option<u64>> {
        match self.take(key) {
            None => Ok(None),
            Some(OptionValue::Int(i)) if i >= 0 => Ok(Some(i as u64)),
            Some(other) => {
                Err(self.bad(key, format!("expected a non-negative integer, got {} `{other}`", other.kind())))
            }
        }
    }

    /// A string option that must be one of `choices`.
    pub fn choice(&mut self, key: &str, default: &str, choices: &[&str]) -> Result<String> {
        match self.take(key) {
            None => Ok(default.to_string()),
            Some(OptionValue::Str(s)) if choices.contains(&s.as_str()) => Ok(s),
            Some(other) => Err(self.bad(key, format!("`{other}` is not one of: {}", choices.join(", ")))),
        }
    }

    /// A list-of-strings option; `None` when absent.
    pub fn list(&mut self, key: &str) -> Result<Option<Vec<String>>> {
        match self.take(key) {
            None => Ok(None),
            Some(OptionValue::List(items)) => Ok(Some(items)),
            Some(OptionValue::Str(s)) => Ok(Some(vec![s])),
            Some(other) => Err(self.bad(key, format!("expected a list of strings, got {} `{other}`", other.kind()))),
        }
    }

    /// Fails if any option was given that nobody asked for.
    pub fn finish(self) -> Result<()> {
        match self.values.into_keys().next() {
            None => Ok(()),
            Some(key) => {
                let mut accepted = self.asked;
                accepted.sort();
                accepted.dedup();
                Err(EnvError::UnknownOption { env: self.env, key, accepted })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_picks_the_narrowest_type() {
        assert_eq!(OptionValue::parse("true"), OptionValue::Bool(true));
        assert_eq!(OptionValue::parse("12"), OptionValue::Int(12));
        assert_eq!(OptionValue::parse("0.5"), OptionValue::Float(0.5));
        assert_eq!(OptionValue::parse("8x8"), OptionValue::Str("8x8".into()));
        assert_eq!(OptionValue::parse("SF,FG"), OptionValue::List(vec!["SF".into(), "FG".into()]));
    }

    #[test]
    fn leftover_option_is_reported_with_accepted_keys() {
        let mut o = EnvOptions::new("FrozenLake").with("is_slipery", true);
        assert!(o.bool("is_slippery", true).unwrap());
        let err = o.finish().unwrap_err().to_string();
        assert!(err.contains("no option `is_slipery`") && err.contains("is_slippery"), "{err}");
    }

    #[test]
    fn wrong_type_names_key_and_value() {
        let mut o = EnvOptions::new("FrozenLake").with("is_slippery", "maybe");
        let err = o.bool("is_slippery", true).unwrap_err().to_string();
        assert!(err.contains("`is_slippery`") && err.contains("maybe"), "{err}");
    }
}
