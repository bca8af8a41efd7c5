//! Each layer's weights, found in the HDF5 file the way Keras wrote them: Keras 3's
//! `layers/<group>/vars/0, 1, ...`, or the legacy (Keras 2, `save_weights`, whole-model HDF5)
//! `<root>/<layer>/<weight name>` in the order of `weight_names`. A fault here is the weights
//! file's, located at the layer.

use super::config::Spec;
use super::{Fault, Res, hdf5};
use crate::model::NormalizationConfig;
use crate::model::{Cell, ChannelNorm, DenseWeights, Layer, RecurrentConfig, RowNorm};
use std::collections::HashMap;

/// Where a weights file keeps each layer's variables.
pub(super) enum WeightSource<'s> {
    /// Keras 3 (`model.weights.h5`): `layers/<group>/vars/0, 1, ...`, the group found per layer.
    Keras3(HashMap<&'s str, String>),
    /// Keras 2 / legacy HDF5: `<root>/<layer>/<weight name>` in the order of the layer group's
    /// `weight_names` attribute, layers listed by `<root>`'s `layer_names` (`root` is
    /// `model_weights` in a whole-model file, the file's root in a `save_weights` file).
    Legacy { root: String, layers: Vec<String> },
}

impl<'s> WeightSource<'s> {
    /// The layout of `h5`: legacy when the root (or `model_weights`) has `layer_names`.
    pub(super) fn detect(
        h5: &hdf5::File<'_>,
        specs: &'s [Spec],
        sequential: bool,
    ) -> Res<WeightSource<'s>> {
        for root in ["model_weights", ""] {
            let exists =
                root.is_empty() || h5.members("").unwrap_or_default().iter().any(|m| m == root);
            if !exists {
                continue;
            }
            if let Some(layers) = names_attr(h5, root, "layer_names").map_err(Fault::malformed)? {
                return Ok(WeightSource::Legacy {
                    root: root.to_string(),
                    layers,
                });
            }
            if root == "model_weights" {
                return Err(Fault::invalid(
                    "model_weights has no layer_names attribute (a legacy HDF5 file needs it to find each layer's weights)",
                ));
            }
        }
        Ok(WeightSource::Keras3(weight_groups(h5, specs, sequential)))
    }

    /// The layer of `spec` with its weights: a Dense, Conv1D or Embedding gets its kernel (and
    /// bias), a normalization its statistics; any other layer must have no variables.
    pub(super) fn layer(
        &self,
        h5: &hdf5::File<'_>,
        spec: &Spec,
    ) -> Res<(Layer, Option<DenseWeights>)> {
        let here = |f: Fault| f.within(self.place(&spec.name)).at(&spec.name, &spec.class);
        let vars = self.vars(h5, &spec.name).map_err(here)?;
        let mut layer = spec.layer.clone();
        let weights = match (&spec.layer, vars) {
            (Layer::Embedding(_), Some(v)) => {
                let v = variables(v, &["embeddings"]).map_err(here)?;
                Some(DenseWeights {
                    kernel: v.into_iter().next().map(|d| d.data).unwrap_or_default(),
                    bias: None,
                })
            }
            (
                Layer::BatchNormalization(_)
                | Layer::LayerNormalization(_)
                | Layer::Normalization(_),
                v,
            ) => {
                let v =
                    v.ok_or_else(|| here(Fault::invalid("no weights for a normalization layer")))?;
                layer = norm_weights(v, &spec.layer).map_err(here)?;
                None
            }
            // A depthwise kernel (held by the layer), then the pointwise kernel and bias.
            (Layer::SeparableConv2D(s), Some(v)) => {
                let mut names = vec!["depthwise_kernel", "pointwise_kernel"];
                if s.use_bias {
                    names.push("bias");
                }
                let mut v = variables(v, &names).map_err(here)?.into_iter();
                let depthwise_kernel = v.next().map(|d| d.data).unwrap_or_default();
                layer = Layer::SeparableConv2D(crate::model::SeparableConv2DConfig {
                    depthwise_kernel,
                    ..s.clone()
                });
                Some(dense_weights(v.collect(), s.use_bias).map_err(here)?)
            }
            // Each direction's cell: kernel, recurrent kernel (and bias).
            (Layer::Recurrent(r), _) => {
                let subs: &[&str] = match r.directions.len() {
                    2 => &["forward_layer/cell", "backward_layer/cell"],
                    _ => &["cell"],
                };
                let vars = self.sub_vars(h5, spec, subs).map_err(here)?;
                let (config, weights) = recurrent_weights(r, vars).map_err(here)?;
                layer = Layer::Recurrent(config);
                Some(weights)
            }
            // The wrapped Dense of a `TimeDistributed`, in its own group (Keras 3).
            (l, _) if spec.class == "TimeDistributed" => {
                let v = self.sub_vars(h5, spec, &["layer"]).map_err(here)?;
                let use_bias = l.weight_dims(&[]).is_some_and(|d| d.2);
                Some(dense_weights(v, use_bias).map_err(here)?)
            }
            // A kernel (and a bias): Dense, Conv1D, Conv2D.
            (l, Some(v)) if let Some((_, _, use_bias)) = l.weight_dims(&[]) => {
                Some(dense_weights(v, use_bias).map_err(here)?)
            }
            (l, None) if l.weight_dims(&[]).is_some() => {
                return Err(Fault::invalid("no weights found").at(&spec.name, &spec.class));
            }
            (_, Some(v)) if !v.is_empty() => {
                return Err(here(Fault::invalid(format!(
                    "{} variables; sinter expects none",
                    v.len()
                ))));
            }
            (_, _) => None,
        };
        Ok((layer, weights))
    }

    /// The variables of a layer made of sub-layers (`MultiHeadAttention`): Keras 3 keeps
    /// each in `<group>/<sub>/vars`, the legacy layout all of them, in the same order, in the
    /// layer's `weight_names`.
    pub(super) fn sub_vars(
        &self,
        h5: &hdf5::File<'_>,
        spec: &Spec,
        subs: &[&str],
    ) -> Res<Vec<hdf5::Dataset>> {
        let here = |f: Fault| f.within(self.place(&spec.name));
        match self {
            WeightSource::Keras3(groups) => {
                let group = groups
                    .get(spec.name.as_str())
                    .ok_or_else(|| Fault::invalid("no weights found"))?;
                let mut all = Vec::new();
                for sub in subs {
                    let vars = format!("{group}/{sub}/vars");
                    let count = h5.members(&vars).unwrap_or_default().len();
                    for i in 0..count {
                        let d = h5
                            .dataset(&format!("{vars}/{i}"))
                            .map_err(|m| here(Fault::malformed(m)))?
                            .ok_or_else(|| {
                                here(Fault::invalid(format!("{sub}/vars/{i} is missing")))
                            })?;
                        all.push(d);
                    }
                }
                Ok(all)
            }
            WeightSource::Legacy { .. } => self
                .vars(h5, &spec.name)
                .map_err(here)?
                .ok_or_else(|| Fault::invalid("no weights found")),
        }
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
    fn vars(&self, h5: &hdf5::File<'_>, name: &str) -> Res<Option<Vec<hdf5::Dataset>>> {
        let read = |path: String, missing: String| {
            h5.dataset(&path)
                .map_err(Fault::malformed)?
                .ok_or_else(|| Fault::invalid(missing))
        };
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
                    .map(|i| read(format!("{group}/vars/{i}"), format!("vars/{i} is missing")))
                    .collect::<Res<Vec<_>>>()
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
                let names = names_attr(h5, &group, "weight_names")
                    .map_err(Fault::malformed)?
                    .unwrap_or_default();
                names
                    .iter()
                    .map(|w| read(format!("{group}/{w}"), format!("weight {w:?} is missing")))
                    .collect::<Res<Vec<_>>>()
                    .map(Some)
            }
        }
    }
}

