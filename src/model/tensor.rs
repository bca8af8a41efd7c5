//! Symbolic tensors: what calling a layer returns, and the weights a layer is given.

use super::*;

/// Weights of a Dense layer: `kernel` is `K x units`, row-major (Keras layout), `bias` `units`.
#[derive(Clone, Debug, PartialEq)]
pub struct DenseWeights {
    /// `K x units`, row-major.
    pub kernel: Vec<f32>,
    /// `units` values, if the layer has a bias.
    pub bias: Option<Vec<f32>>,
}

/// A symbolic tensor: the output of a layer, with its shape (without the batch axis).
#[derive(Clone, Debug)]
pub struct Tensor(pub(super) Rc<TensorNode>);

#[derive(Debug)]
pub(super) struct TensorNode {
    pub(super) id: u64,
    pub(super) layer: Layer,
    pub(super) name: Option<String>,
    pub(super) inputs: Vec<Tensor>,
    pub(super) shape: Vec<usize>,
    pub(super) weights: Option<DenseWeights>,
    pub(super) dtype: DType,
}

impl Tensor {
    pub(super) fn new(
        layer: Layer,
        name: Option<String>,
        inputs: Vec<Tensor>,
        weights: Option<DenseWeights>,
    ) -> Result<Tensor> {
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
        let label = name
            .clone()
            .unwrap_or_else(|| layer.type_name().to_string());
        let dtypes: Vec<DType> = inputs.iter().map(|t| t.0.dtype).collect();
        check_dtypes(&label, &layer, &dtypes)?;
        let shape = layer.output_shape(&shapes).map_err(|msg| Error::Shape {
            layer: label.clone(),
            msg,
        })?;
        match (
            layer.weight_dims(shapes.first().copied().unwrap_or(&[])),
            &weights,
        ) {
            (Some(dims), Some(w)) => check_dense_weights(&label, dims, w)?,
            (None, Some(_)) => {
                return Err(Error::Model(format!("layer {label:?} has no weights")));
            }
            _ => {}
        }
        let dtype = layer.output_dtype_of(inputs.first().map(|t| t.0.dtype));
        Ok(Tensor(Rc::new(TensorNode {
            id: next_id(),
            layer,
            name,
            inputs,
            shape,
            dtype,
            weights,
        })))
    }

    /// Shape without the batch axis.
    pub fn shape(&self) -> &[usize] {
        &self.0.shape
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.0.dtype
    }
}

/// Integer values are read only by an Embedding (token ids) and by views of integer labels
/// (a `Reshape`/`Flatten` of an ArgMax, as skl2onnx writes a classifier's label).
pub(super) fn check_dtypes(label: &str, layer: &Layer, dtypes: &[DType]) -> Result<()> {
    if layer.op().reads(dtypes) {
        return Ok(());
    }
    match dtypes.iter().find(|&&d| d != DType::F32) {
        Some(d) => Err(Error::Shape {
            layer: label.into(),
            msg: format!(
                "{} cannot read {d} values: only an Embedding reads integer ids",
                layer.type_name()
            ),
        }),
        None => Ok(()),
    }
}

/// One or several symbolic tensors: what [`Model::new`] takes as inputs and outputs
/// (`&x`, `&[&a, &b]`, `[&a, &b]`, `&[a, b]`, `vec![a, b]`).
pub trait Tensors {
    /// The tensors, in order.
    fn tensors(&self) -> Vec<Tensor>;
}

impl Tensors for Tensor {
    fn tensors(&self) -> Vec<Tensor> {
        vec![self.clone()]
    }
}
impl Tensors for &Tensor {
    fn tensors(&self) -> Vec<Tensor> {
        vec![(*self).clone()]
    }
}
impl Tensors for [&Tensor] {
    fn tensors(&self) -> Vec<Tensor> {
        self.iter().map(|&t| t.clone()).collect()
    }
}
impl Tensors for [Tensor] {
    fn tensors(&self) -> Vec<Tensor> {
        self.to_vec()
    }
}
impl<const N: usize> Tensors for [&Tensor; N] {
    fn tensors(&self) -> Vec<Tensor> {
        self.iter().map(|&t| t.clone()).collect()
    }
}
impl Tensors for Vec<Tensor> {
    fn tensors(&self) -> Vec<Tensor> {
        self.clone()
    }
}
impl<T: Tensors + ?Sized> Tensors for &&T {
    fn tensors(&self) -> Vec<Tensor> {
        (**self).tensors()
    }
}

/// Creation order of symbolic tensors: a topological order of any graph built from them.
pub(super) fn next_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Glorot-uniform kernel and zero bias for a layer built without weights. The size is
/// checked and reserved fallibly: `Dense(1 << 40)` is an error, not an abort.
pub(super) fn init_weights(
    layer: &str,
    (k, units, use_bias): (usize, usize, bool),
    seed: u64,
) -> Result<DenseWeights> {
    let err = |msg: String| Error::Shape {
        layer: layer.into(),
        msg,
    };
    let count = k
        .checked_mul(units)
        .filter(|n| n.checked_mul(4).is_some())
        .ok_or_else(|| err(format!("a {k} x {units} kernel overflows")))?;
    let mut kernel = Vec::new();
    kernel
        .try_reserve_exact(count)
        .map_err(|_| err(format!("cannot allocate a {k} x {units} kernel")))?;
    kernel.extend(init::glorot_uniform(k, units, 0x5eed ^ seed));
    Ok(DenseWeights {
        kernel,
        bias: use_bias.then(|| vec![0.0; units]),
    })
}

pub(super) fn check_dense_weights(
    layer: &str,
    (k, units, use_bias): (usize, usize, bool),
    w: &DenseWeights,
) -> Result<()> {
    let expected = k.checked_mul(units).ok_or_else(|| Error::Shape {
        layer: layer.into(),
        msg: "kernel size overflows".into(),
    })?;
    if w.kernel.len() != expected {
        return Err(Error::Weights {
            layer: layer.into(),
            what: "kernel",
            expected,
            got: w.kernel.len(),
        });
    }
    match (&w.bias, use_bias) {
        (Some(b), true) if b.len() != units => Err(Error::Weights {
            layer: layer.into(),
            what: "bias",
            expected: units,
            got: b.len(),
        }),
        (Some(_), false) => Err(Error::Weights {
            layer: layer.into(),
            what: "bias",
            expected: 0,
            got: units,
        }),
        (None, true) => Err(Error::Weights {
            layer: layer.into(),
            what: "bias",
            expected: units,
            got: 0,
        }),
        _ => Ok(()),
    }
}
