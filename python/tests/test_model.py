"""The package against `trl`: the same options give the same bytes (generate --json, tokenize, eval
sidecars), adapters apply and undo exactly, and every refusal is a typed exception with its status."""

import json
import struct
from pathlib import Path

import pytest

import tinyrustlm
from tinyrustlm import _json
from conftest import REPO, WASM

# Timings differ between two runs; everything else in `trl generate --json` must be equal.
TIMING_FIELDS = ("prefill_ms", "decode_ms", "prefill_tokens_per_s", "decode_tokens_per_s", "mask_ms", "trie_build_ms")


def without_timings(v):
    if isinstance(v, dict):
        return {k: without_timings(x) for k, x in v.items() if k not in TIMING_FIELDS}
    return v


def trl_generate(trl, model, prompt, n, *extra):
    line = trl("generate", "--model", model, "--prompt", prompt, "-n", n, "--json", *extra).decode().rstrip("\n")
    # The package's JSON writer reproduces trl's line byte for byte from the parsed value, floats
    # included (serde_json's layout of f32 values widened to f64).
    assert _json.dumps(json.loads(line)) == line
    return json.loads(line)


def same_as_trl(generation, reference):
    assert json.loads(generation.to_json()) == json.loads(_json.dumps(generation.to_dict()))
    assert without_timings(json.loads(generation.to_json())) == without_timings(reference)


def test_installed_package_ships_the_module():
    # `make python-test` installs the package with pip; the tests import that copy.
    assert "site-packages" in tinyrustlm.__file__, tinyrustlm.__file__
    shipped = Path(tinyrustlm.__file__).with_name("tinyrustlm.wasm")
    assert shipped.read_bytes() == WASM.read_bytes(), "the installed package ships another build than `make wasm`'s"


def test_greedy_raw_and_chat_match_trl(trl, smollm2):
    lm = tinyrustlm.Model.load(smollm2)
    same_as_trl(lm.generate("Once upon a time", 24), trl_generate(trl, smollm2, "Once upon a time", 24))
    lm = tinyrustlm.Model.load(smollm2)
    g = lm.generate("Name a colour.", 16, chat=True, system="Answer in one word.")
    same_as_trl(g, trl_generate(trl, smollm2, "Name a colour.", 16, "--chat", "--system", "Answer in one word."))
    assert g.stop == "END_OF_GENERATION" or g.stop == "MAX_TOKENS"


def test_seeded_sampling_with_stop_string_matches_trl(trl, smollm2):
    opts = dict(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.1, seed=7)
    lm = tinyrustlm.Model.load(smollm2)
    g = lm.generate("Write a list of fruits:", 32, stop=["\n\n"], **opts)
    ref = trl_generate(
        trl, smollm2, "Write a list of fruits:", 32, "--temperature", 0.8, "--top-k", 40, "--top-p", 0.95, "--min-p", 0.05, "--repeat-penalty", 1.1, "--seed", 7, "--stop", "\n\n"
    )
    same_as_trl(g, ref)
    # Another seed samples something else (the seed reaches the module).
    other = tinyrustlm.Model.load(smollm2).generate("Write a list of fruits:", 32, stop=["\n\n"], **{**opts, "seed": 8})
    assert other.tokens != g.tokens


def test_stream_yields_the_generation_in_pieces(smollm2):
    lm = tinyrustlm.Model.load(smollm2)
    whole = lm.generate("The three primary colours are", 20, chat=True)
    lm = tinyrustlm.Model.load(smollm2)
    s = lm.stream("The three primary colours are", 20, chat=True)
    chunks = list(s)
    assert len(chunks) > 1 and "".join(chunks) == whole.text
    assert (s.result.tokens, s.result.prompt_tokens, s.result.stop_reason) == (whole.tokens, whole.prompt_tokens, whole.stop_reason)


