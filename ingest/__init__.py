"""MedLens ingest: scan images into a manifest, prepare them, call the models and store every answer."""
