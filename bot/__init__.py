"""threadwright: a self-hosted, local-first coding agent that lives in team chat.

Plugin authors import :data:`hookimpl` from here::

    from bot import hookimpl

    @hookimpl
    def register_tools(register, config):
        register(my_tool)
"""

import pluggy

__version__ = "0.1.0"

PROJECT_NAME = "threadwright"

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
hookspec = pluggy.HookspecMarker(PROJECT_NAME)

__all__ = ["PROJECT_NAME", "__version__", "hookimpl", "hookspec"]
