"""Writes tokenizer_reference.json: the token ids an independent tokenizer
gives for a fixed set of strings, for each GGUF chat model kedai ships.
`tests/it/tokenizer.rs` checks kedai's GGUF tokenizer against these ids.

The reference is Hugging Face transformers' own GGUF-to-tokenizer converter,
the code behind `AutoTokenizer.from_pretrained(dir, gguf_file=name)`. That
entry point reads the file through a module that imports torch, so the script
reads the metadata with the `gguf` package instead, groups it exactly as
transformers' `GGUF_TOKENIZER_MAPPING` says, and calls
`convert_gguf_tokenizer`, the function `from_pretrained` ends in.

One deliberate change: transformers has no split rule for the `smollm`
pre-tokenizer and falls back to plain GPT-2 splitting, whereas llama.cpp (and
SmolLM2's own tokenizer.json) first cut every digit apart. For SmolLM2 the
script therefore sets SmolLM2's upstream pre-tokenizer (Digits with
individual digits, then byte-level with the GPT-2 regex) and prints which
strings the unmodified converter would tokenize differently.

To regenerate (from the repository root, with the models in kedai's cache,
e.g. after `kedai models pull`):

    python3 -m venv /tmp/tokref
    /tmp/tokref/bin/pip install transformers==5.23.0 tokenizers==0.23.3 gguf==0.19.0 numpy
    /tmp/tokref/bin/python tests/data/make_tokenizer_reference.py \
        ~/.cache/kedai/models > tests/data/tokenizer_reference.json
"""

import json
import sys
from pathlib import Path

from gguf import GGUFReader
from tokenizers import pre_tokenizers
from transformers.integrations.gguf.gguf_tokenizer_mapping import (
    GGUF_TOKENIZER_MAPPING,
    convert_gguf_tokenizer,
)

MODELS = {
    "qwen2.5-coder-0.5b-instruct": "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    "smollm2-135m-instruct": "SmolLM2-135M-Instruct.Q4_1.gguf",
}

CASES = [
    "Hello, world!",
    "Apakah barang ini masih tersedia? Saya mau pesan 3 buah, dikirim ke Surabaya ya kak.",
    "สวัสดีครับ สินค้านี้ยังมีอยู่ไหมครับ ส่งฟรีไหม",
    "Xin chào, tôi muốn đổi màu áo sang màu đỏ được không ạ?",
    "Xin cha\u0300o, đơn ha\u0300ng cu\u0309a tôi đâu rô\u0300i?",
    "你好，这个商品什么时候发货？我已经付款了。",
    "Olá! Quero devolver o produto, veio com defeito. Não funciona mais.",
    "Terima kasih 🙏😊 pesanan sudah sampai 👍🏽 mantap! 🇮🇩 👨‍👩‍👧‍👦",
    "fn main() {\n    let x: Vec<u32> = (0..10).map(|i| i * 2).collect();\n    println!(\"{x:?}\");\n}\n",
    "def f(a, b):\n\treturn a  +  b  # sum\n\n\n",
    "   leading and trailing spaces   ",
    "tabs\tand\r\nwindows\r\nlines\n\n\n  \n",
    "Order #2024-11-21 total Rp 1.250.000,00 (12345678901234567890) x3.14159",
    "I'm sure you've seen it; they'll say we'd DON'T and it's OK'S",
    "<|im_start|>system\nYou are a helpful shop assistant.<|im_end|>\n<|im_start|>user\nDo you ship to Bali?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nhalo<|im_end|><|endoftext|>",
    "mixed: ABC123def ００１ ①②③ ٣٤٥ Ⅻ",
    "",
    " ",
    "\n",
    "a" * 40,
    "Ünïcödé ñ ß ø å € £ ¥ — “quoted” ‘single’ …",
]


def smollm_pre_tokenizer():
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ]
    )


def load_reference(path):
    reader = GGUFReader(path)
    metadata = {name: field.contents() for name, field in reader.fields.items()}
    tokenizer_dict = {
        renamed: metadata[f"tokenizer.{key}"]
        for key, renamed in GGUF_TOKENIZER_MAPPING["tokenizer"].items()
        if f"tokenizer.{key}" in metadata
    }
    tokenizer, _ = convert_gguf_tokenizer(metadata["general.architecture"], tokenizer_dict)
    return tokenizer


def encode_all(tokenizer):
    return [tokenizer.encode(text, add_special_tokens=False).ids for text in CASES]


def main():
    cache = Path(sys.argv[1]).expanduser()
    out = {"cases": CASES, "models": {}}
    for artifact, file_name in MODELS.items():
        tokenizer = load_reference(cache / artifact / file_name)
        ids = encode_all(tokenizer)
        if artifact.startswith("smollm2"):
            tokenizer.pre_tokenizer = smollm_pre_tokenizer()
            patched = encode_all(tokenizer)
            for text, before, after in zip(CASES, ids, patched):
                if before != after:
                    print(f"{artifact}: digit splitting changes {text!r}", file=sys.stderr)
            ids = patched
        out["models"][artifact] = {"file": file_name, "ids": ids}
    json.dump(out, sys.stdout, ensure_ascii=False, indent=None)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
