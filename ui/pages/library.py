"""The library page (a file, so the tests can open it with `AppTest.switch_page`)."""

from orchard.ui import library

library.page()
