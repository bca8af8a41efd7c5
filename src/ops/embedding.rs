//! Keras `Embedding(input_dim, output_dim)`: rows of a table looked up by integer ids.

use super::{LayerOp, Lowering, Reference, one};
use crate::error::{Error, Result};
use crate::model::{DType, Layer, checked_elems};
use crate::passes::Op;

/// An Embedding layer's configuration: `[..] -> [.., output_dim]`, the table
/// (`input_dim x output_dim`) is the node's kernel. An id outside `0..input_dim` is an error
/// when run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmbeddingConfig {
    /// Vocabulary size (rows of the table).
    pub input_dim: usize,
    /// Width of a row.
    pub output_dim: usize,
}

impl LayerOp for EmbeddingConfig {
    fn class_name(&self) -> &'static str {
        "Embedding"
    }
    fn base_name(&self) -> &'static str {
        "embedding"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let mut s = one(inputs)?;
        if self.input_dim == 0 || self.output_dim == 0 {
            return Err("Embedding input_dim and output_dim must be positive".into());
        }
        s.push(self.output_dim);
        checked_elems(&s)?;
        Ok(s)
    }
    fn reads(&self, _: &[DType]) -> bool {
        true
    }
    fn weight_dims(&self, _: &[usize]) -> Option<(usize, usize, bool)> {
        Some((self.input_dim, self.output_dim, false))
    }
    fn lower<'m>(&'m self, cx: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        let src = cx.node.inputs.first().map(|&j| &cx.model.nodes()[j]);
        if !src.is_some_and(|s| s.layer == Layer::Input) {
            return Err(Error::Shape {
                layer: cx.node.name.clone(),
                msg: "an Embedding must read a model input (its ids)".into(),
            });
        }
        let table = match cx.graph_weights()? {
            std::borrow::Cow::Owned(w) => std::borrow::Cow::Owned(w.kernel),
            std::borrow::Cow::Borrowed(w) => std::borrow::Cow::Borrowed(&w.kernel[..]),
        };
        Ok(Op::Gather {
            table,
            dim: self.output_dim,
        })
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        let (input_dim, output_dim) = (self.input_dim, self.output_dim);
        let table = &cx.weights()?.kernel;
        let ids = cx.inputs[0];
        let mut y = Vec::with_capacity(ids.len() * output_dim);
        for &id in ids {
            if id.fract() != 0.0 || id < 0.0 || id >= input_dim as f64 {
                return Err(Error::Model(format!(
                    "layer {:?}: id {id} is not in 0..{input_dim}",
                    cx.node.name
                )));
            }
            let row = &table[id as usize * output_dim..][..output_dim];
            y.extend(row.iter().map(|&v| f64::from(v)));
        }
        Ok(y)
    }
}

/// Which row of a table each position of a sequence of ids takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PositionRule {
    /// Row `pad + n` at the `n`-th id (from 1) that is not `pad`, row `pad` at a `pad` id:
    /// RoBERTa's and XLM-R's position ids, computed from `input_ids`.
    AfterPadding {
        /// The padding id.
        pad: usize,
    },
    /// Row `row` at every position (a buffered `token_type_ids` of one value).
    Constant {
        /// The row.
        row: usize,
    },
}

impl PositionRule {
    /// The row of the next position, holding `id`; `seen` counts the ids before it that
    /// are not padding (start it at 0 for each sequence).
    fn next(self, id: f64, seen: &mut usize) -> usize {
        match self {
            PositionRule::Constant { row } => row,
            PositionRule::AfterPadding { pad } if id == pad as f64 => pad,
            PositionRule::AfterPadding { pad } => {
                *seen += 1;
                pad + *seen
            }
        }
    }

    /// The row of each position of `ids`, into `rows`.
    pub(crate) fn rows(self, ids: impl Iterator<Item = f64>, rows: &mut Vec<usize>) {
        let mut seen = 0;
        rows.clear();
        rows.extend(ids.map(|id| self.next(id, &mut seen)));
    }

    /// The largest row a sequence of `len` positions can take.
    fn max_row(self, len: usize) -> Option<usize> {
        match self {
            PositionRule::Constant { row } => Some(row),
            PositionRule::AfterPadding { pad } => pad.checked_add(len),
        }
    }
}

