//! A strict reader for GGUF v2 and v3 containers.
//!
//! Layout (ggml `docs/gguf.md`; all integers little-endian):
//!
//! ```text
//! magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
//! n_kv × (string key | u32 value_type | value)
//! n_tensors × (string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset)
//! zero padding to `general.alignment` (default 32)
//! tensor data; each tensor at data_offset + offset
//! ```
//!
//! A string is `u64 len` then `len` bytes of UTF-8; an array value is `u32 elem_type`, `u64 count`,
//! then the elements. v2 and v3 share this layout (v3 only allows big-endian files, which we reject).
//!
//! The file is untrusted: every count and length is compared with the bytes left before anything is
//! allocated, every size is computed with checked arithmetic and capped by a named constant,
//! duplicate keys and tensor names are errors, and tensor data must lie inside the file without
//! overlapping. Tensors are borrowed views into the file bytes.

use std::collections::HashMap;

use anyhow::{anyhow, bail, ensure, Context, Result};

pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Versions with the layout above. v1 used 32-bit counts and is long obsolete.
pub const SUPPORTED_VERSIONS: [u32; 2] = [2, 3];
/// Caps on declared counts and lengths; far above any real model (SmolLM2-135M: 272 tensors,
/// 33 keys, 49 152-entry vocabulary, longest string the ~1 KB chat template).
pub const MAX_TENSORS: u64 = 65_536;
pub const MAX_KV: u64 = 65_536;
/// gguf.md: a key is at most 65 535 bytes.
pub const MAX_KEY_LEN: u64 = 65_535;
/// gguf.md: a tensor name is at most 64 bytes.
pub const MAX_TENSOR_NAME_LEN: u64 = 64;
pub const MAX_STRING_LEN: u64 = 16 << 20;
pub const MAX_ARRAY_LEN: u64 = 1 << 24;
/// ggml's GGML_MAX_DIMS.
pub const MAX_DIMS: u32 = 4;
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml caps `general.alignment` at 1 MiB too.
pub const MAX_ALIGNMENT: u64 = 1 << 20;
pub const ALIGNMENT_KEY: &str = "general.alignment";

/// Smallest encodings, used to reject counts that cannot fit in the bytes left.
/// A kv pair: u64 key length + 1 key byte + u32 type + a 1-byte value.
const MIN_KV_BYTES: u64 = 8 + 1 + 4 + 1;
/// A tensor info: u64 name length + 1 name byte + u32 n_dims + one u64 dim + u32 type + u64 offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 1 + 4 + 8 + 4 + 8;
/// A string's smallest encoding: its u64 length.
const MIN_STRING_BYTES: u64 = 8;

/// GGUF metadata value types, with their codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    Str = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    pub fn from_code(code: u32) -> Option<Self> {
        use ValueType::*;
        Some(match code {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => Str,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            Str => "string",
            Array => "array",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }

    /// Encoded size of one element, or the smallest size for strings (arrays cannot be elements).
    fn min_size(self) -> u64 {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 => 8,
            Str => MIN_STRING_BYTES,
            Array => 8 + 4,
        }
    }
}

