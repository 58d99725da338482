#!/usr/bin/env python3
"""Reference data from llama.cpp (through llama-cpp-python) for the conformance tests of one GGUF.

    PYTHONPATH=~/.cache/tinyrustlm/llama-cpp-python python3 scripts/llama_cpp_reference.py \
        --gguf ~/.cache/tinyrustlm/gguf/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf \
        -o harness/tests/data/reference/qwen2.5-coder-0.5b-instruct-q4_k_m.json

llama.cpp is used only as an oracle through llama-cpp-python's Python API; nothing of it is copied.
One JSON file per GGUF, with:

  tokenize  ids of a fixed list of strings (many scripts, whitespace, digits, code, emoji,
            contractions, punctuation, special-token text): llama_tokenize with add_bos as llama.cpp
            reads it from the GGUF and special=False ("ids"); for strings that contain the text of a
            control / user-defined token, also special=True ("ids_special").
  chat      ChatML text of a few conversations, written out explicitly (the model's default system
            message when the conversation has none, taken from its chat template), checked against
            the GGUF's own Jinja template when jinja2 can render it, and its ids with special=True.
            Gemma 3 (no template in its GGUF): Gemma's format instead, checked against llama.cpp's
            built-in "gemma" template ("template": "gemma" in the file; PROFILES).
  score     a fixed English + code text tokenized as `tokenize` does (BOS when the model adds one),
            SCORE_TEXT, or SCORE_TEXT + SCORE_TEXT_EXTENSION (943 tokens for Gemma 3) for the
            architectures PROFILES marks "long_score",
            evaluated in one batch with logits_all: for each position i the argmax of the logits and
            the natural-log negative log-likelihood of token i+1 (log-softmax in float64 of
            llama.cpp's float32 logits), and perplexity = exp(mean nll).
  greedy    32-token greedy continuations of chat prompts: the prompt is evaluated, then the argmax of
            the last logits (lowest id on ties) is fed back one token at a time with Llama.eval (no
            sampler), stopping after an end-of-generation token; the top1 - top2 logit gap per step.
            For Gemma 3 (a base model) also continuations of raw texts ("kind": "completion").

Settings: n_threads = n_threads_batch = 1, n_ctx = n_batch = n_ubatch = 512 (1024 for Gemma 3; the
scored text is one batch), flash attention off, f16 KV cache (llama.cpp's default), seed fixed
(unused: no sampling). Everything that depends on the architecture is in PROFILES; a model not
listed there gets the settings every earlier file was written with, so re-running it gives the same
file on the same llama.cpp build. Timings (tokens/s) are printed, not stored. The build matters: the
SmolLM2 and Qwen files were written with an AVX-512 build; this script on an AVX2-only build of the
same source reproduces SmolLM2's file except the build description and the logits (argmax agreement
of the two builds: 370/387, mean |NLL difference| 0.051).
"""
import argparse
import ctypes
import hashlib
import json
import math
import os
import re
import sys
import tempfile
import time

import numpy as np

# ---------------------------------------------------------------------------------------------
# Inputs. Changing any of these changes the reference data: regenerate every file (make reference-data).

