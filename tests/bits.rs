//! The output bits of every fixture (transformer encoders included, at the sequence length of
//! their inputs) and built-in model, pinned: each output's bits hashed (FNV-1a over the f32
//! bit patterns), on every ISA tier this CPU has, must equal the line
//! committed in `tests/fixtures/bits.txt` (recorded on an AMD EPYC Zen 5, run on whatever CPU CI
//! has: the bits do not depend on the machine). A refactor that moves any bit of any output
//! fails here; a change meant to move bits (a more accurate activation, say) rewrites the file
//! with `SINTER_BLESS=1 cargo test --release --test bits` and shows the moved lines in its diff.

mod common;

use serde_json::Value;
use sinter::io::npy::{self, Array};
use sinter::model::init::SplitMix64;
use sinter::plan::{CompileOptions, Values};
use sinter::{Isa, LoadOptions, Model, builtin};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn fnv(v: &[f32]) -> u64 {
    v.iter()
        .flat_map(|x| x.to_bits().to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// A model and its inputs.
struct Case {
    name: String,
    model: Model,
    inputs: Vec<Array>,
}

fn read(path: &Path) -> Array {
    npy::read(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .1
}

/// Every case of the manifest in `sub` that loads, with its inputs:
/// `"input"` (one file) or `"inputs"` (`[{"file": ..}]`); outputs restricted to the manifest's
/// `"outputs"` with a `"file"` where it lists them.
fn manifest(sub: &str) -> Vec<Case> {
    let dir = fixtures().join(sub);
    let text = std::fs::read_to_string(dir.join("manifest.json")).expect("manifest.json");
    let v: Value = serde_json::from_str(&text).expect("manifest is JSON");
    let mut cases = vec![];
    for c in v["cases"].as_array().expect("cases") {
        if c.get("error").is_some() {
            continue;
        }
        let name = format!("{sub}{}", c["name"].as_str().unwrap());
        let inputs: Vec<Array> = match &c["input"] {
            Value::String(f) => vec![read(&dir.join(f))],
            _ => c["inputs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| read(&dir.join(i["file"].as_str().unwrap())))
                .collect(),
        };
        let outputs: Vec<&str> = c["outputs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|o| o["file"].is_string())
            .filter_map(|o| o["name"].as_str())
            .collect();
        let mut opts = LoadOptions::new();
        if !outputs.is_empty() {
            opts = opts.outputs(outputs);
        }
        // Encoders with a symbolic sequence axis load at the length their inputs have.
        if let Some(seq) = c["seq"].as_u64() {
            opts = opts.seq(seq as usize);
        }
        let path = dir.join(c["model"].as_str().unwrap());
        // Files refused on purpose (graphs.rs's REFUSED) have no outputs; a file that stops
        // loading shows as lines gone.
        let Ok(model) = sinter::io::load_with(&path, &opts) else {
            continue;
        };
        cases.push(Case {
            name,
            model,
            inputs,
        });
    }
    cases
}

/// The built-ins on 5 deterministic samples.
fn builtins() -> Vec<Case> {
    builtin::NAMES
        .iter()
        .map(|&name| {
            let model = builtin::by_name(name).unwrap();
            let n = 5 * model.input_shape().iter().product::<usize>();
            let mut r = SplitMix64::new(11);
            let x = (0..n).map(|_| r.next_signed() * 2.0).collect();
            Case {
                name: format!("builtin:{name}"),
                model,
                inputs: vec![Array::F32(x)],
            }
        })
        .collect()
}

/// `name output hash` lines of `case`, checked to agree on every tier.
fn lines(case: &Case) -> Vec<String> {
    let values: Vec<Values> = case.inputs.iter().map(Array::values).collect();
    let len = case.inputs[0].values().len();
    let batch = len / case.model.input_shape().iter().product::<usize>().max(1);
    let mut first: Option<Vec<u64>> = None;
    for isa in Isa::available() {
        let opts = CompileOptions::new().isa(isa).threads(1).max_batch(batch);
        let plan = Arc::new(case.model.compile(&opts).expect("compiles"));
        let outs = plan.run_all(&values).expect("runs");
        let hashes: Vec<u64> = outs.iter().map(|o| fnv(o)).collect();
        match &first {
            None => first = Some(hashes),
            Some(f) => assert_eq!(
                f, &hashes,
                "{}: {isa} differs from the first tier",
                case.name
            ),
        }
    }
    let names = case.model.output_names();
    first
        .unwrap()
        .iter()
        .zip(names)
        .map(|(h, o)| format!("{} {o} {h:016x}", case.name))
        .collect()
}

#[test]
fn every_output_keeps_its_bits() {
    let mut got = vec![];
    for sub in common::MANIFESTS {
        for case in manifest(sub) {
            got.extend(lines(&case));
        }
    }
    for case in builtins() {
        got.extend(lines(&case));
    }
    let path = fixtures().join("bits.txt");
    let text = got.join("\n") + "\n";
    if std::env::var_os("SINTER_BLESS").is_some() {
        std::fs::write(&path, &text).expect("writes bits.txt");
        return;
    }
    let want = std::fs::read_to_string(&path).expect("tests/fixtures/bits.txt (SINTER_BLESS=1)");
    let want: Vec<&str> = want.lines().collect();
    let moved: Vec<String> = got
        .iter()
        .filter(|l| !want.contains(&l.as_str()))
        .cloned()
        .collect();
    let gone: Vec<&str> = want
        .iter()
        .filter(|l| !got.contains(&l.to_string()))
        .copied()
        .collect();
    assert!(
        moved.is_empty() && gone.is_empty(),
        "{} outputs moved or new:\n{}\n{} recorded lines gone:\n{}",
        moved.len(),
        moved.join("\n"),
        gone.len(),
        gone.join("\n")
    );
    assert_eq!(got.len(), 249, "outputs hashed");
}
