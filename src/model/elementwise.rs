//! Elementwise layer payloads: one-input functions and many-input merges.

/// The elementwise function of a [`Primitive::Unary`](super::Primitive::Unary). Each is one scalar function in every tier
/// and batch (`libm` where the standard library has none), so its bits never depend on the
/// machine.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary {
    /// `sqrt(x)` (NaN below zero).
    Sqrt,
    /// `-x`.
    Neg,
    /// `|x|`.
    Abs,
    /// The error function.
    Erf,
    /// `x` to a constant power (`x * x` for 2, `powf` otherwise).
    Pow(f32),
    /// `x / d` for a constant `d` (a true division, not a multiplication by `1 / d`).
    Div(f32),
    /// `min(max(x, min), max)`; NaN stays NaN.
    Clip {
        /// Lower bound.
        min: f32,
        /// Upper bound.
        max: f32,
    },
}

impl Unary {
    /// The function at `x`.
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Unary::Sqrt => x.sqrt(),
            Unary::Neg => -x,
            Unary::Abs => x.abs(),
            Unary::Erf => libm::erff(x),
            Unary::Pow(2.0) => x * x,
            Unary::Pow(1.0) => x,
            Unary::Pow(p) => libm::powf(x, p),
            Unary::Div(d) => x / d,
            Unary::Clip { min, max } => {
                if x.is_nan() {
                    x
                } else {
                    x.max(min).min(max)
                }
            }
        }
    }

    /// The same function in f64 (the reference's).
    pub fn apply_f64(self, x: f64) -> f64 {
        match self {
            Unary::Sqrt => x.sqrt(),
            Unary::Neg => -x,
            Unary::Abs => x.abs(),
            Unary::Erf => libm::erf(x),
            Unary::Pow(p) => x.powf(f64::from(p)),
            Unary::Div(d) => x / f64::from(d),
            Unary::Clip { min, max } => {
                if x.is_nan() {
                    x
                } else {
                    x.max(f64::from(min)).min(f64::from(max))
                }
            }
        }
    }

    /// The ONNX operator's name.
    pub fn name(self) -> &'static str {
        match self {
            Unary::Sqrt => "Sqrt",
            Unary::Neg => "Neg",
            Unary::Abs => "Abs",
            Unary::Erf => "Erf",
            Unary::Pow(_) => "Pow",
            Unary::Div(_) => "Div",
            Unary::Clip { .. } => "Clip",
        }
    }
}

impl std::fmt::Display for Unary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unary::Pow(p) => write!(f, "pow({p})"),
            Unary::Div(d) => write!(f, "div({d})"),
            Unary::Clip { min, max } => write!(f, "clip({min}, {max})"),
            u => f.write_str(&u.name().to_lowercase()),
        }
    }
}
