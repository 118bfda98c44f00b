"""Test harness for Matrix: a real Synapse homeserver and nio-driven "human" users.

See :mod:`tests.matrix_harness.synapse` (the server), :mod:`tests.matrix_harness.human` (the
scripted user) and :mod:`tests.matrix_harness.fixtures` (pytest fixtures to import into a conftest).
"""

from tests.matrix_harness.human import HumanClient, MatrixRequestError
from tests.matrix_harness.synapse import (
    RegisteredUser,
    SynapseError,
    SynapseNotInstalled,
    SynapseServer,
)

__all__ = [
    "HumanClient",
    "MatrixRequestError",
    "RegisteredUser",
    "SynapseError",
    "SynapseNotInstalled",
    "SynapseServer",
]