TOKENIZE_STRINGS = [
    # basics and whitespace
    "Hello world",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    " leading space",
    "trailing space ",
    "two  spaces",
    "many       spaces between",
    " ",
    "   ",
    "                 ",
    "\t",
    "\ttab\tseparated\tvalues",
    "\t\t\tindented with tabs",
    "line1\nline2",
    "\n",
    "\n\n",
    "para one\n\n\npara two",
    "windows\r\nline\r\nendings\r\n",
    "mixed \t \n \r\n  \n\t end",
    "trailing spaces before newline   \nnext",
    "  \n  \n    indented block",
    "",
    # Latin with accents, other European scripts
    "Café naïve résumé — Ærøskøbing, Straße, façade, jalapeño, Ångström",
    "Ça va ? Où est l'hôtel ? Señor Muñoz, Zürich, Łódź, Dvořák, İstanbul",
    "e\u0301 (e + combining acute) vs é",
    "Привет, мир! Съешь же ещё этих мягких французских булок.",
    "ПРИВЕТ МИР",
    "Καλημέρα κόσμε· ξεσκεπάζω την ψυχοφθόρα βδελυγμία.",
    # CJK, Arabic, Hebrew, Indic, Thai
    "你好，世界！我们来写代码。",
    "こんにちは世界、カタカナとひらがなと漢字。",
    "안녕하세요 세계, 반갑습니다.",
    "مرحبا بالعالم، كيف حالك؟ ١٢٣",
    "שלום עולם",
    "नमस्ते दुनिया, आप कैसे हैं? १२३",
    "สวัสดีชาวโลก",
    # emoji, ZWJ sequences, modifiers, flags
    "I ❤️ Rust 🦀🚀",
    "👨‍👩‍👧‍👦 family, 🏳️‍🌈 flag, 👩🏽‍💻 coder, 🧑‍🤝‍🧑",
    "👍👍🏻👍🏿 🇫🇷🇯🇵🇺🇸",
    "😀😃😄😁😆",
    # other Unicode
    "non\u00a0breaking\u00a0space, zero\u200bwidth, \ufeffBOM",
    "ＡＢＣ１２３ full-width",
    "∀x∈ℝ: x² ≥ 0, ∑ᵢ aᵢ, π ≈ 3.14",
    "«quotes» “curly” ‘single’ — dash – en … ellipsis",
    # digits
    "1",
    "12",
    "123",
    "1234",
    "12345",
    "1234567890",
    "3.14159265358979",
    "1,000,000 and 1 000 000",
    "2024-12-03T10:20:30Z",
    "0x1F 0b1010 1e-5 -42 +7",
    "v1.2.3 and 192.168.0.1:8080",
    "a1b22c333d4444",
    # code
    "def add(a, b):\n    return a + b\n",
    "for i in range(10):\n\tprint(f\"{i:>3}\")",
    "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n    println!(\"{:?}\", v);\n}",
    "const f = (x) => x ?? 0; // arrow\nconsole.log(`value: ${f(null)}`);",
    "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); return 0; }",
    "SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name;",
    "<div class=\"x\">&amp; &lt;tag&gt;</div>",
    "{\"key\": [1, 2.5, true, null], \"nested\": {\"a\": \"b\"}}",
    "$ ls -la | grep '.rs$' && echo \"done\" > /dev/null 2>&1",
    "x+=1;y-=2;z*=3;w/=4;a<<=1;b>>=2;c!=d;e==f;g<=h",
    "snake_case camelCase PascalCase SCREAMING_CASE kebab-case",
    "https://example.com/path/to/page?q=1&r=two#frag user@example.org",
    # contractions, cases
    "don't DON'T Don't",
    "I'll I'LL i'll",
    "we're WE'RE they've THEY'VE she'd SHE'D I'm I'M it's IT'S",
    "'s 're 've 'm 'll 'd 't",
    "O'Reilly rock'n'roll ma'am",
    "can't won't shouldn't",
    # punctuation runs
    "!!!???...",
    "Wait... what?!",
    "--- *** === ___ ~~~",
    "!@#$%^&*()_+-=[]{}|;':\",./<>?`~",
    "((()))[[[]]]{{{}}}",
    # words
    "antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "UPPERCASE lowercase MiXeD cAsE",
    # special-token text
    "<|im_start|>user\nhi<|im_end|>",
    "<|endoftext|>",
    "text<|im_end|>more text",
    "<|im_start|><|im_start|>",
    "<|im_start|",
    "<s> and </s>",
    "<|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|>",
    "<think>not special</think>",
]

# Conversations for the chat section: (system or None, [(role, content), ...]). The rendered text
# ends with the generation prompt ("<|im_start|>assistant\n").
CHATS = [
    (None, [("user", "Hello!")]),
    (None, [("user", "Write a Python function that checks whether a number is prime.")]),
    ("You are a concise assistant.", [("user", "What is the capital of France?")]),
    (None, [("user", "Hi, who are you?"), ("assistant", "I am an AI assistant. How can I help?"),
            ("user", "Explain what a hash map is in one sentence.")]),
    ("Réponds en français.", [("user", "Quelle est la différence entre 🍎 et 🍊 ? 你好")]),
]

