"""``orchard tune`` through the use case on the tiny model of test_tune_tiny: rows in, an adapter kept
under the data folder, loaded by the embedded server's command once active (the real pipeline:
TRL + PEFT training, llama.cpp's converter, llama.cpp applying it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import USER_DATA_DIR
from tests.fakes import scripted_orchard
from tests.live.test_tune_tiny import SFT_ROWS, chat_text, tiny  # noqa: F401  (tiny: the module's fixture)

pytestmark = pytest.mark.live


def test_tune_keeps_an_adapter_that_the_embedded_server_loads_once_active(tiny, tmp_path: Path) -> None:  # noqa: F811
    from orchard.tuning.gguf_lora import check_adapter
    from orchard.usecases.model_server import ModelServer

    _, base, _, tokenizer = tiny
    orchard = scripted_orchard(tmp_path / "data", cache_dir=USER_DATA_DIR / "cache", default_user="ann", model_preset=str(base))
    seen = []
    adapter = orchard.tuning.train("sft", name="tiny-sft", user="ann", rows=SFT_ROWS, model=str(base), steps=2, progress=seen.append)
    assert [p.step for p in seen] == [1, 2] and adapter.training["steps"] == 2 and adapter.rows == 2
    assert adapter.gguf.is_file() and (adapter.peft / "adapter_config.json").is_file()
    assert [row["name"] for row in orchard.tuning.list("ann")] == ["tiny-sft"] and orchard.tuning.list("bob") == []
    check = check_adapter(base, adapter.gguf, prompt=chat_text(tokenizer, SFT_ROWS[0]["prompt"]), max_tokens=4)
    assert check.changed  # llama.cpp applies the kept adapter
    models = ModelServer(orchard.settings)
    assert "--lora_path" not in models.embedded_command()
    orchard.tuning.activate("tiny-sft", user="ann", force=True)  # no gate on a random model
    command = models.embedded_command()
    assert command[command.index("--lora_path") + 1] == str(adapter.gguf)
