"""Probe batteries built on the functional layer (mha_cv, ...)."""
