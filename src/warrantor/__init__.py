"""Warrantor: authorize what AI agents do, put humans in the loop, and prove it afterwards."""

__version__ = "0.1.0"
