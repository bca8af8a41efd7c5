//! Measured tuning (as FFTW's MEASURE plans do): time candidate panel widths and blockings of
//! one layer on this machine at compile time and keep the fastest. The bits never depend on the
//! choice (each output's K-sum order is fixed by [`KB`]); `kernels::tests` checks every
//! candidate against the oracle.

use super::epilogue::EpOp;
use super::gemm::{Blocking, KB, KC};
use super::pack::{PackError, PackedB};
use super::{Isa, dense};
use std::time::{Duration, Instant};

/// Sets one field of a blocking candidate.
type SetField = fn(&mut Blocking, usize);

/// What [`tune`] chose for one layer.
#[derive(Debug)]
pub struct Tuned {
    /// The weights packed in the chosen width, carrying the chosen blocking.
    pub packed: PackedB,
    /// How the choice was made.
    pub report: TuneReport,
}

/// The measurements behind a tuning choice (shown by `sinter plan --tune`).
#[derive(Clone, Copy, Debug)]
pub struct TuneReport {
    /// Candidates timed.
    pub candidates: usize,
    /// Best time per call.
    pub best: Duration,
    /// The default configuration's time per call (panel width and blocking from the
    /// heuristics).
    pub default: Duration,
}

/// The blockings [`tune`] tries after choosing the panel width, in order: KC, then MC, then
/// the column block, each kept when faster (a coordinate search over a small grid).
pub fn candidates(
    k: usize,
    n: usize,
    nr: usize,
    mr: usize,
) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let k_max = k.div_ceil(KB).max(1) * KB;
    let mut kcs: Vec<usize> = [2 * KB, 4 * KB, KC, 2 * KC, k_max]
        .into_iter()
        .filter(|&kc| kc <= k_max.max(2 * KB))
        .collect();
    kcs.dedup();
    let mcs = [1, 2, 4, 8, 16].map(|f| f * mr).to_vec();
    let panels = n.div_ceil(nr).max(1);
    let mut ncs: Vec<usize> = [2, 4, 8, 16, 32, 64]
        .into_iter()
        .map(|p| p.min(panels))
        .collect();
    ncs.dedup();
    (kcs, mcs, ncs)
}

/// Median-free minimum of `reps` timed calls (at least 3, more for short calls, about 20 ms).
fn time(isa: Isa, m: usize, a: &[f32], w: &PackedB, c: &mut [f32], ops: &[EpOp<'_>]) -> Duration {
    dense(isa, m, a, w, c, ops); // warm caches and pages
    let budget = Instant::now();
    let mut best = Duration::MAX;
    let mut reps = 0;
    while reps < 3 || (reps < 200 && budget.elapsed() < Duration::from_millis(20)) {
        let t = Instant::now();
        dense(isa, m, a, w, c, ops);
        best = best.min(t.elapsed());
        reps += 1;
    }
    best
}

/// Times panel widths and blockings of `C = ops(A · W)` for `m` rows on `isa` (A random) and
/// returns the weights packed the fastest way. `default_packing` is the layer packed the
/// default way; `ops` the layer's epilogue, operands included. Runs on the calling thread;
/// takes tens to hundreds of milliseconds per layer.
pub fn tune(
    isa: Isa,
    kernel: &[f32],
    default_packing: &PackedB,
    m: usize,
    ops: &[EpOp<'_>],
) -> Result<Tuned, PackError> {
    let (k, n) = (default_packing.k(), default_packing.n());
    let m = m.max(1);
    let too_large = PackError::TooLarge { k, n };
    let (a_len, c_len) = match (m.checked_mul(k), m.checked_mul(n)) {
        (Some(a), Some(c)) => (a, c),
        _ => return Err(too_large),
    };
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let a: Vec<f32> = (0..a_len)
        .map(|_| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    let mut c = vec![0.0f32; c_len];
    let mut count = 0;
    let mut best: Option<(Duration, PackedB)> = None;
    let mut default = Duration::MAX;
    for t in isa.tiles() {
        let w = PackedB::pack_nr(isa, kernel, k, n, t.nr)?;
        if w.nr() != t.nr {
            continue;
        }
        let d = time(isa, m, &a, &w, &mut c, ops);
        count += 1;
        if t.nr == isa.nr_for(n) {
            default = d;
        }
        if best.as_ref().is_none_or(|(b, _)| d < *b) {
            best = Some((d, w));
        }
    }
    let (mut best_t, mut w) = best.ok_or(too_large)?;
    let mr = isa.mr_for(w.nr());
    // The driver uses a set blocking only above 2 x MR rows.
    if m > 2 * mr {
        let mut blk = Blocking::heuristic(m, k, w.nr(), mr);
        let (kcs, mcs, ncs) = candidates(k, n, w.nr(), mr);
        let fields: [(&[usize], SetField); 3] = [
            (&kcs, |b, v| b.kc = v),
            (&mcs, |b, v| b.mc = v),
            (&ncs, |b, v| b.nc_panels = v),
        ];
        for (values, set) in fields {
            for &v in values {
                let mut cand = blk;
                set(&mut cand, v);
                if cand == blk {
                    continue;
                }
                w.set_blocking(Some(cand));
                let d = time(isa, m, &a, &w, &mut c, ops);
                count += 1;
                // Keep a change only when clearly faster (2%): timings are noisy.
                if d.as_secs_f64() < best_t.as_secs_f64() * 0.98 {
                    best_t = d;
                    blk = cand;
                }
            }
        }
        w.set_blocking((blk != Blocking::heuristic(m, k, w.nr(), mr)).then_some(blk));
    }
    // The first timing runs on a colder machine (pages, caches, clocks): time the default
    // again now, so the report compares like with like.
    default = default.min(time(isa, m, &a, default_packing, &mut c, ops));
    Ok(Tuned {
        packed: w,
        report: TuneReport {
            candidates: count,
            best: best_t,
            default,
        },
    })
}
