"""Orchard: private chat over your documents and data (Streamlit).

Run with ``make run`` (or ``orchard app``, which serves the packaged copy of this entry,
``orchard/ui/entry/streamlit_app.py``). The pages live in ``ui/``; they call Orchard's use cases
and nothing else. Tests put their own Orchard in ``st.session_state["orchard"]``.
"""

from orchard.ui.shell import run

run()
