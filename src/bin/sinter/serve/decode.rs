//! JSON request bodies decoded straight into the model's input arrays: no `serde_json::Value`
//! tree, numbers into `f32` / `i64` as the parser reads them. A KServe tensor's declared
//! `shape` and `datatype` are checked against the model before its `data` is read (when they
//! come first, as every client writes them), so a body the model cannot take is refused
//! without decoding it; a tensor's values never outgrow what its shape declared, or, without
//! one, what the body could hold. A `data` that comes before those fields (a client that
//! sorts its keys) is kept as a borrowed slice of the body, and checked and decoded once the
//! request is whole.
//!
//! Peak memory of a decode: the body, plus the decoded arrays (4 or 8 bytes per value), plus
//! at most one vector's growth.

use super::budget::Held;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use sinter::io::npy::Array;
use sinter::plan::TensorInfo;
use sinter::{DType, Plan};
use std::fmt;

/// Deepest nesting of a tensor's `data`.
const MAX_DEPTH: usize = 32;
/// Most dimensions a declared `shape` may have.
const MAX_DIMS: usize = 32;

/// A tensor's values before they meet the model's type: floats, or integers.
pub(super) enum Flat {
    F32(Vec<f32>),
    Int(Vec<i64>),
}

impl Flat {
    /// Empty, of the kind an input of `info` with the request's `datatype` is decoded into.
    pub(super) fn for_input(info: &TensorInfo, datatype: Option<&str>) -> Result<Flat, String> {
        let int = match (datatype, info.dtype) {
            (Some("FP32") | None, DType::F32) => false,
            (Some("INT32" | "INT64") | None, DType::I32 | DType::I64) => true,
            (Some("BOOL") | None, DType::Bool) => true,
            (Some("FP32"), _) => false, // whole-number floats as ids, as Keras casts them
            (Some(t), d) => {
                return Err(format!(
                    "datatype {t} for an input of {}",
                    super::codec::kserve_type(d)
                ));
            }
        };
        Ok(if int {
            Flat::Int(Vec::new())
        } else {
            Flat::F32(Vec::new())
        })
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Flat::F32(v) => v.len(),
            Flat::Int(v) => v.len(),
        }
    }

    /// Bytes per value.
    fn width(&self) -> usize {
        match self {
            Flat::F32(_) => 4,
            Flat::Int(_) => 8,
        }
    }

    /// Room for `n` more values, charged to the budget first.
    fn reserve(&mut self, n: usize, room: &mut Room<'_>) -> Result<(), String> {
        if let Err(e) = room.held.grow(n.saturating_mul(self.width())) {
            room.over_budget = true;
            return Err(e.to_string());
        }
        match self {
            Flat::F32(v) => v.reserve_exact(n),
            Flat::Int(v) => v.reserve_exact(n),
        }
        Ok(())
    }

    /// The model input's array: integers become int32 where the model takes int32.
    pub(super) fn into_array(self, dtype: DType) -> Result<Array, String> {
        Ok(match (self, dtype) {
            (Flat::F32(v), _) => Array::F32(v),
            (Flat::Int(v), DType::I32) => Array::I32(
                v.iter()
                    .map(|&v| i32::try_from(v).map_err(|_| format!("{v} is not an int32")))
                    .collect::<Result<_, _>>()?,
            ),
            (Flat::Int(v), DType::Bool) => Array::Bool(
                v.iter()
                    .map(|&v| match v {
                        0 | 1 => Ok(v == 1),
                        _ => Err(format!("{v} is not a bool")),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            (Flat::Int(v), _) => Array::I64(v),
        })
    }
}

/// What decoding may take: the bytes in flight it is charged to, and the most values any
/// tensor of this body could hold (two bytes per value: a digit and a comma).
pub(super) struct Room<'b> {
    held: &'b mut Held,
    max_values: usize,
    /// Set when decoding stopped for the budget (a 503, not the client's fault).
    pub(super) over_budget: bool,
}

impl<'b> Room<'b> {
    /// For a JSON part of `len` bytes, charging `held`.
    pub(super) fn new(held: &'b mut Held, len: usize) -> Self {
        Room {
            held,
            max_values: len / 2 + 1,
            over_budget: false,
        }
    }

    /// Values decoded into `out` (cleared first): at most `cap`, charged as they come.
    fn numbers<'de, D: Deserializer<'de>>(
        &mut self,
        d: D,
        out: &mut Flat,
        cap: usize,
    ) -> Result<(), D::Error> {
        let cap = cap.min(self.max_values);
        Numbers {
            out,
            room: self,
            cap,
            depth: 0,
        }
        .deserialize(d)
    }
}

/// A nested JSON array of numbers, flattened into `out` with at most `cap` values.
struct Numbers<'o, 'r, 'b> {
    out: &'o mut Flat,
    room: &'r mut Room<'b>,
    cap: usize,
    depth: usize,
}

