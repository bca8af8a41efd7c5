//! Keras layer classes: one table line per class name, each pointing at the function that reads
//! that class's config into a [`Layer`]. Adding a class is one function (or a closure) and one
//! line in [`CLASSES`]; the config readers every class shares live on [`Config`].

use super::config::{Spec, batch_shape, str_field};
use super::{Fault, Res};
use crate::kernels::Activation;
use crate::model::{
    AveragePooling1DConfig, ConcatenateConfig, Conv1DConfig, Conv2DConfig, Conv2DTransposeConfig,
    Coordinates, DenseConfig, DepthwiseConv2DConfig, DropoutConfig, EmbeddingConfig,
    GlobalPooling2D, MaxPooling1DConfig, NormalizationConfig, PermuteConfig, Pooling2D, Resample,
    RescalingConfig, ReshapeConfig, SeparableConv2DConfig,
};
use crate::model::{
    Cell, Direction, MaskingConfig, MergeMode, RecurrentConfig, RepeatVectorConfig, Returns,
};
use crate::model::{ChannelNorm, DType, Layer, Merge, Padding, RowNorm, TrainingOnly};
use serde_json::Value;

/// Reads one class's config. The [`Spec`] arrives with its name and class set; a class may also
/// set its input shape and dtype (`InputLayer`) or `mask_zero` (`Embedding`).
type ClassFn = fn(&Config<'_>, &mut Spec) -> Res<Layer>;

/// Every Keras class sinter reads, by its `class_name`.
const CLASSES: &[(&str, ClassFn)] = &[
    ("InputLayer", input_layer),
    ("Dense", dense),
    ("EinsumDense", einsum_dense),
    ("Activation", |c, _| {
        Ok(Layer::Activation(c.activation("activation")?))
    }),
    ("ReLU", relu),
    ("LeakyReLU", |c, _| {
        let negative_slope = c.f32_or("negative_slope", c.f32_or("alpha", 0.3)?)?;
        Ok(Layer::Activation(Activation::LeakyRelu { negative_slope }))
    }),
    ("ELU", |c, _| {
        let alpha = c.f32_or("alpha", 1.0)?;
        Ok(Layer::Activation(Activation::Elu { alpha }))
    }),
    ("Softmax", softmax),
    ("Dropout", |c, _| {
        Ok(Layer::Dropout(DropoutConfig {
            rate: c.f32_or("rate", 0.0)?,
        }))
    }),
    // Noise and regularization layers act only in training: at inference they pass x through.
    ("GaussianNoise", training_only),
    ("GaussianDropout", training_only),
    ("AlphaDropout", training_only),
    ("SpatialDropout1D", training_only),
    ("SpatialDropout2D", training_only),
    ("ActivityRegularization", training_only),
    ("Identity", |_, _| Ok(Layer::Identity)),
    ("Flatten", |c, _| {
        c.channels_last()?;
        Ok(Layer::Flatten)
    }),
    ("Reshape", |c, _| {
        let target_shape = c.int_list("target_shape", |d| {
            d.as_i64().and_then(|d| isize::try_from(d).ok())
        })?;
        Ok(Layer::Reshape(ReshapeConfig { target_shape }))
    }),
    ("Permute", |c, _| {
        let dims = c.int_list("dims", |d| d.as_u64().and_then(|d| usize::try_from(d).ok()))?;
        Ok(Layer::Permute(PermuteConfig { dims }))
    }),
    ("Conv1D", conv1d),
    ("MaxPooling1D", |c, _| pooling(c, true)),
    ("AveragePooling1D", |c, _| pooling(c, false)),
    ("GlobalMaxPooling1D", |c, _| global_pooling(c, true)),
    ("GlobalAveragePooling1D", |c, _| global_pooling(c, false)),
    ("Conv2D", conv2d),
    ("Conv2DTranspose", |c, _| {
        c.channels_last()?;
        if c.get("output_padding").is_some() {
            return Err(c.unsupported("output_padding is not supported"));
        }
        if c.pair_or("dilation_rate", (1, 1))? != (1, 1) {
            return Err(c.unsupported("dilation_rate other than 1 is not supported"));
        }
        let kernel_size = c.pair_or("kernel_size", (0, 0))?;
        if kernel_size.0 == 0 {
            return Err(c.invalid("kernel_size is missing"));
        }
        Ok(Layer::Conv2DTranspose(Conv2DTransposeConfig {
            filters: c.positive("filters")?,
            kernel_size,
            strides: c.pair_or("strides", (1, 1))?,
            padding: (c.padding()?, c.padding()?),
            activation: c.activation("activation")?,
            use_bias: c.get("use_bias").and_then(Value::as_bool).unwrap_or(true),
        }))
    }),
    ("DepthwiseConv2D", |c, _| {
        Ok(Layer::DepthwiseConv2D(depthwise(c)?))
    }),
    ("SeparableConv2D", |c, _| {
        let depthwise = DepthwiseConv2DConfig {
            activation: Activation::Linear,
            use_bias: false,
            ..depthwise(c)?
        };
        Ok(Layer::SeparableConv2D(SeparableConv2DConfig {
            depthwise,
            depthwise_kernel: Vec::new(),
            filters: c.positive("filters")?,
            activation: c.activation("activation")?,
            use_bias: c.get("use_bias").and_then(Value::as_bool).unwrap_or(true),
        }))
    }),
    ("ZeroPadding2D", |c, _| {
        c.channels_last()?;
        let (rows, cols) = c.borders("padding", 1)?;
        Ok(Layer::Resample(Resample::ZeroPadding2D { rows, cols }))
    }),
    ("Cropping2D", |c, _| {
        c.channels_last()?;
        let (rows, cols) = c.borders("cropping", 0)?;
        Ok(Layer::Resample(Resample::Cropping2D { rows, cols }))
    }),
    ("UpSampling2D", |c, _| {
        c.channels_last()?;
        let size = c.pair_or("size", (2, 2))?;
        match c.get("interpolation").and_then(Value::as_str) {
            None | Some("nearest") => Ok(Layer::Resample(Resample::UpSampling2D { size })),
            // TensorFlow 2's `tf.image.resize`: half-pixel centers.
            Some("bilinear") => Ok(Layer::Resample(Resample::Bilinear {
                size,
                coords: Coordinates::HalfPixel,
            })),
            Some(other) => Err(c.unsupported(format!(
                "interpolation {other:?}: only \"nearest\" and \"bilinear\" are supported"
            ))),
        }
    }),
    ("MaxPooling2D", |c, _| {
        Ok(Layer::MaxPooling2D(pooling2d(c)?))
    }),
    ("AveragePooling2D", |c, _| {
        Ok(Layer::AveragePooling2D(pooling2d(c)?))
    }),
    ("GlobalMaxPooling2D", |c, _| {
        c.channels_last()?;
        let keepdims = c.bool_or("keepdims", false)?;
        Ok(Layer::GlobalMaxPooling2D(GlobalPooling2D { keepdims }))
    }),
    ("GlobalAveragePooling2D", |c, _| {
        c.channels_last()?;
        let keepdims = c.bool_or("keepdims", false)?;
        Ok(Layer::GlobalAveragePooling2D(GlobalPooling2D { keepdims }))
    }),
    ("Concatenate", |c, _| {
        let axis = match c.get("axis") {
            None => -1,
            Some(a) => a
                .as_i64()
                .and_then(|a| isize::try_from(a).ok())
                .ok_or_else(|| c.invalid("axis is not an integer"))?,
        };
        Ok(Layer::Concatenate(ConcatenateConfig { axis }))
    }),
    ("Add", |_, _| Ok(Layer::Merge(Merge::Add))),
    ("Subtract", |_, _| Ok(Layer::Merge(Merge::Subtract))),
    ("Multiply", |_, _| Ok(Layer::Merge(Merge::Multiply))),
    ("Average", |_, _| Ok(Layer::Merge(Merge::Average))),
    ("Maximum", |_, _| Ok(Layer::Merge(Merge::Maximum))),
    ("Minimum", |_, _| Ok(Layer::Merge(Merge::Minimum))),
    ("Rescaling", |c, _| {
        let (scale, offset) = (c.f32_or("scale", 1.0)?, c.f32_or("offset", 0.0)?);
        Ok(Layer::Rescaling(RescalingConfig { scale, offset }))
    }),
    // `ids != 0`, as Keras 3 writes an Embedding's `mask_zero` mask out, and `Any(x != v,
    // axis=-1)`, a `Masking(v)`'s: read only as the `mask` of a layer (`config::check_masks`).
    ("NotEqual", |_, _| Ok(Layer::Identity)),
    ("Any", |c, _| match c.get("axis").and_then(Value::as_i64) {
        Some(-1) => Ok(Layer::Identity),
        _ => Err(c.unsupported("Any is read only over the last axis, as a Masking's mask")),
    }),
    // Steps whose features all equal `mask_value` zeroed; the recurrent layers after it
    // run under its mask (`config::check_masks`).
    ("Masking", |c, _| {
        Ok(Layer::Masking(MaskingConfig {
            value: c.f32_or("mask_value", 0.0)?,
            mask: false,
        }))
    }),
    // Masks a merge combines (Keras 3 writes them out): read only as a layer's mask.
    ("LogicalOr", |_, _| Ok(Layer::Identity)),
    ("LogicalAnd", |_, _| Ok(Layer::Identity)),
    ("Embedding", |c, spec| {
        spec.mask_zero = c.bool_or("mask_zero", false)?;
        let input_dim = c.positive("input_dim")?;
        let output_dim = c.positive("output_dim")?;
        Ok(Layer::Embedding(EmbeddingConfig {
            input_dim,
            output_dim,
        }))
    }),
    // Statistics come from the weights file (`norm_weights`); here only the options.
    ("BatchNormalization", |c, _| {
        Ok(Layer::BatchNormalization(ChannelNorm {
            axis: c.axis()?,
            epsilon: c.f32_or("epsilon", 1e-3)?,
            gamma: c.bool_or("scale", true)?.then(Vec::new),
            beta: c.bool_or("center", true)?.then(Vec::new),
            mean: Vec::new(),
            variance: Vec::new(),
        }))
    }),
    ("LayerNormalization", layer_normalization),
    ("RMSNormalization", |c, _| {
        Ok(Layer::LayerNormalization(RowNorm {
            axis: c.axis()?,
            epsilon: c.f32_or("epsilon", 1e-6)?,
            gamma: Some(Vec::new()),
            beta: None,
            rms: true,
        }))
    }),
    ("Normalization", |c, _| {
        if c.bool_or("invert", false)? {
            return Err(c.unsupported("invert=True is not supported"));
        }
        Ok(Layer::Normalization(NormalizationConfig {
            axis: c.axis()?,
            mean: Vec::new(),
            variance: Vec::new(),
        }))
    }),
    ("MultiHeadAttention", super::mha::class),
    ("SimpleRNN", rnn),
    ("LSTM", rnn),
    ("GRU", rnn),
    ("Bidirectional", bidirectional),
    ("RepeatVector", |c, _| {
        Ok(Layer::RepeatVector(RepeatVectorConfig {
            n: c.positive("n")?,
        }))
    }),
    ("TimeDistributed", time_distributed),
    ("Functional", nested),
    ("Sequential", nested),
    ("Model", nested),
];

/// Layer `i` of a config: `{"class_name": .., "config": {..}}`.
pub(super) fn layer_spec(l: &Value, i: usize) -> Res<Spec> {
    let class =
        str_field(l, "class_name").map_err(|m| Fault::invalid(format!("layer {i}: {m}")))?;
    let config = l.get("config");
    let name = config
        .and_then(|c| c.get("name"))
        .and_then(Value::as_str)
        .or_else(|| l.get("name").and_then(Value::as_str))
        .unwrap_or_default();
    let config = config.ok_or_else(|| Fault::invalid("no \"config\"").at(name, class))?;
    let Some(&(_, read)) = CLASSES.iter().find(|(c, _)| *c == class) else {
        let known: Vec<&str> = CLASSES.iter().map(|(c, _)| *c).collect();
        return Err(Fault::unsupported(format!(
            "class {class} is not supported (sinter reads {})",
            known.join(", ")
        ))
        .at(name, class));
    };
    let mut spec = Spec {
        name: name.to_string(),
        class: class.to_string(),
        layer: Layer::Identity,
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
    };
    spec.layer = read(
        &Config {
            c: config,
            class,
            name,
        },
        &mut spec,
    )?;
    Ok(spec)
}

/// A layer's `config` object, with the readers the classes share; every fault is located at
/// the layer (its name and class).
pub(super) struct Config<'a> {
    c: &'a Value,
    class: &'a str,
    name: &'a str,
}