/// A metadata value. Arrays are typed vectors (nested arrays are rejected, as ggml does).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    U64(u64),
    I64(i64),
    F64(f64),
    Array(Array),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Array {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    Str(Vec<String>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

impl Array {
    pub fn elem_type(&self) -> ValueType {
        match self {
            Array::U8(_) => ValueType::U8,
            Array::I8(_) => ValueType::I8,
            Array::U16(_) => ValueType::U16,
            Array::I16(_) => ValueType::I16,
            Array::U32(_) => ValueType::U32,
            Array::I32(_) => ValueType::I32,
            Array::F32(_) => ValueType::F32,
            Array::Bool(_) => ValueType::Bool,
            Array::Str(_) => ValueType::Str,
            Array::U64(_) => ValueType::U64,
            Array::I64(_) => ValueType::I64,
            Array::F64(_) => ValueType::F64,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Array::U8(v) => v.len(),
            Array::I8(v) => v.len(),
            Array::U16(v) => v.len(),
            Array::I16(v) => v.len(),
            Array::U32(v) => v.len(),
            Array::I32(v) => v.len(),
            Array::F32(v) => v.len(),
            Array::Bool(v) => v.len(),
            Array::Str(v) => v.len(),
            Array::U64(v) => v.len(),
            Array::I64(v) => v.len(),
            Array::F64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements as i64 if this is an array of integers.
    fn to_i64s(&self) -> Option<Vec<i64>> {
        Some(match self {
            Array::U8(v) => v.iter().map(|&x| i64::from(x)).collect(),
            Array::I8(v) => v.iter().map(|&x| i64::from(x)).collect(),
            Array::U16(v) => v.iter().map(|&x| i64::from(x)).collect(),
            Array::I16(v) => v.iter().map(|&x| i64::from(x)).collect(),
            Array::U32(v) => v.iter().map(|&x| i64::from(x)).collect(),
            Array::I32(v) => v.iter().map(|&x| i64::from(x)).collect(),
            Array::U64(v) => v.iter().map(|&x| i64::try_from(x).unwrap_or(i64::MAX)).collect(),
            Array::I64(v) => v.clone(),
            _ => return None,
        })
    }
}

impl Value {
    pub fn type_name(&self) -> String {
        match self {
            Value::U8(_) => "u8".into(),
            Value::I8(_) => "i8".into(),
            Value::U16(_) => "u16".into(),
            Value::I16(_) => "i16".into(),
            Value::U32(_) => "u32".into(),
            Value::I32(_) => "i32".into(),
            Value::F32(_) => "f32".into(),
            Value::Bool(_) => "bool".into(),
            Value::Str(_) => "string".into(),
            Value::U64(_) => "u64".into(),
            Value::I64(_) => "i64".into(),
            Value::F64(_) => "f64".into(),
            Value::Array(a) => format!("array of {}", a.elem_type().name()),
        }
    }

    /// Any integer scalar as i128 (wide enough for every GGUF integer type).
    fn as_integer(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(x) => x.into(),
            Value::I8(x) => x.into(),
            Value::U16(x) => x.into(),
            Value::I16(x) => x.into(),
            Value::U32(x) => x.into(),
            Value::I32(x) => x.into(),
            Value::U64(x) => x.into(),
            Value::I64(x) => x.into(),
            _ => return None,
        })
    }
}

/// ggml tensor types that can appear in a GGUF file, with their codes (ggml.h `enum ggml_type`).
/// Every known type is listed so the reader can bound-check any tensor; which ones can be
/// *converted* is decided by the importer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgmlType {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2K = 10,
    Q3K = 11,
    Q4K = 12,
    Q5K = 13,
    Q6K = 14,
    Q8K = 15,
    Iq2Xxs = 16,
    Iq2Xs = 17,
    Iq3Xxs = 18,
    Iq1S = 19,
    Iq4Nl = 20,
    Iq3S = 21,
    Iq2S = 22,
    Iq4Xs = 23,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    Iq1M = 29,
    Bf16 = 30,
    Tq1_0 = 34,
    Tq2_0 = 35,
    Mxfp4 = 39,
}

impl GgmlType {
    pub fn from_code(code: u32) -> Option<Self> {
        use GgmlType::*;
        Some(match code {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            9 => Q8_1,
            10 => Q2K,
            11 => Q3K,
            12 => Q4K,
            13 => Q5K,
            14 => Q6K,
            15 => Q8K,
            16 => Iq2Xxs,
            17 => Iq2Xs,
            18 => Iq3Xxs,
            19 => Iq1S,
            20 => Iq4Nl,
            21 => Iq3S,
            22 => Iq2S,
            23 => Iq4Xs,
            24 => I8,
            25 => I16,
            26 => I32,
            27 => I64,
            28 => F64,
            29 => Iq1M,
            30 => Bf16,
            34 => Tq1_0,
            35 => Tq2_0,
            39 => Mxfp4,
            _ => return None,
        })
    }

    pub fn code(self) -> u32 {
        self as u32
    }

    /// (elements per block, bytes per block), from ggml-common.h's block structs.
    pub fn block_layout(self) -> (u64, u64) {
        use GgmlType::*;
        match self {
            F32 => (1, 4),
            F16 => (1, 2),
            Bf16 => (1, 2),
            Q4_0 => (32, 18),
            Q4_1 => (32, 20),
            Q5_0 => (32, 22),
            Q5_1 => (32, 24),
            Q8_0 => (32, 34),
            Q8_1 => (32, 36),
            Q2K => (256, 84),
            Q3K => (256, 110),
            Q4K => (256, 144),
            Q5K => (256, 176),
            Q6K => (256, 210),
            Q8K => (256, 292),
            Iq2Xxs => (256, 66),
            Iq2Xs => (256, 74),
            Iq3Xxs => (256, 98),
            Iq1S => (256, 50),
            Iq4Nl => (32, 18),
            Iq3S => (256, 110),
            Iq2S => (256, 82),
            Iq4Xs => (256, 136),
            I8 => (1, 1),
            I16 => (1, 2),
            I32 => (1, 4),
            I64 => (1, 8),
            F64 => (1, 8),
            Iq1M => (256, 56),
            Tq1_0 => (256, 54),
            Tq2_0 => (256, 66),
            Mxfp4 => (32, 17),
        }
    }

    pub fn name(self) -> &'static str {
        use GgmlType::*;
        match self {
            F32 => "F32",
            F16 => "F16",
            Bf16 => "BF16",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q8_0 => "Q8_0",
            Q8_1 => "Q8_1",
            Q2K => "Q2_K",
            Q3K => "Q3_K",
            Q4K => "Q4_K",
            Q5K => "Q5_K",
            Q6K => "Q6_K",
            Q8K => "Q8_K",
            Iq2Xxs => "IQ2_XXS",
            Iq2Xs => "IQ2_XS",
            Iq3Xxs => "IQ3_XXS",
            Iq1S => "IQ1_S",
            Iq4Nl => "IQ4_NL",
            Iq3S => "IQ3_S",
            Iq2S => "IQ2_S",
            Iq4Xs => "IQ4_XS",
            I8 => "I8",
            I16 => "I16",
            I32 => "I32",
            I64 => "I64",
            F64 => "F64",
            Iq1M => "IQ1_M",
            Tq1_0 => "TQ1_0",
            Tq2_0 => "TQ2_0",
            Mxfp4 => "MXFP4",
        }
    }
}

