"""Who is asking: the :class:`Identity` every use case receives, and the libraries it may read.

Two modes (``ORCHARD_AUTH``):

* ``none`` (personal, the default): one person on loopback. The identity is
  :func:`personal_identity` (``ORCHARD_DEFAULT_USER``, an admin of their own machine); there is
  no library filter — the one user reads every document.
* ``oidc`` (team): nothing is readable before login. A logged-in person is
  :func:`identity_from_claims` of their ID token: the stored key (``user``) is derived from the
  issuer and the subject (stable, never the e-mail, which can change hands), the display name and
  e-mail come from the claims, admins are named by e-mail or by a group claim
  (``ORCHARD_OIDC_ADMINS="ana@example.org, group:orchard-admins"``). API keys carry the same
  ``user`` key.

Libraries: ``shared`` (admins upload, everyone reads) and one private library per user
(:func:`private_library`). :func:`readable_libraries` is what retrieval filters on, inside the
store query itself.

Example::

    >>> me = identity_from_claims({"sub": "42", "email": "ana@example.org", "name": "Ana"},
    ...                           issuer="https://id.example.org", admins="ana@example.org")
    >>> me.is_admin, me.user.startswith("oidc-"), readable_libraries(me)[0]
    (True, True, 'shared')
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "SHARED_LIBRARY",
    "Identity",
    "identity_from_claims",
    "libraries_for",
    "parse_admins",
    "personal_identity",
    "private_library",
    "readable_libraries",
]

SHARED_LIBRARY = "shared"
PRIVATE_PREFIX = "user:"


@dataclass(frozen=True)
class Identity:
    """A person as every use case sees them.

    Attributes:
        user: the key their conversations, ratings, profile, reward models, adapters, keys and
            private library are stored under (personal mode: the default user's name; team mode:
            ``oidc-`` + 24 hex digits of sha256(issuer, subject)).
        name: what the app shows.
        email: from the claims (team mode), else None.
        is_admin: may upload to and delete from the shared library, read the audit trail.
        issuer, subject: the OIDC identity (team mode), else None.
        team: True in team mode (retrieval is filtered by library), False in personal mode.
    """

    user: str
    name: str
    email: str | None = None
    is_admin: bool = False
    issuer: str | None = None
    subject: str | None = None
    team: bool = False


def personal_identity(user: str = "local") -> Identity:
    """The one person of personal mode: admin of their own machine, reading every library."""
    return Identity(user=user, name=user, is_admin=True, team=False)


def oidc_user_key(issuer: str, subject: str) -> str:
    """The stored key of an OIDC identity: stable per (issuer, subject), path-safe, 29 characters."""
    digest = hashlib.sha256(f"{issuer.rstrip('/')}\0{subject}".encode()).hexdigest()
    return "oidc-" + digest[:24]


def parse_admins(admins: str | Sequence[str] | None) -> tuple[frozenset[str], frozenset[str]]:
    """``"ana@x.org, group:admins"`` -> ({e-mails, lower case}, {group names})."""
    items = admins.split(",") if isinstance(admins, str) else list(admins or ())
    emails, groups = set(), set()
    for item in (str(i).strip() for i in items):
        if item.startswith("group:"):
            if item[6:].strip():
                groups.add(item[6:].strip())
        elif item:
            emails.add(item.lower())
    return frozenset(emails), frozenset(groups)


def identity_from_claims(
    claims: Mapping[str, Any],
    *,
    issuer: str,
    admins: str | Sequence[str] | None = None,
    groups_claim: str = "groups",
) -> Identity:
    """The identity of a logged-in person from their ID token's claims.

    Raises:
        ValueError: the claims have no subject (``sub``): not a login.
    """
    subject = str(claims.get("sub") or "").strip()
    if not subject:
        raise ValueError("the login carried no subject (sub claim) — check the OpenID provider's client set-up")
    issuer = str(claims.get("iss") or issuer)
    email = str(claims.get("email") or "").strip() or None
    name = str(claims.get("name") or claims.get("preferred_username") or email or subject).strip()
    admin_emails, admin_groups = parse_admins(admins)
    groups = claims.get(groups_claim) or ()
    groups = {groups} if isinstance(groups, str) else {str(g) for g in groups}
    verified = claims.get("email_verified", True) is not False  # an unverified e-mail names no admin
    is_admin = bool((email and verified and email.lower() in admin_emails) or (groups & admin_groups))
    return Identity(user=oidc_user_key(issuer, subject), name=name[:120], email=email, is_admin=is_admin,
                    issuer=issuer, subject=subject, team=True)  # fmt: skip


def private_library(user: str) -> str:
    """The name of ``user``'s private library (the ``library`` field of its chunks)."""
    from orchard.db import user_slot

    return PRIVATE_PREFIX + user_slot(user)


def readable_libraries(identity: Identity) -> list[str] | None:
    """The libraries ``identity`` may read: shared + their own; ``None`` (no filter) in personal mode."""
    return libraries_for(identity.user, team=identity.team)


def libraries_for(user: str | None, *, team: bool) -> list[str] | None:
    """The libraries the stored key ``user`` may read in team mode (shared + their private one;
    nobody: shared only); ``None`` (no filter) in personal mode."""
    if not team:
        return None
    return [SHARED_LIBRARY] + ([private_library(user)] if user else [])
