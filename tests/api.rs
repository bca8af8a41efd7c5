//! The public API: summary, naming, shape and weight errors, session errors, sharing.

mod common;

use sinter::model::{ActivationLayer, Dense, Dropout, Flatten, Input, Model};
use sinter::plan::{CompileOptions, Plan, Session};
use sinter::{Activation, Error, Isa, builtin};
use std::sync::Arc;

#[test]
fn seed_summary_has_keras_figures() {
    let s = builtin::seed().summary();
    assert!(s.contains("│ dense (Dense)"), "{s}");
    assert!(s.contains("25,120"), "{s}");
    assert!(s.contains("│ activation (Activation)"), "{s}");
    assert!(s.contains("264"), "{s}");
    assert!(s.contains("Total params: 25,384 (99.16 KB)"), "{s}");
    assert_eq!(builtin::seed().count_params(), 25_384);
}

/// Layers that act only in training keep their Keras class in the summary (and run as the
/// identity: `tests/golden.rs` checks `noise.keras`'s outputs).
#[test]
fn training_only_layers_keep_their_keras_class() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/noise.keras");
    let s = sinter::load(&path).unwrap().summary();
    for class in [
        "gaussian_noise (GaussianNoise)",
        "gaussian_dropout (GaussianDropout)",
        "(SpatialDropout1D)",
        "(AlphaDropout)",
        "(ActivityRegularization)",
    ] {
        assert!(s.contains(class), "{class} missing from\n{s}");
    }
    assert!(!s.contains("(Identity)"), "{s}");
}

#[test]
fn layers_are_auto_named_like_keras() {
    let x = Input::new([4]).unwrap();
    let h = Dense::new(3).call(&x).unwrap();
    let h = Dense::new(3).name("dense_1").call(&h).unwrap();
    let h = Dense::new(2).call(&h).unwrap();
    let h = ActivationLayer::new(Activation::Tanh).call(&h).unwrap();
    let m = Model::new(&x, &h).unwrap();
    let names: Vec<&str> = m.nodes().iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        ["input_layer", "dense", "dense_1", "dense_2", "activation"]
    );
}

#[test]
fn duplicate_names_are_an_error() {
    let x = Input::new([4]).unwrap();
    let h = Dense::new(3).name("a").call(&x).unwrap();
    let h = Dense::new(3).name("a").call(&h).unwrap();
    assert!(matches!(Model::new(&x, &h), Err(Error::Model(_))));
}

#[test]
fn shape_and_weight_errors_name_the_layer() {
    assert!(matches!(Input::new([0]), Err(Error::Shape { .. })));
    assert!(matches!(
        Input::new(Vec::<usize>::new()),
        Err(Error::Shape { .. })
    ));
    let x = Input::new([4]).unwrap();
    let e = Dense::new(3)
        .name("d")
        .weights(vec![0.0; 11], Some(vec![0.0; 3]))
        .call(&x);
    match e {
        Err(Error::Weights {
            layer,
            what,
            expected,
            got,
        }) => {
            assert_eq!(
                (layer.as_str(), what, expected, got),
                ("d", "kernel", 12, 11)
            );
        }
        other => panic!("{other:?}"),
    }
    let e = Dense::new(3)
        .weights(vec![0.0; 12], Some(vec![0.0; 2]))
        .call(&x);
    assert!(matches!(e, Err(Error::Weights { what: "bias", .. })));
    assert!(matches!(Dense::new(0).call(&x), Err(Error::Shape { .. })));
    assert!(matches!(
        Dropout::new(1.5).call(&x),
        Err(Error::Shape { .. })
    ));

    let mut m = builtin::seed();
    assert!(matches!(
        m.set_weights("nope", vec![], None),
        Err(Error::NoSuchLayer(_))
    ));
    assert!(matches!(
        m.set_weights("activation", vec![], None),
        Err(Error::Model(_))
    ));
    assert!(matches!(
        m.set_weights("dense_1", vec![0.0; 32 * 8], Some(vec![0.0; 7])),
        Err(Error::Weights { .. })
    ));
    m.set_weights("dense_1", vec![0.0; 32 * 8], Some(vec![1.0; 8]))
        .unwrap();
}

