"""Tiny seeded datasets and comparison helpers for tests (shipped, so users can test too)."""

from obliviate.testing.fixtures import assert_models_equal, make_blobs, model_parameters

__all__ = ["assert_models_equal", "make_blobs", "model_parameters"]
