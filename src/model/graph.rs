//! The model: nodes in topological order, inputs and outputs, names, weights.

use super::*;

/// A layer instance in a built model.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Unique layer name.
    pub name: String,
    /// The layer and its configuration.
    pub layer: Layer,
    /// Indices of the nodes this one reads (earlier in `Model::nodes`).
    pub inputs: Vec<usize>,
    /// Output shape without the batch axis.
    pub shape: Vec<usize>,
    /// Weights: the kernel and bias of Dense and Conv1D layers, an Embedding's table.
    pub weights: Option<DenseWeights>,
    /// Element type of the node's values: integer only for inputs of token ids.
    pub dtype: DType,
}

impl Node {
    /// A node with `f32` values.
    pub fn new(
        name: impl Into<String>,
        layer: Layer,
        inputs: Vec<usize>,
        shape: Vec<usize>,
        weights: Option<DenseWeights>,
    ) -> Node {
        Node {
            name: name.into(),
            layer,
            inputs,
            shape,
            weights,
            dtype: DType::F32,
        }
    }

    /// Number of weights (Keras's count, normalization statistics included).
    pub fn count_params(&self) -> usize {
        self.weights
            .as_ref()
            .map_or(0, |w| w.kernel.len() + w.bias.as_ref().map_or(0, Vec::len))
            + self.layer.param_count()
    }
}

/// Where the batch is in a tensor as its file declares it, when it is not the first axis
/// (ONNX's time-major tensors: a recurrent op's `[T, N, F]` input, `[T, D, N, H]` output,
/// `[D, N, H]` states). The file's order is `dims[..axis]`, the batch, `dims[axis..]`.
///
/// sinter's values are sample-major whatever the file says: each sample's values in `dims`'
/// order, one sample after another. [`BatchAxis::to_samples`] and
/// [`BatchAxis::from_samples`] convert whole tensors at the edges (the CLI's `.npy` files).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchAxis {
    /// The batch's axis in the file's order (at least 1).
    pub axis: usize,
    /// The other axes, in order (their product is a sample's length).
    pub dims: Vec<usize>,
}

impl BatchAxis {
    /// The axes other than the batch, the first at `seq` positions when it is a variable
    /// sequence.
    fn dims_at(&self, seq: Option<usize>) -> Vec<usize> {
        let mut dims = self.dims.clone();
        if let (Some(s), Some(d)) = (seq, dims.first_mut()) {
            *d = s;
        }
        dims
    }

    /// `(outer, inner)`: the values before the batch axis and after it, per sample.
    fn split(&self, seq: Option<usize>) -> (usize, usize) {
        let dims = self.dims_at(seq);
        let (before, after) = dims.split_at(self.axis.min(dims.len()));
        let product = |d: &[usize]| d.iter().fold(1usize, |p, &x| p.saturating_mul(x));
        (product(before), product(after))
    }

    /// The file's shape of a tensor of `batch` samples (`seq`: the first axis's length in a
    /// run of a variable sequence).
    pub fn file_shape(&self, batch: usize, seq: Option<usize>) -> Vec<usize> {
        let mut dims = self.dims_at(seq);
        dims.insert(self.axis.min(dims.len()), batch);
        dims
    }

    /// Sample-major values of a tensor held in the file's order (`batch` samples).
    pub fn to_samples<T: Copy>(&self, file: &[T], batch: usize, seq: Option<usize>) -> Vec<T> {
        let (outer, inner) = self.split(seq);
        transpose_blocks(file, (outer, batch), inner)
    }

    /// The file's order of sample-major values (`batch` samples).
    pub fn from_samples<T: Copy>(&self, samples: &[T], batch: usize, seq: Option<usize>) -> Vec<T> {
        let (outer, inner) = self.split(seq);
        transpose_blocks(samples, (batch, outer), inner)
    }
}

/// `src` as `rows x cols` blocks of `inner` values, the blocks transposed (`cols x rows`); a
/// short `src` gives only its whole blocks, never a panic.
fn transpose_blocks<T: Copy>(src: &[T], (rows, cols): (usize, usize), inner: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(src.len());
    let inner = inner.max(1);
    // Blocks past the end of a short `src` add nothing (and block numbers only grow along
    // a column): the loops stop at the first.
    let whole = src.len() / inner;
    for c in 0..cols.min(whole) {
        for r in 0..rows {
            let block = r.saturating_mul(cols).saturating_add(c);
            if block >= whole {
                break;
            }
            out.extend_from_slice(&src[block * inner..][..inner]);
        }
    }
    out
}

