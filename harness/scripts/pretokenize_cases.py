#!/usr/bin/env python3
"""Pre-tokenizer conformance cases: (text, pieces) for every pre-tokenizer, from an independent engine.

The pieces come from the PyPI `regex` module (a backtracking engine with the same leftmost-first,
greedy semantics as Oniguruma, which Hugging Face `tokenizers` uses, and as the ECMAScript std::regex
llama.cpp falls back to for qwen2), run on the exact patterns below; `src/tokenizer/pretokenize.rs`
checks its hand-written splitters against them (`conformance_with_the_regex_module`).

    pip install regex
    python3 harness/scripts/pretokenize_cases.py src/tokenizer/testdata/pretokenize_cases.json

Where the regex module could disagree with Oniguruma/llama.cpp, the script checks and says so:
- character classes: `regex` has its own Unicode tables (possibly a newer version than the runtime's
  Unicode 16.0 ones). Every code point is compared with `src/tokenizer/unicode_tables.rs`; the ones
  that differ are listed on stderr and never used in a case.
- contractions: Hugging Face writes them `(?i:'s|'t|'re|'ve|'m|'ll|'d)`, llama.cpp spells the cases
  out (`'[sS]|...`). The cases use llama.cpp's form; texts where the two give different pieces are
  listed on stderr.
Ill-formed UTF-8 cannot be expressed here (Python strings are code points); the Rust unit tests
cover it.
"""
import json
import random
import re as stdlib_re
import sys
from pathlib import Path

import regex

GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
# llama.cpp src/llama-vocab.cpp, llm_tokenizer_bpe, case LLAMA_VOCAB_PRE_TYPE_QWEN2 / LLAMA3.
CONTRACTIONS = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
HF_CONTRACTIONS = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)"
QWEN2_TAIL = r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN2 = CONTRACTIONS + QWEN2_TAIL
LLAMA3 = QWEN2.replace(r"|\p{N}|", r"|\p{N}{1,3}|")
assert LLAMA3 != QWEN2
PATTERNS = {"gpt2": GPT2, "qwen2": QWEN2, "llama3": LLAMA3}
COMPILED = {k: regex.compile(v) for k, v in PATTERNS.items()}
QWEN2_HF = regex.compile(HF_CONTRACTIONS + QWEN2_TAIL)
LLAMA3_HF = regex.compile((HF_CONTRACTIONS + QWEN2_TAIL).replace(r"|\p{N}|", r"|\p{N}{1,3}|"))
NUMBER_CHAR = regex.compile(r"\p{N}")


def split(compiled, text):
    pieces = compiled.findall(text)
    assert "".join(pieces) == text, (compiled.pattern, text)  # every character matches some alternative
    return pieces


def split_smollm(text):
    """Digits(individual_digits=true) then ByteLevel's GPT-2 regex on each stretch between digits."""
    out, start = [], 0
    for m in NUMBER_CHAR.finditer(text):
        out += split(COMPILED["gpt2"], text[start : m.start()])
        out.append(m.group())
        start = m.end()
    return out + split(COMPILED["gpt2"], text[start:])


def regex_class(cp):
    c = chr(cp)
    if regex.match(r"\s", c):
        return 3
    if regex.match(r"\p{L}", c):
        return 1
    if regex.match(r"\p{N}", c):
        return 2
    return 0


def table_classes(rs_path):
    """Class of every scalar value per the runtime's CLASS_RUNS table."""
    body = Path(rs_path).read_text()
    runs = [int(x, 16) for x in stdlib_re.findall(r"0x([0-9a-f]{7}),", body)]
    classes = bytearray(0x110000)
    for k, run in enumerate(runs):
        end = (runs[k + 1] >> 2) if k + 1 < len(runs) else 0x110000
        classes[run >> 2 : end] = bytes([run & 3]) * (end - (run >> 2))
    return classes


