//! A model file read without holding it whole: the protobuf wire format is walked field by
//! field, each initializer (`ModelProto.graph.initializer`, the bulk of the bytes) is read,
//! decoded and handed on one at a time, and the rest of the model, small, is kept to be
//! decoded whole. Peak memory while loading is then the converted weights plus the largest
//! single initializer, not the file plus the converted weights.

use super::proto::TensorProto;
use crate::error::LoadErrorKind;
use prost::Message;
use prost::bytes::Bytes;
use std::io::Read;

/// `ModelProto.graph`.
const MODEL_GRAPH: u64 = 7;
/// `GraphProto.initializer`.
const GRAPH_INITIALIZER: u64 = 5;
/// Wire types.
const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LEN: u64 = 2;
const FIXED32: u64 = 5;

type Res<T> = std::result::Result<T, LoadErrorKind>;

/// What [`fields`] does with the field it takes: reads its payload of `n` bytes and gives
/// what to write in its place, if anything.
type Taken<'t, R> = dyn FnMut(&mut Wire<R>, u64) -> std::result::Result<Option<Vec<u8>>, Stop> + 't;

/// Why reading stopped: the bytes are not a model, or the handler refused an initializer.
pub(super) enum Stop {
    Wire(LoadErrorKind),
    Each(crate::Error),
}

impl From<LoadErrorKind> for Stop {
    fn from(k: LoadErrorKind) -> Self {
        Stop::Wire(k)
    }
}

fn malformed(m: impl std::fmt::Display) -> LoadErrorKind {
    LoadErrorKind::Malformed(format!("not an ONNX model (protobuf: {m})"))
}

/// A reader that knows how many bytes are left in the field being read.
struct Wire<R> {
    r: R,
    left: u64,
}

impl<R: Read> Wire<R> {
    fn byte(&mut self) -> Res<Option<u8>> {
        if self.left == 0 {
            return Ok(None);
        }
        let mut b = [0u8];
        self.r
            .read_exact(&mut b)
            .map_err(|e| malformed(format!("reading: {e}")))?;
        self.left -= 1;
        Ok(Some(b[0]))
    }

    /// A varint, its bytes appended to `copy`; `None` at the end of the field (only before
    /// its first byte).
    fn varint(&mut self, copy: &mut Vec<u8>) -> Res<Option<u64>> {
        let mut v = 0u64;
        for i in 0..10 {
            let Some(b) = self.byte()? else {
                return if i == 0 {
                    Ok(None)
                } else {
                    Err(malformed("a varint cut short"))
                };
            };
            copy.push(b);
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(Some(v));
            }
        }
        Err(malformed("a varint longer than 10 bytes"))
    }

    /// `n` bytes, appended to `out`; checked against what is left before allocating.
    fn bytes(&mut self, n: u64, out: &mut Vec<u8>) -> Res<()> {
        if n > self.left {
            return Err(malformed(format!(
                "a field of {n} bytes with {} left",
                self.left
            )));
        }
        let start = out.len();
        let n = usize::try_from(n).map_err(|_| malformed("a field too long"))?;
        out.try_reserve_exact(n)
            .map_err(|_| malformed("a field too long to hold"))?;
        out.resize(start + n, 0);
        self.r
            .read_exact(&mut out[start..])
            .map_err(|e| malformed(format!("reading: {e}")))?;
        self.left -= n as u64;
        Ok(())
    }

    /// The payload of a field of wire type `wt` (its tag already read), appended to `out`.
    fn payload(&mut self, wt: u64, out: &mut Vec<u8>) -> Res<()> {
        match wt {
            VARINT => self
                .varint(out)?
                .map(|_| ())
                .ok_or_else(|| malformed("a varint cut short")),
            FIXED64 => self.bytes(8, out),
            FIXED32 => self.bytes(4, out),
            LEN => {
                let n = self
                    .varint(out)?
                    .ok_or_else(|| malformed("a length cut short"))?;
                self.bytes(n, out)
            }
            other => Err(malformed(format!("wire type {other}"))),
        }
    }
}

/// Reads a model of `len` bytes from `r`, handing each initializer to `each` as soon as it is
/// read (in file order) and returning the model's other bytes, a valid `ModelProto` encoding
/// without initializers.
pub(super) fn split(
    r: impl Read,
    len: u64,
    mut each: impl FnMut(TensorProto) -> crate::Result<()>,
) -> std::result::Result<Vec<u8>, Stop> {
    let mut w = Wire { r, left: len };
    fields(&mut w, MODEL_GRAPH, &mut |w, n| {
        // The graph's fields, but its initializers.
        let after = w.left - n;
        w.left = n;
        let graph = fields(w, GRAPH_INITIALIZER, &mut |w, n| {
            let mut t = Vec::new();
            w.bytes(n, &mut t)?;
            let t = TensorProto::decode(Bytes::from(t)).map_err(malformed)?;
            each(t).map_err(Stop::Each)?;
            Ok(None)
        })?;
        w.left = after;
        Ok(Some(graph))
    })
}

