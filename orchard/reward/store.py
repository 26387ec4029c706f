"""Versioned reward models under the data folder: ``<data_dir>/reward/<slot>/v<N>/``.

A slot is ``_global`` (trained on every user's ratings) or ``u-<hash>`` for one user: the first
24 hex digits of the SHA-256 of the user name, so a name never appears in a path (any name is
path-safe, and two names never share a folder in practice). Each version folder holds
``weights.npz`` and ``report.json`` (the embedder id, the training report, ``trained_on``). A
version is written into a hidden temporary folder and renamed into place, so a folder named
``v<N>`` is always complete; ``latest`` is the highest such ``N``. :meth:`RewardStore.activate` pins
a version (the file ``active``) for :meth:`RewardStore.load_for`, which the answer path uses: the
user's active version, else the global one, else none.

Example::

    >>> store = RewardStore(settings.data_dir)  # doctest: +SKIP
    >>> version = store.save(model, user="ann")  # doctest: +SKIP
    >>> store.load(user="ann", embed=embeddings).score("q", ["a", "b"])  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from orchard.db import user_slot
from orchard.reward.model import REPORT_FILE, RewardModel, RewardModelError

ACTIVE_FILE = "active"  # a pinned version number; without it the latest version is active
_VERSION = re.compile(r"^v(\d+)$")


class RewardStore:
    """Reward-model versions per user (and global) under ``<data_dir>/reward``."""

    def __init__(self, data_dir: str | Path) -> None:
        self.root = Path(data_dir).expanduser() / "reward"

    def slot_dir(self, user: str | None) -> Path:
        return self.root / user_slot(user)

    def versions(self, user: str | None = None) -> list[int]:
        """The complete versions of a user's (or the global) model, oldest first."""
        folder = self.slot_dir(user)
        if not folder.is_dir():
            return []
        found = []
        for child in folder.iterdir():
            match = _VERSION.match(child.name)
            if match and (child / REPORT_FILE).is_file():
                found.append(int(match.group(1)))
        return sorted(found)

    def latest(self, user: str | None = None) -> int | None:
        versions = self.versions(user)
        return versions[-1] if versions else None

    def path(self, user: str | None, version: int | str = "latest") -> Path:
        """The folder of one version (``"latest"``: the newest). Raises RewardModelError if none."""
        number = self.latest(user) if version == "latest" else int(version)
        if number is None or number not in self.versions(user):
            who = "the global model" if user is None else "this user"
            raise RewardModelError(f"no reward model version {version} for {who} — train one first")
        return self.slot_dir(user) / f"v{number}"

    def save(self, model: RewardModel, user: str | None = None) -> int:
        """Store ``model`` as the next version of the user's slot; returns the version number."""
        folder = self.slot_dir(user)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder, prefix=".tmp-"))
        try:
            model.save(tmp)
            while True:
                number = (self.latest(user) or 0) + 1
                try:
                    os.rename(tmp, folder / f"v{number}")  # fails if another writer took the number
                    return number
                except OSError:
                    if not (folder / f"v{number}").exists():
                        raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def activate(self, user: str | None, version: int | None) -> None:
        """Pin the version :meth:`load_for` uses for the slot (``None``: back to the latest)."""
        pin = self.slot_dir(user) / ACTIVE_FILE
        if version is None:
            pin.unlink(missing_ok=True)
            return
        self.path(user, version)  # raises if there is no such version
        pin.write_text(f"{int(version)}\n", encoding="utf-8")

    def active(self, user: str | None = None) -> int | None:
        """The version in use for the slot: the pinned one if any (and still there), else the latest."""
        try:
            pinned = int((self.slot_dir(user) / ACTIVE_FILE).read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            pinned = None
        return pinned if pinned in self.versions(user) else self.latest(user)

    def scoring(self, user: str | None) -> tuple[str | None, int] | None:
        """Whose model, and which version, scores ``user``'s answers: (user, their active version),
        else (None, the global active version), else ``None`` (no reward model yet)."""
        for slot_user in ([user] if user is not None else []) + [None]:
            version = self.active(slot_user)
            if version is not None:
                return slot_user, version
        return None

    def load_for(self, user: str | None, *, embed: Any) -> RewardModel | None:
        """The model that scores ``user``'s answers (:meth:`scoring`), or ``None``."""
        found = self.scoring(user)
        return None if found is None else self.load(found[0], found[1], embed=embed)

    def load(self, user: str | None = None, version: int | str = "latest", *, embed: Any) -> RewardModel:
        """One version of a user's (or the global) model, scoring with ``embed``."""
        return RewardModel.load(self.path(user, version), embed=embed)

    def report(self, user: str | None = None, version: int | str = "latest") -> dict[str, Any]:
        """The ``report.json`` of one version, plus its ``version`` number."""
        folder = self.path(user, version)
        meta = json.loads((folder / REPORT_FILE).read_text(encoding="utf-8"))
        return {"version": int(folder.name[1:]), **meta}

    def list(self, user: str | None = None) -> list[dict[str, Any]]:
        """Every version's summary: version, embedder, trained_on and the held-out accuracy."""
        rows = []
        for number in self.versions(user):
            meta = self.report(user, number)
            report = meta.get("report") or {}
            rows.append({
                "version": number,
                "embedder": meta.get("embedder"),
                "trained_on": report.get("trained_on"),
                "n_pairs": report.get("n_pairs"),
                "n_points": report.get("n_points"),
                "heldout_pair_accuracy": report.get("heldout_pair_accuracy"),
                "heldout_pairs": report.get("heldout_pairs"),
            })  # fmt: skip
        return rows