def test_json_schema_generation_matches_trl(trl, smollm2):
    schema = REPO / "harness/tests/data/json_schemas/person.json"
    g = tinyrustlm.Model.load(smollm2).generate("Describe a person as JSON.", 48, chat=True, json_schema=schema.read_bytes())
    ref = trl_generate(trl, smollm2, "Describe a person as JSON.", 48, "--chat", "--json-schema", schema)
    same_as_trl(g, ref)
    assert g.grammar["constrained"] is True


def test_chat_and_tokenize_match_trl(trl, smollm2):
    lm = tinyrustlm.Model.load(smollm2)
    for text in ["Hello world", "<|im_start|>user\nHi<|im_end|>", "naïve café ☕"]:
        ref = json.loads(trl("tokenize", "--model", smollm2, "--text", text, "--json"))
        assert lm.tokenize(text) == ref["tokens"]
        assert lm.diagnostics()["unencodable_bytes"] == ref["unencodable_bytes"]
    assert lm.tokenize("<|im_start|>", parse_special=False) != lm.tokenize("<|im_start|>")
    # chat() renders the conversation in the package's template: the same tokens as generate(chat=True).
    a = lm.chat([{"role": "user", "content": "What is 2 + 2?"}], 12)
    b = tinyrustlm.Model.load(smollm2).generate("What is 2 + 2?", 12, chat=True)
    assert (a.prompt_tokens, a.tokens) == (b.prompt_tokens, b.tokens)
    # A follow-up turn continues the conversation in the KV cache.
    c = lm.chat([{"role": "user", "content": "And 3 + 3?"}], 12, continue_=True)
    assert c.prompt_tokens[0] == lm.tokenize("\n")[0] and c.diagnostics["kv_len"] > a.diagnostics["kv_len"]


def test_adapters_apply_validate_and_undo_like_trl(trl, smollm2, adapters):
    france = adapters / "france.asp"
    lm = tinyrustlm.Model.load(smollm2)
    parent = lm.generate("What is the capital of France?", 10, chat=True)
    base_state = lm.diagnostics()["assembly_state_crc"]
    lm.validate_adapter(france)
    assert lm.diagnostics()["adapters_applied"] == 0, "validate changes nothing"
    lm.apply_adapter(france)
    child = lm.generate("What is the capital of France?", 10, chat=True)
    # trl's line comes from a fresh instance (diagnostics count every token an instance generated).
    fresh = tinyrustlm.Model.load(smollm2)
    fresh.apply_adapter(france)
    same_as_trl(fresh.generate("What is the capital of France?", 10, chat=True), trl_generate(trl, smollm2, "What is the capital of France?", 10, "--chat", "--adapter", france))
    assert child.tokens == fresh.generate("What is the capital of France?", 10, chat=True).tokens
    assert child.text == "The capital of France is Paris." != parent.text
    assert child.diagnostics["adapters_applied"] == 1
    assert child.diagnostics["assembly_state_crc"] == tinyrustlm.evidence.assembly_state(smollm2.read_bytes(), [france.read_bytes()])
    lm.apply_adapter(adapters / "italy.alr")
    lm.remove_adapter()
    lm.remove_adapter()
    again = lm.generate("What is the capital of France?", 10, chat=True)
    assert (again.tokens, again.diagnostics["assembly_state_crc"]) == (parent.tokens, base_state)
    lm.apply_adapter(france)
    lm.reset_adapters()
    assert lm.diagnostics()["assembly_state_crc"] == base_state


def test_evaluate_gives_trl_eval_sidecars(smollm2, adapters, suites, trl_sidecars):
    from conftest import STACKS

    # The parent and single adapters are compared by the sweep tests; here the two-adapter stack.
    for stack, files in [("france+italy", STACKS["france+italy"])]:
        lm = tinyrustlm.Model.load(smollm2)
        for f in files:
            lm.apply_adapter(adapters / f)
        for cases in suites:
            assert lm.evaluate(cases) == trl_sidecars[(stack, cases.stem)], f"{cases.name} with {stack}"