FIXED = [
    # contractions, every case, only at a piece start
    "I'd I'll I've I'm I's I't I're", "I'D I'LL I'VE I'M I'S I'T I'RE", "DON'T don't Don'T dOn't",
    "we'RE we'Re we'rE they'Ve it'LL it'lL she'D", "'s", "'S", "'", "''", "'''ll", " 's", " 'S", "x'",
    "'x", "'llama", "O'Neil's", "rock'n'roll", "it’s", "?'s", "a's'b", "'re're", "'ʼs", "can't've",
    "'ſt 'ſT 'ſ",  # U+017F case-folds to s: a contraction for (?i:'s), not for '[sS]
    # letters with a leading character
    "(foo)", "$x = 1", "#include", "@user", "\tindent", "\u3000全角", "\u00a0nbsp", "-flag --long",
    "\u200bzero", "\u200dzwj", "a\u0301b", "e\u0301", "Ame\u0301lie", "¿Qué?", "«guillemets»",
    # whitespace runs and newlines
    " ", "  ", "\t", "\n", "\r\n", "\n\n", "a  b", "a   b", "a\n b", "a \nb", "a\t\tb", "a \t b",
    "a\r\n\r\nb", "end \n", "x    ", "  \n  x", "\t \t x", "\n\n\n", " \n \n ", "a\u00a0b", "a\u00a0 b",
    "a \u00a0b", "a\u3000\u3000b", "a\u2028b", "a\u2029\nb", "a\u0085b", "a\x0bb\x0cc", "a\x1cb\x1fc",
    "a\u2009\u2009b", "a\u180eb", "\ufeffBOM", " \n\t\r\n \u00a0\u3000x", "a \n\n  b", "\r\r\n\n\r",
    "line1\nline2\r\nline3\rline4", "  leading", "trailing  ", "  both  ", "\n\nhead", "tail\n\n",
    " \u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u1680x",
    # punctuation runs followed by newlines
    "x;\n", "x;\r\n", "a.\n\nb", "end.\n  next", "!!!\n\n\n", "?!\r\n\r\n", " ...\n", "), (\n", "}\n}\n",
    "--\n--", " !\n !", "a,\nb", "\"quoted\"\n", "//\n", "*/\r\n",
    # digits
    "0", "007", "12345", "1234567", "1,234.56", "x2y3", " 1 ", "  9", "v1.2.3-rc4", "3.14159",
    "٣٤٥", "१२३४", "①②③④", "½¾⅓", "Ⅻ Ⅳ", "x²³", "0x1F600", "2024-06-01T12:30:00Z", "ab12cd345ef",
    " 12 345 6789", "१२a३",
    # scripts
    "Hello, world!", "Crème brûlée à la façon de Noël", "Straße ÄÖÜ äöü", "Příliš žluťoučký kůň",
    "Съешь же ещё этих мягких французских булок", "Γειά σου Κόσμε· ὁ λόγος", "你好，世界！这是一个测试。",
    "日本語のテキスト、カタカナとひらがな。", "한국어 텍스트입니다.", "مرحبا بالعالم، كيف حالك؟",
    "שלום עולם", "नमस्ते दुनिया। यह परीक्षण है।", "สวัสดีชาวโลก ภาษาไทย", "ሰላም ዓለም", "Tiếng Việt có dấu",
    "ქართული ენა", "Հայերեն", "தமிழ் மொழி", "বাংলা ভাষা", "ꦲꦏ꧀ꦱꦫ", "ᚠᚢᚦᚨᚱᚲ", "𝐇𝐞𝐥𝐥𝐨 𝕎𝕠𝕣𝕝𝕕",
    # emoji
    "I ❤️ Rust 🦀", "👍🏽 ok", "👨‍👩‍👧‍👦 family", "🏳️‍🌈", "🇫🇷🇯🇵", "😀😃😄", "a😀b", " 😀 ", "✓ done ✗",
    "1️⃣ 2️⃣", "#️⃣", "🧑🏿‍💻 coder",
    # code
    "def f(x):\n    return x + 1\n",
    "class Foo:\n    def __init__(self, n: int) -> None:\n        self.n = n  # count\n\n\n",
    "if (a && b) {\n\treturn a[i] != b[i];\n}\n",
    "const x = () => { console.log(`x=${x}`); };\r\n",
    "fn main() {\n    let v: Vec<u8> = vec![1, 2, 3];\n    println!(\"{:?}\", v);\n}\n",
    "#include <stdio.h>\nint main(void) {\n  printf(\"%d\\n\", 42);\n  return 0;\n}\n",
    "for i in range(10):\n\tif i % 2 == 0:\n\t\tprint(i)\n",
    "    indented\n        more\n    less\n",
    "x = {'key': \"value\", 'n': 3.5e-10}", "a->b; c::d; e=>f; g||h; i??j",
    "<|im_start|>user\nHi<|im_end|>\n", "SELECT * FROM t WHERE id = 42;", "https://example.com/a?b=c&d=e#f",
    "C:\\Users\\me\\file.txt", "$ cargo test --release -- --nocapture\n", "  - item\n  - item2\n",
    "| a | b |\n|---|---|\n", "<div class=\"x\">text</div>",
]

