"""The HTTP API over the real model (llama.cpp, 0.5B) and the real embedder, with real clients."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.helpers import serving

pytestmark = pytest.mark.live
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def base_url(live_server: str, embedder, tmp_path: Path):
    """`orchard api`'s app over the sample documents, served by uvicorn on a free port."""
    from orchard.api import create_app
    from orchard.components import Components
    from orchard.config import Settings
    from orchard.usecases import build_orchard

    settings = Settings(llm_base_url=live_server, data_dir=tmp_path / "data", llm_max_tokens=200, llm_temperature=0.0)
    orchard = build_orchard(components=Components(settings, embeddings=embedder))  # the real model-server check
    report = orchard.library.ingest([str(ROOT / "samples")], progress=False)
    assert report.files_indexed == 4 and not report.files_failed
    with serving(create_app(orchard)) as url:
        yield url


def test_a_cited_answer_streamed_through_the_api(base_url: str) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="personal", max_retries=0, timeout=300)
    stream = client.chat.completions.create(
        model="orchard-rag", stream=True, messages=[{"role": "user", "content": "When should apple trees be pruned?"}]
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    extra = chunks[-1].model_extra["orchard"]
    assert extra["grounded"] is True, text
    assert extra["cited"], f"no inline citation in: {text!r}"
    cited = {extra["sources"][n - 1]["source"] for n in extra["cited"]}
    assert any(s.endswith("fruit-tree-care.html") for s in cited), extra
    answer, _, footer = text.partition("\n\nSources:\n")
    assert "winter" in answer.lower()
    assert f"[{extra['cited'][0]}]" in answer
    assert "fruit-tree-care.html" in footer
    assert len(chunks) > 5  # streamed token by token


def test_a_follow_up_through_chat_openai(base_url: str) -> None:
    from langchain_core.messages import AIMessage, HumanMessage
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=f"{base_url}/v1", api_key="personal", model="orchard-rag", max_retries=0, timeout=300)
    reply = llm.invoke([
        HumanMessage("When are apple trees pruned?"),
        AIMessage("In late winter [1]."),
        HumanMessage("And plums?"),
    ])  # fmt: skip
    answer, _, footer = reply.content.partition("\n\nSources:\n")
    assert "summer" in answer.lower(), reply.content
    assert footer, reply.content  # cited


def test_concurrent_streams_all_complete_against_the_real_server(base_url: str) -> None:
    """Three clients at once: the model server queues them (llama.cpp answers one at a time, and
    does not even answer /models meanwhile); each stream completes with its own stored answer."""
    from concurrent.futures import ThreadPoolExecutor

    import openai

    questions = ["When should apple trees be pruned?", "When are plum trees pruned?", "Who coordinates the volunteers?"]

    def ask(question: str) -> tuple[str, dict]:
        client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="personal", max_retries=0, timeout=600)
        chunks = list(client.chat.completions.create(model="orchard-rag", stream=True,
                                                     messages=[{"role": "user", "content": question}]))  # fmt: skip
        return "".join(c.choices[0].delta.content or "" for c in chunks), chunks[-1].model_extra["orchard"]

    with ThreadPoolExecutor(max_workers=3) as pool:
        answers = list(pool.map(ask, questions))
    assert all(text.strip() for text, _ in answers), answers
    assert len({extra["message_id"] for _, extra in answers}) == 3
    assert len({extra["conversation_id"] for _, extra in answers}) == 3
