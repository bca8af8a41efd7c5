//! The JSON config walked into layers: a Sequential chain or a Functional graph, in Keras 3's
//! dialect (`inbound_nodes` of `{"args": [{"config": {"keras_history": [..]}}]}`) or Keras 2's
//! (`[[["name", 0, 0, {}]]]`), then put in an order where each layer follows its inputs.
//! Each layer's own options are read by its class's line in `classes.rs`.

use super::classes::layer_spec;
use super::{Fault, LoadOptions, Res};
use crate::kernels::Activation;
use crate::model::DenseConfig;
use crate::model::{DType, Layer, Returns, StepMask};
use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// A layer as the config describes it, before weights.
pub(super) struct Spec {
    pub(super) name: String,
    pub(super) class: String,
    pub(super) layer: Layer,
    /// Input shape for an `InputLayer`.
    pub(super) shape: Vec<usize>,
    /// The tensors it reads: positional arguments, then an RNN's `initial_state`.
    pub(super) inbound: Vec<Ref>,
    /// Element type (of an `InputLayer`).
    pub(super) dtype: DType,
    /// An Embedding with `mask_zero=True` (checked against the layers that read it).
    pub(super) mask_zero: bool,
    /// The token ids whose zeros mask this layer's input (set by [`check_masks`] for a
    /// `GlobalAveragePooling1D` reading an Embedding's `mask_zero` mask): an extra input.
    pub(super) mask_ids: Option<Ref>,
    /// What a `NotEqual` (a mask written out) compares its input with.
    pub(super) compared: Option<f32>,
    /// The layer named by the call's `mask` argument (Keras 3 writes the mask out: a
    /// `NotEqual(ids, 0)`).
    pub(super) mask_arg: Option<String>,
    /// A `MultiHeadAttention`, which becomes several nodes.
    pub(super) mha: Option<Box<super::mha::Mha>>,
    /// An RNN with `return_state=True`: its final states are its outputs after the first.
    pub(super) return_state: bool,
    /// A `Bidirectional` with `merge_mode=None`: its directions' outputs are two tensors.
    pub(super) split_directions: bool,
    /// An `InputLayer` whose first axis is `None`: a sequence of any length, loaded at
    /// [`LoadOptions::seq`] (the longest a plan runs).
    pub(super) seq: bool,
}

impl Spec {
    /// How many outputs the layer has: one, but for an RNN with `return_state` (its final
    /// states after its output) and a `Bidirectional` with `merge_mode=None` (its two
    /// directions' outputs first).
    pub(super) fn outputs(&self) -> usize {
        match &self.layer {
            Layer::Recurrent(c) => {
                let states = if self.return_state { c.states() } else { 0 };
                1 + usize::from(self.split_directions) + states
            }
            _ => 1,
        }
    }

    /// Errors unless `r` (a reference to this layer) names one of its outputs.
    fn has_output(&self, r: &Ref) -> Res<()> {
        let outputs = self.outputs();
        match r.tensor < outputs {
            true => Ok(()),
            false => Err(Fault::invalid(format!(
                "reads output {} of layer {:?}, which has {outputs}",
                r.tensor, r.layer
            ))),
        }
    }

    /// A fault of this layer.
    fn fault(&self, f: Fault) -> Fault {
        f.at(&self.name, &self.class)
    }
}

/// A tensor a layer outputs: its name and which of its outputs (an RNN's `return_state`
/// outputs come after its output).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Ref {
    pub(super) layer: String,
    pub(super) tensor: usize,
}

impl From<String> for Ref {
    /// A layer's (first) output.
    fn from(layer: String) -> Ref {
        Ref { layer, tensor: 0 }
    }
}

/// A config, read and checked.
pub(super) struct Parsed {
    /// The model's name (`"model"` if the config has none).
    pub(super) model_name: String,
    pub(super) specs: Vec<Spec>,
    /// Input layer names and output tensors, in the model's order (the outputs as requested).
    pub(super) inputs: Vec<String>,
    pub(super) outputs: Vec<Ref>,
    /// Spec indices, each after its inputs: only the layers the outputs need.
    pub(super) order: Vec<usize>,
    /// A Sequential model (its Keras 3 weight groups skip the input layer).
    pub(super) sequential: bool,
}

