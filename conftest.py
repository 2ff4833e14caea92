"""This repo's pytest setup. The plugin itself loads through its ``pytest11`` entry point (``mechclaims.plugin``,
installed by ``make setup``); the line below only adds this repo's short option aliases (``--model`` for
``--mc-model``, see mechclaims/aliases.py). Naming ``mechclaims.plugin`` too is a no-op where the entry point
already registered it under that name, and keeps a checkout whose install predates the entry point working."""
pytest_plugins = ("mechclaims.plugin", "mechclaims.harness.aliases")