#[test]
fn output_not_reached_from_input_is_an_error() {
    let x = Input::new([4]).unwrap();
    let other = Input::new([4]).unwrap();
    let h = Dense::new(3).call(&other).unwrap();
    assert!(matches!(Model::new(&x, &h), Err(Error::Model(_))));
}

#[test]
fn session_errors_instead_of_panics() {
    let plan = Arc::new(
        builtin::seed()
            .compile(&CompileOptions::new().max_batch(4))
            .unwrap(),
    );
    let mut s = plan.session().unwrap();
    assert!(matches!(
        s.run(&[0.0; 783]),
        Err(Error::InputLength {
            per_sample: 784,
            got: 783
        })
    ));
    assert!(matches!(s.run(&[]), Err(Error::EmptyBatch)));
    assert!(matches!(
        s.run(&vec![0.0; 5 * 784]),
        Err(Error::BatchTooLarge { batch: 5, max: 4 })
    ));
    assert_eq!(s.run(&vec![0.0; 4 * 784]).unwrap().len(), 32);
    // A session is sized for max_batch; the plan itself runs larger batches in chunks.
    assert_eq!(plan.run(&vec![0.0; 5 * 784]).unwrap().len(), 40);
    assert!(matches!(
        plan.run(&[0.0; 783]),
        Err(Error::InputLength { .. })
    ));
}

#[test]
fn bad_options_are_errors() {
    let m = builtin::seed();
    assert!(matches!(
        m.compile(&CompileOptions::new().max_batch(0)),
        Err(Error::Options(_))
    ));
    assert!(matches!(
        m.compile(&CompileOptions::new().threads(0)),
        Err(Error::Options(_))
    ));
    assert!(
        m.compile(&CompileOptions::new().max_batch(usize::MAX / 2))
            .is_err()
    );
    for isa in Isa::ALL {
        let r = m.compile(&CompileOptions::new().isa(Some(isa)));
        assert_eq!(r.is_ok(), isa.is_available(), "{isa}");
    }
    assert!("avx9000".parse::<Isa>().is_err());
    assert_eq!("AVX2".parse::<Isa>().unwrap(), Isa::Avx2);
}