impl<'a> Config<'a> {
    /// A value Keras itself would not write here (missing, of the wrong type, out of range).
    pub(super) fn invalid(&self, msg: impl std::fmt::Display) -> Fault {
        Fault::invalid(msg.to_string()).at(self.name, self.class)
    }

    /// A value Keras accepts but sinter does not run.
    pub(super) fn unsupported(&self, msg: impl std::fmt::Display) -> Fault {
        Fault::unsupported(msg.to_string()).at(self.name, self.class)
    }

    /// The option `key`, `None` when missing or null.
    pub(super) fn get(&self, key: &str) -> Option<&Value> {
        self.c.get(key).filter(|v| !v.is_null())
    }

    pub(super) fn f32_or(&self, key: &str, default: f32) -> Res<f32> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .map(|x| x as f32)
                .ok_or_else(|| self.invalid(format!("{key} is not a number"))),
        }
    }

    pub(super) fn bool_or(&self, key: &str, default: bool) -> Res<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Bool(v)) => Ok(*v),
            Some(v) => Err(self.invalid(format!("{key} {v} is not true or false"))),
        }
    }

    /// A normalization's axis: -1, a number, or a one-entry list.
    fn axis(&self) -> Res<isize> {
        let one = |v: &Value| v.as_i64().and_then(|a| isize::try_from(a).ok());
        match self.get("axis") {
            None => Ok(-1),
            Some(Value::Array(a)) if a.len() == 1 && one(&a[0]).is_some() => {
                Ok(one(&a[0]).unwrap_or(-1))
            }
            Some(v) if one(v).is_some() => Ok(one(v).unwrap_or(-1)),
            Some(v) => Err(self.unsupported(format!(
                "axis {v}: only a single axis (the last) is supported"
            ))),
        }
    }

    /// A positive integer option that Keras may write as `3` or `[3]`.
    pub(super) fn positive(&self, key: &str) -> Res<usize> {
        match self.positive_or(key, 0)? {
            0 => Err(self.invalid(format!("{key} is missing"))),
            v => Ok(v),
        }
    }

    /// Like [`Config::positive`], with a default for a missing or null option.
    fn positive_or(&self, key: &str, default: usize) -> Res<usize> {
        let v = match self.get(key) {
            None => return Ok(default),
            Some(Value::Array(a)) => match a.as_slice() {
                [v] => v,
                _ => return Err(self.invalid(format!("{key} {a:?}: expected one value (1-D)"))),
            },
            Some(v) => v,
        };
        v.as_u64()
            .and_then(|v| usize::try_from(v).ok())
            .filter(|&v| v > 0 && v <= 1 << 24)
            .ok_or_else(|| self.invalid(format!("{key} {v} is not a positive integer")))
    }

    /// A pair of positive integers that Keras may write as `3` or `[3, 3]`.
    fn pair_or(&self, key: &str, default: (usize, usize)) -> Res<(usize, usize)> {
        let one = |v: &Value| {
            v.as_u64()
                .and_then(|v| usize::try_from(v).ok())
                .filter(|&v| v > 0 && v <= 1 << 24)
        };
        let bad = || self.invalid(format!("{key}: expected a positive integer or two"));
        match self.get(key) {
            None => Ok(default),
            Some(Value::Array(a)) => match a.as_slice() {
                [h, w] => Ok((one(h).ok_or_else(bad)?, one(w).ok_or_else(bad)?)),
                _ => Err(bad()),
            },
            Some(v) => one(v).map(|v| (v, v)).ok_or_else(bad),
        }
    }

    /// Borders as Keras writes them: `n`, `(rows, cols)` or `((top, bottom), (left, right))`
    /// (each at most 2^24; `0` allowed).
    fn borders(&self, key: &str, default: usize) -> Res<((usize, usize), (usize, usize))> {
        let one = |v: &Value| {
            v.as_u64()
                .and_then(|v| usize::try_from(v).ok())
                .filter(|&v| v <= 1 << 24)
        };
        let side = |v: &Value| match v {
            Value::Array(a) => match a.as_slice() {
                [a, b] => Some((one(a)?, one(b)?)),
                _ => None,
            },
            v => one(v).map(|n| (n, n)),
        };
        let bad = || {
            self.invalid(format!(
                "{key}: expected n, (rows, cols) or ((top, bottom), (left, right))"
            ))
        };
        match self.get(key) {
            None => Ok(((default, default), (default, default))),
            Some(Value::Array(a)) => match a.as_slice() {
                [r, c] => Ok((side(r).ok_or_else(bad)?, side(c).ok_or_else(bad)?)),
                _ => Err(bad()),
            },
            Some(v) => one(v).map(|n| ((n, n), (n, n))).ok_or_else(bad),
        }
    }

    /// A list of at most 32 integers (a shape or an axis order), each converted by `int`.
    fn int_list<T>(&self, key: &str, int: impl Fn(&Value) -> Option<T>) -> Res<Vec<T>> {
        self.get(key)
            .and_then(Value::as_array)
            .filter(|a| a.len() <= 32)
            .ok_or_else(|| self.invalid(format!("{key} is not a list of at most 32 entries")))?
            .iter()
            .map(int)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| self.invalid(format!("{key} has an entry that is not a valid integer")))
    }

    fn padding(&self) -> Res<Padding> {
        self.get("padding")
            .and_then(Value::as_str)
            .unwrap_or("valid")
            .parse()
            .map_err(|e| self.invalid(e))
    }

    fn channels_last(&self) -> Res<()> {
        match self.get("data_format").and_then(Value::as_str) {
            Some("channels_first") => {
                Err(self.unsupported("data_format channels_first is not supported"))
            }
            _ => Ok(()),
        }
    }

    /// The layer a wrapper (`Bidirectional`, `TimeDistributed`) holds under `key`, as
    /// `{"class_name": .., "config": {..}}`: its config, located at the wrapper.
    fn wrapped(&self, key: &str) -> Res<Option<Config<'a>>> {
        let Some(l) = self.c.get(key).filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        let class = l
            .get("class_name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let config = l
            .get("config")
            .ok_or_else(|| self.invalid(format!("{key} has no config")))?;
        Ok(Some(Config {
            c: config,
            class,
            name: self.name,
        }))
    }

    /// An activation as Keras serialises it: a name, or `{"class_name": .., "config": name}`.
    fn activation(&self, key: &str) -> Res<Activation> {
        let name = match self.get(key) {
            None => return Ok(Activation::Linear),
            Some(Value::String(s)) => s.as_str(),
            Some(Value::Object(o)) => o
                .get("config")
                .and_then(Value::as_str)
                .or_else(|| o.get("registered_name").and_then(Value::as_str))
                .or_else(|| o.get("class_name").and_then(Value::as_str))
                .ok_or_else(|| self.invalid("activation object without a name"))?,
            Some(other) => return Err(self.invalid(format!("activation {other} is not a name"))),
        };
        name.parse()
            .map_err(|e: crate::kernels::UnknownActivation| self.unsupported(e))
    }
}