/// One tensor's directory entry. `ne` is in GGUF order: `ne[0]` is the contiguous row length.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub ne: Vec<u64>,
    pub ggml_type: GgmlType,
    /// From the start of the data section; a multiple of the alignment.
    pub offset: u64,
    pub n_elements: u64,
    pub n_bytes: u64,
}

/// A parsed GGUF file borrowing its bytes.
#[derive(Debug)]
pub struct Gguf<'a> {
    pub version: u32,
    pub alignment: u64,
    /// Absolute file offset of the tensor data section.
    pub data_offset: u64,
    /// In file order.
    pub kv: Vec<(String, Value)>,
    kv_index: HashMap<String, usize>,
    /// In file order.
    pub tensors: Vec<TensorInfo>,
    bytes: &'a [u8],
}

/// A bounds-checked little-endian cursor over the file bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8]> {
        let left = self.remaining();
        if n > left {
            bail!("unexpected end of file at offset {}: need {} bytes, {} left", self.pos, n, left);
        }
        // n <= left <= usize::MAX, so the cast is lossless.
        let slice = &self.bytes[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A GGUF string whose length must be at most `max_len`.
    fn string(&mut self, max_len: u64) -> Result<String> {
        let len = self.u64().context("string length")?;
        ensure!(len <= max_len, "string length {len} exceeds the limit of {max_len} bytes");
        let left = self.remaining();
        ensure!(len <= left, "string length {len} runs past the end of the file ({left} bytes left)");
        let raw = self.take(len)?;
        String::from_utf8(raw.to_vec()).map_err(|e| anyhow!("string is not valid UTF-8 (byte {})", e.utf8_error().valid_up_to()))
    }

    fn bool(&mut self) -> Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => bail!("bool byte is {b}, must be 0 or 1"),
        }
    }
}

fn align_up(value: u64, alignment: u64) -> Option<u64> {
    // alignment is a power of two.
    value.checked_add(alignment - 1).map(|v| v & !(alignment - 1))
}

