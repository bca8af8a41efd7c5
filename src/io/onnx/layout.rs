//! Channels-first layouts tracked instead of copied: how an ONNX tensor's axes map onto
//! sinter's channels-last buffer, and where a layout is written out.

use super::convert::{BATCH, Converter, Value};
use super::proto::NodeProto;
use crate::error::Result;
use crate::model::{Layer, Node};
use crate::model::{PermuteConfig, ReshapeConfig};

/// How an ONNX tensor's axes map onto sinter's channels-last buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Layout {
    /// Same axes.
    Native,
    /// Channels first: ONNX sees `[N, C, W]` where sinter holds `[W, C]` (after a
    /// `Transpose(0, 2, 1)`), or `[N, C, H, W]` where sinter holds `[H, W, C]`.
    Ncw,
    /// ONNX sees `[N, C, 1]` (a global pooling's output) where sinter holds `[C]`.
    Nc1,
    /// ONNX sees `[N, C, 1, 1]` (a 2-D global pooling's output) where sinter holds `[C]`.
    Nc11,
    /// ONNX sees `[N, C * W]`, a channel-major flatten of `[N, C, W]` (PyTorch's `Flatten`
    /// after a `Conv1d`), where sinter holds the step-major flatten of its `[W, C]` buffer: no
    /// data moves; a Gemm/MatMul reading it takes its weight rows in sinter's order instead
    /// ([`Converter::flat_rows`]), decided at load time.
    FlatNcw {
        /// `W`.
        steps: usize,
        /// `C`.
        ch: usize,
    },
    /// ONNX sees `[N, C, W]` with a length-1 axis inserted at this ONNX axis (1, 2 or 3:
    /// `[N, 1, C, W]`, `[N, C, 1, W]`, `[N, C, W, 1]`) where sinter holds `[W, C]`: how
    /// TensorFlow writes a Conv1D or pooling as a 2-D op of height 1
    /// (`Unsqueeze -> Transpose(0, 3, 1, 2) -> Conv [1, k] -> Squeeze`). A 2-D window op
    /// whose other axis is this unit axis runs as the 1-D op.
    NcwUnit(usize),
    /// Time-major (a recurrent op's `layout=0` tensors): ONNX sees `[T, N, C]`, the batch on
    /// axis 1, where sinter holds `[T, C]`.
    Tnc,
    /// ONNX sees a recurrent op's `Y`, `[T, D, N, H]`, where sinter holds `[T, D * H]`.
    Tdnh(usize),
    /// ONNX sees `[T, N, D, H]` (`Y` transposed `(0, 2, 1, 3)`) where sinter holds `[T, D *
    /// H]`.
    Tndh(usize),
    /// ONNX sees a recurrent op's last state `Y_h`, `[D, N, H]`, where sinter holds `[D *
    /// H]` (or the concatenation of several layers' along `D`).
    Dnh(usize),
    /// ONNX sees `[N]`, one value per sample (a recurrent op's `sequence_lens`), where
    /// sinter holds `[1]`: read only by the recurrent ops (ONNX broadcasts `[N]` along a
    /// last axis, not the batch).
    N,
}

/// The ops that read a tensor whose batch is not ONNX's first axis
/// ([`Layout::batch_not_first`]: time-major tensors and recurrent ops' last states): the moves
/// that bring the batch back first, `Shape`, and the recurrent ops.
pub(super) const BATCH_NOT_FIRST_READERS: [&str; 10] = [
    "Transpose",
    "Reshape",
    "Squeeze",
    "Gather",
    "Slice",
    "Concat",
    "Shape",
    "LSTM",
    "GRU",
    "RNN",
];

impl Layout {
    /// Whether ONNX's batch axis is not its first: time-major tensors ([`Layout::Tnc`],
    /// [`Layout::Tdnh`], [`Layout::Tndh`]) and recurrent ops' last states ([`Layout::Dnh`]).
    pub(super) fn batch_not_first(self) -> bool {
        matches!(
            self,
            Layout::Tnc | Layout::Tdnh(_) | Layout::Tndh(_) | Layout::Dnh(_)
        )
    }

