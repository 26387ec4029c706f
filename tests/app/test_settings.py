"""The settings page: model and retrieval, prompt templates, the constitution, preferences."""

from __future__ import annotations

import json

from orchard.config import load_settings
from tests.app.helpers import ask, button, texts


def settings_page(open_app):
    return open_app(page="settings")


def test_settings_are_validated_saved_and_orchard_rebuilt(open_app, orchard) -> None:
    embedder, store = orchard.components.embeddings, orchard.components.store
    at = settings_page(open_app)
    at.number_input(key="set_top_k").set_value(8)
    at.text_input(key="set_llm_model").input("my-model")
    button(at, "Save settings").click().run()
    assert not at.exception
    saved = json.loads((orchard.settings.data_dir / "settings.json").read_text())
    assert saved == {"top_k": 8, "llm_model": "my-model"}
    assert load_settings().top_k == 8  # what the next process (and the CLI) reads
    rebuilt = at.session_state["orchard"]
    assert rebuilt is not orchard and rebuilt.settings.top_k == 8 and rebuilt.settings.llm_model == "my-model"
    assert rebuilt.components.embeddings is embedder and rebuilt.components.store is store  # heavy parts reused
    assert any("Settings saved" in t.value for t in at.toast)
    assert at.number_input(key="set_top_k").value == 8


def test_invalid_settings_are_shown_by_field_and_the_typed_values_kept(open_app, orchard) -> None:
    at = settings_page(open_app)
    at.text_input(key="set_llm_base_url").input("localhost-8000")
    at.text_input(key="set_llm_model").input("typed-model")
    button(at, "Save settings").click().run()
    assert not at.exception
    [problem] = [e.value for e in at.error]  # the use case's own validation, shown by field
    assert problem.startswith("Model endpoint: ") and "must be an http(s) URL with a host" in problem
    assert at.text_input(key="set_llm_base_url").value == "localhost-8000"
    assert at.text_input(key="set_llm_model").value == "typed-model"
    assert at.session_state["orchard"] is orchard
    assert not (orchard.settings.data_dir / "settings.json").exists()


def test_a_number_out_of_range_never_reaches_the_settings(open_app, orchard) -> None:
    at = settings_page(open_app)
    at.number_input(key="set_top_k").set_value(99)  # past the widget's limit, as a crafted request could
    button(at, "Save settings").click().run()
    assert not at.exception
    assert not (orchard.settings.data_dir / "settings.json").exists()


def test_the_prompt_editor_rejects_a_missing_variable_and_keeps_the_draft(open_app, orchard) -> None:
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
    assert not (orchard.settings.prompts_path / "rag_answer.yaml").exists()
    fixed = default.replace("Be concise", "Be brief")
    at.text_area(key="area_prompt_rag_answer").input(fixed)
    button(at, "Save").click().run()
    assert (orchard.settings.prompts_path / "rag_answer.yaml").read_text().strip() == fixed.strip()
    assert "your version" in at.selectbox(key="prompt_name").format_func("rag_answer")
    button(at, "Reset to default").click().run()
    assert not (orchard.settings.prompts_path / "rag_answer.yaml").exists()
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


def test_the_constitution_is_editable_like_the_prompts(open_app, orchard) -> None:
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
    assert orchard.customization.constitution_text().strip() == edited.strip()
    button(at, "Reset to default", nth=1).click().run()
    assert orchard.customization.constitution_text(packaged=True) == orchard.customization.constitution_text()


def test_my_preferences_are_visible_editable_and_deletable(open_app, library) -> None:
    chat = open_app()
    chat.segmented_control[0].set_value("rag").run()
    ask(chat, "When are apple trees pruned?")
    message_id = library.conversations.messages("ana", chat.query_params["c"])[1].id
    chat.feedback[0].set_value(0).run()
    chat.text_area(key=f"comment_{message_id}").input("Too long, keep it short.")
    button(chat, "Send feedback").click().run()
    learned = library.feedback.profile("ana")
    assert learned
    at = settings_page(open_app)
    assert at.text_area(key="profile_ana").value == learned
    assert "Too long, keep it short." in texts(at)
    at.text_area(key="profile_ana").input(learned + "\n- Use British spelling")
    button(at, "Save", nth=2).click().run()
    assert "Use British spelling" in library.feedback.profile("ana")
    assert "Use British spelling" in library.answers.preferences("ana")
    button(at, "Delete profile").click().run()
    button(at, "Delete").click().run()
    assert not at.exception
    assert library.feedback.profile("ana") == ""
    assert at.text_area(key="profile_ana").value == ""


def test_preferences_are_per_user(open_app, orchard) -> None:
    orchard.feedback.set_profile("ana", "- Answer in French")
    bob = settings_page(lambda **kw: open_app(user="bob", **kw))
    assert bob.text_area(key="profile_bob").value == ""
    assert "French" not in texts(bob)


def test_a_saved_prompt_is_used_from_the_next_question_on(open_app, model) -> None:
    at = settings_page(open_app)
    at.selectbox(key="prompt_name").set_value("chat").run()
    edited = at.text_area(key="area_prompt_chat").value.replace("Answer clearly and concisely.", "Answer in one short sentence.")
    at.text_area(key="area_prompt_chat").input(edited)
    button(at, "Save").click().run()
    assert not at.exception
    chat = open_app()
    chat.segmented_control[0].set_value("chat").run()
    ask(chat, "Hi")
    assert "Answer in one short sentence." in model.sent("chat")[-1][0].text


def test_what_orchard_learned_shows_the_reward_model_and_switches_adapters(open_app, orchard) -> None:
    from tests.unit.test_adapters import add

    for i in range(3):
        orchard.feedback.add(user="ana", prompt=f"q{i}", response=f"short {i}", rating="up")
        orchard.feedback.add(user="ana", prompt=f"q{i}", response=f"a much longer answer number {i}", rating="down")
    orchard.learning.train_reward("ana")
    adapters = orchard.components.adapters
    add(adapters, "ana-dpo", "ana")
    add(adapters, "bob-dpo", "bob")  # bob's: never shown to ana
    adapters.set_gate("ana-dpo", {"passed": True})
    at = settings_page(open_app)
    shown = texts(at)
    assert "**Reward model v1** · trained on 6 ratings, 3 pairs" in shown
    assert "**ana-dpo** · dpo on qwen-0.5b, 3 rows · passed its check" in shown and "bob-dpo" not in shown
    button(at, "Use it").click().run()
    assert not at.exception and adapters.active("ana").name == "ana-dpo"
    assert ":green-badge[answering]" in texts(at)
    button(at, "Switch back to the base model").click().run()
    assert adapters.active("ana") is None
