//! Deterministic weight initialisation (Glorot uniform, as Keras's default kernel initializer).

/// SplitMix64: tiny, fast, and the same sequence everywhere.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `[-1, 1)`.
    pub fn next_signed(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// Glorot-uniform `fan_in x fan_out` kernel: `U(-l, l)`, `l = sqrt(6 / (fan_in + fan_out))`.
/// The caller sizes the destination (`fan_in * fan_out` values).
pub fn glorot_uniform(fan_in: usize, fan_out: usize, seed: u64) -> impl Iterator<Item = f32> {
    let limit = (6.0 / (fan_in as f64 + fan_out as f64)).sqrt() as f32;
    let mut rng = SplitMix64::new(seed);
    (0..fan_in.saturating_mul(fan_out)).map(move |_| rng.next_signed() * limit)
}
