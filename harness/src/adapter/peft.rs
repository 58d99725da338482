//! `trl adapter import-peft`: a Hugging Face PEFT LoRA adapter (`adapter_model.safetensors` +
//! `adapter_config.json`) as an ALR1 adapter bound to a parent package.
//!
//! PEFT stores, per adapted `nn.Linear` of a llama model, `lora_A` (`r × in`) and `lora_B`
//! (`out × r`) and applies `W += (lora_alpha / r) · B·A` (`lora_alpha / √r` with `use_rslora`).
//! That is ALR1's convention; what changes on the way:
//!
//! * names: `model.layers.{i}.self_attn.q_proj` → `blk.{i}.attn_q.weight` and so on (GGUF names);
//! * Q and K rows: GGUF (and SLM1) store `q_proj` / `k_proj` with each head's rows reordered so that
//!   RoPE rotates adjacent pairs (llama.cpp `convert_hf_to_gguf.py`, `LlamaModel.permute`): GGUF row
//!   `h·hd + 2j + s` is Hugging Face row `h·hd + s·hd/2 + j` (`hd` the head dim, `s` ∈ {0, 1}).
//!   B's rows are reordered the same way; A is unchanged;
//! * the scale: one header `scale` when every module has the same `alpha / r`, otherwise `scale` 1
//!   and each B multiplied by its own factor (one extra f32 rounding).
//!
//! Refused, with the reason: DoRA, bias training, `fan_in_fan_out`, embedding LoRA, `modules_to_save`,
//! an `lm_head` LoRA on a model with tied embeddings (it would change the embeddings too), any
//! tensor this mapping does not know.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, ensure, Context, Result};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

use super::*;

/// GGUF tensor suffix of a llama module, and whether its rows are RoPE-permuted (Q: by n_heads,
/// K: by n_kv_heads).
fn gguf_name(module: &str) -> Option<(&'static str, Option<bool>)> {
    Some(match module {
        "self_attn.q_proj" => ("attn_q", Some(true)),
        "self_attn.k_proj" => ("attn_k", Some(false)),
        "self_attn.v_proj" => ("attn_v", None),
        "self_attn.o_proj" => ("attn_output", None),
        "mlp.gate_proj" => ("ffn_gate", None),
        "mlp.up_proj" => ("ffn_up", None),
        "mlp.down_proj" => ("ffn_down", None),
        _ => return None,
    })
}

/// Which matrix of which tensor a safetensors key holds.
#[derive(Debug, PartialEq)]
struct Key {
    /// The PEFT module path, e.g. `model.layers.3.self_attn.q_proj` (for alpha_pattern).
    module: String,
    tensor: String,
    /// `Some(true)`: permute B's rows by n_heads; `Some(false)`: by n_kv_heads.
    permute: Option<bool>,
    is_a: bool,
}

/// Parses `base_model.model.model.layers.3.self_attn.q_proj.lora_A[.default].weight`.
fn parse_key(key: &str) -> Result<Key> {
    let parts: Vec<&str> = key.split('.').collect();
    let ab = parts.iter().position(|p| *p == "lora_A" || *p == "lora_B");
    let Some(ab) = ab else {
        bail!("{key}: not a LoRA A/B matrix (DoRA magnitudes, embedding LoRA, biases and modules_to_save are not supported)");
    };
    let rest = &parts[ab + 1..];
    ensure!(rest == ["weight"] || (rest.len() == 2 && rest[1] == "weight"), "{key}: expected …lora_A[.adapter].weight");
    let is_a = parts[ab] == "lora_A";
    let module_parts = &parts[..ab];
    let module = module_parts.join(".");
    if module_parts.last() == Some(&"lm_head") {
        return Ok(Key { module, tensor: "output.weight".into(), permute: None, is_a });
    }
    let layers = module_parts.iter().position(|p| *p == "layers").with_context(|| format!("{key}: no model.layers.N in the name"))?;
    ensure!(module_parts.len() == layers + 4, "{key}: expected layers.N.<self_attn|mlp>.<proj>");
    let layer: u32 = module_parts[layers + 1].parse().with_context(|| format!("{key}: layer index"))?;
    let (suffix, permute) = gguf_name(&module_parts[layers + 2..].join("."))
        .with_context(|| format!("{key}: module {} has no llama tensor", module_parts[layers + 2..].join(".")))?;
    Ok(Key { module, tensor: format!("blk.{layer}.{suffix}.weight"), permute, is_a })
}