#[test]
fn plan_is_send_sync_and_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Plan>();
    fn assert_send<T: Send>() {}
    assert_send::<Session>();

    let plan = Arc::new(
        builtin::mnist_mlp()
            .compile(&CompileOptions::default())
            .unwrap(),
    );
    let x: Vec<f32> = (0..8 * 784).map(|i| (i % 13) as f32 / 13.0).collect();
    let want = plan.run(&x).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let plan = plan.clone();
            let x = x.clone();
            std::thread::spawn(move || {
                let mut s = plan.session().unwrap();
                (0..20)
                    .map(|_| s.run(&x).unwrap().to_vec())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for h in handles {
        for y in h.join().unwrap() {
            assert_eq!(common::bits(&y), common::bits(&want));
        }
    }
}

#[test]
fn fused_plan_has_no_activation_steps_for_the_seed() {
    let m = builtin::seed();
    let fused = m.compile(&CompileOptions::default()).unwrap();
    let separate = m.compile(&CompileOptions::new().fuse(false)).unwrap();
    assert_eq!(fused.steps().len(), 2);
    assert_eq!(fused.activation_steps(), 0);
    assert_eq!(separate.activation_steps(), 3);
    let text = fused.to_string();
    assert!(text.contains("bias -> tanh -> relu"), "{text}");
    assert!(text.contains("softmax (row)"), "{text}");
}

#[test]
fn identity_model_copies_input() {
    let x = Input::new([3]).unwrap();
    let y = Dropout::new(0.1).call(&x).unwrap();
    let m = Model::new(&x, &y).unwrap();
    let plan = Arc::new(m.compile(&CompileOptions::default()).unwrap());
    assert_eq!(plan.run(&[1.0, -2.0, 3.0]).unwrap(), vec![1.0, -2.0, 3.0]);
}

#[test]
fn dense_on_rank_2_input_and_flatten() {
    let x = Input::new([5, 7]).unwrap();
    let h = Dense::new(4)
        .activation(Activation::Gelu { approximate: false })
        .call(&x)
        .unwrap();
    assert_eq!(h.shape(), [5, 4]);
    let h = Flatten::new().call(&h).unwrap();
    let y = Dense::new(3)
        .activation(Activation::Softmax)
        .call(&h)
        .unwrap();
    let m = Model::new(&x, &y).unwrap();
    let input: Vec<f32> = (0..2 * 35).map(|i| (i as f32 * 0.37).sin()).collect();
    let plan = Arc::new(m.compile(&CompileOptions::default()).unwrap());
    let got = plan.run(&input).unwrap();
    let want = sinter::reference::run(&m, &input).unwrap();
    assert_eq!(got.len(), 6);
    for (g, w) in got.iter().zip(&want) {
        assert!((f64::from(*g) - w).abs() < 1e-5, "{g} vs {w}");
    }
}

#[test]
fn activation_names_parse_as_keras_spells_them() {
    for a in Activation::ALL {
        let parsed: Activation = a.keras_name().parse().unwrap();
        assert_eq!(parsed.keras_name(), a.keras_name());
    }
    assert_eq!("swish".parse::<Activation>().unwrap(), Activation::Silu);
    assert_eq!(
        "hard_swish".parse::<Activation>().unwrap(),
        Activation::HardSilu
    );
    assert!("relu7".parse::<Activation>().is_err());
}

#[test]
fn thread_counts_give_the_same_bits_on_row_and_column_splits() {
    for (model, batches) in [
        (builtin::mnist_mlp(), vec![1usize, 8, 100, 130]),
        (builtin::ffn(), vec![1, 7, 12]),
    ] {
        let max = *batches.iter().max().unwrap();
        let x: Vec<f32> = (0..max * model.input_shape()[0])
            .map(|i| ((i * 31) % 17) as f32 / 8.0 - 1.0)
            .collect();
        // Every layer splits (`parallel_flops(0)`): by column panels, or by rows where the
        // softmax needs whole rows.
        let run = |threads: usize, batch: usize| {
            let opts = CompileOptions::new()
                .threads(threads)
                .max_batch(max)
                .parallel_flops(0);
            let plan = Arc::new(model.compile(&opts).unwrap());
            let out = plan.run(&x[..batch * model.input_shape()[0]]).unwrap();
            assert_eq!(plan.split_steps() > 0, threads > 1, "{threads} threads");
            out
        };
        for &batch in &batches {
            let want = common::bits(&run(1, batch));
            for threads in 2..=4 {
                assert_eq!(
                    common::bits(&run(threads, batch)),
                    want,
                    "batch {batch}, {threads} threads"
                );
            }
        }
    }
}

#[test]
fn row_split_for_row_wise_layers_gives_the_same_bits() {
    let x = Input::new([300]).unwrap();
    let y = Dense::new(300)
        .activation(Activation::LogSoftmax)
        .call(&x)
        .unwrap();
    let m = Model::new(&x, &y).unwrap();
    let input: Vec<f32> = (0..70 * 300)
        .map(|i| ((i * 13) % 29) as f32 / 7.0 - 2.0)
        .collect();
    let run = |threads: usize| {
        let opts = CompileOptions::new().threads(threads).max_batch(70);
        let plan = Arc::new(m.compile(&opts).unwrap());
        let out = plan.run(&input).unwrap();
        assert_eq!(plan.split_steps() > 0, threads > 1, "{threads} threads");
        out
    };
    let want = common::bits(&run(1));
    for threads in 2..=4 {
        assert_eq!(common::bits(&run(threads)), want, "{threads} threads");
    }
}

/// Builds and compiles `x -> y` if it can; whatever compiles must run to finite outputs.
fn errs_or_runs(x: &sinter::model::Tensor, y: sinter::Result<sinter::model::Tensor>, what: &str) {
    let Ok(m) = y.and_then(|y| Model::new(x, &y)) else {
        return;
    };
    let opts = CompileOptions::new().max_batch(2).threads(1);
    if let Ok(plan) = m.compile(&opts) {
        let out = Arc::new(plan).run(&[1.0; 30]).unwrap();
        assert!(out.iter().all(|v| v.is_finite()), "{what}: {out:?}");
    }
}

/// Windows whose size, stride or dilation would overflow the shape arithmetic (padding,
/// spans, im2col widths, weight counts) are errors at build or compile time, never a panic, an
/// abort on a huge allocation, or a wrapped size. One window with a huge stride is valid.
#[test]
fn huge_windows_are_errors_not_panics() {
    use sinter::model::{AveragePooling1D, Conv1D, MaxPooling1D, Padding};
    let huge = [usize::MAX, usize::MAX / 2 + 1, 1 << 40, 1 << 33];
    for padding in [Padding::Valid, Padding::Same, Padding::Causal] {
        for &(size, stride, dilation) in &[
            (huge[0], 1, 1),
            (huge[1], 1, 1),
            (2, 1, huge[0]),
            (2, 1, huge[1]),
            (huge[2], 1, huge[3]),
            (3, huge[0], 1),
            (huge[3], huge[3], 1),
            (1, huge[0], 1),
        ] {
            let what = format!("{padding:?} size {size} stride {stride} dilation {dilation}");
            let x = Input::new([5, 3]).unwrap();
            let conv = Conv1D::new(2, size)
                .strides(stride)
                .dilation_rate(dilation)
                .padding(padding);
            errs_or_runs(&x, conv.call(&x), &format!("conv {what}"));
            if padding != Padding::Causal && dilation == 1 {
                let max = MaxPooling1D::new(size, stride, padding);
                errs_or_runs(&x, max.call(&x), &format!("max pool {what}"));
                let avg = AveragePooling1D::new(size, stride, padding);
                errs_or_runs(&x, avg.call(&x), &format!("average pool {what}"));
            }
        }
    }
    let x = Input::new([4]).unwrap();
    for units in [1 << 40, usize::MAX] {
        let y = Dense::new(units).call(&x).unwrap();
        let m = Model::new(&x, &y);
        assert!(
            matches!(m, Err(Error::Shape { .. })),
            "Dense({units}): {m:?}"
        );
    }
}

#[test]
fn permute_moves_values_like_keras() {
    use sinter::model::Permute;
    // [2, 3, 4] -> Permute(3, 1, 2) -> [4, 2, 3]: y[i][j][k] = x[j][k][i].
    let x = Input::new([2, 3, 4]).unwrap();
    let y = Permute::new(vec![3, 1, 2]).call(&x).unwrap();
    assert_eq!(y.shape(), [4, 2, 3]);
    let m = Model::new(&x, &y).unwrap();
    let input: Vec<f32> = (0..2 * 24).map(|v| v as f32).collect();
    let plan = Arc::new(m.compile(&CompileOptions::default()).unwrap());
    let got = plan.run(&input).unwrap();
    for b in 0..2 {
        for i in 0..4 {
            for j in 0..2 {
                for k in 0..3 {
                    let want = input[b * 24 + j * 12 + k * 4 + i];
                    assert_eq!(
                        got[b * 24 + i * 6 + j * 3 + k],
                        want,
                        "[{b}][{i}][{j}][{k}]"
                    );
                }
            }
        }
    }
    let reference = sinter::reference::run(&m, &input).unwrap();
    assert!(got.iter().zip(&reference).all(|(g, r)| f64::from(*g) == *r));
    // Steps <-> channels, then a Dense over the steps, fused and separate.
    let x = Input::new([5, 3]).unwrap();
    let h = Permute::new(vec![2, 1]).call(&x).unwrap();
    let y = Dense::new(2).activation(Activation::Tanh).call(&h).unwrap();
    let m = Model::new(&x, &y).unwrap();
    assert!(m.summary().contains("Permute"), "{}", m.summary());
    let input: Vec<f32> = (0..3 * 15).map(|i| (i as f32 * 0.37).sin()).collect();
    let want = sinter::reference::run(&m, &input).unwrap();
    let mut outs = vec![];
    for fuse in [true, false] {
        let opts = CompileOptions::new().fuse(fuse);
        let got = Arc::new(m.compile(&opts).unwrap()).run(&input).unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert!((f64::from(*g) - w).abs() < 1e-5, "{g} vs {w}");
        }
        outs.push(common::bits(&got));
    }
    assert_eq!(outs[0], outs[1], "fused == separate");
}