# Greedy continuations: user messages, rendered with the default system message (as `trl generate
# --chat` does).
GREEDY_PROMPTS = [
    "Write a Python function that returns the n-th Fibonacci number.",
    "How do I reverse a string in Rust?",
    "Write a SQL query that counts the orders of each customer.",
    "What is the capital of France? Answer in one sentence.",
]
GREEDY_TOKENS = 32

# Greedy continuations of raw text (no chat template), for base models (Gemma 3 270M is the
# pretrained model, not the instruction-tuned one): the text as given, BOS when the model adds one.
GREEDY_COMPLETIONS = [
    "The capital of France is",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Once upon a time, in a small village by the sea,",
    "To reverse a string in Rust, you can",
]

SCORE_TEXT = """\
The history of computing is a story of people finding better ways to describe what they want a \
machine to do. Early programmers wrote instructions as numbers, one word at a time, and checked \
their work by hand. Assemblers replaced the numbers with short names, and compilers later turned \
whole formulas into instructions, so that a scientist could write an equation almost as it appears \
on paper. Each step moved some of the care from the person to the tool, and each tool had to be \
trusted before it was useful.

A good test suite is one way to earn that trust. It does not prove that a program is correct, but \
it records what the authors expected, and it fails loudly when the program stops doing it. The \
small example below computes a running mean of a list of numbers and checks the result against a \
value worked out by hand.

def running_mean(values):
    total = 0.0
    means = []
    for count, value in enumerate(values, start=1):
        total += value
        means.append(total / count)
    return means


def test_running_mean():
    assert running_mean([2.0, 4.0, 6.0]) == [2.0, 3.0, 4.0]
    assert running_mean([]) == []

The same idea works in any language. In Rust, the function could take a slice and return a vector, \
and the test would live in a module marked with a configuration attribute, so that it is compiled \
only when the tests are run. Whatever the language, the tests are most useful when they are quick, \
when their failures are easy to read, and when they check one behaviour at a time. Over the years, \
teams have learned that the cost of writing such tests is usually repaid the first time a change \
breaks something that nobody thought to look at.
"""

# The second part of the scored text for models held to the longer scoring bar (issue 16: at least
# 500 teacher-forced tokens; SCORE_TEXT alone is ~380 tokens for Qwen and 391 for Gemma). Appended to
# SCORE_TEXT, never changed separately from it; the files of models scored on SCORE_TEXT alone do
# not contain it, so adding a model here leaves their bytes as they are. For Gemma 3 the whole text
# is longer than its 512-token sliding window, so the windowed layers are compared too.
SCORE_TEXT_EXTENSION = """
Caches raise a similar question of trust. A language model that writes one word at a time keeps \
the keys and values of every earlier word, so that each new word costs a single step instead of a \
pass over the whole text. Some models look only at the most recent few hundred words in most of \
their layers and keep the full history in the rest; the window saves memory and time, but it means \
that two programs can agree on a short prompt and still disagree on a long one, if one of them \
forgets to drop the words that have left the window. The only way to know is to compare them on a \
text that is longer than the window.

The check below compares two lists of numbers within a tolerance and reports the first place where \
they differ, which is usually more helpful than a single yes or no.

fn first_difference(a: &[f32], b: &[f32], tolerance: f32) -> Option<usize> {
    if a.len() != b.len() {
        return Some(a.len().min(b.len()));
    }
    a.iter().zip(b).position(|(x, y)| (x - y).abs() > tolerance)
}

#[test]
fn reports_the_first_difference() {
    assert_eq!(first_difference(&[1.0, 2.0, 3.0], &[1.0, 2.5, 3.0], 0.1), Some(1));
    assert_eq!(first_difference(&[1.0, 2.0], &[1.0, 2.0], 0.1), None);
}

Numbers tell the rest of the story. A run that reads 1,024 tokens in 2.5 seconds processes about \
410 tokens per second; if the same machine writes 30 tokens per second, a 200-token answer takes \
a little under 7 seconds, and most of that time goes into reading the weights again for every token. \
Halving the size of the weights, from 16 bits to 8 or from 8 to 4, roughly doubles that speed, as \
long as the arithmetic keeps up and the answers stay close to those of the full model.

In the end, careful engineering is mostly patience. Measure before changing anything, change one \
thing at a time, write down what you expected and what happened, and keep the record where the \
next person will find it. When the numbers disagree with the plan, believe the numbers first, and \
then find out why.
"""

