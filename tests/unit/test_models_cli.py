"""`orchard models list|quantize|bench` argument handling, model naming, the trade-off table
(fake model files and a fake quantizer: llama.cpp is exercised in tests/live/test_live_models.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchard import model_bench, quantize
from orchard.cli import app
from orchard.config import Settings
from orchard.errors import ModelAssemblyError
from orchard.model import installed_models, parse_model_name, resolve_model, served_name_for, variant_path

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture
def cache(isolated_env: Path) -> Path:
    """<data_dir>/cache with a (fake) assembled 0.5B and two variants."""
    models = isolated_env / "cache" / "models"
    models.mkdir(parents=True)
    for name, size in (("qwen-0.5b", 300), ("qwen-0.5b-q2_k", 100), ("qwen-0.5b-q8_0", 500), ("notes", 1)):
        (models / f"{name}.gguf").write_bytes(b"GGUF" + b"x" * size)
    return isolated_env / "cache"


def test_variant_names_map_to_their_preset_type_and_served_name() -> None:
    assert parse_model_name("qwen-1.5b-q3_k_m") == ("qwen-1.5b", "Q3_K_M")
    assert parse_model_name("qwen-0.5b") == ("qwen-0.5b", "Q4_K_M")
    assert parse_model_name("qwen-0.5b-q9") is None and parse_model_name("llama-7b-q8_0") is None
    assert served_name_for("qwen-1.5b") == "qwen2.5-coder-1.5b-instruct"
    assert served_name_for("qwen-0.5b-q2_k") == "qwen2.5-coder-0.5b-instruct-q2_k"
    assert served_name_for("/models/x.gguf") is None


def test_installed_models_lists_presets_then_variants_largest_type_first(cache: Path) -> None:
    found = installed_models(cache)
    assert [(m.name, m.quant_type) for m in found] == [("qwen-0.5b", "Q4_K_M"), ("qwen-0.5b-q8_0", "Q8_0"), ("qwen-0.5b-q2_k", "Q2_K")]
    assert found[2].size == 104 and found[2].served_name == "qwen2.5-coder-0.5b-instruct-q2_k"


def test_a_variant_resolves_to_its_file_and_a_missing_one_says_how_to_make_it(cache: Path) -> None:
    assert resolve_model("qwen-0.5b-q2_k", cache_dir=cache) == (variant_path("qwen-0.5b", "Q2_K", cache_dir=cache), "qwen2.5-coder-0.5b-instruct-q2_k")
    with pytest.raises(ModelAssemblyError, match=r"orchard models quantize qwen-0\.5b --type Q3_K_M"):
        resolve_model("qwen-0.5b-q3_k_m", cache_dir=cache)


def test_the_client_asks_for_the_served_name_of_the_selected_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's bug: ORCHARD_MODEL_PRESET=qwen-1.5b was served (and asked for) under the 0.5B's name."""
    assert Settings().llm_model == "qwen2.5-coder-0.5b-instruct"
    monkeypatch.setenv("ORCHARD_MODEL_PRESET", "qwen-1.5b")
    assert Settings().llm_model == "qwen2.5-coder-1.5b-instruct"
    assert Settings(model_preset="qwen-0.5b-q3_k_m").llm_model == "qwen2.5-coder-0.5b-instruct-q3_k_m"
    monkeypatch.setenv("ORCHARD_LLM_MODEL", "my-name")  # set by the user: kept
    assert Settings().llm_model == "my-name"


