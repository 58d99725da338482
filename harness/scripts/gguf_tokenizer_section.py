#!/usr/bin/env python3
"""Build an SLM1 tokenizer section (abi/FORMAT.md, "Tokenizer section") from a GGUF file's vocabulary.

An independent, plain-Python writer of the section: useful to cross-check the Rust importer byte for
byte (the CRC32 is printed), and to give native tests a real vocabulary without a whole package.

    pip install gguf numpy
    python3 gguf_tokenizer_section.py MODEL.gguf OUT.bin [--eog 0,2,4] [--pre smollm] [--chat-template chatml]

Supported `tokenizer.ggml.model` values:
- `gpt2` → kind bpe_byte_level. Normal tokens are stored after undoing GPT-2's bytes_to_unicode
  mapping; control / user-defined / unknown / unused tokens are stored as their literal UTF-8 text
  (llama.cpp's token_to_piece does the same). Merge "a b" becomes (id(a), id(b), id(ab)) with
  rank = its index in the list.
- `llama` → kind bpe_sentencepiece. `▁` is stored as a space, `<0xAB>` byte tokens as the byte.
  SentencePiece has no merge list, so one is derived the way llama2.c / llama.cpp encode: every way
  to split a normal token into two normal tokens is a merge producing it, ranked by the produced
  token's score (higher score → lower rank; equal scores → equal rank, which the runtime breaks
  leftmost-first, as llama2.c does). User-defined tokens are cut out of the text before merging.

Defaults from metadata: bos/eos/unk ids, ADD_BOS (`tokenizer.ggml.add_bos_token`), ADD_SPACE_PREFIX
(`tokenizer.ggml.add_space_prefix`, SentencePiece only), pre-tokenizer (`tokenizer.ggml.pre`:
smollm → smollm, qwen2 → qwen2, llama-bpe → llama3, else gpt2 for gpt2 models, none for llama), chat
template (chatml_qwen2 if the template mentions `<|im_start|>` and Qwen's default system prompt,
chatml if only `<|im_start|>`, gemma if `<start_of_turn>`; with no template, gemma for the gemma3
architecture), end-of-generation ids (eos plus the ids of `<|endoftext|>`, `<|im_end|>`, `<|eot_id|>`,
`<end_of_turn>`, `<|end|>`, `</s>`, … when present, whatever their type; such tokens are made control tokens, as
llama.cpp makes them). Flags override them.
"""
import argparse
import struct
import sys
import zlib

from gguf import GGUFReader

