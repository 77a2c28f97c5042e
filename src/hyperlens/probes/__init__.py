"""Probe batteries built on the models and geometry layers; each returns JSON-ready results."""
