//! Conv2D and 2-D pooling: random 2-D CNNs (kernel sizes, strides, dilation, padding, pools, a
//! residual add, three heads) keep every invariant bit for bit (fused == separate, ISA tiers,
//! 2/3 threads, a sample alone == in the batch) and agree with an f64 evaluation written here
//! from Keras's definitions, independent of sinter's windows. Hostile configurations are shape
//! errors, never panics.

mod common;

use common::bound::{Bounded, dot, pool};
use common::run_once as run;
use proptest::prelude::*;
use sinter::Activation;
use sinter::model::init::SplitMix64;
use sinter::model::*;
use sinter::plan::CompileOptions;

/// One Conv2D (or, with `depthwise`, a DepthwiseConv2D whose multiplier is the filters
/// count): kernel, strides, dilation, `same` padding, activation, bias, channel groups
/// (where they divide both channel counts, else 1).
#[derive(Clone, Debug)]
struct ConvSpec {
    depthwise: bool,
    groups: usize,
    kernel: (usize, usize),
    strides: (usize, usize),
    dilation: (usize, usize),
    same: bool,
    act: usize,
    bias: bool,
}

/// A pool: max (else mean), size, strides, `same` padding.
type PoolSpec = (bool, (usize, usize), (usize, usize), bool);

/// A random 2-D CNN: convolutions, then optionally a second branch added to the last one
/// (same config, its own weights), a pool, and a head: Flatten, global max or global mean.
#[derive(Clone, Debug)]
struct Net {
    h: usize,
    w: usize,
    ch: usize,
    convs: Vec<(ConvSpec, usize)>,
    residual: bool,
    /// Scale by the channel means (`GlobalAveragePooling2D(keepdims) -> Multiply`, a
    /// squeeze-and-excitation block without its Dense layers): a broadcast merge.
    scale: bool,
    pool: Option<PoolSpec>,
    head: usize,
    units: usize,
    batch: usize,
    seed: u64,
}

fn weights(rng: &mut SplitMix64, k: usize, n: usize, bias: bool) -> (Vec<f32>, Option<Vec<f32>>) {
    let s = (3.0 / k as f32).sqrt();
    let w = (0..k * n).map(|_| rng.next_signed() * s).collect();
    let b = bias.then(|| (0..n).map(|_| rng.next_signed() * 0.3).collect());
    (w, b)
}

impl ConvSpec {
    /// The groups of a Conv2D from `cin` channels to `f` filters.
    fn groups(&self, cin: usize, f: usize) -> usize {
        if cin.is_multiple_of(self.groups) && f.is_multiple_of(self.groups) {
            self.groups
        } else {
            1
        }
    }
}

fn pad(same: bool) -> Padding {
    if same { Padding::Same } else { Padding::Valid }
}

impl Net {
    /// Convolutions (and a residual branch) over `[h, w, ch]`, then Flatten and a Dense of 3.
    fn plain(
        (h, w, ch): (usize, usize, usize),
        convs: Vec<(ConvSpec, usize)>,
        residual: bool,
        (batch, seed): (usize, u64),
    ) -> Net {
        Net {
            h,
            w,
            ch,
            convs,
            residual,
            scale: false,
            pool: None,
            head: 0,
            units: 3,
            batch,
            seed,
        }
    }

    fn conv(
        &self,
        rng: &mut SplitMix64,
        h: &Tensor,
        c: &ConvSpec,
        f: usize,
    ) -> Result<Tensor, String> {
        let cin = h.shape()[2];
        if c.depthwise {
            let (w, b) = weights(rng, c.kernel.0 * c.kernel.1, cin * f, c.bias);
            return DepthwiseConv2D::new(c.kernel)
                .strides(c.strides)
                .dilation_rate(c.dilation)
                .padding(pad(c.same))
                .depth_multiplier(f)
                .activation(Activation::ALL[c.act])
                .use_bias(c.bias)
                .weights(w, b)
                .call(h)
                .map_err(|e| e.to_string());
        }
        let g = c.groups(cin, f);
        let (w, b) = weights(rng, c.kernel.0 * c.kernel.1 * cin / g, f, c.bias);
        Conv2D::new(f, c.kernel)
            .groups(g)
            .strides(c.strides)
            .dilation_rate(c.dilation)
            .padding(pad(c.same))
            .activation(Activation::ALL[c.act])
            .use_bias(c.bias)
            .weights(w, b)
            .call(h)
            .map_err(|e| e.to_string())
    }

