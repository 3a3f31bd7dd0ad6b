"""Who is calling the A2A front door: bearer tokens configured in ``[a2a] callers``.

With no callers configured the front door is open (anonymous callers). Once
callers are configured, every A2A operation needs ``Authorization: Bearer
<token>`` of one of them (HTTP 401 otherwise; cards and the JWKS stay
public), the cards declare the scheme as required, and each caller sees only
its own tasks (see ``coral.api.a2a.tasks.scope_of``). The extended card is
for authenticated callers only.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

import grpc
from a2a.auth.user import UnauthenticatedUser, User
from a2a.server.request_handlers import GrpcHandler
from a2a.types import a2a_pb2
from a2a.utils.errors import A2AError

SCHEME_NAME = "bearer"


class BearerCaller(User):
    """A caller authenticated by a configured bearer token."""

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def is_authenticated(self) -> bool:
        """Always True."""
        return True

    @property
    def user_name(self) -> str:
        """The caller's configured name."""
        return self._name


class BadCredentials(Exception):
    """An Authorization header that matches no configured caller."""


class CallerUnauthenticated(A2AError):
    """A gRPC call without valid credentials where callers are configured."""


class AuthenticatingGrpcHandler(GrpcHandler):
    """The SDK's gRPC handler; credential failures end the call with UNAUTHENTICATED."""

    async def abort_context(self, error: A2AError, context: grpc.aio.ServicerContext) -> None:
        """UNAUTHENTICATED for ``CallerUnauthenticated``, the SDK's mapping otherwise."""
        if isinstance(error, CallerUnauthenticated):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, error.message)
        await super().abort_context(error, context)


class Callers:
    """The configured callers and their tokens."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        self.tokens = dict(tokens)

    @property
    def required(self) -> bool:
        """True when callers are configured, so every operation must authenticate."""
        return bool(self.tokens)

    def identify(self, authorization: str | None) -> User:
        """The caller for an ``Authorization`` value (None: anonymous).

        Raises:
            BadCredentials: the header is not a bearer token of a configured caller.
        """
        if not authorization:
            return UnauthenticatedUser()
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token:
            for name, expected in self.tokens.items():
                if hmac.compare_digest(token.strip().encode(), expected.encode()):
                    return BearerCaller(name)
        raise BadCredentials("unknown credentials")

    def declare(self, card: a2a_pb2.AgentCard) -> None:
        """Declare the (required) bearer scheme on a card when callers are configured."""
        if not self.tokens:
            return
        requirement = card.security_requirements.add()
        requirement.schemes[SCHEME_NAME].SetInParent()
        card.security_schemes[SCHEME_NAME].CopyFrom(
            a2a_pb2.SecurityScheme(
                http_auth_security_scheme=a2a_pb2.HTTPAuthSecurityScheme(
                    scheme="Bearer",
                    description="Callers configured on the node.",
                )
            )
        )