fn read_value(cur: &mut Cursor, ty: ValueType) -> Result<Value> {
    Ok(match ty {
        ValueType::U8 => Value::U8(cur.u8()?),
        ValueType::I8 => Value::I8(cur.u8()? as i8),
        ValueType::U16 => Value::U16(cur.u16()?),
        ValueType::I16 => Value::I16(cur.u16()? as i16),
        ValueType::U32 => Value::U32(cur.u32()?),
        ValueType::I32 => Value::I32(cur.u32()? as i32),
        ValueType::F32 => Value::F32(f32::from_bits(cur.u32()?)),
        ValueType::Bool => Value::Bool(cur.bool()?),
        ValueType::Str => Value::Str(cur.string(MAX_STRING_LEN)?),
        ValueType::U64 => Value::U64(cur.u64()?),
        ValueType::I64 => Value::I64(cur.u64()? as i64),
        ValueType::F64 => Value::F64(f64::from_bits(cur.u64()?)),
        ValueType::Array => Value::Array(read_array(cur)?),
    })
}

fn read_array(cur: &mut Cursor) -> Result<Array> {
    let code = cur.u32().context("array element type")?;
    let elem = ValueType::from_code(code).ok_or_else(|| anyhow!("array element type {code} is not a GGUF value type (0..=12)"))?;
    ensure!(elem != ValueType::Array, "nested arrays are not supported");
    let count = cur.u64().context("array length")?;
    ensure!(count <= MAX_ARRAY_LEN, "array length {count} exceeds the limit of {MAX_ARRAY_LEN}");
    let min_bytes =
        count.checked_mul(elem.min_size()).ok_or_else(|| anyhow!("array length {count} × {}-byte {} elements overflows", elem.min_size(), elem.name()))?;
    let left = cur.remaining();
    ensure!(min_bytes <= left, "array of {count} {} elements needs at least {min_bytes} bytes, {left} left in the file", elem.name());
    // count <= MAX_ARRAY_LEN fits usize; each element is checked as it is read.
    let n = count as usize;
    macro_rules! collect {
        ($variant:ident, $read:expr) => {{
            let mut v = Vec::with_capacity(n);
            for i in 0..n {
                v.push($read(&mut *cur).with_context(|| format!("array element {i}"))?);
            }
            Array::$variant(v)
        }};
    }
    Ok(match elem {
        ValueType::U8 => collect!(U8, |c: &mut Cursor| c.u8()),
        ValueType::I8 => collect!(I8, |c: &mut Cursor| c.u8().map(|x| x as i8)),
        ValueType::U16 => collect!(U16, |c: &mut Cursor| c.u16()),
        ValueType::I16 => collect!(I16, |c: &mut Cursor| c.u16().map(|x| x as i16)),
        ValueType::U32 => collect!(U32, |c: &mut Cursor| c.u32()),
        ValueType::I32 => collect!(I32, |c: &mut Cursor| c.u32().map(|x| x as i32)),
        ValueType::F32 => collect!(F32, |c: &mut Cursor| c.u32().map(f32::from_bits)),
        ValueType::Bool => collect!(Bool, |c: &mut Cursor| c.bool()),
        ValueType::Str => collect!(Str, |c: &mut Cursor| c.string(MAX_STRING_LEN)),
        ValueType::U64 => collect!(U64, |c: &mut Cursor| c.u64()),
        ValueType::I64 => collect!(I64, |c: &mut Cursor| c.u64().map(|x| x as i64)),
        ValueType::F64 => collect!(F64, |c: &mut Cursor| c.u64().map(f64::from_bits)),
        ValueType::Array => unreachable!("rejected above"),
    })
}

fn read_tensor_info(cur: &mut Cursor, alignment: u64) -> Result<TensorInfo> {
    let name = cur.string(MAX_TENSOR_NAME_LEN).context("tensor name")?;
    ensure!(!name.is_empty(), "tensor name is empty");
    // From here on every message names the tensor.
    let named = |msg: String| anyhow!("tensor '{name}': {msg}");
    let n_dims = cur.u32().map_err(|e| named(format!("n_dims: {e}")))?;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err(named(format!("n_dims is {n_dims}, must be 1..={MAX_DIMS}")));
    }
    let mut ne = Vec::with_capacity(n_dims as usize);
    for d in 0..n_dims {
        let dim = cur.u64().map_err(|e| named(format!("dimension {d}: {e}")))?;
        if dim == 0 {
            return Err(named(format!("dimension {d} is 0, must be >= 1")));
        }
        ne.push(dim);
    }
    let n_elements = ne
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d).filter(|&n| n <= i64::MAX as u64))
        .ok_or_else(|| named(format!("shape {ne:?} has more than {} elements", i64::MAX)))?;
    let code = cur.u32().map_err(|e| named(format!("type: {e}")))?;
    let ggml_type = GgmlType::from_code(code).ok_or_else(|| named(format!("type code {code} is not a known ggml type")))?;
    let (block, block_bytes) = ggml_type.block_layout();
    if ne[0] % block != 0 {
        return Err(named(format!("row length {} is not a multiple of the {} block size {block}", ne[0], ggml_type.name())));
    }
    let n_bytes = (n_elements / block).checked_mul(block_bytes).ok_or_else(|| named(format!("byte size of shape {ne:?} as {} overflows", ggml_type.name())))?;
    let offset = cur.u64().map_err(|e| named(format!("data offset: {e}")))?;
    if offset % alignment != 0 {
        return Err(named(format!("data offset {offset} is not a multiple of the alignment {alignment}")));
    }
    Ok(TensorInfo { name, ne, ggml_type, offset, n_elements, n_bytes })
}

