//! A stretch: the first steps of a plan run a few samples at a time, each few through all of
//! them before the next, where a whole batch would run one step over every sample.
//!
//! An image model's first layers write maps larger than L2 per sample (mobilenet_v3_small's
//! stem 0.8 MB, its first expansion 0.9 MB) from weights of a few KB. Run a step at a time
//! over a batch of 8, a map is read back after the other 7 samples' maps have evicted it;
//! run a sample at a time through the stretch, each map is read while its producer's last
//! rows are still in L2, as at batch 1. Past the stretch the maps are small and the weights
//! large, and whole batches share each read of the weights. Samples are independent, so the
//! order changes no bit.

use super::*;
use std::ops::Range;

/// The steps a plan runs `chunk` samples at a time ([`Plan::stretch`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stretch {
    /// Steps, in plan order.
    pub steps: Range<usize>,
    /// Samples through all of them at a time: the plan's threads, so that a step that
    /// splits by samples keeps every thread busy.
    pub chunk: usize,
    /// Arena offsets of the blocks the stretch both writes and last reads: `chunk` samples
    /// long, every few samples' in the same place. The other blocks its steps touch hold
    /// the whole chunk of samples.
    pub local: Vec<usize>,
}

impl Stretch {
    /// Where the values of a run of the stretch's steps that starts `at` samples into the
    /// chunk are, for a block at `loc` holding `len` values per sample.
    pub fn place(&self, loc: Loc, len: usize, at: usize) -> Loc {
        match loc {
            Loc::Arena(o) if !self.local.contains(&o) => Loc::Arena(o + at * len),
            other => other,
        }
    }
}

/// [`Stretch::place`] of `stretch`, or `loc` itself outside one (`at` is 0 there).
pub(crate) fn place(stretch: Option<&Stretch>, loc: Loc, len: usize, at: usize) -> Loc {
    match stretch {
        Some(s) if at > 0 => s.place(loc, len, at),
        _ => loc,
    }
}

/// Bytes a node moves per sample (its inputs read and its output written) from which it
/// belongs in a stretch, by default: half of L2, where a map and its producer's stop
/// sharing the cache.
pub(super) fn default_bytes() -> usize {
    kernels::Caches::get().l2 / 2
}

/// Weights a stretch's node may read per sample, as a share of the values it moves (a
/// stretch reads a node's weights once per chunk instead of once per batch), unless they
/// are below a sixteenth of the bytes that make a node large (a squeeze-and-excitation
/// block's 16x8 kernel moves 96 bytes).
const WEIGHT_SHARE: usize = 8;

/// The nodes of `g` to run as a stretch, `..end`: from the first node to the last one that
/// moves at least `bytes` per sample, stopping before any node whose weights outweigh an
/// eighth of what it moves and a sixteenth of `bytes`. 0 (none) without such a node, with a sequence axis (lengths vary
/// per run) or when `bytes` is 0.
pub(super) fn nodes(g: &Graph, has_seq: bool, bytes: usize) -> usize {
    if has_seq || bytes == 0 {
        return 0;
    }
    let elems = |j: usize| checked_elems(&g.nodes[j].shape).unwrap_or(usize::MAX);
    let mut end = 0;
    for (i, node) in g.nodes.iter().enumerate() {
        let moved = node
            .inputs
            .iter()
            .fold(elems(i), |s, &j| s.saturating_add(elems(j)))
            .saturating_mul(4);
        let weights = match &node.op {
            Op::Dense { weights, .. } => weights.kernel.len().saturating_mul(4),
            Op::Step(s) => s.0.weight_bytes(),
            _ => 0,
        };
        if weights.saturating_mul(WEIGHT_SHARE) > moved && weights > bytes / 16 {
            break;
        }
        if moved >= bytes && !matches!(node.op, Op::Input) {
            end = i + 1;
        }
    }
    end
}