/// Rows of a table (`rows x dim`, the node's kernel) picked per position by a rule on the ids
/// of a model input `[S]`: `[S] -> [S, dim]`. A position's row depends only on the ids up to
/// it, so padding a sequence at its end leaves the others alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PositionEmbeddingConfig {
    /// Rows of the table.
    pub rows: usize,
    /// Width of a row.
    pub dim: usize,
    /// Which row each position takes.
    pub rule: PositionRule,
}

impl PositionEmbeddingConfig {
    fn check(&self, len: usize) -> Result<(), String> {
        match self.rule.max_row(len) {
            Some(r) if r < self.rows => Ok(()),
            _ => Err(format!(
                "{:?} over {len} positions reaches past the table's {} rows",
                self.rule, self.rows
            )),
        }
    }
}

impl LayerOp for PositionEmbeddingConfig {
    fn class_name(&self) -> &'static str {
        "PositionEmbedding"
    }
    fn base_name(&self) -> &'static str {
        "position_embedding"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let s = one(inputs)?;
        let [len] = s[..] else {
            return Err(format!("position rows read ids [steps], got {s:?}"));
        };
        if self.dim == 0 {
            return Err("position rows need a positive width".into());
        }
        self.check(len)?;
        let shape = vec![len, self.dim];
        checked_elems(&shape)?;
        Ok(shape)
    }
    fn reads(&self, _: &[DType]) -> bool {
        true
    }
    fn weight_dims(&self, _: &[usize]) -> Option<(usize, usize, bool)> {
        Some((self.rows, self.dim, false))
    }
    fn lower<'m>(&'m self, cx: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        let len = cx.node.shape.first().copied().unwrap_or(0);
        let table = cx.graph_weights()?.into_owned().kernel;
        Ok(Op::Step(crate::plan::StepRef::new(PositionEmbeddingStep {
            config: *self,
            table,
            len,
        })))
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        let table = &cx.weights()?.kernel;
        let len = cx.in_shape().first().copied().unwrap_or(0).max(1);
        let mut rows = Vec::new();
        let mut y = Vec::with_capacity(cx.inputs[0].len() * self.dim);
        for ids in cx.inputs[0].chunks(len) {
            self.rule.rows(ids.iter().copied(), &mut rows);
            for &r in &rows {
                let row = table.get(r * self.dim..(r + 1) * self.dim).ok_or_else(|| {
                    Error::Model(format!("layer {:?}: row {r} past the table", cx.node.name))
                })?;
                y.extend(row.iter().map(|&v| f64::from(v)));
            }
        }
        Ok(y)
    }
}

/// The rows of each sample, its ids read into the scratch.
#[derive(Debug)]
struct PositionEmbeddingStep {
    config: PositionEmbeddingConfig,
    table: Vec<f32>,
    /// The longest sequence.
    len: usize,
}

impl crate::plan::StepOp for PositionEmbeddingStep {
    fn describe(&self) -> String {
        let c = &self.config;
        format!(
            "position rows of a {} x {} table, {:?}",
            c.rows, c.dim, c.rule
        )
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        self.config.output_shape(inputs)
    }
    fn scratch(&self) -> usize {
        self.len
    }
    fn seq(&self, ins: &[bool]) -> Result<bool, String> {
        Ok(ins[0])
    }
    fn run(&self, _: crate::kernels::Isa, io: crate::plan::StepIo<'_>) {
        let dim = self.config.dim;
        let len = io.input_len(0);
        let (ins, out, scratch) = io.scratch();
        let ids = &mut scratch[..len];
        for (b, sample) in out.chunks_exact_mut((len * dim).max(1)).enumerate() {
            ins.copy_f32(0, b * len, ids);
            let mut seen = 0;
            for (o, &id) in sample.chunks_exact_mut(dim).zip(ids.iter()) {
                let r = self.config.rule.next(f64::from(id), &mut seen);
                // Rows past the table were refused when the plan was made (`check`).
                if let Some(row) = self.table.get(r * dim..(r + 1) * dim) {
                    o.copy_from_slice(row);
                }
            }
        }
    }
}
