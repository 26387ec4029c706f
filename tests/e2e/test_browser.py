"""What a person sees: ask in the browser, get a streamed answer with numbered sources."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.live]


def screenshot_dir(tmp_path: Path) -> Path:
    """``SCREENSHOT_DIR=docs`` refreshes the screenshots kept in docs/; tests never write there otherwise."""
    import os

    return Path(os.environ.get("SCREENSHOT_DIR") or tmp_path)


def test_a_cited_answer_in_the_browser(browser, streamlit_app: str, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(streamlit_app)
    page.get_by_test_id("stChatInput").locator("textarea").fill("When should apple trees be pruned?")
    page.keyboard.press("Enter")
    answer = page.get_by_test_id("stChatMessage").nth(1)
    answer.wait_for(timeout=120_000)
    expander = page.get_by_test_id("stExpander").first
    expander.wait_for(timeout=180_000)  # sources appear once the answer has streamed
    text = answer.inner_text()
    assert "winter" in text.lower() and "[1]" in text
    assert "fruit-tree-care.html" in expander.inner_text()
    expander.click()
    page.get_by_text("Pruning").first.wait_for(timeout=10_000)
    page.screenshot(path=str(screenshot_dir(tmp_path) / "chat-cited-answer.png"), full_page=True)
    page.close()
