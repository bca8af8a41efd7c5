//! Load test for `sinter serve` (or any KServe v2 REST server) on loopback: `CLIENTS` threads,
//! each with a keep-alive connection, send one-sample `infer` requests for `SECONDS` and check
//! every answer bit for bit against the built-in model (`--builtin NAME`, default mnist-mlp)
//! run alone in this process (pass `--no-check` for a server of another runtime). `--binary` sends and asks for raw tensors
//! (KServe's binary tensor extension, what `tritonclient` does by default) instead of JSON
//! numbers. Prints throughput, p50/p99 latency, errors. Bounded in time and count; it stops by
//! itself.
//!
//! `--hostile N` adds N clients that send maximal JSON bodies (`--hostile-mb`, default 62:
//! about 15.5M numbers, in a shape the model refuses, or with `--hostile-valid` in its own)
//! over and over, and a liveness probe
//! (`GET /v2/health/live` every 50 ms) whose answers' median and slowest are printed: how the
//! server keeps serving and answering probes under a memory attack.
//!
//! `--grpc` sends the same requests as KServe v2 gRPC `ModelInfer` calls (raw tensor bytes
//! both ways, what `tritonclient.grpc` does) to a `--grpc-port`, one HTTP/2 connection per
//! client.
//!
//! `--encoder FILE --seq N` checks a transformer encoder instead (an ONNX file with integer
//! inputs: token ids, an attention mask, token types): each request has its own length,
//! drawn from 1 to N, with a random padding mask, and its answer must be the bits of that
//! request run alone at its own length — whatever other lengths shared its batch.
//!
//! ```sh
//! cargo run --release -- serve builtin:mnist-mlp --port 8000 --grpc-port 8001 &
//! cargo run --release --example loadtest -- 8000 64 10 [--binary] [--hostile 24]
//! cargo run --release --example loadtest -- 8001 64 10 --grpc
//! ```

