"""The chat page (a file, so `AppTest.switch_page("ui/pages/chat.py")` can open it)."""

from orchard.ui import chat

chat.page()
