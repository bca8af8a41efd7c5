//! Element types, windows and the shape rules layers share.

/// Element type of a model input or output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float.
    #[default]
    F32,
    /// 32-bit signed integer (token ids).
    I32,
    /// 64-bit signed integer (token ids, labels).
    I64,
    /// Boolean (PyTorch's `key_padding_mask`: true marks padding).
    Bool,
}

impl DType {
    /// The NumPy / Keras name (`float32`, `int32`, `int64`).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::Bool => "bool",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "float32" => Ok(DType::F32),
            "int32" => Ok(DType::I32),
            "int64" => Ok(DType::I64),
            "bool" => Ok(DType::Bool),
            other => Err(format!(
                "dtype {other:?} (expected float32, int32, int64 or bool)"
            )),
        }
    }
}

/// How a window treats the borders (Keras `padding`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Padding {
    /// No padding: only full windows.
    Valid,
    /// Zero padding split around the input so that `out = ceil(steps / strides)`.
    Same,
    /// Zero padding on the left only (`dilation * (kernel - 1)` steps): no window sees the future.
    Causal,
    /// Explicit padding steps on each side (ONNX `pads`): `out = (steps + left + right - span)
    /// / stride + 1`. For pooling, padded taps are skipped (max) or not counted (mean).
    Explicit {
        /// Steps before the input.
        left: usize,
        /// Steps after the input.
        right: usize,
    },
}

impl std::str::FromStr for Padding {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "valid" => Ok(Padding::Valid),
            "same" => Ok(Padding::Same),
            "causal" => Ok(Padding::Causal),
            other => Err(format!(
                "padding {other:?} (expected valid, same or causal)"
            )),
        }
    }
}

/// Geometry of a 1-D sliding window: which input steps feed output step `o`
/// (`o * stride - pad_left + t * dilation` for tap `t`; outside `0..len` is padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Input steps.
    pub len: usize,
    /// Taps per window.
    pub size: usize,
    /// Step between windows.
    pub stride: usize,
    /// Spacing between taps.
    pub dilation: usize,
    /// Padding steps before the input.
    pub pad_left: usize,
    /// Output steps.
    pub out: usize,
}

impl Window {
    /// Keras's output length and padding for a window over `len` steps.
    pub fn new(
        len: usize,
        size: usize,
        stride: usize,
        dilation: usize,
        padding: Padding,
    ) -> Result<Window, String> {
        if size == 0 || stride == 0 || dilation == 0 {
            return Err(format!(
                "kernel/pool size {size}, strides {stride} and dilation {dilation} must be positive"
            ));
        }
        let span = (size - 1)
            .checked_mul(dilation)
            .and_then(|s| s.checked_add(1))
            .ok_or("window span overflows")?;
        let (out, pad_left) = match padding {
            Padding::Valid => {
                if len < span {
                    return Err(format!(
                        "a window spanning {span} steps does not fit in {len} steps (padding valid)"
                    ));
                }
                ((len - span) / stride + 1, 0)
            }
            Padding::Same => {
                let out = len.div_ceil(stride);
                let total = (out.max(1) - 1)
                    .checked_mul(stride)
                    .and_then(|x| x.checked_add(span))
                    .ok_or("window extent overflows")?
                    .saturating_sub(len);
                (out, total / 2)
            }
            Padding::Causal => (len.div_ceil(stride), span - 1),
            Padding::Explicit { left, right } => {
                let padded = len
                    .checked_add(left)
                    .and_then(|x| x.checked_add(right))
                    .ok_or("window extent overflows")?;
                if padded < span {
                    return Err(format!(
                        "a window spanning {span} steps does not fit in {len} steps padded \
                         {left}+{right}"
                    ));
                }
                ((padded - span) / stride + 1, left)
            }
        };
        // Every later size (the padded input, the last window's end) is at most this.
        (out.max(1) - 1)
            .checked_mul(stride)
            .and_then(|x| x.checked_add(span))
            .and_then(|x| x.max(len).checked_add(pad_left))
            .ok_or("window extent overflows")?;
        Ok(Window {
            len,
            size,
            stride,
            dilation,
            pad_left,
            out,
        })
    }

