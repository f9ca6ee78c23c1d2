"""Shared fixtures of the memory package's tests."""
