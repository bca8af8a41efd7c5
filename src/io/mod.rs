//! Files in and out. `.npy` tensors for `sinter run`; model formats come next.

pub mod npy;