    /// The model, or the shape error of a window that does not fit.
    fn model(&self) -> Result<Model, String> {
        let mut rng = SplitMix64::new(self.seed);
        let x = Input::new([self.h, self.w, self.ch]).unwrap();
        let mut h = x.clone();
        let last = self.convs.len() - 1;
        for (i, (c, f)) in self.convs.iter().enumerate() {
            let y = self.conv(&mut rng, &h, c, *f)?;
            h = if i == last && self.residual {
                let z = self.conv(&mut rng, &h, c, *f)?;
                Add::new().call(&[&y, &z]).unwrap()
            } else {
                y
            };
        }
        if self.scale {
            let g = GlobalAveragePooling2D::new(true).call(&h).unwrap();
            h = Multiply::new().call(&[&h, &g]).unwrap();
        }
        if let Some((max, size, strides, same)) = self.pool {
            h = if max {
                MaxPooling2D::new(size, strides, pad(same)).call(&h)
            } else {
                AveragePooling2D::new(size, strides, pad(same)).call(&h)
            }
            .map_err(|e| e.to_string())?;
        }
        h = match self.head {
            0 => Flatten::new().call(&h).unwrap(),
            1 => Flatten::new()
                .call(&GlobalMaxPooling2D::new(true).call(&h).unwrap())
                .unwrap(),
            _ => GlobalAveragePooling2D::new(false).call(&h).unwrap(),
        };
        let (w, b) = weights(&mut rng, h.shape()[0], self.units, true);
        let y = Dense::new(self.units).weights(w, b).call(&h).unwrap();
        Ok(Model::new(&x, &y).unwrap())
    }

    fn input(&self, specials: bool) -> Vec<f32> {
        common::input_rows(self.seed, self.batch, self.h * self.w * self.ch, specials)
    }
}

fn elementwise() -> impl Strategy<Value = usize> {
    (0..Activation::ALL.len()).prop_filter("elementwise", |&a| !Activation::ALL[a].is_row_wise())
}

fn conv_spec() -> impl Strategy<Value = ConvSpec> {
    (
        (1usize..4, 1usize..4),
        (1usize..3, 1usize..3),
        (1usize..3, 1usize..3),
        any::<bool>(),
        elementwise(),
        any::<bool>(),
        any::<bool>(),
        1usize..4,
    )
        .prop_map(
            |(kernel, strides, dilation, same, act, bias, depthwise, groups)| ConvSpec {
                depthwise,
                groups,
                kernel,
                strides,
                dilation,
                same,
                act,
                bias,
            },
        )
}

fn net() -> impl Strategy<Value = Net> {
    (
        // Up to 24 columns: rows of 12 outputs or more read their windows in place.
        (3usize..12, 3usize..25, 1usize..5),
        prop::collection::vec((conv_spec(), 1usize..9), 1..3),
        (any::<bool>(), any::<bool>()),
        prop::option::of((
            any::<bool>(),
            (1usize..4, 1usize..4),
            (1usize..3, 1usize..3),
            any::<bool>(),
        )),
        (0usize..3, 1usize..6, 1usize..5, any::<u64>()),
    )
        .prop_map(|((h, w, ch), convs, (residual, scale), pool, rest)| Net {
            h,
            w,
            ch,
            convs,
            residual,
            scale,
            pool,
            head: rest.0,
            units: rest.1,
            batch: rest.2,
            seed: rest.3,
        })
}

/// A max pool of whole windows `size` side by side (the strides), valid: what a convolution
/// step runs on its outputs when the pool alone reads them.
fn whole_max_pool(size: (usize, usize)) -> PoolSpec {
    (true, size, size, false)
}

/// Nets whose convolutions run as Winograd F(2x2, 3x3): 3x3, stride 1, 16 or more channels
/// and filters (32: a pool may run in the step), over inputs of 3 to 13 positions a side (odd
/// and even outputs: patches clipped at the right and bottom edges), perhaps a 2x2 max pool.
fn winograd_net() -> impl Strategy<Value = Net> {
    let filters = prop_oneof![16usize..21, Just(32)];
    let conv =
        (any::<bool>(), elementwise(), any::<bool>(), filters).prop_map(|(same, act, bias, f)| {
            let spec = ConvSpec {
                depthwise: false,
                groups: 1,
                kernel: (3, 3),
                strides: (1, 1),
                dilation: (1, 1),
                same,
                act,
                bias,
            };
            (spec, f)
        });
    (
        (3usize..14, 3usize..14, 16usize..21),
        prop::collection::vec(conv, 1..3),
        (any::<bool>(), any::<bool>()),
        (1usize..5, any::<u64>()),
    )
        .prop_map(|((h, w, ch), convs, (residual, pool), (batch, seed))| Net {
            pool: pool.then(|| whole_max_pool((2, 2))),
            ..Net::plain((h, w, ch), convs, residual, (batch, seed))
        })
}

