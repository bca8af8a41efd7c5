//! Keras models: `.keras` archives (a zip of `config.json`, `metadata.json` and
//! `model.weights.h5`), `model.to_json()` configs with a `.weights.h5` file beside them, and
//! whole-model HDF5 files (`model.save("m.h5")` of Keras 2 and Keras 3's legacy writer).
//!
//! Each job has its file: `archive.rs` reads the zip's members under limits, `config.rs` walks
//! the JSON config (Functional or Sequential, Keras 2 and 3 dialects) into layers in
//! topological order, `classes.rs` is the one table from a layer class to a sinter [`Layer`]
//! (adding a class is one line there), and `weights.rs` finds each layer's weights in the HDF5
//! file: Keras 3's `layers/<group>/vars/0, 1, ...` (the group named from the layer's class,
//! `dense`, `dense_1`, ..., its `vars` group carrying the layer's own name as an attribute) or
//! the legacy `<layer>/<weight name>` in the order of `weight_names`.
//!
//! A bad file is an [`Error::Load`]: the file at fault (the weights file when the weights are),
//! the layer (name and class) when the fault is in one, and the kind of fault.
//!
//! ```no_run
//! let model = sinter::io::keras::load("seed.keras")?;
//! assert_eq!(model.input_shape(), &[784]);
//! # Ok::<(), sinter::Error>(())
//! ```
//!
//! [`Layer`]: crate::model::Layer

mod archive;
mod classes;
mod config;
mod mha;
mod weights;

use super::{LoadOptions, hdf5};
use crate::error::{Error, LoadError, LoadErrorKind, Result, Site};
use crate::model::{
    DenseWeights, Layer, MaskingConfig, Model, Node, Primitive, RecurrentConfig, Returns,
    TakeConfig,
};
use archive::Archive;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use weights::WeightSource;

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
    let fail = |f: Fault| f.in_file(path);
    let mut zip = Archive::open(bytes).map_err(fail)?;
    let config = zip.member("config.json", MAX_CONFIG_BYTES).map_err(fail)?;
    let weights = zip
        .member("model.weights.h5", opts.max_weight_bytes)
        .map_err(fail)?;
    let version = zip.keras_version();
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
        return Err(Fault::unsupported("expected NAME.json or NAME.weights.h5").in_file(path));
    };
    let config_bytes = super::read_limited(&config, MAX_CONFIG_BYTES, "config")?;
    let weight_bytes = super::read_limited(&weights, opts.max_weight_bytes, "weights")?;
    let files = Files {
        config: &config,
        weights: &weights,
    };
    let mut model = parts(&config_bytes, &weight_bytes, files, opts)?;
    let version = serde_json::from_slice::<serde_json::Value>(&config_bytes)
        .ok()
        .and_then(|c| {
            c.get("keras_version")
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
        });
    tf1_bilinear(&model, version.as_deref()).map_err(|f| f.in_file(&config))?;
    model.set_origin(match version {
        Some(v) => format!("Keras {v}, JSON config + HDF5 weights"),
        None => "JSON config + HDF5 weights".into(),
    });
    Ok(model)
}

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
    parts(config, weights, Files::one(path), opts)
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
    let fail = |f: Fault| f.in_file(path);
    let h5 = hdf5::File::parse(bytes)
        .map_err(|m| fail(Fault::malformed(format!("not a readable HDF5 file: {m}"))))?;
    let config = h5
        .attr_string("", "model_config")
        .map_err(|m| fail(Fault::malformed(m)))?
        .ok_or_else(|| {
            fail(Fault::invalid(if h5.attr_strings("", "layer_names").ok().flatten().is_some() {
                "a weights-only HDF5 file (save_weights): load it with its model.to_json() config (NAME.json beside NAME.weights.h5)"
            } else {
                "no model_config attribute: not a Keras whole-model HDF5 file"
            }))
        })?;
    if config.len() as u64 > MAX_CONFIG_BYTES {
        return Err(fail(Fault::limit(format!(
            "model_config is {} bytes, over the {MAX_CONFIG_BYTES}-byte limit",
            config.len()
        ))));
    }
    let mut model = build(config.as_bytes(), &h5, Files::one(path), opts)?;
    let attr = |n: &str| h5.attr_string("", n).ok().flatten();
    tf1_bilinear(&model, attr("keras_version").as_deref()).map_err(fail)?;
    model.set_origin(match (attr("keras_version"), attr("backend")) {
        (Some(v), Some(b)) => format!("Keras {v} ({b}), whole-model HDF5"),
        (Some(v), None) => format!("Keras {v}, whole-model HDF5"),
        _ => "whole-model HDF5".into(),
    });
    Ok(model)
}

