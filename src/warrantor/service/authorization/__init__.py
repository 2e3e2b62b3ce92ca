"""Deciding: the authorize pipeline and its stages, policies, guardrails (agents, budgets,
rate limits, grants), simulation, AuthZEN."""