/// The fields of a message (`w.left` is its length), copied, but the length-delimited field
/// number `take`: its payload of `n` bytes is for `taken`, which reads it and gives what to
/// write in its place, if anything.
fn fields<R: Read>(
    w: &mut Wire<R>,
    take: u64,
    taken: &mut Taken<'_, R>,
) -> std::result::Result<Vec<u8>, Stop> {
    let mut rest = Vec::new();
    loop {
        let mut tag_bytes = Vec::new();
        let Some(tag) = w.varint(&mut tag_bytes)? else {
            return Ok(rest);
        };
        let (field, wt) = (tag >> 3, tag & 7);
        if field != take || wt != LEN {
            rest.extend(tag_bytes);
            w.payload(wt, &mut rest)?;
            continue;
        }
        let n = w
            .varint(&mut Vec::new())?
            .ok_or_else(|| malformed("a length cut short"))?;
        if n > w.left {
            return Err(malformed(format!("a field of {n} bytes with {} left", w.left)).into());
        }
        if let Some(bytes) = taken(w, n)? {
            rest.extend(tag_bytes);
            prost::encoding::encode_varint(bytes.len() as u64, &mut rest);
            rest.extend(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::onnx::proto::{GraphProto, ModelProto, NodeProto, OperatorSetIdProto};

    fn tensor(name: &str, n: usize) -> TensorProto {
        TensorProto {
            name: name.into(),
            dims: vec![n as i64],
            data_type: 1,
            raw_data: (0..n * 4).map(|i| i as u8).collect(),
            ..Default::default()
        }
    }

    fn model() -> ModelProto {
        ModelProto {
            ir_version: 8,
            producer_name: "test".into(),
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            }],
            graph: Some(GraphProto {
                name: "g".into(),
                node: vec![NodeProto {
                    op_type: "Relu".into(),
                    input: vec!["x".into()],
                    output: vec!["y".into()],
                    ..Default::default()
                }],
                initializer: vec![tensor("a", 3), tensor("b", 1000)],
                ..Default::default()
            }),
        }
    }

    fn split_all(bytes: &[u8]) -> std::result::Result<(Vec<u8>, Vec<TensorProto>), String> {
        let mut seen = Vec::new();
        let rest = split(bytes, bytes.len() as u64, |t| {
            seen.push(t);
            Ok(())
        });
        match rest {
            Ok(r) => Ok((r, seen)),
            Err(Stop::Wire(k)) => Err(format!("{k:?}")),
            Err(Stop::Each(e)) => Err(e.to_string()),
        }
    }

    /// The rest decodes to the model without its initializers, which come out in order.
    #[test]
    fn split_hands_out_initializers_and_keeps_the_rest() {
        let m = model();
        let (rest, inits) = split_all(&m.encode_to_vec()).unwrap();
        let mut want = m.clone();
        let g = want.graph.as_mut().unwrap();
        assert_eq!(inits, std::mem::take(&mut g.initializer));
        assert_eq!(ModelProto::decode(&rest[..]).unwrap(), want);
    }

    /// A graph written in two pieces (protobuf merges them) keeps both pieces' fields.
    #[test]
    fn a_graph_in_two_pieces_is_merged() {
        let m = model();
        let second = ModelProto {
            graph: Some(GraphProto {
                initializer: vec![tensor("c", 2)],
                node: vec![NodeProto {
                    op_type: "Tanh".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut bytes = m.encode_to_vec();
        bytes.extend(second.encode_to_vec());
        let whole = ModelProto::decode(&bytes[..]).unwrap();
        let (rest, inits) = split_all(&bytes).unwrap();
        let names: Vec<&str> = inits.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        let rest = ModelProto::decode(&rest[..]).unwrap();
        assert_eq!(rest.graph.unwrap().node, whole.graph.unwrap().node);
    }

    /// Every cut is an error or a shorter valid model, never a panic; a length past the end
    /// is refused before anything that size is allocated.
    #[test]
    fn cuts_and_huge_lengths_are_errors() {
        let bytes = model().encode_to_vec();
        for len in 0..bytes.len() {
            let cut = &bytes[..len];
            if ModelProto::decode(cut).is_err() {
                assert!(split_all(cut).is_err(), "a cut at {len} was read");
            }
        }
        // Field 7 (graph), length 2^35: refused from the header.
        let huge = [0x3a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01];
        assert!(split_all(&huge).unwrap_err().contains("bytes with"));
        // A varint of 11 bytes.
        assert!(
            split_all(&[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
            ])
            .is_err()
        );
        // Wire type 3 (a group).
        assert!(split_all(&[0x0b]).is_err());
    }
}
