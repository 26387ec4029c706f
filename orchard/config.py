"""Settings: the one place that reads the environment.

Every value can be set as ``ORCHARD_<NAME>`` in the environment or in a ``.env`` file in the
working directory; the fields the app edits are also saved in ``<data_dir>/settings.json``
(:mod:`orchard.user_settings`). One order for every face (CLI, app, API, launcher):
arguments > environment > ``.env`` > the app's saved settings > defaults (pydantic-settings
sources, :meth:`Settings.settings_customise_sources`). Everything below the composition root
(:mod:`orchard.components`) receives plain objects and never reads the environment itself.

Example::

    >>> from orchard.config import Settings
    >>> Settings(llm_base_url="http://gpu-box:8000/v1").is_default_llm_url
    False
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

SAVED_SETTINGS_FILE = "settings.json"
#: The fields the app edits and saves, with a label for each.
EDITABLE: dict[str, str] = {
    "llm_base_url": "Model endpoint (OpenAI-compatible URL)",
    "llm_model": "Model name",
    "model_preset": "Embedded model (a preset or a quantized variant: `orchard models list`)",
    "llm_temperature": "Temperature",
    "top_k": "Passages per answer (top-k)",
    "dense_weight": "Hybrid weight (0 = keywords only, 1 = meaning only)",
}

DEFAULT_LLM_BASE_URL = "http://127.0.0.1:8000/v1"
DEFAULT_LLM_MODEL = "qwen2.5-coder-0.5b-instruct"


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "orchard"


class SavedSettingsSource(PydanticBaseSettingsSource):
    """The app's saved settings (``<data_dir>/settings.json``, only the :data:`EDITABLE` fields),
    below the environment and ``.env``; ``data_dir`` itself comes from the sources above it."""

    def __init__(self, settings_cls: type[BaseSettings], *above: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self.above = above

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover - unused
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        data_dir = None
        for source in self.above:
            data_dir = source().get("data_dir") or data_dir
            if data_dir:
                break
        saved = saved_overrides(Path(str(data_dir)).expanduser() if data_dir else _default_data_dir())
        return {k: v for k, v in saved.items() if _valid(self.settings_cls, k, v)}


def saved_overrides(data_dir: Path) -> dict[str, Any]:
    """The saved :data:`EDITABLE` fields (a missing or unreadable file: none; others ignored)."""
    try:
        raw = json.loads((Path(data_dir) / SAVED_SETTINGS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in raw.items() if k in EDITABLE} if isinstance(raw, dict) else {}


def _valid(settings_cls: type[BaseSettings], name: str, value: Any) -> bool:
    """Does ``value`` pass the field's type, constraints and validators? A hand-edited file may
    hold values that do not; they are dropped one by one, so the rest still applies."""
    from pydantic import ValidationError

    try:
        settings_cls.__pydantic_validator__.validate_assignment(settings_cls.model_construct(), name, value)
    except ValidationError:
        return False
    return True


class Settings(BaseSettings):
    """Orchard configuration (env prefix ``ORCHARD_``, ``.env`` supported)."""

    model_config = SettingsConfigDict(
        env_prefix="ORCHARD_", env_file=".env", extra="ignore", validate_default=True
    )

    # Model endpoint: any OpenAI-compatible chat server (embedded llama.cpp, vLLM, ...).
    llm_base_url: str = DEFAULT_LLM_BASE_URL
    llm_model: str = DEFAULT_LLM_MODEL
    llm_api_key: SecretStr = SecretStr("not-needed")
    llm_temperature: float = Field(0.1, ge=0.0, le=2.0)
    llm_max_tokens: int = Field(512, ge=16, le=8192)
    llm_timeout: float = Field(120.0, gt=0)

    # Embedded server (used when nothing answers at the default URL).
    model_preset: str = "qwen-0.5b"
    server_threads: int = Field(0, ge=0, description="0 = number of cores")
    server_ctx: int = Field(4096, ge=512)

    # State.
    data_dir: Path = Field(default_factory=_default_data_dir)
    store_dir: Path | None = None  # default: <data_dir>/store
    cache_dir: Path | None = None  # default: <data_dir>/cache (assembled model, ONNX export)
    chroma_url: str | None = None  # e.g. http://127.0.0.1:8001 -> Chroma server mode
    collection: str = "orchard"
    prompts_dir: Path | None = None  # user overrides of the packaged prompt files

    # Retrieval.
    top_k: int = Field(5, ge=1, le=50)
    dense_weight: float = Field(0.6, ge=0.0, le=1.0, description="0 = BM25 only, 1 = dense only")
    min_relevance: float = Field(0.3, ge=-1.0, le=1.0)
    answer_checks: bool = Field(True, description="check each documents answer and repair a failed one (retry, then a quote)")
    max_context_tokens: int = Field(
        700, ge=50, le=4000, description="passages' budget per answer, in estimated tokens (bounds the first token's wait)"
    )
    # The embedder of a new store (minilm, e5-small, mpnet); an existing store is always opened
    # with the embedder recorded in it.
    embedder: Literal["minilm", "e5-small", "mpnet"] = "minilm"
    # Query rewriting: "keywords" asks the model (one short greedy call, ~1.3 s more before the
    # first token on 2 idle cores) for the API names that do what the question describes, and
    # fuses the search for the question with the search for question + names; "auto" does so only
    # when the question's own search is not strong evidence for the documents gate (questions
    # that name the API skip the call). Measured in bench/RESULTS.md (issue 10, idle machine).
    query_rewrite: Literal["off", "keywords", "auto"] = "off"

    # Ingestion limits (hostile or broken files are reported and skipped, the rest is ingested).
    max_file_mb: float = Field(50.0, gt=0, description="larger files are skipped unread")
    parse_timeout_s: float = Field(60.0, gt=0, description="a file whose parsing takes longer is stopped")
    follow_symlinks: bool = Field(False, description="follow links inside a folder (never ones leaving it)")

    # Learning from feedback (issue 11).
    best_of: int = Field(
        1, ge=1, le=8, description="candidates per answer; the user's reward model picks (1 = off; each extra costs its decoding)"
    )
    llm_n_per_request: bool = Field(False, description="the model server takes `n` (vLLM): best-of-n candidates in one request")
    reward_retrain_every: int = Field(
        10, ge=0, description="retrain the user's reward model after this many new ratings, in the background (0 = never)"
    )

    # Agent and tools.
    tool_calling: Literal["routed", "auto"] = "routed"  # auto: the model calls tools itself (vLLM)
    db_url: str | None = None  # SQLAlchemy URL of the database the sql tool reads
    sql_max_rows: int = Field(200, ge=1, le=10000)
    tool_timeout: float = Field(10.0, gt=0, le=300)

    # The HTTP API (`orchard api`).
    api_host: str = "127.0.0.1"
    api_port: int = Field(8400, ge=1, le=65535)
    api_max_body_mb: float = Field(50.0, gt=0, description="largest request body (uploads included)")
    default_user: str = Field("local", description="personal mode: whose conversations the API and the CLI use")

    # Team mode (issue 12): login, shared state, several processes (README "Deploying for a team").
    auth: Literal["none", "oidc"] = Field("none", description="none = personal (loopback, one user); oidc = team (login first)")
    oidc_issuer: str | None = Field(None, description="the OpenID provider's issuer URL (its /.well-known/openid-configuration)")
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_admins: str = Field("", description="admins: e-mails and group:NAME entries, comma-separated")
    oidc_groups_claim: str = "groups"
    oidc_redirect_uri: str | None = Field(None, description="default: http://<app address>:<port>/oauth2callback (localhost when listening on every interface)")
    oidc_provider_name: str | None = Field(None, description="the login button's label (default: the issuer's host)")
    oidc_cookie_secret: SecretStr | None = Field(None, description="signs Streamlit's login cookie; default: generated once per data dir")
    state_url: str | None = Field(None, description="SQLAlchemy URL of the state database (default: SQLite in the data dir; postgresql+psycopg://... for teams)")
    llm_first_token_retries: int = Field(1, ge=0, le=5, description="a stream that fails before its first token is retried this often")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        saved = SavedSettingsSource(settings_cls, init_settings, env_settings, dotenv_settings)
        return init_settings, env_settings, dotenv_settings, saved, file_secret_settings

    @field_validator("llm_base_url", mode="after")
    @classmethod
    def _http_url(cls, value: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL with a host, e.g. http://127.0.0.1:8000/v1")
        return value.strip()

    @field_validator("data_dir", "store_dir", "cache_dir", "prompts_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @field_validator("chroma_url", "db_url", "store_dir", "cache_dir", "prompts_dir", "oidc_issuer", "oidc_client_id",
                     "oidc_client_secret", "oidc_redirect_uri", "oidc_provider_name", "oidc_cookie_secret", "state_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return value if value not in ("", None) else None

    @model_validator(mode="after")
    def _ask_for_the_selected_model(self) -> Settings:
        """Unless ORCHARD_LLM_MODEL is set, the client asks for the served name of the selected
        model (ORCHARD_MODEL_PRESET=qwen-1.5b -> ``qwen2.5-coder-1.5b-instruct``), the name the
        embedded server serves it under (:func:`orchard.model.served_name_for`)."""
        if "llm_model" not in self.model_fields_set:
            from orchard.model import served_name_for

            served = served_name_for(self.model_preset)
            if served:
                self.__dict__["llm_model"] = served  # not "set": model_fields_set stays as given
        return self

    @property
    def store_path(self) -> Path:
        return self.store_dir or self.data_dir / "store"

    @property
    def cache_path(self) -> Path:
        return self.cache_dir or self.data_dir / "cache"

    @property
    def prompts_path(self) -> Path:
        """Where prompt and constitution overrides live (the app's editor saves here)."""
        return self.prompts_dir or self.data_dir / "prompts"

    @property
    def state_database_url(self) -> str:
        """The state database's SQLAlchemy URL: ``ORCHARD_STATE_URL``, else SQLite in the data dir."""
        return self.state_url or f"sqlite:///{self.data_dir / 'orchard.sqlite3'}"

    @property
    def team_mode(self) -> bool:
        return self.auth == "oidc"

    @model_validator(mode="after")
    def _team_mode_is_configured(self) -> Settings:
        if self.auth == "oidc":
            missing = [f"ORCHARD_{name.upper()}" for name in ("oidc_issuer", "oidc_client_id", "oidc_client_secret")
                       if not getattr(self, name)]  # fmt: skip
            if missing:
                raise ValueError("ORCHARD_AUTH=oidc needs " + ", ".join(missing) + " (README: Deploying for a team)")
        return self

    @property
    def is_default_llm_url(self) -> bool:
        return self.llm_base_url.rstrip("/") == DEFAULT_LLM_BASE_URL


def load_settings(**overrides: Any) -> Settings:
    """Settings from every source, in the order of the module docstring."""
    return Settings(**overrides)