/// A model: nodes in topological order, its inputs and outputs in Keras order.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    name: String,
    nodes: Vec<Node>,
    inputs: Vec<usize>,
    outputs: Vec<usize>,
    /// Name of each output (the producing layer's, or the file's output name).
    output_names: Vec<String>,
    /// Where the model came from (set by the loaders: format and producer version).
    origin: String,
    /// Per input: whether its first axis is a sequence whose length varies per run, up to
    /// the size in its shape.
    seq: Vec<bool>,
    /// Per input, then per output: where its file holds the batch, when not first.
    batch_axes: (Vec<Option<BatchAxis>>, Vec<Option<BatchAxis>>),
}

impl Model {
    /// The model from `inputs` to `outputs`, as Keras's `Model(inputs, outputs)`: one tensor
    /// (`&x`) or a list (`&[&a, &b]`) each, kept in the order given.
    /// Layers without weights get Glorot-uniform kernels (seeded by position) and zero biases.
    pub fn new(inputs: impl Tensors, outputs: impl Tensors) -> Result<Model> {
        let (inputs, outputs) = (inputs.tensors(), outputs.tensors());
        if outputs.is_empty() {
            return Err(Error::Model("a model needs at least one output".into()));
        }
        let mut seen = HashSet::new();
        let mut stack = outputs.clone();
        let mut found = Vec::new();
        while let Some(t) = stack.pop() {
            if seen.insert(t.0.id) {
                stack.extend(t.0.inputs.iter().cloned());
                found.push(t);
            }
        }
        // Given inputs the outputs do not read are still inputs of the model (Keras keeps them).
        for t in &inputs {
            if seen.insert(t.0.id) {
                found.push(t.clone());
            }
        }
        found.sort_by_key(|t| t.0.id);
        let given: HashSet<u64> = inputs.iter().map(|t| t.0.id).collect();
        if let Some(t) = inputs.iter().find(|t| t.0.layer != Layer::Input) {
            return Err(Error::Model(format!(
                "{:?} is given as an input but is the output of a {} layer",
                t.0.name.as_deref().unwrap_or(""),
                t.0.layer.type_name()
            )));
        }
        if given.len() != inputs.len() {
            return Err(Error::Model("the same input is given twice".into()));
        }
        if let Some(t) = found
            .iter()
            .find(|t| t.0.layer == Layer::Input && !given.contains(&t.0.id))
        {
            return Err(Error::Model(format!(
                "the outputs depend on an input that is not given ({:?}, shape {:?})",
                t.0.name.as_deref().unwrap_or("unnamed"),
                t.0.shape
            )));
        }
        let index: HashMap<u64, usize> =
            found.iter().enumerate().map(|(i, t)| (t.0.id, i)).collect();
        let nodes = found
            .iter()
            .map(|t| Node {
                name: t.0.name.clone().unwrap_or_default(),
                layer: t.0.layer.clone(),
                inputs: t.0.inputs.iter().map(|i| index[&i.0.id]).collect(),
                shape: t.0.shape.clone(),
                weights: t.0.weights.clone(),
                dtype: t.0.dtype,
            })
            .collect();
        let ins: Vec<usize> = inputs.iter().map(|t| index[&t.0.id]).collect();
        let outs: Vec<usize> = outputs.iter().map(|t| index[&t.0.id]).collect();
        Model::from_nodes("functional", nodes, &ins, &outs)
    }