# Default system messages of the chat templates we know, found in the GGUF's template text.
KNOWN_DEFAULT_SYSTEMS = [
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
]

N_CTX = 512
N_BATCH = 512
SEED = 1234

# What depends on the architecture (general.architecture). A model not listed gets DEFAULT_PROFILE,
# the settings every file written before issue 16 was made with. "template": the chat format of the chat and greedy sections; "long_score": score
# SCORE_TEXT + SCORE_TEXT_EXTENSION; "n_ctx": context = batch = ubatch, enough for the scored text in
# one batch; "completions": also greedy continuations of GREEDY_COMPLETIONS (raw text).
DEFAULT_PROFILE = dict(template="chatml", long_score=False, n_ctx=N_CTX, completions=False)
PROFILES = {
    # The GGUF has no tokenizer.chat_template: Gemma's format, as llama.cpp's built-in "gemma"
    # template writes it (checked against llama_chat_apply_template): a system message is merged
    # into the first user turn, the assistant's role is "model". BOS is not in the text: the
    # tokenizer adds it (add_bos), as with every text of the file.
    "gemma3": dict(template="gemma", long_score=True, n_ctx=1024, completions=True),
}

# ---------------------------------------------------------------------------------------------


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def chatml(system, turns, default_system):
    """The ChatML text of a conversation, ending with the assistant's generation prompt."""
    out = ""
    if system is None:
        system = default_system
    if system is not None:
        out += f"<|im_start|>system\n{system}<|im_end|>\n"
    for role, content in turns:
        out += f"<|im_start|>{role}\n{content}<|im_end|>\n"
    return out + "<|im_start|>assistant\n"


def gemma_chat(system, turns):
    """Gemma's chat text of a conversation, ending with the model's generation prompt."""
    out = ""
    for role, content in turns:
        role = "model" if role == "assistant" else role
        out += f"<start_of_turn>{role}\n"
        if system is not None and role != "model":
            out += f"{system}\n\n"
            system = None
        out += f"{content}<end_of_turn>\n"
    return out + "<start_of_turn>model\n"


def gguf_architecture(path):
    """general.architecture from a GGUF's header (read before loading: the profile sets n_ctx)."""
    import struct
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    with open(path, "rb") as f:
        def u(fmt):
            return struct.unpack("<" + fmt, f.read(struct.calcsize("<" + fmt)))[0]

        def string():
            return f.read(u("Q")).decode("utf-8", "replace")

        def skip(kind):
            if kind == 8:
                f.seek(u("Q"), 1)
            elif kind == 9:
                item, n = u("I"), u("Q")
                for _ in range(n):
                    skip(item)
            else:
                f.seek(sizes[kind], 1)

        if f.read(4) != b"GGUF":
            sys.exit(f"error: {path} is not a GGUF file")
        u("I"), u("Q")
        for _ in range(u("Q")):
            key, kind = string(), u("I")
            if key == "general.architecture" and kind == 8:
                return string()
            skip(kind)
    return ""


def log_softmax64(logits32):
    x = logits32.astype(np.float64)
    m = x.max()
    return x - (m + math.log(np.exp(x - m).sum()))


def top2(logits32):
    """(best id, second id, best - second) with ties resolved to the lowest id, like numpy argmax."""
    order = np.argsort(-logits32.astype(np.float64), kind="stable")
    a, b = int(order[0]), int(order[1])
    return a, b, float(np.float64(logits32[a]) - np.float64(logits32[b]))


