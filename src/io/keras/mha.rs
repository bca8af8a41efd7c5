//! Keras `MultiHeadAttention`: one Keras layer that becomes five model nodes — the query, key
//! and value projections (Dense layers over the last axis: Keras's `EinsumDense` kernels
//! `[features, heads, dim]` are `[features, heads * dim]` row-major), the [`Attention`]
//! itself, and the output projection (`[heads, dv, features]`), which keeps the layer's name
//! so that the layers reading it find it.
//!
//! The call's arguments are read from the functional config: `query` and `value`
//! positionally, `key` and `attention_mask` as keyword tensors, `use_causal_mask` as a flag.

use super::classes::Config;
use super::config::Spec;
use super::{Fault, Res, hdf5};
use crate::kernels::{Activation, NoKeys};
use crate::model::{AttentionConfig, DenseConfig, DenseWeights, Layer, Node};
use serde_json::Value;

/// A `MultiHeadAttention` layer's options and the form of its call.
#[derive(Clone, Debug)]
pub(super) struct Mha {
    heads: usize,
    key_dim: usize,
    value_dim: usize,
    use_bias: bool,
    /// Width of the output (`output_shape`); `None`: the query's.
    output_dim: Option<usize>,
    causal: bool,
    /// What a query whose keys are all masked gets.
    no_keys: NoKeys,
    /// The call passes a `key` (else the value is the key).
    key: bool,
    /// The call passes an `attention_mask`.
    mask: bool,
    /// The token ids whose zeros mask the query and the value (an Embedding's `mask_zero`
    /// mask reaching the layer): the last two inputs of the layer's nodes.
    pub(super) tokens: Option<(super::config::Ref, super::config::Ref)>,
}

impl Mha {
    /// Whether the call passes its own `attention_mask`.
    pub(super) fn has_mask(&self) -> bool {
        self.mask
    }
    /// Whether the call passes a `key` apart from the value.
    pub(super) fn has_key(&self) -> bool {
        self.key
    }
}

/// The class's table line: the options of `config`; the call is read later ([`call`]).
pub(super) fn class(c: &Config<'_>, spec: &mut Spec) -> Res<Layer> {
    let heads = c.positive("num_heads")?;
    let key_dim = c.positive("key_dim")?;
    let value_dim = match c.get("value_dim") {
        None => key_dim,
        Some(_) => c.positive("value_dim")?,
    };
    if c.bool_or("use_gate", false)? {
        return Err(c.unsupported("use_gate=True is not supported"));
    }
    if c.get("sliding_window").is_some() {
        return Err(c.unsupported("sliding_window is not supported"));
    }
    match c.get("attention_axes") {
        None => {}
        Some(Value::Array(a))
            if a.len() == 1 && a[0].as_i64().is_some_and(|x| x == 1 || x == -2) => {}
        Some(Value::Number(n)) if n.as_i64().is_some_and(|x| x == 1 || x == -2) => {}
        Some(v) => {
            return Err(c.unsupported(format!(
                "attention_axes {v}: only attention over the sequence axis (1) is supported"
            )));
        }
    }
    let output_dim = match c.get("output_shape") {
        None => None,
        Some(Value::Number(_)) => Some(c.positive("output_shape")?),
        Some(Value::Array(a)) if a.len() == 1 => Some(
            a[0].as_u64()
                .and_then(|x| usize::try_from(x).ok())
                .filter(|&x| x > 0)
                .ok_or_else(|| c.invalid("output_shape is not a positive size"))?,
        ),
        Some(v) => return Err(c.unsupported(format!("output_shape {v} is not supported"))),
    };
    spec.mha = Some(Box::new(Mha {
        heads,
        key_dim,
        value_dim,
        use_bias: c.bool_or("use_bias", true)?,
        output_dim,
        causal: false,
        // Keras 3 runs `dot_product_attention` (a fully masked query: the mean of all values)
        // unless dropout is set, when its masked softmax zeroes the query's weights.
        no_keys: if c.f32_or("dropout", 0.0)? > 0.0 {
            NoKeys::Zeros
        } else {
            NoKeys::Uniform
        },
        key: false,
        mask: false,
        tokens: None,
    }));
    Ok(Layer::Attention(AttentionConfig {
        heads,
        scale: None,
        causal: false,
        no_keys: NoKeys::Uniform,
        mask_pads: false,
    }))
}