    /// Builds a model from nodes in topological order (what file loaders produce). Empty names
    /// are filled as Keras would; shapes are re-inferred and checked; missing Dense weights are
    /// initialised.
    pub fn from_nodes(
        name: &str,
        mut nodes: Vec<Node>,
        inputs: &[usize],
        outputs: &[usize],
    ) -> Result<Model> {
        if inputs.is_empty() || outputs.is_empty() {
            return Err(Error::Model(
                "a model needs at least one input and one output".into(),
            ));
        }
        if inputs.iter().chain(outputs).any(|&i| i >= nodes.len()) {
            return Err(Error::Model("input or output index out of range".into()));
        }
        if inputs.iter().collect::<HashSet<_>>().len() != inputs.len() {
            return Err(Error::Model("the same input is given twice".into()));
        }
        assign_names(&mut nodes)?;
        for i in 0..nodes.len() {
            let node = &nodes[i];
            if node.inputs.iter().any(|&j| j >= i) {
                return Err(Error::Model(format!(
                    "layer {:?} reads a layer that comes after it (cycle or bad order)",
                    node.name
                )));
            }
            let shape = if node.layer == Layer::Input {
                if !inputs.contains(&i) {
                    return Err(Error::Model(format!(
                        "layer {:?} is an InputLayer that is not one of the model's inputs",
                        node.name
                    )));
                }
                if !node.inputs.is_empty() {
                    return Err(Error::Model(format!(
                        "input {:?} reads other layers",
                        node.name
                    )));
                }
                if node.shape.is_empty() || node.shape.contains(&0) {
                    return Err(Error::Shape {
                        layer: node.name.clone(),
                        msg: format!(
                            "input shape {:?} must be non-empty and positive",
                            node.shape
                        ),
                    });
                }
                checked_elems(&node.shape).map_err(|msg| Error::Shape {
                    layer: node.name.clone(),
                    msg,
                })?;
                node.shape.clone()
            } else {
                let shapes: Vec<&[usize]> = node
                    .inputs
                    .iter()
                    .map(|&j| nodes[j].shape.as_slice())
                    .collect();
                node.layer
                    .output_shape(&shapes)
                    .map_err(|msg| Error::Shape {
                        layer: node.name.clone(),
                        msg,
                    })?
            };
            let in_shape = node.inputs.first().map(|&j| nodes[j].shape.clone());
            if node.layer != Layer::Input {
                let dtypes: Vec<DType> = node.inputs.iter().map(|&j| nodes[j].dtype).collect();
                check_dtypes(&node.name, &node.layer, &dtypes)?;
            }
            let first = node.inputs.first().map(|&j| nodes[j].dtype);
            let node = &mut nodes[i];
            if node.layer != Layer::Input {
                node.dtype = node.layer.output_dtype_of(first);
            }
            node.shape = shape;
            if let Some(dims) = node.layer.weight_dims(&in_shape.unwrap_or_default()) {
                match &node.weights {
                    Some(w) => check_dense_weights(&node.name, dims, w)?,
                    None => node.weights = Some(init_weights(&node.name, dims, i as u64)?),
                }
            } else if node.weights.is_some() {
                return Err(Error::Model(format!(
                    "layer {:?} ({}) has no weights",
                    node.name,
                    node.layer.type_name()
                )));
            }
        }
        if let Some(&i) = inputs.iter().find(|&&i| nodes[i].layer != Layer::Input) {
            return Err(Error::Model(format!(
                "input {:?} is not an InputLayer",
                nodes[i].name
            )));
        }
        let output_names = outputs.iter().map(|&o| nodes[o].name.clone()).collect();
        Ok(Model {
            name: name.to_string(),
            nodes,
            inputs: inputs.to_vec(),
            outputs: outputs.to_vec(),
            output_names,
            origin: "built in code".into(),
            seq: vec![false; inputs.len()],
            batch_axes: (vec![None; inputs.len()], vec![None; outputs.len()]),
        })
    }

    /// Where the model came from: "built in code", or the file format and the producer's
    /// version as the file records it (e.g. "Keras 2.21.0 (tensorflow), whole-model HDF5").
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Sets [`origin`](Self::origin) (loaders do).
    pub fn set_origin(&mut self, origin: impl Into<String>) {
        self.origin = origin.into();
    }

    /// Renames the outputs (ONNX names its graph outputs apart from the nodes making them).
    pub fn set_output_names(&mut self, names: Vec<String>) -> Result<()> {
        if names.len() != self.outputs.len() {
            return Err(Error::Model(format!(
                "{} output names for {} outputs",
                names.len(),
                self.outputs.len()
            )));
        }
        if names.iter().collect::<HashSet<_>>().len() != names.len() {
            return Err(Error::Model(format!("two outputs share a name: {names:?}")));
        }
        self.output_names = names;
        Ok(())
    }

    /// The model restricted to the named outputs (in the order named), with every layer only
    /// an unrequested output needs removed. The inputs stay as they are.
    pub fn select_outputs(&self, names: &[&str]) -> Result<Model> {
        self.clone().into_outputs(names)
    }

