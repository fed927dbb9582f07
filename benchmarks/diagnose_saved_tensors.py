"""What autograd saves in one forward, per module: a real device vs the estimator's fake-tensor trace.

Where a prediction and a GPU measurement disagree, the difference is usually a tensor one side keeps and
the other does not (a CPU kernel that saves what the CUDA kernel recomputes). This lists every saved
storage once, under the innermost module that was running, with its shape, dtype and bytes:

    python benchmarks/diagnose_saved_tensors.py llama-3.2-1b lora --layers 2 --device cuda --out cuda.json
    python benchmarks/diagnose_saved_tensors.py llama-3.2-1b lora --layers 2 --device fake --out fake.json
    python benchmarks/diagnose_saved_tensors.py --diff cuda.json fake.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections import Counter
from pathlib import Path
from typing import Any


def saved_tensors(model_name: str, method_name: str, layers: int, batch_size: int, seq_len: int,
                  device: str, task_kind: str = "generation") -> list[dict[str, Any]]:
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    from peftbench.estimate.build import build_wrapped, materialise_fake, with_depth
    from peftbench.estimate.trace import Shape, make_inputs
    from peftbench.methods import get_method
    from peftbench.models.configs import load_any_config

    method = get_method(method_name)
    config = with_depth(load_any_config(model_name), layers)
    model = build_wrapped(config, method, method.hyperparameters(), task_kind, "bf16",
                          device="meta" if device == "fake" else device)
    fake = FakeTensorMode(allow_non_fake_inputs=True) if device == "fake" else None
    if fake is not None:
        materialise_fake(model, fake)
    model.train()
    stack: list[str] = []
    names = {m: n for n, m in model.named_modules()}
    for module in names:
        module.register_forward_pre_hook(lambda m, a: stack.append(names[m]))
        module.register_forward_hook(lambda m, a, o: stack.pop() and None)  # None: keep the output
    keep: list[Any] = [p.untyped_storage() for p in model.parameters()]  # alive: ids stay unique
    seen: set[int] = {id(s) for s in keep}  # weights are not activations
    rows: list[dict[str, Any]] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if id(storage) not in seen:
            seen.add(id(storage))
            keep.append(storage)
            rows.append({"module": stack[-1] if stack else "", "shape": list(t.shape),
                         "dtype": str(t.dtype).replace("torch.", ""), "bytes": storage.nbytes()})
        return t

    with fake if fake is not None else contextlib.nullcontext():
        inputs = make_inputs(None, config, task_kind, Shape(batch_size, seq_len))
        inputs = {k: v.to("cpu" if fake is not None else device) for k, v in inputs.items()}
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(**inputs)
    return rows


def _generic(module: str) -> str:
    """Layer-independent module name: model.layers.0.self_attn.q_proj -> layers.*.self_attn.q_proj."""
    parts = module.split(".")
    return ".".join("*" if p.isdigit() else p for p in parts[-4:])


def diff(a_path: Path, b_path: Path) -> None:
    a, b = (json.loads(p.read_text()) for p in (a_path, b_path))
    count = Counter()
    for sign, rows in ((1, a), (-1, b)):
        for r in rows:
            count[(_generic(r["module"]), r["dtype"], tuple(r["shape"]))] += sign * r["bytes"]
    print(f"{a_path.name} total {sum(r['bytes'] for r in a) / 2**20:.1f} MiB, "
          f"{b_path.name} total {sum(r['bytes'] for r in b) / 2**20:.1f} MiB; differences:")
    for (module, dtype, shape), delta in sorted(count.items(), key=lambda kv: -abs(kv[1])):
        if delta:
            print(f"  {delta / 2**20:+9.2f} MiB  {module}  {dtype}{list(shape)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?")
    parser.add_argument("method", nargs="?")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--device", default="fake")
    parser.add_argument("--task-kind", default="generation")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--diff", nargs=2, type=Path)
    args = parser.parse_args()
    if args.diff:
        diff(*args.diff)
        return
    rows = saved_tensors(args.model, args.method, args.layers, args.batch_size, args.seq_len, args.device,
                         args.task_kind)
    text = json.dumps(rows)
    if args.out:
        args.out.write_text(text)
    print(f"{len(rows)} saved storages, {sum(r['bytes'] for r in rows) / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
