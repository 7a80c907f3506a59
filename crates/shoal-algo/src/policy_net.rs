//! A trained agent's acting path detached from its algorithm: the observation normalization
//! saved with the model, the chain of MLPs that turns an observation into policy outputs, and
//! the head that turns outputs into deterministic actions. This is what `shoal optimize`
//! prunes, quantizes, distills and times, and what an int8 or sparse run acts with
//! ([`QuantizedPolicy`], [`SparsePolicy`]).

use shoal_nn::mlp::{Mlp, MlpWorkspace};
use shoal_nn::onnx::{mlp_chain_model, quantized_chain_model, ActionNode, InputAffine};
use shoal_nn::prune::prunable;
use shoal_nn::quant::{Int8Kernel, QuantizedMlp};
use shoal_nn::sparse::SparseMlp;
use shoal_nn::ParamLayout;

use crate::error::Result;
use crate::explore::argmax;
use crate::normalize::Normalizer;

/// How policy outputs become the deterministic action.
#[derive(Debug, Clone, PartialEq)]
pub enum ActionHead {
    /// The index of the largest output (categorical logits, Q-values), written as a float.
    Argmax,
    /// The outputs are a Gaussian's means, clipped into the action space's bounds.
    Clip { low: Vec<f32>, high: Vec<f32> },
}

impl ActionHead {
    /// The ONNX export's action node.
    fn onnx_node(&self) -> ActionNode {
        match self {
            ActionHead::Argmax => ActionNode::Argmax,
            ActionHead::Clip { low, high } => ActionNode::Clamp { low: low.clone(), high: high.clone() },
        }
    }

    /// Width of one action row.
    pub fn action_dim(&self) -> usize {
        match self {
            ActionHead::Argmax => 1,
            ActionHead::Clip { low, .. } => low.len(),
        }
    }

    /// Writes the actions of `rows` output rows (`[rows, width]`).
    pub fn act(&self, outputs: &[f32], rows: usize, actions: &mut [f32]) {
        let width = outputs.len() / rows.max(1);
        for (row, action) in outputs.chunks_exact(width).zip(actions.chunks_exact_mut(self.action_dim())) {
            match self {
                ActionHead::Argmax => action[0] = argmax(row) as f32,
                ActionHead::Clip { low, high } => {
                    for (a, ((&m, &lo), &hi)) in action.iter_mut().zip(row.iter().zip(low).zip(high)) {
                        *a = m.clamp(lo, hi);
                    }
                }
            }
        }
    }
}

/// Observation normalization as saved with a model (identity when none was used).
#[derive(Debug, Clone)]
pub struct ObsNormalization {
    normalizer: Option<Normalizer>,
    buffer: Vec<f32>,
}

impl ObsNormalization {
    pub(crate) fn new(normalizer: Option<Normalizer>) -> Self {
        ObsNormalization { normalizer, buffer: Vec::new() }
    }

    /// The normalization as the ONNX export's input node, if any.
    fn affine(&self) -> Option<InputAffine> {
        self.normalizer.as_ref().and_then(Normalizer::obs_affine)
    }

    /// `obs` normalized (a borrow of `obs` itself when nothing is normalized).
    fn apply<'a>(&'a mut self, obs: &'a [f32]) -> &'a [f32] {
        match &self.normalizer {
            None => obs,
            Some(normalizer) => {
                self.buffer.resize(obs.len(), 0.0);
                normalizer.apply(obs, &mut self.buffer);
                &self.buffer
            }
        }
    }
}

/// A policy in `f32`, as the agent acts with it.
#[derive(Debug, Clone)]
pub struct PolicyNet {
    layout: ParamLayout,
    params: Vec<f32>,
    chain: Vec<Mlp>,
    head: ActionHead,
    normalization: ObsNormalization,
    workspaces: Vec<MlpWorkspace<f32>>,
}

impl PolicyNet {
    /// `chain` addresses `params` (the agent's whole network vector, laid out by `layout`).
    pub(crate) fn new(
        layout: ParamLayout,
        params: Vec<f32>,
        chain: Vec<Mlp>,
        head: ActionHead,
        normalizer: Option<Normalizer>,
    ) -> Self {
        let workspaces = vec![MlpWorkspace::default(); chain.len()];
        PolicyNet { layout, params, chain, head, normalization: ObsNormalization::new(normalizer), workspaces }
    }

    pub fn obs_dim(&self) -> usize {
        self.chain.first().map_or(0, Mlp::in_dim)
    }

    pub fn head(&self) -> &ActionHead {
        &self.head
    }

    pub fn chain(&self) -> &[Mlp] {
        &self.chain
    }

