"""The Streamlit script ``orchard app`` serves (:mod:`orchard.ui.entry.streamlit_app`).

It has a folder of its own: Streamlit treats a ``pages/`` folder next to the main script as
old-style pages and would run them without the navigation and the sidebar.
"""