/// Nets whose first convolution runs as a direct loop: one to three channels (window rows
/// shorter than an implicit im2col reads well), 16 to 64 filters (blocks of 32 and a last one
/// of 16), any kernel but 1x1, strides, row dilation, padding, any activation (cheap ones on
/// the registers, the rest on the stored rows); perhaps a max pool of whole windows.
fn direct_net() -> impl Strategy<Value = Net> {
    let conv = (
        ((1usize..4, 1usize..4), (1usize..3, 1usize..3), 1usize..3),
        (any::<bool>(), elementwise(), any::<bool>(), 1usize..5),
    )
        .prop_filter("not 1x1", |((k, _, _), _)| *k != (1, 1))
        .prop_map(|((kernel, strides, dh), (same, act, bias, f))| {
            let spec = ConvSpec {
                depthwise: false,
                groups: 1,
                kernel,
                strides,
                dilation: (dh, 1),
                same,
                act,
                bias,
            };
            (spec, 16 * f)
        });
    (
        (3usize..12, 3usize..14, 1usize..3),
        conv,
        (any::<bool>(), prop::option::of((1usize..4, 1usize..4))),
        (1usize..5, any::<u64>()),
    )
        .prop_map(|((h, w, ch), conv, (residual, pool), (batch, seed))| Net {
            pool: pool.map(whole_max_pool),
            ..Net::plain((h, w, ch), vec![conv], residual, (batch, seed))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(common::cases(60)))]

    /// Direct convolutions keep every invariant and the GEMM's rounding bound of the f64
    /// convolution.
    #[test]
    fn direct_convs_keep_every_invariant_and_match_f64(
        net in direct_net(),
        specials in any::<bool>(),
    ) {
        // A pool that alone reads the convolution runs in its step.
        let pooled = !net.residual && net.pool.is_some_and(|p| p.1 != (1, 1));
        algorithm_holds(net, specials, if pooled { "then max pool" } else { "direct conv" })?;
    }

    /// Winograd convolutions keep every invariant and stay within their own rounding bound
    /// of the f64 convolution.
    #[test]
    fn winograd_convs_keep_every_invariant_and_match_f64(
        net in winograd_net(),
        specials in any::<bool>(),
    ) {
        // A 2x2 pool that alone reads the last convolution runs in its step when its filters
        // are whole vectors of every tier.
        let whole = net.convs.last().is_some_and(|c| c.1 % 16 == 0);
        let pooled = !net.residual && net.pool.is_some() && whole;
        algorithm_holds(net, specials, if pooled { "max-pooled" } else { "winograd" })?;
    }
}

/// A net whose convolutions run as another algorithm than the GEMM keeps every invariant
/// (with its activations, which may keep the GEMM: a direct loop runs cheap ones only) and,
/// with linear activations (its plan then shows `shows`), stays within its bound of the f64
/// evaluation.
fn algorithm_holds(mut net: Net, specials: bool, shows: &str) -> Result<(), TestCaseError> {
    let Ok(model) = net.model() else {
        return Err(TestCaseError::reject("a window that does not fit"));
    };
    let x = net.input(specials);
    common::every_invariant(&model, &x, net.batch).map_err(TestCaseError::fail)?;
    net.convs.iter_mut().for_each(|(c, _)| c.act = 0);
    let plan = net
        .model()
        .unwrap()
        .compile(&CompileOptions::new())
        .unwrap();
    prop_assert!(plan.to_string().contains(shows), "{plan}");
    matches_f64(&net)
}

