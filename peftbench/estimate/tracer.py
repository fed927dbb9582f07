"""Memory, FLOP and byte accounting of a fake-tensor training step.

`Tracker` is a dispatch mode that sits above `FakeTensorMode`: every op's outputs are fake tensors whose
storages it follows with weak references, so it knows the live bytes after every op (rounded like the
CUDA caching allocator, whose blocks are multiples of 512 bytes) and keeps the set of live storages at
each phase's peak. Storages are classified only at the end, because a tensor's role is known late: a
tensor becomes an activation when autograd saves it, a gradient when it lands in `.grad`.

Written here rather than using `torch.distributed._tools.mem_tracker.MemTracker`: that tool crashed on
frozen base weights and its per-module bookkeeping made an 8B trace take minutes (seen while
building this tracer).
"""

from __future__ import annotations

import itertools
import weakref
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry, sdpa_backward_flop_count, sdpa_flop_count

from peftbench.estimate.tracer_math import CATEGORIES

LOW_INTENSITY = 16  # FLOPs per byte below which a matmul is timed as memory-bound
ALIGN = 512  # CUDA caching allocator block granularity

_MATMUL_OPS = {"mm", "addmm", "bmm", "baddbmm", "convolution", "_scaled_dot_product_flash_attention_for_cpu",
               "_scaled_dot_product_flash_attention_for_cpu_backward", "_scaled_mm", "convolution_backward",
               "_scaled_dot_product_efficient_attention", "_scaled_dot_product_efficient_attention_backward"}
# Ops that only re-label memory: no kernel launch, no traffic.
_FREE_OPS = {"view", "_unsafe_view", "t", "transpose", "permute", "expand", "unsqueeze", "squeeze", "slice",
             "select", "as_strided", "alias", "detach", "split", "split_with_sizes", "unbind", "reshape",
             "_reshape_alias", "empty", "empty_strided", "new_empty", "new_empty_strided", "lift_fresh",
             "chunk", "narrow", "diagonal", "view_as_real", "view_as_complex", "unflatten", "flatten", "sym_size"}


