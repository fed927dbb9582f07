"""Houlsby-style bottleneck adapters: down-project, non-linearity, up-project, residual.

Written in peftbench rather than taken from a library. peft has no bottleneck adapter, and AdapterHub's
`adapters` package pins an older transformers (it patches model classes of a specific release), which
would hold back every other method here. The module is small: it wraps the output projection of each
attention block and each feed-forward block, which is exactly where Houlsby et al. (2019) insert them
(after the sub-layer's projection, before the residual add and layer norm).

Saved like a peft adapter (`adapter_config.json` + `adapter_model.safetensors`); `load_bottleneck`
restores it onto a fresh base model.
"""

from peftbench.methods.bottleneck.layer import BottleneckAdapter, add_bottleneck_adapters, load_bottleneck

__all__ = ["BottleneckAdapter", "add_bottleneck_adapters", "load_bottleneck"]
