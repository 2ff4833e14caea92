"""Why a model could not be loaded, in one paragraph: not here at all (offline), or here but broken."""
from __future__ import annotations

from pathlib import Path

from safetensors import safe_open

from mechclaims.errors import ModelError
from mechclaims.model.registry import BUILTIN, closest_builtin


def offline_error(name: str, err: Exception) -> ModelError:
    return ModelError(
        f"model {name!r} is not one of the built-in models ({', '.join(BUILTIN)}) and its weights cannot be "
        f"had offline ({type(err).__name__}: {(str(err).splitlines() or [''])[0][:160]}). To use it, either download it "
        f"once where you have network access (`huggingface-cli download {name}`, which fills the HF cache at "
        f"$HF_HOME, default ~/.cache/huggingface) and copy that cache here, or pass a local directory holding "
        f"config.json, the weights and the tokenizer: `--mc-model /path/to/{name.split('/')[-1]}`.")


_CORRUPT = ("deserializ", "incomplete metadata", "header too", "truncat", "corrupt", "unexpected end",
            "failed finding central directory", "pytorchstreamreader")


def corrupt_weights(d: Path) -> list[str]:
    """The weight files in ``d`` that cannot be opened (truncated, garbled), each with its size and error."""
    bad = []
    for f in sorted(d.glob("*.safetensors")):
        try:
            with safe_open(str(f), framework="pt") as h:
                h.keys()
        except Exception as e:  # noqa: BLE001 - safetensors raises its own SafetensorError
            bad.append(f"{f.name} ({f.stat().st_size:,} bytes: {(str(e).splitlines() or [''])[0][:120]})")
    return bad


def load_error(name: str, err: Exception) -> ModelError:
    """A weights file that is there but broken gets its own message; only a model that is not here at all gets
    the offline one."""
    msg = f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
    d = Path(name).expanduser()
    if d.is_dir():
        bad = corrupt_weights(d)
        if bad:
            return ModelError(f"model directory {d}: the weights file {', '.join(bad)} is truncated or corrupt. Copy "
                              f"it again from its source (or download the model again) and rerun; nothing was "
                              f"loaded from it.")
        return ModelError(f"model directory {d} cannot be loaded ({msg}). It needs config.json, the weights "
                          f"(*.safetensors or pytorch_model.bin) and the tokenizer files, as save_pretrained() "
                          f"writes them.")
    if any(k in str(err).lower() for k in _CORRUPT):
        return ModelError(f"the weights of model {name!r} in the Hugging Face cache are truncated or corrupt ({msg}). "
                          f"Delete that model's folder under $HF_HOME/hub (default ~/.cache/huggingface/hub/models--"
                          f"{name.replace('/', '--')}) and download it again.")
    return offline_error(name, err)
