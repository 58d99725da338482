//! `trl adapter diff | inspect | import-peft | merge`.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use super::*;

#[derive(Args)]
pub struct AdapterArgs {
    #[command(subcommand)]
    pub command: AdapterCommand,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum KindArg {
    Dense,
    Sparse,
    Lowrank,
}

impl From<KindArg> for Kind {
    fn from(k: KindArg) -> Kind {
        match k {
            KindArg::Dense => Kind::Dense,
            KindArg::Sparse => Kind::Sparse,
            KindArg::Lowrank => Kind::LowRank,
        }
    }
}

#[derive(Subcommand)]
pub enum AdapterCommand {
    /// Build the adapter that turns PARENT into CHILD (same layout) and report how exactly it does.
    Diff {
        parent: PathBuf,
        child: PathBuf,
        #[arg(long, value_enum)]
        kind: KindArg,
        /// Low-rank: the rank r (capped per tensor at min(rows, cols, 256)).
        #[arg(long, default_value_t = 8)]
        rank: usize,
        /// Sparse: keep the K largest-magnitude changes (default: every change).
        #[arg(long)]
        top_k: Option<usize>,
        /// Dense: store the deltas as q8_0 (4x smaller, lossy).
        #[arg(long)]
        q8_0: bool,
        #[arg(short, long)]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Show an adapter's kind, parent identity, scale, targets and digest; with --parent, also
    /// check it against that package as the runtime would.
    Inspect {
        file: PathBuf,
        #[arg(long)]
        parent: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Convert a Hugging Face PEFT LoRA adapter into ALR1 for PARENT (names mapped to GGUF's, Q/K
    /// rows reordered for GGUF's RoPE layout, scale = lora_alpha / r).
    ImportPeft {
        /// adapter_model.safetensors
        safetensors: PathBuf,
        /// adapter_config.json
        config: PathBuf,
        #[arg(long)]
        parent: PathBuf,
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Write PARENT with the adapters applied in order (host-side, the documented arithmetic) as a
    /// new package.
    Merge {
        parent: PathBuf,
        #[arg(required = true)]
        adapters: Vec<PathBuf>,
        #[arg(short, long)]
        out: PathBuf,
    },
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

pub fn run(args: &AdapterArgs) -> Result<()> {
    match &args.command {
        AdapterCommand::Diff { parent, child, kind, rank, top_k, q8_0, out, json } => {
            let opts = DiffOptions { kind: (*kind).into(), rank: *rank, top_k: *top_k, dense_q8_0: *q8_0 };
            let (spec, report) = diff(&read(parent)?, &read(child)?, &opts)?;
            let bytes = spec.to_bytes();
            write(out, &bytes)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("wrote {} ({} bytes, {}, {} targets, digest {:08x})", out.display(), bytes.len(), report.kind, report.targets.len(), digest(&bytes));
                for t in &report.targets {
                    let rank = t.rank.map_or(String::new(), |r| format!(" rank {r}"));
                    println!(
                        "  {:<28} {:<5} [{}, {}] {:>9} changed{}  max|err| {:.3e}  rel err {:.3e}{}",
                        t.name,
                        t.dtype,
                        t.rows,
                        t.cols,
                        t.changed_elements,
                        rank,
                        t.max_abs_error,
                        t.relative_error,
                        if t.bytes_identical { "  exact" } else { "" }
                    );
                }
                println!(
                    "parent + adapter {} the child: max|err| {:.3e}, relative error {:.3e}",
                    if report.packages_identical { "is byte for byte" } else { "approximates" },
                    report.max_abs_error,
                    report.relative_error
                );
            }
            Ok(())
        }
        AdapterCommand::Inspect { file, parent, json } => inspect(file, parent.as_deref(), *json),
        AdapterCommand::ImportPeft { safetensors, config, parent, out } => {
            let config_text = std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
            let spec = peft::import_peft(&read(safetensors)?, &config_text, &read(parent)?)?;
            let bytes = spec.to_bytes();
            write(out, &bytes)?;
            let ranks: Vec<String> = spec
                .targets
                .iter()
                .map(|t| match &t.delta {
                    Delta::LowRank { rank, .. } => format!("{} r{rank}", t.name),
                    _ => t.name.clone(),
                })
                .collect();
            eprintln!("wrote {} ({} bytes, ALR1, scale {}, digest {:08x}): {}", out.display(), bytes.len(), spec.scale, digest(&bytes), ranks.join(", "));
            Ok(())
        }
        AdapterCommand::Merge { parent, adapters, out } => {
            let mut bytes = read(parent)?;
            for a in adapters {
                let spec = AdapterSpec::from_bytes(&read(a)?).with_context(|| format!("{}", a.display()))?;
                bytes = apply_to_package(&bytes, &spec).with_context(|| format!("applying {}", a.display()))?;
            }
            write(out, &bytes)?;
            eprintln!("wrote {} ({} bytes)", out.display(), bytes.len());
            Ok(())
        }
    }
}

fn inspect(file: &Path, parent: Option<&Path>, as_json: bool) -> Result<()> {
    let bytes = read(file)?;
    let a = tinyrustlm::adapter::parse(&bytes, None).map_err(|e| anyhow!("{}: {e}", file.display()))?;
    let check = match parent {
        Some(p) => {
            let pkg_bytes = read(p)?;
            let pkg = tinyrustlm::format::parse(&pkg_bytes).map_err(|e| anyhow!("{}: {e}", p.display()))?;
            let bound = tinyrustlm::adapter::parse(&bytes, Some(tinyrustlm::adapter::Parent::of(&pkg)));
            let result = bound.and_then(|b| {
                let mut changed = 0usize;
                tinyrustlm::adapter::for_each_change(&b, &pkg.tensors, &pkg_bytes, &mut |_, n| {
                    changed += n.len();
                    Ok(())
                })?;
                Ok(changed)
            });
            Some(match result {
                Ok(changed) => json!({ "parent": p.display().to_string(), "ok": true, "changed_bytes": changed,
                                        "assembly_state_crc": format!("{:08x}", assembly_state(&pkg.identity, &[a.artifact_crc])) }),
                Err(e) => json!({ "parent": p.display().to_string(), "ok": false, "status": e.status.code(), "error": e.to_string() }),
            })
        }
        None => None,
    };
    let targets: Vec<_> = a
        .targets
        .iter()
        .map(|t| {
            let detail = match t.payload {
                tinyrustlm::adapter::Payload::Dense { encoding, .. } => json!({ "encoding": format!("{encoding:?}").to_lowercase() }),
                tinyrustlm::adapter::Payload::Sparse { .. } => json!({ "n_entries": t.payload.n_entries() }),
                tinyrustlm::adapter::Payload::LowRank { rank, .. } => json!({ "rank": rank }),
            };
            json!({ "name": t.name, "rows": t.rows, "cols": t.cols, "detail": detail })
        })
        .collect();
    let id = a.parent;
    let v = json!({
        "file": file.display().to_string(),
        "bytes": bytes.len(),
        "kind": a.kind.name(),
        "magic": String::from_utf8_lossy(&a.kind.magic()),
        "scale": a.scale,
        "parent": { "n_params": id.n_params, "tensor_layout_crc": format!("{:08x}", id.tensor_layout_crc), "tokenizer_crc": format!("{:08x}", id.tokenizer_crc),
                    "flags": id.flags, "n_tensors": id.n_tensors },
        "digest": format!("{:08x}", a.artifact_crc),
        "targets": targets,
        "check": check,
    });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("{}  ({} bytes, {} v1, {} target(s), scale {})", file.display(), bytes.len(), String::from_utf8_lossy(&a.kind.magic()), a.targets.len(), a.scale);
    println!(
        "  parent identity: params {} · tensor layout crc {:08x} · tokenizer crc {:08x} · flags {} · tensors {}",
        id.n_params, id.tensor_layout_crc, id.tokenizer_crc, id.flags, id.n_tensors
    );
    println!("  digest (artifact crc) {:08x}", a.artifact_crc);
    for t in &v["targets"].as_array().cloned().unwrap_or_default() {
        println!("    {:<28} [{}, {}] {}", t["name"].as_str().unwrap_or(""), t["rows"], t["cols"], t["detail"]);
    }
    if let Some(c) = v["check"].as_object() {
        if c["ok"] == true {
            println!(
                "  applies to {}: {} bytes change; assembly state after it {}",
                c["parent"].as_str().unwrap_or(""),
                c["changed_bytes"],
                c["assembly_state_crc"].as_str().unwrap_or("")
            );
        } else {
            println!("  does NOT apply to {}: {}", c["parent"].as_str().unwrap_or(""), c["error"].as_str().unwrap_or(""));
        }
    }
    Ok(())
}