fn to_f32(view: &safetensors::tensor::TensorView<'_>, key: &str) -> Result<Vec<f32>> {
    let d = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => d.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(),
        Dtype::F16 => d.chunks_exact(2).map(|b| quant::f16_to_f32(u16::from_le_bytes([b[0], b[1]]))).collect(),
        Dtype::BF16 => d.chunks_exact(2).map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16)).collect(),
        other => bail!("{key}: dtype {other:?}; F32, F16 and BF16 are supported"),
    })
}

/// GGUF order of the rows of a Q or K projection (`n_head` heads of `rows / n_head` rows):
/// `out[h·hd + 2j + s] = hf[h·hd + s·hd/2 + j]`.
pub fn permute_rows(hf: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
    let hd = rows / n_head;
    let mut out = vec![0f32; hf.len()];
    for h in 0..n_head {
        for j in 0..hd / 2 {
            for s in 0..2 {
                let (dst, src) = (h * hd + 2 * j + s, h * hd + s * hd / 2 + j);
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&hf[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

/// Config values that decide the scale (and the features we refuse).
struct Config {
    lora_alpha: f64,
    use_rslora: bool,
    alpha_pattern: BTreeMap<String, f64>,
}

fn read_config(config: &Value) -> Result<Config> {
    let flag = |name: &str| config.get(name).and_then(Value::as_bool).unwrap_or(false);
    if let Some(t) = config.get("peft_type").and_then(Value::as_str) {
        ensure!(t == "LORA", "peft_type {t}: only LORA adapters are supported");
    }
    ensure!(!flag("use_dora"), "use_dora: DoRA adapters are not supported (they rescale weight columns)");
    ensure!(!flag("fan_in_fan_out"), "fan_in_fan_out: Conv1D-style (transposed) weights are not supported");
    if let Some(b) = config.get("bias").and_then(Value::as_str) {
        ensure!(b == "none", "bias {b}: trained biases are not supported (llama has no biases)");
    }
    if let Some(m) = config.get("modules_to_save").and_then(Value::as_array) {
        ensure!(m.is_empty(), "modules_to_save {m:?}: fully trained modules are not a low-rank delta");
    }
    let lora_alpha = config.get("lora_alpha").and_then(Value::as_f64).context("adapter_config.json has no lora_alpha")?;
    let alpha_pattern = config
        .get("alpha_pattern")
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_f64()?))).collect())
        .unwrap_or_default();
    Ok(Config { lora_alpha, use_rslora: flag("use_rslora"), alpha_pattern })
}

/// One target's LoRA halves as they are found: the module name, whether it was `lora_A` first, then
/// `A` and `B` as (shape, values).
type LoraPair = (String, Option<bool>, Option<(Vec<usize>, Vec<f32>)>, Option<(Vec<usize>, Vec<f32>)>);

/// Converts a PEFT LoRA adapter into ALR1 for the package `parent`.
pub fn import_peft(safetensors_bytes: &[u8], config_json: &str, parent: &[u8]) -> Result<AdapterSpec> {
    let config: Value = serde_json::from_str(config_json).context("adapter_config.json is not JSON")?;
    let config = read_config(&config)?;
    let pkg = tinyrustlm::format::parse(parent).map_err(|e| anyhow!("parent package: {e}"))?;
    let st = SafeTensors::deserialize(safetensors_bytes).map_err(|e| anyhow!("adapter_model.safetensors: {e}"))?;
    // tensor name → (module, permute, A, B)
    let mut pairs: BTreeMap<String, LoraPair> = BTreeMap::new();
    for (key, view) in st.iter() {
        let k = parse_key(key)?;
        let entry = pairs.entry(k.tensor.clone()).or_insert_with(|| (k.module.clone(), k.permute, None, None));
        let slot = if k.is_a { &mut entry.2 } else { &mut entry.3 };
        ensure!(slot.is_none(), "{key}: a second {} for {} (several adapters in one file?)", if k.is_a { "lora_A" } else { "lora_B" }, k.tensor);
        ensure!(view.shape().len() == 2, "{key}: shape {:?} is not a matrix", view.shape());
        *slot = Some((view.shape().to_vec(), to_f32(&view, key)?));
    }
    ensure!(!pairs.is_empty(), "adapter_model.safetensors holds no LoRA matrices");
    let h = pkg.hparams;
    let mut targets = Vec::new();
    let mut scales = Vec::new();
    for e in &pkg.tensors {
        let Some((module, permute, a, b)) = pairs.remove(&e.name) else { continue };
        let (a_shape, a) = a.with_context(|| format!("{module}: lora_B without lora_A"))?;
        let (b_shape, b) = b.with_context(|| format!("{module}: lora_A without lora_B"))?;
        let r = a_shape[0];
        ensure!(b_shape[1] == r, "{module}: lora_A is {a_shape:?} and lora_B {b_shape:?}: ranks differ");
        ensure!(
            b_shape[0] == e.rows && a_shape[1] == e.row_len,
            "{module}: B·A is [{}, {}], tensor {} is [{}, {}]",
            b_shape[0],
            a_shape[1],
            e.name,
            e.rows,
            e.row_len
        );
        ensure!(r >= 1 && r <= e.rows.min(e.row_len).min(rt::MAX_RANK as usize), "{module}: rank {r} outside 1..=min(rows, cols, {})", rt::MAX_RANK);
        let b = match permute {
            Some(true) => permute_rows(&b, e.rows, r, h.n_heads as usize),
            Some(false) => permute_rows(&b, e.rows, r, h.n_kv_heads as usize),
            None => b,
        };
        let alpha = config.alpha_pattern.iter().find(|(k, _)| module == **k || module.ends_with(&format!(".{k}"))).map_or(config.lora_alpha, |(_, &v)| v);
        let scale = if config.use_rslora { alpha / (r as f64).sqrt() } else { alpha / r as f64 };
        scales.push(scale as f32);
        targets.push(TargetSpec { name: e.name.clone(), rows: e.rows as u32, cols: e.row_len as u32, delta: Delta::LowRank { rank: r as u32, a, b } });
    }
    if let Some((name, (module, ..))) = pairs.into_iter().next() {
        if name == "output.weight" {
            bail!("{module}: the parent ties its LM head to the embeddings; an lm_head LoRA would change the embeddings too");
        }
        bail!("{module}: the parent has no tensor {name}");
    }
    let same = scales.iter().all(|&s| s == scales[0]);
    if !same {
        for (t, &s) in targets.iter_mut().zip(&scales) {
            if let Delta::LowRank { b, .. } = &mut t.delta {
                b.iter_mut().for_each(|x| *x *= s);
            }
        }
    }
    Ok(AdapterSpec { kind: Kind::LowRank, parent: pkg.identity, scale: if same { scales[0] } else { 1.0 }, targets })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_gguf_names() {
        let k = parse_key("base_model.model.model.layers.12.self_attn.k_proj.lora_B.default.weight").unwrap();
        assert_eq!(
            (k.tensor.as_str(), k.permute, k.is_a, k.module.as_str()),
            ("blk.12.attn_k.weight", Some(false), false, "base_model.model.model.layers.12.self_attn.k_proj")
        );
        assert_eq!(parse_key("base_model.model.model.layers.0.mlp.down_proj.lora_A.weight").unwrap().tensor, "blk.0.ffn_down.weight");
        assert_eq!(parse_key("base_model.model.lm_head.lora_A.weight").unwrap().tensor, "output.weight");
        for bad in [
            "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector.default.weight",
            "base_model.model.model.embed_tokens.lora_embedding_A",
            "base_model.model.model.layers.0.self_attn.rotary.lora_A.weight",
            "base_model.model.model.layers.x.self_attn.q_proj.lora_A.weight",
        ] {
            assert!(parse_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn q_rows_are_reordered_as_llama_cpp_permute_does() {
        // Two heads of head_dim 4, one column: Hugging Face rows 0..8 hold their own index.
        let hf: Vec<f32> = (0..8).map(|i| i as f32).collect();
        // numpy: w.reshape(2, 2, 2, 1).swapaxes(1, 2).reshape(8, 1) = [0, 2, 1, 3, 4, 6, 5, 7].
        assert_eq!(permute_rows(&hf, 8, 1, 2), vec![0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
    }
}
