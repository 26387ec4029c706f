"""The settings page (a file, so `AppTest.switch_page("ui/pages/settings.py")` can open it)."""

from orchard.ui import settings

settings.page()