    /// ONNX's shape of a tensor sinter holds with `shape`, [`BATCH`] where the batch is.
    pub(super) fn onnx_shape(self, shape: &[usize]) -> Vec<i64> {
        let i = |d: &usize| *d as i64;
        match (self, shape) {
            (Layout::Tnc, [t, rest @ ..]) => [*t as i64, BATCH]
                .into_iter()
                .chain(rest.iter().map(i))
                .collect(),
            (Layout::Tdnh(d), &[t, dh]) => {
                vec![t as i64, d as i64, BATCH, (dh / d.max(1)) as i64]
            }
            (Layout::Tndh(d), &[t, dh]) => {
                vec![t as i64, BATCH, d as i64, (dh / d.max(1)) as i64]
            }
            (Layout::Dnh(d), &[dh]) => vec![d as i64, BATCH, (dh / d.max(1)) as i64],
            _ => std::iter::once(BATCH)
                .chain(self.onnx_dims(shape).iter().map(i))
                .collect(),
        }
    }

    /// ONNX's dims (batch excluded) of a tensor sinter holds with `shape`.
    pub(super) fn onnx_dims(self, shape: &[usize]) -> Vec<usize> {
        match (self, shape) {
            (Layout::Ncw, &[ref spatial @ .., c]) if !spatial.is_empty() => {
                std::iter::once(c).chain(spatial.iter().copied()).collect()
            }
            (Layout::Nc1, &[c]) => vec![c, 1],
            (Layout::Nc11, &[c]) => vec![c, 1, 1],
            (Layout::N, _) => vec![],
            (Layout::NcwUnit(at), &[w, c]) => {
                let mut d = vec![c, w];
                d.insert((at - 1).min(2), 1);
                d
            }
            _ => shape.to_vec(),
        }
    }
}

