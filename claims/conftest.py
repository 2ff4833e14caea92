"""The bundled claims need no fixtures of their own: the plugin gives ``ctx``, ``check`` and the rest."""
