//! Every Keras file a user has: whole-model HDF5 from tf_keras (Keras 2) and from Keras 3's
//! legacy writer, tf_keras's own `.keras` archives, and tf_keras `to_json()` + legacy
//! `save_weights` files, for the seed model (Functional, Sequential with an InputLayer,
//! Sequential with `batch_input_shape`), an activation stack, a Conv1D model,
//! Dense + BatchNormalization models and an 11-layer model also saved through h5py's
//! `libver="latest"` (dense link storage). Fixtures: `scripts/make_legacy_fixtures.py`
//! (tf_keras 2.21, Keras 3.15.1); each producer's own `predict` is the reference, within the
//! golden tests' `atol = rtol = 2e-5`. Hostile files are refused with the problem named.

mod common;

use serde_json::Value;
use sinter::plan::CompileOptions;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/legacy")
}

fn manifest() -> Value {
    let text = std::fs::read_to_string(dir().join("manifest.json")).expect("manifest.json");
    serde_json::from_str(&text).expect("manifest is JSON")
}

/// Cases of legacy/manifest.json.
const LEGACY_CASES: usize = 41;

#[test]
fn legacy_keras_files_match_their_producers() {
    let m = manifest();
    let cases = m["cases"].as_array().unwrap();
    assert_eq!(cases.len(), LEGACY_CASES, "cases in the manifest");
    let mut formats = std::collections::BTreeSet::new();
    let mut failures = vec![];
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let file = dir().join(case["model"].as_str().unwrap());
        formats.insert(case["format"].as_str().unwrap().to_string());
        let run = || -> Result<f32, String> {
            let model = sinter::io::load(&file).map_err(|e| format!("load: {e}"))?;
            let producer = case["producer"].as_str().unwrap_or_default();
            let version = if producer.contains("keras 3") || case["format"] == "k3.h5" {
                "Keras 3."
            } else {
                "Keras 2."
            };
            if !model.origin().starts_with(version) {
                return Err(format!("origin {:?}, expected {version}..", model.origin()));
            }
            let (shape, x) =
                sinter::io::npy::read_f32(&dir().join(case["input"].as_str().unwrap()))
                    .map_err(|e| e.to_string())?;
            let (_, want) =
                sinter::io::npy::read_f32(&dir().join(case["expected"].as_str().unwrap()))
                    .map_err(|e| e.to_string())?;
            let plan = Arc::new(
                model
                    .compile(&CompileOptions::new().max_batch(shape[0]))
                    .map_err(|e| format!("compile: {e}"))?,
            );
            let got = plan.run(&x).map_err(|e| format!("run: {e}"))?;
            common::golden_diff(&got, &want, got.len() / shape[0], 2e-5, 2e-5)
        };
        match run() {
            Ok(w) => println!(
                "{name:28} {:12} max|sinter-producer| {w:.1e}",
                case["format"].as_str().unwrap()
            ),
            Err(e) => failures.push(format!("{name} ({}): {e}", file.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for f in ["tfk.h5", "k3.h5", "tfk.json", "tfk.keras", "tfk.latest.h5"] {
        assert!(formats.contains(f), "no {f} case");
    }
}

#[test]
fn hostile_legacy_files_are_refused_with_context() {
    for (file, words) in [
        ("hostile_truncated_config.h5", "config is not valid JSON"),
        ("hostile_kernel_shape.h5", "[784, 31]"),
        ("hostile_no_layer_names.h5", "no layer_names attribute"),
    ] {
        let path = dir().join(file);
        let e = sinter::io::load(&path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains(words) && e.contains(file),
            "{file}: {e:?} should contain {words:?}"
        );
    }
    // A weights-only file loaded on its own says what it needs.
    let e = sinter::io::keras::load_h5(dir().join("seed.tfk.weights.h5"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("weights-only"), "{e}");
}

/// A whole-model file cut anywhere (its attributes, heaps and datasets then point past the end)
/// is an error, never a panic or an allocation of what the file declares; a cut that only
/// drops unused trailing bytes gives the very same model.
#[test]
fn truncated_legacy_files_are_errors() {
    let bytes = std::fs::read(dir().join("seed.tfk.h5")).unwrap();
    let opts = sinter::io::LoadOptions::default();
    let whole = sinter::io::keras::from_h5_with(&bytes, Path::new("whole.h5"), &opts).unwrap();
    let (mut cut, mut errors) = (0, 0);
    while cut < bytes.len() {
        match sinter::io::keras::from_h5_with(&bytes[..cut], Path::new("cut.h5"), &opts) {
            Err(_) => errors += 1,
            Ok(m) => assert_eq!(m, whole, "a file cut at {cut} of {} bytes", bytes.len()),
        }
        cut += 997;
    }
    assert!(errors + 1 >= bytes.len() / 997, "{errors} errors");
}