/// Reads a config (`config.json`, `model.to_json()` or the `model_config` attribute) within the
/// limits of `opts`.
pub(super) fn parse(config: &[u8], opts: &LoadOptions) -> Res<Parsed> {
    // serde_json itself stops at 128 levels, so parsing cannot overflow the stack.
    let root: Value = serde_json::from_slice(config)
        .map_err(|e| Fault::malformed(format!("config is not valid JSON: {e}")))?;
    let depth = json_depth(&root);
    if depth > opts.max_json_depth {
        return Err(Fault::limit(format!(
            "config nests {depth} levels deep, over the limit of {}",
            opts.max_json_depth
        )));
    }
    // A fault not in one layer says it is in the config.
    let in_config = |f: Fault| {
        if f.site.is_some() {
            f
        } else {
            f.within("config")
        }
    };
    let class = str_field(&root, "class_name").map_err(|m| in_config(Fault::invalid(m)))?;
    let cfg = root
        .get("config")
        .ok_or_else(|| in_config(Fault::invalid("no \"config\" object")))?;
    let model_name = cfg.get("name").and_then(Value::as_str).unwrap_or("model");
    let (mut specs, inputs, outputs) = match class {
        "Sequential" => sequential(cfg),
        "Functional" | "Model" => functional(cfg),
        other => Err(Fault::unsupported(format!(
            "model class {other:?} is not supported (expected Functional or Sequential)"
        ))),
    }
    .map_err(in_config)?;
    if specs.len() > opts.max_layers {
        return Err(in_config(Fault::limit(format!(
            "{} layers, over the limit of {}",
            specs.len(),
            opts.max_layers
        ))));
    }
    for s in specs.iter_mut().filter(|s| s.layer == Layer::Input) {
        if s.seq {
            // A sequence of any length: loaded at the longest a plan will run.
            s.shape[0] = match opts.seq {
                Some(n) if n > 0 => n,
                _ => {
                    return Err(s.fault(Fault::unsupported(
                        "the first axis is None (a sequence of any length): give the longest \
                         (LoadOptions::seq, --seq N)",
                    )));
                }
            };
        }
        opts.check_elems(&s.shape)
            .map_err(|m| s.fault(Fault::limit(m)))?;
    }
    let names: Vec<String> = outputs.iter().map(|r| r.layer.clone()).collect();
    let picked = opts.pick_outputs(&names).map_err(Fault::invalid)?;
    let outputs: Vec<Ref> = match picked == names {
        true => outputs,
        false => picked.into_iter().map(Ref::from).collect(),
    };
    let order = topo_order(&specs, &inputs, &outputs).map_err(in_config)?;
    for r in &outputs {
        if let Some(s) = specs.iter().find(|s| s.name == r.layer) {
            s.has_output(r).map_err(in_config)?;
        }
    }
    check_masks(&mut specs, &order)?;
    Ok(Parsed {
        model_name: model_name.to_string(),
        specs,
        inputs,
        outputs,
        order,
        sequential: class == "Sequential",
    })
}

/// Nesting depth of a JSON value (a scalar is 0), without recursion.
fn json_depth(v: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        deepest = deepest.max(d);
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|x| (x, d + 1))),
            Value::Object(o) => stack.extend(o.values().map(|x| (x, d + 1))),
            _ => {}
        }
    }
    deepest
}

/// The string `v[key]`, or the message that it is missing.
pub(super) fn str_field<'v>(v: &'v Value, key: &str) -> Result<&'v str, String> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("missing string field {key:?}"))
}