#[test]
fn permute_of_length_one_axes_is_a_view() {
    use sinter::model::Permute;
    let x = Input::new([1, 6]).unwrap();
    let y = Permute::new(vec![2, 1]).call(&x).unwrap();
    let m = Model::new(&x, &y).unwrap();
    let plan = m.compile(&CompileOptions::default()).unwrap();
    // No transpose step: the values do not move (only a copy out of the caller's input).
    assert!(
        plan.steps().iter().all(|s| s.name() == "copy"),
        "{:?}",
        plan.steps().iter().map(|s| s.name()).collect::<Vec<_>>()
    );
    let input: Vec<f32> = (0..6).map(|v| v as f32).collect();
    assert_eq!(Arc::new(plan).run(&input).unwrap(), input);
}

#[test]
fn permute_dims_must_be_a_permutation() {
    use sinter::model::Permute;
    let x = Input::new([3, 4]).unwrap();
    for dims in [
        vec![1, 1],
        vec![2],
        vec![0, 1],
        vec![3, 1],
        vec![1, 2, 3],
        vec![],
    ] {
        match Permute::new(dims.clone()).call(&x) {
            Err(e) => assert!(e.to_string().contains("Permute"), "{dims:?}: {e}"),
            Ok(t) => panic!("{dims:?} accepted, shape {:?}", t.shape()),
        }
    }
}

