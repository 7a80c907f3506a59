//! Flat parameter vectors with named layouts.
//!
//! A model's parameters, gradients and optimizer moments are each one contiguous vector; the
//! layout says which slice is which tensor. This is what the parameter server ships, averages
//! and shards (as raw bytes), and what checkpoints name tensor by tensor.

use crate::error::{NnError, Result};

/// One named tensor inside a flat vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub offset: usize,
}

impl TensorSpec {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True for a tensor with no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tensor's slice of a flat vector.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// The ordered list of tensors making up a flat parameter vector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParamLayout {
    tensors: Vec<TensorSpec>,
    len: usize,
}

impl ParamLayout {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a tensor and returns its offset.
    pub fn push(&mut self, name: impl Into<String>, shape: &[usize]) -> usize {
        let offset = self.len;
        let spec = TensorSpec { name: name.into(), shape: shape.to_vec(), offset };
        self.len += spec.len();
        self.tensors.push(spec);
        offset
    }

    /// Total number of parameters.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn tensors(&self) -> &[TensorSpec] {
        &self.tensors
    }

    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Option<&TensorSpec> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// A stable 64-bit fingerprint of names and shapes (FNV-1a), so two processes can tell
    /// cheaply whether they hold the same model layout.
    pub fn fingerprint(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for &b in bytes {
                hash ^= b as u64;
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        };
        for t in &self.tensors {
            feed(t.name.as_bytes());
            feed(&[0]);
            for &d in &t.shape {
                feed(&(d as u64).to_le_bytes());
            }
        }
        hash
    }

    /// Checks `other` has the same tensors in the same order, naming the first difference.
    pub fn check_same(&self, other: &ParamLayout) -> Result<()> {
        for (mine, theirs) in self.tensors.iter().zip(&other.tensors) {
            if mine.name != theirs.name || mine.shape != theirs.shape {
                return Err(NnError::Layout {
                    tensor: mine.name.clone(),
                    problem: format!(
                        "expected `{}` {:?}, found `{}` {:?}",
                        mine.name, mine.shape, theirs.name, theirs.shape
                    ),
                });
            }
        }
        match self.tensors.len().cmp(&other.tensors.len()) {
            std::cmp::Ordering::Equal => Ok(()),
            std::cmp::Ordering::Greater => {
                let missing = &self.tensors[other.tensors.len()];
                Err(NnError::Layout { tensor: missing.name.clone(), problem: "missing".into() })
            }
            std::cmp::Ordering::Less => {
                let extra = &other.tensors[self.tensors.len()];
                Err(NnError::Layout { tensor: extra.name.clone(), problem: "not part of this model".into() })
            }
        }
    }

    /// Checks a flat vector has this layout's length.
    pub fn check_len(&self, what: &'static str, got: usize) -> Result<()> {
        if got != self.len {
            return Err(NnError::Shape {
                what,
                got,
                expected: self.len,
                detail: format!("the model has {} tensors", self.tensors.len()),
            });
        }
        Ok(())
    }
}
