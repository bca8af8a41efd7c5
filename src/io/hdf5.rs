//! A minimal, read-only HDF5 reader for the files h5py writes (Keras weights).
