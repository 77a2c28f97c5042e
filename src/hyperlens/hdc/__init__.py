"""Estimators over hyperlens.functional: encoders, packed codes, search, streaming PCA."""