    pub fn layout(&self) -> &ParamLayout {
        &self.layout
    }

    /// The agent's whole network vector (critics included), which the chain addresses.
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// Hidden widths of the chain (`[64, 64]` for obs→64→64→actions).
    pub fn hidden(&self) -> Vec<usize> {
        let widths: Vec<usize> = self.chain.iter().flat_map(|m| m.layers().iter().map(|l| l.out_dim)).collect();
        widths[..widths.len().saturating_sub(1)].to_vec()
    }

    /// Parameters the policy acts with (weights and biases of the chain) and how many of them
    /// are non-zero.
    pub fn acting_params(&self) -> (usize, usize) {
        let mut total = 0;
        let mut nonzero = 0;
        for mlp in &self.chain {
            for layer in mlp.layers() {
                for part in [layer.weight(&self.params), layer.bias(&self.params)] {
                    total += part.len();
                    nonzero += part.iter().filter(|&&v| v != 0.0).count();
                }
            }
        }
        (total, nonzero)
    }

    /// Fraction of the network's weight matrices that are zero.
    pub fn weight_sparsity(&self) -> f64 {
        let (mut total, mut zero) = (0usize, 0usize);
        for t in prunable(&self.layout) {
            total += t.len();
            zero += self.params[t.range()].iter().filter(|&&v| v == 0.0).count();
        }
        zero as f64 / total.max(1) as f64
    }

    /// The policy outputs (logits, Q-values or means) of `rows` raw observations.
    pub fn outputs<'a>(&'a mut self, obs: &'a [f32], rows: usize) -> &'a [f32] {
        let PolicyNet { params, chain, normalization, workspaces, .. } = self;
        forward_chain(chain, params, workspaces, normalization.apply(obs), rows)
    }

    /// Observations as the chain sees them (normalized with the saved statistics) into `out`.
    pub fn normalize(&mut self, obs: &[f32], out: &mut Vec<f32>) {
        out.clear();
        out.extend_from_slice(self.normalization.apply(obs));
    }

    /// The outputs of `rows` observations already normalized (see [`PolicyNet::normalize`]).
    pub fn outputs_normalized<'a>(&'a mut self, x: &'a [f32], rows: usize) -> &'a [f32] {
        forward_chain(&self.chain, &self.params, &mut self.workspaces, x, rows)
    }

    /// After [`PolicyNet::outputs_normalized`] on `x`: backpropagates `d_out` (`∂L/∂outputs`)
    /// through the chain into `grads` (laid out like the parameters; accumulated).
    pub fn backward_normalized(&mut self, x: &[f32], rows: usize, d_out: &[f32], grads: &mut [f32]) {
        let n = self.chain.len();
        let width = self.chain[n - 1].out_dim();
        self.workspaces[n - 1].output_grad(rows, width).copy_from_slice(d_out);
        for i in (0..n).rev() {
            let (before, after) = self.workspaces.split_at_mut(i);
            let input = if i == 0 { x } else { before[i - 1].output() };
            self.chain[i].backward(&self.params, grads, input, rows, &mut after[0], i > 0);
            if i > 0 {
                let width = self.chain[i - 1].out_dim();
                before[i - 1].output_grad(rows, width).copy_from_slice(after[0].input_grad());
            }
        }
    }

    /// The whole parameter vector, to train (a distilled student's).
    pub fn params_mut(&mut self) -> &mut [f32] {
        &mut self.params
    }

    /// Deterministic actions for `rows` raw observations.
    pub fn predict(&mut self, obs: &[f32], rows: usize, actions: &mut [f32]) {
        let PolicyNet { params, chain, head, normalization, workspaces, .. } = self;
        head.act(forward_chain(chain, params, workspaces, normalization.apply(obs), rows), rows, actions);
    }

    /// Deterministic actions for `rows` observations already normalized.
    pub fn predict_normalized(&mut self, x: &[f32], rows: usize, actions: &mut [f32]) {
        let PolicyNet { params, chain, head, workspaces, .. } = self;
        head.act(forward_chain(chain, params, workspaces, x, rows), rows, actions);
    }

    /// The policy as an ONNX model (serialized): the normalization, the chain and the action
    /// ([`shoal_nn::onnx`]).
    pub fn to_onnx(&self) -> Result<Vec<u8>> {
        let affine = self.normalization.affine();
        Ok(mlp_chain_model(&self.chain, &self.params, affine.as_ref(), &self.head.onnx_node())?)
    }

    /// The same policy with int8 weights and activations.
    pub fn quantize(&self) -> QuantizedPolicy {
        self.compile(QuantizedMlp::new)
    }

