//! ONNX export of a policy network: an optional input normalization, a chain of [`Mlp`]s and
//! an action node, as an ONNX model (IR 8, opset 13) that ONNX Runtime and other engines run
//! with the same outputs as this crate's `f32` forward pass.
//!
//! The graph reads `obs` (`float[batch, obs_dim]`) and writes `outputs` (logits, Q-values or
//! Gaussian means, `float[batch, out_dim]`) and `action` (`int64[batch]`, the argmax, or the
//! means clamped into the action bounds). Each layer is a `Gemm` (weights `[out, in]` with
//! `transB = 1`, as PyTorch's `nn.Linear` and this crate store them) and a `Tanh` or `Relu`.
//! Only the handful of protobuf messages this needs are declared here, after `onnx.proto3`.

use prost::Message;

use crate::activation::Activation;
use crate::error::{NnError, Result};
use crate::mlp::Mlp;

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
        /// `AttributeType`: 2 = INT.
        #[prost(int32, tag = "20")]
        pub r#type: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorProto {
        #[prost(int64, repeated, tag = "1")]
        pub dims: Vec<i64>,
        /// `DataType`: 1 = FLOAT.
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
const INT64: i32 = 7;
const ATTRIBUTE_INT: i32 = 2;

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
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: FLOAT,
            name: name.into(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        name.into()
    }

    fn node(&mut self, op: &str, inputs: &[&str], output: &str, attributes: &[(&str, i64)]) -> String {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            name: format!("{op}_{}", self.nodes.len()),
            op_type: op.into(),
            attribute: attributes
                .iter()
                .map(|&(name, i)| AttributeProto { name: name.into(), i, r#type: ATTRIBUTE_INT })
                .collect(),
        });
        output.into()
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
    let (obs_dim, out_dim) = (first.in_dim(), last.out_dim());
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
    for (s, mlp) in chain.iter().enumerate() {
        for (l, layer) in mlp.layers().iter().enumerate() {
            let prefix = format!("stage{s}.layer{l}");
            let w = graph.constant(&format!("{prefix}.weight"), &[layer.out_dim, layer.in_dim], layer.weight(params));
            let b = graph.constant(&format!("{prefix}.bias"), &[layer.out_dim], layer.bias(params));
            x = graph.node("Gemm", &[&x, &w, &b], &format!("{prefix}.z"), &[("transB", 1)]);
            if mlp.activated(l) {
                let op = match mlp.activation() {
                    Activation::Tanh => "Tanh",
                    Activation::Relu => "Relu",
                };
                x = graph.node(op, &[&x], &format!("{prefix}.a"), &[]);
            }
        }
    }
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
    fn a_normalization_of_the_wrong_width_is_refused() {
        let mut layout = ParamLayout::new();
        let mlp = Mlp::new(&mut layout, "pi", &[3, 2], Activation::Relu, false);
        let affine = InputAffine { shift: vec![0.0; 4], scale: vec![1.0; 4], clip: 5.0 };
        let err = mlp_chain_model(&[mlp], &vec![0.0; layout.len()], Some(&affine), &ActionNode::Argmax).unwrap_err();
        assert!(err.to_string().contains("observation normalization"), "{err}");
    }
}