#[allow(dead_code)] // the server's messages; the client uses some
#[path = "../src/bin/sinter/serve/grpc/proto.rs"]
mod proto;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port: u16 = args.first().and_then(|a| a.parse().ok()).unwrap_or(8000);
    let clients: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(64);
    let seconds: f64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10.0);
    let check = !args.iter().any(|a| a == "--no-check");
    let binary = args.iter().any(|a| a == "--binary");
    let grpc = args.iter().any(|a| a == "--grpc");
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let builtin = flag("--builtin").unwrap_or_else(|| "mnist-mlp".into());
    let encoder = flag("--encoder");
    let longest: usize = flag("--seq").and_then(|n| n.parse().ok()).unwrap_or(128);
    let reference = match &encoder {
        Some(path) => {
            let opts = sinter::io::LoadOptions::new().seq(longest);
            sinter::io::load_with(std::path::Path::new(path), &opts).ok()
        }
        None => sinter::builtin::by_name(&builtin),
    };
    let Some(reference) = reference else {
        eprintln!("no model {:?}", encoder.unwrap_or(builtin));
        std::process::exit(2);
    };
    let plan = Arc::new(
        reference
            .compile(&sinter::CompileOptions::new().threads(1))
            .unwrap(),
    );
    // The server's names: the built-in's (or the file's stem) by default.
    let stem = encoder.as_deref().map(|p| {
        let name = std::path::Path::new(p).file_name().unwrap_or_default();
        let name = name.to_string_lossy();
        name.split('.').next().unwrap_or_default().to_string()
    });
    let model = flag("--model").or(stem).unwrap_or(builtin);
    let input_name = flag("--input-name").unwrap_or_else(|| plan.inputs()[0].name.clone());
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let hostile: usize = flag("--hostile").and_then(|n| n.parse().ok()).unwrap_or(0);
    let hostile_mb: usize = flag("--hostile-mb")
        .and_then(|n| n.parse().ok())
        .unwrap_or(62);
    let attack = (hostile > 0).then(|| {
        // `--hostile-valid`: bodies in the model's own shape, which must be received and
        // decoded whole.
        let width = if args.iter().any(|a| a == "--hostile-valid") {
            plan.input_len()
        } else {
            3
        };
        let body = Arc::new(hostile_body(hostile_mb << 20, &input_name, width));
        let attackers: Vec<_> = (0..hostile)
            .map(|_| {
                let (body, model) = (body.clone(), model.clone());
                std::thread::spawn(move || {
                    let mut statuses = std::collections::BTreeMap::new();
                    while Instant::now() < deadline {
                        let status = TcpStream::connect(("127.0.0.1", port))
                            .ok()
                            .and_then(|mut s| request(&mut s, port, &model, &body, None))
                            .map_or(0, |r| r.0);
                        *statuses.entry(status).or_insert(0usize) += 1;
                    }
                    statuses
                })
            })
            .collect();
        let probe = std::thread::spawn(move || {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let ok = TcpStream::connect(("127.0.0.1", port))
                    .ok()
                    .and_then(|mut s| {
                        s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
                        write!(s, "GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
                        let mut buf = [0u8; 12];
                        s.read_exact(&mut buf).ok()?;
                        (&buf[9..12] == b"200").then_some(())
                    });
                lat.push(ok.map(|()| t.elapsed()));
                std::thread::sleep(Duration::from_millis(50));
            }
            lat
        });
        (attackers, probe)
    });
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let (plan, model, input_name) = (plan.clone(), model.clone(), input_name.clone());
            let how = How {
                check,
                binary,
                grpc,
                encoder: encoder.is_some(),
            };
            std::thread::spawn(move || client(port, c, deadline, how, &plan, &model, &input_name))
        })
        .collect();
    let mut lat = Vec::new();
    let (mut errors, mut mismatches) = (0usize, 0usize);
    for h in handles {
        let (l, e, m) = h.join().expect("client thread");
        lat.extend(l);
        errors += e;
        mismatches += m;
    }
    let wall = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d: &Duration| d.as_secs_f64() * 1e3)
    };
    println!(
        "{clients} clients, {wall:.1} s, {} tensors: {} requests, {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, slowest {:.2} ms, {errors} errors, {mismatches} answers not bit-identical{}",
        if grpc {
            "gRPC raw"
        } else if binary {
            "binary"
        } else {
            "JSON"
        },
        lat.len(),
        lat.len() as f64 / wall,
        pct(0.50),
        pct(0.99),
        pct(1.0),
        if check { "" } else { " (not checked)" }
    );
    if let Some((attackers, probe)) = attack {
        let mut statuses = std::collections::BTreeMap::new();
        for a in attackers {
            for (s, n) in a.join().expect("attacker thread") {
                *statuses.entry(s).or_insert(0) += n;
            }
        }
        let probes = probe.join().expect("probe thread");
        let failed = probes.iter().filter(|p| p.is_none()).count();
        let mut ok: Vec<Duration> = probes.into_iter().flatten().collect();
        ok.sort_unstable();
        let ms = |d: Option<&Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1e3);
        println!(
            "{hostile} hostile clients ({hostile_mb} MB bodies), answers by status (0: no answer): {statuses:?}; liveness: {} probes, median {:.2} ms, slowest {:.2} ms, {failed} unanswered",
            ok.len(),
            ms(ok.get(ok.len() / 2)),
            ms(ok.last())
        );
    }
}

/// A KServe JSON body of about `bytes` bytes: numbers in rows of `width` (3: a shape no model
/// with more values per sample takes).
fn hostile_body(bytes: usize, input_name: &str, width: usize) -> Vec<u8> {
    let n = bytes / 4 / width * width;
    let mut b = format!(
        "{{\"inputs\":[{{\"name\":\"{input_name}\",\"shape\":[{},{width}],\"datatype\":\"FP32\",\"data\":[",
        n / width
    )
    .into_bytes();
    for i in 0..n {
        b.extend_from_slice(if i + 1 == n { b"0.5" } else { b"0.5," });
    }
    b.extend_from_slice(b"]}]}");
    b
}

