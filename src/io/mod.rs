//! Files in and out: `.npy` tensors, Keras `.keras` / `.weights.h5` models, ONNX models.

pub mod hdf5;
pub mod npy;