/// The nodes of a recurrent layer with several outputs (Keras `return_state`, or a
/// `Bidirectional` with `merge_mode=None`), only those something reads, each with the output
/// it holds: the layer (both directions' outputs side by side, each a take of it), then the
/// layer returning its final states (each a row of it). `at`: where the first node goes.
fn recurrent_nodes(
    spec: &config::Spec,
    r: &RecurrentConfig,
    (inputs, weights): (&[usize], Option<DenseWeights>),
    read: &HashSet<&config::Ref>,
    at: usize,
) -> Vec<(Node, Option<usize>)> {
    let name = &spec.name;
    let is_read = |tensor| {
        read.contains(&config::Ref {
            layer: name.clone(),
            tensor,
        })
    };
    let merged = spec.outputs() - if spec.return_state { r.states() } else { 0 };
    let outputs: Vec<usize> = (0..merged).filter(|&t| is_read(t)).collect();
    let states: Vec<usize> = (merged..spec.outputs()).filter(|&t| is_read(t)).collect();
    let mut nodes = Vec::new();
    if !outputs.is_empty() || states.is_empty() {
        let layer = Layer::Recurrent(r.clone());
        let node = Node::new(
            name.clone(),
            layer,
            inputs.to_vec(),
            vec![],
            weights.clone(),
        );
        nodes.push((node, (merged == 1).then_some(0)));
        // `merge_mode=None`: each direction's units of the concatenated output.
        let axis = usize::from(r.returns == Returns::Sequences);
        for &t in outputs.iter().filter(|_| merged == 2) {
            let take = TakeConfig {
                axis,
                indices: (t * r.units..(t + 1) * r.units).collect(),
                squeeze: false,
            };
            let which = ["forward", "backward"][t];
            let layer = Layer::Primitive(Primitive::Take(take));
            let node = Node::new(format!("{name}/{which}"), layer, vec![at], vec![], None);
            nodes.push((node, Some(t)));
        }
    }
    if !states.is_empty() {
        let own = match nodes.is_empty() {
            true => name.clone(),
            false => format!("{name}/states"),
        };
        let layer = Layer::Recurrent(RecurrentConfig {
            returns: Returns::States,
            ..r.clone()
        });
        let from = at + nodes.len();
        nodes.push((
            Node::new(&own, layer, inputs.to_vec(), vec![], weights),
            None,
        ));
        for &t in &states {
            let take = TakeConfig {
                axis: 0,
                indices: vec![t - merged],
                squeeze: true,
            };
            let layer = Layer::Primitive(Primitive::Take(take));
            let state = format!("{own}/{}", r.state_name(t - merged));
            nodes.push((Node::new(state, layer, vec![from], vec![], None), Some(t)));
        }
    }
    nodes
}

/// Refuses a bilinear `UpSampling2D` saved by Keras before 2.4: those ran on TensorFlow 1
/// (or TensorFlow 2.0 to 2.3, whose rule the file does not tell apart), whose bilinear resize
/// had no half-pixel centers; sinter computes TensorFlow 2's rule, and a different answer is
/// worse than none.
fn tf1_bilinear(model: &Model, version: Option<&str>) -> Res<()> {
    let Some(v) = version else { return Ok(()) };
    let mut parts = v.split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) >= (2, 4) {
        return Ok(());
    }
    match model.nodes().iter().find(|n| {
        matches!(
            n.layer,
            crate::model::Layer::Resample(crate::model::Resample::Bilinear { .. })
        )
    }) {
        Some(n) => Err(Fault::unsupported(format!(
            "bilinear UpSampling2D saved by Keras {v}: before Keras 2.4 TensorFlow resized \
             without half-pixel centers, which sinter does not compute"
        ))
        .at(&n.name, "UpSampling2D")),
        None => Ok(()),
    }
}

