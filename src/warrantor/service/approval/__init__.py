"""Humans: approvals and approvers, users and invitations, notification mail."""
