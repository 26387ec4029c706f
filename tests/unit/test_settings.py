"""One settings source for every face: arguments > environment > .env > the app's saved settings > defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchard.config import Settings, load_settings
from orchard.user_settings import save_changes


def test_the_order_of_the_sources(isolated_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolated_env.mkdir(parents=True, exist_ok=True)
    (isolated_env / "settings.json").write_text(json.dumps({"top_k": 9, "dense_weight": 0.2, "llm_model": "saved"}))
    (tmp_path / ".env").write_text("ORCHARD_DENSE_WEIGHT=0.4\nORCHARD_LLM_MODEL=dotenv\n")
    monkeypatch.setenv("ORCHARD_LLM_MODEL", "env")
    settings = load_settings()
    assert (settings.top_k, settings.dense_weight, settings.llm_model) == (9, 0.4, "env")
    assert load_settings(llm_model="argument").llm_model == "argument"


def test_a_hand_broken_saved_value_is_dropped_and_the_rest_applies(isolated_env: Path) -> None:
    isolated_env.mkdir(parents=True, exist_ok=True)
    (isolated_env / "settings.json").write_text(json.dumps({"llm_base_url": "not a url", "llm_temperature": 9, "top_k": 7}))
    settings = Settings()  # the URL fails its validator, the temperature its bound: both dropped
    assert (settings.llm_base_url, settings.llm_temperature, settings.top_k) == ("http://127.0.0.1:8000/v1", 0.1, 7)
    (isolated_env / "settings.json").write_text("{not json")
    assert Settings().top_k == 5


def test_saving_a_field_the_environment_sets_says_where_to_change_it(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHARD_TOP_K", "7")
    current = Settings()
    new, problems = save_changes(current, {"top_k": 3})
    assert new is None and "ORCHARD_TOP_K" in problems["top_k"] and not (isolated_env / "settings.json").exists()
    new, problems = save_changes(current, {"top_k": 7, "dense_weight": 0.3})  # unchanged: fine to keep
    assert problems == {} and Settings().dense_weight == 0.3
