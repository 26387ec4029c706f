"""The Settings page's model choice: the installed model files with their measured trade-offs
(`orchard models bench`'s saved figures), and choosing one for the embedded server."""

from __future__ import annotations

import json
from pathlib import Path

from tests.app.helpers import button, texts


def install(data_dir: Path, *names: str) -> None:
    models = data_dir / "cache" / "models"
    models.mkdir(parents=True, exist_ok=True)
    for name in names:
        (models / f"{name}.gguf").write_bytes(b"GGUF" + b"x" * 2_000_000)


def test_without_model_files_the_page_says_how_to_get_one(open_app) -> None:
    at = open_app(page="settings")
    assert "No model files yet" in texts(at)


def test_the_trade_off_table_shows_the_measured_figures_and_says_how_to_measure(open_app, orchard) -> None:
    data = orchard.settings.data_dir
    install(data, "qwen-0.5b", "qwen-0.5b-q2_k")
    at = open_app(page="settings")
    [table] = [d for d in at.dataframe if d.key == "model_trade_off"] or at.dataframe
    assert list(table.value["Model"]) == ["qwen-0.5b", "qwen-0.5b-q2_k"]
    assert "Not measured yet: run `orchard models bench`" in texts(at)

    (data / "bench").mkdir()
    (data / "bench" / "models.json").write_text(json.dumps({"models": {"qwen-0.5b-q2_k": {
        "rss_after_load_mib": 380.0, "rss_after_answers_mib": 420.0, "prompt_tokens_per_s": 150.2,
        "decode_tokens_per_s": 41.5, "quality": {"right_and_cited": 0.5, "questions": 12}}}}))  # fmt: skip
    at = open_app(page="settings")
    [table] = [d for d in at.dataframe if d.key == "model_trade_off"] or at.dataframe
    row = table.value.set_index("Model").loc["qwen-0.5b-q2_k"]
    assert (row["Type"], row["Size MB"], row["RAM MB"], row["Prompt tok/s"], row["Decode tok/s"], row["Right & cited"]) == (
        "Q2_K", 2, 420, 150.2, 41.5, 0.5)
    assert "quality: 12 questions" in texts(at)


def test_choosing_a_model_saves_it_and_the_client_asks_for_its_served_name(open_app, orchard) -> None:
    data = orchard.settings.data_dir
    install(data, "qwen-0.5b", "qwen-0.5b-q2_k")
    at = open_app(page="settings")
    assert at.selectbox(key="set_model_preset").value == "qwen-0.5b"
    assert button(at, "Use this model").disabled
    at.selectbox(key="set_model_preset").select("qwen-0.5b-q2_k").run()
    button(at, "Use this model").click().run()
    assert not at.exception
    assert json.loads((data / "settings.json").read_text()) == {"model_preset": "qwen-0.5b-q2_k"}
    rebuilt = at.session_state["orchard"]
    assert (rebuilt.settings.model_preset, rebuilt.settings.llm_model) == ("qwen-0.5b-q2_k", "qwen2.5-coder-0.5b-instruct-q2_k")
    assert any("qwen-0.5b-q2_k" in t.value for t in at.toast)
