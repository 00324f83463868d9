"""Dashboard pages, one module each with a single ``render()`` (run by st.navigation as a script).

Not named ``pages/``: a ``pages/`` folder beside the entry script switches Streamlit into its legacy
multipage mode for the first run of every session, which drops the sidebar on later page switches.
"""