fn input_layer(c: &Config<'_>, spec: &mut Spec) -> Res<Layer> {
    let s = c
        .get("batch_shape")
        .or_else(|| c.get("batch_input_shape"))
        .ok_or_else(|| c.invalid("no batch_shape"))?;
    (spec.shape, spec.seq) = batch_shape(s).map_err(|e| c.invalid(e))?;
    spec.dtype = match c.get("dtype") {
        None => DType::F32,
        Some(Value::String(t)) => match t.as_str() {
            "float32" => DType::F32,
            "int32" => DType::I32,
            "int64" => DType::I64,
            other => {
                return Err(c.unsupported(format!(
                    "dtype {other:?}: inputs are float32, int32 or int64"
                )));
            }
        },
        // A dtype policy object: the input is float.
        Some(Value::Object(o)) => match o
            .get("config")
            .and_then(|c| c.get("name"))
            .and_then(Value::as_str)
        {
            Some("float32") | None => DType::F32,
            Some(other) => {
                return Err(c.unsupported(format!("dtype policy {other:?} is not supported")));
            }
        },
        Some(other) => return Err(c.invalid(format!("dtype {other} is not a name"))),
    };
    Ok(Layer::Input)
}

fn dense(c: &Config<'_>, _: &mut Spec) -> Res<Layer> {
    Ok(Layer::Dense(DenseConfig {
        units: c
            .get("units")
            .and_then(Value::as_u64)
            .and_then(|u| usize::try_from(u).ok())
            .filter(|&u| u > 0)
            .ok_or_else(|| c.invalid("units is not a positive integer"))?,
        activation: c.activation("activation")?,
        use_bias: c.get("use_bias").and_then(Value::as_bool).unwrap_or(true),
    }))
}

