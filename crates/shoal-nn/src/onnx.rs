//! ONNX export of a policy network: an optional input normalization, a chain of [`Mlp`]s and
//! an action node, as an ONNX model (IR 8, opset 13) that ONNX Runtime and other engines run
//! with the same outputs as this crate's `f32` forward pass.
//!
//! The graph reads `obs` (`float[batch, obs_dim]`) and writes `outputs` (logits, Q-values or
//! Gaussian means, `float[batch, out_dim]`) and `action` (`int64[batch]`, the argmax, or the
//! means clamped into the action bounds). Each layer is a `Gemm` (weights `[out, in]` with
//! `transB = 1`, as PyTorch's `nn.Linear` and this crate store them) and a `Tanh` or `Relu`.
//!
//! An int8 policy ([`QuantizedMlp`]) is written in the QDQ form ONNX Runtime's quantization
//! tools write: its int8 weights as `int8` initializers behind a per-channel
//! `DequantizeLinear`, each quantized activation as a `QuantizeLinear`/`DequantizeLinear`
//! pair — with the fixed scale 1/127 after tanh, and with a scale per row computed in the
//! graph (`max |x| / 127`, as [`crate::quant`] does) otherwise — and the layers it keeps in
//! `f32` as plain `Gemm`s. A runtime computes the same values as Shoal's int8 path.
//! Only the handful of protobuf messages this needs are declared here, after `onnx.proto3`.

use prost::Message;

use crate::activation::Activation;
use crate::error::{NnError, Result};
use crate::mlp::Mlp;
use crate::quant::QuantizedMlp;

