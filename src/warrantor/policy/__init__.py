"""Policy: Cedar bundles, the normalized Cedar request, and fail-closed evaluation.

docs/guardrails.md. The modules, from the outside in:

- :mod:`~warrantor.policy.bundle`: ``parse_bundle`` turns untrusted ``{cedar, schema,
  config}`` into a checked :class:`PolicyBundle` or raises :class:`BundleInvalidError`
  (``POLICY_INVALID``, 422) listing every problem with line and column where known;
- :mod:`~warrantor.policy.config`: the bundle's ``config`` (``warrantor.yaml``);
- :mod:`~warrantor.policy.normalize`: ``build_input``, the Cedar request for an action,
  with facts Cedar cannot compute (endpoint host) computed in Python;
- :mod:`~warrantor.policy.engine`: ``PolicyEngine.evaluate`` -> :class:`PolicyDecision`
  (deny > require_approval > confirm > allow, every matching rule, any error is a deny)
  and ``evaluation_hash``.

This package imports only ``warrantor.errors``, ``warrantor.domain`` and
``warrantor.evidence`` from Warrantor: no server, store or service code.
"""

from warrantor.policy.bundle import (
    BundleInvalidError,
    PolicyBundle,
    PolicyInfo,
    bundle_hash,
    parse_bundle,
)
from warrantor.policy.config import (
    AgentsConfig,
    ApprovalsConfig,
    Budget,
    BundleConfig,
    ConfigError,
    CustomDetector,
    DetectorsConfig,
    EndpointsConfig,
    RateLimit,
    RateLimitsConfig,
)
from warrantor.policy.engine import (
    NO_MATCHING_PERMIT,
    POLICY_ERROR,
    PolicyDecision,
    PolicyEngine,
    RuleMatch,
    evaluation_hash,
)
from warrantor.policy.normalize import PolicyInput, build_input, endpoint_host

__all__ = [
    "NO_MATCHING_PERMIT",
    "POLICY_ERROR",
    "AgentsConfig",
    "ApprovalsConfig",
    "Budget",
    "BundleConfig",
    "BundleInvalidError",
    "ConfigError",
    "CustomDetector",
    "DetectorsConfig",
    "EndpointsConfig",
    "PolicyBundle",
    "PolicyDecision",
    "PolicyEngine",
    "PolicyInfo",
    "PolicyInput",
    "RateLimit",
    "RateLimitsConfig",
    "RuleMatch",
    "build_input",
    "bundle_hash",
    "endpoint_host",
    "evaluation_hash",
    "parse_bundle",
]