impl Converter<'_> {
    /// Input `i` of `node` with its values in ONNX's axis order (see [`Self::materialise`]).
    pub(super) fn native_input(&mut self, node: &NodeProto, i: usize) -> Result<usize> {
        let x = self.input_node(node, i)?;
        let name = node.input[i].clone();
        self.materialise(&name, x)
            .map_err(|m| self.invalid(node, format!("input {i}: {m}")))
    }

    /// The node holding tensor `name` (computed by node `x`) in ONNX's axis order. A tracked
    /// layout is only a way of reading sinter's channels-last buffer; wherever values are read
    /// in order (Flatten, Reshape, MatMul, softmax, a graph output) it is written out: a
    /// `Permute` for `[N, C, W]` (a real transpose), a `Reshape` for `[N, C, 1]` (a view).
    /// Made once per tensor, however many nodes read it.
    pub(super) fn materialise(
        &mut self,
        name: &str,
        x: usize,
    ) -> std::result::Result<usize, String> {
        let layout = self.layouts.get(name).copied().unwrap_or(Layout::Native);
        if layout == Layout::Native {
            return Ok(x);
        }
        if let Some(&m) = self.materialised.get(name) {
            return Ok(m);
        }
        if layout.batch_not_first() {
            return Err(format!(
                "a tensor with ONNX's batch on axis 1 (a recurrent op's) is read only by {}",
                BATCH_NOT_FIRST_READERS.join(", ")
            ));
        }
        if let (Layout::NcwUnit(_), &[w, c]) = (layout, self.nodes[x].shape.as_slice()) {
            // [W, C] -> [C, W] (a real transpose) -> ONNX's dims with the unit axis (a view).
            let dims = layout.onnx_dims(&[w, c]);
            self.nodes.push(Node::new(
                String::new(),
                Layer::Permute(PermuteConfig { dims: vec![2, 1] }),
                vec![x],
                vec![c, w],
                None,
            ));
            let t = self.nodes.len() - 1;
            self.nodes.push(Node::new(
                String::new(),
                Layer::Reshape(ReshapeConfig {
                    target_shape: dims.iter().map(|&d| d as isize).collect(),
                }),
                vec![t],
                dims,
                None,
            ));
            let m = self.nodes.len() - 1;
            self.materialised.insert(name.to_string(), m);
            return Ok(m);
        }
        if let Layout::FlatNcw { steps, ch } = layout {
            // [W * C] -> [W, C] -> [C, W] -> [C * W]: views around one real transpose.
            let mut at = x;
            for (layer, shape) in [
                (
                    Layer::Reshape(ReshapeConfig {
                        target_shape: vec![steps as isize, ch as isize],
                    }),
                    vec![steps, ch],
                ),
                (
                    Layer::Permute(PermuteConfig { dims: vec![2, 1] }),
                    vec![ch, steps],
                ),
                (Layer::Flatten, vec![ch * steps]),
            ] {
                self.nodes
                    .push(Node::new(String::new(), layer, vec![at], shape, None));
                at = self.nodes.len() - 1;
            }
            self.materialised.insert(name.to_string(), at);
            return Ok(at);
        }
        let (layer, shape) = match (layout, self.nodes[x].shape.as_slice()) {
            // [spatial..., C] -> [C, spatial...]: a real transpose.
            (Layout::Ncw, s) if s.len() >= 2 => (
                Layer::Permute(PermuteConfig {
                    dims: std::iter::once(s.len()).chain(1..s.len()).collect(),
                }),
                layout.onnx_dims(s),
            ),
            (Layout::Nc1 | Layout::Nc11, s @ &[_]) => {
                let dims = layout.onnx_dims(s);
                (
                    Layer::Reshape(ReshapeConfig {
                        target_shape: dims.iter().map(|&d| d as isize).collect(),
                    }),
                    dims,
                )
            }
            (l, s) => return Err(format!("internal: layout {l:?} on a tensor of shape {s:?}")),
        };
        self.nodes
            .push(Node::new(String::new(), layer, vec![x], shape, None));
        let m = self.nodes.len() - 1;
        self.materialised.insert(name.to_string(), m);
        Ok(m)
    }

    /// The layout of input `i` of `node`.
    pub(super) fn layout(&self, node: &NodeProto, i: usize) -> Layout {
        node.input
            .get(i)
            .and_then(|n| self.layouts.get(n))
            .copied()
            .unwrap_or(Layout::Native)
    }

    pub(super) fn set_layout(&mut self, node: &NodeProto, layout: Layout) -> Result<()> {
        let out = self.output(node)?.to_string();
        if layout == Layout::Native {
            self.layouts.remove(&out);
        } else {
            self.layouts.insert(out, layout);
        }
        Ok(())
    }

    /// Input 0 of a channels-first op as sinter's channels-last buffer, as `(node, steps,
    /// channels)`: a tracked `Ncw` tensor as it is, a plain `[N, C, W]` one (a graph input,
    /// PyTorch style) transposed once (shared by every reader).
    pub(super) fn ncw_input(&mut self, node: &NodeProto) -> Result<(usize, usize, usize)> {
        let (x, s, ch) = self.channels_first_input(node, 1)?;
        Ok((x, s[0], ch))
    }

    /// [`Self::ncw_input`] of `[N, C, H, W]`: `(node, (height, width), channels)`.
    pub(super) fn nchw_input(
        &mut self,
        node: &NodeProto,
    ) -> Result<(usize, (usize, usize), usize)> {
        let (x, s, ch) = self.channels_first_input(node, 2)?;
        Ok((x, (s[0], s[1]), ch))
    }

    /// Input 0 of a channels-first op with `rank` spatial axes as sinter's channels-last
    /// buffer: `(node, spatial dims, channels)`, exactly `rank` spatial dims.
    fn channels_first_input(
        &mut self,
        node: &NodeProto,
        rank: usize,
    ) -> Result<(usize, Vec<usize>, usize)> {
        let x = self.input_node(node, 0)?;
        let shape = self.nodes[x].shape.clone();
        match (self.layout(node, 0), shape.as_slice()) {
            (Layout::Ncw, [spatial @ .., ch]) if spatial.len() == rank => {
                Ok((x, spatial.to_vec(), *ch))
            }
            // `[N, C, 1, 1]` held as `[C]` (a global pooling's output): a `[1, 1, C]` view.
            (Layout::Nc11, &[ch]) if rank == 2 => {
                let name = node.input[0].clone();
                if let Some(&t) = self.channels_last.get(&name) {
                    return Ok((t, vec![1, 1], ch));
                }
                self.nodes.push(Node::new(
                    String::new(),
                    Layer::Reshape(ReshapeConfig {
                        target_shape: vec![1, 1, ch as isize],
                    }),
                    vec![x],
                    vec![1, 1, ch],
                    None,
                ));
                let t = self.nodes.len() - 1;
                self.channels_last.insert(name, t);
                Ok((t, vec![1, 1], ch))
            }
            (Layout::Native, [ch, spatial @ ..]) if spatial.len() == rank => {
                let name = node.input[0].clone();
                if let Some(&t) = self.channels_last.get(&name) {
                    return Ok((t, spatial.to_vec(), *ch));
                }
                // [C, spatial...] -> [spatial..., C].
                self.nodes.push(Node::new(
                    String::new(),
                    Layer::Permute(PermuteConfig {
                        dims: (2..=rank + 1).chain([1]).collect(),
                    }),
                    vec![x],
                    spatial.iter().copied().chain([*ch]).collect(),
                    None,
                ));
                let t = self.nodes.len() - 1;
                self.channels_last.insert(name, t);
                Ok((t, spatial.to_vec(), *ch))
            }
            (layout, shape) => {
                let m = if rank == 1 {
                    "the input must be channels-first [N, C, W]"
                } else {
                    "the input must be channels-first [N, C, H, W]"
                };
                // Fewer axes break the op's rules; more are a 2-D (or 3-D) window.
                Err(if layout.onnx_dims(shape).len() < 2 {
                    self.invalid(node, m)
                } else {
                    self.unsupported(node, m)
                })
            }
        }
    }

    /// Input 0 of a Gemm/MatMul and the order of its weight rows: for a [`Layout::FlatNcw`]
    /// input, `rows[s]` is the ONNX row (`c * W + w`) that sinter's feature `s = w * C + c`
    /// multiplies; `None` when the orders agree.
    pub(super) fn flat_rows(&mut self, node: &NodeProto) -> Result<(usize, Option<Vec<usize>>)> {
        if let Layout::FlatNcw { steps, ch } = self.layout(node, 0) {
            let x = self.input_node(node, 0)?;
            let rows = (0..steps * ch).map(|s| (s % ch) * steps + s / ch).collect();
            return Ok((x, Some(rows)));
        }
        Ok((self.native_input(node, 0)?, None))
    }

    /// The layout after a `Squeeze`/`Unsqueeze` that only moves the unit axis of a tracked
    /// channels-first tensor (`[N, C, W]` <-> `[N, C, 1, W]` and friends), if that is all it
    /// does: no node, a new way of reading the same buffer.
    pub(super) fn unit_relabel(&self, node: &NodeProto) -> Result<Option<Layout>> {
        let layout = self.layout(node, 0);
        let x = self.input_node(node, 0)?;
        let (Layout::Ncw | Layout::NcwUnit(_), &[w, c]) = (layout, self.nodes[x].shape.as_slice())
        else {
            return Ok(None);
        };
        if w == 1 || c == 1 {
            return Ok(None); // ambiguous unit axes: take the general path
        }
        let Some(axes) = node.input.get(1).filter(|n| !n.is_empty()) else {
            return Ok(None);
        };
        let axes = match self.values.get(axes) {
            Some(Value::Const(a)) => a.i64.clone(),
            _ => return Ok(None),
        };
        let [a] = axes[..] else { return Ok(None) };
        Ok(match (node.op_type.as_str(), layout) {
            ("Unsqueeze", Layout::Ncw) => {
                let a = if a < 0 { a + 4 } else { a };
                (1..=3).contains(&a).then_some(Layout::NcwUnit(a as usize))
            }
            ("Squeeze", Layout::NcwUnit(at)) => {
                let a = if a < 0 { a + 4 } else { a };
                (a == at as i64).then_some(Layout::Ncw)
            }
            _ => None,
        })
    }

    /// The layout after a `Reshape` of a tracked channels-first tensor that only adds, drops
    /// or moves its unit axis (tf2onnx's `[N, 1, C, W] -> [N, C, W, 1]` before a pooling).
    pub(super) fn reshape_relabel(
        &self,
        node: &NodeProto,
        target: &[i64],
    ) -> Result<Option<Layout>> {
        let layout = self.layout(node, 0);
        let x = self.input_node(node, 0)?;
        let (Layout::Ncw | Layout::NcwUnit(_), &[w, c]) = (layout, self.nodes[x].shape.as_slice())
        else {
            return Ok(None);
        };
        let Some((&first, rest)) = target.split_first() else {
            return Ok(None);
        };
        if w == 1 || c == 1 || !matches!(first, 0 | -1 | BATCH) || rest.iter().any(|&d| d <= 0) {
            return Ok(None);
        }
        let non_unit: Vec<i64> = rest.iter().copied().filter(|&d| d != 1).collect();
        if non_unit != [c as i64, w as i64] {
            return Ok(None);
        }
        Ok(match rest.iter().position(|&d| d == 1) {
            None if rest.len() == 2 => Some(Layout::Ncw),
            Some(u) if rest.len() == 3 => Some(Layout::NcwUnit(u + 1)),
            _ => None,
        })
    }
}
