"""Built-in tools, one plugin module per family.

Each module defines plain typed ``async def name(ctx, ...)`` functions and a
``register_tools`` hook implementation that registers them:

- :mod:`plugins.tools.bash`: ``bash`` (a shell command in the workspace)
- :mod:`plugins.tools.files`: ``read_file``, ``write_file``, ``edit_file``
- :mod:`plugins.tools.search`: ``grep``, ``glob``
- :mod:`plugins.tools.think`: ``think`` (a private scratchpad)
"""

TOOL_PLUGIN_MODULES = (
    "plugins.tools.bash",
    "plugins.tools.files",
    "plugins.tools.search",
    "plugins.tools.think",
)
