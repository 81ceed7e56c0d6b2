"""Regenerates expected.json: EmbeddingGemma-300m vectors computed by the
numpy reference (reference.py, which reproduces the model card's example
similarities) for multilingual buyer messages under each task prompt.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install numpy tokenizers
    /tmp/venv/bin/python tests/data/embeddinggemma/make_expected.py \
        ~/.cache/kedai/models/embeddinggemma-300m

The directory is the bundle artifact (flat names) or Google's repository
layout (2_Dense/, 3_Dense/)."""
import json, os, shutil, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference import EmbeddingGemma

TEXTS = [
    "Chị ơi, áo thun oversize màu đen còn size L không ạ?",
    "สวัสดีค่ะ สั่งของไปเมื่อ 10 วันก่อน ยังไม่ได้ของเลยค่ะ",
    "does the red oversized tee come in XL? and how long to Manila?",
    "Kak, paketnya kok belum sampai ya? udah seminggu nih",
    "pede ba i-cancel yung order ko? mali yung size na napili ko",
    "Olá, vocês aceitam Pix? Quanto tempo demora a entrega para Recife?",
    "这个耳机有保修吗？坏了可以换吗",
    "ship ke Johor berapa hari boss? nak cepat sikit",
    "Which planet is known as the Red Planet?",
    "ok",
]
PROMPTS = {
    "classification": "task: classification | query: ",
    "query": "task: search result | query: ",
    "document": "title: none | text: ",
}


def repo_layout(d):
    """Google's layout, linked from the bundle's flat names when needed."""
    if os.path.isdir(os.path.join(d, "2_Dense")):
        return d
    tmp = tempfile.mkdtemp()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        os.symlink(os.path.join(d, name), os.path.join(tmp, name))
    for n in (2, 3):
        os.makedirs(os.path.join(tmp, f"{n}_Dense"))
        os.symlink(os.path.join(d, f"{n}_Dense.safetensors"),
                   os.path.join(tmp, f"{n}_Dense", "model.safetensors"))
    return tmp


def main():
    model = EmbeddingGemma(repo_layout(os.path.expanduser(sys.argv[1])))
    out = {"texts": TEXTS, "prompts": PROMPTS, "vectors": {}}
    for task, prompt in PROMPTS.items():
        vectors = model.encode(TEXTS, prompt=prompt, max_len=2048)
        out["vectors"][task] = [[round(float(v), 7) for v in row] for row in vectors]
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "expected.json"), "w") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