/// The net's output for its finite input is within the rounding bound of its f64 evaluation.
fn matches_f64(net: &Net) -> Result<(), TestCaseError> {
    let Ok(model) = net.model() else {
        return Err(TestCaseError::reject("a window that does not fit"));
    };
    let x = net.input(false);
    let got = run(&model, &x, CompileOptions::new().max_batch(net.batch));
    let mut want = Vec::new();
    for sample in x.chunks_exact(net.h * net.w * net.ch) {
        want.extend(net.f64(sample));
    }
    prop_assert_eq!(got.len(), want.len(), "output length");
    let checked = common::bound::check("conv2d net", &got, &want).map_err(TestCaseError::fail)?;
    prop_assert_eq!(checked, got.len(), "every output is checked");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(common::cases(300)))]

    #[test]
    fn conv2d_nets_keep_every_invariant(net in net(), specials in any::<bool>()) {
        let model = net.model();
        prop_assume!(model.is_ok(), "a window that does not fit");
        let model = model.unwrap();
        let x = net.input(specials);
        let compared = common::every_invariant(&model, &x, net.batch).map_err(TestCaseError::fail)?;
        prop_assume!(compared, "every output NaN: nothing to compare");
    }

    /// Finite inputs, linear activations: within a rounding bound of the f64 evaluation; a
    /// wrong window, padding side, stride, dilation or kernel layout is off by O(1).
    #[test]
    fn conv2d_nets_match_the_f64_reference(mut net in net()) {
        net.convs.iter_mut().for_each(|(c, _)| c.act = 0);
        matches_f64(&net)?;
    }
}

/// `[h, w, ch]` values of one sample.
struct Image {
    h: usize,
    w: usize,
    ch: usize,
    v: Vec<Bounded>,
}

impl Image {
    fn at(&self, r: usize, c: usize, k: usize) -> Bounded {
        self.v[(r * self.w + c) * self.ch + k]
    }
}

/// Keras's output length and padding before, along one axis.
fn axis(len: usize, span: usize, stride: usize, same: bool) -> (usize, usize) {
    if same {
        let out = len.div_ceil(stride);
        (out, ((out - 1) * stride + span).saturating_sub(len) / 2)
    } else {
        ((len - span) / stride + 1, 0)
    }
}

/// Input index of tap `t` of output `o`, or `None` in the padding.
fn tap(
    o: usize,
    t: usize,
    stride: usize,
    dilation: usize,
    before: usize,
    len: usize,
) -> Option<usize> {
    (o * stride + t * dilation)
        .checked_sub(before)
        .filter(|&i| i < len)
}

/// Winograd F(2x2, 3x3)'s transforms (Lavin and Gray): `Bᵀ` of an input patch, `G` of a
/// kernel, `Aᵀ` of the products.
const BT: [[f64; 4]; 4] = [
    [1.0, 0.0, -1.0, 0.0],
    [0.0, 1.0, 1.0, 0.0],
    [0.0, -1.0, 1.0, 0.0],
    [0.0, 1.0, 0.0, -1.0],
];
const G: [[f64; 3]; 4] = [
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.0, 0.0, 1.0],
];
const AT: [[f64; 4]; 2] = [[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, -1.0]];

/// `Σ_a Σ_b |l_a| m(a, b) |r_b|`: entry `(i, j)` of `|L| m |R|ᵀ` for rows `l`, `r`.
fn sandwich<const N: usize>(l: &[f64; N], r: &[f64; N], m: impl Fn(usize, usize) -> f64) -> f64 {
    let mut s = 0.0;
    for (a, la) in l.iter().enumerate() {
        for (b, rb) in r.iter().enumerate() {
            s += la.abs() * m(a, b) * rb.abs();
        }
    }
    s
}