    /// [`select_outputs`](Self::select_outputs) consuming the model: its layers and weights
    /// move into the result instead of being copied.
    pub fn into_outputs(self, names: &[&str]) -> Result<Model> {
        let mut outs = Vec::with_capacity(names.len());
        let mut out_names = Vec::with_capacity(names.len());
        for &n in names {
            let k = self.output_index(n).ok_or_else(|| {
                Error::Model(format!(
                    "no output named {n:?} (outputs: {})",
                    self.output_names.join(", ")
                ))
            })?;
            outs.push(self.outputs[k]);
            out_names.push(self.output_names[k].clone());
        }
        let mut live = vec![false; self.nodes.len()];
        for &o in &outs {
            live[o] = true;
        }
        for &i in &self.inputs {
            live[i] = true;
        }
        for i in (0..self.nodes.len()).rev() {
            if live[i] {
                for &j in &self.nodes[i].inputs {
                    live[j] = true;
                }
            }
        }
        let mut map = vec![usize::MAX; self.nodes.len()];
        let mut nodes = Vec::new();
        for (i, mut n) in self.nodes.into_iter().enumerate() {
            if !live[i] {
                continue;
            }
            map[i] = nodes.len();
            n.inputs.iter_mut().for_each(|j| *j = map[*j]);
            nodes.push(n);
        }
        let ins: Vec<usize> = self.inputs.iter().map(|&i| map[i]).collect();
        let outs: Vec<usize> = outs.iter().map(|&o| map[o]).collect();
        let mut m = Model::from_nodes(&self.name, nodes, &ins, &outs)?;
        m.output_names = out_names;
        m.origin = self.origin;
        m.seq = self.seq;
        m.batch_axes.0 = self.batch_axes.0;
        m.batch_axes.1 = names
            .iter()
            .map(|&n| {
                let k = self.output_names.iter().position(|o| o == n);
                k.and_then(|k| self.batch_axes.1[k].clone())
            })
            .collect();
        Ok(m)
    }

    /// Per input: where its file holds the batch, when not first ([`BatchAxis`]).
    pub fn input_batch_axes(&self) -> &[Option<BatchAxis>] {
        &self.batch_axes.0
    }

    /// Per output: where its file holds the batch, when not first ([`BatchAxis`]).
    pub fn output_batch_axes(&self) -> &[Option<BatchAxis>] {
        &self.batch_axes.1
    }

    /// Declares that the file holds input `k` (`output`: output `k`) with the batch on axis
    /// `b.axis`; its values stay sample-major.
    pub fn set_batch_axis(&mut self, output: bool, k: usize, b: BatchAxis) -> Result<()> {
        let (node, slot) = match output {
            false => (self.inputs.get(k), self.batch_axes.0.get_mut(k)),
            true => (self.outputs.get(k), self.batch_axes.1.get_mut(k)),
        };
        let (Some(&node), Some(slot)) = (node, slot) else {
            return Err(Error::Model(format!("no tensor {k} to give a batch axis")));
        };
        let product = |d: &[usize]| d.iter().try_fold(1usize, |p, &x| p.checked_mul(x));
        let len = product(&self.nodes[node].shape);
        if b.axis == 0 || b.axis > b.dims.len() || product(&b.dims) != len {
            return Err(Error::Model(format!(
                "batch axis {} with dims {:?} for {:?} of shape {:?}",
                b.axis, b.dims, self.nodes[node].name, self.nodes[node].shape
            )));
        }
        *slot = Some(b);
        Ok(())
    }

    /// Declares the first axis of input `k` a sequence whose length varies per run, from 1 up
    /// to the size the input's shape gives it (the longest a plan is sized for). A plan then
    /// serves every length in one arena, if each layer on the way allows it
    /// ([`Plan::seq_range`](crate::plan::Plan::seq_range)).
    pub fn set_seq_input(&mut self, k: usize) -> Result<()> {
        let flag = self.seq.get_mut(k).ok_or_else(|| {
            Error::Model(format!(
                "input {k} of a model with {} inputs",
                self.inputs.len()
            ))
        })?;
        *flag = true;
        Ok(())
    }