impl Numbers<'_, '_, '_> {
    fn push_f64<E: de::Error>(&mut self, v: f64, text: impl fmt::Display) -> Result<(), E> {
        self.make_room()?;
        match self.out {
            Flat::F32(out) => out.push(v as f32),
            Flat::Int(_) => return Err(E::custom(format!("{text} is not an integer"))),
        }
        Ok(())
    }

    fn push_int<E: de::Error>(&mut self, v: Option<i64>, as_f64: f64, text: u64) -> Result<(), E> {
        self.make_room()?;
        match self.out {
            Flat::F32(out) => out.push(as_f64 as f32),
            Flat::Int(out) => {
                out.push(v.ok_or_else(|| E::custom(format!("{text} is not an integer")))?)
            }
        }
        Ok(())
    }

    /// Charges and reserves the next block of values when the vector is full.
    fn make_room<E: de::Error>(&mut self) -> Result<(), E> {
        let len = self.out.len();
        if len >= self.cap {
            return Err(E::custom(format!(
                "more than the {} values the tensor can hold",
                self.cap
            )));
        }
        let capacity = match &*self.out {
            Flat::F32(v) => v.capacity(),
            Flat::Int(v) => v.capacity(),
        };
        if len == capacity {
            let more = (len.max(1024)).min(self.cap - len);
            self.out.reserve(more, self.room).map_err(E::custom)?;
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Numbers<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Numbers<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("numbers, or arrays of them")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.depth >= MAX_DEPTH {
            return Err(de::Error::custom(format!(
                "data nested deeper than {MAX_DEPTH} levels"
            )));
        }
        loop {
            let inner = Numbers {
                out: &mut *self.out,
                room: &mut *self.room,
                cap: self.cap,
                depth: self.depth + 1,
            };
            if seq.next_element_seed(inner)?.is_none() {
                return Ok(());
            }
        }
    }

    fn visit_f64<E: de::Error>(mut self, v: f64) -> Result<(), E> {
        self.push_f64(v, v)
    }

    fn visit_bool<E: de::Error>(mut self, v: bool) -> Result<(), E> {
        self.push_int(Some(i64::from(v)), f64::from(u8::from(v)), u64::from(v))
    }

    fn visit_u64<E: de::Error>(mut self, v: u64) -> Result<(), E> {
        self.push_int(i64::try_from(v).ok(), v as f64, v)
    }

    fn visit_i64<E: de::Error>(mut self, v: i64) -> Result<(), E> {
        self.make_room()?;
        match self.out {
            Flat::F32(out) => out.push(v as f64 as f32),
            Flat::Int(out) => out.push(v),
        }
        Ok(())
    }
}

/// The input of `plan` a tensor named `name` feeds: by name, else the only one.
fn input_of(plan: &Plan, name: Option<&str>) -> Option<usize> {
    let inputs = plan.inputs();
    name.and_then(|n| inputs.iter().position(|i| i.name == n))
        .or_else(|| (inputs.len() == 1).then_some(0))
}