/// A rigorous bound (and magnitude) for each output of a 3x3 stride-1 convolution computed as
/// Winograd F(2x2, 3x3), whatever the order of its sums: `|y - ŷ| <= gamma_n Σ_c |Aᵀ| (|Bᵀ|
/// |d_c| |B| ⊙ |G| |g_c| |Gᵀ|) |A|` plus the input errors through the (exact) convolution,
/// with `n` the roundings on any path: 2 in the input transform, 1 of the kernel transform, 1
/// product, the channel sum's chain, 4 in the output transform and the bias. `(oh, ph)`,
/// `(ow, pw)`: each axis's outputs and padding before.
fn winograd_bounds(
    x: &Image,
    (oh, ph): (usize, usize),
    (ow, pw): (usize, usize),
    w: &[f32],
    f: usize,
    bias: impl Fn(usize) -> f64,
) -> Vec<(f64, f64)> {
    let ch = x.ch;
    // |U| per channel and filter: |G| |g| |Gᵀ|.
    let u: Vec<[f64; 16]> = (0..ch * f)
        .map(|cj| {
            let (k, j) = (cj / f, cj % f);
            let g = |a: usize, b: usize| f64::from(w[((a * 3 + b) * ch + k) * f + j]).abs();
            std::array::from_fn(|xi| sandwich(&G[xi / 4], &G[xi % 4], g))
        })
        .collect();
    let roundings = 2 + 1 + 1 + ch.min(128) + ch.div_ceil(128) + 4 + 1;
    let mut out = Vec::with_capacity(oh * ow * f);
    for o in 0..oh {
        for q in 0..ow {
            // The patch holding (o, q): from padded position (2 (o / 2), 2 (q / 2)).
            let (r0, c0) = (2 * (o / 2), 2 * (q / 2));
            let at = |a: usize, b: usize, k: usize| {
                let (r, c) = ((r0 + a).checked_sub(ph), (c0 + b).checked_sub(pw));
                match (r.filter(|&r| r < x.h), c.filter(|&c| c < x.w)) {
                    (Some(r), Some(c)) => {
                        let v = x.at(r, c, k);
                        (v.v.abs() + v.e, v.e)
                    }
                    _ => (0.0, 0.0),
                }
            };
            // |V| per channel: |Bᵀ| |d| |B|.
            let v: Vec<[f64; 16]> = (0..ch)
                .map(|k| {
                    std::array::from_fn(|xi| {
                        sandwich(&BT[xi / 4], &BT[xi % 4], |a, b| at(a, b, k).0)
                    })
                })
                .collect();
            let (r, s) = (o - r0, q - c0);
            for j in 0..f {
                let mut mag = bias(j);
                for (k, vk) in v.iter().enumerate() {
                    let uk = &u[k * f + j];
                    for xi in 0..16 {
                        mag += AT[r][xi / 4].abs() * AT[s][xi % 4].abs() * vk[xi] * uk[xi];
                    }
                }
                // The input errors through the convolution itself.
                let mut prop = 0.0;
                for a in 0..3 {
                    for b in 0..3 {
                        for k in 0..ch {
                            let wv = f64::from(w[((a * 3 + b) * ch + k) * f + j]).abs();
                            prop += at(o - r0 + a, q - c0 + b, k).1 * wv;
                        }
                    }
                }
                out.push((prop + common::bound::gamma(roundings) * mag, mag));
            }
        }
    }
    out
}

impl Net {
    /// Conv2D as Keras defines it: kernel `[kh, kw, cin / groups, filters]`, filter `j`
    /// reading its group's channels, zeros outside the input;
    /// DepthwiseConv2D: kernel `[kh, kw, cin, f]`, output `k * f + m` reading channel `k`.
    fn conv64(x: &Image, c: &ConvSpec, w: &[f32], b: Option<&[f32]>, f: usize) -> Image {
        let f = if c.depthwise { x.ch * f } else { f };
        let cg = x.ch / c.groups(x.ch, f);
        let ((kh, kw), (sh, sw), (dh, dw)) = (c.kernel, c.strides, c.dilation);
        let (oh, ph) = axis(x.h, (kh - 1) * dh + 1, sh, c.same);
        let (ow, pw) = axis(x.w, (kw - 1) * dw + 1, sw, c.same);
        let mut v = Vec::with_capacity(oh * ow * f);
        for o in 0..oh {
            for q in 0..ow {
                for j in 0..f {
                    let mut terms = Vec::new();
                    for i in 0..kh {
                        let Some(r) = tap(o, i, sh, dh, ph, x.h) else {
                            continue;
                        };
                        for t in 0..kw {
                            let Some(col) = tap(q, t, sw, dw, pw, x.w) else {
                                continue;
                            };
                            if c.depthwise {
                                let m = f / x.ch;
                                let wi = (i * kw + t) * f + j;
                                terms.push((x.at(r, col, j / m), f64::from(w[wi])));
                                continue;
                            }
                            let first = j / (f * cg / x.ch) * cg;
                            for k in 0..cg {
                                let wi = ((i * kw + t) * cg + k) * f + j;
                                terms.push((x.at(r, col, first + k), f64::from(w[wi])));
                            }
                        }
                    }
                    v.push(dot(terms.into_iter(), b.map_or(0.0, |b| f64::from(b[j]))));
                }
            }
        }
        let winograd = (c.kernel, c.strides, c.dilation) == ((3, 3), (1, 1), (1, 1));
        if winograd && !c.depthwise && cg == x.ch {
            let bias = |j: usize| b.map_or(0.0, |b| f64::from(b[j]).abs());
            let bounds = winograd_bounds(x, (oh, ph), (ow, pw), w, f, bias);
            for (v, (e, mag)) in v.iter_mut().zip(bounds) {
                v.e = v.e.max(e);
                v.mag = v.mag.max(mag);
            }
        }
        Image {
            h: oh,
            w: ow,
            ch: f,
            v,
        }
    }

