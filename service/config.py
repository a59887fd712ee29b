"""Service settings: one pydantic-settings class, read from environment variables only.

Every field is read from ``PROMPTMM_<FIELD>`` except ``redis_url``, which is ``REDIS_URL``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    DirectoryPath,
    Field,
    FilePath,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.finetune import FinetuneSetting
from service.logs import LogFormat

MIN_API_KEY_LENGTH = 16


class Settings(BaseSettings):
    """Runtime configuration of the recommendation service."""

    model_config = SettingsConfigDict(
        env_prefix="PROMPTMM_", extra="ignore", hide_input_in_errors=True
    )

    bundle_path: Path = Field(
        Path("models/tiktok"),
        description=(
            "A bundle directory, or a models root whose LATEST names the version "
            "(training exports models/<dataset>)."
        ),
    )
    store_path: Path = Field(
        Path("data/promptmm.sqlite3"),
        description="Embedded store (SQLite, WAL) file; used when REDIS_URL is not set.",
    )
    redis_url: str | None = Field(
        None,
        validation_alias=AliasChoices("REDIS_URL"),
        description="redis://host:port/db: share state between replicas through Redis.",
    )
    redis_prefix: str = Field("promptmm", description="Key prefix of every Redis key.")
    api_key: SecretStr | None = Field(
        None, description="Key required in the X-API-Key header of write and admin endpoints."
    )
    allow_open_writes: bool = Field(
        False, description="Start without an API key, leaving writes open (development only)."
    )
    index_kind: Literal["auto", "exact", "hnsw", "ivf"] = Field(
        "auto",
        description=(
            "FAISS index: exact inner product, approximate (hnsw, ivf), or auto: exact up to "
            "exact_max_items items, hnsw above."
        ),
    )
    exact_max_items: int = Field(
        50_000, ge=1, description="Largest catalog the auto index_kind searches exactly."
    )
    save_index: bool = Field(
        True,
        description=(
            "Save a built hnsw/ivf index beside the bundle (when writable) and load it at the "
            "next start instead of building it again."
        ),
    )
    search_threads: int = Field(
        1, ge=1, le=256, description="FAISS threads per process (one request = one small search)."
    )
    precompute_depth: int = Field(
        100,
        ge=0,
        description=(
            "Items per bundle user kept (exact; 12 bytes each; 0 = off), computed at load for a "
            "small bundle, else on the user's first request: a user who posted nothing is then "
            "answered without a search."
        ),
    )
    toplist_cache_users: int = Field(
        20_000,
        ge=1,
        description="Most bundle users whose precompute_depth lists are kept (LRU).",
    )
    response_cache_mb: int = Field(
        64,
        ge=0,
        description=(
            "Megabytes of rendered /recommend answers kept per process (0 = off; ~1 KB each "
            "at k=20), each valid until a write changes it; not used with bpr."
        ),
    )
    hnsw_m: int = Field(32, ge=4, le=256, description="HNSW graph degree.")
    hnsw_ef_construction: int = Field(
        80, ge=1, description="HNSW build breadth (part of a saved index's name)."
    )
    hnsw_ef_search: int = Field(128, ge=1, description="HNSW search breadth.")
    ivf_nlist: int = Field(64, ge=1, description="IVF cells.")
    ivf_nprobe: int = Field(16, ge=1, description="IVF cells probed per query.")
    unknown_user: Literal["popular", "404"] = Field(
        "popular", description="Unknown user on /recommend: popularity fallback or 404."
    )
    max_k: int = Field(1000, ge=1, description="Largest k accepted by /recommend.")
    max_batch: int = Field(256, ge=1, description="Most users/events in one batch request.")
    max_items_per_event: int = Field(1000, ge=1, description="Most item_ids in one event.")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="Largest request body.")
    max_header_bytes: int = Field(
        16_384,
        ge=1024,
        description=(
            "Largest request line plus headers (431 above; served by service.http's protocol)."
        ),
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description=(
            "Seconds a connection may take to send a complete request head, from its opening "
            "or the previous response (then closed; service.http's protocol)."
        ),
    )
    keep_alive_s: int = Field(
        5, ge=1, description="Seconds an idle keep-alive connection is kept open."
    )
    finetune_method: FinetuneSetting = Field(
        "auto",
        description=(
            "User update: propagate (LightGCN fold-in; needs the bundle's layers), mean (move "
            "towards the positives' centroid), bpr steps, or auto (propagate when possible)."
        ),
    )
    fold_items: bool = Field(
        True,
        description=(
            "Move the items that get online interactions with the propagate update (needs "
            "the bundle's layers)."
        ),
    )
    finetune_beta: float = Field(
        0.3, ge=0, description="Mean update: step towards the positives' centroid."
    )
    finetune_steps: int = Field(20, ge=0, description="BPR gradient steps per user update.")
    finetune_lr: float = Field(
        2.0,
        gt=0,
        description="BPR step size, relative to the items' mean squared coordinate.",
    )
    finetune_negatives: int = Field(64, ge=1, description="BPR negatives sampled per step.")
    finetune_prox: float = Field(
        0.01,
        ge=0,
        description="BPR weight that keeps the user's scores near their previous values.",
    )
    log_level: str = Field("INFO", description="Python logging level.")
    log_format: LogFormat = Field(
        "json", description="Log lines as JSON objects (json) or plain text (text)."
    )
    access_log: bool = Field(
        True, description="One log line per HTTP request (at INFO, so log_level INFO or lower)."
    )
    demo: bool = Field(False, description="Serve the demo page at /demo (off in production).")
    demo_titles: FilePath | None = Field(
        None,
        description=(
            "Demo page: a JSON Lines file of item titles, one object per line with the item id "
            "(field demo_titles_id_field) and a title."
        ),
    )
    demo_titles_id_field: str = Field(
        "item_id", min_length=1, description="The field of demo_titles that holds the item id."
    )
    demo_images: DirectoryPath | None = Field(
        None,
        description=(
            "Demo page: a folder of item pictures named <item id>.jpg|jpeg|png|webp|gif, "
            "served for the served catalog's items only."
        ),
    )

    models_root: Path | None = Field(
        None,
        description=(
            "Directory /admin/reload may load bundles from (anything outside, symlinks "
            "resolved, is refused); default: bundle_path when it is a models root, else its "
            "parent."
        ),
    )

    @field_validator("api_key")
    @classmethod
    def _key_is_long_enough(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and len(key.get_secret_value()) < MIN_API_KEY_LENGTH:
            raise ValueError(
                f"PROMPTMM_API_KEY has {len(key.get_secret_value())} characters; it must have "
                f"at least {MIN_API_KEY_LENGTH} (e.g. python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))')"
            )
        return key

    @model_validator(mode="after")
    def _writes_need_a_key(self) -> Settings:
        if self.api_key is None and not self.allow_open_writes:
            raise ValueError(
                "PROMPTMM_API_KEY is not set: write and admin endpoints would be open. Set "
                "PROMPTMM_API_KEY, or PROMPTMM_ALLOW_OPEN_WRITES=true to run open on purpose."
            )
        return self


def setting_env_names() -> dict[str, str]:
    """Environment variable -> Settings field, for every field: ``PROMPTMM_<FIELD>``, or the
    field's validation alias (``REDIS_URL``)."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    names: dict[str, str] = {}
    for field_name, info in Settings.model_fields.items():
        alias: Any = info.validation_alias
        if alias is None:
            names[f"{prefix}{field_name}".upper()] = field_name
        elif isinstance(alias, str):
            names[alias.upper()] = field_name
        elif isinstance(alias, AliasChoices):
            for choice in alias.choices:
                if not isinstance(choice, str):
                    raise ValueError(
                        f"Settings.{field_name}: alias path {choice!r} is not an env name"
                    )
                names[choice.upper()] = field_name
        else:
            raise ValueError(f"Settings.{field_name}: unsupported validation_alias {alias!r}")
    return names


def check_bundle_path(path: Path) -> None:
    """Raise ValueError saying what to run when nothing exists at the bundle path."""
    if not path.exists():
        raise ValueError(
            f"PROMPTMM_BUNDLE_PATH={path}: no such file or directory (relative to "
            f"{Path.cwd()}). Export a model first: `python -m training run "
            "configs/tiktok.toml` writes models/tiktok (the default), `bash scripts/demo.sh` "
            "trains one and serves it; or set PROMPTMM_BUNDLE_PATH to an exported "
            "models/<dataset> root or version directory."
        )


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with ``overrides`` (by field name or alias) on top."""
    return Settings(**overrides)