KIND = {"byte": 0, "bpe_byte_level": 1, "bpe_sentencepiece": 2}
PRE = {"none": 0, "gpt2": 1, "smollm": 2, "qwen2": 3, "llama3": 4}
CHAT = {"none": 0, "chatml": 1, "chatml_qwen2": 2, "gemma": 3}
QWEN2_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
GGUF_PRE = {"smollm": "smollm", "qwen2": "qwen2", "llama-bpe": "llama3"}
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
NONE_ID = 0xFFFFFFFF
# The Rust importer's EOG_TEXTS (harness/src/import/gguf_llama.rs).
EOG_TEXTS = ("<|im_end|>", "<|endoftext|>", "<|end_of_text|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "</s>", "<end_of_turn>", "<EOT>")


def gpt2_unicode_to_byte():
    """Inverse of GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to U+0100.."""
    printable = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table = {chr(b): b for b in printable}
    n = 0
    for b in range(256):
        if b not in printable:
            table[chr(0x100 + n)] = b
            n += 1
    return table


def write_section(kind, tokens, merges, bos_id, eos_id, unk_id, pre_tokenizer, chat_template,
                  add_bos, add_space_prefix, eog_ids):
    """tokens: [(token_type, bytes, score)]; merges: [(left, right, result, rank)] in priority order."""
    max_token_len = max(len(b) for _, b, _ in tokens)
    if not 1 <= max_token_len <= 1024:
        raise ValueError(f"max_token_len {max_token_len} outside 1..=1024")
    opt = lambda v: NONE_ID if v is None else v
    flags = (1 if add_bos else 0) | (2 if add_space_prefix else 0)
    out = bytearray(struct.pack(
        "<12I", KIND[kind], len(tokens), len(merges), opt(bos_id), opt(eos_id), opt(unk_id),
        PRE[pre_tokenizer], CHAT[chat_template], flags, len(eog_ids), max_token_len, 0))
    out += struct.pack(f"<{len(eog_ids)}I", *eog_ids)
    for ty, b, score in tokens:
        out += struct.pack("<BHf", ty, len(b), score) + b
    for m in merges:
        out += struct.pack("<4I", *m)
    return bytes(out)


def read_gguf(path):
    f = GGUFReader(path).fields

    def get(key, default=None):
        if key not in f:
            return default
        field = f[key]
        if len(field.types) > 1:  # array
            if field.types[1].name == "STRING":
                return [bytes(field.parts[i]).decode("utf-8") for i in field.data]
            return [field.parts[i][0].item() for i in field.data]
        if field.types[0].name == "STRING":
            return bytes(field.parts[field.data[0]]).decode("utf-8")
        return field.parts[field.data[0]][0].item()

    return get


def section_from_gguf(path, eog_ids=None, pre_tokenizer=None, chat_template=None):
    get = read_gguf(path)
    model = get("tokenizer.ggml.model")
    texts = get("tokenizer.ggml.tokens")
    types = get("tokenizer.ggml.token_type", [NORMAL] * len(texts))
    scores = get("tokenizer.ggml.scores", [0.0] * len(texts))
    bos_id = get("tokenizer.ggml.bos_token_id")
    eos_id = get("tokenizer.ggml.eos_token_id")
    unk_id = get("tokenizer.ggml.unknown_token_id")
    template = get("tokenizer.chat_template")
    if template is None:
        template = "<start_of_turn>" if get("general.architecture") == "gemma3" else ""

    tokens = []
    if model == "gpt2":
        kind = "bpe_byte_level"
        to_byte = gpt2_unicode_to_byte()
        for text, ty, score in zip(texts, types, scores):
            if ty == NORMAL:
                b = bytes(to_byte[c] for c in text)
            else:
                b = text.encode("utf-8")
            tokens.append((ty, b, float(score)))
        ids = {t: i for i, t in reversed(list(enumerate(texts)))}  # lowest id wins
        merges = []
        for rank, m in enumerate(get("tokenizer.ggml.merges", [])):
            a, b = m.split(" ", 1)
            merges.append((ids[a], ids[b], ids[a + b], rank))
        add_space_prefix = False
        default_pre = GGUF_PRE.get(get("tokenizer.ggml.pre"), "gpt2")
    elif model == "llama":
        kind = "bpe_sentencepiece"
        for text, ty, score in zip(texts, types, scores):
            if ty == BYTE:
                b = bytes([int(text[3:5], 16)])  # "<0xAB>"
            elif ty == NORMAL:
                b = text.replace("\u2581", " ").encode("utf-8")
            else:
                b = text.encode("utf-8")
            tokens.append((ty, b, float(score)))
        merges = sentencepiece_merges(tokens)
        add_space_prefix = bool(get("tokenizer.ggml.add_space_prefix", True))
        default_pre = "none"
    else:
        raise ValueError(f"tokenizer.ggml.model {model!r} is not supported")

    turn_ends = {i for i, t in enumerate(texts) if t in EOG_TEXTS and types[i] != BYTE}
    tokens = [(CONTROL, b, sc) if i in turn_ends else (ty, b, sc) for i, (ty, b, sc) in enumerate(tokens)]
    if eog_ids is None:
        eog_ids = sorted(turn_ends | ({eos_id} if eos_id is not None else set()))
    return write_section(
        kind, tokens, merges, bos_id, eos_id, unk_id,
        pre_tokenizer or default_pre,
        chat_template or default_chat_template(template),
        bool(get("tokenizer.ggml.add_bos_token", model == "llama")), add_space_prefix, eog_ids)


def default_chat_template(template):
    if "<start_of_turn>" in template and "<|im_start|>" not in template:
        return "gemma"
    if "<|im_start|>" not in template:
        return "none"
    return "chatml_qwen2" if QWEN2_DEFAULT_SYSTEM in template else "chatml"


def sentencepiece_merges(tokens):
    mergeable = lambda ty: ty == NORMAL
    ids = {}
    for i, (ty, b, _) in enumerate(tokens):
        if mergeable(ty) and b:
            ids.setdefault(b, i)
    found = []
    for i, (ty, b, score) in enumerate(tokens):
        if not mergeable(ty) or ids.get(b) != i:
            continue
        for cut in range(1, len(b)):
            left, right = ids.get(b[:cut]), ids.get(b[cut:])
            if left is not None and right is not None:
                found.append((score, left, right, i))
    found.sort(key=lambda m: (-m[0], m[3], m[1]))
    merges, rank, prev = [], -1, None
    for score, left, right, result in found:
        if score != prev:
            rank, prev = rank + 1, score
        merges.append((left, right, result, rank))
    return merges


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("gguf")
    ap.add_argument("out")
    ap.add_argument("--eog", help="comma-separated end-of-generation ids")
    ap.add_argument("--pre", choices=sorted(PRE))
    ap.add_argument("--chat-template", choices=sorted(CHAT))
    args = ap.parse_args()
    eog = [int(x) for x in args.eog.split(",")] if args.eog else None
    section = section_from_gguf(args.gguf, eog, args.pre, args.chat_template)
    with open(args.out, "wb") as f:
        f.write(section)
    n_tokens, n_merges = struct.unpack_from("<II", section, 4)
    print(f"{args.out}: {len(section)} bytes, {n_tokens} tokens, {n_merges} merges, "
          f"crc32 {zlib.crc32(section):08x}", file=sys.stderr)


if __name__ == "__main__":
    main()
