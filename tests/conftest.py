"""Shared fixtures: the scripted Ollama server comes from the installed pytest
plugin (``bot.testing.pytest_plugin``); Synapse fixtures from the Matrix harness."""

from tests.matrix_harness.fixtures import human, matrix_user, synapse, synapse_default_limits

__all__ = ["human", "matrix_user", "synapse", "synapse_default_limits"]
