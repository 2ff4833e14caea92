"""mechclaims: the plugin provides options, fixtures and the session report (see mechclaims/plugin.py)."""
pytest_plugins = ("mechclaims.plugin",)
