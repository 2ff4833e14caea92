"""Degrade, don't die: full or read-only disks, and temp files left by killed runs.

Claim under test: a read-only or full cache dir gives one warning and the run goes on in memory (with
``--activation-cache off`` the cache dir is never touched); a full artifacts dir gives one clear error, stops the
run, and leaves no temp file; orphan temp files older than an hour are removed by the next run that takes the lock.

How a full disk is simulated: in child processes, ``RLIMIT_FSIZE`` (writes past the limit fail with EFBIG, a real
kernel error on a real file system, no root needed); in-process, the low-level write is monkeypatched to raise
``OSError(ENOSPC)``. Read-only: a cache dir path that runs through a regular file (ENOTDIR, which even root gets),
and a monkeypatched EROFS.
"""
from __future__ import annotations

import errno
import json
import os
import resource
import time
from pathlib import Path

import numpy as np
import pytest

from claimrun import run, runs, synthetic, temp_files

PROBE = '''
import numpy as np
import pytest

from mechclaims.forward.capture import capture, encode


@pytest.mark.parametrize("i", range(3))
def test_cache_probe(lm, model_pool, i):
    a = model_pool.activations(lm, "probe", ("v1",), lambda: capture(
        lm, encode(lm, ["Hello there.", "A cat sat."]), ["blocks.1.hook_resid_pre"], "last"))
    assert np.isfinite(a["blocks.1.hook_resid_pre"]).all()
'''

BIG_FIGURE = '''
import numpy as np
import pytest

from mechclaims.plots import plt, save_figure
from mechclaims.verdict.verdict import Verdict


@pytest.mark.claim("draws")
@pytest.mark.parametrize("i", range(4))
def test_draws(mc_model, i, artifacts, record):
    record(Verdict(claim="draws", statistic_name="x", statistic=1.0, rule="x > 0", passed=True))
    fig, ax = plt.subplots(figsize=(8, 6))
    ax.scatter(*np.random.default_rng(i).normal(size=(2, 20000)), s=1)  # noise: a PNG of several 100 kB
    save_figure(fig, artifacts.path("noise.png"), dpi=150)
'''


def _write(tmp: Path, name: str, text: str) -> Path:
    d = tmp / "claims_disk"
    d.mkdir(exist_ok=True)
    (d / name).write_text(text)
    return d


@pytest.mark.parametrize("mode", ["on", "off"])
def test_unwritable_cache_dir_warns_once_and_runs_in_memory(tmp_path, mode):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    cache = blocker / "cache"  # every write under it fails (ENOTDIR), for root too
    d = _write(tmp_path, "test_probe.py", PROBE)
    r = run(str(d), "--model", "tiny-gpt2", "--cache-dir", str(cache), "--activation-cache", mode,
            "--artifacts-dir", str(tmp_path / "art"), "-W", "always", cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "Traceback" not in out and "OSError" not in out
    n_act = out.count("keeping activations in memory")
    assert n_act == (1 if mode == "on" else 0), out  # off: the activation cache is never touched
    # The tiny models' tokenizer ships in the wheel (mechclaims.model.bundled_tokenizers): nothing is converted.
    assert "converting" not in out, out


def _store_value():
    return {"a": np.arange(12, dtype=np.float32).reshape(3, 4)}


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EROFS])
def test_full_or_readonly_activation_cache_degrades(tmp_path, monkeypatch, err):
    from mechclaims.store import actcache
    from mechclaims.store.actcache import ActivationCacheWarning, ActivationStore

    def refuse(final, write, mode="wb"):
        raise OSError(err, os.strerror(err), str(final))
    monkeypatch.setattr(actcache, "_atomic_write", refuse)
    store, calls = ActivationStore(tmp_path / "acts"), []
    fn = lambda: calls.append(1) or _store_value()  # noqa: E731
    with pytest.warns(ActivationCacheWarning, match=os.strerror(err)) as w:
        a = store.get({"model": "m", "tag": "t", "parts": (1,)}, fn)
        b = store.get({"model": "m", "tag": "t", "parts": (2,)}, fn)
    assert len([x for x in w if issubclass(x.category, ActivationCacheWarning)]) == 1
    np.testing.assert_array_equal(a["a"], b["a"])
    assert len(calls) == 2 and store.degraded
    assert not temp_files(tmp_path) and not list((tmp_path / "acts").glob("*.npz"))


def test_activation_cache_off_never_touches_the_disk(tmp_path):
    from mechclaims.store.actcache import ActivationStore

    store = ActivationStore(tmp_path / "never", "off")
    assert store.get({"model": "m"}, _store_value)["a"].shape == (3, 4)
    assert not (tmp_path / "never").exists()


