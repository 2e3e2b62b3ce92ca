"""Demo data: the payments policy bundle used by ``make run`` and the tests."""

from warrantor.demo.payments_bundle import demo_bundle, demo_bundle_yaml

__all__ = ["demo_bundle", "demo_bundle_yaml"]
