"""The payments demo bundle that ``make run`` activates and the tests use.

Three action types, ``wire_transfer``, ``refund`` and ``send_email``; the Cedar policies,
the Cedar schema and the config live next to this module as ``payments.cedar``,
``payments.cedarschema`` and ``warrantor.yaml`` so they read like a tenant's own files.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

_FILES = resources.files("warrantor.demo")


def _read(name: str) -> str:
    return _FILES.joinpath(name).read_text(encoding="utf-8")


def demo_bundle() -> dict[str, Any]:
    """The raw bundle ``{"cedar", "schema", "config"}``; config is the parsed YAML, as JSON."""
    from warrantor.policy.config import load_yaml_config

    return {
        "cedar": _read("payments.cedar"),
        "schema": _read("payments.cedarschema"),
        "config": load_yaml_config(_read("warrantor.yaml")),
    }


def demo_bundle_yaml() -> dict[str, Any]:
    """The same bundle with its config as the YAML text of ``warrantor.yaml``."""
    return {
        "cedar": _read("payments.cedar"),
        "schema": _read("payments.cedarschema"),
        "config": _read("warrantor.yaml"),
    }
