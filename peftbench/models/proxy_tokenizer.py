"""A tokenizer to count tokens with when the user's model's own is not on this machine.

`recommend --data FILE` sizes memory and time by the file's token counts. When the model's tokenizer is not on
disk (a preset is a config, not a checkpoint), SmolLM2's is the proxy: a modern byte-level BPE with a 49k
vocabulary, like most decoders' (whitespace words undercount BPE tokens by about a third on English prose). It
is shipped as its `tokenizer.json`, read with the `tokenizers` library alone: extracting it from the packaged
GGUF checkpoint took ~10 s (transformers' import and the GGUF parse), and converting the whole checkpoint, as
loading the model does, ~30 s, to count the tokens of a CSV. Data card: `data/README.md`.

    python -m peftbench.models.proxy_tokenizer   # rebuild the shipped file from the packaged GGUF
"""

from __future__ import annotations

import gzip
from functools import cache
from pathlib import Path
from typing import Any

PROXY_NAME = "smollm2-135m"
SHIPPED = Path(__file__).parent / "data" / "smollm2-135m-tokenizer.json.gz"


@cache
def proxy_tokenizer() -> Any:
    """A callable like a transformers tokenizer's, for what token counting uses of it:
    `tok(texts, add_special_tokens=False)["input_ids"]`."""
    from tokenizers import Tokenizer

    with gzip.open(SHIPPED, "rt", encoding="utf-8") as f:
        tokenizer = Tokenizer.from_str(f.read())

    def encode(texts: list[str], add_special_tokens: bool = True) -> dict[str, list[list[int]]]:
        return {"input_ids": [e.ids for e in tokenizer.encode_batch(list(texts),
                                                                     add_special_tokens=add_special_tokens)]}

    return encode


def rebuild() -> None:
    """Extract the tokenizer from the packaged GGUF exactly as `models.gguf.convert_gguf` does, and ship its
    tokenizer.json (gzip with mtime 0: the same tokenizer gives the same bytes)."""
    import tempfile

    from transformers import AutoTokenizer

    from peftbench.models.catalogue import smollm2_gguf

    gguf_file = smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        text = (Path(tmp) / "tokenizer.json").read_bytes()
    with open(SHIPPED, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(text)


if __name__ == "__main__":
    rebuild()