# Awkward characters for the random strings: each class, the contraction letters in both cases,
# every kind of whitespace, combining marks, ZWJ, emoji and modifiers.
ALPHABET = (
    list(" \t\n\r\x0b\x0c\x1c\u0085\u00a0\u1680\u2002\u2028\u3000")
    + list("'sStTrReEvVlLmMdDaZqx")
    + list("0917٣١२½Ⅻ²")
    + list("!.,;()-_\"#{}/\\*@$%?")
    + list("éß\u0301\u0308世界жΩſकि\u094dกั")
    + list("\u200b\u200d\ufeff😀👍\U0001F3FD❤\ufe0f")
)
N_RANDOM = 300
SEED = 15


def main():
    out_path = sys.argv[1]
    tables = table_classes(Path(__file__).resolve().parents[2] / "src/tokenizer/unicode_tables.rs")
    differing = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF and regex_class(cp) != tables[cp]]
    print(f"regex {regex.__version__}: {len(differing)} code points classed differently from unicode_tables.rs"
          + (f" (first: {', '.join(f'U+{cp:04X}' for cp in differing[:12])})" if differing else ""),
          file=sys.stderr)
    bad = set(differing)

    rng = random.Random(SEED)
    randoms = ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 24))) for _ in range(N_RANDOM)]
    texts = []
    for t in FIXED + randoms:
        if t not in texts:
            texts.append(t)
    for t in texts:
        unsafe = [f"U+{ord(c):04X}" for c in t if ord(c) in bad]
        assert not unsafe, f"case {t!r} uses characters the two class tables disagree on: {unsafe}"

    cases = []
    for t in texts:
        case = {"text": t}
        case["gpt2"] = split(COMPILED["gpt2"], t)
        case["smollm"] = split_smollm(t)
        case["qwen2"] = split(COMPILED["qwen2"], t)
        case["llama3"] = split(COMPILED["llama3"], t)
        for name, hf in (("qwen2", QWEN2_HF), ("llama3", LLAMA3_HF)):
            if split(hf, t) != case[name]:
                print(f"{name}: (?i:) contractions differ on {t!r}: {split(hf, t)} vs {case[name]}", file=sys.stderr)
        cases.append(case)

    doc = {
        "generator": "harness/scripts/pretokenize_cases.py",
        "engine": f"PyPI regex {regex.__version__}",
        "patterns": {**PATTERNS, "smollm": r"\p{N} (each alone), then gpt2 on each stretch between"},
        "random": {"seed": SEED, "count": N_RANDOM},
        "cases": cases,
    }
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"{len(cases)} cases -> {out_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