/// `EinsumDense` in the equations that are a Dense layer over the last axis (`...c,cd->...d`,
/// such as `abc,cd->abd`), its bias over `d` or none.
fn einsum_dense(c: &Config<'_>, _: &mut Spec) -> Res<Layer> {
    let eq = c
        .get("equation")
        .and_then(Value::as_str)
        .ok_or_else(|| c.invalid("no equation"))?;
    let dense_form = || -> Option<char> {
        let (ins, out) = eq.split_once("->")?;
        let (x, w) = ins.split_once(',')?;
        let (x, w, out): (Vec<char>, Vec<char>, Vec<char>) = (
            x.chars().collect(),
            w.chars().collect(),
            out.chars().collect(),
        );
        let (&contracted, prefix) = x.split_last()?;
        let [wc, units] = w[..] else { return None };
        let distinct = !prefix.contains(&contracted) && !prefix.contains(&units);
        let letters = x.iter().chain(&w).all(char::is_ascii_lowercase);
        (wc == contracted
            && units != contracted
            && distinct
            && letters
            && !prefix.is_empty()
            && out.split_last() == Some((&units, prefix)))
        .then_some(units)
    };
    let Some(units_axis) = dense_form() else {
        return Err(c.unsupported(format!(
            "equation {eq:?}: EinsumDense is read in the form of a Dense layer over the last \
             axis (\"...c,cd->...d\", e.g. \"abc,cd->abd\")"
        )));
    };
    let use_bias = match c.get("bias_axes") {
        None | Some(Value::Null) => false,
        Some(Value::String(b)) if b.chars().eq([units_axis]) => true,
        Some(b) => {
            return Err(c.unsupported(format!(
                "bias_axes {b}: only the output axis {units_axis:?} (or none) is supported"
            )));
        }
    };
    if c.get("lora_rank").is_some_and(|r| !r.is_null()) {
        return Err(c.unsupported("lora_rank is not supported"));
    }
    let units = match c.get("output_shape") {
        Some(Value::Array(a)) => a.last().and_then(Value::as_u64),
        Some(v) => v.as_u64(),
        None => None,
    }
    .and_then(|u| usize::try_from(u).ok())
    .filter(|&u| u > 0)
    .ok_or_else(|| c.invalid("output_shape does not end in a positive size"))?;
    Ok(Layer::Dense(DenseConfig {
        units,
        activation: c.activation("activation")?,
        use_bias,
    }))
}