/// A tensor's declared shape: at most [`MAX_DIMS`] sizes.
struct Shape;

impl<'de> DeserializeSeed<'de> for Shape {
    type Value = Vec<u64>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<u64>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Shape {
    type Value = Vec<u64>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of sizes")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u64>, A::Error> {
        let mut dims = Vec::new();
        while let Some(d) = seq.next_element::<u64>()? {
            if dims.len() == MAX_DIMS {
                return Err(de::Error::custom(format!(
                    "a shape of more than {MAX_DIMS} dimensions"
                )));
            }
            dims.push(d);
        }
        Ok(dims)
    }
}

/// A tensor's `parameters`, as far as decoding cares.
#[derive(Default)]
struct Params {
    binary_data_size: Option<u64>,
    binary_data: Option<bool>,
    binary_data_output: Option<bool>,
}

impl<'de> DeserializeSeed<'de> for &mut Params {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for &mut Params {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of parameters")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match &*key {
                "binary_data_size" => self.binary_data_size = Some(map.next_value()?),
                "binary_data" => self.binary_data = map.next_value::<Option<bool>>()?,
                "binary_data_output" => {
                    self.binary_data_output = map.next_value::<Option<bool>>()?
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// Where a tensor's values are.
pub(super) enum Values<'de> {
    /// Decoded as the body was read.
    Decoded(Flat),
    /// `data` that came before the fields naming its input: decoded when the tensor is whole.
    Later(&'de RawValue),
    /// In the binary section (`binary_data_size` bytes).
    Binary(usize),
    /// No `data` and no binary size.
    Missing,
}

/// One tensor of a KServe request's `inputs`.
pub(super) struct InputTensor<'de> {
    pub(super) name: Option<String>,
    pub(super) datatype: Option<String>,
    pub(super) shape: Option<Vec<u64>>,
    pub(super) values: Values<'de>,
}

/// The input a tensor feeds and the values its declared shape allows, checked against the
/// model; `None` when the tensor does not name one of the model's inputs.
fn checked<'p>(
    plan: &'p Plan,
    name: Option<&str>,
    datatype: Option<&str>,
    shape: Option<&[u64]>,
) -> Result<Option<(&'p TensorInfo, Option<usize>)>, String> {
    let Some(k) = input_of(plan, name) else {
        return Ok(None);
    };
    let info = &plan.inputs()[k];
    Flat::for_input(info, datatype)?;
    let Some(shape) = shape else {
        return Ok(Some((info, None)));
    };
    let seq = super::codec::sample_fits(info, shape)?;
    let len = info.len_at(seq.unwrap_or(1));
    let values = usize::try_from(shape[0])
        .ok()
        .and_then(|r| r.checked_mul(len))
        .ok_or_else(|| format!("shape {shape:?}: too many values"))?;
    Ok(Some((info, Some(values))))
}

/// Decodes one tensor object of `inputs`.
struct TensorSeed<'p, 'r, 'b> {
    plan: &'p Plan,
    room: &'r mut Room<'b>,
}

