"""Batteries that measure frozen models and return report-ready results (weights, geometry)."""
