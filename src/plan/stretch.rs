//! A stretch: the first steps of a plan run one sample at a time, each sample through all of
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

/// The steps a plan runs one sample at a time ([`Plan::stretch`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stretch {
    /// Steps, in plan order.
    pub steps: Range<usize>,
    /// Arena offsets of the blocks the stretch both writes and last reads: one sample long,
    /// every sample's in the same place. The other blocks its steps touch hold the whole
    /// chunk of samples.
    pub local: Vec<usize>,
}

/// Where sample `at` of the chunk finds a block at `loc` holding `len` values per sample in a
/// run of the stretch's steps: a stretch's own block in place, any other `at` samples in
/// (`at` is 0 outside a stretch).
pub(crate) fn place(stretch: Option<&Stretch>, loc: Loc, len: usize, at: usize) -> Loc {
    match (stretch, loc) {
        (Some(s), Loc::Arena(o)) if at > 0 && !s.local.contains(&o) => Loc::Arena(o + at * len),
        _ => loc,
    }
}

/// Bytes a node moves per sample (its inputs read and its output written) from which it
/// belongs in a stretch, by default: half of L2, where a map and its producer's stop
/// sharing the cache; none with more than one thread. (Each step of a stretch split over two
/// threads, two samples a run, made mobilenet_v3_small's batch 8 10-18% slower than no
/// stretch: four times the steps to hand out. Each thread taking its own samples through
/// the whole stretch would need blocks and scratch of its own.)
pub(super) fn default_bytes(threads: usize) -> usize {
    match threads {
        1 => kernels::Caches::get().l2 / 2,
        _ => 0,
    }
}

/// Weights a stretch's node may read per sample, as a share of the values it moves (a
/// stretch reads a node's weights once per sample instead of once per batch: resnet18's 64x64
/// Winograd kernels, 262 KB against 1.7 MB moved, made its batch 8 4-16% slower), unless
/// they are below a sixteenth of the bytes that make a node large (a squeeze-and-excitation
/// block's 16x8 kernel, a 96x40 projection).
const WEIGHT_SHARE: usize = 16;

/// The nodes of `g` to run as a stretch, `..end`: through the last node that moves at least
/// `bytes` per sample, stopping before any node whose weights outweigh a sixteenth of what
/// it moves and of `bytes`; and past that last large node up to where the fewest values
/// cross the stretch's end (they are read back after every sample's pass, from beyond L2:
/// mobilenet_v3_small's stretch ending at a depthwise output read by its squeeze-and-
/// excitation block made the next steps 3% slower; it ends after the block's projection).
/// 0 (none) without such a node, with a sequence axis (lengths vary per run) or when `bytes`
/// is 0.
pub(super) fn nodes(g: &Graph, buffers: &Buffers, has_seq: bool, bytes: usize) -> usize {
    if has_seq || bytes == 0 {
        return 0;
    }
    let elems = |j: usize| checked_elems(&g.nodes[j].shape).unwrap_or(usize::MAX);
    let (mut last_large, mut stop) = (None, g.nodes.len());
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
            stop = i;
            break;
        }
        if moved >= bytes && !matches!(node.op, Op::Input) {
            last_large = Some(i);
        }
    }
    let Some(last_large) = last_large else {
        return 0;
    };
    // Each buffer's first writer; values per sample crossing an end at node `end`: the
    // buffers written before it and read at or after it.
    let mut born = vec![usize::MAX; buffers.sized_by.len()];
    for (i, &b) in buffers.buf_of.iter().enumerate() {
        born[b] = born[b].min(i);
    }
    let crossing = |end: usize| -> usize {
        (0..born.len())
            .filter(|&b| born[b] < end && buffers.last_use[b] >= end)
            .map(|b| elems(buffers.sized_by[b]))
            .fold(0, usize::saturating_add)
    };
    (last_large + 1..=stop)
        .min_by_key(|&end| crossing(end))
        .unwrap_or(0)
}