impl<'de> DeserializeSeed<'de> for TensorSeed<'_, '_, '_> {
    type Value = InputTensor<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<InputTensor<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TensorSeed<'_, '_, '_> {
    type Value = InputTensor<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a tensor object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<InputTensor<'de>, A::Error> {
        let mut t = InputTensor {
            name: None,
            datatype: None,
            shape: None,
            values: Values::Missing,
        };
        let mut params = Params::default();
        let mut data = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match &*key {
                "name" => t.name = Some(map.next_value()?),
                "datatype" => t.datatype = Some(map.next_value()?),
                "shape" => t.shape = Some(map.next_value_seed(Shape)?),
                "parameters" => map.next_value_seed(&mut params)?,
                "data" if data.is_none() => {
                    let exact = t
                        .name
                        .as_deref()
                        .is_some_and(|n| self.plan.inputs().iter().any(|i| i.name == n));
                    let header = checked(
                        self.plan,
                        t.name.as_deref(),
                        t.datatype.as_deref(),
                        t.shape.as_deref(),
                    );
                    data = Some(match header {
                        // The input, its count and the values' type are known and checked:
                        // decode now.
                        Ok(Some((info, Some(want))))
                            if t.datatype.is_some() || info.dtype == DType::F32 =>
                        {
                            let mut flat = Flat::for_input(info, t.datatype.as_deref())
                                .map_err(de::Error::custom)?;
                            let n = want.min(self.room.max_values);
                            flat.reserve(n, self.room).map_err(de::Error::custom)?;
                            let cap = want;
                            let room = &mut *self.room;
                            map.next_value_seed(NumbersSeed {
                                room,
                                out: &mut flat,
                                cap,
                            })?;
                            Values::Decoded(flat)
                        }
                        Err(e) if exact => return Err(de::Error::custom(e)),
                        // Data before its header (keys in sorted order, as serde_json writes
                        // them), or the only input's fallback for a tensor that may not be
                        // the one used: kept as a slice of the body, checked and decoded once
                        // the request is whole.
                        _ => Values::Later(map.next_value()?),
                    });
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        t.values = match (params.binary_data_size, data) {
            (Some(size), _) => Values::Binary(usize::try_from(size).map_err(|_| {
                de::Error::custom(format!("binary_data_size {size} is not a size"))
            })?),
            (None, Some(v)) => v,
            (None, None) => Values::Missing,
        };
        Ok(t)
    }
}

/// [`Room::numbers`] as a seed for `next_value_seed`.
struct NumbersSeed<'r, 'b, 'o> {
    room: &'r mut Room<'b>,
    out: &'o mut Flat,
    cap: usize,
}

impl<'de> DeserializeSeed<'de> for NumbersSeed<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.room.numbers(d, self.out, self.cap)
    }
}

/// A requested output: its name and whether it is wanted as binary.
pub(super) struct OutputWish {
    pub(super) name: String,
    pub(super) binary: Option<bool>,
}

struct OutputSeed;

impl<'de> DeserializeSeed<'de> for OutputSeed {
    type Value = OutputWish;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<OutputWish, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for OutputSeed {
    type Value = OutputWish;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an output object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OutputWish, A::Error> {
        let mut name = String::new();
        let mut params = Params::default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match &*key {
                "name" => name = map.next_value()?,
                "parameters" => map.next_value_seed(&mut params)?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(OutputWish {
            name,
            binary: params.binary_data,
        })
    }
}

/// A KServe v2 request body's JSON part, decoded.
pub(super) struct KserveBody<'de> {
    pub(super) id: Option<&'de RawValue>,
    pub(super) inputs: Vec<InputTensor<'de>>,
    pub(super) outputs: Option<Vec<OutputWish>>,
    pub(super) binary_data_output: Option<bool>,
}

/// The message of a parse error: the JSON's, or what the value meant to the model.
fn json_fault(e: serde_json::Error) -> String {
    if e.is_data() {
        e.to_string()
    } else {
        format!("malformed JSON: {e}")
    }
}

/// Decodes the JSON part of a KServe v2 infer body.
pub(super) fn kserve<'de>(
    plan: &Plan,
    json: &'de [u8],
    room: &mut Room<'_>,
) -> Result<KserveBody<'de>, String> {
    let mut d = serde_json::Deserializer::from_slice(json);
    let body = (KserveSeed { plan, room })
        .deserialize(&mut d)
        .and_then(|b| d.end().map(|()| b))
        .map_err(json_fault)?;
    Ok(body)
}