/// The protobuf messages of `onnx.proto3` that an MLP graph uses (field numbers as there).
mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelProto {
        #[prost(int64, tag = "1")]
        pub ir_version: i64,
        #[prost(string, tag = "2")]
        pub producer_name: String,
        #[prost(string, tag = "3")]
        pub producer_version: String,
        #[prost(message, optional, tag = "7")]
        pub graph: Option<GraphProto>,
        #[prost(message, repeated, tag = "8")]
        pub opset_import: Vec<OperatorSetIdProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct OperatorSetIdProto {
        #[prost(string, tag = "1")]
        pub domain: String,
        #[prost(int64, tag = "2")]
        pub version: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GraphProto {
        #[prost(message, repeated, tag = "1")]
        pub node: Vec<NodeProto>,
        #[prost(string, tag = "2")]
        pub name: String,
        #[prost(message, repeated, tag = "5")]
        pub initializer: Vec<TensorProto>,
        #[prost(message, repeated, tag = "11")]
        pub input: Vec<ValueInfoProto>,
        #[prost(message, repeated, tag = "12")]
        pub output: Vec<ValueInfoProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NodeProto {
        #[prost(string, repeated, tag = "1")]
        pub input: Vec<String>,
        #[prost(string, repeated, tag = "2")]
        pub output: Vec<String>,
        #[prost(string, tag = "3")]
        pub name: String,
        #[prost(string, tag = "4")]
        pub op_type: String,
        #[prost(message, repeated, tag = "5")]
        pub attribute: Vec<AttributeProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AttributeProto {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(int64, tag = "3")]
        pub i: i64,
        #[prost(int64, repeated, tag = "8")]
        pub ints: Vec<i64>,
        /// `AttributeType`: 2 = INT, 7 = INTS.
        #[prost(int32, tag = "20")]
        pub r#type: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorProto {
        #[prost(int64, repeated, tag = "1")]
        pub dims: Vec<i64>,
        /// `DataType`: 1 = FLOAT, 3 = INT8.
        #[prost(int32, tag = "2")]
        pub data_type: i32,
        #[prost(string, tag = "8")]
        pub name: String,
        /// Little-endian values.
        #[prost(bytes = "vec", tag = "9")]
        pub raw_data: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueInfoProto {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub r#type: Option<TypeProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TypeProto {
        #[prost(message, optional, tag = "1")]
        pub tensor_type: Option<TensorType>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorType {
        #[prost(int32, tag = "1")]
        pub elem_type: i32,
        #[prost(message, optional, tag = "2")]
        pub shape: Option<TensorShapeProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorShapeProto {
        #[prost(message, repeated, tag = "1")]
        pub dim: Vec<Dimension>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dimension {
        #[prost(oneof = "DimensionValue", tags = "1, 2")]
        pub value: Option<DimensionValue>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum DimensionValue {
        #[prost(int64, tag = "1")]
        Value(i64),
        #[prost(string, tag = "2")]
        Param(String),
    }
}

use proto::{
    AttributeProto, Dimension, DimensionValue, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TensorType, TypeProto, ValueInfoProto,
};

const FLOAT: i32 = 1;
const INT8: i32 = 3;
const INT64: i32 = 7;
const ATTRIBUTE_INT: i32 = 2;
const ATTRIBUTE_INTS: i32 = 7;

/// `clip((x − shift)·scale, −clip, clip)` applied to observations before the network (running
/// mean and `1/√(var + ε)` of an observation normalization).
#[derive(Debug, Clone, PartialEq)]
pub struct InputAffine {
    pub shift: Vec<f32>,
    pub scale: Vec<f32>,
    pub clip: f32,
}

/// How the `action` output is made from `outputs`.
#[derive(Debug, Clone, PartialEq)]
pub enum ActionNode {
    /// The index of the largest output (`int64`).
    Argmax,
    /// The outputs clamped into `[low, high]` per dimension (`float`).
    Clamp { low: Vec<f32>, high: Vec<f32> },
}

/// A graph under construction.
#[derive(Default)]
struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

impl Graph {
    fn constant(&mut self, name: &str, dims: &[usize], values: &[f32]) -> String {
        self.tensor(name, dims, FLOAT, values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    fn int8_constant(&mut self, name: &str, dims: &[usize], values: &[i8]) -> String {
        self.tensor(name, dims, INT8, values.iter().map(|&v| v as u8).collect())
    }

    fn tensor(&mut self, name: &str, dims: &[usize], data_type: i32, raw_data: Vec<u8>) -> String {
        let dims = dims.iter().map(|&d| d as i64).collect();
        self.initializers.push(TensorProto { dims, data_type, name: name.into(), raw_data });
        name.into()
    }

    fn node(&mut self, op: &str, inputs: &[&str], output: &str, attributes: &[(&str, i64)]) -> String {
        let attributes = attributes
            .iter()
            .map(|&(name, i)| AttributeProto { name: name.into(), i, ints: Vec::new(), r#type: ATTRIBUTE_INT })
            .collect();
        self.node_with(op, inputs, output, attributes)
    }

    fn node_with(&mut self, op: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) -> String {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            name: format!("{op}_{}", self.nodes.len()),
            op_type: op.into(),
            attribute,
        });
        output.into()
    }

    /// `x·Wᵀ + b` (`weight` `[out, in]`), then the activation if `activation` is given.
    fn dense(&mut self, prefix: &str, x: &str, weight: &str, bias: &str, activation: Option<Activation>) -> String {
        let z = self.node("Gemm", &[x, weight, bias], &format!("{prefix}.z"), &[("transB", 1)]);
        match activation {
            Some(activation) => self.dense_activation(prefix, &z, activation),
            None => z,
        }
    }

    /// `activation(z)` of a layer's pre-activation `z`.
    fn dense_activation(&mut self, prefix: &str, z: &str, activation: Activation) -> String {
        let op = match activation {
            Activation::Tanh => "Tanh",
            Activation::Relu => "Relu",
        };
        self.node(op, &[z], &format!("{prefix}.a"), &[])
    }

    /// `x` quantized to int8 and back (`QuantizeLinear` → `DequantizeLinear`): with the scale
    /// `fixed`, or per row with `max |x| / 127` (1 for a row of zeros) computed in the graph,
    /// as [`crate::quant::quantize_rows`] does.
    fn fake_quantize(&mut self, prefix: &str, x: &str, fixed: Option<f32>) -> String {
        let (scale, zero, axis) = match fixed {
            Some(scale) => {
                let zero = self.int8_constant(&format!("{prefix}.q_zero"), &[], &[0]);
                (self.constant(&format!("{prefix}.q_scale"), &[], &[scale]), zero, 1)
            }
            None => {
                let abs = self.node("Abs", &[x], &format!("{prefix}.q_abs"), &[]);
                let max = AttributeProto { name: "axes".into(), i: 0, ints: vec![1], r#type: ATTRIBUTE_INTS };
                let keep = AttributeProto { name: "keepdims".into(), i: 0, ints: Vec::new(), r#type: ATTRIBUTE_INT };
                let max = self.node_with("ReduceMax", &[&abs], &format!("{prefix}.q_max"), vec![max, keep]);
                let (c0, c1, c127) = (
                    self.constant(&format!("{prefix}.q_0"), &[], &[0.0]),
                    self.constant(&format!("{prefix}.q_1"), &[], &[1.0]),
                    self.constant(&format!("{prefix}.q_127"), &[], &[127.0]),
                );
                let ratio = self.node("Div", &[&max, &c127], &format!("{prefix}.q_ratio"), &[]);
                let nonzero = self.node("Greater", &[&max, &c0], &format!("{prefix}.q_nonzero"), &[]);
                let scale = self.node("Where", &[&nonzero, &ratio, &c1], &format!("{prefix}.q_scale"), &[]);
                // Zero points of the scale's shape (`[batch]`), as per-axis quantization needs.
                let zeros = self.node("Mul", &[&scale, &c0], &format!("{prefix}.q_zeros"), &[]);
                let zero = self.node("Cast", &[&zeros], &format!("{prefix}.q_zero"), &[("to", INT8 as i64)]);
                (scale, zero, 0)
            }
        };
        let q = self.node("QuantizeLinear", &[x, &scale, &zero], &format!("{prefix}.q"), &[("axis", axis)]);
        self.node("DequantizeLinear", &[&q, &scale, &zero], &format!("{prefix}.dq"), &[("axis", axis)])
    }
}

fn value_info(name: &str, elem_type: i32, dims: &[Option<usize>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(n) => DimensionValue::Value(*n as i64),
                None => DimensionValue::Param("batch".into()),
            }),
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto { tensor_type: Some(TensorType { elem_type, shape: Some(TensorShapeProto { dim }) }) }),
    }
}

/// The ONNX model (serialized) of `chain` (MLPs applied in order, over `params`), with
/// `input` normalization and an `action` output.
pub fn mlp_chain_model(
    chain: &[Mlp],
    params: &[f32],
    input: Option<&InputAffine>,
    action: &ActionNode,
) -> Result<Vec<u8>> {
    let (Some(first), Some(last)) = (chain.first(), chain.last()) else {
        return Err(NnError::Config("an ONNX export needs at least one layer".into()));
    };
    policy_model(first.in_dim(), last.out_dim(), input, action, |graph, mut x| {
        for (s, mlp) in chain.iter().enumerate() {
            for (l, layer) in mlp.layers().iter().enumerate() {
                let prefix = format!("stage{s}.layer{l}");
                let w =
                    graph.constant(&format!("{prefix}.weight"), &[layer.out_dim, layer.in_dim], layer.weight(params));
                let b = graph.constant(&format!("{prefix}.bias"), &[layer.out_dim], layer.bias(params));
                x = graph.dense(&prefix, &x, &w, &b, mlp.activated(l).then_some(mlp.activation()));
            }
        }
        x
    })
}

/// The ONNX model (serialized, QDQ form: see the module documentation) of an int8 `chain`,
/// with `input` normalization and an `action` output.
pub fn quantized_chain_model(
    chain: &[QuantizedMlp],
    input: Option<&InputAffine>,
    action: &ActionNode,
) -> Result<Vec<u8>> {
    let (Some(first), Some(last)) = (chain.first(), chain.last()) else {
        return Err(NnError::Config("an ONNX export needs at least one layer".into()));
    };
    policy_model(first.in_dim(), last.out_dim(), input, action, |graph, mut x| {
        for (s, mlp) in chain.iter().enumerate() {
            x = quantized_mlp(graph, &format!("stage{s}"), mlp, x);
        }
        x
    })
}

/// One [`QuantizedMlp`] in the graph: the `f32` input layer, the int8 layers (each input
/// quantized, as the int8 kernels see it) and the `f32` output layer.
fn quantized_mlp(graph: &mut Graph, stage: &str, mlp: &QuantizedMlp, mut x: String) -> String {
    let activation = mlp.activation();
    // A tanh output lies within ±1: the int8 path quantizes it with the fixed scale 1/127.
    let fixed = (activation == Activation::Tanh).then_some(1.0 / 127.0);
    let mut fed_by_activation = false;
    let n = mlp.layers().len();
    if let Some(input) = mlp.input_layer() {
        let prefix = format!("{stage}.input");
        let w = graph.constant(&format!("{prefix}.weight_t"), &[input.in_dim, input.out_dim], &input.weight_t);
        let b = graph.constant(&format!("{prefix}.bias"), &[input.out_dim], &input.bias);
        let z = graph.node("Gemm", &[&x, &w, &b], &format!("{prefix}.z"), &[]);
        x = graph.dense_activation(&prefix, &z, activation);
        fed_by_activation = true;
    }
    for (i, layer) in mlp.layers().iter().enumerate() {
        let prefix = format!("{stage}.int8_{i}");
        x = graph.fake_quantize(&prefix, &x, fixed.filter(|_| fed_by_activation));
        let (out, inp) = (layer.out_dim, layer.in_dim);
        let wq = graph.int8_constant(&format!("{prefix}.weight_q"), &[out, inp], &layer.weights);
        let ws = graph.constant(&format!("{prefix}.weight_scale"), &[out], &layer.scales);
        let wz = graph.int8_constant(&format!("{prefix}.weight_zero"), &[out], &vec![0; out]);
        let w = graph.node("DequantizeLinear", &[&wq, &ws, &wz], &format!("{prefix}.weight"), &[("axis", 0)]);
        let b = graph.constant(&format!("{prefix}.bias"), &[out], &layer.bias);
        let activated = i + 1 < n || mlp.output_layer().is_some() || mlp.activate_output();
        x = graph.dense(&prefix, &x, &w, &b, activated.then_some(activation));
        fed_by_activation = true;
    }
    if let Some(output) = mlp.output_layer() {
        let prefix = format!("{stage}.output");
        // Without int8 layers between, the output layer reads the input layer's quantized
        // activations; after one, its floats.
        if n == 0 {
            x = graph.fake_quantize(&prefix, &x, fixed);
        }
        let w = graph.constant(&format!("{prefix}.weight"), &[output.out_dim, output.in_dim], &output.weight);
        let b = graph.constant(&format!("{prefix}.bias"), &[output.out_dim], &output.bias);
        x = graph.dense(&prefix, &x, &w, &b, mlp.activate_output().then_some(activation));
    }
    x
}

/// The model around a network `body` (which maps the normalized `obs` to the outputs):
/// normalization, the `outputs` and `action` outputs, the header.
fn policy_model(
    obs_dim: usize,
    out_dim: usize,
    input: Option<&InputAffine>,
    action: &ActionNode,
    body: impl FnOnce(&mut Graph, String) -> String,
) -> Result<Vec<u8>> {
    let mut graph = Graph::default();
    let mut x = "obs".to_string();
    if let Some(affine) = input {
        if affine.shift.len() != obs_dim || affine.scale.len() != obs_dim {
            return Err(NnError::Shape {
                what: "observation normalization",
                got: affine.shift.len(),
                expected: obs_dim,
                detail: "one mean and scale per observation feature".into(),
            });
        }
        let shift = graph.constant("obs_shift", &[obs_dim], &affine.shift);
        let scale = graph.constant("obs_scale", &[obs_dim], &affine.scale);
        let low = graph.constant("obs_clip_low", &[], &[-affine.clip]);
        let high = graph.constant("obs_clip_high", &[], &[affine.clip]);
        let centered = graph.node("Sub", &[&x, &shift], "obs_centered", &[]);
        let scaled = graph.node("Mul", &[&centered, &scale], "obs_scaled", &[]);
        x = graph.node("Clip", &[&scaled, &low, &high], "obs_normalized", &[]);
    }
    let x = body(&mut graph, x);
    graph.node("Identity", &[&x], "outputs", &[]);
    let action_output = match action {
        ActionNode::Argmax => {
            graph.node("ArgMax", &["outputs"], "action", &[("axis", 1), ("keepdims", 0)]);
            value_info("action", INT64, &[None])
        }
        ActionNode::Clamp { low, high } => {
            let low = graph.constant("action_low", &[low.len()], low);
            let high = graph.constant("action_high", &[high.len()], high);
            let below = graph.node("Min", &["outputs", &high], "action_below_high", &[]);
            graph.node("Max", &[&below, &low], "action", &[]);
            value_info("action", FLOAT, &[None, Some(out_dim)])
        }
    };
    let model = ModelProto {
        ir_version: 8,
        producer_name: "shoal".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(GraphProto {
            node: graph.nodes,
            name: "shoal_policy".into(),
            initializer: graph.initializers,
            input: vec![value_info("obs", FLOAT, &[None, Some(obs_dim)])],
            output: vec![value_info("outputs", FLOAT, &[None, Some(out_dim)]), action_output],
        }),
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }],
    };
    Ok(model.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::ParamLayout;

    #[test]
    fn the_model_holds_every_layer_as_a_gemm_and_round_trips_through_protobuf() {
        let mut layout = ParamLayout::new();
        let mlp = Mlp::new(&mut layout, "pi", &[3, 8, 2], Activation::Tanh, false);
        let params: Vec<f32> = (0..layout.len()).map(|i| i as f32 * 0.01).collect();
        let affine = InputAffine { shift: vec![0.5; 3], scale: vec![2.0; 3], clip: 10.0 };
        let bytes = mlp_chain_model(&[mlp], &params, Some(&affine), &ActionNode::Argmax).unwrap();
        let model = ModelProto::decode(bytes.as_slice()).unwrap();
        let graph = model.graph.unwrap();
        let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["Sub", "Mul", "Clip", "Gemm", "Tanh", "Gemm", "Identity", "ArgMax"]);
        let weight = graph.initializer.iter().find(|t| t.name == "stage0.layer1.weight").unwrap();
        assert_eq!(weight.dims, [2, 8]);
        let first = f32::from_le_bytes(weight.raw_data[..4].try_into().unwrap());
        assert_eq!(first, params[3 * 8 + 8]);
        assert_eq!(model.opset_import[0].version, 13);
    }

    #[test]
    fn an_int8_model_quantizes_what_the_int8_path_quantizes() {
        let ops_of = |activation, sizes: &[usize]| {
            let mut layout = ParamLayout::new();
            let mlp = Mlp::new(&mut layout, "pi", sizes, activation, false);
            let params: Vec<f32> = (0..layout.len()).map(|i| (i as f32 * 0.37).sin()).collect();
            let quantized = QuantizedMlp::new(&mlp, &params);
            let bytes = quantized_chain_model(&[quantized], None, &ActionNode::Argmax).unwrap();
            let graph = ModelProto::decode(bytes.as_slice()).unwrap().graph.unwrap();
            let int8 = graph.initializer.iter().filter(|t| t.data_type == INT8 && t.dims.len() == 2).count();
            (graph.node.into_iter().map(|n| n.op_type).collect::<Vec<_>>(), int8)
        };
        // tanh: the fixed scale 1/127 after the f32 input layer; the last hidden layer's floats
        // go to the f32 output layer.
        let (ops, int8_matrices) = ops_of(Activation::Tanh, &[4, 8, 8, 2]);
        assert_eq!(int8_matrices, 1);
        let expected = [
            "Gemm",
            "Tanh",
            "QuantizeLinear",
            "DequantizeLinear",
            "DequantizeLinear",
            "Gemm",
            "Tanh",
            "Gemm",
            "Identity",
            "ArgMax",
        ];
        assert_eq!(ops, expected);
        // relu: a scale per row, computed in the graph.
        let (ops, _) = ops_of(Activation::Relu, &[4, 8, 8, 2]);
        let per_row = ["Abs", "ReduceMax", "Div", "Greater", "Where", "Mul", "Cast", "QuantizeLinear"];
        assert_eq!(ops[2..10], per_row);
        // One hidden layer: no int8 matrix, the output layer reads quantized activations.
        let (ops, int8_matrices) = ops_of(Activation::Tanh, &[4, 8, 2]);
        assert_eq!(int8_matrices, 0);
        assert_eq!(ops[..6], ["Gemm", "Tanh", "QuantizeLinear", "DequantizeLinear", "Gemm", "Identity"]);
    }

    #[test]
    fn a_normalization_of_the_wrong_width_is_refused() {
        let mut layout = ParamLayout::new();
        let mlp = Mlp::new(&mut layout, "pi", &[3, 2], Activation::Relu, false);
        let affine = InputAffine { shift: vec![0.0; 4], scale: vec![1.0; 4], clip: 5.0 };
        let err = mlp_chain_model(&[mlp], &vec![0.0; layout.len()], Some(&affine), &ActionNode::Argmax).unwrap_err();
        assert!(err.to_string().contains("observation normalization"), "{err}");
    }
}
