//! Grammar-constrained generation through the ABI (README "Structured output").
//!
//! - llama.cpp's example grammars (`tests/data/grammars/`, MIT, attributed there) constrain
//!   SmolLM2: every output is a prefix of a sentence, a complete one whenever the generation says
//!   it ended complete (checked by the runtime's matcher run natively, and JSON by serde_json).
//! - The JSON Schemas of `tests/data/json_schemas/` × several prompts on SmolLM2 and a few on
//!   Qwen2.5: every output parses and validates with the independent `jsonschema` crate. (Recursive
//!   `$ref`s are unit-tested in `src/grammar/json_schema.rs`: a small model given a recursive schema
//!   may nest until max tokens, which is the model's choice, not a grammar error.)
//! - Bad grammars and schemas: their status, the rule or path named, and nothing changed.
//! - Max tokens before the grammar is complete: GRAMMAR_INCOMPLETE, never passed off as valid.
//! - Seeded sampling under a grammar repeats itself; unconstrained generation keeps its tokens.
//! - Every step of real constrained generations (greedy and seeded top-k) chooses the token the
//!   whole-vocabulary mask, computed natively, would have let the sampler choose.
//!
//! A missing real-model package fails the suite (CI must never pass by skipping).

mod common;

use std::path::PathBuf;
use std::rc::Rc;

use harness::runtime::{result_kind, Runtime, Sampling, GEN_PARSE_SPECIAL};
use tinyrustlm::abi_facts::{status, stop_reason};
use tinyrustlm::grammar::matcher::Matcher;
use tinyrustlm::tokenizer::chat::{self, ChatMessage, CHAT_ADD_GENERATION_PROMPT};
use tinyrustlm::tokenizer::ChatTemplate;

const SMOLLM2: &str = "smollm2-135m-q8_0.slm";
const QWEN: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.slm";

fn data(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(rel)
}

fn real(package: &str, context: u32) -> Runtime {
    let path = common::models_dir().join(package);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (set TRL_MODELS)", path.display()));
    let mut rt = common::runtime();
    rt.load_model_with_flags(&bytes, context, 0).unwrap();
    rt
}

fn chat_prompt(template: ChatTemplate, user: &str) -> String {
    let turn = [ChatMessage { role: "user", content: user }];
    String::from_utf8(chat::render(template, &turn, template.default_system(), CHAT_ADD_GENERATION_PROMPT).unwrap()).unwrap()
}

/// Whether `text` is a sentence (`complete`) or a prefix of one, by the runtime's own matcher.
fn matches(gbnf: &[u8], json_schema: bool, text: &str, complete: bool) -> bool {
    let g = Rc::new(tinyrustlm::grammar::compile(gbnf, json_schema).unwrap());
    let mut m = Matcher::new(g);
    m.accept_bytes(text.as_bytes()) && (!complete || m.is_complete())
}

fn ended_complete(reason: u32) -> bool {
    reason == stop_reason::GRAMMAR_COMPLETE || reason == stop_reason::END_OF_GENERATION
}

#[test]
fn llama_cpp_example_grammars_constrain_smollm2() {
    let mut rt = real(SMOLLM2, 1024);
    let cases = [
        ("json.gbnf", "Describe a cat as a JSON object."),
        ("json_arr.gbnf", "List three planets as a JSON array."),
        ("chess.gbnf", "Write the first moves of a chess game."),
        ("list.gbnf", "List three fruits."),
        ("japanese.gbnf", "Say hello in Japanese."),
        ("arithmetic.gbnf", "Write a simple equation."),
        ("c.gbnf", "Write a C function that adds two numbers."),
    ];
    let mut failures = Vec::new();
    for (file, user) in cases {
        let gbnf = std::fs::read(data("grammars").join(file)).unwrap();
        rt.set_grammar(&gbnf, false).unwrap_or_else(|e| panic!("{file}: {e:#}"));
        let g = rt.generate_all(&chat_prompt(ChatTemplate::ChatMl, user), 40, GEN_PARSE_SPECIAL).unwrap();
        let reason = g.state.stop_reason;
        // MAX_TOKENS under a grammar means the output was complete where it was cut.
        let complete = ended_complete(reason) || reason == stop_reason::MAX_TOKENS;
        eprintln!("{file}: stop {reason}, {:?}", g.text);
        if !matches(&gbnf, false, &g.text, complete) {
            failures.push(format!("{file}: {:?} (stop {reason}) is not {}", g.text, if complete { "a sentence" } else { "a prefix" }));
        }
        if complete && file == "json.gbnf" && serde_json::from_str::<serde_json::Value>(&g.text).is_err() {
            failures.push(format!("{file}: {:?} does not parse as JSON", g.text));
        }
        if !complete && reason != stop_reason::GRAMMAR_INCOMPLETE {
            failures.push(format!("{file}: ended incomplete with stop reason {reason}, not GRAMMAR_INCOMPLETE"));
        }
        let stats = rt.grammar_stats().unwrap();
        assert!(stats.constrained && stats.masked_steps >= 1 && stats.trie_nodes > 49_152, "{file}: {stats:?}");
    }
    common::assert_no_failures("example grammars", &failures);
}

