"""Custom detectors have a bounded cost per action (bench/detectors.py measures it)."""

from __future__ import annotations

import random

import pytest

from warrantor.demo import demo_bundle
from warrantor.policy.bundle import BundleInvalidError
from warrantor.policy.detectors import (
    CUSTOM_BUDGET,
    MAX_CUSTOM_DETECTORS,
    MAX_CUSTOM_PROGRAM_SIZE,
    MAX_FINDINGS,
    MAX_PATTERN_LENGTH,
    MAX_PROGRAM_SIZE,
    MAX_SCAN_BYTES,
    DetectorConfigError,
    DetectorSet,
    strongest,
)
from warrantor.service.authorization.policies import compile_upload

AWS_KEY = "AKIAIOSFODNN7EXAMPLE"


def _blowup(count: int, gap: int) -> list[tuple[str, str, str]]:
    """Patterns like ``a.{14}b`` that blow up RE2's DFA (it then simulates its program)."""
    return [(f"d{i}", f"{'ab'[i % 2]}.{{{gap}}}{'ba'[i % 2]}", "report") for i in range(count)]


def test_the_limits_are_the_documented_ones() -> None:
    assert (MAX_CUSTOM_DETECTORS, MAX_PATTERN_LENGTH, MAX_PROGRAM_SIZE, MAX_CUSTOM_PROGRAM_SIZE) == (
        32, 512, 1_000, 4_000)


@pytest.mark.parametrize(("items", "needle"), [
    ([("big", "a.{200}b", "deny")], "compiles too large"),  # ~1,600 RE2 instructions
    (_blowup(5, 110), "together"),  # five of ~890 instructions each
    ([(f"d{i}", f"x{i}", "report") for i in range(MAX_CUSTOM_DETECTORS + 1)], "at most 32"),
    ([("long", "x" * (MAX_PATTERN_LENGTH + 1), "deny")], "max 512"),
])
def test_expensive_configurations_are_refused(items: list[tuple[str, str, str]], needle: str) -> None:
    with pytest.raises(DetectorConfigError) as info:
        DetectorSet.from_config({}, items)
    assert needle in str(info.value)


def test_an_expensive_configuration_is_a_422_bundle_problem() -> None:
    raw = demo_bundle()
    raw["config"] = {**raw["config"], "detectors": {"custom": [
        {"id": d, "pattern": p, "mode": m} for d, p, m in _blowup(5, 110)]}}
    with pytest.raises(BundleInvalidError) as info:
        compile_upload(raw)
    assert info.value.status == 422
    assert any("together" in p["message"] for p in info.value.details["problems"])


def test_custom_detectors_scan_a_bounded_prefix_and_fail_closed_beyond_it() -> None:
    detectors = DetectorSet.from_config({"secrets": "deny"}, _blowup(MAX_CUSTOM_DETECTORS, 14))
    budget = detectors.custom_scan_bytes
    assert 1024 < budget < 16 * 1024  # the largest configuration scans a few KiB
    rng = random.Random(1)
    text = "".join(rng.choice("ab") for _ in range(MAX_SCAN_BYTES - 64))
    findings = detectors.scan(None, {"blob": text})
    assert ("oversize", CUSTOM_BUDGET, "/payload/blob") in {(f.kind, f.signature, f.path) for f in findings}
    assert strongest(findings) == "deny"  # custom scanning stopped short: the action is denied
    with_key = detectors.scan(None, {"blob": text + " " + AWS_KEY})
    assert "aws_access_key_id" in {f.signature for f in with_key}  # the built-ins read the whole MiB


def test_within_the_budget_nothing_changes() -> None:
    detectors = DetectorSet.from_config({}, [("codename", r"(?i)project\s+falcon", "deny")])
    assert detectors.custom_scan_bytes > 64 * 1024
    findings = detectors.scan("ship Project  Falcon", {"note": "x" * 1000})
    assert [(f.detector_id, f.path) for f in findings] == [("codename", "/details")]


def test_many_matches_stop_early_without_hiding_a_stronger_mode() -> None:
    detectors = DetectorSet.from_config({}, [("a", "a", "report"), ("bad", "BAD", "deny")])
    findings = detectors.scan("a" * 200_000 + " BAD")
    assert strongest(findings) == "deny"
    assert len(findings) <= MAX_FINDINGS + 1
