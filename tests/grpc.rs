//! `sinter serve --grpc-port` end to end over loopback with an HTTP/2 client: KServe v2's
//! `GRPCInferenceService` answers (liveness, readiness, metadata) and `ModelInfer` results
//! bit-identical to `Plan::run` of the same rows alone, from concurrent calls on one
//! connection (which the batcher may join); bad calls get the right gRPC status, mutated messages all get a status and
//! the server serves on.
#![cfg(feature = "serve")]

#[allow(dead_code)] // the server's messages; the client uses some
#[path = "../src/bin/sinter/serve/grpc/proto.rs"]
mod proto;
#[path = "common/server.rs"]
mod server;

use prost::bytes::Bytes;
use proto::*;
use server::Server;
use std::time::Duration;

/// gRPC status codes.
const OK: u32 = 0;
const INVALID_ARGUMENT: u32 = 3;
const NOT_FOUND: u32 = 5;
const UNIMPLEMENTED: u32 = 12;

fn start() -> (Server, u16) {
    start_with(&[])
}

fn start_with(extra: &[&str]) -> (Server, u16) {
    let mut args = vec!["builtin:seed", "--grpc-port", "0", "--max-delay-us", "2000"];
    args.extend(extra);
    let server = Server::start(&args);
    let line = server
        .lines
        .recv_timeout(Duration::from_secs(30))
        .expect("no gRPC line");
    let port = line
        .rsplit(':')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no gRPC port in {line:?}"));
    (server, port)
}

/// One HTTP/2 connection, shared by concurrent calls.
#[derive(Clone)]
struct Client {
    send: h2::client::SendRequest<Bytes>,
}

/// A call's outcome: its `grpc-status`, `grpc-message` and the message, if any.
struct Reply {
    status: u32,
    message: String,
    body: Vec<u8>,
}