fn schemas() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(data("json_schemas"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    out
}

/// Runs every schema with each (prompt, sampling) and validates the outputs with `jsonschema`.
fn schemas_validate(rt: &mut Runtime, template: ChatTemplate, runs: &[(&str, Sampling)], only: Option<&[&str]>, max_tokens: u32) {
    let mut failures = Vec::new();
    let mut n = 0;
    for (name, bytes) in schemas() {
        if only.is_some_and(|o| !o.contains(&name.as_str())) {
            continue;
        }
        let schema: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{name}: {e}"));
        rt.set_grammar(&bytes, true).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        for (prompt, sampling) in runs {
            rt.set_sampling(sampling).unwrap();
            let user = format!("{prompt} Answer with JSON only.");
            let g = rt.generate_all(&chat_prompt(template, &user), max_tokens, GEN_PARSE_SPECIAL).unwrap();
            n += 1;
            let reason = g.state.stop_reason;
            if !ended_complete(reason) {
                failures.push(format!("{name} / {prompt:?}: stop reason {reason} after {} tokens: {:?}", g.tokens.len(), g.text));
                continue;
            }
            match serde_json::from_str::<serde_json::Value>(&g.text) {
                Err(e) => failures.push(format!("{name} / {prompt:?}: {:?} does not parse: {e}", g.text)),
                Ok(v) => {
                    let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
                    if !errors.is_empty() {
                        failures.push(format!("{name} / {prompt:?}: {:?} is invalid: {}", g.text, errors.join("; ")));
                    }
                }
            }
        }
    }
    eprintln!("{n} constrained generations checked");
    common::assert_no_failures("schema outputs", &failures);
}

#[test]
fn json_schema_outputs_validate_on_smollm2() {
    let mut rt = real(SMOLLM2, 1024);
    let sampled = Sampling { temperature: 0.8, top_k: 40, top_p: 0.95, seed: 7, ..Sampling::default() };
    let runs = [("Describe a fictional person.", Sampling::default()), ("Give an example value.", sampled)];
    schemas_validate(&mut rt, ChatTemplate::ChatMl, &runs, None, 128);
}

#[test]
fn json_schema_outputs_validate_on_qwen() {
    let mut rt = real(QWEN, 1024);
    let runs = [("Describe a fictional person.", Sampling::default())];
    let few = ["person.json", "one_of.json", "defs_ref.json", "pattern_code.json"];
    schemas_validate(&mut rt, ChatTemplate::ChatMlQwen2, &runs, Some(&few), 96);
}

#[test]
fn person_schema_gives_a_valid_object_on_every_seed() {
    let mut rt = real(SMOLLM2, 1024);
    let bytes = std::fs::read(data("json_schemas/person.json")).unwrap();
    let runs: Vec<(&str, Sampling)> = (1..=4).map(|seed| ("Describe a fictional person", Sampling { temperature: 1.0, seed, ..Sampling::default() })).collect();
    schemas_validate(&mut rt, ChatTemplate::ChatMl, &runs, Some(&["person.json"]), 128);
    // Reproducible: the same seed gives the same tokens.
    rt.set_grammar(&bytes, true).unwrap();
    let prompt = chat_prompt(ChatTemplate::ChatMl, "Describe a fictional person");
    let a = rt.generate_all(&prompt, 48, GEN_PARSE_SPECIAL).unwrap();
    let b = rt.generate_all(&prompt, 48, GEN_PARSE_SPECIAL).unwrap();
    assert_eq!(a.tokens, b.tokens);
}

#[test]
fn max_tokens_before_complete_is_grammar_incomplete() {
    let mut rt = real(SMOLLM2, 512);
    rt.set_grammar(&std::fs::read(data("json_schemas/person.json")).unwrap(), true).unwrap();
    let g = rt.generate_all(&chat_prompt(ChatTemplate::ChatMl, "Describe a fictional person"), 3, GEN_PARSE_SPECIAL).unwrap();
    assert_eq!((g.state.stop_reason, g.tokens.len()), (stop_reason::GRAMMAR_INCOMPLETE, 3), "{:?}", g.text);
    assert!(matches(&std::fs::read(data("json_schemas/person.json")).unwrap(), true, &g.text, false));
}

/// The synthetic model (a byte tokenizer) under small grammars: exact languages, quick.
#[test]
fn synthetic_model_grammars_and_bad_inputs() {
    let mut rt = common::runtime();
    rt.load_model(common::good_package(), 0).unwrap();
    let plain = rt.generate_all(common::PROMPT, 12, 0).unwrap();

    // A finite language: the generation ends GRAMMAR_COMPLETE on a sentence of it.
    let gbnf = b"root ::= \"ab\" [0-9]{2} (\"x\" | \"yz\")\n";
    rt.set_grammar(gbnf, false).unwrap();
    for seed in 0..4 {
        rt.set_sampling(&Sampling { temperature: 1.5, seed, ..Sampling::default() }).unwrap();
        let g = rt.generate_all(common::PROMPT, 12, 0).unwrap();
        assert_eq!(g.state.stop_reason, stop_reason::GRAMMAR_COMPLETE, "{:?}", g.text);
        assert!(matches(gbnf, false, &g.text, true), "{:?}", g.text);
    }
    assert_eq!(rt.read_result(result_kind::GRAMMAR).unwrap(), gbnf);

    // Bad inputs: the status, the rule or path in last_error, and the grammar in force unchanged.
    let bad: [(&[u8], bool, u32, &str); 9] = [
        (b"root ::= \"abc", false, status::GRAMMAR_SYNTAX, "grammar.rule[root] (byte offset) = 13"),
        (b"root ::= item", false, status::GRAMMAR_UNDEFINED_RULE, "grammar.rule[item]"),
        (b"item ::= \"x\"", false, status::GRAMMAR_UNDEFINED_RULE, "grammar.rule[root]"),
        (b"root ::= e\ne ::= e \"+\" | \"1\"", false, status::GRAMMAR_LEFT_RECURSION, "grammar.rule[e]"),
        (b"root ::= [^\\x00-\\U0010FFFF]", false, status::GRAMMAR_EMPTY_LANGUAGE, "grammar.rule[root]"),
        (br#"{"type":"string","format":"email"}"#, true, status::SCHEMA_UNSUPPORTED, "schema.format"),
        (br#"{"type":"object","properties":{"a":{"type":"integer","minimum":"x"}}}"#, true, status::SCHEMA_INVALID, "schema.properties.a.minimum"),
        (b"{not json", true, status::SCHEMA_INVALID, "schema (byte offset)"),
        (b"", false, status::INVALID_ARGUMENT, "grammar.len"),
    ];
    let mut failures = Vec::new();
    for (text, schema, want, field) in bad {
        match rt.set_grammar(text, schema) {
            Ok(()) => failures.push(format!("{:?} was accepted", String::from_utf8_lossy(text))),
            Err(e) => {
                let got = harness::runtime::status_of(&e);
                let message = rt.last_error().unwrap();
                if got != Some(want) || !message.contains(field) {
                    failures.push(format!("{:?}: {got:?} {message:?}, want {want} naming {field}", String::from_utf8_lossy(text)));
                }
            }
        }
    }
    let mut deep = String::new();
    for _ in 0..40 {
        deep.push_str(r#"{"type":"array","items":"#);
    }
    deep.push_str("true");
    deep.push_str(&"}".repeat(40));
    match rt.set_grammar(deep.as_bytes(), true) {
        Err(e) if harness::runtime::status_of(&e) == Some(status::SCHEMA_TOO_DEEP) => {}
        other => failures.push(format!("a schema 40 deep: {other:?}")),
    }
    match rt.call_status("set_grammar", (0u32, 4u32, 2u32)) {
        Ok(s) if s == status::OUT_OF_BOUNDS || s == status::INVALID_ARGUMENT => {}
        other => failures.push(format!("set_grammar with a bad pointer and flag: {other:?}")),
    }
    common::assert_no_failures("bad grammars", &failures);
    assert_eq!(rt.read_result(result_kind::GRAMMAR).unwrap(), gbnf, "a refused grammar changed the one in force");

    // Max tokens before the sentence is complete.
    rt.set_grammar(b"root ::= [a-z]{5} \".\"\n", false).unwrap();
    let g = rt.generate_all(common::PROMPT, 3, 0).unwrap();
    assert_eq!(g.state.stop_reason, stop_reason::GRAMMAR_INCOMPLETE);

    // Cleared: unconstrained generation gives exactly the tokens it gave before.
    rt.clear_grammar().unwrap();
    rt.set_sampling(&Sampling::default()).unwrap();
    let again = rt.generate_all(common::PROMPT, 12, 0).unwrap();
    assert_eq!(again.tokens, plain.tokens);
    assert!(!rt.grammar_stats().unwrap().constrained);
}

/// The module decides most constrained steps from the best tokens alone (README "Structured
/// output"); here every step of real generations is checked against the whole mask computed
/// natively by the trie walk: the whole mask, end of generation where the sentence is complete, and
/// the same sampler settings must choose the token the module chose, from the logits it chose from.
#[test]
fn every_constrained_step_chooses_what_the_whole_mask_allows() {
    use tinyrustlm::grammar::trie::VocabTrie;
    use tinyrustlm::sampler::{Sampler as NativeSampler, SamplingParams};
    use tinyrustlm::tokenizer::Tokenizer;

    let greedy = Sampling::default();
    let sampled = Sampling { temperature: 0.8, top_k: 40, top_p: 0.95, repetition_penalty: 1.1, seed: 11, ..Sampling::default() };
    for (package, template, schemas) in [
        (SMOLLM2, ChatTemplate::ChatMl, &["person.json", "tags_enum_array.json", "number_bounds.json"][..]),
        (QWEN, ChatTemplate::ChatMlQwen2, &["person.json"][..]),
    ] {
        let bytes = std::fs::read(common::models_dir().join(package)).unwrap();
        let pkg = tinyrustlm::format::parse(&bytes).unwrap();
        let tok = Tokenizer::parse(&bytes[pkg.tokenizer_range.clone()], pkg.hparams.vocab_size).unwrap();
        let trie = VocabTrie::build(&tok, |id| tok.is_end_of_generation(id)).unwrap();
        let mut rt = real(package, 1024);
        let mut leading_steps = 0;
        for schema_file in schemas {
            let schema = std::fs::read(data("json_schemas").join(schema_file)).unwrap();
            for sampling in [greedy, sampled] {
                rt.set_sampling(&sampling).unwrap();
                rt.set_grammar(&schema, true).unwrap();
                let params = SamplingParams {
                    temperature: sampling.temperature,
                    top_k: sampling.top_k,
                    top_p: sampling.top_p,
                    min_p: sampling.min_p,
                    repetition_penalty: sampling.repetition_penalty,
                    repetition_window: sampling.repetition_window,
                    seed: sampling.seed,
                };
                let mut reference = NativeSampler::new(params, tok.n_tokens() as usize);
                let mut m = Matcher::new(Rc::new(tinyrustlm::grammar::compile(&schema, true).unwrap()));
                rt.generate_start(&chat_prompt(template, "Describe a fictional person."), 64, GEN_PARSE_SPECIAL).unwrap();
                let mut context = rt.read_u32s(result_kind::PROMPT_TOKENS).unwrap();
                let mut mask = vec![0u64; trie.mask_words()];
                while rt.state().unwrap().running() {
                    let before = rt.read_u32s(result_kind::TOKENS).unwrap().len();
                    rt.generate_step(1).unwrap();
                    let tokens = rt.read_u32s(result_kind::TOKENS).unwrap();
                    if tokens.len() == before {
                        break; // ended without sampling: no token could continue
                    }
                    let chosen = tokens[before];
                    let mut logits = rt.logits().unwrap();
                    trie.mask(&mut m, &mut mask);
                    let eog_allowed = m.is_complete();
                    for (id, l) in logits.iter_mut().enumerate() {
                        let allowed =
                            mask[id >> 6] & (1 << (id & 63)) != 0 || (eog_allowed && (tok.is_end_of_generation(id as u32) || tok.eos_id() == Some(id as u32)));
                        if !allowed {
                            *l = f32::NEG_INFINITY;
                        }
                    }
                    let window = sampling.repetition_window as usize;
                    let expected = reference.sample(&mut logits, &context[context.len().saturating_sub(window)..]);
                    assert_eq!(chosen, expected, "{package} {schema_file} {sampling:?}: step {} chose {chosen}, the whole mask {expected}", tokens.len());
                    if tok.is_end_of_generation(chosen) {
                        break;
                    }
                    let prev = context.last().copied();
                    assert!(m.accept_bytes(tok.decode_piece(prev, chosen)), "{package} {schema_file}: token {chosen} not accepted");
                    context.push(chosen);
                }
                let stats = rt.grammar_stats().unwrap();
                leading_steps += stats.masked_steps - stats.whole_mask_steps;
            }
        }
        // The check means something only if the module took its short route on this model.
        assert!(leading_steps > 20, "{package}: only {leading_steps} steps decided from leading tokens");
    }
}