/// A fault found in a config or a weights file, before the file it is reported against is
/// chosen: the layer at fault, if any, and the kind with its detail.
struct Fault {
    site: Option<Site>,
    kind: LoadErrorKind,
}

/// `Result` of the readers below the entry points.
type Res<T> = std::result::Result<T, Fault>;

impl Fault {
    fn malformed(msg: impl Into<String>) -> Fault {
        Fault::new(LoadErrorKind::Malformed(msg.into()))
    }

    fn unsupported(msg: impl Into<String>) -> Fault {
        Fault::new(LoadErrorKind::Unsupported(msg.into()))
    }

    fn invalid(msg: impl Into<String>) -> Fault {
        Fault::new(LoadErrorKind::Invalid(msg.into()))
    }

    fn limit(msg: impl Into<String>) -> Fault {
        Fault::new(LoadErrorKind::Limit(msg.into()))
    }

    fn new(kind: LoadErrorKind) -> Fault {
        Fault { site: None, kind }
    }

    /// The same fault, in layer `name` of class `class` (a layer already named is kept).
    fn at(mut self, name: &str, class: &str) -> Fault {
        self.site.get_or_insert_with(|| Site {
            name: name.to_string(),
            op: class.to_string(),
            opset: None,
        });
        self
    }

    /// The same fault, its detail led by `what` (the part of the file it is in).
    fn within(mut self, what: impl std::fmt::Display) -> Fault {
        match &mut self.kind {
            LoadErrorKind::Malformed(m)
            | LoadErrorKind::Unsupported(m)
            | LoadErrorKind::Invalid(m)
            | LoadErrorKind::Limit(m) => *m = format!("{what}: {m}"),
            // A built model's error is reported as it is.
            LoadErrorKind::Model(_) => {}
        }
        self
    }

    /// The fault as an error about `file`.
    fn in_file(self, file: &Path) -> Error {
        LoadError {
            file: file.into(),
            site: self.site,
            kind: self.kind,
        }
        .into()
    }
}

/// The files a model is read from: the config and the weights, one file for an archive or a
/// whole-model HDF5, two for a `model.to_json()` config and its `.weights.h5`.
#[derive(Clone, Copy)]
struct Files<'p> {
    config: &'p Path,
    weights: &'p Path,
}

impl<'p> Files<'p> {
    fn one(path: &'p Path) -> Self {
        Files {
            config: path,
            weights: path,
        }
    }

    /// A fault of the config (or of the model it describes), against the config's file.
    fn config(&self, f: Fault) -> Error {
        f.in_file(self.config)
    }

    /// A fault of the weights, against the weights file; when that is also the config's, the
    /// detail says it is in the weights.
    fn weights(&self, f: Fault) -> Error {
        if self.weights == self.config {
            f.within("weights").in_file(self.weights)
        } else {
            f.in_file(self.weights)
        }
    }
}

/// A model from a config and a weights file in memory, within the limits.
fn parts(config: &[u8], weights: &[u8], files: Files<'_>, opts: &LoadOptions) -> Result<Model> {
    if weights.len() as u64 > opts.max_weight_bytes {
        return Err(files.weights(Fault::limit(format!(
            "{} bytes is over the limit of {} bytes",
            weights.len(),
            opts.max_weight_bytes
        ))));
    }
    let h5 = hdf5::File::parse(weights).map_err(|m| files.weights(Fault::malformed(m)))?;
    build(config, &h5, files, opts)
}