fn relu(c: &Config<'_>, _: &mut Spec) -> Res<Layer> {
    let max_value = match c.get("max_value") {
        None => None,
        Some(v) => Some(
            v.as_f64()
                .ok_or_else(|| c.invalid("max_value is not a number"))? as f32,
        ),
    };
    Ok(Layer::Activation(Activation::Relu {
        negative_slope: c.f32_or("negative_slope", 0.0)?,
        max_value,
        threshold: c.f32_or("threshold", 0.0)?,
    }))
}

/// A layer that acts only in training: the identity, under its own class.
fn training_only(c: &Config<'_>, _: &mut Spec) -> Res<Layer> {
    TrainingOnly::from_class(c.class)
        .map(Layer::TrainingOnly)
        .ok_or_else(|| c.invalid("not a training-only layer"))
}

fn softmax(c: &Config<'_>, _: &mut Spec) -> Res<Layer> {
    match c.get("axis") {
        None => {}
        Some(a) if a.as_i64() == Some(-1) => {}
        Some(a) => return Err(c.unsupported(format!("axis {a}: only the last axis is supported"))),
    }
    Ok(Layer::Activation(Activation::Softmax))
}

fn conv1d(c: &Config<'_>, _: &mut Spec) -> Res<Layer> {
    c.channels_last()?;
    if c.get("groups")
        .and_then(Value::as_u64)
        .is_some_and(|g| g != 1)
    {
        return Err(c.unsupported("grouped convolutions are not supported"));
    }
    Ok(Layer::Conv1D(Conv1DConfig {
        filters: c.positive("filters")?,
        kernel_size: c.positive("kernel_size")?,
        strides: c.positive_or("strides", 1)?,
        padding: c.padding()?,
        dilation_rate: c.positive_or("dilation_rate", 1)?,
        activation: c.activation("activation")?,
        use_bias: c.get("use_bias").and_then(Value::as_bool).unwrap_or(true),
    }))
}

