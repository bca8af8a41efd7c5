//! Keras 3 models (Dense and 1-D CNN layers): `.keras` archives (a zip of `config.json`, `metadata.json` and
//! `model.weights.h5`) and `model.to_json()` configs with a `.weights.h5` file beside them.
//!
//! A layer class maps to a sinter [`Layer`] in one arm of `layer_spec`. Weights are
//! found as Keras writes them: `layers/<group>/vars/0` (kernel, `[in, out]`) and `vars/1`
//! (bias), where the group is named from the layer's class (`dense`, `dense_1`, ...) and its
//! `vars` group carries the layer's own name as an attribute.
//!
//! ```no_run
//! let model = sinter::io::keras::load("seed.keras")?;
//! assert_eq!(model.input_shape(), &[784]);
//! # Ok::<(), sinter::Error>(())
//! ```

mod classes;

use super::{LoadOptions, hdf5};
use crate::error::{Error, LoadError, LoadErrorKind, Result};
use crate::kernels::Activation;
use crate::model::{ChannelNorm, DType, DenseWeights, Layer, Model, Node, RowNorm};
use crate::model::{
    ConcatenateConfig, Conv1DConfig, DenseConfig, EmbeddingConfig, NormalizationConfig,
};
use classes::layer_spec;
use serde_json::Value;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest `config.json` accepted from an archive (bytes, after decompression).
pub const MAX_CONFIG_BYTES: u64 = 64 << 20;

/// Loads a `.keras` archive.
pub fn load(path: impl AsRef<Path>) -> Result<Model> {
    load_with(path, &LoadOptions::default())
}