/// A Keras 2 name-list attribute (`layer_names`, `weight_names`): one attribute, or, when the
/// list is over 64 KB, the chunks `NAME0`, `NAME1`, ... that Keras 2 writes instead.
fn names_attr(h5: &hdf5::File<'_>, path: &str, name: &str) -> Result<Option<Vec<String>>, String> {
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

/// Layer name -> its weights group (`layers/dense_1`): by the `name` attribute Keras puts on each
/// `vars` group, or else by Keras's own naming (class in snake case, numbered in layer order).
fn weight_groups<'s>(
    h5: &hdf5::File<'_>,
    specs: &'s [Spec],
    sequential: bool,
) -> HashMap<&'s str, String> {
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
    groups
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
fn dense_weights(vars: Vec<hdf5::Dataset>, use_bias: bool) -> Res<DenseWeights> {
    let expected = if use_bias { 2 } else { 1 };
    if vars.len() != expected {
        return Err(Fault::invalid(format!(
            "{} variables, expected {expected} (kernel{})",
            vars.len(),
            if use_bias { ", bias" } else { "" }
        )));
    }
    let mut vars = vars.into_iter();
    let mut get = || {
        vars.next()
            .ok_or_else(|| Fault::invalid("a variable is missing"))
    };
    let kernel = get()?;
    let units = match kernel.shape.as_slice() {
        [_, units] | [_, _, units] | [_, _, _, units] => *units,
        s => {
            return Err(Fault::invalid(format!(
                "kernel has shape {s:?}, expected [in, units], [kernel_size, in, filters] or \
                 [kernel_h, kernel_w, in, filters]"
            )));
        }
    };
    // A 4-D kernel's bias: per filter (`Conv2D`, `[kh, kw, C, F]`), per output channel of a
    // depthwise kernel (`[kh, kw, C, m]`: C * m), or per filter of a transposed one
    // (`[kh, kw, F, C]`). The layer's `weight_dims` check which, once the input is known.
    let outputs: &[usize] = match kernel.shape.as_slice() {
        &[_, _, c, m] => &[c.saturating_mul(m), c],
        _ => &[],
    };
    let bias = if use_bias {
        let b = get()?;
        if b.shape != [units] && !outputs.iter().any(|&n| b.shape == [n]) {
            return Err(Fault::invalid(format!(
                "bias has shape {:?}, expected [{units}] to match the kernel {:?}",
                b.shape, kernel.shape
            )));
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

/// A layer's variables, checked to be as many as the `names` Keras writes for it.
fn variables(vars: Vec<hdf5::Dataset>, names: &[&str]) -> Res<Vec<hdf5::Dataset>> {
    if vars.len() != names.len() {
        return Err(Fault::invalid(format!(
            "{} variables, expected {} ({})",
            vars.len(),
            names.len(),
            names.join(", ")
        )));
    }
    Ok(vars)
}

/// A recurrent layer's weights, `kernel, recurrent_kernel[, bias]` per direction: the
/// recurrent kernels (and a GRU's recurrent bias, the second row of its `[2, 3 * units]`
/// bias) into the layer, the input kernels side by side (and their biases) into the node's.
fn recurrent_weights(
    r: &RecurrentConfig,
    vars: Vec<hdf5::Dataset>,
) -> Res<(RecurrentConfig, DenseWeights)> {
    let per = if r.use_bias { 3 } else { 2 };
    let dirs = r.directions.len();
    if vars.len() != per * dirs {
        return Err(Fault::invalid(format!(
            "{} variables, expected {} (kernel, recurrent_kernel{} per direction)",
            vars.len(),
            per * dirs,
            if r.use_bias { ", bias" } else { "" }
        )));
    }
    let (h, gh) = (r.units, r.cell.gates() * r.units);
    let split_bias = matches!(r.cell, Cell::Gru { reset_after: true });
    let mut config = r.clone();
    let mut kernels = Vec::with_capacity(dirs);
    let mut bias = r.use_bias.then(Vec::new);
    for (d, v) in vars.chunks(per).enumerate() {
        let shape = |i: usize, want: &[usize], what: &str| -> Res<()> {
            match v[i].shape.as_slice() == want {
                true => Ok(()),
                false => Err(Fault::invalid(format!(
                    "{what} has shape {:?}, expected {want:?}",
                    v[i].shape
                ))),
            }
        };
        let features = v[0].shape.first().copied().unwrap_or(0);
        shape(0, &[features, gh], "kernel")?;
        shape(1, &[h, gh], "recurrent_kernel")?;
        kernels.push((features, &v[0].data));
        let dir = &mut config.directions[d];
        dir.recurrent_kernel = v[1].data.clone();
        if let Some(bias) = &mut bias {
            match split_bias {
                true => {
                    shape(2, &[2, gh], "bias")?;
                    bias.extend_from_slice(&v[2].data[..gh]);
                    dir.recurrent_bias = Some(v[2].data[gh..].to_vec());
                }
                false => {
                    shape(2, &[gh], "bias")?;
                    bias.extend_from_slice(&v[2].data);
                }
            }
        }
    }
    let features = kernels[0].0;
    if kernels.iter().any(|k| k.0 != features) {
        return Err(Fault::invalid(
            "the two directions' kernels read different widths",
        ));
    }
    let mut kernel = Vec::with_capacity(features * gh * dirs);
    for row in 0..features {
        for (_, k) in &kernels {
            kernel.extend_from_slice(&k[row * gh..][..gh]);
        }
    }
    Ok((config, DenseWeights { kernel, bias }))
}

/// A normalization layer with its statistics read from the weights (the layer from the
/// config holds only its options). Shapes are checked against the layer's input later.
fn norm_weights(vars: Vec<hdf5::Dataset>, layer: &Layer) -> Res<Layer> {
    let flat = |d: &hdf5::Dataset, what: &str| -> Res<Vec<f32>> {
        // One value per channel; Normalization stores them broadcastable ([1, ch]).
        if d.shape.iter().filter(|&&x| x != 1).count() > 1 {
            return Err(Fault::invalid(format!(
                "{what} has shape {:?}, expected [channels]",
                d.shape
            )));
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
        other => {
            return Err(Fault::invalid(format!(
                "{} has no statistics",
                other.type_name()
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::snake_case;

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
