"""Bearer tokens, sans-IO: their format, hashing and what a token allows.

A token is ``art_<id>_<secret>``: the id finds its row, the secret is checked against the
stored SHA-256 of it. Tokens are 256 random bits, so a fast hash is the right one (a slow
password hash guards low-entropy secrets); the plaintext is never stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Final

import attrs

from .errors import AuthError, Forbidden, ValidationError
from .records import check_name

READ: Final = "read"
WRITE: Final = "write"
RUN: Final = "run"
ROLES: Final = (READ, WRITE, RUN)
"""Roles from least to most powerful; each allows everything the ones before it allow.

- ``read``: GET requests and waits (watches).
- ``write``: also create, update and delete records, log metrics, stop runs.
- ``run``: also start and resume runs, i.e. execute code on the server's machine.
"""
ROLE_HELP: Final = {
    READ: "read runs, logs and metrics, and wait on runs",
    WRITE: "also create, change and delete runs, log metrics and stop runs",
    RUN: "also start and resume runs: executes code on the server's machine",
}
ALL_PROJECTS: Final = "*"
PREFIX: Final = "art_"
_TOKEN_RE: Final = re.compile(r"art_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")


@attrs.frozen
class Grant:
    """What one token allows.

    Attributes:
        token_id: The token's public id (safe to log).
        role: One of :data:`ROLES`: what the holder may do in its projects.
        projects: Project names, or ``{"*"}`` for every project.
    """

    token_id: str
    role: str
    projects: frozenset[str]

    def allows(self, project: str, need: str = READ) -> bool:
        """Whether this grant covers ``project`` for an operation that needs role ``need``."""
        if ROLES.index(self.role) < ROLES.index(need):
            return False
        return ALL_PROJECTS in self.projects or project in self.projects


def check_grant(role: str, projects: list[str]) -> tuple[str, frozenset[str]]:
    """Validate a token's role and projects (at token creation).

    Raises:
        ValidationError: naming what is wrong.
    """
    if role not in ROLES:
        raise ValidationError(f"role must be one of {', '.join(ROLES)}; got {role!r}")
    if not projects:
        raise ValidationError("a token needs at least one project (or '*' for all)")
    for project in projects:
        if project != ALL_PROJECTS:
            try:
                check_name("project", project)
            except ValueError as exc:
                raise ValidationError(str(exc)) from None
    return role, frozenset(projects)


def make_token(random: bytes) -> tuple[str, str]:
    """A new token from 40 random bytes: ``(token_id, token)``."""
    if len(random) != 40:
        raise ValueError("make_token needs 40 random bytes")
    token_id = random[:8].hex()
    secret = base64.urlsafe_b64encode(random[8:]).decode().rstrip("=")
    return token_id, f"{PREFIX}{token_id}_{secret}"


def secret_hash(token: str) -> bytes:
    """The digest stored for ``token``."""
    return hashlib.sha256(token.encode()).digest()


def matches(token: str, stored: bytes) -> bool:
    """Whether ``token`` hashes to ``stored`` (in constant time)."""
    return hmac.compare_digest(secret_hash(token), stored)


def token_id_of(authorization: str | None) -> tuple[str, str]:
    """The token id and token in an ``Authorization: Bearer`` header.

    Raises:
        AuthError: if there is no bearer token or it is not one this server makes. The
            message never repeats the token.
    """
    if not authorization:
        raise AuthError(
            "this server needs a token: pass token= or set ASYNCRUN_TOKEN "
            "(create one with `asyncrun server token create`)"
        )
    scheme, _, token = authorization.strip().partition(" ")
    match = _TOKEN_RE.fullmatch(token.strip())
    if scheme.lower() != "bearer" or match is None:
        raise AuthError("the Authorization header must be 'Bearer art_...' with an asyncrun token")
    return match.group(1), match.group(0)


_WHAT: Final = {READ: "access", WRITE: "write to", RUN: "start runs in"}


def authorize(grant: Grant | None, project: str, need: str) -> None:
    """Check that ``grant`` (``None``: unknown or revoked token) may act on ``project``.

    Args:
        grant: The request's token grant.
        project: The project the request acts on.
        need: The role the operation needs (:data:`READ`, :data:`WRITE` or :data:`RUN`).

    Raises:
        AuthError: (401) if there is no valid token.
        Forbidden: (403) if the token does not cover the project or its role is too weak.
            The answer is the same whether or not the project or run exists.
    """
    if grant is None:
        raise AuthError("the token is not valid here (unknown, revoked or mistyped)")
    if not grant.allows(project, need):
        what = _WHAT[need] if grant.allows(project, READ) else "access"
        raise Forbidden(
            f"token {grant.token_id} ({grant.role}) may not {what} project {project!r}"
            + (f": that needs a {need} token" if grant.allows(project, READ) else ""),
            detail={"token_id": grant.token_id, "project": project, "needs": need},
        )
