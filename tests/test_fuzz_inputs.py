"""Fuzz tests of every input a user types: random `run` overrides, `estimate` and `recommend` flags, and suite
YAML documents. Each case must be refused with exactly one line, exit code 2 and nothing written, or be
accepted as valid — never a traceback, never a value that fails later inside a run.

Bounded for CI: few examples, derandomized (the same cases on every run), no deadline (the first case pays
for imports). benchmarks/fuzz_counts.py runs the same strategies with many more examples and reports the
counts in benchmarks/fuzz_counts.md.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from fuzz_cases import (
    CACHE_OPS,
    CACHE_STATES,
    SURE_BAD,
    assert_refused,
    check_cache_state,
    check_damaged_records,
    check_data_file,
    check_estimate_override,
    check_override_value,
    check_plan,
    check_ray_address,
    check_suite,
    damaged_records,
    data_files,
    estimate_argv,
    hostile_suites,
    hostile_yaml,
    ray_addresses,
    recommend_argv,
    refused_at_once,
    run_overrides,
    serving_argv,
    suite_documents,
)
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

FUZZ = settings(derandomize=True, deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@settings(FUZZ, max_examples=40)
@given(run_overrides())
def test_random_run_overrides_build_a_valid_plan_or_are_refused(tokens):
    check_plan(tokens)


@settings(FUZZ, max_examples=6)
@given(run_overrides(), st.sampled_from(SURE_BAD))
def test_random_run_command_lines_exit_2_with_one_line(tokens, bad):
    # One sure-to-be-refused value, anywhere: the whole command line must stop before anything runs.
    assert assert_refused(["run", *tokens, bad]) == "refused"


@settings(FUZZ, max_examples=25)
@given(estimate_argv())
def test_random_estimate_flags(case):
    argv, sure_bad = case
    assert_refused(argv, expect_refusal=sure_bad)


@settings(FUZZ, max_examples=15)
@given(recommend_argv())
def test_random_recommend_flags(argv):
    assert assert_refused(argv) == "refused"


@settings(FUZZ, max_examples=60)
@given(suite_documents())
def test_random_suite_documents(text):
    check_suite(text)


@settings(FUZZ, max_examples=5)
@given(suite_documents())
def test_random_suite_documents_end_to_end(text):
    assume(check_suite(text) == "refused")  # an accepted one would start training
    with tempfile.TemporaryDirectory(prefix="peftbench-fuzz-") as folder:
        path = Path(folder) / "suite.yaml"
        path.write_text(text, encoding="utf-8")
        assert assert_refused(["run", f"suite={path}"]) == "refused"
        assert [p.name for p in Path(folder).iterdir()] == ["suite.yaml"]


@settings(FUZZ, max_examples=60)
@given(hostile_yaml())
def test_hostile_yaml_override_values(text):
    check_override_value(text)


@settings(FUZZ, max_examples=40)
@given(hostile_suites())
def test_hostile_yaml_suite_files(text):
    check_suite(text)


@settings(FUZZ, max_examples=10)
@given(serving_argv())
def test_recommend_and_report_values_refused_before_tracing(argv):
    assert refused_at_once(argv) == "refused"


@settings(FUZZ, max_examples=40)
@given(hostile_yaml())
def test_estimate_override_values_read_as_run_reads_them(text):
    check_estimate_override(text)


@settings(FUZZ, max_examples=10)
@given(ray_addresses())
def test_ray_addresses_refused_within_seconds(address):
    check_ray_address(address)


@settings(FUZZ, max_examples=12)
@given(damaged_records())
def test_damaged_run_records(records):
    check_damaged_records(records)


QUICK_CACHE_OPS = [op for op in CACHE_OPS if op != "estimate end to end"]  # a trace costs seconds; tested apart


@settings(FUZZ, max_examples=8)
@given(st.tuples(st.sampled_from(CACHE_STATES), st.sampled_from(QUICK_CACHE_OPS)))
def test_unusable_caches(case):
    check_cache_state(case)


@settings(FUZZ, max_examples=8)
@given(data_files())
def test_recommend_data_files(case):
    check_data_file(case)
