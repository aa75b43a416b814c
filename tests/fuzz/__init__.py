"""Spec fuzzing: grammar-aware generation, mutation, and the per-case harness (test_fuzz.py)."""
