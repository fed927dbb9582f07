"""The recommender's costs: what the cold path traces, and that tracing in parallel changes no answer."""

from __future__ import annotations

from peftbench.recommend.feasibility import CostModel, resolve_gpu, search_in_parallel

# Mixed precision is never shipped as a fit, so every estimate here is traced.
MODEL, METHODS = "qwen2.5-0.5b", ("lora", "ia3", "prompt_tuning")


def _costs() -> CostModel:
    return CostModel(resolve_gpu("16GB", None), "generation", 256, mixed_precision="bf16")


def test_parallel_cold_search_gives_the_serial_answers(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFTBENCH_CACHE", str(tmp_path / "serial"))
    serial = _costs()
    for method in METHODS:
        serial.search(MODEL, method, {}, 8)
    monkeypatch.setenv("PEFTBENCH_CACHE", str(tmp_path / "parallel"))
    parallel = _costs()
    assert not any(parallel.is_cached(MODEL, m, {}, 8) for m in METHODS)
    search_in_parallel(parallel, MODEL, [(m, {}) for m in METHODS], 8, progress=False)
    assert parallel.new == serial.new and len(serial.new) >= len(METHODS)


def test_shipped_fits_answer_the_recommenders_8b_settings_without_tracing():
    """The settings `recommend` suggests for an 8B (LoRA family at the rank for the data size, on all linear
    layers; the rest at their defaults), with and without checkpointing, are covered by shipped fits."""
    from peftbench.recommend.fitting import method_catalogue
    from peftbench.recommend.hparams import suggest

    costs = CostModel(resolve_gpu("24GB", None), "generation", 512)
    catalogue = method_catalogue()
    for examples in (200, 5_000, 50_000):
        for name, meta in catalogue.items():
            if "decoder" not in meta["architectures"]:
                continue
            hps, _ = suggest(name, meta["defaults"], 8e9, examples, "decoder", [])
            assert costs.is_cached("llama-3.1-8b", name, hps, 16), (name, examples)


def test_a_cpu_question_is_costed_and_run_in_fp32():
    """On a CPU, `peftbench run` trains in fp32, and a CPU without native bf16 emulates it: costing the CPU's
    steps in bf16 gave a 22M-parameter model 31 minutes a step. The cost model and the printed run line say fp32;
    a GPU question keeps bf16."""
    from peftbench.recommend.render import RunTarget, override_line

    assert CostModel(resolve_gpu(None, "cpu"), "classification", 128).dtype == "fp32"
    assert CostModel(resolve_gpu("24GB", None), "classification", 128).dtype == "bf16"
    from peftbench.recommend.feasibility import Cost

    cost = Cost("lora", True, 1, 1.0, 1, 1, 16, 1, False)
    line = override_line("lora", {"learning_rate": 1e-4}, cost, 60, None, RunTarget("minilm", "cpu", True))
    assert "train.dtype=fp32" in line and "device=cuda" not in line
    gpu_line = override_line("lora", {"learning_rate": 1e-4}, cost, 60, None, RunTarget("m", "cuda", True))
    assert "train.dtype=bf16" in gpu_line