impl Client {
    async fn connect(port: u16) -> Client {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let (send, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Client { send }
    }

    /// `method` with `body` as the whole request body (already framed).
    async fn raw(&self, method: &str, body: Vec<u8>) -> Reply {
        let mut send = self.send.clone().ready().await.unwrap();
        let req = http::Request::post(format!(
            "http://127.0.0.1/inference.GRPCInferenceService/{method}"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
        let (resp, mut stream) = send.send_request(req, false).unwrap();
        stream.send_data(Bytes::from(body), true).unwrap();
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 200);
        let (parts, mut recv) = resp.into_parts();
        let mut body = Vec::new();
        while let Some(chunk) = recv.data().await {
            let chunk = chunk.unwrap();
            let _ = recv.flow_control().release_capacity(chunk.len());
            body.extend_from_slice(&chunk);
        }
        let trailers = recv.trailers().await.unwrap().unwrap_or_default();
        let field = |name: &str| {
            trailers
                .get(name)
                .or_else(|| parts.headers.get(name))
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let status = field("grpc-status")
            .and_then(|s| s.parse().ok())
            .expect("every answer carries a grpc-status");
        Reply {
            status,
            message: field("grpc-message").unwrap_or_default(),
            body,
        }
    }

    /// `method` with `msg` framed; the answer's message decoded when the call succeeded.
    async fn call<M: prost::Message + Default>(
        &self,
        method: &str,
        msg: &impl prost::Message,
    ) -> Result<M, (u32, String)> {
        let r = self.raw(method, frame(msg)).await;
        if r.status != OK {
            return Err((r.status, r.message));
        }
        assert!(r.body.len() >= 5 && r.body[0] == 0, "{:?}", r.body);
        let len = u32::from_be_bytes([r.body[1], r.body[2], r.body[3], r.body[4]]) as usize;
        assert_eq!(r.body.len(), 5 + len);
        Ok(M::decode(&r.body[5..]).unwrap())
    }
}

fn frame(msg: &impl prost::Message) -> Vec<u8> {
    let body = msg.encode_to_vec();
    let mut out = vec![0];
    out.extend((body.len() as u32).to_be_bytes());
    out.extend(body);
    out
}

fn input(rows: usize, seed: usize) -> Vec<f32> {
    (0..rows * 784)
        .map(|i| (((i * 37 + seed * 7919) % 991) as f32 / 991.0) - 0.5)
        .collect()
}

fn infer_request(x: &[f32], raw: bool) -> ModelInferRequest {
    let rows = x.len() / 784;
    let mut t = InferInputTensor {
        name: "x".into(),
        datatype: "FP32".into(),
        shape: vec![rows as i64, 784],
        ..Default::default()
    };
    let mut req = ModelInferRequest {
        model_name: "seed".into(),
        ..Default::default()
    };
    if raw {
        req.raw_input_contents = vec![Bytes::from(
            x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
        )];
    } else {
        t.contents = Some(InferTensorContents {
            fp32_contents: x.to_vec(),
            ..Default::default()
        });
    }
    req.inputs = vec![t];
    req
}

fn want_bits(x: &[f32]) -> Vec<u32> {
    let plan = sinter::builtin::seed()
        .compile(&sinter::CompileOptions::new())
        .unwrap();
    plan.run(x).unwrap().iter().map(|v| v.to_bits()).collect()
}

fn output_bits(r: &ModelInferResponse) -> Vec<u32> {
    r.raw_output_contents[0]
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn grpc_answers_are_bit_exact_and_batched() {
    let (server, port) = start();
    // One process serves both protocols.
    let mut rest = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    std::io::Write::write_all(
        &mut rest,
        b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    let mut head = [0u8; 12];
    std::io::Read::read_exact(&mut rest, &mut head).unwrap();
    assert_eq!(&head[9..12], b"200");
    rt().block_on(async {
        let c = Client::connect(port).await;
        let live: ServerLiveResponse = c.call("ServerLive", &ModelRef::default()).await.unwrap();
        assert!(live.live);
        let ready: ServerReadyResponse = c.call("ServerReady", &ModelRef::default()).await.unwrap();
        assert!(ready.ready);
        let seed = ModelRef {
            name: "seed".into(),
            version: String::new(),
        };
        let r: ModelReadyResponse = c.call("ModelReady", &seed).await.unwrap();
        assert!(r.ready);
        let nope = ModelRef {
            name: "nope".into(),
            version: String::new(),
        };
        let r: ModelReadyResponse = c.call("ModelReady", &nope).await.unwrap();
        assert!(!r.ready);
        let m: ServerMetadataResponse = c.call("ServerMetadata", &seed).await.unwrap();
        assert_eq!(m.name, "sinter");
        let m: ModelMetadataResponse = c.call("ModelMetadata", &seed).await.unwrap();
        assert_eq!(m.inputs[0].shape, [-1, 784]);
        assert_eq!(m.inputs[0].datatype, "FP32");

        // Concurrent calls on one connection, joined by the batcher: each answer is the
        // rows' own, bit for bit. Raw contents as tritonclient sends them, and typed ones.
        let calls: Vec<_> = (0..16)
            .map(|k| {
                let c = c.clone();
                tokio::spawn(async move {
                    let x = input(1 + k % 4, k);
                    let mut req = infer_request(&x, k % 3 != 0);
                    req.id = format!("call-{k}");
                    let r: ModelInferResponse = c.call("ModelInfer", &req).await.unwrap();
                    assert_eq!(r.id, format!("call-{k}"));
                    assert_eq!(r.outputs[0].shape, [(1 + k % 4) as i64, 8]);
                    assert_eq!(r.outputs[0].datatype, "FP32");
                    (output_bits(&r), x)
                })
            })
            .collect();
        for call in calls {
            let (got, x) = call.await.unwrap();
            assert_eq!(got, want_bits(&x));
        }
    });
}

#[test]
fn bad_grpc_calls_get_the_right_status_and_the_server_serves_on() {
    let (_server, port) = start();
    rt().block_on(async {
        let c = Client::connect(port).await;
        let x = input(2, 1);
        let good = infer_request(&x, true);
        let status = |r: Result<ModelInferResponse, (u32, String)>| match r {
            Ok(_) => (OK, String::new()),
            Err(e) => e,
        };
        let mut unknown = good.clone();
        unknown.model_name = "nope".into();
        let mut shape = good.clone();
        shape.inputs[0].shape = vec![2, 783];
        let mut counts = good.clone();
        counts.inputs[0].shape = vec![3, 784];
        let mut raw = good.clone();
        raw.raw_input_contents.push(Bytes::from_static(b"\0\0\0\0"));
        let mut dtype = good.clone();
        dtype.inputs[0].datatype = "BYTES".into();
        let mut version = good.clone();
        version.model_version = "7".into();
        for (req, want, words) in [
            (unknown, NOT_FOUND, "no model named \"nope\""),
            (shape, INVALID_ARGUMENT, "the model takes [rows, 784]"),
            (counts, INVALID_ARGUMENT, "holds 2 samples"),
            (raw, INVALID_ARGUMENT, "2 raw_input_contents for 1 inputs"),
            (dtype, INVALID_ARGUMENT, "datatype BYTES"),
            (version, NOT_FOUND, "version 1 only"),
        ] {
            let (code, message) = status(c.call("ModelInfer", &req).await);
            assert_eq!(code, want, "{message}");
            assert!(message.contains(words), "{message}");
        }
        // Framing faults and unknown methods.
        let mut compressed = frame(&good);
        compressed[0] = 1;
        let mut long = frame(&good);
        long[4] = long[4].wrapping_add(1);
        for (method, body, want) in [
            ("ModelInfer", compressed, UNIMPLEMENTED),
            ("ModelInfer", long, INVALID_ARGUMENT),
            ("ModelInfer", vec![0, 0], INVALID_ARGUMENT),
            (
                "ModelInfer",
                vec![0, 0, 0, 0, 3, 0xff, 0xff, 0xff],
                INVALID_ARGUMENT,
            ),
            (
                "RepositoryIndex",
                frame(&ModelRef::default()),
                UNIMPLEMENTED,
            ),
        ] {
            let r = c.raw(method, body).await;
            assert_eq!(r.status, want, "{method}: {}", r.message);
            assert!(r.body.is_empty());
        }
        // 300 mutated messages: each gets a status, none takes the server down.
        let valid = frame(&good);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) as usize
        };
        let mut answered = [0usize; 17];
        for round in 0..300 {
            let mut body = valid.clone();
            for _ in 0..1 + next() % 8 {
                let at = 5 + next() % (body.len() - 5);
                body[at] = next() as u8;
            }
            if round % 5 == 0 {
                body.truncate(5 + next() % (body.len() - 5));
            }
            // Keep the prefix right most of the time, so the message decoder sees the damage.
            if round % 7 != 0 {
                let len = (body.len() - 5) as u32;
                body[1..5].copy_from_slice(&len.to_be_bytes());
            }
            let r = c.raw("ModelInfer", body).await;
            answered[r.status.min(16) as usize] += 1;
        }
        assert_eq!(answered.iter().sum::<usize>(), 300);
        let r: ModelInferResponse = c.call("ModelInfer", &good).await.unwrap();
        assert_eq!(output_bits(&r), want_bits(&x));
    });
}

/// A connection with no call in flight for `--header-timeout-ms` is closed (as an idle
/// HTTP/1.1 keep-alive connection is), so idle clients cannot hold every connection slot.
#[test]
fn an_idle_grpc_connection_is_closed() {
    let (_server, port) = start_with(&["--header-timeout-ms", "300"]);
    rt().block_on(async {
        let c = Client::connect(port).await;
        let live: ServerLiveResponse = c.call("ServerLive", &ModelRef::default()).await.unwrap();
        assert!(live.live);
        // Far above the timeout, below anything a broken flag would fall back to (10 s).
        tokio::time::sleep(Duration::from_millis(3000)).await;
        assert!(
            c.send.clone().ready().await.is_err(),
            "the idle connection is still open"
        );
        // A new connection is served.
        let c = Client::connect(port).await;
        let live: ServerLiveResponse = c.call("ServerLive", &ModelRef::default()).await.unwrap();
        assert!(live.live);
    });
}