    /// The output for one sample in f64 (linear activations; weights drawn in `model`'s order).
    fn f64(&self, sample: &[f32]) -> Vec<Bounded> {
        let mut rng = SplitMix64::new(self.seed);
        let mut h = Image {
            h: self.h,
            w: self.w,
            ch: self.ch,
            v: sample.iter().map(|&v| Bounded::exact(v)).collect(),
        };
        let last = self.convs.len() - 1;
        for (i, (c, f)) in self.convs.iter().enumerate() {
            let (k, n) = if c.depthwise {
                (c.kernel.0 * c.kernel.1, h.ch * f)
            } else {
                (c.kernel.0 * c.kernel.1 * h.ch / c.groups(h.ch, *f), *f)
            };
            let (w, b) = weights(&mut rng, k, n, c.bias);
            let y = Self::conv64(&h, c, &w, b.as_deref(), *f);
            h = if i == last && self.residual {
                let (w, b) = weights(&mut rng, k, n, c.bias);
                let z = Self::conv64(&h, c, &w, b.as_deref(), *f);
                let v = y
                    .v
                    .iter()
                    .zip(&z.v)
                    .map(|(a, b)| {
                        Bounded::rounded(a.v + b.v, a.e + b.e, a.v.abs() + b.v.abs() + a.e + b.e, 1)
                    })
                    .collect();
                Image { v, ..y }
            } else {
                y
            };
        }
        if self.scale {
            let means: Vec<Bounded> = (0..h.ch)
                .map(|k| pool(false, (0..h.h * h.w).map(|p| h.v[p * h.ch + k])))
                .collect();
            let v =
                h.v.iter()
                    .enumerate()
                    .map(|(i, a)| {
                        let b = means[i % h.ch];
                        let e = a.e * (b.v.abs() + b.e) + b.e * a.v.abs();
                        Bounded::rounded(a.v * b.v, e, (a.v * b.v).abs() + e, 1)
                    })
                    .collect();
            h = Image { v, ..h };
        }
        if let Some((max, (ph, pw), (sh, sw), same)) = self.pool {
            let (oh, bh) = axis(h.h, ph, sh, same);
            let (ow, bw) = axis(h.w, pw, sw, same);
            let mut v = Vec::with_capacity(oh * ow * h.ch);
            for o in 0..oh {
                for q in 0..ow {
                    let cells: Vec<(usize, usize)> = (0..ph)
                        .filter_map(|i| tap(o, i, sh, 1, bh, h.h))
                        .flat_map(|r| {
                            (0..pw).filter_map(move |t| tap(q, t, sw, 1, bw, h.w).map(|c| (r, c)))
                        })
                        .collect();
                    for k in 0..h.ch {
                        v.push(pool(max, cells.iter().map(|&(r, c)| h.at(r, c, k))));
                    }
                }
            }
            h = Image {
                h: oh,
                w: ow,
                ch: h.ch,
                v,
            };
        }
        let flat: Vec<Bounded> = match self.head {
            0 => h.v,
            head => (0..h.ch)
                .map(|k| pool(head == 1, (0..h.h * h.w).map(|p| h.v[p * h.ch + k])))
                .collect(),
        };
        let (w, b) = weights(&mut rng, flat.len(), self.units, true);
        let b = b.unwrap();
        (0..self.units)
            .map(|j| {
                dot(
                    flat.iter()
                        .enumerate()
                        .map(|(i, &x)| (x, f64::from(w[i * self.units + j]))),
                    f64::from(b[j]),
                )
            })
            .collect()
    }
}