/// The fault of a KServe JSON body that `prefix` already shows (a declared shape or datatype
/// the model refuses, malformed JSON, a bad value), when the rest of the body, up to `len`
/// bytes in all, cannot change it; `None` when the prefix is fine so far. What the prefix
/// decodes is charged to `held` and dropped.
pub(super) fn kserve_prefix(
    plan: &Plan,
    prefix: &[u8],
    len: usize,
    held: &mut Held,
) -> Option<String> {
    // Cut after the last comma, so the prefix never ends inside a number (a cut inside a
    // string reads as the end of the input, as it should).
    let cut = prefix.iter().rposition(|&b| b == b',')?;
    let prefix = &prefix[..=cut];
    let mut room = Room::new(held, len);
    let mut d = serde_json::Deserializer::from_slice(prefix);
    let r = (KserveSeed {
        plan,
        room: &mut room,
    })
    .deserialize(&mut d);
    match r {
        // The body ends later, or the budget (the full decode decides).
        Err(e) if e.is_eof() || room.over_budget => None,
        Err(e) => Some(json_fault(e)),
        Ok(_) => None,
    }
}

struct KserveSeed<'p, 'r, 'b> {
    plan: &'p Plan,
    room: &'r mut Room<'b>,
}

impl<'de> DeserializeSeed<'de> for KserveSeed<'_, '_, '_> {
    type Value = KserveBody<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<KserveBody<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for KserveSeed<'_, '_, '_> {
    type Value = KserveBody<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an infer request object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KserveBody<'de>, A::Error> {
        let mut body = KserveBody {
            id: None,
            inputs: Vec::new(),
            outputs: None,
            binary_data_output: None,
        };
        let mut params = Params::default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match &*key {
                "id" => body.id = Some(map.next_value()?),
                "inputs" => {
                    let seed = ListSeed {
                        plan: self.plan,
                        room: &mut *self.room,
                        out: &mut body.inputs,
                    };
                    map.next_value_seed(seed)?;
                }
                "outputs" => body.outputs = Some(map.next_value_seed(OutputsSeed)?),
                "parameters" => map.next_value_seed(&mut params)?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        body.binary_data_output = params.binary_data_output;
        Ok(body)
    }
}

/// The `inputs` array.
struct ListSeed<'p, 'r, 'b, 'o, 'de> {
    plan: &'p Plan,
    room: &'r mut Room<'b>,
    out: &'o mut Vec<InputTensor<'de>>,
}

impl<'de> DeserializeSeed<'de> for ListSeed<'_, '_, '_, '_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ListSeed<'_, '_, '_, '_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of tensors")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        loop {
            let seed = TensorSeed {
                plan: self.plan,
                room: &mut *self.room,
            };
            match seq.next_element_seed(seed)? {
                Some(t) => self.out.push(t),
                None => return Ok(()),
            }
        }
    }
}

struct OutputsSeed;

impl<'de> DeserializeSeed<'de> for OutputsSeed {
    type Value = Vec<OutputWish>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<OutputWish>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for OutputsSeed {
    type Value = Vec<OutputWish>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of outputs")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<OutputWish>, A::Error> {
        let mut v = Vec::new();
        while let Some(o) = seq.next_element_seed(OutputSeed)? {
            v.push(o);
        }
        Ok(v)
    }
}

/// Decodes `data` that was kept for later, now that its input is known.
pub(super) fn later(
    raw: &RawValue,
    info: &TensorInfo,
    datatype: Option<&str>,
    want: Option<usize>,
    room: &mut Room<'_>,
) -> Result<Flat, String> {
    let mut flat = Flat::for_input(info, datatype)?;
    let mut d = serde_json::Deserializer::from_str(raw.get());
    room.numbers(&mut d, &mut flat, want.unwrap_or(usize::MAX))
        .map_err(|e| e.to_string())?;
    Ok(flat)
}

