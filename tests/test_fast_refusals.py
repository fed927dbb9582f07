"""A mistyped name (method, model, hardware, task kind) is refused before torch or transformers is imported —
the seconds those imports take are what made a typo slow — in one line, with exit code 2 and the closest valid
names. A preset's hub id is the preset; `peftbench models` lists the presets with their sizes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO

# Runs the CLI in a fresh interpreter (nothing imported yet) and reports which heavy libraries it imported.
_PROBE = """
import json, sys
from peftbench.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = sorted(name for name in ("torch", "transformers", "peft", "pandas") if name in sys.modules)
print(json.dumps({"code": code, "heavy": heavy}))
"""


def _fresh_cli(*argv: str) -> tuple[int, list[str], str, str]:
    """(exit code, heavy modules imported, stdout before the probe's report, stderr) of `peftbench ARGV`."""
    proc = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    *out, report = proc.stdout.strip().splitlines()
    result = json.loads(report)
    return result["code"], result["heavy"], "\n".join(out), proc.stderr


@pytest.mark.parametrize("argv, suggestion", [
    (["estimate", "--model", "llama-3.1-8b", "--method", "lorra"], "did you mean 'lora'"),
    (["estimate", "--model", "llama3", "--method", "lora"], "did you mean 'llama-3.2-3b'"),
    (["estimate", "--model", "llama-3.1-8b", "--method", "lora", "--hardware", "h1000"], "did you mean 'h100'"),
    (["estimate", "--model", "llama-3.1-8b", "--method", "lora", "--gpu", "25GB"], "did you mean 24GB?"),
    (["estimate", "--model", "llama-3.1-8b", "--method", "lora", "--task-kind", "clasification"],
     "did you mean 'classification'?"),
    (["estimate", "--model", "llama-3.1-8b", "--method", "lora", "--inference", "--hardware", "a100-8gb"],
     "did you mean 'a100-80gb'"),
    (["recommend", "--task", "classification", "--hardware", "h1000"], "did you mean 'h100'"),
    (["recommend", "--task", "summarization", "--gpu", "24GB", "--model", "llama3"], "did you mean 'llama-3.2-3b'"),
    (["recommend", "--task", "summarisation"], "did you mean 'summarization'?"),
])
def test_a_mistyped_name_is_refused_before_any_heavy_import(argv, suggestion):
    code, heavy, _, err = _fresh_cli(*argv)
    assert code == 2 and suggestion in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not {"torch", "transformers", "peft"} & set(heavy), heavy


def test_a_name_that_cannot_be_a_hub_id_is_refused_without_the_hub(cli):
    # No "/": not `org/name`, so the hub is never asked (offline it would fail only after its time-outs).
    code, _, err = cli("estimate", "--model", "bert-base-uncased", "--method", "lora")
    assert code == 2 and "did you mean 'bert-base'" in err and "org/name" in err


def test_a_presets_hub_id_is_the_preset():
    from peftbench.models.configs import canonical_model, load_any_config, preset_for

    for spelling in ("meta-llama/Llama-3.1-8B", "META-LLAMA/llama-3.1-8b", "Llama-3.1-8B", "llama-3.1-8b"):
        assert canonical_model(spelling) == "llama-3.1-8b"
        assert preset_for(spelling) == preset_for("llama-3.1-8b")
    assert load_any_config("meta-llama/Llama-3.1-8B").to_dict() == load_any_config("llama-3.1-8b").to_dict()
    assert canonical_model("org/not-a-preset") == "org/not-a-preset"


def test_estimate_answers_a_presets_hub_id_as_the_preset(cli):
    answers = []
    for model in ("meta-llama/Llama-3.2-1B", "llama-3.2-1b"):
        code, out, err = cli("estimate", "--model", model, "--method", "lora", "--json")
        assert code == 0, err
        answers.append(json.loads(out))
    assert answers[0] == answers[1] and answers[0]["model"] == "llama-3.2-1b"


def test_models_lists_presets_with_their_sizes_without_heavy_imports():
    code, heavy, out, _ = _fresh_cli("models")
    assert code == 0 and heavy == []
    lines = out.splitlines()
    assert any(line.split()[:1] == ["minilm"] and "22.7M" in line for line in lines)
    llama = next(line for line in lines if line.startswith("llama-3.1-8b "))
    assert "8.0B" in llama and "meta-llama/Llama-3.1-8B" in llama and "decoder" in llama


@pytest.mark.parametrize("preset", ["llama-3.1-8b", "gemma-2-2b", "phi-3-mini", "t5-base", "bart-base", "bert-base",
                                    "gpt2", "bloomz-7b1"])
def test_preset_sizes_match_the_model_built_on_the_meta_device(preset):
    import torch
    import transformers

    from peftbench.models.configs import PRESETS_DIR, approx_parameters

    config = transformers.AutoConfig.from_pretrained(str(PRESETS_DIR / preset))
    auto = (transformers.AutoModelForSeq2SeqLM if config.is_encoder_decoder else transformers.AutoModel
            if preset == "bert-base" else transformers.AutoModelForCausalLM)
    with torch.device("meta"):
        exact = sum(p.numel() for p in auto.from_config(config).parameters())
    approx = approx_parameters(json.loads((PRESETS_DIR / preset / "config.json").read_text()))
    assert abs(approx / exact - 1) < 0.01, (approx, exact)


def test_the_torch_free_method_declarations_are_the_registrys():
    # A name missing from the torch-free list would be refused although the registry runs it; the registry
    # builds each method from its declaration, so families, defaults and revisions agree too.
    from peftbench.method_declarations import DECLARATIONS, METHOD_NAMES
    from peftbench.methods import registry

    assert list(METHOD_NAMES) == sorted(registry())
    for name, method in registry().items():
        declared = DECLARATIONS[name]
        assert (method.family, dict(method.defaults), method.peft_config, method.version, method.applicability) == (
            declared.family, dict(declared.defaults), declared.peft_config, declared.version, declared.applicability)


def test_method_declarations_import_no_torch():
    code = ("import sys, peftbench.method_declarations, peftbench.validation, peftbench.recommend.corpus; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
