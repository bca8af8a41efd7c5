//! The `sinter` command line. See `sinter --help`.

/// `println!` that ends the program quietly when stdout is closed (`sinter plan M | head`)
/// instead of panicking.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($t)*).is_err() {
            std::process::exit(0);
        }
    }};
}

/// `print!` with the same behaviour as [`say!`].
macro_rules! say_raw {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if write!(std::io::stdout(), $($t)*).is_err() {
            std::process::exit(0);
        }
    }};
}

mod bench;
mod demo;
mod inputs;
#[cfg(feature = "serve")]
mod serve;
mod verify;

use clap::{Parser, Subcommand};
use sinter::model::Model;
use sinter::plan::{CompileOptions, Plan};
use sinter::{Error, Result, builtin};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

/// sinter: dense neural networks on the CPU, fused or separate activations, bit-identical.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Size of every symbolic input axis but the batch (an ONNX model's sequence length).
    #[arg(long, global = true, value_name = "N")]
    seq: Option<usize>,
    /// Size of the symbolic input axis NAME (repeat): `--dim sequence=128`.
    #[arg(long, global = true, value_name = "NAME=N", value_parser = parse_dim)]
    dim: Vec<(String, usize)>,
}

/// `NAME=N` of `--dim`.
fn parse_dim(s: &str) -> std::result::Result<(String, usize), String> {
    let (name, n) = s
        .split_once('=')
        .filter(|(n, _)| !n.is_empty())
        .ok_or_else(|| format!("{s:?} is not NAME=N"))?;
    let n = n
        .parse::<usize>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{n:?} is not a positive size"))?;
    Ok((name.to_string(), n))
}

/// `--seq` and the `--dim`s.
type AxisSizes = (Option<usize>, Vec<(String, usize)>);

/// The symbolic axis sizes given on the command line, for every model loaded.
static DIMS: std::sync::OnceLock<AxisSizes> = std::sync::OnceLock::new();