/// A `DepthwiseConv2D`'s options (also the depthwise half of a `SeparableConv2D`).
fn depthwise(c: &Config<'_>) -> Res<DepthwiseConv2DConfig> {
    c.channels_last()?;
    let kernel_size = c.pair_or("kernel_size", (0, 0))?;
    if kernel_size.0 == 0 {
        return Err(c.invalid("kernel_size is missing"));
    }
    Ok(DepthwiseConv2DConfig {
        kernel_size,
        strides: c.pair_or("strides", (1, 1))?,
        padding: (c.padding()?, c.padding()?),
        dilation_rate: c.pair_or("dilation_rate", (1, 1))?,
        depth_multiplier: c.positive_or("depth_multiplier", 1)?,
        activation: c.activation("activation")?,
        use_bias: c.get("use_bias").and_then(Value::as_bool).unwrap_or(true),
    })
}

fn conv2d(c: &Config<'_>, _: &mut Spec) -> Res<Layer> {
    c.channels_last()?;
    let kernel_size = c.pair_or("kernel_size", (0, 0))?;
    if kernel_size.0 == 0 {
        return Err(c.invalid("kernel_size is missing"));
    }
    Ok(Layer::Conv2D(Conv2DConfig {
        filters: c.positive("filters")?,
        kernel_size,
        strides: c.pair_or("strides", (1, 1))?,
        padding: (c.padding()?, c.padding()?),
        dilation_rate: c.pair_or("dilation_rate", (1, 1))?,
        activation: c.activation("activation")?,
        use_bias: c.get("use_bias").and_then(Value::as_bool).unwrap_or(true),
        groups: c.positive_or("groups", 1)?,
    }))
}