/// A bilinear UpSampling2D from Keras before 2.4 (TensorFlow 1's rule, without half-pixel
/// centers) is refused naming the layer, not computed with TensorFlow 2's rule; the same file
/// labelled Keras 3 loads.
#[test]
fn tf1_bilinear_upsampling_is_refused() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/conv2d");
    let e = sinter::io::load(dir.join("conv2d_grouped.keras224.h5"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("up_sampling2d") && e.contains("Keras 2.2.4") && e.contains("half-pixel"),
        "{e}"
    );
    assert!(sinter::io::load(dir.join("conv2d_grouped.h5")).is_ok());
}

#[test]
fn hostile_conv2d_configs_are_shape_errors() {
    let x = Input::new([4, 5, 3]).unwrap();
    // A valid window larger than the input, in either axis.
    assert!(Conv2D::new(2, (5, 1)).call(&x).is_err());
    assert!(
        Conv2D::new(2, (1, 3))
            .dilation_rate((1, 3))
            .call(&x)
            .is_err()
    );
    // Zero sizes.
    assert!(Conv2D::new(0, (1, 1)).call(&x).is_err());
    assert!(Conv2D::new(2, (0, 1)).call(&x).is_err());
    assert!(Conv2D::new(2, (1, 1)).strides((0, 1)).call(&x).is_err());
    assert!(
        MaxPooling2D::new((5, 1), (1, 1), Padding::Valid)
            .call(&x)
            .is_err()
    );
    assert!(
        AveragePooling2D::new((1, 1), (1, 0), Padding::Valid)
            .call(&x)
            .is_err()
    );
    // Groups that do not divide the channels (3) or the filters, and zero groups.
    assert!(Conv2D::new(2, (1, 1)).groups(2).call(&x).is_err());
    assert!(Conv2D::new(4, (1, 1)).groups(3).call(&x).is_err());
    assert!(Conv2D::new(3, (1, 1)).groups(0).call(&x).is_err());
    assert!(Conv2D::new(6, (1, 1)).groups(3).call(&x).is_ok());
    // A rank that is not an image.
    let seq = Input::new([4, 3]).unwrap();
    assert!(Conv2D::new(2, (1, 1)).call(&seq).is_err());
    assert!(GlobalAveragePooling2D::new(false).call(&seq).is_err());
    // A merge broadcasts over leading axes of size 1 only.
    let c = Input::new([1, 1, 3]).unwrap();
    let m = Input::new([4, 5, 1]).unwrap();
    assert!(Multiply::new().call(&[&x, &c]).is_ok());
    assert!(Multiply::new().call(&[&x, &m]).is_err());
    assert!(Add::new().call(&[&x, &seq]).is_err());
    // Causal padding is 1-D only.
    assert!(
        Conv2D::new(2, (1, 1))
            .padding(Padding::Causal)
            .call(&x)
            .is_err()
    );
    // Same padding keeps ceil(len / stride) even with a kernel far larger than the input.
    let y = Conv2D::new(2, (9, 9))
        .padding(Padding::Same)
        .strides((2, 3))
        .call(&x)
        .unwrap();
    assert_eq!(y.shape(), &[2, 2, 2]);
}

/// A DepthwiseConv2D's own softmax runs over each position's channels (Keras's last axis),
/// as the f64 reference does, fused or not.
#[test]
fn depthwise_softmax_is_per_position() {
    let x = Input::new([4, 5, 3]).unwrap();
    let mut rng = SplitMix64::new(7);
    let (w, b) = weights(&mut rng, 9, 6, true);
    let y = DepthwiseConv2D::new((3, 3))
        .padding(Padding::Same)
        .depth_multiplier(2)
        .activation(Activation::Softmax)
        .weights(w, b)
        .call(&x)
        .unwrap();
    let model = Model::new(&x, &y).unwrap();
    let input: Vec<f32> = (0..2 * 60).map(|i| (i as f32 * 0.37).sin()).collect();
    let want = sinter::reference::run(&model, &input).unwrap();
    for fuse in [true, false] {
        let got = run(
            &model,
            &input,
            CompileOptions::new().fuse(fuse).max_batch(2),
        );
        assert_eq!(got.len(), want.len());
        for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (f64::from(g) - w).abs() <= 1e-6,
                "fuse {fuse}, value {i}: {g} vs {w}"
            );
        }
        // Each position's six channels sum to one.
        for px in got.chunks_exact(6) {
            assert!((px.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{px:?}");
        }
    }
}