def test_full_artifacts_dir_is_one_clear_error(tmp_path):
    """A real write failure (RLIMIT_FSIZE: EFBIG past 64 kB) on the first figure: the run stops there with one
    message naming the file and the fix, writes its (small) summary as interrupted, and leaves no temp file."""
    art = tmp_path / "art"
    d = _write(tmp_path, "test_draws.py", BIG_FIGURE)
    limit = 64 * 1024

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    r = run(str(d), "--model", "tiny-gpt2", "--artifacts-dir", str(art), cwd=tmp_path, preexec_fn=small_files)
    out = r.stdout + r.stderr
    assert r.returncode == 2, out  # interrupted: pytest stops the session at the first failed write
    # Once in the failure report; the short summary line repeats it in full only where pytest sees CI set (it
    # truncates to the terminal width elsewhere), so it is left out of the count.
    body = out.split("short test summary info")[0]
    assert "Traceback" not in out and body.count("ArtifactsWriteError: cannot write") == 1, out
    assert "noise.png (File too large)" in out and "--mc-artifacts-dir" in out
    assert "1 failed" in out and "passed" not in out  # the session stopped at the first failed write
    (_, s), = runs(art).items()
    assert s["interrupted"] and "cannot write" in s["reason"] and not (art / "latest").exists()
    assert not temp_files(art), temp_files(art)


def test_summary_that_cannot_be_written(tmp_path, monkeypatch):
    """The run's own summary.json cannot be written (ENOSPC): ArtifactsWriteError, no temp file, latest kept."""
    from mechclaims.store import diskio
    from mechclaims.errors import ArtifactsWriteError
    from mechclaims.store.runs import Run

    root = tmp_path / "art"
    old = Run(root, id="20000101-000000-1").start()
    old.finish({"records": [1]}, None, complete=True)
    real_open = open

    def full_disk(path, mode="r", *a, **k):
        f = real_open(path, mode, *a, **k)
        if "w" in mode and str(path).endswith(".tmp"):
            f.close()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return f
    new = Run(root).start()
    monkeypatch.setattr(diskio, "open", full_disk, raising=False)
    with pytest.raises(ArtifactsWriteError, match="No space left on device.*free space"):
        new.finish({"records": [1, 2]}, None, complete=True)
    assert (root / "latest").resolve().name == old.id
    assert json.loads((root / "summary.json").read_text()) == {"records": [1]}
    assert not temp_files(root)


def _age(p: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(p, (t, t), follow_symlinks=False)


def test_orphan_activation_temp_files_are_swept(tmp_path):
    from mechclaims.store.actcache import ActivationStore

    acts = tmp_path / "activations"
    acts.mkdir()
    old, fresh = acts / ".m-t-abc.npz.x1y2.tmp", acts / ".m-t-abc.npz.z3w4.tmp"
    old.write_bytes(b"x" * 1000)
    fresh.write_bytes(b"y")
    _age(old, 2 * 3600)
    ActivationStore(acts).get({"model": "m", "tag": "t"}, _store_value)
    assert not old.exists() and fresh.exists()  # an hour-old temp is a killed write; a fresh one may be live


def test_orphan_conversion_dir_is_swept_after_a_sigkill(tmp_path):
    """A conversion killed with SIGKILL leaves ``<name>.tmp<pid>/``; the next conversion under the lock removes
    it once it is over an hour old."""
    import signal

    from test_cache import _spawn

    target = tmp_path / "cache" / "model-y"
    p = _spawn(target, 1.0, "killed")
    deadline = time.time() + 60
    while time.time() < deadline and not list(target.parent.glob("model-y.tmp*")):
        time.sleep(0.1)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    (orphan,) = target.parent.glob("model-y.tmp*")
    _age(orphan, 2 * 3600)
    from mechclaims.model.cache import atomic_dir

    atomic_dir(tmp_path / "cache" / "other", lambda d: (d / "w.bin").write_bytes(b"w"))
    assert not orphan.exists()


def test_killed_run_folder_is_closed_by_the_next_run(tmp_path):
    """A run killed with SIGKILL keeps its ``.running`` marker: the next run that takes the lock writes that
    folder's summary as interrupted and removes its temp files; old temp files at the root go too."""
    from mechclaims.store.runs import Run

    root = tmp_path / "art"
    dead = Run(root, id="20000101-000000-99999999").start()
    marker = json.loads((dead.dir / ".running").read_text())
    (dead.dir / ".running").write_text(json.dumps({**marker, "pid": 2**22 + 12345}))  # no such process
    (dead.dir / "m").mkdir()
    (dead.dir / "m" / ".fig.png.99999999.tmp").write_bytes(b"partial")
    (root / ".summary.json.4242.tmp").write_text("{")
    _age(root / ".summary.json.4242.tmp", 2 * 3600)
    Run(root).start().finish({"records": [1]}, None, complete=True)
    s = json.loads((dead.dir / "summary.json").read_text())
    assert s["interrupted"] and "killed" in s["reason"] and not (dead.dir / ".running").exists()
    assert not temp_files(root)


def test_old_runs_are_pruned(tmp_path):
    from mechclaims.store.runs import Run

    root = tmp_path / "art"
    ids = [f"2000010{i}-000000-1" for i in range(1, 6)]
    for i in ids:
        Run(root, id=i).start().finish({"records": [i]}, None, complete=True, keep=2)
    left = sorted(p.name for p in (root / "runs").iterdir())
    assert left == ids[-3:]  # two finished runs besides the latest
