"""The Streamlit script of ``orchard app``: packaged, so an installed wheel serves the app.

``orchard app`` runs ``streamlit run <this file>`` with the app's options (:mod:`orchard.launch`);
the checkout's top-level ``app.py`` is the same one call.
"""

from orchard.ui.shell import run

run()