/// [`load`] with explicit limits.
pub fn load_with(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Model> {
    let path = path.as_ref();
    // The archive holds the weights plus a config of at most MAX_CONFIG_BYTES.
    let limit = opts.max_weight_bytes.saturating_add(MAX_CONFIG_BYTES);
    let bytes = super::read_limited(path, limit, "archive")?;
    from_archive_with(&bytes, path, opts)
}

/// Loads a `.keras` archive held in memory (`path` names it in errors).
pub fn from_archive(bytes: &[u8], path: &Path) -> Result<Model> {
    from_archive_with(bytes, path, &LoadOptions::default())
}

/// [`from_archive`] with explicit limits; members are checked while they inflate.
pub fn from_archive_with(bytes: &[u8], path: &Path, opts: &LoadOptions) -> Result<Model> {
    let fail = |msg: String| Error::from(LoadError::new(path, LoadErrorKind::Invalid(msg)));
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| fail(format!("not a .keras archive (zip: {e})")))?;
    let mut entry = |name: &str, limit: u64| -> Result<Vec<u8>> {
        let mut f = zip
            .by_name(name)
            .map_err(|e| fail(format!("archive member {name}: {e}")))?;
        if f.size() > limit {
            return Err(fail(format!(
                "archive member {name} declares {} bytes, more than the {limit}-byte limit",
                f.size()
            )));
        }
        // The declared size may lie: never read past the limit. (The zip crate's reader
        // also errors once a member inflates past its declared size; this bound does not rely
        // on it. tests/hostile.rs `keras_member_inflating_past_its_declared_size_is_refused`.)
        let mut buf = Vec::with_capacity(f.size().min(1 << 20) as usize);
        (&mut f)
            .take(limit + 1)
            .read_to_end(&mut buf)
            .map_err(|e| fail(format!("archive member {name}: {e}")))?;
        if buf.len() as u64 > limit {
            return Err(fail(format!(
                "archive member {name} inflates past the {limit}-byte limit"
            )));
        }
        Ok(buf)
    };
    let config = entry("config.json", MAX_CONFIG_BYTES)?;
    let weights = entry("model.weights.h5", opts.max_weight_bytes)?;
    let version = entry("metadata.json", 1 << 20)
        .ok()
        .and_then(|m| serde_json::from_slice::<Value>(&m).ok())
        .and_then(|m| {
            m.get("keras_version")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
    let mut model = from_parts_with(&config, &weights, path, opts)?;
    model.set_origin(match version {
        Some(v) => format!("Keras {v}, .keras archive"),
        None => ".keras archive".into(),
    });
    Ok(model)
}

/// Loads a `model.to_json()` config and its weights file, given either of them: `NAME.json`
/// pairs with `NAME.weights.h5` (or `model.weights.h5`) in the same folder, and back.
pub fn load_split(path: impl AsRef<Path>) -> Result<Model> {
    load_split_with(path, &LoadOptions::default())
}

/// [`load_split`] with explicit limits.
pub fn load_split_with(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Model> {
    let path = path.as_ref();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let dir = path.parent().unwrap_or(Path::new(""));
    let (config, weights): (PathBuf, PathBuf) = if let Some(stem) = name.strip_suffix(".json") {
        let own = dir.join(format!("{stem}.weights.h5"));
        let weights = if own.exists() {
            own
        } else {
            dir.join("model.weights.h5")
        };
        (path.into(), weights)
    } else if let Some(stem) = name.strip_suffix(".weights.h5") {
        (dir.join(format!("{stem}.json")), path.into())
    } else {
        return Err(LoadError::new(
            path,
            LoadErrorKind::Unsupported("expected NAME.json or NAME.weights.h5".into()),
        )
        .into());
    };
    let config_bytes = super::read_limited(&config, MAX_CONFIG_BYTES, "config")?;
    let weight_bytes = super::read_limited(&weights, opts.max_weight_bytes, "weights")?;
    let mut model =
        from_parts_with(&config_bytes, &weight_bytes, &config, opts).map_err(|e| match e {
            // Name the weights file when it is the one at fault.
            Error::Load(mut e) => {
                if let LoadErrorKind::Invalid(msg) = &mut e.kind
                    && let Some(rest) = msg.strip_prefix("weights:")
                {
                    *msg = rest.trim_start().to_string();
                    e.file = weights.clone();
                }
                Error::Load(e)
            }
            e => e,
        })?;
    let version = serde_json::from_slice::<Value>(&config_bytes)
        .ok()
        .and_then(|c| {
            c.get("keras_version")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
    model.set_origin(match version {
        Some(v) => format!("Keras {v}, JSON config + HDF5 weights"),
        None => "JSON config + HDF5 weights".into(),
    });
    Ok(model)
}

/// A layer as the config describes it, before weights.
struct Spec {
    name: String,
    class: String,
    layer: Layer,
    /// Input shape for an `InputLayer`.
    shape: Vec<usize>,
    /// Names of the layers it reads.
    inbound: Vec<String>,
    /// Element type (of an `InputLayer`).
    dtype: DType,
    /// An Embedding with `mask_zero=True` (checked against the layers that read it).
    mask_zero: bool,
}

/// A parsed config: the layers, then the input and output layer names in the model's order.
type Parsed = (Vec<Spec>, Vec<String>, Vec<String>);

/// Builds a model from a config (`config.json` / `model.to_json()`) and the HDF5 weights file,
/// both in memory; `path` names the model in errors.
pub fn from_parts(config: &[u8], weights: &[u8], path: &Path) -> Result<Model> {
    from_parts_with(config, weights, path, &LoadOptions::default())
}

/// [`from_parts`] with explicit limits.
pub fn from_parts_with(
    config: &[u8],
    weights: &[u8],
    path: &Path,
    opts: &LoadOptions,
) -> Result<Model> {
    let fail = |msg: String| Error::from(LoadError::new(path, LoadErrorKind::Invalid(msg)));
    if weights.len() as u64 > opts.max_weight_bytes {
        return Err(fail(format!(
            "weights: {} bytes is over the limit of {} bytes",
            weights.len(),
            opts.max_weight_bytes
        )));
    }
    let h5 = hdf5::File::parse(weights).map_err(|m| fail(format!("weights: {m}")))?;
    build(config, &h5, path, opts)
}

/// Loads a whole-model HDF5 file, as `model.save("m.h5")` writes it in Keras 2 (`tf_keras`)
/// and Keras 3's legacy writer: the JSON `model_config` attribute, the weights under
/// `model_weights` in the order its `layer_names` / `weight_names` attributes give.
pub fn load_h5(path: impl AsRef<Path>) -> Result<Model> {
    load_h5_with(path, &LoadOptions::default())
}

/// [`load_h5`] with explicit limits.
pub fn load_h5_with(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Model> {
    let path = path.as_ref();
    let bytes = super::read_limited(path, opts.max_weight_bytes, "weights")?;
    from_h5_with(&bytes, path, opts)
}

/// [`load_h5`] of a file held in memory; `path` only names it in errors.
pub fn from_h5_with(bytes: &[u8], path: &Path, opts: &LoadOptions) -> Result<Model> {
    let fail = |msg: String| Error::from(LoadError::new(path, LoadErrorKind::Invalid(msg)));
    let h5 =
        hdf5::File::parse(bytes).map_err(|m| fail(format!("not a readable HDF5 file: {m}")))?;
    let config = h5
        .attr_string("", "model_config")
        .map_err(fail)?
        .ok_or_else(|| {
            fail(if h5.attr_strings("", "layer_names").ok().flatten().is_some() {
                "a weights-only HDF5 file (save_weights): load it with its model.to_json() config (NAME.json beside NAME.weights.h5)".into()
            } else {
                "no model_config attribute: not a Keras whole-model HDF5 file".into()
            })
        })?;
    if config.len() as u64 > MAX_CONFIG_BYTES {
        return Err(fail(format!(
            "model_config is {} bytes, over the {MAX_CONFIG_BYTES}-byte limit",
            config.len()
        )));
    }
    let mut model = build(config.as_bytes(), &h5, path, opts)?;
    let attr = |n: &str| h5.attr_string("", n).ok().flatten();
    model.set_origin(match (attr("keras_version"), attr("backend")) {
        (Some(v), Some(b)) => format!("Keras {v} ({b}), whole-model HDF5"),
        (Some(v), None) => format!("Keras {v}, whole-model HDF5"),
        _ => "whole-model HDF5".into(),
    });
    Ok(model)
}

/// A model from its JSON config and an HDF5 file holding its weights (Keras 3 or legacy layout).
fn build(config: &[u8], h5: &hdf5::File<'_>, path: &Path, opts: &LoadOptions) -> Result<Model> {
    let fail = |msg: String| Error::from(LoadError::new(path, LoadErrorKind::Invalid(msg)));
    // serde_json itself stops at 128 levels, so parsing cannot overflow the stack.
    let root: Value = serde_json::from_slice(config)
        .map_err(|e| fail(format!("config is not valid JSON: {e}")))?;
    let depth = json_depth(&root);
    if depth > opts.max_json_depth {
        return Err(fail(format!(
            "config nests {depth} levels deep, over the limit of {}",
            opts.max_json_depth
        )));
    }
    let class = str_field(&root, "class_name").map_err(|m| fail(format!("config: {m}")))?;
    let cfg = root
        .get("config")
        .ok_or_else(|| fail("config: no \"config\" object".into()))?;
    let model_name = cfg.get("name").and_then(Value::as_str).unwrap_or("model");
    let (specs, inputs, outputs) = match class {
        "Sequential" => sequential(cfg),
        "Functional" | "Model" => functional(cfg),
        other => Err(format!(
            "model class {other:?} is not supported (expected Functional or Sequential)"
        )),
    }
    .map_err(|m| fail(format!("config: {m}")))?;
    if specs.len() > opts.max_layers {
        return Err(fail(format!(
            "config: {} layers, over the limit of {}",
            specs.len(),
            opts.max_layers
        )));
    }
    for s in specs.iter().filter(|s| s.layer == Layer::Input) {
        opts.check_elems(&s.shape)
            .map_err(|m| fail(format!("config: input {:?}: {m}", s.name)))?;
    }
    let outputs = opts.pick_outputs(&outputs).map_err(fail)?;
    let order = topo_order(&specs, &inputs, &outputs).map_err(|m| fail(format!("config: {m}")))?;
    check_masks(&specs, &order).map_err(|m| fail(format!("config: {m}")))?;

    let source = WeightSource::detect(h5, &specs, class == "Sequential")
        .map_err(|m| fail(format!("weights: {m}")))?;
    let index: HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, &s)| (specs[s].name.as_str(), i))
        .collect();
    let mut nodes = Vec::with_capacity(order.len());
    for &s in &order {
        let spec = &specs[s];
        let inputs = spec.inbound.iter().map(|n| index[n.as_str()]).collect();
        let wfail = |m: String| {
            fail(format!(
                "weights: layer {:?} ({}): {m}",
                spec.name,
                source.place(&spec.name)
            ))
        };
        let vars = source.vars(h5, &spec.name).map_err(wfail)?;
        let mut layer = spec.layer.clone();
        let weights = match (&spec.layer, vars) {
            (Layer::Embedding(EmbeddingConfig { .. }), Some(v)) => {
                let v = variables(v, &["embeddings"]).map_err(wfail)?;
                Some(DenseWeights {
                    kernel: v.into_iter().next().map(|d| d.data).unwrap_or_default(),
                    bias: None,
                })
            }
            (
                Layer::BatchNormalization(_)
                | Layer::LayerNormalization(_)
                | Layer::Normalization(NormalizationConfig { .. }),
                v,
            ) => {
                let v = v.ok_or_else(|| wfail("no weights for a normalization layer".into()))?;
                layer = norm_weights(v, &spec.layer).map_err(wfail)?;
                None
            }
            (
                Layer::Dense(DenseConfig { use_bias, .. })
                | Layer::Conv1D(Conv1DConfig { use_bias, .. }),
                Some(v),
            ) => Some(dense_weights(v, *use_bias).map_err(wfail)?),
            (
                Layer::Dense(DenseConfig { .. })
                | Layer::Conv1D(Conv1DConfig { .. })
                | Layer::Embedding(EmbeddingConfig { .. }),
                None,
            ) => {
                return Err(fail(format!(
                    "weights: no weights for {} layer {:?}",
                    spec.class, spec.name
                )));
            }
            (_, Some(v)) if !v.is_empty() => {
                return Err(fail(format!(
                    "weights: layer {:?} ({}) has {} variables; sinter expects none",
                    spec.name,
                    spec.class,
                    v.len()
                )));
            }
            (_, _) => None,
        };
        let mut node = Node::new(
            spec.name.clone(),
            layer,
            inputs,
            spec.shape.clone(),
            weights,
        );
        node.dtype = spec.dtype;
        nodes.push(node);
    }
    let ins: Vec<usize> = inputs.iter().map(|n| index[n.as_str()]).collect();
    let outs: Vec<usize> = outputs.iter().map(|n| index[n.as_str()]).collect();
    Model::from_nodes(model_name, nodes, &ins, &outs).map_err(|e| fail(e.to_string()))
}

/// Refuses an Embedding's `mask_zero=True` whose mask reaches a layer that would use it
/// (global pooling, softmax): sinter does not carry masks, and would answer differently.
fn check_masks(specs: &[Spec], order: &[usize]) -> std::result::Result<(), String> {
    let mut masked: Vec<&str> = Vec::new();
    for &i in order {
        let s = &specs[i];
        let reads_mask = s.inbound.iter().any(|n| masked.contains(&n.as_str()));
        if s.mask_zero || reads_mask {
            let uses = matches!(
                s.layer,
                Layer::GlobalAveragePooling1D
                    | Layer::GlobalMaxPooling1D
                    | Layer::Activation(Activation::Softmax | Activation::LogSoftmax)
            ) || matches!(
                s.layer,
                Layer::Dense(DenseConfig {
                    activation: Activation::Softmax,
                    ..
                })
            );
            if reads_mask && uses {
                return Err(format!(
                    "{} {:?} uses the mask of an Embedding with mask_zero=True; masking is not supported (save the model with mask_zero=False, or drop the padding ids)",
                    s.class, s.name
                ));
            }
            masked.push(s.name.as_str());
        }
    }
    Ok(())
}

/// A Keras 2 name-list attribute (`layer_names`, `weight_names`): one attribute, or, when the
/// list is over 64 KB, the chunks `NAME0`, `NAME1`, ... that Keras 2 writes instead.
fn names_attr(
    h5: &hdf5::File<'_>,
    path: &str,
    name: &str,
) -> std::result::Result<Option<Vec<String>>, String> {
    if let Some(v) = h5.attr_strings(path, name)? {
        return Ok(Some(v));
    }
    let mut all: Option<Vec<String>> = None;
    for i in 0..4096 {
        match h5.attr_strings(path, &format!("{name}{i}"))? {
            Some(chunk) => all.get_or_insert_with(Vec::new).extend(chunk),
            None => break,
        }
    }
    Ok(all)
}

/// Where a weights file keeps each layer's variables.
enum WeightSource<'s> {
    /// Keras 3 (`model.weights.h5`): `layers/<group>/vars/0, 1, ...`, the group found per layer.
    Keras3(HashMap<&'s str, String>),
    /// Keras 2 / legacy HDF5: `<root>/<layer>/<weight name>` in the order of the layer group's
    /// `weight_names` attribute, layers listed by `<root>`'s `layer_names` (`root` is
    /// `model_weights` in a whole-model file, the file's root in a `save_weights` file).
    Legacy { root: String, layers: Vec<String> },
}

impl<'s> WeightSource<'s> {
    /// The layout of `h5`: legacy when the root (or `model_weights`) has `layer_names`.
    fn detect(
        h5: &hdf5::File<'_>,
        specs: &'s [Spec],
        sequential: bool,
    ) -> std::result::Result<WeightSource<'s>, String> {
        for root in ["model_weights", ""] {
            let exists =
                root.is_empty() || h5.members("").unwrap_or_default().iter().any(|m| m == root);
            if !exists {
                continue;
            }
            if let Some(layers) = names_attr(h5, root, "layer_names")? {
                return Ok(WeightSource::Legacy {
                    root: root.to_string(),
                    layers,
                });
            }
            if root == "model_weights" {
                return Err("model_weights has no layer_names attribute (a legacy HDF5 file needs it to find each layer's weights)".into());
            }
        }
        weight_groups(h5, specs, sequential).map(WeightSource::Keras3)
    }

    /// Where layer `name`'s weights are, for messages.
    fn place(&self, name: &str) -> String {
        match self {
            WeightSource::Keras3(g) => g.get(name).cloned().unwrap_or_else(|| "no group".into()),
            WeightSource::Legacy { root, .. } if root.is_empty() => format!("/{name}"),
            WeightSource::Legacy { root, .. } => format!("{root}/{name}"),
        }
    }

    /// Layer `name`'s variables in the layer's order; None if the file has none for it.
    fn vars(
        &self,
        h5: &hdf5::File<'_>,
        name: &str,
    ) -> std::result::Result<Option<Vec<hdf5::Dataset>>, String> {
        match self {
            WeightSource::Keras3(groups) => {
                let Some(group) = groups.get(name) else {
                    return Ok(None);
                };
                let count = h5
                    .members(&format!("{group}/vars"))
                    .unwrap_or_default()
                    .len();
                (0..count)
                    .map(|i| {
                        h5.dataset(&format!("{group}/vars/{i}"))?
                            .ok_or_else(|| format!("vars/{i} is missing"))
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map(Some)
            }
            WeightSource::Legacy { root, layers } => {
                if !layers.iter().any(|l| l == name) {
                    return Ok(None);
                }
                let group = if root.is_empty() {
                    name.to_string()
                } else {
                    format!("{root}/{name}")
                };
                let names = names_attr(h5, &group, "weight_names")?.unwrap_or_default();
                names
                    .iter()
                    .map(|w| {
                        h5.dataset(&format!("{group}/{w}"))?
                            .ok_or_else(|| format!("weight {w:?} is missing"))
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map(Some)
            }
        }
    }
}

/// A layer's variables, checked to be as many as the `names` Keras writes for it.
fn variables(
    vars: Vec<hdf5::Dataset>,
    names: &[&str],
) -> std::result::Result<Vec<hdf5::Dataset>, String> {
    if vars.len() != names.len() {
        return Err(format!(
            "{} variables, expected {} ({})",
            vars.len(),
            names.len(),
            names.join(", ")
        ));
    }
    Ok(vars)
}

/// A normalization layer with its statistics read from the weights (the layer from the
/// config holds only its options). Shapes are checked against the layer's input later.
fn norm_weights(vars: Vec<hdf5::Dataset>, layer: &Layer) -> std::result::Result<Layer, String> {
    let flat = |d: &hdf5::Dataset, what: &str| -> std::result::Result<Vec<f32>, String> {
        // One value per channel; Normalization stores them broadcastable ([1, ch]).
        if d.shape.iter().filter(|&&x| x != 1).count() > 1 {
            return Err(format!(
                "{what} has shape {:?}, expected [channels]",
                d.shape
            ));
        }
        Ok(d.data.clone())
    };
    Ok(match layer {
        Layer::BatchNormalization(n) => {
            let mut names = Vec::new();
            if n.gamma.is_some() {
                names.push("gamma");
            }
            if n.beta.is_some() {
                names.push("beta");
            }
            names.extend(["moving_mean", "moving_variance"]);
            let v = variables(vars, &names)?;
            let mut it = v.iter().zip(&names);
            let mut next = || {
                let (d, name) = it.next().expect("as many as names");
                flat(d, name)
            };
            let gamma = n.gamma.is_some().then(&mut next).transpose()?;
            let beta = n.beta.is_some().then(&mut next).transpose()?;
            Layer::BatchNormalization(ChannelNorm {
                axis: n.axis,
                epsilon: n.epsilon,
                gamma,
                beta,
                mean: next()?,
                variance: next()?,
            })
        }
        Layer::LayerNormalization(n) => {
            let mut names = Vec::new();
            if n.gamma.is_some() {
                names.push(if n.rms { "scale" } else { "gamma" });
            }
            if n.beta.is_some() {
                names.push("beta");
            }
            let v = variables(vars, &names)?;
            let mut it = v.iter().zip(&names);
            let mut next = || {
                let (d, name) = it.next().expect("as many as names");
                flat(d, name)
            };
            Layer::LayerNormalization(RowNorm {
                axis: n.axis,
                epsilon: n.epsilon,
                gamma: n.gamma.is_some().then(&mut next).transpose()?,
                beta: n.beta.is_some().then(&mut next).transpose()?,
                rms: n.rms,
            })
        }
        Layer::Normalization(NormalizationConfig { axis, .. }) => {
            let v = variables(vars, &["mean", "variance", "count"])?;
            Layer::Normalization(NormalizationConfig {
                axis: *axis,
                mean: flat(&v[0], "mean")?,
                variance: flat(&v[1], "variance")?,
            })
        }
        other => return Err(format!("{} has no statistics", other.type_name())),
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

fn str_field<'v>(v: &'v Value, key: &str) -> std::result::Result<&'v str, String> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("missing string field {key:?}"))
}

/// `[null, d1, ..]` as the non-batch shape.
fn batch_shape(v: &Value) -> std::result::Result<Vec<usize>, String> {
    let dims = v.as_array().ok_or("shape is not a list")?;
    if dims.len() < 2 || dims.len() > 33 {
        return Err(format!(
            "shape of rank {}: expected [batch, d1, ..]",
            dims.len()
        ));
    }
    dims[1..]
        .iter()
        .map(|d| {
            d.as_u64()
                .filter(|&d| d > 0)
                .and_then(|d| usize::try_from(d).ok())
                .ok_or_else(|| {
                    format!("shape {v}: every non-batch axis needs a fixed positive size")
                })
        })
        .collect()
}

/// A Sequential config: a chain, led by an `InputLayer` or a `build_input_shape`.
fn sequential(cfg: &Value) -> std::result::Result<Parsed, String> {
    let layers = cfg
        .get("layers")
        .and_then(Value::as_array)
        .ok_or("Sequential config has no \"layers\" list")?;
    let mut specs: Vec<Spec> = Vec::with_capacity(layers.len() + 1);
    for (i, l) in layers.iter().enumerate() {
        let mut spec = layer_spec(l).map_err(|m| format!("layer {i}: {m}"))?;
        if spec.layer == Layer::Input && i != 0 {
            return Err(format!(
                "layer {i} ({:?}) is an InputLayer inside the chain",
                spec.name
            ));
        }
        if i == 0 && spec.layer != Layer::Input {
            // Keras 3 writes `build_input_shape`; Keras 2 puts `batch_input_shape` on the first
            // layer.
            let shape = cfg
                .get("build_input_shape")
                .or_else(|| l.get("config").and_then(|c| c.get("batch_input_shape")))
                .ok_or("Sequential config has neither an InputLayer nor a build_input_shape")?;
            specs.push(Spec {
                name: "input_layer".into(),
                class: "InputLayer".into(),
                layer: Layer::Input,
                shape: batch_shape(shape)?,
                inbound: vec![],
                dtype: DType::F32,
                mask_zero: false,
            });
        }
        if let Some(prev) = specs.last() {
            spec.inbound = vec![prev.name.clone()];
        }
        specs.push(spec);
    }
    let out = specs
        .last()
        .filter(|s| s.layer != Layer::Input)
        .ok_or("Sequential model has no layers")?
        .name
        .clone();
    let input = specs[0].name.clone();
    Ok((specs, vec![input], vec![out]))
}

/// A Functional config: layers with `inbound_nodes`; its inputs and outputs, in order.
fn functional(cfg: &Value) -> std::result::Result<Parsed, String> {
    let layers = cfg
        .get("layers")
        .and_then(Value::as_array)
        .ok_or("Functional config has no \"layers\" list")?;
    let mut specs = Vec::with_capacity(layers.len());
    for (i, l) in layers.iter().enumerate() {
        let mut spec = layer_spec(l).map_err(|m| format!("layer {i}: {m}"))?;
        if let Some(name) = l.get("name").and_then(Value::as_str) {
            spec.name = name.to_string();
        }
        let nodes = match l.get("inbound_nodes") {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(a)) => a.clone(),
            Some(_) => {
                return Err(format!(
                    "layer {:?}: inbound_nodes is not a list",
                    spec.name
                ));
            }
        };
        if nodes.len() > 1 {
            return Err(format!(
                "layer {:?} is called {} times (shared layers are not supported)",
                spec.name,
                nodes.len()
            ));
        }
        if let Some(node) = nodes.first() {
            let mut found = Vec::new();
            collect_history(node, &mut found, 0)?;
            spec.inbound = found;
        }
        specs.push(spec);
    }
    let inputs = endpoints(cfg, "input_layers")?;
    let outputs = endpoints(cfg, "output_layers")?;
    for input in &inputs {
        let Some(first) = specs.iter().find(|s| &s.name == input) else {
            return Err(format!("input layer {input:?} is not among the layers"));
        };
        if first.layer != Layer::Input {
            return Err(format!("input layer {input:?} is not an InputLayer"));
        }
    }
    Ok((specs, inputs, outputs))
}

/// Layer names in `keras_history` entries of an inbound node, in argument order.
fn collect_history(
    v: &Value,
    out: &mut Vec<String>,
    depth: usize,
) -> std::result::Result<(), String> {
    if depth > 16 {
        return Err("inbound node nested too deeply".into());
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
                    .ok_or("keras_history without a layer name")?;
                out.push(name.to_string());
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
                return Err(format!(
                    "inbound {v} names a second call of a layer (shared layers are not supported)"
                ));
            }
            out.push(a[0].as_str().unwrap_or_default().to_string());
            Ok(())
        }
        Value::Array(a) => a
            .iter()
            .try_for_each(|x| collect_history(x, out, depth + 1)),
        _ => Ok(()),
    }
}

/// `["name", 0, 0]` (one endpoint) or `[["a", 0, 0], ["b", 0, 0]]` (a list): layer names.
fn endpoints(cfg: &Value, key: &str) -> std::result::Result<Vec<String>, String> {
    let v = cfg.get(key).ok_or_else(|| format!("no {key:?}"))?;
    let list = match v {
        Value::Array(a) if matches!(a.first(), Some(Value::String(_))) => std::slice::from_ref(v),
        Value::Array(a) if !a.is_empty() && a.len() <= 4096 => a.as_slice(),
        Value::Object(_) => {
            return Err(format!(
                "{key} is a dict (a model with named dict outputs); only lists are supported"
            ));
        }
        _ => return Err(format!("{key} is not a non-empty list")),
    };
    list.iter()
        .map(|one| {
            let a = one.as_array().filter(|a| a.len() <= 3);
            match a.map(Vec::as_slice) {
                Some([Value::String(s), rest @ ..]) => {
                    if rest.iter().any(|x| x.as_u64().is_some_and(|n| n != 0)) {
                        return Err(format!(
                            "{key}: {one} names a second call of layer {s:?} (shared layers are not supported)"
                        ));
                    }
                    Ok(s.clone())
                }
                _ => Err(format!("{key}: {one} is not [name, node, tensor]")),
            }
        })
        .collect()
}

/// Layer name -> its weights group (`layers/dense_1`): by the `name` attribute Keras puts on each
/// `vars` group, or else by Keras's own naming (class in snake case, numbered in layer order).
fn weight_groups<'s>(
    h5: &hdf5::File<'_>,
    specs: &'s [Spec],
    sequential: bool,
) -> std::result::Result<HashMap<&'s str, String>, String> {
    let members = h5.members("layers").unwrap_or_default();
    let mut by_attr: HashMap<String, String> = HashMap::new();
    for m in &members {
        let group = format!("layers/{m}");
        if let Ok(Some(name)) = h5.attr_string(&format!("{group}/vars"), "name") {
            by_attr.insert(name, group);
        }
    }
    let mut counters: HashMap<String, usize> = HashMap::new();
    let mut groups = HashMap::new();
    for s in specs {
        if sequential && s.layer == Layer::Input {
            continue;
        }
        let base = snake_case(&s.class);
        let c = counters.entry(base.clone()).or_insert(0);
        let by_order = if *c == 0 { base } else { format!("{base}_{c}") };
        *c += 1;
        let group = match by_attr.remove(&s.name) {
            Some(g) => g,
            None if members.contains(&by_order) => format!("layers/{by_order}"),
            None => continue,
        };
        groups.insert(s.name.as_str(), group);
    }
    Ok(groups)
}

/// Keras's `to_snake_case` for class names: `LeakyReLU` -> `leaky_re_lu`.
fn snake_case(class: &str) -> String {
    let c: Vec<char> = class
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    // (.)([A-Z][a-z]+) -> \1_\2
    let mut a = String::new();
    for (i, &ch) in c.iter().enumerate() {
        if i > 0 && ch.is_ascii_uppercase() && c.get(i + 1).is_some_and(|n| n.is_ascii_lowercase())
        {
            a.push('_');
        }
        a.push(ch);
    }
    // ([a-z])([A-Z]) -> \1_\2
    let a: Vec<char> = a.chars().collect();
    let mut b = String::new();
    for (i, &ch) in a.iter().enumerate() {
        if i > 0 && ch.is_ascii_uppercase() && a[i - 1].is_ascii_lowercase() {
            b.push('_');
        }
        b.push(ch);
    }
    b.to_lowercase()
}

/// The kernel (`[in, units]` or `[kernel_size, in, filters]`) and the bias (`[units]`).
fn dense_weights(
    vars: Vec<hdf5::Dataset>,
    use_bias: bool,
) -> std::result::Result<DenseWeights, String> {
    let expected = if use_bias { 2 } else { 1 };
    if vars.len() != expected {
        return Err(format!(
            "{} variables, expected {expected} (kernel{})",
            vars.len(),
            if use_bias { ", bias" } else { "" }
        ));
    }
    let mut vars = vars.into_iter();
    let mut get = || {
        vars.next()
            .ok_or_else(|| "a variable is missing".to_string())
    };
    let kernel = get()?;
    let units = match kernel.shape.as_slice() {
        [_, units] | [_, _, units] => *units,
        s => {
            return Err(format!(
                "kernel has shape {s:?}, expected [in, units] or [kernel_size, in, filters]"
            ));
        }
    };
    let bias = if use_bias {
        let b = get()?;
        if b.shape != [units] {
            return Err(format!(
                "bias has shape {:?}, expected [{units}] to match the kernel {:?}",
                b.shape, kernel.shape
            ));
        }
        Some(b.data)
    } else {
        None
    };
    Ok(DenseWeights {
        kernel: kernel.data,
        bias,
    })
}

/// Spec indices in an order where every layer comes after its inputs: the given inputs first,
/// then (depth-first) only the layers the outputs depend on. Errors on unknown names,
/// duplicates and cycles.
fn topo_order(
    specs: &[Spec],
    inputs: &[String],
    outputs: &[String],
) -> std::result::Result<Vec<usize>, String> {
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    for (i, s) in specs.iter().enumerate() {
        if by_name.insert(s.name.as_str(), i).is_some() {
            return Err(format!("two layers are named {:?}", s.name));
        }
    }
    for s in specs {
        if let Some(missing) = s.inbound.iter().find(|n| !by_name.contains_key(n.as_str())) {
            return Err(format!(
                "layer {:?} reads unknown layer {missing:?}",
                s.name
            ));
        }
        let multi = matches!(
            s.layer,
            Layer::Merge(_) | Layer::Concatenate(ConcatenateConfig { .. })
        );
        if s.layer != Layer::Input && !(s.inbound.len() == 1 || multi && !s.inbound.is_empty()) {
            return Err(format!(
                "layer {:?} has {} inputs, expected 1",
                s.name,
                s.inbound.len()
            ));
        }
    }
    // Depth-first from each output with an explicit stack; 0 = new, 1 = on the path, 2 = done.
    let mut state = vec![0u8; specs.len()];
    let mut order = Vec::new();
    for name in inputs {
        let i = *by_name
            .get(name.as_str())
            .ok_or_else(|| format!("input layer {name:?} is not among the layers"))?;
        if state[i] == 2 {
            return Err(format!("input layer {name:?} is listed twice"));
        }
        state[i] = 2;
        order.push(i);
    }
    let mut stack = Vec::new();
    for name in outputs.iter().rev() {
        let out = *by_name
            .get(name.as_str())
            .ok_or_else(|| format!("output layer {name:?} is not among the layers"))?;
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
            Some(name) => {
                let j = by_name[name.as_str()];
                stack.push((i, next + 1));
                match state[j] {
                    1 => {
                        return Err(format!(
                            "cycle: layer {:?} depends on itself through {:?}",
                            specs[j].name, specs[i].name
                        ));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_matches_keras() {
        for (class, snake) in [
            ("Dense", "dense"),
            ("InputLayer", "input_layer"),
            ("LeakyReLU", "leaky_re_lu"),
            ("ReLU", "re_lu"),
            ("ELU", "elu"),
            ("Softmax", "softmax"),
            ("Conv1D", "conv1d"),
            ("GlobalAveragePooling1D", "global_average_pooling1d"),
        ] {
            assert_eq!(snake_case(class), snake, "{class}");
        }
    }
}
