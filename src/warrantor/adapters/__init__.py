"""Warrantor for agent frameworks: a tool's calls are authorized, held for a human, run and
notarized through the framework's own hooks (docs/adapters.md).

- ``warrantor.adapters.openai_agents.WarrantorTools``: OpenAI Agents SDK function tools
  (``needs_approval``, tool input/output guardrails, approval interruptions);
- ``warrantor.adapters.langgraph.WarrantorToolNode``: a LangGraph tool node that holds
  with ``interrupt()`` and resumes with ``Command(resume=...)``;
- ``warrantor.adapters.pydantic_ai.WarrantorToolset``: a Pydantic AI toolset whose held calls
  are deferred (``ApprovalRequired`` / ``DeferredToolRequests`` / ``DeferredToolResults``).

Each framework is an extra (``openai-agents``, ``langgraph``, ``pydantic-ai``); this package
itself imports none of them, only the SDK (``warrantor.client``) and ``_core``'s shared rules.
"""

from warrantor.adapters._core import Decision, Gate, Report, ToolAction, Verdict, result_digest

__all__ = ["Decision", "Gate", "Report", "ToolAction", "Verdict", "result_digest"]
