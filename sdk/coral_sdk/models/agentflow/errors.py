"""Typed AgentFlow errors, rooted in the protocol's error hierarchy."""

from __future__ import annotations

from coral.protocol.errors import CoralError, InvalidMessage, ResourceExhausted


class AgentFlowError(CoralError):
    """Base class for failures inside the AgentFlow agent."""

    reason = "agentflow_error"
    category = "internal"


class EngineError(AgentFlowError):
    """An LLM engine could not produce a completion (after any retries)."""

    reason = "engine_error"
    category = "unavailable"


class EngineRejected(EngineError):
    """The LLM service refused the request with a non-retryable status (e.g. 400, 401)."""

    reason = "engine_rejected"
    category = "invalid"


class EngineNotInstalled(EngineError):
    """An optional engine backend (such as ``transformers``) is not installed."""

    reason = "engine_not_installed"


class ToolNotFound(AgentFlowError):
    """The requested tool is not in the toolbox."""

    reason = "tool_not_found"
    category = "not_found"


class InvalidToolCommand(InvalidMessage):
    """A tool command could not be parsed or does not match the tool's input schema."""

    reason = "invalid_tool_command"


class SandboxLimitExceeded(ResourceExhausted):
    """Sandboxed code ran past its time or memory limit and was stopped."""

    reason = "sandbox_limit_exceeded"