def _rounded(nbytes: int) -> int:
    return -(-nbytes // ALIGN) * ALIGN if nbytes else 0


@dataclass
class PhasePeak:
    bytes: int = 0
    live: dict[int, int] = field(default_factory=dict)  # uid -> rounded bytes at the peak


@dataclass
class OpCost:
    """Work of the traced ops, summarised for roofline timing: matmul-class FLOPs per dtype, bytes moved."""

    flops: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    matmul_bytes: float = 0.0
    other_bytes: float = 0.0
    kernels: int = 0


class Tracker(TorchDispatchMode):
    """Follows storage lifetimes and op costs; `phase` is set by the caller (forward/backward/optimizer)."""

    def __init__(self) -> None:
        super().__init__()
        self._uids = itertools.count()
        self._refs: dict[int, Any] = {}  # uid -> weakref to the storage
        self._by_storage: dict[int, int] = {}  # id(storage) -> uid, valid while the storage lives
        self.size: dict[int, int] = {}  # every uid ever seen
        self.live = 0
        self.phase = "setup"
        self.peaks: dict[str, PhasePeak] = {}
        self.cost = OpCost()
        self.category: dict[int, str] = {}
        self.scalar_reads = 0
        # Storages some op reads whole, and rows read by embedding lookups (per weight storage): on CPU a
        # frozen, memory-mapped embedding table is resident only where it is looked up.
        self.dense_use: set[int] = set()
        self.lookup_rows: dict[int, int] = defaultdict(int)
        self.lookup_table: dict[int, tuple[int, torch.dtype]] = {}  # uid -> (bytes per row, dtype)
        # Every allocation (+bytes) and free (-bytes) in order, and after each op (phase, log length):
        # replayed once categories are known, to find the peak event for other token counts.
        self._log: list[tuple[int, int]] = []
        self._marks: list[tuple[str, int]] = []

    # ---- storage bookkeeping -------------------------------------------------------------------------
    def uid_of(self, tensor: torch.Tensor) -> int:
        storage = tensor.untyped_storage()
        uid = self._by_storage.get(id(storage))
        ref = self._refs.get(uid) if uid is not None else None
        if uid is not None and ref is not None and ref() is storage:
            return uid
        uid = next(self._uids)
        nbytes = _rounded(storage.nbytes())
        self.size[uid] = nbytes
        self._by_storage[id(storage)] = uid

        def on_free(_ref: object, u: int = uid) -> None:
            self._free(u)

        self._refs[uid] = weakref.ref(storage, on_free)
        self.live += nbytes
        self._log.append((uid, nbytes))
        return uid

    def _free(self, uid: int) -> None:
        self.live -= self.size[uid]
        self._log.append((uid, -self.size[uid]))
        del self._refs[uid]

    def mark(self, tensors, category: str) -> None:
        for t in tensors:
            if isinstance(t, torch.Tensor):
                uid = self.uid_of(t)
                # first role wins: a weight that autograd also saves stays a weight
                self.category.setdefault(uid, category)

    def _note_peak(self) -> None:
        self._marks.append((self.phase, len(self._log)))
        peak = self.peaks.setdefault(self.phase, PhasePeak())
        if self.live > peak.bytes:
            peak.bytes = self.live
            peak.live = {u: self.size[u] for u in self._refs}

    def sparse_tables(self) -> dict[int, tuple[int, int, torch.dtype]]:
        """uid -> (rows looked up, bytes per row, dtype) for weights only embedding lookups ever read."""
        return {u: (n, *self.lookup_table[u]) for u, n in self.lookup_rows.items()
                if u not in self.dense_use and self.category.get(u) == "weights"}

    def breakdown(self, phase: str) -> dict[str, int]:
        out = dict.fromkeys(CATEGORIES, 0)
        for uid, nbytes in self.peaks[phase].live.items():
            out[self.category.get(uid, "temporaries")] += nbytes
        return out

    def events(self, phase: str):
        """Live bytes per category (columns in CATEGORIES order) after each op of `phase`, as an int64
        array: the same rows, op for op, for any shape of one model and method."""
        import numpy as np

        marks = [end for p, end in self._marks if p == phase]
        column = {c: i for i, c in enumerate(CATEGORIES)}
        uids, deltas = np.array(self._log or [(0, 0)], dtype=np.int64).T
        cats = np.array([column[self.category.get(u, "temporaries")] for u in uids.tolist()])
        per_cat = np.zeros((len(deltas), len(CATEGORIES)), dtype=np.int64)
        per_cat[np.arange(len(deltas)), cats] = deltas
        return np.vstack([np.zeros((1, len(CATEGORIES)), dtype=np.int64), np.cumsum(per_cat, axis=0)])[marks]


    # ---- dispatch ------------------------------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten._local_scalar_dense.default:
            # `tensor.item()` on a fake tensor has no value. LoHa/LoKr test `torch.rand(1) > module_dropout`
            # (0 by default, so True) and AdaLoRA reads a budget threshold: a stand-in value keeps the
            # trace going; it selects code paths, not tensor sizes.
            self.scalar_reads += 1
            return True if args[0].dtype == torch.bool else 1
        out = func(*args, **kwargs)
        name = func.__name__.split(".")[0]
        outputs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        for t in outputs:
            self.uid_of(t)
        self._note_peak()
        if name not in _FREE_OPS:
            self._count(func, name, args, kwargs, out, outputs)
        return out

    def _count(self, func, name: str, args, kwargs, out, outputs) -> None:
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        lookup = name == "embedding"
        for i, t in enumerate(inputs):
            storage = t.untyped_storage()
            uid = self._by_storage.get(id(storage))
            ref = self._refs.get(uid) if uid is not None else None
            if uid is None or ref is None or ref() is not storage:
                continue
            if lookup and i == 0:
                self.lookup_rows[uid] += inputs[1].numel()
                self.lookup_table[uid] = (t.shape[-1] * t.element_size(), t.dtype)
            else:
                self.dense_use.add(uid)
        moved = sum(t.numel() * t.element_size() for t in itertools.chain(inputs, outputs))
        self.cost.kernels += 1
        flops = _flops(func, name, args, kwargs, out) if name in _MATMUL_OPS else 0
        # Low-rank matmuls (LoRA's x·A) do a few FLOPs per byte: they run at memory speed, not MMA speed.
        if flops and flops >= LOW_INTENSITY * moved:
            self.cost.flops[str(inputs[0].dtype).replace("torch.", "")] += flops
            self.cost.matmul_bytes += moved
        else:
            self.cost.other_bytes += moved


def _flops(func, name: str, args, kwargs, out) -> int:
    """FLOPs of a matmul-class op. The CPU attention kernels have no formula in torch's flop counter
    (they would count as zero), so they reuse the CUDA flash-attention formulas: same maths."""
    if name == "_scaled_dot_product_flash_attention_for_cpu":
        return sdpa_flop_count(args[0].shape, args[1].shape, args[2].shape)
    if name == "_scaled_dot_product_flash_attention_for_cpu_backward":
        return sdpa_backward_flop_count(args[0].shape, args[1].shape, args[2].shape, args[3].shape)
    formula = flop_registry.get(func._overloadpacket)
    if formula is None:
        return 0
    return int(formula(*args, **kwargs, out_val=out))  # registered formulas take tensors, read shapes
