"""The library page (a file, so `AppTest.switch_page("ui/pages/library.py")` can open it)."""

from orchard.ui import library

library.page()