    /// The same policy over its non-zero weights only (a pruned one's inference path).
    pub fn sparsify(&self) -> SparsePolicy {
        self.compile(SparseMlp::new)
    }

    fn compile<M>(&self, engine: impl Fn(&Mlp, &[f32]) -> M) -> CompiledPolicy<M> {
        CompiledPolicy {
            chain: self.chain.iter().map(|mlp| engine(mlp, &self.params)).collect(),
            head: self.head.clone(),
            normalization: self.normalization.clone(),
            stage: Vec::new(),
        }
    }
}

/// Runs `x` through every MLP of `chain`; returns the last one's output.
fn forward_chain<'a>(
    chain: &[Mlp],
    params: &[f32],
    workspaces: &'a mut [MlpWorkspace<f32>],
    x: &'a [f32],
    rows: usize,
) -> &'a [f32] {
    let mut input = x;
    for (mlp, ws) in chain.iter().zip(workspaces.iter_mut()) {
        mlp.forward(params, input, rows, ws);
        input = ws.output();
    }
    input
}

/// A network compiled for inference: what [`CompiledPolicy`] runs its chain through.
pub trait InferenceMlp {
    /// The outputs of `rows` rows of `x`.
    fn forward_rows(&mut self, x: &[f32], rows: usize) -> &[f32];
}

impl InferenceMlp for QuantizedMlp {
    fn forward_rows(&mut self, x: &[f32], rows: usize) -> &[f32] {
        self.forward(x, rows)
    }
}

impl InferenceMlp for SparseMlp {
    fn forward_rows(&mut self, x: &[f32], rows: usize) -> &[f32] {
        self.forward(x, rows)
    }
}

/// A policy whose chain runs on an inference engine of its own: int8
/// ([`QuantizedPolicy`]) or sparse ([`SparsePolicy`]); the normalization and the head are
/// the [`PolicyNet`]'s it came from.
#[derive(Debug, Clone)]
pub struct CompiledPolicy<M> {
    chain: Vec<M>,
    head: ActionHead,
    normalization: ObsNormalization,
    /// Output of a stage that feeds the next (a shared trunk's features).
    stage: Vec<f32>,
}

/// A policy whose matrix products run in int8 ([`shoal_nn::quant`]).
pub type QuantizedPolicy = CompiledPolicy<QuantizedMlp>;

/// A pruned policy run over its non-zero weights ([`shoal_nn::sparse`]).
pub type SparsePolicy = CompiledPolicy<SparseMlp>;

impl<M: InferenceMlp> CompiledPolicy<M> {
    pub fn chain(&self) -> &[M] {
        &self.chain
    }

    /// The policy outputs of `rows` raw observations.
    pub fn outputs(&mut self, obs: &[f32], rows: usize) -> &[f32] {
        let CompiledPolicy { chain, normalization, stage, .. } = self;
        compiled_chain(chain, stage, normalization.apply(obs), rows)
    }

    /// Deterministic actions for `rows` raw observations.
    pub fn predict(&mut self, obs: &[f32], rows: usize, actions: &mut [f32]) -> Result<()> {
        let CompiledPolicy { chain, head, normalization, stage } = self;
        head.act(compiled_chain(chain, stage, normalization.apply(obs), rows), rows, actions);
        Ok(())
    }
}

impl QuantizedPolicy {
    /// The kernel the matrix products run on.
    pub fn kernel(&self) -> Int8Kernel {
        self.chain.first().map_or(Int8Kernel::Portable, QuantizedMlp::kernel)
    }

    /// Bytes of the int8 weights, their scales and the biases.
    pub fn bytes(&self) -> usize {
        self.chain.iter().map(QuantizedMlp::bytes).sum()
    }

    /// The int8 policy as an ONNX model in QDQ form ([`shoal_nn::onnx`]).
    pub fn to_onnx(&self) -> Result<Vec<u8>> {
        let affine = self.normalization.affine();
        Ok(quantized_chain_model(&self.chain, affine.as_ref(), &self.head.onnx_node())?)
    }
}

/// Runs `x` through every MLP of `chain` (`stage` carries one's output to the next).
fn compiled_chain<'a, M: InferenceMlp>(chain: &'a mut [M], stage: &mut Vec<f32>, x: &[f32], rows: usize) -> &'a [f32] {
    let n = chain.len();
    let mut input = x;
    for (i, mlp) in chain.iter_mut().enumerate() {
        if i + 1 == n {
            return mlp.forward_rows(input, rows);
        }
        let out = mlp.forward_rows(input, rows);
        stage.clear();
        stage.extend_from_slice(out);
        input = stage;
    }
    &[]
}