class StderrCapture:
    """Redirects file descriptor 2 (where llama.cpp's log goes) into a temporary file."""

    def __enter__(self):
        sys.stderr.flush()
        self.tmp = tempfile.TemporaryFile(mode="w+b")
        self.saved = os.dup(2)
        os.dup2(self.tmp.fileno(), 2)
        return self

    def __exit__(self, *exc):
        sys.stderr.flush()
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.tmp.seek(0)
        self.text = self.tmp.read().decode("utf-8", "replace")
        self.tmp.close()
        return False


# Log lines worth keeping: warnings about the vocabulary / pre-tokenizer and the vocabulary summary.
LOG_KEEP = re.compile(
    r"warn|pre-?tok|degrad|bug|overrid|missing|control-looking|"
    r"print_info: (file type|arch |general\.name|vocab type|n_vocab|n_merges|BOS|EOS|EOT|EOG|PAD|LF|UNK|FIM|"
    r"rope type|freq_base)",
    re.IGNORECASE)
UNUSED_TOKEN = re.compile(r"<unused[0-9]+>")
LOG_DROP = ("llama_model_loader: - kv", "Model metadata:", "Dumping metadata")

# The llama.cpp commit each llama-cpp-python release vendors (from its CHANGELOG); the library itself
# does not export one when built from the sdist (no git history).
LLAMA_CPP_COMMITS = {"0.3.36": "0c1e57098"}