    /// Padding steps the windows reach past the input's end (from the last window's last tap):
    /// what an implicit im2col pads after the input.
    pub(crate) fn reach_right(&self) -> usize {
        let covered =
            (self.out.max(1) - 1) * self.stride + (self.size.max(1) - 1) * self.dilation + 1;
        covered.saturating_sub(self.pad_left + self.len)
    }

    /// The geometry as the kernels' data-movement ops take it.
    pub(crate) fn axis(&self) -> crate::kernels::ops::Axis {
        crate::kernels::ops::Axis {
            len: self.len,
            size: self.size,
            stride: self.stride,
            dilation: self.dilation,
            pad: self.pad_left,
            out: self.out,
        }
    }

    /// The input step of tap `t` of output step `o`, or `None` where it falls in the padding.
    pub fn source(&self, o: usize, t: usize) -> Option<usize> {
        (o * self.stride + t * self.dilation)
            .checked_sub(self.pad_left)
            .filter(|&i| i < self.len)
    }

    /// The input steps of output step `o` that are not padding, as a range: [`sources`] of a
    /// window without dilation.
    ///
    /// [`sources`]: Window::sources
    pub fn span(&self, o: usize) -> std::ops::Range<usize> {
        self.axis().span(o)
    }

    /// The input steps of output step `o` that are not padding, in tap order: what
    /// `(0..size).filter_map(|t| source(o, t))` gives, in time proportional to the real taps
    /// (a pool may be far wider than its input).
    pub fn sources(&self, o: usize) -> impl Iterator<Item = usize> + use<> {
        let start = o * self.stride; // padded coordinate of tap 0
        let d = self.dilation;
        // First tap at or after the left padding, one past the last before the right end.
        let first = self.pad_left.saturating_sub(start).div_ceil(d);
        let end = (self.pad_left + self.len)
            .checked_sub(start)
            .map_or(0, |room| room.div_ceil(d))
            .min(self.size);
        let pad_left = self.pad_left;
        (first..end.max(first)).map(move |t| start + t * d - pad_left)
    }
}

/// A 2-D sliding window over `[rows, cols]` positions stored row-major (position
/// `r * cols + c`): one [`Window`] per axis. A 1-D window is a 2-D one with one column
/// ([`Window2::one_d`]), so pooling and im2col have one implementation for both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window2 {
    /// Along the rows (height).
    pub rows: Window,
    /// Along the columns (width).
    pub cols: Window,
}

impl Window2 {
    /// A 1-D window as a 2-D one over a single column.
    pub fn one_d(rows: Window) -> Window2 {
        Window2 {
            rows,
            cols: Window {
                len: 1,
                size: 1,
                stride: 1,
                dilation: 1,
                pad_left: 0,
                out: 1,
            },
        }
    }

    /// Output positions (`rows.out * cols.out`).
    pub fn out(&self) -> usize {
        self.rows.out * self.cols.out
    }

    /// Input positions.
    pub fn len(&self) -> usize {
        self.rows.len * self.cols.len
    }

    /// Whether the input has no position.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Taps per window (`rows.size * cols.size`).
    pub fn taps(&self) -> usize {
        self.rows.size * self.cols.size
    }

    /// The input position of tap `t` (row-major over the kernel) of output position `o`, or
    /// `None` where it falls in the padding.
    pub fn source(&self, o: usize, t: usize) -> Option<usize> {
        let (oc, tc) = (self.cols.out.max(1), self.cols.size.max(1));
        let r = self.rows.source(o / oc, t / tc)?;
        let c = self.cols.source(o % oc, t % tc)?;
        Some(r * self.cols.len + c)
    }

