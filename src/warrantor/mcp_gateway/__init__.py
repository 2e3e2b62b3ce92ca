"""The MCP gateway: every ``tools/call`` of any MCP server becomes a Warrantor action.

``config`` reads the YAML file, ``upstreams`` connects the MCP servers behind the gateway,
``gateway`` decides what one call does (authorize, hold, forward, notarize as witnessed
evidence), ``held`` remembers held calls for a retry (bounded), ``serve`` speaks MCP to
clients over stdio or Streamable HTTP, and ``unreadable`` answers the stdio requests the
SDK cannot read. Needs the ``mcp`` extra; it talks to Warrantor only through the public API
(``warrantor.client``).
Guide: docs/mcp.md.
"""