/// Checks a tensor whose header was not known when its data arrived; `None` when it names
/// none of the model's inputs.
pub(super) fn header<'p>(
    plan: &'p Plan,
    t: &InputTensor<'_>,
) -> Result<Option<(&'p TensorInfo, Option<usize>)>, String> {
    checked(
        plan,
        t.name.as_deref(),
        t.datatype.as_deref(),
        t.shape.as_deref(),
    )
}

/// TensorFlow Serving's predict body decoded into one [`Flat`] per model input:
/// `{"instances": [...]}` (a sample per entry; an object keyed by input name per sample for
/// several inputs) or `{"inputs": ...}` (columnar: an object keyed by input name, or the one
/// input's values).
pub(super) fn tf(plan: &Plan, json: &[u8], room: &mut Room<'_>) -> Result<Vec<Flat>, String> {
    let mut cols = plan
        .inputs()
        .iter()
        .map(|i| Flat::for_input(i, None))
        .collect::<Result<Vec<_>, _>>()?;
    let mut d = serde_json::Deserializer::from_slice(json);
    let found = (TfSeed {
        plan,
        room,
        cols: &mut cols,
    })
    .deserialize(&mut d)
    .and_then(|f| d.end().map(|()| f))
    .map_err(json_fault)?;
    if !found {
        return Err("the body needs \"instances\" or \"inputs\"".into());
    }
    Ok(cols)
}

struct TfSeed<'p, 'r, 'b, 'c> {
    plan: &'p Plan,
    room: &'r mut Room<'b>,
    cols: &'c mut [Flat],
}

impl<'de> DeserializeSeed<'de> for TfSeed<'_, '_, '_, '_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TfSeed<'_, '_, '_, '_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a predict request object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut found = false;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match &*key {
                "instances" | "inputs" if !found => {
                    found = true;
                    let seed = Columns {
                        plan: self.plan,
                        room: &mut *self.room,
                        cols: &mut *self.cols,
                        per_sample: key == "instances",
                    };
                    map.next_value_seed(seed)?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }
}

/// `instances` or `inputs`: an object keyed by input name (each sample's, for `instances`),
/// or the values of the model's one input.
struct Columns<'p, 'r, 'b, 'c> {
    plan: &'p Plan,
    room: &'r mut Room<'b>,
    cols: &'c mut [Flat],
    per_sample: bool,
}

impl<'r, 'b, 'c> Columns<'_, 'r, 'b, 'c> {
    /// The values of the model's one input; several inputs need an object.
    fn one<E: de::Error>(self) -> Result<Numbers<'c, 'r, 'b>, E> {
        the_one(
            self.cols,
            self.room,
            0,
            "give an object keyed by input name",
        )
    }
}

/// The values of the model's one input, read at nesting `depth`; `Err` with `several` when
/// the model has several inputs.
fn the_one<'c, 'r, 'b, E: de::Error>(
    cols: &'c mut [Flat],
    room: &'r mut Room<'b>,
    depth: usize,
    several: &str,
) -> Result<Numbers<'c, 'r, 'b>, E> {
    if cols.len() != 1 {
        return Err(E::custom(format!(
            "the model has {} inputs: {several}",
            cols.len()
        )));
    }
    let cap = room.max_values;
    Ok(Numbers {
        out: &mut cols[0],
        room,
        cap,
        depth,
    })
}

impl<'de> DeserializeSeed<'de> for Columns<'_, '_, '_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Columns<'_, '_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array or an object of input values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if self.per_sample {
            return Err(de::Error::custom("\"instances\" must be an array"));
        }
        keyed(self.plan, self.room, self.cols, &mut map)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if !self.per_sample {
            return self.one()?.visit_seq(seq);
        }
        // One entry per sample: an object keyed by input name, or the one input's values.
        loop {
            let seed = Sample {
                plan: self.plan,
                room: &mut *self.room,
                cols: &mut *self.cols,
            };
            if seq.next_element_seed(seed)?.is_none() {
                return Ok(());
            }
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.one()?.visit_f64(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.one()?.visit_u64(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.one()?.visit_i64(v)
    }
}

/// Values keyed by input name, each appended to its input's column; unknown names are an
/// error, as TF Serving makes them.
fn keyed<'de, A: MapAccess<'de>>(
    plan: &Plan,
    room: &mut Room<'_>,
    cols: &mut [Flat],
    map: &mut A,
) -> Result<(), A::Error> {
    while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
        let Some(k) = plan.inputs().iter().position(|i| i.name == *key) else {
            return Err(de::Error::custom(format!(
                "the model has no input named {key:?}"
            )));
        };
        let cap = room.max_values;
        map.next_value_seed(NumbersSeed {
            room: &mut *room,
            out: &mut cols[k],
            cap,
        })?;
    }
    Ok(())
}