def compact_json(obj, indent=0):
    """JSON with one key per line but lists of scalars on a single line (keeps the files small)."""
    pad = " " * indent
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f'{pad} {json.dumps(k, ensure_ascii=False)}: {compact_json(v, indent + 1)}'
                 for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list):
        if all(not isinstance(v, (dict, list)) for v in obj) or \
                all(isinstance(v, list) and all(not isinstance(w, (dict, list)) for w in v) for v in obj):
            return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))
        items = [pad + " " + compact_json(v, indent + 1) for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(obj, ensure_ascii=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", required=True)
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--score-tokens", type=int, default=0,
                    help="score only the first N tokens of the text (0: all); for slow models")
    ap.add_argument("--log", help="also write llama.cpp's full log here")
    a = ap.parse_args()

    import llama_cpp
    from llama_cpp import Llama

    gguf = os.path.abspath(os.path.expanduser(a.gguf))
    if not os.path.isfile(gguf):
        sys.exit(f"error: {gguf} not found")
    print(f"hashing {gguf}", flush=True)
    digest = sha256_of(gguf)
    size = os.path.getsize(gguf)

    profile = PROFILES.get(gguf_architecture(gguf), DEFAULT_PROFILE)
    n_ctx = profile["n_ctx"]
    settings = dict(n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, n_threads=1, n_threads_batch=1,
                    logits_all=True, flash_attn=False, seed=SEED, use_mmap=True, n_gpu_layers=0)
    t0 = time.perf_counter()
    with StderrCapture() as cap:
        llm = Llama(model_path=gguf, verbose=True, **settings)
    load_s = time.perf_counter() - t0
    full_log = cap.text
    if a.log:
        with open(a.log, "w") as f:
            f.write(full_log)
    kept_log = []
    for line in full_log.splitlines():
        line = line.rstrip()
        if line and LOG_KEEP.search(line) and not any(d in line for d in LOG_DROP) and line not in kept_log:
            kept_log.append(line)
    print(f"loaded in {load_s:.1f} s; llama.cpp log lines kept:", flush=True)
    for line in kept_log:
        print("  " + line)

    model = llm._model
    vocab = model.vocab
    n_vocab = llm.n_vocab()
    meta = dict(llm.metadata)
    add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
    bos = int(llama_cpp.llama_vocab_bos(vocab))
    eos = int(llama_cpp.llama_vocab_eos(vocab))
    eot = int(llama_cpp.llama_vocab_eot(vocab))
    eog_ids = [i for i in range(n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, i)]
    special_attr = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
    special_texts = {}
    for i in range(n_vocab):
        if llama_cpp.llama_vocab_get_attr(vocab, i) & special_attr:
            t = llama_cpp.llama_vocab_get_text(vocab, i)
            t = t.decode("utf-8", "replace") if t else ""
            if t:
                special_texts[t] = i

    def tok(text, special):
        return llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)

    def piece_text(ids):
        return llm.detokenize(ids, special=True).decode("utf-8", "replace")

    # ---- (1) tokenization
    tok_cases = []
    for s in TOKENIZE_STRINGS:
        case = {"text": s, "ids": tok(s, False)}
        found = sorted({t for t in special_texts if t in s})
        if found:
            case["special_texts"] = found
            case["ids_special"] = tok(s, True)
        tok_cases.append(case)

    # ---- (2) chat prompts
    template = meta.get("tokenizer.chat_template", "")
    default_system = next((d for d in KNOWN_DEFAULT_SYSTEMS if d in template), None)
    chat_format = profile["template"]
    if chat_format == "chatml" and "<|im_start|>" not in template:
        print("warning: the GGUF's chat template is not ChatML; the chat texts below are ChatML anyway",
              file=sys.stderr)
    jinja = None
    try:
        if chat_format != "chatml":
            raise RuntimeError(f"checked against llama.cpp's built-in {chat_format!r} template instead")
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        bos_text = piece_text([bos]) if bos >= 0 else ""
        eos_text = piece_text([eos]) if eos >= 0 else ""
        jinja = Jinja2ChatFormatter(template=template, eos_token=eos_text, bos_token=bos_text,
                                    add_generation_prompt=True)
    except Exception as e:  # no template, jinja2 missing, template does not parse
        print(f"note: cannot render the GGUF's chat template ({e}); ChatML texts unchecked")

    def render_builtin(system, turns):
        """llama.cpp's own rendering with its built-in template named chat_format."""
        msgs = ([("system", system)] if system is not None else []) + list(turns)
        arr = (llama_cpp.llama_chat_message * len(msgs))(
            *[llama_cpp.llama_chat_message(r.encode(), c.encode()) for r, c in msgs])
        n = 1 << 14
        buf = ctypes.create_string_buffer(n)
        got = llama_cpp.llama_chat_apply_template(chat_format.encode(), arr, len(msgs), True, buf, n)
        if got < 0 or got > n:
            sys.exit(f"error: llama_chat_apply_template({chat_format!r}) returned {got}")
        return buf.raw[:got].decode("utf-8")

    def render(system, turns):
        if chat_format == "gemma":
            text = gemma_chat(system, turns)
            builtin = render_builtin(system, turns)
            if builtin != text:
                print(f"warning: llama.cpp's {chat_format!r} template renders {builtin!r}, here {text!r}")
            return text, builtin == text
        text = chatml(system, turns, default_system)
        agrees = None
        if jinja is not None:
            msgs = ([{"role": "system", "content": system}] if system is not None else []) + \
                   [{"role": r, "content": c} for r, c in turns]
            try:
                agrees = jinja(messages=msgs).prompt == text
            except Exception as e:
                print(f"note: template rendering failed: {e}")
        if agrees is False:
            print(f"warning: the GGUF's template renders {jinja(messages=msgs).prompt!r}, ChatML here is {text!r}")
        return text, agrees

    chat_cases = []
    for system, turns in CHATS:
        text, agrees = render(system, turns)
        chat_cases.append({"system": system, "messages": [{"role": r, "content": c} for r, c in turns],
                           "text": text, "template_agrees": agrees, "ids": tok(text, True)})

    # ---- (3) scoring
    score_text = SCORE_TEXT + SCORE_TEXT_EXTENSION if profile["long_score"] else SCORE_TEXT
    score_ids = tok(score_text, False)
    n_text_tokens = len(score_ids)
    if a.score_tokens:
        score_ids = score_ids[:a.score_tokens]
    if len(score_ids) > n_ctx:
        sys.exit(f"error: the scored text is {len(score_ids)} tokens, more than one batch ({n_ctx})")
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(score_ids)
    score_s = time.perf_counter() - t0
    logits = np.asarray(llm.scores[:len(score_ids)], dtype=np.float32)  # a view: no copy
    argmax, nll = [], []
    for i in range(len(score_ids)):
        argmax.append(int(np.argmax(logits[i])))
        if i + 1 < len(score_ids):
            nll.append(-float(log_softmax64(logits[i])[score_ids[i + 1]]))
    mean_nll = float(np.mean(np.array(nll, dtype=np.float64)))
    top5 = np.argsort(-logits[0].astype(np.float64), kind="stable")[:5]
    hits = sum(1 for i in range(len(score_ids) - 1) if argmax[i] == score_ids[i + 1])
    score = {
        "text": score_text,
        "text_tokens": n_text_tokens,
        "scored_tokens": len(score_ids),
        "add_bos": add_bos,
        "tokens": score_ids,
        "argmax": argmax,
        "nll": [round(x, 6) for x in nll],
        "mean_nll": round(mean_nll, 9),
        "perplexity": round(math.exp(mean_nll), 9),
        "next_token_top1_rate": round(hits / (len(score_ids) - 1), 6),
        "top5_first": [[int(t), float(logits[0][t])] for t in top5],
    }
    if profile["long_score"]:
        score = {"text_parts": ["SCORE_TEXT", "SCORE_TEXT_EXTENSION"], **score}
    del logits

    # ---- (4) greedy continuations
    greedy_cases = []
    decode_steps, decode_s = 0, 0.0
    greedy_inputs = [("chat", p) for p in GREEDY_PROMPTS]
    if profile["completions"]:
        greedy_inputs += [("completion", p) for p in GREEDY_COMPLETIONS]
    for kind, prompt in greedy_inputs:
        if kind == "chat":
            text, agrees = render(None, [("user", prompt)])
        else:
            text, agrees = prompt, None
        ids = tok(text, True)
        llm.reset()
        llm.eval(ids)
        out, second, gaps, stop = [], [], [], "length"
        t0 = time.perf_counter()
        for step in range(GREEDY_TOKENS):
            best, nxt, gap = top2(np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float32))
            out.append(best)
            second.append(nxt)
            gaps.append(round(gap, 5))
            if llama_cpp.llama_vocab_is_eog(vocab, best):
                stop = "eog"
                break
            if step + 1 < GREEDY_TOKENS:
                llm.eval([best])
                decode_steps += 1
        decode_s += time.perf_counter() - t0
        # llama.cpp's own consistency: the same sequence evaluated in one batch.
        llm.reset()
        llm.eval(ids + out[:-1])
        batch_argmax = [int(np.argmax(llm.scores[len(ids) - 1 + k])) for k in range(len(out))]
        kind_field = {"kind": kind} if profile["completions"] else {}
        greedy_cases.append({
            **kind_field, "prompt": prompt, "text": text, "template_agrees": agrees, "prompt_tokens": ids,
            "tokens": out, "second": second, "gaps": gaps, "stop": stop,
            "output": piece_text(out),
            "batch_argmax_agrees": sum(1 for x, y in zip(batch_argmax, out) if x == y),
        })

    # ---- provenance
    system_info = llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip()
    version = getattr(llama_cpp, "__version__", "unknown")
    build = {"llama_cpp_commit": LLAMA_CPP_COMMITS.get(version, "unknown"),
             "library": "LLAMA_CPP_LIB_PATH (a separate build of the same vendored source)"
             if os.environ.get("LLAMA_CPP_LIB_PATH") else "the one installed with llama-cpp-python"}
    for sym, kind in (("llama_build_number", ctypes.c_int), ("llama_commit", ctypes.c_char_p),
                      ("llama_compiler", ctypes.c_char_p), ("llama_build_target", ctypes.c_char_p)):
        try:
            v = kind.in_dll(llama_cpp._lib, sym).value  # exported by some builds only
            build[sym] = v.decode() if isinstance(v, bytes) else v
        except (ValueError, AttributeError):
            pass
    arch = meta.get("general.architecture", "")
    chat_source = {} if chat_format == "chatml" else {
        "source": f"the GGUF has no chat template: {chat_format}'s format as llama.cpp's built-in "
                  f"{chat_format!r} template writes it (template_agrees: llama_chat_apply_template gives the "
                  "same text); BOS is not in the text, the tokenizer adds it"}
    # Placeholder tokens `<unusedN>` (6242 in Gemma 3) are summarised as id ranges, not listed.
    unused = sorted(i for t, i in special_texts.items() if UNUSED_TOKEN.fullmatch(t))
    unused_ranges = []
    for i in unused:
        if unused_ranges and unused_ranges[-1][1] == i - 1:
            unused_ranges[-1][1] = i
        else:
            unused_ranges.append([i, i])
    unused_tokens = {"unused_tokens": {"text": "<unusedN>", "count": len(unused), "id_ranges": unused_ranges}} \
        if unused else {}
    doc = {
        "schema": "tinyrustlm llama.cpp reference v1 (scripts/llama_cpp_reference.py)",
        "model": {
            "file": os.path.basename(gguf),
            "size": size,
            "sha256": digest,
            "name": meta.get("general.name"),
            "architecture": arch,
            "file_type": meta.get("general.file_type"),
            "desc": model.desc(),
            "n_params": model.n_params(),
            "n_vocab": n_vocab,
            "tokenizer_model": meta.get("tokenizer.ggml.model"),
            "pre_tokenizer": meta.get("tokenizer.ggml.pre"),
            "add_bos_metadata": meta.get("tokenizer.ggml.add_bos_token"),
            "add_bos": add_bos,
            "bos": bos, "eos": eos, "eot": eot, "eog": eog_ids,
            "special_tokens": {t: i for t, i in sorted(special_texts.items(), key=lambda kv: kv[1])
                               if not UNUSED_TOKEN.fullmatch(t)},
            **unused_tokens,
            "chat_template_sha256": hashlib.sha256(template.encode()).hexdigest() if template else None,
            "default_system": default_system,
        },
        "oracle": {
            "llama_cpp_python": version,
            "llama_cpp_build": build,
            "system_info": system_info,
            "log": kept_log,
        },
        "settings": dict(settings, numpy=np.__version__,
                         tokenize="llama.tokenize(text.encode('utf-8'), add_bos=<model's>, special=False); "
                                  "ids_special with special=True",
                         score="one batch of all tokens; nll[i] = -log_softmax(float64(logits[i]))[tokens[i+1]], "
                               "argmax[i] = argmax(logits[i]) (lowest id on ties); perplexity = exp(mean(nll))",
                         greedy=f"chat text with the default system message, special=True; up to {GREEDY_TOKENS} "
                                "tokens by argmax over the last logits fed back with Llama.eval, stop after an "
                                "EOG token (included); gaps = top1 - top2 logit; batch_argmax_agrees = how many "
                                "steps a single-batch re-evaluation of prompt + output picks the same token"
                                + ("; kind \"completion\": the raw text, no chat template" if profile["completions"]
                                   else "")),
        "tokenize": {"add_bos": add_bos, "cases": tok_cases},
        "chat": {"template": chat_format, **chat_source, "default_system": default_system, "cases": chat_cases},
        "score": score,
        "greedy": {"max_tokens": GREEDY_TOKENS, "cases": greedy_cases},
    }
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    partial = a.out + ".partial"
    with open(partial, "w", encoding="utf-8") as f:
        f.write(compact_json(doc) + "\n")
    os.replace(partial, a.out)

    print(f"wrote {a.out} ({os.path.getsize(a.out)} bytes)")
    print(f"  {len(tok_cases)} tokenizer strings, {len(chat_cases)} chats, {len(greedy_cases)} greedy prompts")
    print(f"  score: {len(score_ids)} tokens in {score_s:.2f} s ({len(score_ids) / score_s:.1f} tokens/s prefill, "
          f"1 thread), perplexity {score['perplexity']:.4f}, next-token top-1 {score['next_token_top1_rate']:.3f}")
    if decode_steps:
        print(f"  greedy: {decode_steps} decode steps, {decode_steps / decode_s:.1f} tokens/s (1 thread)")
    for c in greedy_cases:
        print(f"  {c['prompt'][:40]!r}: {len(c['tokens'])} tokens ({c['stop']}), min gap {min(c['gaps']):.3f}, "
              f"batch re-eval agrees {c['batch_argmax_agrees']}/{len(c['tokens'])}: {c['output'][:70]!r}")


if __name__ == "__main__":
    main()
