"""Who is calling the A2A front door: bearer tokens configured in ``[a2a] callers``.

A caller presenting ``Authorization: Bearer <token>`` for a configured name is
authenticated as that name: its tasks are scoped to it (see
``coral.api.a2a.tasks.scope_of``) and it may read the extended card. Without
a header the caller is anonymous; a header with an unknown token is refused.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from a2a.auth.user import UnauthenticatedUser, User
from a2a.types import a2a_pb2

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


class Callers:
    """The configured callers and their tokens."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        self.tokens = dict(tokens)

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
        """Declare the bearer scheme on a card (optional for every operation but the
        extended card), when callers are configured."""
        if not self.tokens:
            return
        card.security_schemes[SCHEME_NAME].CopyFrom(
            a2a_pb2.SecurityScheme(
                http_auth_security_scheme=a2a_pb2.HTTPAuthSecurityScheme(
                    scheme="Bearer",
                    description="Configured A2A callers; needed for the extended card.",
                )
            )
        )