fn pooling2d<const MAX: bool>(c: &Config<'_>) -> Res<Pooling2D<MAX>> {
    c.channels_last()?;
    let pool_size = c.pair_or("pool_size", (2, 2))?;
    Ok(Pooling2D {
        pool_size,
        strides: c.pair_or("strides", pool_size)?,
        padding: (c.padding()?, c.padding()?),
    })
}

fn pooling(c: &Config<'_>, max: bool) -> Res<Layer> {
    c.channels_last()?;
    let pool_size = c.positive_or("pool_size", 2)?;
    let strides = c.positive_or("strides", pool_size)?;
    let padding = c.padding()?;
    Ok(if max {
        Layer::MaxPooling1D(MaxPooling1DConfig {
            pool_size,
            strides,
            padding,
        })
    } else {
        Layer::AveragePooling1D(AveragePooling1DConfig {
            pool_size,
            strides,
            padding,
        })
    })
}

fn global_pooling(c: &Config<'_>, max: bool) -> Res<Layer> {
    c.channels_last()?;
    if c.get("keepdims").and_then(Value::as_bool) == Some(true) {
        return Err(c.unsupported("keepdims=True is not supported"));
    }
    Ok(if max {
        Layer::GlobalMaxPooling1D
    } else {
        Layer::GlobalAveragePooling1D
    })
}

fn layer_normalization(c: &Config<'_>, _: &mut Spec) -> Res<Layer> {
    if c.bool_or("rms_scaling", false)? {
        return Err(
            c.unsupported("rms_scaling=True (deprecated) is not supported: use RMSNormalization")
        );
    }
    Ok(Layer::LayerNormalization(RowNorm {
        axis: c.axis()?,
        epsilon: c.f32_or("epsilon", 1e-3)?,
        gamma: c.bool_or("scale", true)?.then(Vec::new),
        beta: c.bool_or("center", true)?.then(Vec::new),
        rms: false,
    }))
}

/// `TimeDistributed(Dense)`: a Dense over the last axis of `[steps, features]` is already the
/// same Dense at every step (its weights are the wrapped layer's, `weights::WeightSource`).
fn time_distributed(c: &Config<'_>, spec: &mut Spec) -> Res<Layer> {
    let inner = c
        .wrapped("layer")?
        .ok_or_else(|| c.invalid("no wrapped layer"))?;
    match inner.class {
        "Dense" => dense(&inner, spec),
        other => Err(c.unsupported(format!(
            "TimeDistributed({other}): only TimeDistributed(Dense) is supported"
        ))),
    }
}

/// A `SimpleRNN`, `LSTM` or `GRU` layer; with `return_state`, its final states are its
/// outputs after the first (`config::Ref::tensor`).
fn rnn(c: &Config<'_>, spec: &mut Spec) -> Res<Layer> {
    spec.return_state = c.bool_or("return_state", false)?;
    Ok(Layer::Recurrent(recurrent(c, false)?))
}