impl<'a> Gguf<'a> {
    /// Parses and validates the whole container (not the model it describes).
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let mut cur = Cursor { bytes, pos: 0 };
        let magic = cur.array::<4>().context("GGUF magic")?;
        ensure!(magic == GGUF_MAGIC, "bad magic {:02x?}: a GGUF file starts with \"GGUF\" (47 47 55 46)", magic);
        let version = cur.u32().context("GGUF version")?;
        if !SUPPORTED_VERSIONS.contains(&version) {
            if version != 0 && version & 0xFFFF == 0 {
                bail!("GGUF version {version:#x} looks byte-swapped: big-endian GGUF files are not supported");
            }
            bail!("GGUF version {version} is not supported (supported: 2 and 3)");
        }
        let n_tensors = cur.u64().context("tensor count")?;
        let n_kv = cur.u64().context("metadata count")?;
        ensure!(n_tensors <= MAX_TENSORS, "tensor count {n_tensors} exceeds the limit of {MAX_TENSORS}");
        ensure!(n_kv <= MAX_KV, "metadata count {n_kv} exceeds the limit of {MAX_KV}");
        // Both products are below 2^17 × 2^6, so they cannot overflow.
        let min_bytes = n_kv * MIN_KV_BYTES + n_tensors * MIN_TENSOR_INFO_BYTES;
        ensure!(
            min_bytes <= cur.remaining(),
            "{n_kv} metadata entries and {n_tensors} tensor infos need at least {min_bytes} bytes, {} left in the file",
            cur.remaining()
        );

        let mut kv: Vec<(String, Value)> = Vec::with_capacity(n_kv as usize);
        let mut kv_index: HashMap<String, usize> = HashMap::with_capacity(n_kv as usize);
        for i in 0..n_kv as usize {
            let key = cur.string(MAX_KEY_LEN).with_context(|| format!("metadata entry {i}: key"))?;
            ensure!(!key.is_empty(), "metadata entry {i}: key is empty");
            if let Some(&first) = kv_index.get(&key) {
                bail!("duplicate metadata key '{key}' (entries {first} and {i})");
            }
            let code = cur.u32().with_context(|| format!("metadata key '{key}': value type"))?;
            let ty = ValueType::from_code(code).ok_or_else(|| anyhow!("metadata key '{key}': value type {code} is not a GGUF value type (0..=12)"))?;
            let value = read_value(&mut cur, ty).with_context(|| format!("metadata key '{key}' ({})", ty.name()))?;
            kv_index.insert(key.clone(), i);
            kv.push((key, value));
        }

        let alignment = match kv_index.get(ALIGNMENT_KEY).map(|&i| &kv[i].1) {
            None => DEFAULT_ALIGNMENT,
            Some(Value::U32(a)) => u64::from(*a),
            Some(other) => bail!("metadata key '{ALIGNMENT_KEY}' has type {}, must be u32", other.type_name()),
        };
        ensure!(
            alignment.is_power_of_two() && alignment <= MAX_ALIGNMENT,
            "metadata key '{ALIGNMENT_KEY}' is {alignment}, must be a power of two <= {MAX_ALIGNMENT}"
        );

        let mut tensors: Vec<TensorInfo> = Vec::with_capacity(n_tensors as usize);
        let mut tensor_index: HashMap<String, usize> = HashMap::with_capacity(n_tensors as usize);
        for i in 0..n_tensors as usize {
            let info = read_tensor_info(&mut cur, alignment).with_context(|| format!("tensor info {i}"))?;
            if let Some(&first) = tensor_index.get(&info.name) {
                bail!("duplicate tensor name '{}' (tensor infos {first} and {i})", info.name);
            }
            tensor_index.insert(info.name.clone(), i);
            tensors.push(info);
        }

