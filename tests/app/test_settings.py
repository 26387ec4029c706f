"""The settings page: model and retrieval, prompt templates, the constitution, preferences."""

from __future__ import annotations

import json

from orchard.user_settings import load_settings
from tests.app.helpers import ask, button, texts


def settings_page(open_app):
    return open_app(page="settings")


def test_settings_are_validated_saved_and_the_service_rebuilt(open_app, service) -> None:
    embedder, store = service.embeddings, service.store
    at = settings_page(open_app)
    at.number_input(key="set_top_k").set_value(8)
    at.text_input(key="set_llm_model").input("my-model")
    button(at, "Save settings").click().run()
    assert not at.exception
    saved = json.loads((service.settings.data_dir / "settings.json").read_text())
    assert saved == {"top_k": 8, "llm_model": "my-model"}
    assert load_settings().top_k == 8  # what the next process (and the CLI) reads
    rebuilt = at.session_state["chat_service"]
    assert rebuilt is not service and rebuilt.settings.top_k == 8
    assert rebuilt.embeddings is embedder and rebuilt.store is store  # heavy objects reused
    assert any("Settings saved" in t.value for t in at.toast)
    assert at.number_input(key="set_top_k").value == 8


def test_invalid_settings_are_shown_by_field_and_the_typed_values_kept(open_app, service) -> None:
    # The widgets keep numbers in range, so the service's own refusal is scripted here.
    service.save_settings = lambda changes: (None, {"llm_base_url": "not a URL — expected http://HOST:PORT/v1"})
    at = settings_page(open_app)
    at.text_input(key="set_llm_base_url").input("localhost-8000")
    at.text_input(key="set_llm_model").input("typed-model")
    button(at, "Save settings").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == ["Model endpoint: not a URL — expected http://HOST:PORT/v1"]
    assert at.text_input(key="set_llm_base_url").value == "localhost-8000"
    assert at.text_input(key="set_llm_model").value == "typed-model"
    assert at.session_state["chat_service"] is service
    assert not (service.settings.data_dir / "settings.json").exists()


def test_a_number_out_of_range_never_reaches_the_settings(open_app, service) -> None:
    at = settings_page(open_app)
    at.number_input(key="set_top_k").set_value(99)  # past the widget's limit, as a crafted request could
    button(at, "Save settings").click().run()
    assert not at.exception
    assert not (service.settings.data_dir / "settings.json").exists()


def test_the_prompt_editor_rejects_a_missing_variable_and_keeps_the_draft(open_app, service) -> None:
    at = settings_page(open_app)
    at.selectbox(key="prompt_name").set_value("rag_answer").run()
    area = at.text_area(key="area_prompt_rag_answer")
    default = area.value
    assert "{context}" in default
    broken = default.replace("{context}", "(no sources)")
    area.input(broken)
    button(at, "Save").click().run()
    assert not at.exception
    assert "Not saved: 2 problems to fix. Your text is kept." in at.error[0].value
    assert "missing: {context}" in texts(at)
    assert at.text_area(key="area_prompt_rag_answer").value == broken
    assert not (service.settings.prompts_path / "rag_answer.yaml").exists()
    fixed = default.replace("Be concise", "Be brief")
    at.text_area(key="area_prompt_rag_answer").input(fixed)
    button(at, "Save").click().run()
    assert (service.settings.prompts_path / "rag_answer.yaml").read_text().strip() == fixed.strip()
    assert "your version" in at.selectbox(key="prompt_name").format_func("rag_answer")
    button(at, "Reset to default").click().run()
    assert not (service.settings.prompts_path / "rag_answer.yaml").exists()
    assert at.text_area(key="area_prompt_rag_answer").value == default


def test_validate_says_valid_and_discard_restores(open_app) -> None:
    at = settings_page(open_app)
    at.selectbox(key="prompt_name").set_value("chat").run()
    original = at.text_area(key="area_prompt_chat").value
    button(at, "Validate").click().run()
    assert "Valid." in [s.value for s in at.success]
    at.text_area(key="area_prompt_chat").input("not: [valid")
    button(at, "Discard changes").click().run()
    assert at.text_area(key="area_prompt_chat").value == original


def test_the_constitution_is_editable_like_the_prompts(open_app, service) -> None:
    at = settings_page(open_app)
    area = at.text_area(key="area_constitution")
    default = area.value
    assert "name: harmless" in default
    area.input("principles: []\n")
    button(at, "Save", nth=1).click().run()
    assert not at.exception
    assert "Not saved" in at.error[0].value
    edited = default.replace("Does the answer fail to answer the question that was asked?",
                             "Does the answer miss the question that was asked?")  # fmt: skip
    at.text_area(key="area_constitution").input(edited)
    button(at, "Save", nth=1).click().run()
    assert service.constitution_text().strip() == edited.strip()
    button(at, "Reset to default", nth=1).click().run()
    assert service.constitution_text(packaged=True) == service.constitution_text()


def test_my_preferences_are_visible_editable_and_deletable(open_app, library) -> None:
    chat = open_app()
    chat.segmented_control[0].set_value("rag").run()
    ask(chat, "When are apple trees pruned?")
    message_id = library.conversations.messages("ana", chat.query_params["c"])[1].id
    chat.feedback[0].set_value(0).run()
    chat.text_area(key=f"comment_{message_id}").input("Too long, keep it short.")
    button(chat, "Send feedback").click().run()
    learned = library.profiles.get("ana")
    assert learned
    at = settings_page(open_app)
    assert at.text_area(key="profile_ana").value == learned
    assert "Too long, keep it short." in texts(at)
    at.text_area(key="profile_ana").input(learned + "\n- Use British spelling")
    button(at, "Save", nth=2).click().run()
    assert "Use British spelling" in library.profiles.get("ana")
    assert "Use British spelling" in library.preferences("ana")
    button(at, "Delete profile").click().run()
    button(at, "Delete").click().run()
    assert not at.exception
    assert library.profiles.get("ana") == ""
    assert at.text_area(key="profile_ana").value == ""


def test_preferences_are_per_user(open_app, service) -> None:
    service.profiles.set("ana", "- Answer in French")
    bob = settings_page(lambda **kw: open_app(user="bob", **kw))
    assert bob.text_area(key="profile_bob").value == ""
    assert "French" not in texts(bob)