/// A `SimpleRNN`, `LSTM` or `GRU`, its weights still to come (`weights::recurrent`).
/// `wrapped`: inside a `Bidirectional`, which decides what a masked step outputs.
fn recurrent(c: &Config<'_>, wrapped: bool) -> Res<RecurrentConfig> {
    let cell = match c.class {
        "SimpleRNN" => Cell::Simple,
        "LSTM" => Cell::Lstm,
        "GRU" => Cell::Gru {
            reset_after: c.bool_or("reset_after", true)?,
        },
        other => return Err(c.invalid(format!("{other} is not a recurrent layer"))),
    };
    for (key, what) in [
        ("stateful", "stateful=True (a state kept between calls)"),
        ("time_major", "time_major=True"),
    ] {
        if c.bool_or(key, false)? {
            return Err(c.unsupported(format!("{what} is not supported")));
        }
    }
    if !wrapped && c.bool_or("zero_output_for_mask", false)? {
        return Err(c.unsupported("zero_output_for_mask=True is not supported"));
    }
    let go_backwards = c.bool_or("go_backwards", false)?;
    let activation = |key, default| match c.get(key) {
        None => Ok(default),
        Some(_) => c.activation(key),
    };
    Ok(RecurrentConfig {
        cell,
        units: c.positive("units")?,
        activation: activation("activation", Activation::Tanh)?,
        recurrent_activation: activation("recurrent_activation", Activation::Sigmoid)?,
        use_bias: c.bool_or("use_bias", true)?,
        returns: match c.bool_or("return_sequences", false)? {
            true => Returns::Sequences,
            false => Returns::Last,
        },
        run_order: go_backwards,
        directions: vec![Direction {
            reverse: go_backwards,
            recurrent_kernel: Vec::new(),
            recurrent_bias: None,
            peepholes: None,
        }],
        merge: MergeMode::Concat,
        mask: None,
        // Set from the call's `initial_state` (`io::keras::build`).
        initial_state: false,
    })
}

/// A `Bidirectional` wrapper: its layer forward, and the same layer (or its `backward_layer`)
/// over the reversed steps, its outputs put back in step order, the two joined by
/// `merge_mode`.
fn bidirectional(c: &Config<'_>, spec: &mut Spec) -> Res<Layer> {
    let inner = |key: &str| -> Res<Option<RecurrentConfig>> {
        c.wrapped(key)?.map(|l| recurrent(&l, true)).transpose()
    };
    if let Some(layer) = c.wrapped("layer")? {
        spec.return_state = layer.bool_or("return_state", false)?;
    }
    let forward = inner("layer")?.ok_or_else(|| c.invalid("no wrapped layer"))?;
    let backward = inner("backward_layer")?;
    if forward.directions[0].reverse {
        return Err(c.unsupported("a wrapped layer with go_backwards=True is not supported"));
    }
    if let Some(b) = &backward {
        let same = RecurrentConfig {
            run_order: true,
            directions: b.directions.clone(),
            ..forward.clone()
        };
        if *b != same || !b.directions[0].reverse {
            return Err(c.unsupported(
                "a backward_layer other than the wrapped layer with go_backwards=True",
            ));
        }
    }
    // Missing: Keras's default; null: two outputs.
    let merge = match c.c.get("merge_mode").map(|m| m.as_str()) {
        None | Some(Some("concat")) => MergeMode::Concat,
        Some(Some("sum")) => MergeMode::Sum,
        Some(Some("ave")) => MergeMode::Average,
        Some(Some("mul")) => MergeMode::Multiply,
        Some(Some(other)) => {
            return Err(c.invalid(format!("merge_mode {other:?}")));
        }
        Some(None) => {
            // Two outputs: the concatenation's halves (`io::keras::recurrent_nodes`).
            spec.split_directions = true;
            MergeMode::Concat
        }
    };
    let reversed = Direction {
        reverse: true,
        ..forward.directions[0].clone()
    };
    let mut directions = forward.directions.clone();
    directions.push(reversed);
    Ok(Layer::Recurrent(RecurrentConfig {
        directions,
        merge,
        ..forward
    }))
}

fn nested(c: &Config<'_>, _: &mut Spec) -> Res<Layer> {
    Err(c.unsupported("nested models are not supported"))
}

#[cfg(test)]
mod tests {
    use super::CLASSES;

    #[test]
    fn every_class_has_one_line() {
        let mut names: Vec<&str> = CLASSES.iter().map(|(c, _)| *c).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "a class listed twice");
    }
}