#[derive(clap::Args, Clone)]
struct PlanArgs {
    /// Run every activation as a separate pass instead of in the Dense epilogue.
    #[arg(long)]
    no_fuse: bool,
    /// Threads for large layers [default: the available cores].
    #[arg(long)]
    threads: Option<usize>,
    /// Time candidate tile widths and blockings per layer while compiling; keep the fastest
    /// (the results' bits never change).
    #[arg(long)]
    tune: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Keras-style summary: layer, type, output shape, params.
    Summary {
        /// A model file (.keras, .onnx, NAME.json + NAME.weights.h5) or builtin:seed|mnist-mlp|ffn.
        model: String,
    },
    /// The compiled plan: steps, kernels, epilogues, buffers, arena size.
    Plan {
        /// A model file (.keras, .onnx, NAME.json + NAME.weights.h5) or builtin:seed|mnist-mlp|ffn.
        model: String,
        #[command(flatten)]
        plan: PlanArgs,
        /// Max batch the plan is compiled for.
        #[arg(long, default_value_t = 256)]
        batch: usize,
    },
    /// Run .npy batches (in the model file's axis order: batch first, or where a time-major
    /// ONNX tensor has it) through the model; write .npy outputs (float32, int64 for labels).
    Run {
        /// A model file (.keras, .onnx, NAME.json + NAME.weights.h5) or builtin:seed|mnist-mlp|ffn.
        model: String,
        /// Input .npy, shape (batch, *input_shape) (a time-major ONNX input: (steps, batch,
        /// features)): float32, or int32/int64 token ids (a float32 file of whole numbers
        /// works too). Repeat in the model's input order, or bind by name as NAME=PATH.
        #[arg(long, required = true)]
        input: Vec<String>,
        /// Output .npy, shape (batch, *output_shape). Repeat in the model's output order, or
        /// NAME=PATH; only the outputs named are computed.
        #[arg(long, required = true)]
        output: Vec<String>,
        #[command(flatten)]
        plan: PlanArgs,
    },
    /// Median latency per batch size.
    Bench {
        /// A model file (.keras, .onnx, NAME.json + NAME.weights.h5) or builtin:seed|mnist-mlp|ffn.
        model: String,
        /// Batch sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,8,64,256")]
        batch: Vec<usize>,
        #[command(flatten)]
        plan: PlanArgs,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Seconds of timed runs per batch size.
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
        /// Also time each step (median per run, about as many runs): where the time goes.
        #[arg(long)]
        profile: bool,
    },
    /// Check the invariants on random inputs: fused == separate, threads, rows, ISA tiers.
    Verify {
        /// A model file (.keras, .onnx, NAME.json + NAME.weights.h5) or builtin:seed|mnist-mlp|ffn.
        model: String,
        /// Batch size of the random inputs.
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// Check only these outputs (repeat; the rest of the graph is not even converted).
        #[arg(long = "output", value_name = "NAME")]
        outputs: Vec<String>,
    },
    /// Serve models over HTTP: KServe v2 REST (Open Inference Protocol) and TF Serving predict,
    /// with dynamic batching that never changes an answer. Stops on SIGTERM / Ctrl-C.
    #[cfg(feature = "serve")]
    Serve {
        /// Models: files or builtin:NAME, each served under its file stem, or NAME=MODEL.
        #[arg(required = true)]
        models: Vec<String>,
        /// Address to listen on (loopback by default).
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Port (0: any free port, printed at start).
        #[arg(long, default_value_t = 8000)]
        port: u16,
        /// Rows per batched run.
        #[arg(long, default_value_t = 64)]
        max_batch: usize,
        /// Microseconds the oldest request waits for others to join its batch.
        #[arg(long, default_value_t = 500)]
        max_delay_us: u64,
        /// Largest request body, bytes (larger ones get 413).
        #[arg(long, default_value_t = 64 << 20)]
        max_body_bytes: usize,
        /// Threads per batched run (default: the available cores, one pool for all models).
        #[arg(long)]
        threads: Option<usize>,
        /// Rows that may wait in each model's queue; a request beyond gets 503 with
        /// Retry-After [default: 64 x --max-batch].
        #[arg(long)]
        queue_rows: Option<usize>,
        /// Connections served at once; more wait in the kernel's accept queue until one closes.
        #[arg(long, default_value_t = serve::MAX_CONNECTIONS)]
        max_connections: usize,
        /// Milliseconds a client has to send a request's headers (also how long a keep-alive
        /// connection may sit idle); then the connection is closed.
        #[arg(long, default_value_t = serve::HEADER_TIMEOUT.as_millis() as u64)]
        header_timeout_ms: u64,
        /// Milliseconds a client has to send a request's body once its headers are in (else
        /// 408).
        #[arg(long, default_value_t = serve::BODY_TIMEOUT.as_millis() as u64)]
        body_timeout_ms: u64,
        /// Bytes all requests in flight may hold at once (bodies, decoded tensors, answers);
        /// past it a request gets 503 with Retry-After [default: a quarter of the memory].
        #[arg(long)]
        max_inflight_bytes: Option<usize>,
        /// Also serve KServe v2 / Triton gRPC (GRPCInferenceService) on this port.
        #[arg(long)]
        grpc_port: Option<u16>,
    },
}

/// Loads `builtin:NAME` or a model file (`.keras`, `.onnx`, `.json` / `.weights.h5`).
pub(crate) fn load_model(spec: &str) -> Result<Model> {
    load_model_with(spec, &sinter::io::LoadOptions::default())
}

/// [`load_model`] with load options (a file's requested outputs: the rest is not converted).
pub(crate) fn load_model_with(spec: &str, opts: &sinter::io::LoadOptions) -> Result<Model> {
    let mut opts = opts.clone();
    if let Some((seq, dims)) = DIMS.get() {
        opts.seq = opts.seq.or(*seq);
        for (name, n) in dims {
            opts = opts.dim(name, *n);
        }
    }
    let opts = &opts;
    if let Some(name) = spec.strip_prefix("builtin:") {
        let model = builtin::by_name(name).ok_or_else(|| {
            Error::Model(format!(
                "unknown built-in {name:?} (expected one of: {})",
                builtin::NAMES.join(", ")
            ))
        })?;
        return match &opts.outputs {
            Some(names) => {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                model.into_outputs(&names)
            }
            None => Ok(model),
        };
    }
    sinter::io::load_with(Path::new(spec), opts)
}