    /// Every node's weights, moved out (the nodes keep none): for a compile that consumes
    /// the model and frees each layer's weights once they are packed.
    pub(crate) fn take_weights(&mut self) -> Vec<Option<DenseWeights>> {
        self.nodes.iter_mut().map(|n| n.weights.take()).collect()
    }

    /// Per input: whether its first axis is a variable sequence ([`Model::set_seq_input`]).
    pub fn seq_inputs(&self) -> &[bool] {
        &self.seq
    }

    /// Position of the output named `name`.
    pub fn output_index(&self, name: &str) -> Option<usize> {
        self.output_names.iter().position(|n| n == name)
    }

    /// Position of the input named `name`.
    pub fn input_index(&self, name: &str) -> Option<usize> {
        self.inputs.iter().position(|&i| self.nodes[i].name == name)
    }

    /// The model's name (`"functional"` unless a loader says otherwise).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Nodes in topological order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }
    /// Indices of the input nodes, in the model's input order.
    pub fn inputs(&self) -> &[usize] {
        &self.inputs
    }
    /// Indices of the output nodes, in the model's output order.
    pub fn outputs(&self) -> &[usize] {
        &self.outputs
    }
    /// Names of the inputs (their InputLayers' names), in order.
    pub fn input_names(&self) -> Vec<&str> {
        self.inputs
            .iter()
            .map(|&i| self.nodes[i].name.as_str())
            .collect()
    }
    /// Names of the outputs, in order.
    pub fn output_names(&self) -> &[String] {
        &self.output_names
    }
    /// Index of the first input node (the input of a one-input model).
    pub fn input(&self) -> usize {
        self.inputs[0]
    }
    /// Index of the first output node (the output of a one-output model).
    pub fn output(&self) -> usize {
        self.outputs[0]
    }
    /// Shape of the first input, without the batch axis.
    pub fn input_shape(&self) -> &[usize] {
        &self.nodes[self.inputs[0]].shape
    }
    /// Shape of the first output, without the batch axis.
    pub fn output_shape(&self) -> &[usize] {
        &self.nodes[self.outputs[0]].shape
    }
    /// The node named `name`.
    pub fn layer(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }
    /// Total number of weights.
    pub fn count_params(&self) -> usize {
        self.nodes.iter().map(Node::count_params).sum()
    }

    /// Replaces a Dense or Conv1D layer's weights (`kernel` row-major as Keras stores it:
    /// `[K, units]` or `[kernel_size, in_channels, filters]`).
    pub fn set_weights(
        &mut self,
        name: &str,
        kernel: Vec<f32>,
        bias: Option<Vec<f32>>,
    ) -> Result<()> {
        let i = self
            .nodes
            .iter()
            .position(|n| n.name == name)
            .ok_or_else(|| Error::NoSuchLayer(name.into()))?;
        let in_shape = self.nodes[i]
            .inputs
            .first()
            .map(|&j| self.nodes[j].shape.clone())
            .unwrap_or_default();
        let node = &mut self.nodes[i];
        let Some(dims) = node.layer.weight_dims(&in_shape) else {
            return Err(Error::Model(format!(
                "layer {name:?} ({}) has no weights",
                node.layer.type_name()
            )));
        };
        let w = DenseWeights { kernel, bias };
        check_dense_weights(name, dims, &w)?;
        node.weights = Some(w);
        Ok(())
    }

    /// Keras-style summary table.
    pub fn summary(&self) -> String {
        summary::render(self)
    }
}

/// Fills empty names per layer class (`dense`, `dense_1`, ...) and rejects duplicates.
fn assign_names(nodes: &mut [Node]) -> Result<()> {
    let mut taken: HashSet<String> = HashSet::new();
    for n in nodes.iter().filter(|n| !n.name.is_empty()) {
        if !taken.insert(n.name.clone()) {
            return Err(Error::Model(format!("two layers are named {:?}", n.name)));
        }
    }
    let mut counters: BTreeMap<&'static str, usize> = BTreeMap::new();
    for n in nodes.iter_mut().filter(|n| n.name.is_empty()) {
        let base = n.layer.base_name();
        let c = counters.entry(base).or_insert(0);
        loop {
            let candidate = if *c == 0 {
                base.to_string()
            } else {
                format!("{base}_{c}")
            };
            *c += 1;
            if taken.insert(candidate.clone()) {
                n.name = candidate;
                break;
            }
        }
    }
    Ok(())
}