/// `[null, d1, ..]` as the non-batch shape; a `null` first axis (a sequence of any length)
/// is given as 0 and `true`.
pub(super) fn batch_shape(v: &Value) -> Result<(Vec<usize>, bool), String> {
    let dims = v.as_array().ok_or("shape is not a list")?;
    if dims.len() < 2 || dims.len() > 33 {
        return Err(format!(
            "shape of rank {}: expected [batch, d1, ..]",
            dims.len()
        ));
    }
    let variable = dims[1].is_null();
    let shape = dims[1..]
        .iter()
        .enumerate()
        .map(|(i, d)| match d.as_u64() {
            None if i == 0 && d.is_null() => Ok(0),
            d => d
                .filter(|&d| d > 0)
                .and_then(|d| usize::try_from(d).ok())
                .ok_or_else(|| {
                    format!(
                        "shape {v}: only the first axis after the batch may be None (a \
                         sequence); the others need a fixed positive size"
                    )
                }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((shape, variable))
}

/// The layers, then the input layer names and the output tensors in the model's order.
type Graph = (Vec<Spec>, Vec<String>, Vec<Ref>);

/// A Sequential config: a chain, led by an `InputLayer` or a `build_input_shape`.
fn sequential(cfg: &Value) -> Res<Graph> {
    let layers = cfg
        .get("layers")
        .and_then(Value::as_array)
        .ok_or_else(|| Fault::invalid("Sequential config has no \"layers\" list"))?;
    let mut specs: Vec<Spec> = Vec::with_capacity(layers.len() + 1);
    for (i, l) in layers.iter().enumerate() {
        let mut spec = layer_spec(l, i)?;
        if spec.layer == Layer::Input && i != 0 {
            return Err(spec.fault(Fault::invalid(format!(
                "an InputLayer inside the chain (layer {i})"
            ))));
        }
        if i == 0 && spec.layer != Layer::Input {
            // Keras 3 writes `build_input_shape`; Keras 2 puts `batch_input_shape` on the first
            // layer.
            let shape = cfg
                .get("build_input_shape")
                .or_else(|| l.get("config").and_then(|c| c.get("batch_input_shape")))
                .ok_or_else(|| {
                    Fault::invalid(
                        "Sequential config has neither an InputLayer nor a build_input_shape",
                    )
                })?;
            specs.push(Spec {
                name: "input_layer".into(),
                class: "InputLayer".into(),
                layer: Layer::Input,
                shape: vec![],
                inbound: vec![],
                dtype: DType::F32,
                mask_zero: false,
                mask_ids: None,
                mask_arg: None,
                compared: None,
                mha: None,
                seq: false,
                return_state: false,
                split_directions: false,
            });
            let spec = specs.last_mut().expect("just pushed");
            (spec.shape, spec.seq) = batch_shape(shape).map_err(Fault::invalid)?;
        }
        if let Some(prev) = specs.last() {
            spec.inbound = vec![prev.name.clone().into()];
        }
        specs.push(spec);
    }
    let out = specs
        .last()
        .filter(|s| s.layer != Layer::Input)
        .ok_or_else(|| Fault::invalid("Sequential model has no layers"))?
        .name
        .clone();
    let input = specs[0].name.clone();
    Ok((specs, vec![input], vec![out.into()]))
}

/// A Functional config: layers with `inbound_nodes`; its inputs and outputs, in order.
fn functional(cfg: &Value) -> Res<Graph> {
    let layers = cfg
        .get("layers")
        .and_then(Value::as_array)
        .ok_or_else(|| Fault::invalid("Functional config has no \"layers\" list"))?;
    let mut specs = Vec::with_capacity(layers.len());
    for (i, l) in layers.iter().enumerate() {
        let mut spec = layer_spec(l, i)?;
        if let Some(name) = l.get("name").and_then(Value::as_str) {
            spec.name = name.to_string();
        }
        let nodes = match l.get("inbound_nodes") {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(a)) => a.clone(),
            Some(_) => return Err(spec.fault(Fault::invalid("inbound_nodes is not a list"))),
        };
        if nodes.len() > 1 {
            return Err(spec.fault(Fault::unsupported(format!(
                "called {} times (shared layers are not supported)",
                nodes.len()
            ))));
        }
        if let Some(node) = nodes.first() {
            let mut found = Vec::new();
            collect_history(node, &mut found, 0).map_err(|f| spec.fault(f))?;
            // Keras 3 passes an RNN's initial states as a keyword (Keras 2 as positions).
            let initial = node.get("kwargs").and_then(|k| k.get("initial_state"));
            if let Some(states) = initial.filter(|v| !v.is_null()) {
                collect_history(states, &mut found, 0).map_err(|f| spec.fault(f))?;
            }
            spec.inbound = found;
            super::mha::call(&mut spec, node).map_err(|f| spec.fault(f))?;
            if spec.mha.is_none() {
                spec.mask_arg = mask_arg(node);
            }
            if spec.class == "NotEqual" {
                spec.compared = Some(compared(node).ok_or_else(|| {
                    spec.fault(Fault::unsupported(
                        "NotEqual is read only as a mask: ids != 0, or x != a Masking's value",
                    ))
                })?);
            }
        }
        specs.push(spec);
    }
    let inputs = endpoints(cfg, "input_layers")?;
    if let Some(r) = inputs.iter().find(|r| r.tensor != 0) {
        return Err(Fault::invalid(format!(
            "input {:?} is not an InputLayer's output",
            r.layer
        )));
    }
    let inputs = inputs.into_iter().map(|r| r.layer).collect();
    let outputs = endpoints(cfg, "output_layers")?;
    for input in &inputs {
        let Some(first) = specs.iter().find(|s| &s.name == input) else {
            return Err(Fault::invalid(format!(
                "input layer {input:?} is not among the layers"
            )));
        };
        if first.layer != Layer::Input {
            return Err(Fault::invalid(format!(
                "input layer {input:?} is not an InputLayer"
            )));
        }
    }
    Ok((specs, inputs, outputs))
}

/// The layer a Keras 3 call's `mask` argument names.
fn mask_arg(node: &Value) -> Option<String> {
    let m = node.get("kwargs")?.get("mask")?;
    let h = m.get("config")?.get("keras_history")?;
    h.get(0)?.as_str().map(str::to_string)
}

/// The number a `NotEqual` call compares a tensor with.
fn compared(node: &Value) -> Option<f32> {
    let args = node.get("args").and_then(Value::as_array);
    match args.map(Vec::as_slice) {
        Some([_, v]) => v.as_f64().map(|v| v as f32),
        _ => None,
    }
}

/// The tensors in `keras_history` entries of an inbound node, in argument order.
fn collect_history(v: &Value, out: &mut Vec<Ref>, depth: usize) -> Res<()> {
    if depth > 16 {
        return Err(Fault::invalid("inbound node nested too deeply"));
    }
    match v {
        Value::Object(o) => {
            if let Some(h) = o
                .get("config")
                .and_then(|c| c.get("keras_history"))
                .and_then(Value::as_array)
            {
                let name = h
                    .first()
                    .and_then(Value::as_str)
                    .ok_or_else(|| Fault::invalid("keras_history without a layer name"))?;
                if h.get(1).and_then(Value::as_u64).is_some_and(|n| n != 0) {
                    return Err(Fault::unsupported(format!(
                        "reads the output of a second call of layer {name:?} (shared layers \
                         are not supported)"
                    )));
                }
                out.push(Ref {
                    layer: name.to_string(),
                    tensor: tensor_index(h.get(2))?,
                });
                return Ok(());
            }
            // Only positional args carry inputs; kwargs hold flags like `training`.
            if let Some(args) = o.get("args") {
                collect_history(args, out, depth + 1)?;
            }
            Ok(())
        }
        // Keras 2: a node is a list of `[layer_name, node_index, tensor_index, kwargs]`.
        Value::Array(a)
            if matches!(a.first(), Some(Value::String(_))) && (3..=4).contains(&a.len()) =>
        {
            if a.get(1).and_then(Value::as_u64).is_some_and(|n| n != 0) {
                return Err(Fault::unsupported(format!(
                    "inbound {v} names a second call of a layer (shared layers are not supported)"
                )));
            }
            out.push(Ref {
                layer: a[0].as_str().unwrap_or_default().to_string(),
                tensor: tensor_index(a.get(2))?,
            });
            Ok(())
        }
        Value::Array(a) => a
            .iter()
            .try_for_each(|x| collect_history(x, out, depth + 1)),
        _ => Ok(()),
    }
}

/// Which output of a layer a reference names (absent: its first).
fn tensor_index(v: Option<&Value>) -> Res<usize> {
    match v {
        None => Ok(0),
        Some(t) => t
            .as_u64()
            .filter(|&t| t < 64)
            .map(|t| t as usize)
            .ok_or_else(|| Fault::invalid(format!("tensor index {t} is not a small integer"))),
    }
}

/// `["name", 0, 0]` (one endpoint) or `[["a", 0, 0], ["b", 0, 0]]` (a list): the tensors.
fn endpoints(cfg: &Value, key: &str) -> Res<Vec<Ref>> {
    let v = cfg
        .get(key)
        .ok_or_else(|| Fault::invalid(format!("no {key:?}")))?;
    let list = match v {
        Value::Array(a) if matches!(a.first(), Some(Value::String(_))) => std::slice::from_ref(v),
        Value::Array(a) if !a.is_empty() && a.len() <= 4096 => a.as_slice(),
        Value::Object(_) => {
            return Err(Fault::unsupported(format!(
                "{key} is a dict (a model with named dict outputs); only lists are supported"
            )));
        }
        _ => return Err(Fault::invalid(format!("{key} is not a non-empty list"))),
    };
    list.iter()
        .map(|one| {
            let a = one.as_array().filter(|a| a.len() <= 3);
            match a.map(Vec::as_slice) {
                Some([Value::String(s), rest @ ..]) => {
                    if rest.first().and_then(Value::as_u64).is_some_and(|n| n != 0) {
                        return Err(Fault::unsupported(format!(
                            "{key}: {one} names a second call of layer {s:?} (shared layers are not supported)"
                        )));
                    }
                    Ok(Ref {
                        layer: s.clone(),
                        tensor: tensor_index(rest.get(1))?,
                    })
                }
                _ => Err(Fault::invalid(format!(
                    "{key}: {one} is not [name, node, tensor]"
                ))),
            }
        })
        .collect()
}

/// Spec indices in an order where every layer comes after its inputs: the given inputs first,
/// then (depth-first) only the layers the outputs depend on. Errors on unknown names,
/// duplicates and cycles.
fn topo_order(specs: &[Spec], inputs: &[String], outputs: &[Ref]) -> Res<Vec<usize>> {
    let by_name = check_links(specs)?;
    // Depth-first from each output with an explicit stack; 0 = new, 1 = on the path, 2 = done.
    let mut state = vec![0u8; specs.len()];
    let mut order = Vec::new();
    for name in inputs {
        let i = *by_name.get(name.as_str()).ok_or_else(|| {
            Fault::invalid(format!("input layer {name:?} is not among the layers"))
        })?;
        if state[i] == 2 {
            return Err(Fault::invalid(format!(
                "input layer {name:?} is listed twice"
            )));
        }
        state[i] = 2;
        order.push(i);
    }
    let mut stack = Vec::new();
    for name in outputs.iter().rev().map(|r| &r.layer) {
        let out = *by_name.get(name.as_str()).ok_or_else(|| {
            Fault::invalid(format!("output layer {name:?} is not among the layers"))
        })?;
        stack.push((out, 0usize));
    }
    while let Some((i, next)) = stack.pop() {
        if next == 0 {
            if state[i] == 2 {
                continue;
            }
            state[i] = 1;
        }
        match specs[i].inbound.get(next) {
            Some(r) => {
                let j = by_name[r.layer.as_str()];
                stack.push((i, next + 1));
                match state[j] {
                    1 => {
                        return Err(specs[j].fault(Fault::invalid(format!(
                            "cycle: it depends on itself through {:?}",
                            specs[i].name
                        ))));
                    }
                    0 => stack.push((j, 0)),
                    _ => {}
                }
            }
            None => {
                state[i] = 2;
                order.push(i);
            }
        }
    }
    Ok(order)
}

/// Layer name -> spec index, once every name is checked to be unique, every inbound name a
/// layer's, and every layer to read as many inputs as it takes.
fn check_links(specs: &[Spec]) -> Res<HashMap<&str, usize>> {
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    for (i, s) in specs.iter().enumerate() {
        if by_name.insert(s.name.as_str(), i).is_some() {
            return Err(Fault::invalid(format!("two layers are named {:?}", s.name)));
        }
    }
    for s in specs {
        if let Some(missing) = s
            .inbound
            .iter()
            .find(|r| !by_name.contains_key(r.layer.as_str()))
        {
            return Err(s.fault(Fault::invalid(format!(
                "reads unknown layer {:?}",
                missing.layer
            ))));
        }
        for r in &s.inbound {
            specs[by_name[r.layer.as_str()]]
                .has_output(r)
                .map_err(|f| s.fault(f))?;
        }
        if let Layer::Recurrent(r) = &s.layer
            && s.inbound.len() > 1
        {
            if s.inbound.len() != 1 + r.states() {
                return Err(s.fault(Fault::invalid(format!(
                    "called with {} initial states, expected {}",
                    s.inbound.len() - 1,
                    r.states()
                ))));
            }
            continue;
        }
        let multi = matches!(
            s.layer,
            Layer::Merge(_) | Layer::Concatenate(_) | Layer::Attention(_)
        ) || MASK_CLASSES.contains(&s.class.as_str());
        if s.layer != Layer::Input && !(s.inbound.len() == 1 || multi && !s.inbound.is_empty()) {
            return Err(s.fault(Fault::invalid(format!(
                "has {} inputs, expected 1",
                s.inbound.len()
            ))));
        }
    }
    Ok(by_name)
}

/// Refuses a layer that reads an Embedding's `mask_zero` mask and would use it in Keras
/// (global pooling, softmax): sinter does not carry masks, and would answer differently.
fn check_masks(specs: &mut [Spec], order: &[usize]) -> Res<()> {
    // A mask written out (Keras 3): `NotEqual(ids, 0)` named by a layer's `mask` argument.
    for &i in order {
        let s = &specs[i];
        if MASK_CLASSES.contains(&s.class.as_str()) {
            return Err(s.fault(Fault::unsupported(format!(
                "{} is read only as the mask argument of a layer",
                s.class
            ))));
        }
        let Some(arg) = &s.mask_arg else { continue };
        let ids = mask_source(specs, arg, 0);
        match (&s.layer, ids) {
            (Layer::GlobalAveragePooling1D, Some(ids)) => specs[i].mask_ids = Some(ids),
            (Layer::Recurrent(_), Some(ids)) => mask_recurrent(&mut specs[i], ids),
            _ => {
                return Err(s.fault(Fault::unsupported(format!(
                    "a mask argument ({arg:?}) is read only by GlobalAveragePooling1D, from an \
                     Embedding's mask_zero mask (ids != 0)"
                ))));
            }
        }
    }
    // Layer name -> the tensor whose zeros mask its output (an Embedding's token ids, or the
    // mask a `Masking` layer makes, its tensor 1; `None`: several masks met), as Keras 2 and
    // older Keras 3 files leave the mask implicit.
    let mut masked: HashMap<String, Option<Ref>> = HashMap::new();
    let split: HashSet<String> = specs
        .iter()
        .filter(|s| s.split_directions)
        .map(|s| s.name.clone())
        .collect();
    for &i in order {
        let s = &specs[i];
        if s.mask_ids.is_some() {
            continue;
        }
        let mut from: Vec<&Option<Ref>> = s
            .inbound
            .iter()
            .filter_map(|r| mask_of(&masked, &split, r))
            .collect();
        from.dedup();
        let own = match &s.layer {
            Layer::Masking(_) => Some(Ref {
                layer: s.name.clone(),
                tensor: 1,
            }),
            _ => s.mask_zero.then(|| s.inbound.first().cloned()).flatten(),
        };
        if own.is_none() && from.is_empty() {
            continue;
        }
        let source = match (&own, from.as_slice()) {
            (Some(ids), _) => Some(ids.clone()),
            (None, [one]) => (*one).clone(),
            _ => None,
        };
        if !from.is_empty() {
            // MultiHeadAttention under the masks of its query and value (self-attention over
            // masked tokens): query `i` sees key `j` where both ids are not 0, as Keras's
            // `_compute_attention_mask` makes it; its output keeps the query's mask.
            if let Some(m) = &s.mha {
                let side = |k: usize| {
                    s.inbound
                        .get(k)
                        .and_then(|r| mask_of(&masked, &split, r))
                        .cloned()
                        .flatten()
                };
                let (q, v) = (side(0), side(1));
                let key_ok = !m.has_key()
                    || s.inbound
                        .get(2)
                        .and_then(|r| mask_of(&masked, &split, r))
                        .cloned()
                        .flatten()
                        == v;
                match (q, v) {
                    (Some(q), Some(v)) if !m.has_mask() && key_ok => {
                        let source = Some(q.clone());
                        if let Some(m) = specs[i].mha.as_deref_mut() {
                            m.tokens = Some((q, v));
                        }
                        masked.insert(specs[i].name.clone(), source);
                        continue;
                    }
                    _ => {
                        return Err(s.fault(Fault::unsupported(
                            "reads an Embedding's mask_zero mask: supported when both the query \
                             and the value are masked and the call passes no attention_mask",
                        )));
                    }
                }
            }
            match &s.layer {
                // Keras averages over the kept steps: the ids become an input of the pooling.
                Layer::GlobalAveragePooling1D => {
                    let ids = source.clone().ok_or_else(|| {
                        s.fault(Fault::unsupported(
                            "averages under the masks of several Embeddings with mask_zero=True",
                        ))
                    })?;
                    specs[i].mask_ids = Some(ids);
                    continue;
                }
                // Keras 3's GlobalMaxPooling1D takes no mask: the maximum of every step.
                Layer::GlobalMaxPooling1D => continue,
                // A masked step carries the state over: the ids become an input. The
                // output keeps the mask only with every step's state.
                Layer::Recurrent(r) => {
                    let keeps = r.returns == Returns::Sequences;
                    let ids = source.clone().ok_or_else(|| {
                        s.fault(Fault::unsupported(
                            "runs under the masks of several Embeddings with mask_zero=True",
                        ))
                    })?;
                    mask_recurrent(&mut specs[i], ids);
                    if keeps {
                        masked.insert(specs[i].name.clone(), source);
                    }
                    continue;
                }
                Layer::Attention(_)
                | Layer::Activation(Activation::Softmax | Activation::LogSoftmax) => {
                    return Err(s.fault(Fault::unsupported(MASK_REFUSED)));
                }
                Layer::Dense(DenseConfig {
                    activation: Activation::Softmax,
                    ..
                }) => return Err(s.fault(Fault::unsupported(MASK_REFUSED))),
                _ => {}
            }
        }
        masked.insert(s.name.clone(), source);
    }
    Ok(())
}

/// The mask of tensor `r` in `masked`: a layer's output's, or both directions' of a
/// `Bidirectional` in `split` (`merge_mode=None`); an RNN's states carry none.
fn mask_of<'m>(
    masked: &'m HashMap<String, Option<Ref>>,
    split: &HashSet<String>,
    r: &Ref,
) -> Option<&'m Option<Ref>> {
    let output = r.tensor == 0 || r.tensor == 1 && split.contains(&r.layer);
    masked.get(&r.layer).filter(|_| output)
}

