"""Built-in plugins: chat adapters and tools, loaded through the same hooks as third-party ones."""
