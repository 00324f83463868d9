"""MedLens dashboard: a Streamlit app over the response store (`streamlit run dashboard/app.py -- --store DIR`
or `python -m dashboard --store DIR`).

Layout (STYLE: trulens): `app.py` configures and navigates; `tabs/<page>.py` each render one page;
`queries.py` holds all SQL; `figures.py`, `exports.py`, `filters.py`, `vocab.py` are pure. The
dashboard reads the store through `cache/` and never imports `ingest/`.
"""
