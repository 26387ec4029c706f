"""Service: model-server errors, settings, merging streamed chunks."""

from __future__ import annotations

import time

import pytest

from orchard.config import Settings
from orchard.errors import ModelServerUnavailable
from orchard.service import ChatService, merge_chunks
from tests.conftest import free_port


@pytest.mark.enable_socket
def test_a_non_default_url_that_does_not_answer_fails_fast_with_advice() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    service = ChatService(Settings(llm_base_url=url))
    started = time.perf_counter()
    with pytest.raises(ModelServerUnavailable, match=r"unreachable at .*orchard serve.*ORCHARD_LLM_BASE_URL"):
        service.ensure_model_server()
    assert time.perf_counter() - started < 5


def test_settings_read_the_environment_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    (tmp_path / ".env").write_text("ORCHARD_TOP_K=7\nORCHARD_LLM_MODEL=from-dotenv\n")
    monkeypatch.setenv("ORCHARD_LLM_MODEL", "from-env")
    settings = Settings()
    assert settings.top_k == 7 and settings.llm_model == "from-env"  # the environment wins over .env
    assert settings.store_path == settings.data_dir / "store"
    assert settings.is_default_llm_url


def test_invalid_settings_are_rejected_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHARD_DENSE_WEIGHT", "1.5")
    with pytest.raises(ValueError, match="dense_weight"):
        Settings()


def test_merge_chunks_concatenates_the_answer() -> None:
    merged = merge_chunks(iter([{"sources": [1]}, {"answer": "a"}, {"answer": "b"}, {"grounded": True}]))
    assert merged == {"sources": [1], "answer": "ab", "grounded": True}


# langchain-openai creates (and closes) a socket to probe which TCP keep-alive options the system
# supports; no connection is made, but pytest-socket warns about it.
@pytest.mark.filterwarnings("ignore:A test tried to use socket.socket")
def test_the_token_limit_reaches_llama_cpp_too() -> None:
    payload = ChatService(Settings(llm_max_tokens=77)).llm._get_request_payload("hi")
    assert payload["extra_body"] == {"max_tokens": 77}  # llama-cpp-python ignores max_completion_tokens