/// One entry of `instances`.
struct Sample<'p, 'r, 'b, 'c> {
    plan: &'p Plan,
    room: &'r mut Room<'b>,
    cols: &'c mut [Flat],
}

impl<'de> DeserializeSeed<'de> for Sample<'_, '_, '_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Sample<'_, '_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sample: its values, or an object keyed by input name")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        keyed(self.plan, self.room, self.cols, &mut map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        self.one()?.visit_seq(seq)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.one()?.visit_f64(v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.one()?.visit_u64(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.one()?.visit_i64(v)
    }
}

impl<'r, 'b, 'c> Sample<'_, 'r, 'b, 'c> {
    /// The values of the model's one input; several inputs need an object per sample.
    fn one<E: de::Error>(self) -> Result<Numbers<'c, 'r, 'b>, E> {
        let several = "each instance must be an object keyed by input name";
        the_one(self.cols, self.room, 1, several)
    }
}

#[cfg(test)]
mod tests {
    //! The streaming decoder against the tree it replaced: for random KServe bodies (key
    //! orders, nesting, number spellings, wrong shapes and types, damaged bytes) it gives the
    //! values a `serde_json::Value` tree gives, or an error where the tree's decode fails;
    //! it never panics.
    use super::super::budget::Budget;
    use super::super::codec::{self, Fault};
    use proptest::prelude::*;
    use serde_json::Value;
    use sinter::Plan;
    use sinter::io::npy::Array;
    use sinter::model::{Dense, Input, Model};

    /// `input_layer` of 3 floats -> Dense(2).
    fn plan() -> Plan {
        let x = Input::new([3]).unwrap();
        let y = Dense::new(2).call(&x).unwrap();
        let m = Model::new(&x, &y).unwrap();
        m.compile(&sinter::CompileOptions::new()).unwrap()
    }

    /// What the tree says: the flat f32 values, or `None` when its decode would refuse.
    fn by_tree(body: &str) -> Option<Vec<f32>> {
        let v: Value = serde_json::from_str(body).ok()?;
        let t = v.get("inputs")?.as_array()?.first()?;
        if t.get("datatype").is_some_and(|d| d != "FP32") {
            return None;
        }
        fn flatten(v: &Value, out: &mut Vec<f32>, depth: usize) -> Option<()> {
            match v {
                Value::Array(items) if depth < 32 => {
                    items.iter().try_for_each(|i| flatten(i, out, depth + 1))
                }
                Value::Number(n) => {
                    out.push(n.as_f64()? as f32);
                    Some(())
                }
                _ => None,
            }
        }
        let mut out = Vec::new();
        flatten(t.get("data")?, &mut out, 0)?;
        if out.is_empty() || out.len() % 3 != 0 {
            return None;
        }
        if let Some(shape) = t.get("shape") {
            let dims: Vec<u64> = shape
                .as_array()?
                .iter()
                .map(Value::as_u64)
                .collect::<Option<_>>()?;
            if dims != [out.len() as u64 / 3, 3] {
                return None;
            }
        }
        Some(out)
    }