#[derive(Clone, Copy)]
struct How {
    check: bool,
    binary: bool,
    grpc: bool,
    encoder: bool,
}

/// One client: requests on one keep-alive connection until the deadline.
fn client(
    port: u16,
    c: usize,
    deadline: Instant,
    How {
        check,
        binary,
        grpc,
        encoder,
    }: How,
    plan: &sinter::Plan,
    model: &str,
    input_name: &str,
) -> (Vec<Duration>, usize, usize) {
    if grpc {
        return grpc_client(port, c, deadline, check, plan, model, input_name);
    }
    if encoder {
        return encoder_client(port, c, deadline, (plan, check), model);
    }
    let (mut lat, mut errors, mut mismatches) = (Vec::new(), 0, 0);
    let connect = || keep_alive(port);
    let mut stream = connect();
    let mut i = 0usize;
    while Instant::now() < deadline && i < 1_000_000 {
        i += 1;
        let len = plan.input_len();
        let x = sample(len, c, i);
        let (body, header_len) = if binary {
            let header = format!(
                "{{\"inputs\":[{{\"name\":\"{input_name}\",\"shape\":[1,{len}],\"datatype\":\"FP32\",\"parameters\":{{\"binary_data_size\":{}}}}}],\"parameters\":{{\"binary_data_output\":true}}}}",
                len * 4
            );
            let mut body = header.clone().into_bytes();
            body.extend(x.iter().flat_map(|v| v.to_le_bytes()));
            (body, Some(header.len()))
        } else {
            let body = format!(
                "{{\"inputs\":[{{\"name\":\"{input_name}\",\"shape\":[1,{len}],\"datatype\":\"FP32\",\"data\":{}}}]}}",
                serde_json::to_string(&x).unwrap()
            );
            (body.into_bytes(), None)
        };
        let t = Instant::now();
        let Some(s) = stream.as_mut() else {
            errors += 1;
            stream = connect();
            continue;
        };
        match request(s, port, model, &body, header_len) {
            Some((200, resp, resp_header)) => {
                lat.push(t.elapsed());
                if check {
                    let got: Vec<u32> = match resp_header {
                        // The JSON header, then the output's raw bytes.
                        Some(n) => resp
                            .get(n..)
                            .unwrap_or_default()
                            .chunks_exact(4)
                            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                            .collect(),
                        None => {
                            let v: serde_json::Value =
                                serde_json::from_slice(&resp).unwrap_or_default();
                            v["outputs"][0]["data"]
                                .as_array()
                                .map(|a| {
                                    a.iter()
                                        .map(|x| (x.as_f64().unwrap_or(f64::NAN) as f32).to_bits())
                                        .collect()
                                })
                                .unwrap_or_default()
                        }
                    };
                    let want: Vec<u32> =
                        plan.run(&x).unwrap().iter().map(|v| v.to_bits()).collect();
                    mismatches += usize::from(got != want);
                }
            }
            _ => {
                errors += 1;
                stream = connect();
            }
        }
    }
    (lat, errors, mismatches)
}

/// A keep-alive connection to the server on loopback (no Nagle delay, a 30 s read bound).
fn keep_alive(port: u16) -> Option<TcpStream> {
    let s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_nodelay(true).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    Some(s)
}