/// Reads the call of an inbound node into `spec`: its keyword tensors join the inbound layers
/// (query, value, then key and mask when given) and `use_causal_mask` the options.
pub(super) fn call(spec: &mut Spec, node: &Value) -> Res<()> {
    let Some(m) = spec.mha.as_deref_mut() else {
        return Ok(());
    };
    // Keras 3: {"args": [query, value], "kwargs": {...}}; Keras 2: [[query, 0, 0, {kwargs}]],
    // its tensors as [name, 0, 0].
    let kwargs = match node {
        Value::Object(o) => o.get("kwargs"),
        Value::Array(a) => a.first().and_then(|e| e.get(3)),
        _ => None,
    };
    let tensor = |v: &Value| -> Option<String> {
        let h = v
            .get("config")
            .and_then(|c| c.get("keras_history"))
            .unwrap_or(v);
        h.get(0).and_then(Value::as_str).map(str::to_string)
    };
    let kw = |k: &str| kwargs.and_then(|w| w.get(k)).filter(|v| !v.is_null());
    if spec.inbound.len() == 1
        && let Some(v) = kw("value").and_then(tensor)
    {
        spec.inbound.push(v.into());
    }
    if spec.inbound.len() != 2 {
        return Err(Fault::invalid(format!(
            "called with {} positional tensors, expected query and value",
            spec.inbound.len()
        )));
    }
    if let Some(k) = kw("key") {
        let k = tensor(k).ok_or_else(|| Fault::invalid("key is not a tensor"))?;
        spec.inbound.push(k.into());
        m.key = true;
    }
    if let Some(mask) = kw("attention_mask") {
        let mask = tensor(mask).ok_or_else(|| Fault::invalid("attention_mask is not a tensor"))?;
        spec.inbound.push(mask.into());
        m.mask = true;
    }
    m.causal = kw("use_causal_mask")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if kw("return_attention_scores").and_then(Value::as_bool) == Some(true) {
        return Err(Fault::unsupported(
            "return_attention_scores=True is not supported (the scores are never stored)",
        ));
    }
    Ok(())
}

/// The sub-layers holding the four projections, in Keras's order (Keras 3 group names; the
/// legacy files list the same order in `weight_names`).
pub(super) const PROJECTIONS: [&str; 4] =
    ["query_dense", "key_dense", "value_dense", "output_dense"];

/// The five nodes of the layer, reading `inputs` (query, value[, key][, mask] node indices),
/// given the projections' variables in Keras's order (kernel, then bias when `use_bias`).
pub(super) fn nodes(
    spec: &Spec,
    m: &Mha,
    inputs: &[usize],
    first: usize,
    vars: Vec<hdf5::Dataset>,
) -> Res<Vec<Node>> {
    let per = 1 + usize::from(m.use_bias);
    if vars.len() != 4 * per {
        return Err(Fault::invalid(format!(
            "{} variables, expected {} (query, key, value and output {})",
            vars.len(),
            4 * per,
            if m.use_bias {
                "kernels and biases"
            } else {
                "kernels"
            }
        )));
    }
    let mut vars = vars.into_iter();
    // A projection's kernel `[in.., out..]` as `[in, out]`, its bias as `[out]`.
    let mut take = |what: &str, heads_in: bool, tail: &[usize]| -> Res<(usize, DenseWeights)> {
        let kernel = vars
            .next()
            .ok_or_else(|| Fault::invalid("a kernel is missing"))?;
        let ks = &kernel.shape;
        let ok = ks.len() == 1 + tail.len()
            && if heads_in {
                ks[..2] == *tail && m.output_dim.is_none_or(|d| ks[2] == d)
            } else {
                ks[1..] == *tail
            };
        if !ok || ks.contains(&0) {
            return Err(Fault::invalid(format!(
                "the {what} kernel has shape {ks:?}, expected {} with {} heads",
                if heads_in {
                    "[heads, dim, out]"
                } else {
                    "[in, heads, dim]"
                },
                m.heads
            )));
        }
        let out: usize = if heads_in {
            ks[2]
        } else {
            tail.iter().product()
        };
        let bias = match m.use_bias {
            false => None,
            true => {
                let b = vars
                    .next()
                    .ok_or_else(|| Fault::invalid("a bias is missing"))?;
                if b.data.len() != out {
                    return Err(Fault::invalid(format!(
                        "the {what} bias has shape {:?}, expected {out} values",
                        b.shape
                    )));
                }
                Some(b.data)
            }
        };
        Ok((
            out,
            DenseWeights {
                kernel: kernel.data,
                bias,
            },
        ))
    };
    let (hk, wq) = take("query", false, &[m.heads, m.key_dim])?;
    let (_, wk) = take("key", false, &[m.heads, m.key_dim])?;
    let (hv, wv) = take("value", false, &[m.heads, m.value_dim])?;
    let (out, wo) = take("output", true, &[m.heads, m.value_dim])?;
    let (query, value) = (inputs[0], inputs[1]);
    let key = if m.key { inputs[2] } else { value };
    let mask = m.mask.then(|| inputs[2 + usize::from(m.key)]);
    let name = |part: &str| format!("{}/{part}", spec.name);
    let dense = |part: &str, units: usize, input: usize, w: DenseWeights| {
        Node::new(
            name(part),
            projection(units, m.use_bias),
            vec![input],
            vec![],
            Some(w),
        )
    };
    let attention = Layer::Attention(AttentionConfig {
        heads: m.heads,
        scale: None,
        causal: m.causal,
        no_keys: m.no_keys,
        mask_pads: false,
    });
    let mut att_in = vec![first, first + 1, first + 2];
    att_in.extend(mask);
    // The query's and the value's token ids (Keras's query and value masks).
    if m.tokens.is_some() {
        att_in.extend(&inputs[inputs.len() - 2..]);
    }
    Ok(vec![
        dense("query", hk, query, wq),
        dense("key", hk, key, wk),
        dense("value", hv, value, wv),
        Node::new(name("attention"), attention, att_in, vec![], None),
        Node::new(
            spec.name.clone(),
            projection(out, m.use_bias),
            vec![first + 3],
            vec![],
            Some(wo),
        ),
    ])
}

/// Dense layer config of a projection to `units`.
fn projection(units: usize, use_bias: bool) -> Layer {
    Layer::Dense(DenseConfig {
        units,
        activation: Activation::Linear,
        use_bias,
    })
}
