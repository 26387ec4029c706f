"""LoRA adapters trained here, kept under the data folder, one active per user.

Layout: ``<data_dir>/adapters/<name>/`` holds ``adapter.gguf`` (llama.cpp's LoRA format, what the
embedded server loads with ``--lora_path``), ``peft/`` (the PEFT folder vLLM serves with
``--enable-lora --lora-modules name=<folder>``) and ``adapter.json``: how it was made (method,
base model and its sha256, the rows it learned from, the training report), whose it is (the user
whose ratings trained it; ``None``: everyone's) and its gate report (the evaluation that decided
whether it may be active, :mod:`orchard.usecases.learning`).

``active.json`` maps a user's slot (a hash of the name, never the name) to the adapter that
answers for them. An adapter trained on one user's data can only be activated for that user:
one user's ratings never change another's answers.

Example::

    >>> adapters = AdapterStore(settings.data_dir)  # doctest: +SKIP
    >>> adapters.activate("ann-dpo-1", user="ann")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from orchard.db import user_slot, validate_user
from orchard.errors import NotFound, OrchardError

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
META_FILE = "adapter.json"
GGUF_FILE = "adapter.gguf"
PEFT_DIR = "peft"
ACTIVE_FILE = "active.json"
METHODS = ("sft", "dpo", "distill")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        msg = f"adapter name {name!r}: use 1-64 lower-case letters, digits, '.', '_' or '-' (starting with a letter or digit)"
        raise OrchardError(msg)
    return name


@dataclass
class Adapter:
    """One adapter's record (``adapter.json``) and where its files are."""

    name: str
    method: str
    base: str  # the preset (or GGUF file name) it was trained on
    base_sha256: str
    owner: str | None  # whose ratings trained it (None: a shared adapter)
    created_at: float
    rows: int
    training: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] | None = None
    folder: Path = Path()

    @property
    def gguf(self) -> Path:
        return self.folder / GGUF_FILE

    @property
    def peft(self) -> Path:
        return self.folder / PEFT_DIR

    def as_dict(self, viewer: str | None = None) -> dict[str, Any]:
        """JSON-ready, for ``viewer``: whether it is theirs or shared, never another user's name."""
        data = asdict(self)
        data["folder"] = str(self.folder)
        owner = data.pop("owner")
        data["shared"], data["mine"] = owner is None, owner is not None and owner == viewer
        return data


class AdapterStore:
    """Adapters under ``<data_dir>/adapters`` (module docstring)."""

    def __init__(self, data_dir: str | Path) -> None:
        self.root = Path(data_dir).expanduser() / "adapters"

    def folder(self, name: str) -> Path:
        return self.root / check_name(name)

    def staging(self) -> Path:
        """A fresh hidden folder to build an adapter in (renamed into place by :meth:`add`)."""
        self.root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=self.root, prefix=".build-"))

    def add(self, staged: Path, *, name: str, method: str, base: str, base_sha256: str, owner: str | None, rows: int,
            training: dict[str, Any]) -> Adapter:  # fmt: skip
        """Record the adapter built in ``staged`` (``adapter.gguf`` and ``peft/``) as ``name``."""
        if method not in METHODS:
            raise OrchardError(f"unknown tuning method {method!r} — expected one of {', '.join(METHODS)}")
        target = self.folder(name)
        if target.exists():
            raise OrchardError(f"an adapter named {name!r} exists already — choose another --out name")
        if not (staged / GGUF_FILE).is_file() or not (staged / PEFT_DIR).is_dir():
            raise OrchardError(f"{staged} holds no {GGUF_FILE} and {PEFT_DIR}/ — the conversion did not finish")
        adapter = Adapter(name=name, method=method, base=base, base_sha256=base_sha256,
                          owner=None if owner is None else validate_user(owner), created_at=time.time(), rows=rows,
                          training=training, folder=target)  # fmt: skip
        self._write_meta(staged, adapter)
        os.rename(staged, target)
        return adapter

    def get(self, name: str) -> Adapter:
        meta = self.folder(name) / META_FILE
        if not meta.is_file():
            raise NotFound(f"no adapter named {name!r} — `orchard adapters list` shows them")
        data = json.loads(meta.read_text(encoding="utf-8"))
        return Adapter(**{**data, "folder": meta.parent})

    def list(self, user: str | None = None) -> list[Adapter]:
        """The adapters ``user`` may use (their own and the shared ones; None: every one), oldest first."""
        if not self.root.is_dir():
            return []
        found = [self.get(child.name) for child in sorted(self.root.iterdir())
                 if NAME.match(child.name) and (child / META_FILE).is_file()]  # fmt: skip
        if user is not None:
            user = validate_user(user)
            found = [a for a in found if a.owner in (None, user)]
        return sorted(found, key=lambda a: a.created_at)

    def set_gate(self, name: str, report: dict[str, Any]) -> Adapter:
        adapter = self.get(name)
        adapter.gate = report
        self._write_meta(adapter.folder, adapter)
        return adapter

    def delete(self, name: str, *, user: str | None) -> None:
        adapter = self.usable(name, user)
        for slot, chosen in self._active().items():
            if chosen == name:
                self._set_active(slot, None)
        shutil.rmtree(adapter.folder)

    # --- which one answers ----------------------------------------------------------------------

    def usable(self, name: str, user: str | None) -> Adapter:
        """The adapter if ``user`` may use it (theirs or shared); :class:`NotFound` otherwise —
        the same answer as for a name that does not exist, so names are not probed."""
        adapter = self.get(name)
        if adapter.owner is not None and (user is None or adapter.owner != validate_user(user)):
            raise NotFound(f"no adapter named {name!r} — `orchard adapters list` shows them")
        return adapter

    def activate(self, name: str, *, user: str | None) -> Adapter:
        adapter = self.usable(name, user)
        self._set_active(user_slot(user), name)
        return adapter

    def deactivate(self, *, user: str | None) -> None:
        self._set_active(user_slot(user), None)

    def active(self, user: str | None) -> Adapter | None:
        """The adapter answering for ``user`` (None: the base model)."""
        name = self._active().get(user_slot(user))
        if name is None:
            return None
        try:
            return self.usable(name, user)
        except NotFound:  # deleted since
            return None

    def _active(self) -> dict[str, str]:
        path = self.root / ACTIVE_FILE
        try:
            return dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return {}

    def _set_active(self, slot: str, name: str | None) -> None:
        chosen = self._active()
        if name is None:
            chosen.pop(slot, None)
        else:
            chosen[slot] = name
        self.root.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.root / ACTIVE_FILE, json.dumps(chosen, indent=2))

    def _write_meta(self, folder: Path, adapter: Adapter) -> None:
        data = asdict(adapter)
        data.pop("folder")
        _atomic_write(folder / META_FILE, json.dumps(data, indent=2, default=str))


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(tmp, path)