def test_the_embedded_server_serves_the_selected_model_under_its_own_name(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchard import model as model_mod
    from orchard.usecases.model_server import ModelServer

    monkeypatch.setattr(model_mod, "assemble_model", lambda preset, cache_dir: cache / "models" / f"{preset.name}.gguf")

    def alias(settings: Settings, **kw: str) -> str:
        cmd = ModelServer(settings).embedded_command(**kw)
        return cmd[cmd.index("--model_alias") + 1]

    assert alias(Settings(model_preset="qwen-1.5b")) == "qwen2.5-coder-1.5b-instruct"
    assert alias(Settings(), model="qwen-1.5b") == "qwen2.5-coder-1.5b-instruct"
    assert alias(Settings(model_preset="qwen-0.5b-q2_k")) == "qwen2.5-coder-0.5b-instruct-q2_k"
    assert alias(Settings(), model="qwen-0.5b-q2_k", served_name="x") == "x"


def test_list_shows_the_files_the_selection_and_the_measured_figures(cache: Path, isolated_env: Path) -> None:
    model_bench.save_result(model_bench.results_path(isolated_env), "qwen-0.5b-q2_k", {
        "rss_after_load_mib": 400.0, "rss_after_answers_mib": 450.4, "prompt_tokens_per_s": 130.5,
        "decode_tokens_per_s": 30.2, "quality": {"right_and_cited": 0.5, "questions": 12},
    })  # fmt: skip
    result = invoke("models", "list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("| Model | Type | Size MB | RAM MB | Prompt tok/s | Decode tok/s | Right & cited |")
    assert "| * qwen-0.5b | Q4_K_M | 0 | - | - | - | - |" in lines
    assert "|   qwen-0.5b-q2_k | Q2_K | 0 | 450 | 130.5 | 30.2 | 0.500 |" in lines
    rows = json.loads(invoke("models", "list", "--json").stdout)
    assert rows["selected"] == "qwen-0.5b" and [r["selected"] for r in rows["models"]] == [True, False, False]


def test_list_without_model_files_says_how_to_get_one(isolated_env: Path) -> None:
    result = invoke("models", "list")
    assert result.exit_code == 0 and "orchard model" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["qwen-0.5b", "--type", "Q9"], "unknown quantization type 'Q9'"),
        (["qwen-7b", "--type", "Q8_0"], "unknown preset 'qwen-7b'"),
        (["qwen-0.5b", "--type", "q4_k_m"], "already is Q4_K_M"),
        (["qwen-0.5b", "--type", "Q8_0", "--type", "nope"], "unknown quantization type 'nope'"),
    ],
)
def test_quantize_refuses_bad_arguments_before_any_work(args: list[str], message: str, cache: Path, monkeypatch) -> None:
    monkeypatch.setattr(quantize, "llama_quantize", lambda *a, **k: pytest.fail("quantized"))
    from orchard.cli import main

    monkeypatch.setattr("sys.argv", ["orchard", "models", "quantize", *args])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 1


def test_quantize_writes_the_variant_from_the_assembled_preset(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(quantize, "assemble_model", lambda preset, cache_dir: cache / "models" / "qwen-0.5b.gguf")

    def fake(source: Path, target: Path, ftype: str, *, threads: int = 0) -> None:
        calls.append((source.name, target.name, ftype))
        target.write_bytes(b"GGUF-q3")

    monkeypatch.setattr(quantize, "llama_quantize", fake)
    result = invoke("models", "quantize", "qwen-0.5b", "--type", "q3_k_m", "-t", "Q2_K")
    assert result.exit_code == 0, result.output
    assert calls == [("qwen-0.5b.gguf", "qwen-0.5b-q3_k_m.gguf", "Q3_K_M")]  # Q2_K exists already: reused
    assert result.stdout.split() == [str(cache / "models" / "qwen-0.5b-q3_k_m.gguf"), str(cache / "models" / "qwen-0.5b-q2_k.gguf")]


def test_a_failed_llama_quantize_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import llama_cpp

    monkeypatch.setattr(llama_cpp, "llama_model_quantize", lambda src, dst, params: Path(dst.decode()).write_bytes(b"half") and 1)
    target = tmp_path / "out.gguf"
    with pytest.raises(ModelAssemblyError, match="could not quantize"):
        quantize.llama_quantize(tmp_path / "in.gguf", target, "Q8_0")
    assert list(tmp_path.iterdir()) == []


def test_bench_checks_its_arguments(cache: Path, isolated_env: Path) -> None:
    assert invoke("models", "bench", "--questions", "-1").exit_code == 1
    missing = invoke("models", "bench", "qwen-0.5b", "--answers", str(isolated_env / "none.jsonl"))
    assert missing.exit_code == 1 and "not found" in missing.output
    questions = isolated_env / "q.jsonl"
    questions.write_text('{"q": "?", "pages": ["a.md"], "facts": ["x"]}\n')
    no_store = invoke("models", "bench", "qwen-0.5b", "--answers", str(questions))
    assert no_store.exit_code == 1 and "no documents store" in no_store.output


def test_results_are_merged_by_model_and_read_back(tmp_path: Path) -> None:
    path = model_bench.results_path(tmp_path)
    assert model_bench.load_results(path) == {}
    model_bench.save_result(path, "a", {"decode_tokens_per_s": 1.0})
    model_bench.save_result(path, "b", {"decode_tokens_per_s": 2.0})
    model_bench.save_result(path, "a", {"decode_tokens_per_s": 3.0})
    assert model_bench.load_results(path) == {"a": {"decode_tokens_per_s": 3.0}, "b": {"decode_tokens_per_s": 2.0}}
    assert sorted(p.name for p in path.parent.iterdir()) == ["models.json"]  # no partial file left
    path.write_text("not json")
    assert model_bench.load_results(path) == {}


def test_the_prefill_prompt_differs_only_in_its_first_line_and_rss_is_read() -> None:
    first, second = model_bench.prompt_text(1).split("\n", 1), model_bench.prompt_text(2).split("\n", 1)
    assert first[0] != second[0] and first[1] == second[1] and len(first[1].split()) > 300
    assert model_bench.rss_mib(os.getpid()) > 10
    assert model_bench.rss_mib(2**22 + 12345) is None