/// A model from its JSON config and an HDF5 file holding its weights (Keras 3 or legacy layout).
fn build(
    config: &[u8],
    h5: &hdf5::File<'_>,
    files: Files<'_>,
    opts: &LoadOptions,
) -> Result<Model> {
    let parsed = config::parse(config, opts).map_err(|f| files.config(f))?;
    let specs = &parsed.specs;
    let source =
        WeightSource::detect(h5, specs, parsed.sequential).map_err(|f| files.weights(f))?;
    // Every name is a layer's (`config::parse` checked the inbound and endpoint names), and
    // each layer follows its inputs: `index` has them, at the node that holds the tensor.
    let mut index: HashMap<config::Ref, usize> = HashMap::with_capacity(parsed.order.len());
    // The tensors something reads: an RNN's outputs that nothing reads are not built.
    let masks = specs.iter().flat_map(|s| {
        let tokens = s.mha.as_ref().and_then(|m| m.tokens.as_ref());
        s.mask_ids
            .iter()
            .chain(tokens.into_iter().flat_map(|(q, v)| [q, v]))
    });
    let read: HashSet<&config::Ref> = specs
        .iter()
        .flat_map(|s| &s.inbound)
        .chain(&parsed.outputs)
        .chain(masks)
        .collect();
    // A tensor built before its readers (a mask's source may not be: then it is an error).
    let at = |index: &HashMap<config::Ref, usize>, r: &config::Ref| {
        index.get(r).copied().ok_or_else(|| {
            files.config(Fault::invalid(format!(
                "output {} of layer {:?} is read before it is computed",
                r.tensor, r.layer
            )))
        })
    };
    let mut nodes = Vec::with_capacity(parsed.order.len());
    for &s in &parsed.order {
        let spec = &specs[s];
        let mut inputs: Vec<usize> = spec
            .inbound
            .iter()
            .map(|r| at(&index, r))
            .collect::<Result<_>>()?;
        // A pooling or an RNN under an Embedding's mask reads the token ids after its input
        // (an RNN's initial states come after them), and an attention the ids of its query
        // and value.
        if let Some(ids) = &spec.mask_ids {
            inputs.insert(1.min(inputs.len()), at(&index, ids)?);
        }
        if let Some((q, v)) = spec.mha.as_ref().and_then(|m| m.tokens.as_ref()) {
            inputs.extend([at(&index, q)?, at(&index, v)?]);
        }
        if let Some(m) = &spec.mha {
            let here = |f: Fault| f.at(&spec.name, &spec.class);
            let vars = source
                .sub_vars(h5, spec, &mha::PROJECTIONS)
                .map_err(|f| files.weights(here(f)))?;
            let made = mha::nodes(spec, m, &inputs, nodes.len(), vars)
                .map_err(|f| files.weights(here(f)))?;
            nodes.extend(made);
        } else {
            let (mut layer, weights) = source.layer(h5, spec).map_err(|f| files.weights(f))?;
            if let Layer::Recurrent(r) = &mut layer {
                r.initial_state = spec.inbound.len() > 1;
            }
            if let (Layer::Recurrent(r), true) = (&layer, spec.outputs() > 1) {
                let made = recurrent_nodes(spec, r, (&inputs, weights), &read, nodes.len());
                for (node, tensor) in made {
                    nodes.push(node);
                    if let Some(tensor) = tensor {
                        let at = nodes.len() - 1;
                        index.insert(
                            config::Ref {
                                layer: spec.name.clone(),
                                tensor,
                            },
                            at,
                        );
                    }
                }
                continue;
            }
            // A Masking layer's mask (its tensor 1), for the layers that run under it.
            let mask = match &layer {
                Layer::Masking(m) => Some(Node::new(
                    format!("{}/mask", spec.name),
                    Layer::Masking(MaskingConfig { mask: true, ..*m }),
                    inputs.clone(),
                    vec![],
                    None,
                )),
                _ => None,
            };
            let mut node = Node::new(
                spec.name.clone(),
                layer,
                inputs,
                spec.shape.clone(),
                weights,
            );
            node.dtype = spec.dtype;
            if let Some(mask) = mask {
                nodes.push(mask);
                let tensor = config::Ref {
                    layer: spec.name.clone(),
                    tensor: 1,
                };
                index.insert(tensor, nodes.len() - 1);
            }
            nodes.push(node);
        }
        index.insert(spec.name.clone().into(), nodes.len() - 1);
    }
    let ins: Vec<usize> = parsed
        .inputs
        .iter()
        .map(|n| at(&index, &n.clone().into()))
        .collect::<Result<_>>()?;
    let outs: Vec<usize> = parsed
        .outputs
        .iter()
        .map(|r| at(&index, r))
        .collect::<Result<_>>()?;
    let model_err = |e| files.config(Fault::new(LoadErrorKind::Model(Box::new(e))));
    let mut model = Model::from_nodes(&parsed.model_name, nodes, &ins, &outs).map_err(model_err)?;
    for (k, name) in parsed.inputs.iter().enumerate() {
        if specs.iter().any(|s| s.name == *name && s.seq) {
            model.set_seq_input(k).map_err(model_err)?;
        }
    }
    Ok(model)
}