#[test]
fn a_tuned_plan_gives_the_same_bits() {
    for model in [builtin::seed(), builtin::conv1d()] {
        let input = common::Spec {
            input: model.input_shape().iter().product(),
            layers: vec![],
            batch: 19,
            seed: 5,
        }
        .input(true);
        let mut outs = vec![];
        for tune in [false, true] {
            let opts = CompileOptions::new().tune(tune).max_batch(32).threads(1);
            let plan = Arc::new(model.compile(&opts).unwrap());
            if tune {
                assert!(plan.to_string().contains("tuned"), "{plan}");
            }
            let out = plan.run(&input).unwrap();
            let finite = out.iter().filter(|v| v.is_finite()).count();
            assert!(finite >= out.len() / 2, "only {finite} finite outputs");
            outs.push(common::bits(&out));
        }
        assert_eq!(outs[0], outs[1], "{}", model.name());
    }
}

/// `into_outputs` (consuming, what `sinter run` uses so weights are not held twice) gives the
/// model `select_outputs` gives: the named outputs in order, the layers only others need gone.
#[test]
fn into_outputs_is_select_outputs_without_a_copy() {
    let x = Input::new([4]).unwrap();
    let h = Dense::new(3).name("shared").call(&x).unwrap();
    let a = Dense::new(2).name("a").call(&h).unwrap();
    let b = Dense::new(5).name("b").call(&h).unwrap();
    let m = Model::new(&x, [&a, &b]).unwrap();
    let picked = m.select_outputs(&["b"]).unwrap();
    let moved = m.clone().into_outputs(&["b"]).unwrap();
    assert_eq!(moved.output_names(), ["b"]);
    assert!(moved.layer("a").is_none() && moved.layer("shared").is_some());
    assert_eq!(moved.summary(), picked.summary());
    let plan = |m: &Model| m.compile(&CompileOptions::new()).unwrap();
    let x = [0.5f32, -1.0, 2.0, 0.25];
    assert_eq!(
        plan(&moved).run(&x).unwrap(),
        plan(&picked).run(&x).unwrap()
    );
    assert!(m.into_outputs(&["nope"]).is_err());
}

/// `Session::profile` times every step and leaves the session as `run_all` would: the next
/// run's outputs are a fresh session's.
#[test]
fn profile_times_each_step_and_changes_no_result() {
    let plan = Arc::new(
        builtin::mnist_mlp()
            .compile(&CompileOptions::new().max_batch(4))
            .unwrap(),
    );
    let x: Vec<f32> = (0..4 * 784).map(|i| (i % 17) as f32 / 17.0 - 0.5).collect();
    let mut fresh = Session::new(plan.clone()).unwrap();
    let want = fresh.run(&x).unwrap().to_vec();
    let mut s = Session::new(plan.clone()).unwrap();
    let times = s.profile(&[sinter::plan::Values::F32(&x)], 3).unwrap();
    assert_eq!(times.len(), plan.steps().len());
    assert!(times.iter().any(|t| !t.is_zero()));
    assert_eq!(s.run(&x).unwrap(), &want[..]);
    // Inputs are checked as for a run.
    assert!(s.profile(&[sinter::plan::Values::F32(&x[1..])], 1).is_err());
}
