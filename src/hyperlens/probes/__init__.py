"""Batteries that measure a model and return report-ready data.

- :mod:`hyperlens.probes.terrain`: token-embedding and hidden-state geometry.
- :mod:`hyperlens.probes.mha_cv`: simplex-volume CV across attention head dimensions.
- :mod:`hyperlens.probes.weights`: weight spectra, ranks, sparsity and QK structure.
"""
