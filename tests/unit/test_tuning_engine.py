"""The tuning engine's logic without torch: rows to TRL's chat layout, teacher rows, extracting
the converters from an sdist (checked by sha256), and the errors that say what to do."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from orchard.tuning import converter
from orchard.tuning.distill import teacher_rows
from orchard.tuning.errors import TuningError
from orchard.tuning.gguf_lora import adapter_to_gguf, server_command
from orchard.tuning.hf_weights import hf_weights_from_gguf
from orchard.tuning.train import as_chat_rows


def test_plain_rows_become_chat_rows_and_extra_columns_are_dropped() -> None:
    rows = as_chat_rows([{"prompt": "Q?", "completion": "A.", "source": "thumbs"}], kind="sft", system="Be brief.")
    assert rows == [{
        "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q?"}],
        "completion": [{"role": "assistant", "content": "A."}],
    }]
    pair = as_chat_rows([{"prompt": "Q?", "chosen": "Good.", "rejected": "Bad.", "source": "ai-feedback"}], kind="dpo")
    assert pair[0]["chosen"] == [{"role": "assistant", "content": "Good."}]
    assert pair[0]["rejected"] == [{"role": "assistant", "content": "Bad."}]
    messages = [{"role": "user", "content": "Q?"}]
    assert as_chat_rows([{"prompt": messages, "completion": "A."}], kind="sft")[0]["prompt"] is messages


@pytest.mark.parametrize(("rows", "kind", "says"), [
    ([{"prompt": "Q?", "completion": ""}], "sft", "row 1 has no completion"),
    ([{"prompt": "Q?", "chosen": "A."}], "dpo", "row 1 has no rejected"),
    ([], "sft", "no sft rows"),
])
def test_bad_rows_are_refused_by_number(rows, kind, says) -> None:
    with pytest.raises(TuningError, match=says):
        as_chat_rows(rows, kind=kind)


def test_teacher_rows_skip_blank_failed_and_duplicate_questions() -> None:
    def teacher(question: str) -> str:
        if question == "boom?":
            raise RuntimeError("endpoint down")
        return "" if question == "blank?" else f"answer to {question}"

    asked: list[int] = []
    rows, skipped = teacher_rows(["a?", "a? ", " ", "boom?", "blank?", "b?"], teacher, progress=lambda n, q: asked.append(n))
    assert [r["prompt"] for r in rows] == ["a?", "b?"]
    assert rows[0] == {"prompt": "a?", "completion": "answer to a?", "source": "teacher"}
    assert skipped == 3 and asked == [1, 4, 5, 6]


def fake_sdist(path: Path) -> str:
    """A tar.gz laid out like llama-cpp-python's sdist, with a file the extraction must leave out."""
    vendor = f"llama_cpp_python-{converter.LLAMA_CPP_PYTHON_VERSION}/vendor/llama.cpp/"
    files = {
        "convert_hf_to_gguf.py": "print('hf')\n",
        "convert_lora_to_gguf.py": "import sys, gguf; print('lora', gguf.MARK, sys.argv[1:])\n",
        "conversion/__init__.py": "",
        "gguf-py/gguf/__init__.py": "MARK = 'vendored'\n",
        "src/llama.cpp": "int main() {}\n",
    }
    with tarfile.open(path, "w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(vendor + name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_converters_are_extracted_once_and_run_with_the_vendored_gguf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sdist = tmp_path / converter.SDIST_NAME
    monkeypatch.setattr(converter, "SDIST_SHA256", fake_sdist(sdist))
    cache = tmp_path / "cache"
    assert converter.cached_converters(cache) is None
    tools = converter.prepare_converters(cache_dir=cache, sdist=sdist)
    assert tools.lora_to_gguf.is_file() and (tools.gguf_py / "gguf" / "__init__.py").is_file()
    assert not (tools.root / "src").exists()
    assert json.loads((tools.root / "extracted.json").read_text())["sha256"] == converter.SDIST_SHA256
    sdist.unlink()  # cached: the archive is not needed again
    assert converter.prepare_converters(cache_dir=cache) == tools == converter.find_converters(cache)
    proc = tools.run(tools.lora_to_gguf, ["x", "--y"])
    assert "lora vendored ['x', '--y']" in proc.stdout


def test_a_tampered_sdist_is_refused(tmp_path: Path) -> None:
    sdist = tmp_path / converter.SDIST_NAME
    fake_sdist(sdist)
    with pytest.raises(TuningError, match="expected 832db069"):
        converter.prepare_converters(cache_dir=tmp_path / "cache", sdist=sdist)
    assert converter.cached_converters(tmp_path / "cache") is None


def test_missing_pieces_say_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(TuningError, match=r"python -m orchard\.tuning --cache-dir"):
        converter.find_converters(tmp_path)
    with pytest.raises(TuningError, match="not a PEFT adapter folder"):
        adapter_to_gguf(tmp_path, base_dir=tmp_path, out_file=tmp_path / "a.gguf", converters=converter.Converters(tmp_path))
    with pytest.raises(TuningError, match=r"orchard model qwen-0\.5b"):
        hf_weights_from_gguf(tmp_path / "none.gguf", cache_dir=tmp_path)


def test_server_command_passes_the_adapter_with_lora_path(tmp_path: Path) -> None:
    cmd = server_command(tmp_path / "base.gguf", tmp_path / "a.gguf", port=8123, n_ctx=256)
    assert cmd[1:3] == ["-m", "llama_cpp.server"]
    assert cmd[cmd.index("--lora_path") + 1] == str(tmp_path / "a.gguf") and cmd[cmd.index("--port") + 1] == "8123"
    assert "--lora_path" not in server_command(tmp_path / "base.gguf", None, port=8123)


def test_build_adapter_refuses_an_unknown_method_before_training(tmp_path: Path) -> None:
    from orchard.tuning.pipeline import build_adapter

    with pytest.raises(TuningError, match="unknown tuning method 'ppo'"):
        build_adapter("ppo", [], tmp_path, base_dir=tmp_path, converters=converter.Converters(tmp_path))
    assert not any(tmp_path.iterdir())