/// An image model whose first maps outweigh its weights runs its first steps a sample at a
/// time through all of them: the plan says so, its arena holds those maps for one sample
/// instead of the batch, and every bit is the plan's without a stretch, at every batch size
/// and thread count (two threads split its steps' rows), and each sample's alone when a batch
/// above the plan's chunk runs the stretch inside each chunk.
#[test]
fn a_stretch_of_steps_keeps_every_bit_and_shrinks_the_arena() {
    let x = Input::new([40, 40, 3]).unwrap();
    let mut rng = SplitMix64::new(11);
    let conv = |rng: &mut SplitMix64, (cin, f, k, s): (usize, usize, usize, usize), act, h| {
        let (w, b) = weights(rng, k * k * cin, f, true);
        Conv2D::new(f, (k, k))
            .strides((s, s))
            .padding(Padding::Same)
            .activation(act)
            .weights(w, b)
            .call(h)
            .unwrap()
    };
    let stem = conv(&mut rng, (3, 16, 3, 1), Activation::HardSilu, &x);
    let (w, b) = weights(&mut rng, 9, 16, true);
    let dw = DepthwiseConv2D::new((3, 3))
        .strides((2, 2))
        .padding(Padding::Same)
        .activation(Activation::RELU)
        .weights(w, b)
        .call(&stem)
        .unwrap();
    let expand = conv(&mut rng, (16, 48, 1, 1), Activation::RELU, &dw);
    let project = conv(&mut rng, (48, 16, 1, 1), Activation::Linear, &expand);
    let sum = Add::new().call(&[&dw, &project]).unwrap();
    let head = conv(&mut rng, (16, 64, 3, 2), Activation::RELU, &sum);
    let pooled = GlobalAveragePooling2D::new(false).call(&head).unwrap();
    let (w, b) = weights(&mut rng, 64, 10, true);
    let y = Dense::new(10).weights(w, b).call(&pooled).unwrap();
    let model = Model::new(&x, &y).unwrap();
    let input: Vec<f32> = (0..5 * 40 * 40 * 3)
        .map(|i| (i as f32 * 0.37).sin())
        .collect();
    let opts = |threads: usize, bytes: usize| {
        CompileOptions::new()
            .max_batch(5)
            .threads(threads)
            .parallel_flops(0)
            .stretch_bytes(bytes)
    };
    let plain = model.compile(&opts(1, 0)).unwrap();
    assert_eq!(plain.stretch(), None);
    let want = run(&model, &input, opts(1, 0));
    for threads in [1, 2] {
        let plan = model.compile(&opts(threads, 16 << 10)).unwrap();
        let steps = plan.stretch().expect("a stretch");
        assert!(steps.start == 0 && steps.len() >= 4, "{plan}");
        assert!(
            plan.to_string().contains("at a time through all of them"),
            "{plan}"
        );
        assert!(plan.arena_bytes() < plain.arena_bytes(), "{plan}");
        let got = run(&model, &input, opts(threads, 16 << 10));
        assert!(common::same_bits(&got, &want), "threads {threads}");
        for batch in 1..5 {
            let plan = std::sync::Arc::new(model.compile(&opts(threads, 16 << 10)).unwrap());
            let got = plan.run(&input[..batch * 4800]).unwrap();
            assert!(
                common::same_bits(&got, &want[..batch * 10]),
                "batch {batch}"
            );
        }
    }
    // A batch above the plan's chunk: the stretch inside each chunk of samples.
    let big: Vec<f32> = (0..40 * 4800).map(|i| (i as f32 * 0.61).cos()).collect();
    let chunked = |bytes| {
        let o = CompileOptions::new()
            .max_batch(40)
            .threads(1)
            .stretch_bytes(bytes);
        let plan = std::sync::Arc::new(model.compile(&o).unwrap());
        (
            plan.chunk(),
            plan.stretch().is_some(),
            plan.run(&big).unwrap(),
        )
    };
    let (chunk, stretched, got) = chunked(16 << 10);
    assert!(chunk < 40 && stretched, "chunk {chunk}");
    assert!(common::same_bits(&got, &chunked(0).2));
    let alone = std::sync::Arc::new(model.compile(&opts(1, 0)).unwrap());
    for (r, x) in big.chunks_exact(4800).enumerate() {
        let want = alone.run(x).unwrap();
        assert!(common::same_bits(&got[r * 10..][..10], &want), "sample {r}");
    }
}
