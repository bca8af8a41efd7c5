//! The `sinter` binary: demo, bench --json, run with .npy files, verify, exit codes.

mod common;

use sinter::plan::CompileOptions;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

fn sinter(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sinter"))
        .args(args)
        .output()
        .expect("runs")
}

/// `sinter args`, which must succeed (its stderr shown if not): its stdout.
fn sinter_ok(args: &[&str]) -> String {
    let out = sinter(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sinter-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn demo_prints_summary_both_plans_and_bit_identical() {
    let out = sinter(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8_lossy(&out.stdout);
    for want in [
        "25,120",
        "264",
        "Total params: 25,384",
        "Plan (fused)",
        "Plan (separate)",
        "bit-identical",
    ] {
        assert!(s.contains(want), "missing {want:?} in:\n{s}");
    }
}

#[test]
fn bench_json_prints_one_object_per_batch() {
    let s = sinter_ok(&[
        "bench",
        "builtin:mnist-mlp",
        "--batch",
        "1,64",
        "--json",
        "--seconds",
        "0.05",
        "--threads",
        "1",
    ]);
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(lines.len(), 2, "{s}");
    for (line, batch) in lines.iter().zip([1, 64]) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["model"], "builtin:mnist-mlp");
        assert_eq!(v["batch"], batch);
        assert_eq!(v["threads"], 1);
        assert_eq!(v["fused"], true);
        assert!(v["median_us"].as_f64().unwrap() > 0.0);
    }
}

/// `--profile` times each step: one line per step of the plan after each batch's line, in
/// the plan's order, with the kernel `sinter plan` shows; the shares sum to one.
#[test]
fn bench_profile_times_every_step() {
    let model = fixture("conv2d/mnist_convnet.keras");
    let s = sinter_ok(&[
        "bench",
        &model,
        "--batch",
        "2",
        "--json",
        "--seconds",
        "0.05",
        "--profile",
    ]);
    let lines: Vec<serde_json::Value> = s
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let plan = String::from_utf8_lossy(&sinter(&["plan", &model]).stdout).to_string();
    let steps = &lines[1..];
    assert_eq!(lines[0]["batch"], 2);
    assert!(steps.len() >= 3, "{s}");
    let mut share = 0.0;
    for (i, v) in steps.iter().enumerate() {
        assert_eq!(v["step"], i);
        assert_eq!(v["batch"], 2);
        assert!(v["us"].as_f64().unwrap() >= 0.0);
        let kernel = v["kernel"].as_str().unwrap();
        assert!(
            plan.contains(kernel) && !kernel.is_empty(),
            "{kernel:?} not in\n{plan}"
        );
        share += v["share"].as_f64().unwrap();
    }
    assert!((share - 1.0).abs() < 0.01, "shares sum to {share}");
}

#[test]
fn run_reads_and_writes_npy_matching_the_library() {
    let x: Vec<f32> = (0..3 * 784)
        .map(|i| ((i * 7919) % 255) as f32 / 255.0)
        .collect();
    let input = tmp("x.npy");
    let output = tmp("y.npy");
    sinter::io::npy::write_f32(&input, &[3, 784], &x).unwrap();
    for fuse_flag in [None, Some("--no-fuse")] {
        let mut args = vec![
            "run",
            "builtin:seed",
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ];
        args.extend(fuse_flag);
        let out = sinter(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (shape, y) = sinter::io::npy::read_f32(&output).unwrap();
        assert_eq!(shape, [3, 8]);
        let plan = Arc::new(
            sinter::builtin::seed()
                .compile(&CompileOptions::default())
                .unwrap(),
        );
        let want = plan.run(&x).unwrap();
        assert_eq!(
            y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
}

#[test]
fn errors_exit_1_with_a_message_and_usage_exits_2() {
    let out = sinter(&["summary", "builtin:nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown built-in"));

    let bad = tmp("bad.npy");
    sinter::io::npy::write_f32(&bad, &[2, 5], &[0.0; 10]).unwrap();
    let out = sinter(&[
        "run",
        "builtin:seed",
        "--input",
        bad.to_str().unwrap(),
        "--output",
        tmp("o.npy").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected (batch, 784)"));

    let garbage = tmp("garbage.npy");
    std::fs::write(&garbage, b"\x93NUMPY\x01\x00garbage").unwrap();
    let out = sinter(&[
        "run",
        "builtin:seed",
        "--input",
        garbage.to_str().unwrap(),
        "--output",
        tmp("o.npy").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));

    assert_eq!(sinter(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(
        sinter(&["bench", "builtin:seed", "--batch", "x"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn verify_passes_on_builtins_and_plan_prints() {
    let out = sinter(&["verify", "builtin:seed", "--batch", "9"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = sinter(&["plan", "builtin:seed", "--no-fuse"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("separate activation passes"));
}

fn fixture(name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    p.to_str().unwrap().to_string()
}

/// Model files of every case of the fixture manifests, each once.
fn fixture_models() -> Vec<String> {
    let mut models = vec![];
    for sub in common::MANIFESTS {
        let text = std::fs::read_to_string(fixture(&format!("{sub}manifest.json"))).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        for c in v["cases"].as_array().unwrap() {
            // The graph fixture refused on purpose (rms_scaling), skl2onnx's ZipMap model
            // (verified with `--output output_label`) and the models marked "error" (refused:
            // tests/golden.rs) have their own tests.
            let skip = ["layernorm_rms", "skl_mlp_classifier_zipmap"];
            if !skip.contains(&c["name"].as_str().unwrap_or_default()) && c.get("error").is_none() {
                models.push(format!("{sub}{}", c["model"].as_str().unwrap()));
            }
        }
    }
    models.dedup();
    models
}

/// `verify --output` checks only the named outputs: skl2onnx's ZipMap model, refused whole,
/// verifies on its label.
#[test]
fn verify_checks_the_named_outputs() {
    let model = fixture("exporters/skl_mlp_classifier_zipmap.onnx");
    let whole = sinter(&["verify", &model]);
    assert_eq!(whole.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&whole.stderr).contains("ZipMap"));
    let label = sinter(&["verify", &model, "--output", "output_label", "--batch", "5"]);
    let text = String::from_utf8_lossy(&label.stdout);
    assert!(label.status.success(), "{text}");
    assert!(text.contains("all invariants hold"), "{text}");
    let nope = sinter(&["verify", "builtin:seed", "--output", "nope"]);
    assert_eq!(nope.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&nope.stderr).contains("no output named \"nope\""));
}

/// Model files `fixture_models` lists.
const FIXTURE_MODELS: usize = 247;

#[test]
fn verify_passes_on_every_fixture() {
    let models = fixture_models();
    assert_eq!(models.len(), FIXTURE_MODELS, "model files in the manifests");
    for model in models {
        // `--seq` sizes the symbolic sequence axis of the encoders; others have none.
        let out = sinter(&["verify", &fixture(&model), "--batch", "5", "--seq", "8"]);
        assert!(
            out.status.success(),
            "{model}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn run_on_keras_and_onnx_files_matches_the_peers() {
    // The time-major GRU (PyTorch's default layout) reads and writes its files' order:
    // `[steps, batch, ..]`.
    for (model, input, expected) in [
        ("seed.keras", "seed.input.npy", "seed.keras.out.npy"),
        ("seed.json", "seed.input.npy", "seed.keras.out.npy"),
        ("seed.onnx", "seed.input.npy", "seed.onnx.out.npy"),
        ("seed_ext.onnx", "seed.input.npy", "seed_ext.onnx.out.npy"),
        (
            "recurrent/torch_time_major.dynamo.onnx",
            "recurrent/torch_time_major.input.npy",
            "recurrent/torch_time_major.torch.out.npy",
        ),
    ] {
        let y = tmp(&format!("{}.out.npy", model.replace('/', "_")));
        let out = sinter(&[
            "run",
            &fixture(model),
            "--input",
            &fixture(input),
            "--output",
            y.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{model}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (shape, got) = sinter::io::npy::read_f32(&y).unwrap();
        let (want_shape, want) =
            sinter::io::npy::read_f32(std::path::Path::new(&fixture(expected))).unwrap();
        assert_eq!(shape, want_shape);
        // Softmax outputs; the tolerance is tests/golden.rs's for tanh/relu/softmax.
        let diff = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(diff <= 1e-5, "{model}: max |diff| {diff}");
    }
}

#[test]
fn summary_plan_and_bench_json_on_model_files() {
    let out = sinter(&["summary", &fixture("layers.keras")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("sequential") && s.contains("leaky_re_lu"), "{s}");
    let out = sinter(&["plan", &fixture("onnx_ops.onnx")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = sinter(&[
        "bench",
        &fixture("seed.onnx"),
        "--json",
        "--batch",
        "1,4",
        "--seconds",
        "0.05",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0]["median_us"].as_f64().unwrap() > 0.0);
    assert!(lines[0]["model"].as_str().unwrap().ends_with("seed.onnx"));
}

#[test]
fn bad_model_files_exit_1_with_the_file_named() {
    let bad = tmp("bad.onnx");
    std::fs::write(&bad, b"\xff\xff\xff\xff").unwrap();
    let out = sinter(&["summary", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.onnx") && err.contains("not an ONNX model"),
        "{err}"
    );
    let out = sinter(&[
        "verify",
        &fixture("onnx_hardsigmoid_default.onnx").replace(".onnx", ".missing.onnx"),
    ]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn closed_stdout_is_not_a_panic() {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_sinter"))
        .args(["plan", "builtin:conv1d"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // like `sinter plan M | head -0`
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.status.code() == Some(0), "{:?}", out.status);
}

fn graphs(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/graphs")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn npy_f32(p: &std::path::Path) -> Vec<f32> {
    sinter::io::npy::read_f32(p).unwrap().1
}

/// `--input` / `--output` repeat in model order or bind `NAME=PATH`; int32 ids go in as they
/// are; naming some outputs computes only those; a bad id is exit 1 naming the id.
#[test]
fn run_binds_several_inputs_and_outputs() {
    // two_inputs: [numeric f32, tokens int32]; bound by name in the other order.
    let y = tmp("two_inputs.npy");
    let out = sinter(&[
        "run",
        &graphs("two_inputs.keras"),
        "--input",
        &format!("tokens={}", graphs("two_inputs.in1.npy")),
        "--input",
        &graphs("two_inputs.in0.npy"),
        "--output",
        y.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = npy_f32(&PathBuf::from(graphs("two_inputs.out0.npy")));
    let got = npy_f32(&y);
    assert_eq!(got.len(), want.len());
    assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 2e-5));
    // onnx_multi: outputs sum, diff, prod, ext; ask for ext and sum only, in that order.
    let (ext, sum) = (tmp("ext.npy"), tmp("sum.npy"));
    let out = sinter(&[
        "run",
        &graphs("onnx_multi.onnx"),
        "--input",
        &graphs("onnx_multi.in0.npy"),
        "--input",
        &graphs("onnx_multi.in1.npy"),
        "--output",
        &format!("ext={}", ext.display()),
        "--output",
        &format!("sum={}", sum.display()),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (file, k) in [(&ext, 3), (&sum, 0)] {
        let want = npy_f32(&PathBuf::from(graphs(&format!("onnx_multi.out{k}.npy"))));
        let got = npy_f32(file);
        assert!(
            got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 2e-5),
            "output {k}"
        );
    }
    // Too few inputs, an unknown output name, an id out of range: exit 1 with the reason.
    let out = sinter(&[
        "run",
        &graphs("onnx_multi.onnx"),
        "--input",
        &graphs("onnx_multi.in0.npy"),
        "--output",
        "x.npy",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no file for \"B\""));
    let out = sinter(&[
        "run",
        &graphs("text_cnn.keras"),
        "--input",
        &graphs("hostile_embedding_range.in0.npy"),
        "--output",
        tmp("bad.npy").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("value 50 (sample 2, position 5)"), "{err}");
}

/// `verify` and `bench` draw token ids within the vocabulary for integer inputs.
#[test]
fn verify_and_bench_take_integer_inputs() {
    let out = sinter(&["verify", &graphs("text_cnn.keras"), "--batch", "5"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("all invariants hold"));
    let out = sinter(&[
        "bench",
        &graphs("two_inputs.keras"),
        "--batch",
        "1,3",
        "--seconds",
        "0.02",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
}

#[test]
fn run_takes_any_sequence_length_up_to_the_longest() {
    let model = fixture("transformers/bert.ts.onnx");
    let dir = tmp("seq_run");
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, v: &[i64]| {
        let p = dir.join(name);
        sinter::io::npy::write_i64(&p, &[1, v.len()], v.iter().copied()).unwrap();
        p.to_string_lossy().into_owned()
    };
    let ids = write("ids.npy", &[2, 7, 9, 4, 3]);
    let mask = write("mask.npy", &[1; 5]);
    let types = write("types.npy", &[0; 5]);
    let out = |tag: &str| {
        dir.join(format!("{tag}.npy"))
            .to_string_lossy()
            .into_owned()
    };
    // Loaded at the inputs' own length (5), and at 8 with the same inputs.
    for (tag, extra) in [("own", vec![]), ("long", vec!["--seq", "8"])] {
        let mut args = extra.clone();
        args.extend([
            "run", &model, "--input", &ids, "--input", &mask, "--input", &types,
        ]);
        let (o0, o1) = (out(&format!("{tag}0")), out(&format!("{tag}1")));
        args.extend(["--output", &o0, "--output", &o1]);
        let r = sinter(&args);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    }
    let (shape, _) = sinter::io::npy::read(Path::new(&out("long0"))).unwrap();
    assert_eq!(shape, [1, 5, 16]);
    for k in 0..2 {
        let a = npy_f32(Path::new(&out(&format!("own{k}"))));
        let b = npy_f32(Path::new(&out(&format!("long{k}"))));
        assert_eq!(
            a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
    // Longer than the plan's longest: an error, exit 1.
    let r = sinter(&[
        "--seq",
        "4",
        "run",
        &model,
        "--input",
        &ids,
        "--input",
        &mask,
        "--input",
        &types,
        "--output",
        &out("x0"),
        "--output",
        &out("x1"),
    ]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("1..=4"));
}
