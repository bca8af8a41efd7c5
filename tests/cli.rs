//! The `sinter` binary: demo, bench --json, run with .npy files, verify, exit codes.

use sinter::plan::CompileOptions;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

fn sinter(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sinter"))
        .args(args)
        .output()
        .expect("runs")
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
    let out = sinter(&[
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
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8_lossy(&out.stdout);
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