/// Compiles `model`, consumed: its weights are freed as they are packed.
pub(crate) fn compile(model: Model, args: &PlanArgs, max_batch: usize) -> Result<Arc<Plan>> {
    let opts = CompileOptions::new()
        .fuse(!args.no_fuse)
        .max_batch(max_batch)
        .threads(args.threads.unwrap_or(CompileOptions::default().threads))
        .tune(args.tune);
    Ok(Arc::new(model.into_plan(&opts)?))
}

fn run_npy(model: &str, inputs: &[String], outputs: &[String], args: &PlanArgs) -> Result<()> {
    // Every output named (`NAME=PATH`): only those are loaded, the rest of the graph is not
    // even converted. Otherwise outputs bind in order.
    let named: Option<Vec<String>> = outputs
        .iter()
        .map(|a| {
            a.split_once('=')
                .filter(|(n, _)| !n.is_empty() && !n.contains(['/', '\\']))
                .map(|(n, _)| n.to_string())
        })
        .collect();
    let mut opts = sinter::io::LoadOptions::new();
    opts.outputs = named;
    // Without --seq, a symbolic sequence axis is loaded at the longest the inputs hold.
    if DIMS
        .get()
        .is_none_or(|(seq, dims)| seq.is_none() && dims.is_empty())
    {
        let mut longest = None;
        for arg in inputs {
            let path = arg.split_once('=').map_or(arg.as_str(), |(_, p)| p);
            if let Ok((shape, _)) = sinter::io::npy::read(Path::new(path))
                && let Some(&s) = shape.get(1).filter(|_| shape.len() >= 2)
            {
                longest = longest.max(Some(s));
            }
        }
        opts.seq = longest;
    }
    let model = load_model_with(model, &opts)?;
    let out_bind = inputs::bind(outputs, model.output_names(), "--output", false)?;
    let wanted: Vec<String> = out_bind
        .iter()
        .map(|(k, _)| model.output_names()[*k].clone())
        .collect();
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    // Consumed, not copied: the weights are not held twice.
    let model = model.into_outputs(&wanted)?;
    let in_names: Vec<String> = model.input_names().iter().map(|s| s.to_string()).collect();
    let in_bind = inputs::bind(inputs, &in_names, "--input", true)?;
    let mut arrays = vec![None; in_names.len()];
    let mut batch = None;
    // The run's sequence length: what the inputs with a variable sequence hold.
    let (mut seq, mut loaded) = (None, 0);
    for (k, path) in in_bind {
        let (mut shape, data) = sinter::io::npy::read(&path)?;
        // A time-major input: the file's batch axis is not the first; sinter's values are
        // sample-major.
        let time_major = model.input_batch_axes()[k].clone();
        let want = match &time_major {
            Some(t) if shape.len() > t.axis => {
                let b = shape.remove(t.axis);
                shape.insert(0, b);
                &t.dims
            }
            _ => &model.nodes()[model.inputs()[k]].shape,
        };
        let b = shape.first().copied().unwrap_or(0);
        let variable = model.seq_inputs()[k];
        let fits = shape.len() == want.len() + 1
            && match variable {
                true => shape[1] >= 1 && shape[1] <= want[0] && shape[2..] == want[1..],
                false => shape[1..] == want[..],
            };
        if !fits || b == 0 {
            let what = match variable {
                true => format!("(batch, 1..={}, {})", want[0], dims(&want[1..])),
                false => format!("(batch, {})", dims(want)),
            };
            return Err(Error::Format {
                path,
                msg: format!(
                    "shape {shape:?}, expected {} for input {:?}",
                    what.replace(", )", ")"),
                    in_names[k]
                ),
            });
        }
        if *batch.get_or_insert(b) != b {
            return Err(Error::Format {
                path,
                msg: format!("batch {b}, but another input has {}", batch.unwrap_or(0)),
            });
        }
        if variable {
            loaded = want[0];
        }
        if variable && *seq.get_or_insert(shape[1]) != shape[1] {
            return Err(Error::Format {
                path,
                msg: format!(
                    "a sequence of {}, but another input has {}",
                    shape[1],
                    seq.unwrap_or(0)
                ),
            });
        }
        arrays[k] = Some(match &time_major {
            Some(t) => inputs::sample_major(t, data, b, variable.then_some(shape[1])),
            None => data,
        });
    }
    let arrays: Vec<sinter::io::npy::Array> = arrays.into_iter().flatten().collect();
    let batch = batch.unwrap_or(1);
    let plan = compile(model, args, batch)?;
    let mut session = plan.session()?;
    let ys = match (seq, plan.seq_range()) {
        (Some(s), Some(_)) => session.run_seq(s, &inputs::views(&arrays))?,
        (Some(s), None) if s != loaded => {
            return Err(Error::Options(format!(
                "a sequence of {s}: the model runs only its own length ({})",
                plan.seq_fixed_by().unwrap_or("a layer needs it")
            )));
        }
        _ => session.run_all(&inputs::views(&arrays))?,
    };
    for (k, (_, path)) in out_bind.iter().enumerate() {
        let info = &plan.outputs()[k];
        let out_shape = info.file_shape(batch, ys.seq());
        let seq = info.seq.then_some(ys.seq());
        // A time-major output: written in the file's order.
        let t = info.batch_axis.as_ref();
        if ys.dtype(k) == sinter::model::DType::F32 {
            match t {
                Some(t) => {
                    let file = t.from_samples(ys.get(k), batch, seq);
                    sinter::io::npy::write_f32(path, &out_shape, &file)?;
                }
                None => sinter::io::npy::write_f32(path, &out_shape, ys.get(k))?,
            }
        } else {
            let ints: Vec<i64> = ys.ints(k).collect();
            let ints = match t {
                Some(t) => t.from_samples(&ints, batch, seq),
                None => ints,
            };
            sinter::io::npy::write_i64(path, &out_shape, ints)?;
        }
    }
    Ok(())
}