/// A recurrent layer under the mask of the token ids `ids`: they become its second input. A
/// `Bidirectional` returning every step outputs zeros at masked steps (Keras forces
/// `zero_output_for_mask` there); a single layer outputs the state it carried over.
fn mask_recurrent(spec: &mut Spec, ids: Ref) {
    let wrapper = spec.class == "Bidirectional";
    if let Layer::Recurrent(r) = &mut spec.layer {
        r.mask = Some(StepMask {
            zero_outputs: wrapper && r.returns == Returns::Sequences,
            lengths: false,
        });
    }
    spec.mask_ids = Some(ids);
}

/// The classes Keras 3 writes a mask out with.
const MASK_CLASSES: [&str; 4] = ["NotEqual", "LogicalOr", "LogicalAnd", "Any"];

/// The tensor whose zeros the mask layer `name` is: the ids of `NotEqual(ids, 0)`; the mask of
/// the `Masking(v)` layer reading `x` for `Any(NotEqual(x, v), axis=-1)`; the `LogicalOr` /
/// `LogicalAnd` of two such masks of one tensor (a merge's mask); `None` for anything else.
fn mask_source(specs: &[Spec], name: &str, depth: usize) -> Option<Ref> {
    let m = specs.iter().find(|m| m.name == name)?;
    match m.class.as_str() {
        "NotEqual" if m.compared == Some(0.0) => m.inbound.first().cloned(),
        "Any" => {
            let ne = specs
                .iter()
                .find(|s| Some(&s.name) == m.inbound.first().map(|r| &r.layer))?;
            let x = ne.inbound.first().filter(|_| ne.class == "NotEqual")?;
            let masking = specs.iter().find(|s| {
                matches!(s.layer, Layer::Masking(c) if Some(c.value) == ne.compared)
                    && s.inbound.first() == Some(x)
            })?;
            Some(Ref {
                layer: masking.name.clone(),
                tensor: 1,
            })
        }
        "LogicalOr" | "LogicalAnd" if depth < 16 => {
            let mut sources = m
                .inbound
                .iter()
                .map(|r| mask_source(specs, &r.layer, depth + 1));
            let first = sources.next()??;
            sources.all(|s| s.as_ref() == Some(&first)).then_some(first)
        }
        _ => None,
    }
}

/// Why a layer that uses an Embedding's mask otherwise is refused.
const MASK_REFUSED: &str = "uses the mask of an Embedding with mask_zero=True; masking is \
     supported into GlobalAveragePooling1D only (save the model with mask_zero=False, or drop \
     the padding ids)";