    fn by_stream(plan: &Plan, body: &str) -> Result<Vec<f32>, String> {
        let budget = Budget::new(1 << 30);
        let mut held = budget.hold();
        match codec::kserve_request(plan, body.as_bytes(), None, &mut held) {
            Ok(r) => match &r.arrays[..] {
                [Array::F32(v)] => Ok(v.clone()),
                other => Err(format!("arrays {}", other.len())),
            },
            Err(Fault::Bad(m) | Fault::Busy(m)) => Err(m),
        }
    }

    /// A number as a client might spell it.
    fn spelled(v: f32, style: u8) -> String {
        match style % 4 {
            0 => format!("{v}"),
            1 => format!("{v:e}"),
            2 => format!("{}", v.round() as i64),
            _ => format!("{:.3}", v),
        }
    }

    /// A KServe body: the values nested by row or flat, the tensor's keys in `order`, with or
    /// without a (possibly wrong) shape and datatype.
    fn body(
        values: &[f32],
        style: u8,
        nested: bool,
        order: &[usize],
        shape: Option<[u64; 2]>,
        dtype: Option<&str>,
    ) -> String {
        let nums: Vec<String> = values.iter().map(|&v| spelled(v, style)).collect();
        let data = if nested {
            let rows: Vec<String> = nums
                .chunks(3)
                .map(|r| format!("[{}]", r.join(",")))
                .collect();
            format!("[{}]", rows.join(","))
        } else {
            format!("[{}]", nums.join(","))
        };
        let mut fields = vec![
            Some("\"name\":\"input_layer\"".to_string()),
            shape.map(|s| format!("\"shape\":[{},{}]", s[0], s[1])),
            dtype.map(|d| format!("\"datatype\":\"{d}\"")),
            Some(format!("\"data\":{data}")),
        ];
        let mut parts = Vec::new();
        for &k in order {
            if let Some(f) = fields[k % 4].take() {
                parts.push(f);
            }
        }
        parts.extend(fields.into_iter().flatten());
        format!("{{\"id\":\"r\",\"inputs\":[{{{}}}]}}", parts.join(","))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn the_stream_decodes_what_the_tree_decodes(
            rows in 1usize..5,
            extra in 0usize..3,
            seed in prop::collection::vec(-1e4f32..1e4, 15),
            style in 0u8..4,
            nested: bool,
            order in prop::collection::vec(0usize..4, 4),
            shape_kind in 0u8..4,
            dtype_kind in 0u8..4,
            cut in prop::option::of(0usize..400),
            flip in prop::option::of((0usize..400, any::<u8>())),
        ) {
            let plan = plan();
            let n = rows * 3 + if extra == 2 { 1 } else { 0 };
            let values: Vec<f32> = seed.iter().cycle().take(n).copied().collect();
            let shape = match shape_kind {
                0 => None,
                1 => Some([rows as u64, 3]),
                2 => Some([rows as u64 + 1, 3]),
                _ => Some([rows as u64, 4]),
            };
            let dtype = match dtype_kind {
                0 => None,
                1 | 2 => Some("FP32"),
                _ => Some("BYTES"),
            };
            let mut text = body(&values, style, nested, &order, shape, dtype);
            if let Some(c) = cut {
                text.truncate(c.min(text.len()));
            }
            if let Some((at, b)) = flip {
                let mut bytes = text.into_bytes();
                if !bytes.is_empty() {
                    let at = at % bytes.len();
                    bytes[at] = b;
                }
                text = String::from_utf8_lossy(&bytes).into_owned();
            }
            let tree = by_tree(&text);
            let stream = by_stream(&plan, &text);
            match (&tree, &stream) {
                (Some(want), Ok(got)) => {
                    let w: Vec<u32> = want.iter().map(|v| v.to_bits()).collect();
                    let g: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
                    prop_assert_eq!(w, g, "{}", text);
                }
                (None, Err(_)) => {}
                _ => prop_assert!(false, "tree {:?}, stream {:?} for {}", tree, stream, text),
            }
        }
    }
}
