"""The published-evidence corpus: every shipped row obeys the schema, bad rows are refused with file and line,
the corpus is broad enough to stand as evidence, and `peftbench evidence` prints it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from peftbench.recommend.corpus import (
    COLUMNS,
    METHODS,
    PUBLISHED_TASK_KINDS,
    CorpusError,
    load_corpus,
    load_source,
    published_dir,
    relative_quality,
    summary,
)

FILES = sorted(published_dir().glob("*.csv"))


def test_corpus_folder_has_sources_and_cards():
    assert FILES, f"no corpus files in {published_dir()}"
    assert (published_dir() / "README.md").is_file()
    for path in FILES:
        assert path.with_suffix(".md").is_file(), f"{path.name} has no data card {path.stem}.md"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_row_validates(path: Path):
    rows = load_source(path)  # raises CorpusError on any schema violation
    with path.open(newline="", encoding="utf-8") as fh:
        assert tuple(next(csv.reader(fh))) == COLUMNS
    for row in rows:
        assert row.source_id == path.stem
        assert row.locator.strip() and row.citation.strip()
        assert row.method is None or row.method in METHODS
        assert row.task_kind in PUBLISHED_TASK_KINDS
        if row.method == "full":
            assert relative_quality(row) == pytest.approx(1.0)


def test_method_names_match_peftbench_registry():
    from peftbench.methods import registry

    assert set(registry()) == METHODS


def test_corpus_breadth_targets():
    """Breadth of the whole corpus; met once both helpers' sources are merged into results/published/."""
    stats = summary(load_corpus())
    assert stats["rows"] >= 300
    assert stats["sources"] >= 8
    assert len(stats["methods"]) >= 12
    assert stats["min_total_params"] <= 150e6
    assert stats["max_total_params"] >= 65e9
    assert set(stats["task_kinds"]) == set(PUBLISHED_TASK_KINDS)
    assert stats["rows_small_data"] > 0 and stats["rows_large_data"] > 0


def _good_row() -> dict[str, str]:
    return {"source_id": "tmp_source", "citation": "Someone 2024, A paper, arXiv:0000.00000", "locator": "Table 1",
            "model": "RoBERTa-base", "total_params": "125000000", "architecture": "encoder", "task": "SST-2",
            "task_kind": "classification", "domain": "general", "train_examples": "67349", "training_length": "",
            "method_published": "LoRA", "method": "lora", "hyperparameters": json.dumps({"r": 8}),
            "trainable_params": "300000", "metric": "accuracy", "score": "95.1", "std": "", "seeds": "",
            "full_ft_score": "94.8", "reference_method": "full", "note": ""}


def _write(tmp_path: Path, rows: list[dict[str, str]], name: str = "tmp_source") -> Path:
    path = tmp_path / f"{name}.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_good_temp_row_loads(tmp_path: Path):
    rows = load_corpus(_write(tmp_path, [_good_row()]).parent)
    assert len(rows) == 1
    row = rows[0]
    assert row.hyperparameters == {"r": 8} and row.std is None and row.total_params == 125000000
    assert relative_quality(row) == pytest.approx(95.1 / 94.8)


@pytest.mark.parametrize("field, value, expected", [
    ("task_kind", "regression", "field 'task_kind'"),
    ("architecture", "transformer", "field 'architecture'"),
    ("score", "n/a", "field 'score': must be a number"),
    ("total_params", "1.5e9", "field 'total_params'"),
    ("method", "compacter", "field 'method'"),
    ("source_id", "other_source", "does not match the file stem"),
    ("hyperparameters", "[8]", "must be a JSON object"),
    ("hyperparameters", "{r: 8}", "not valid JSON"),
    ("locator", "", "field 'locator': must not be empty"),
    ("citation", " ", "field 'citation': must not be empty"),
    ("reference_method", "", "field 'reference_method'"),
])
def test_bad_row_is_refused_naming_file_line_and_field(tmp_path: Path, field: str, value: str, expected: str):
    bad = _good_row() | {field: value}
    path = _write(tmp_path, [_good_row(), bad])  # the bad row is on line 3 (header, good row, bad row)
    with pytest.raises(CorpusError) as info:
        load_corpus(path.parent)
    message = str(info.value)
    assert message.startswith("tmp_source.csv:3:"), message
    assert expected in message


def test_full_row_must_reference_itself(tmp_path: Path):
    path = _write(tmp_path, [_good_row() | {"method": "full", "full_ft_score": "94.0"}])
    with pytest.raises(CorpusError, match=r"tmp_source.csv:2: field 'full_ft_score'"):
        load_corpus(path.parent)


def test_wrong_header_is_refused(tmp_path: Path):
    path = tmp_path / "tmp_source.csv"
    path.write_text("source_id,score\ntmp_source,1\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"tmp_source.csv:1: header"):
        load_corpus(tmp_path)


def test_cli_evidence_lists_sources_and_totals(cli):
    code, out, err = cli("evidence")
    assert code == 0, err
    assert "Totals:" in out and "Model sizes:" in out and "Training data:" in out
    for path in FILES:
        assert path.stem in out


def test_cli_evidence_one_source_and_json(cli):
    source = FILES[0].stem
    code, out, err = cli("evidence", "--source", source)
    assert code == 0, err
    assert source in out and "locator" in out
    code, out, _ = cli("evidence", "--json")
    assert code == 0
    assert json.loads(out)["totals"]["rows"] == len(load_corpus())
    code, _, err = cli("evidence", "--source", "no_such_source")
    assert code == 2 and "unknown source 'no_such_source'" in err