    /// The input positions of output position `o` that are not padding, in tap order.
    pub fn sources(&self, o: usize) -> impl Iterator<Item = usize> + use<> {
        let oc = self.cols.out.max(1);
        let (cols, width) = (self.cols, self.cols.len);
        self.rows
            .sources(o / oc)
            .flat_map(move |r| cols.sources(o % oc).map(move |c| r * width + c))
    }
}

/// A Keras concatenation axis (batch = 0, negative from the end) as an index into the
/// per-sample shape of rank `rank`.
pub fn concat_axis(axis: isize, rank: usize) -> Result<usize, String> {
    let r = rank as isize;
    let a = if axis < 0 { r + axis } else { axis - 1 };
    if (0..r).contains(&a) {
        Ok(a as usize)
    } else {
        Err(format!(
            "axis {axis} is not a non-batch axis of a rank-{} tensor",
            rank + 1
        ))
    }
}

/// Keras `Permute` dims (numbered from 1) as a 0-based permutation of a rank-`rank` shape.
pub fn permutation(dims: &[usize], rank: usize) -> Result<Vec<usize>, String> {
    let mut seen = vec![false; rank];
    let mut perm = Vec::with_capacity(rank);
    for &d in dims {
        match d.checked_sub(1) {
            Some(a) if a < rank && !seen[a] => {
                seen[a] = true;
                perm.push(a);
            }
            _ => break,
        }
    }
    if perm.len() != rank || dims.len() != rank {
        return Err(format!(
            "Permute dims {dims:?} are not a permutation of 1..={rank} (the input has {rank} non-batch axes)"
        ));
    }
    Ok(perm)
}

/// `Reshape(target)` of a per-sample shape: same number of values, one `-1` inferred. An
/// empty target is one value per sample (ONNX's `[N]`).
pub fn reshape(from: &[usize], target: &[isize]) -> Result<Vec<usize>, String> {
    let elems = checked_elems(from)?;
    if target.is_empty() && elems != 1 {
        return Err(format!(
            "cannot reshape {from:?} ({elems} values) to one value per sample"
        ));
    }
    if target.iter().filter(|&&d| d == -1).count() > 1 {
        return Err(format!("target shape {target:?}: at most one -1"));
    }
    let mut out = Vec::with_capacity(target.len());
    let mut known = 1usize;
    for &d in target {
        match d {
            -1 => out.push(0),
            d if d > 0 => {
                let d = d as usize;
                known = known.checked_mul(d).ok_or("target shape overflows")?;
                out.push(d);
            }
            d => return Err(format!("target shape {target:?}: invalid entry {d}")),
        }
    }
    if let Some(i) = target.iter().position(|&d| d == -1) {
        if known == 0 || !elems.is_multiple_of(known) {
            return Err(format!(
                "cannot reshape {from:?} ({elems} values) to {target:?}"
            ));
        }
        out[i] = elems / known;
    } else if known != elems {
        return Err(format!(
            "cannot reshape {from:?} ({elems} values) to {target:?}"
        ));
    }
    Ok(out)
}

/// Number of elements of a shape, or an error on overflow.
pub fn checked_elems(shape: &[usize]) -> Result<usize, String> {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} has more elements than fit in memory"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_sources_are_the_non_padding_taps() {
        for len in 1..9 {
            for size in 1..7 {
                for stride in 1..4 {
                    for dilation in 1..4 {
                        for padding in [Padding::Valid, Padding::Same, Padding::Causal] {
                            let Ok(w) = Window::new(len, size, stride, dilation, padding) else {
                                continue;
                            };
                            for o in 0..w.out {
                                let want: Vec<usize> =
                                    (0..size).filter_map(|t| w.source(o, t)).collect();
                                let got: Vec<usize> = w.sources(o).collect();
                                assert_eq!(got, want, "{w:?} o={o}");
                            }
                        }
                    }
                }
            }
        }
    }
}