fn dims(s: &[usize]) -> String {
    s.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = DIMS.set((cli.seq, cli.dim.clone()));
    let result = match cli.command {
        None => demo::run(),
        Some(Command::Summary { model }) => load_model(&model).map(|m| {
            say_raw!("{}", m.summary());
            say!(" Source: {}", m.origin());
        }),
        Some(Command::Plan { model, plan, batch }) => load_model(&model)
            .and_then(|m| compile(m, &plan, batch))
            .map(|p| say!("{p}")),
        Some(Command::Run {
            model,
            input,
            output,
            plan,
        }) => run_npy(&model, &input, &output, &plan),
        Some(Command::Bench {
            model,
            batch,
            plan,
            json,
            seconds,
            profile,
        }) => bench::run(&model, &batch, &plan, (json, profile), seconds),
        Some(Command::Verify {
            model,
            batch,
            outputs,
        }) => verify::run(&model, batch, &outputs),
        #[cfg(feature = "serve")]
        Some(Command::Serve {
            models,
            host,
            port,
            max_batch,
            max_delay_us,
            max_body_bytes,
            threads,
            queue_rows,
            max_connections,
            header_timeout_ms,
            body_timeout_ms,
            max_inflight_bytes,
            grpc_port,
        }) => serve::run(
            &models,
            &host,
            (port, grpc_port),
            serve::Limits {
                max_batch,
                max_delay_us,
                max_body: max_body_bytes,
                threads: threads.unwrap_or_else(sinter::plan::default_threads),
                queue_rows,
                max_connections,
                header_timeout: std::time::Duration::from_millis(header_timeout_ms),
                body_timeout: std::time::Duration::from_millis(body_timeout_ms),
                max_inflight: max_inflight_bytes.unwrap_or_else(serve::default_inflight),
            },
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sinter: {e}");
            ExitCode::from(1)
        }
    }
}
