"""Which tests mechclaims parametrizes, and how: models and layers, with readable ids (``smollm2-135m-L10``).

Inert means inert: only a test that asks for ``lm``, ``ctx`` or ``mc_model`` is parametrized, and the parameter is
the prefixed ``mc_model`` (with ``layer``, jointly, when such a test also carries the ``claim`` marker and takes a
``layer``). A suite with its own ``model_name`` or ``layer`` fixture or parameter is never touched, so it collects
as if the plugin were not installed, and no run folder is made for it.
"""
from __future__ import annotations

from typing import Any

import pytest

from mechclaims.datasets.io import STIMULI_NAMES, check_stimuli_overrides
from mechclaims.errors import MechClaimsError
from mechclaims.model.registry import model_param_id
from mechclaims.harness.session import Session

ASKS = frozenset({"lm", "ctx", "mc_model"})


def wants_models(metafunc: pytest.Metafunc) -> bool:
    return bool(ASKS & set(metafunc.fixturenames))


def model_id(config: pytest.Config, name: str) -> str:
    """The model's part of a test id: its name, a hub id's last part, or a local folder's name with a short hash of
    its path (mechclaims.model.registry.model_param_id), so ids never depend on the order of ``--mc-model``."""
    return model_param_id(name, cwd=config.invocation_params.dir)


def generate(session: Session, metafunc: pytest.Metafunc) -> None:
    """Parametrize ``mc_model`` (and ``layer``, jointly) for the tests that want models."""
    if not wants_models(metafunc):
        return
    s, pool = session.activate()
    m = metafunc.definition.get_closest_marker("claim")
    kinds = tuple(m.kwargs["kinds"]) if m and "kinds" in m.kwargs else None
    with_layer = m is not None and "layer" in metafunc.fixturenames
    params = []
    for name in s.models:
        marks = []
        if kinds and pool.kind(name) not in kinds:
            marks = [pytest.mark.skip(reason=f"claim needs a {' or '.join(kinds)} model and {name} is "
                                             f"{pool.kind(name)}; run it with --mc-model on a {kinds[0]} model "
                                             f"(e.g. {'tiny-bert' if kinds[0] == 'masked' else 'smollm2-135m'})")]
        short = model_id(metafunc.config, name)
        if with_layer and marks:
            # One skip per model, not one per layer: the claim does not apply to this kind of model at all.
            params.append(pytest.param(name, -1, id=f"{short}-not-applicable", marks=marks))
        elif with_layer:
            params += [pytest.param(name, l, id=f"{short}-L{l}", marks=marks) for l in s.layer_list(pool.n_layers(name))]
        else:
            params.append(pytest.param(name, id=short, marks=marks))
    metafunc.parametrize(["mc_model", "layer"] if with_layer else ["mc_model"], params)


def modify_items(session: Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Check --mc-stimuli names against the bundled sets and those the collected claim modules declare (before -k
    deselects any); add each claim's family marker and its model's xdist group."""
    s = session.settings
    if s is not None and s.stimuli:
        mods = {id(i.module): i.module for i in items if getattr(i, "module", None) is not None}
        names = [*STIMULI_NAMES, *(n for mod in mods.values() for n in (getattr(mod, "STIMULI", None) or {}))]
        try:
            check_stimuli_overrides(s.stimuli, names)
        except MechClaimsError as e:
            raise pytest.UsageError(str(e)) from None
    for item in items:
        m = item.get_closest_marker("claim")
        if m is not None:
            item.add_marker(getattr(pytest.mark, m.kwargs.get("family", "observational")))
            cs: Any = getattr(item, "callspec", None)
            if cs is not None and "mc_model" in cs.params:  # xdist --dist loadgroup: one worker loads each model
                item.add_marker(pytest.mark.xdist_group(cs.params["mc_model"]))