/// One request on a keep-alive connection: (status, body, the response's
/// `Inference-Header-Content-Length`). `header_len`: this request's.
fn request(
    s: &mut TcpStream,
    port: u16,
    model: &str,
    body: &[u8],
    header_len: Option<usize>,
) -> Option<(u16, Vec<u8>, Option<usize>)> {
    let extra = header_len.map_or("Content-Type: application/json\r\n".into(), |n| {
        format!(
            "Content-Type: application/octet-stream\r\nInference-Header-Content-Length: {n}\r\n"
        )
    });
    write!(
        s,
        "POST /v2/models/{model}/infer HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .ok()?;
    // A server may answer before the whole body is sent (a refused header) and stop reading:
    // its answer is still there to read.
    let _ = s.write_all(body);
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let status: u16 = line.get(9..12)?.parse().ok()?;
    let (mut len, mut resp_header, mut chunked) = (0usize, None, false);
    loop {
        line.clear();
        r.read_line(&mut line).ok()?;
        let l = line.trim_end().to_ascii_lowercase();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.strip_prefix("content-length:") {
            len = v.trim().parse().ok()?;
        }
        if let Some(v) = l.strip_prefix("inference-header-content-length:") {
            resp_header = v.trim().parse().ok();
        }
        chunked |= l.starts_with("transfer-encoding:") && l.contains("chunked");
    }
    if !chunked {
        let mut buf = vec![0; len];
        r.read_exact(&mut buf).ok()?;
        return Some((status, buf, resp_header));
    }
    // Chunked (as uvicorn answers): hex size lines, each chunk, a 0-size chunk last.
    let mut buf = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).ok()?;
        let size = usize::from_str_radix(line.trim_end().split(';').next()?, 16).ok()?;
        let start = buf.len();
        buf.resize(start + size, 0);
        r.read_exact(&mut buf[start..]).ok()?;
        line.clear();
        r.read_line(&mut line).ok()?;
        if size == 0 {
            break;
        }
    }
    Some((status, buf, resp_header))
}

/// Client `c`'s request `i`: `len` values in [-0.5, 0.5).
fn sample(len: usize, c: usize, i: usize) -> Vec<f32> {
    (0..len)
        .map(|j| (((j * 31 + c * 7919 + i * 13) % 997) as f32 / 997.0) - 0.5)
        .collect()
}

/// One encoder client: requests of random lengths on one keep-alive connection until the
/// deadline, each answer checked against the request alone at its own length.
fn encoder_client(
    port: u16,
    c: usize,
    deadline: Instant,
    (plan, check): (&sinter::Plan, bool),
    model: &str,
) -> (Vec<Duration>, usize, usize) {
    let (mut lat, mut errors, mut mismatches) = (Vec::new(), 0, 0);
    let longest = plan.seq_range().map_or(1, |r| *r.end());
    let mut rng = sinter::model::init::SplitMix64::new(c as u64 + 1);
    let connect = || keep_alive(port);
    let mut stream = connect();
    let mut i = 0usize;
    while Instant::now() < deadline && i < 1_000_000 {
        i += 1;
        let len = 1 + (rng.next_u64() as usize % longest);
        let keep = 1 + (rng.next_u64() as usize % len);
        // Token ids below each input's vocabulary; a mask keeping the first `keep`.
        let inputs: Vec<Vec<i64>> = (0..plan.inputs().len())
            .map(|k| match plan.id_limit(k) {
                Some(v) => (0..len)
                    .map(|_| (rng.next_u64() % v as u64) as i64)
                    .collect(),
                None => (0..len).map(|j| i64::from(j < keep)).collect(),
            })
            .collect();
        let tensors: Vec<serde_json::Value> = plan
            .inputs()
            .iter()
            .zip(&inputs)
            .map(|(info, v)| {
                serde_json::json!({"name": info.name, "shape": [1, len], "datatype": "INT64", "data": v})
            })
            .collect();
        let body = serde_json::json!({ "inputs": tensors }).to_string();
        let t = Instant::now();
        let Some(s) = stream.as_mut() else {
            errors += 1;
            stream = connect();
            continue;
        };
        // The server closes a keep-alive connection idle past its header timeout (while this
        // client checked the last answer): send once more on a new one.
        let mut answer = request(s, port, model, body.as_bytes(), None);
        if answer.is_none() {
            stream = connect();
            answer = stream
                .as_mut()
                .and_then(|s| request(s, port, model, body.as_bytes(), None));
        }
        match answer {
            Some((200, _, _)) if !check => lat.push(t.elapsed()),
            Some((200, resp, _)) => {
                lat.push(t.elapsed());
                let v: serde_json::Value = serde_json::from_slice(&resp).unwrap_or_default();
                let arrays: Vec<sinter::io::npy::Array> = inputs
                    .into_iter()
                    .map(sinter::io::npy::Array::I64)
                    .collect();
                let values: Vec<sinter::Values> = arrays.iter().map(|a| a.values()).collect();
                let alone = plan.run_seq(len, &values).unwrap_or_default();
                let same = alone.iter().enumerate().all(|(k, want)| {
                    let got = v["outputs"][k]["data"].as_array();
                    got.is_some_and(|g| {
                        g.len() == want.len()
                            && g.iter().zip(want).all(|(x, w)| {
                                (x.as_f64().unwrap_or(f64::NAN) as f32).to_bits() == w.to_bits()
                            })
                    })
                });
                mismatches += usize::from(!same);
            }
            _ => {
                errors += 1;
                stream = connect();
            }
        }
    }
    (lat, errors, mismatches)
}