def test_refusals_are_typed_and_carry_the_status(smollm2, adapters, tmp_path):
    package = smollm2.read_bytes()
    with pytest.raises(tinyrustlm.PackageError) as e:
        tinyrustlm.Model.load(b"SLM2" + package[4:4096])
    assert (e.value.status, e.value.status_name) == (tinyrustlm.STATUS["BAD_MAGIC"], "BAD_MAGIC")
    corrupt = bytearray(package)
    corrupt[len(corrupt) // 2] ^= 1
    with pytest.raises(tinyrustlm.PackageError) as e:
        tinyrustlm.Model.load(bytes(corrupt))
    assert e.value.status_name == "ARTIFACT_CHECKSUM" and e.value.message

    lm = tinyrustlm.Model.load(package)
    state = lm.diagnostics()["assembly_state_crc"]
    bad = bytearray((adapters / "france.asp").read_bytes())
    bad[100] ^= 0xFF
    for call in (lm.validate_adapter, lm.apply_adapter):
        with pytest.raises(tinyrustlm.AdapterError) as e:
            call(bytes(bad))
        assert e.value.status == tinyrustlm.STATUS["ADAPTER_CHECKSUM"]
    assert lm.diagnostics()["assembly_state_crc"] == state, "a refused adapter changes nothing"
    with pytest.raises(tinyrustlm.CallError) as e:
        lm.remove_adapter()
    assert e.value.status_name == "WRONG_STATE"

    with pytest.raises(tinyrustlm.EvalError) as e:
        lm.evaluate(b'{"suite":"x","version":"1","min_pass_rate":0.5}\n')
    assert e.value.status_name == "EVAL_NO_CASES"
    with pytest.raises(tinyrustlm.GrammarError) as e:
        lm.generate("x", 4, grammar="root ::= missing")
    assert e.value.status_name == "GRAMMAR_UNDEFINED_RULE"
    with pytest.raises(tinyrustlm.CallError) as e:
        lm.generate("x", 4, temperature=-1.0)
    assert e.value.status_name == "INVALID_SAMPLING"
    # Every error is a TinyRustLMError whose text names the status.
    assert isinstance(e.value, tinyrustlm.TinyRustLMError) and "INVALID_SAMPLING" in str(e.value)


def fake_module(abi_version):
    """A module with every export of the ABI (each returning 0) whose abi_version is the given one."""
    import wasmtime

    from tinyrustlm import _abi

    funcs = []
    for name, arity in _abi.EXPORTS.items():
        value = abi_version if name == "abi_version" else 0
        params = " ".join("(param i32)" for _ in range(arity))
        if name == "set_sampling":
            params = "(param f32 i32 f32 f32 f32 i32 i64)"
        funcs.append(f'(func (export "{name}") {params} (result i32) (i32.const {value}))')
    wat = '(module (import "env" "trl_now_ms" (func (result f64))) (memory (export "memory") 1) ' + " ".join(funcs) + ")"
    return wasmtime.wat2wasm(wat)


def test_a_module_of_another_abi_version_is_refused(smollm2):
    with pytest.raises(tinyrustlm.ModuleError, match="ABI version 2"):
        tinyrustlm.Model.load(b"", wasm=fake_module(2))
    with pytest.raises(tinyrustlm.ModuleError, match="not a TinyRustLM module"):
        import wasmtime

        tinyrustlm.Model.load(b"", wasm=wasmtime.wat2wasm('(module (memory (export "memory") 1))'))


def test_diagnostics_record_is_parsed_at_the_tables_offsets(smollm2):
    lm = tinyrustlm.Model.load(smollm2, context=256, kv_f16=True)
    d = lm.diagnostics()
    assert (d["model_loaded"], d["context_len"], d["kv_dtype"], d["layout_version"]) == (True, 256, 1, 1)
    assert d["package_bytes"] == smollm2.stat().st_size
    record = bytearray(128)
    struct.pack_into("<I", record, 124, 3)
    assert tinyrustlm.parse_diagnostics(bytes(record))["threads"] == 3