        let file_len = bytes.len() as u64;
        let data_offset = align_up(cur.pos as u64, alignment).ok_or_else(|| anyhow!("data section offset overflows"))?;
        if !tensors.is_empty() {
            ensure!(
                data_offset <= file_len,
                "data section starts at {data_offset} (tensor infos end at {}, alignment {alignment}) past the end of the file ({file_len} bytes)",
                cur.pos
            );
        }
        let mut ranges: Vec<(u64, u64, usize)> = Vec::with_capacity(tensors.len());
        for (i, t) in tensors.iter().enumerate() {
            let start = data_offset.checked_add(t.offset);
            let end = start.and_then(|s| s.checked_add(t.n_bytes));
            match (start, end) {
                (Some(start), Some(end)) if end <= file_len => ranges.push((start, end, i)),
                _ => bail!(
                    "tensor '{}': data at offset {} + {} bytes (data section at {data_offset}) lies outside the file ({file_len} bytes)",
                    t.name,
                    t.offset,
                    t.n_bytes
                ),
            }
        }
        ranges.sort_unstable();
        for pair in ranges.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            ensure!(b.0 >= a.1, "tensor '{}' (bytes {}..{}) overlaps tensor '{}' (bytes {}..{})", tensors[b.2].name, b.0, b.1, tensors[a.2].name, a.0, a.1);
        }

        Ok(Gguf { version, alignment, data_offset, kv, kv_index, tensors, bytes })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.kv_index.get(key).map(|&i| &self.kv[i].1)
    }

    fn type_error(key: &str, found: &Value, expected: &str) -> anyhow::Error {
        anyhow!("metadata key '{key}' has type {}, expected {expected}", found.type_name())
    }

    pub fn get_str(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s)),
            Some(v) => Err(Self::type_error(key, v, "string")),
        }
    }

    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(Self::type_error(key, v, "bool")),
        }
    }

    /// Any integer type whose value fits in u32 (gguf.md: readers should accept u32 and u64).
    pub fn get_u32(&self, key: &str) -> Result<Option<u32>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => {
                let x = v.as_integer().ok_or_else(|| Self::type_error(key, v, "an integer"))?;
                let x = u32::try_from(x).map_err(|_| anyhow!("metadata key '{key}' is {x}, must be 0..={}", u32::MAX))?;
                Ok(Some(x))
            }
        }
    }

    /// f32 or f64, finite.
    pub fn get_f32(&self, key: &str) -> Result<Option<f32>> {
        let x = match self.get(key) {
            None => return Ok(None),
            Some(Value::F32(x)) => *x,
            Some(Value::F64(x)) => *x as f32,
            Some(v) => return Err(Self::type_error(key, v, "f32")),
        };
        ensure!(x.is_finite(), "metadata key '{key}' is {x}, must be finite");
        Ok(Some(x))
    }

    pub fn get_array(&self, key: &str) -> Result<Option<&Array>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(v) => Err(Self::type_error(key, v, "an array")),
        }
    }

    pub fn get_str_array(&self, key: &str) -> Result<Option<&[String]>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(Array::Str(v))) => Ok(Some(v)),
            Some(v) => Err(Self::type_error(key, v, "array of string")),
        }
    }

    pub fn get_f32_array(&self, key: &str) -> Result<Option<&[f32]>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(Array::F32(v))) => Ok(Some(v)),
            Some(v) => Err(Self::type_error(key, v, "array of f32")),
        }
    }

    /// An array of any integer type, widened to i64 (u64 values above i64::MAX saturate).
    pub fn get_int_array(&self, key: &str) -> Result<Option<Vec<i64>>> {
        match self.get(key) {
            None => Ok(None),
            Some(v @ Value::Array(a)) => a.to_i64s().map(Some).ok_or_else(|| Self::type_error(key, v, "array of integers")),
            Some(v) => Err(Self::type_error(key, v, "array of integers")),
        }
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The tensor's bytes; in range by construction (checked in `parse`).
    pub fn tensor_data(&self, t: &TensorInfo) -> &'a [u8] {
        let start = (self.data_offset + t.offset) as usize;
        &self.bytes[start..start + t.n_bytes as usize]
    }
}