/// One gRPC client: `ModelInfer` calls on one HTTP/2 connection until the deadline.
fn grpc_client(
    port: u16,
    c: usize,
    deadline: Instant,
    check: bool,
    plan: &sinter::Plan,
    model: &str,
    input_name: &str,
) -> (Vec<Duration>, usize, usize) {
    use prost::Message as _;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let (mut lat, mut errors, mut mismatches) = (Vec::new(), 0, 0);
        let Ok(tcp) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
            return (lat, 1, 0);
        };
        let _ = tcp.set_nodelay(true);
        let Ok((send, conn)) = h2::client::handshake(tcp).await else {
            return (lat, 1, 0);
        };
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut i = 0usize;
        while Instant::now() < deadline && i < 1_000_000 {
            i += 1;
            let len = plan.input_len();
            let x = sample(len, c, i);
            let req = proto::ModelInferRequest {
                model_name: model.into(),
                inputs: vec![proto::InferInputTensor {
                    name: input_name.into(),
                    datatype: "FP32".into(),
                    shape: vec![1, len as i64],
                    ..Default::default()
                }],
                raw_input_contents: vec![
                    x.iter()
                        .flat_map(|v| v.to_le_bytes())
                        .collect::<Vec<u8>>()
                        .into(),
                ],
                ..Default::default()
            };
            let msg = req.encode_to_vec();
            let mut body = vec![0];
            body.extend((msg.len() as u32).to_be_bytes());
            body.extend(msg);
            let t = Instant::now();
            match grpc_call(&send, body).await {
                Some(resp) => {
                    lat.push(t.elapsed());
                    if check {
                        let r = resp
                            .get(5..)
                            .and_then(|m| proto::ModelInferResponse::decode(m).ok());
                        let got: Vec<u32> = r
                            .and_then(|r| r.raw_output_contents.into_iter().next())
                            .unwrap_or_default()
                            .chunks_exact(4)
                            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                            .collect();
                        let want: Vec<u32> =
                            plan.run(&x).unwrap().iter().map(|v| v.to_bits()).collect();
                        mismatches += usize::from(got != want);
                    }
                }
                None => errors += 1,
            }
        }
        (lat, errors, mismatches)
    })
}

/// One `ModelInfer` call: the response body when the status is OK.
async fn grpc_call(
    send: &h2::client::SendRequest<prost::bytes::Bytes>,
    body: Vec<u8>,
) -> Option<Vec<u8>> {
    let mut send = send.clone().ready().await.ok()?;
    let req = http::Request::post("http://127.0.0.1/inference.GRPCInferenceService/ModelInfer")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .ok()?;
    let (resp, mut stream) = send.send_request(req, false).ok()?;
    stream.send_data(body.into(), true).ok()?;
    let mut recv = resp.await.ok()?.into_body();
    let mut out = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.ok()?;
        let _ = recv.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    let trailers = recv.trailers().await.ok()??;
    (trailers.get("grpc-status")?.as_bytes() == b"0").then_some(out)
}
