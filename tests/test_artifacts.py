"""The artifact contract (`breastgpt.artifacts`): atomic files and folders, manifests, one error type — and a
scan of `src/` proving nothing else renames temporaries into place."""

from __future__ import annotations

import ast
import json
import os
import stat
from pathlib import Path

import pytest

from breastgpt import artifacts
from breastgpt.artifacts import (
    ArtifactError,
    CheckpointError,
    Manifest,
    ManifestError,
    artifact_problems,
    atomic_dir,
    atomic_path,
    atomic_write_bytes,
    code_version,
    is_temp_name,
    publish_dir,
    remove_stale_temps,
    staging_dir,
    verify_artifact,
)

SRC = Path(__file__).resolve().parents[1] / "src" / "breastgpt"
CONTRACT = SRC / "artifacts.py"

# ------------------------------------------------------------------------------------ no other temp-and-rename


def rename_calls(source: str) -> list[tuple[int, str]]:
    """(line, call) of every call that moves a file into place: os.replace/os.rename/shutil.move, a path's
    `.rename(x)` or `.replace(x)` (one positional argument: `str.replace` takes two), a bare replace/rename."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func, n_args = node.func, len(node.args)
        if isinstance(func, ast.Attribute):
            owner = func.value.id if isinstance(func.value, ast.Name) else None
            if owner == "os" and func.attr in ("replace", "rename", "renames"):
                found.append((node.lineno, f"os.{func.attr}"))
            elif owner == "shutil" and func.attr == "move":
                found.append((node.lineno, "shutil.move"))
            elif (func.attr in ("replace", "rename") and n_args == 1 and not node.keywords
                  and owner not in ("dataclasses", "os")):
                found.append((node.lineno, f".{func.attr}()"))
        elif isinstance(func, ast.Name) and func.id in ("replace", "rename") and n_args == 2:
            found.append((node.lineno, func.id))
    return found


def offenders(root: Path) -> list[str]:
    hits = []
    for path in sorted(root.rglob("*.py")):
        if path.resolve() == CONTRACT.resolve():
            continue
        hits += [f"{path.relative_to(root)}:{line}: {call}"
                 for line, call in rename_calls(path.read_text(encoding="utf-8"))]
    return hits


# What src/ held before the contract owned these writes: each pattern must be caught.
KNOWN_BAD = '''
import os, shutil, tempfile
from os import replace
def a(tmp, target): os.replace(tmp, target)
def b(tmp, path): tmp.replace(path)
def c(tmp, out): tmp.rename(out)
def d(tmp, out): shutil.move(tmp, out)
def e(path):
    fd, tmp = tempfile.mkstemp(dir=path.parent)
    os.rename(tmp, path)
def f(tmp, path): replace(tmp, path)
'''
BENIGN = '''
import dataclasses
def a(text): return text.replace("x", "y").replace("a", "b", 1)
def b(config): return dataclasses.replace(config, mpp=1.0)
def c(frame): return frame.rename(columns={"a": "b"})
def d(when): return when.replace(tzinfo=None)
'''


def test_scanner_catches_each_hand_written_rename():
    assert [call for _, call in rename_calls(KNOWN_BAD)] == [
        "os.replace", ".replace()", ".rename()", "shutil.move", "os.rename", "replace"]
    assert rename_calls(BENIGN) == []


def test_scanner_fails_on_a_tree_with_an_offender(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "ok.py").write_text(BENIGN)
    assert offenders(tmp_path) == []
    (tmp_path / "pkg" / "writer.py").write_text("import os\ndef w(t, p):\n    os.replace(t, p)\n")
    assert offenders(tmp_path) == ["pkg/writer.py:3: os.replace"]


def test_no_temp_and_rename_outside_the_artifacts_module():
    assert len(list(SRC.rglob("*.py"))) > 100  # the scan really covers the package
    assert rename_calls(CONTRACT.read_text()) != []  # and would see a rename where one is
    found = offenders(SRC)
    assert found == [], "write through breastgpt.artifacts (atomic_write_*, atomic_path, atomic_dir) instead:\n" \
        + "\n".join(found)


# ---------------------------------------------------------------------------------------------- file writes


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_atomic_write_bytes_uses_umask_permissions(tmp_path):
    mask = os.umask(0)
    os.umask(mask)
    path = atomic_write_bytes(tmp_path / "sub" / "a.bin", b"abc")
    assert path.read_bytes() == b"abc"
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    assert _leftovers(path.parent) == []


def test_atomic_path_renames_on_success_and_keeps_the_suffix(tmp_path):
    target = tmp_path / "out" / "volume.nii.gz"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.endswith(".nii.gz") and is_temp_name(tmp.name)
        assert not target.exists()
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert _leftovers(target.parent) == []


def test_atomic_path_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "features.h5"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="writer died"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("writer died")
    assert target.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_atomic_path_with_a_library_writer(tmp_path):
    from PIL import Image
    import numpy as np

    target = tmp_path / "a.png"
    with atomic_path(target) as tmp:
        Image.fromarray(np.full((4, 5), 7, np.uint8)).save(tmp, format="PNG")
    assert Image.open(target).size == (5, 4)
    assert _leftovers(tmp_path) == []


# -------------------------------------------------------------------------------------------- folder writes


def _folder(path: Path, **files: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name).write_text(text)
    return path


def test_atomic_dir_creates_and_replaces(tmp_path):
    out = tmp_path / "ckpt"
    with atomic_dir(out) as tmp:
        assert tmp.parent == tmp_path and tmp != out and not out.exists()
        (tmp / "a.txt").write_text("one")
    assert (out / "a.txt").read_text() == "one"
    with atomic_dir(out) as tmp:
        (tmp / "b.txt").write_text("two")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]  # replaced, not merged
    assert _leftovers(tmp_path) == []


def test_atomic_dir_crash_mid_write_leaves_the_old_folder_intact(tmp_path):
    out = _folder(tmp_path / "ckpt", **{"model.safetensors": "old weights", "manifest.json": "{}"})
    with pytest.raises(OSError, match="disk full"):
        with atomic_dir(out) as tmp:
            (tmp / "model.safetensors").write_text("half of the new weights")
            raise OSError("disk full (simulated)")
    assert (out / "model.safetensors").read_text() == "old weights"
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.safetensors"]
    assert _leftovers(tmp_path) == []


def test_atomic_dir_refuses_to_overwrite_when_asked_not_to(tmp_path):
    out = _folder(tmp_path / "o", keep="x")
    with pytest.raises(ArtifactError, match="already exists"):
        with atomic_dir(out, overwrite=False):
            pytest.fail("the block must not run")
    assert (out / "keep").read_text() == "x" and _leftovers(tmp_path) == []


def test_publish_dir_puts_the_old_folder_back_when_the_swap_fails(tmp_path, monkeypatch):
    out = _folder(tmp_path / "o", keep="old")
    tmp = _folder(staging_dir(out), keep="new")
    real, calls = os.replace, []

    def failing_second(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise OSError("rename failed (simulated)")
        return real(src, dst)

    monkeypatch.setattr(artifacts.os, "replace", failing_second)
    with pytest.raises(OSError, match="simulated"):
        publish_dir(tmp, out)
    monkeypatch.setattr(artifacts.os, "replace", real)
    assert (out / "keep").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [tmp.name]  # the new one, for a retry


def test_shared_staging_dir_clears_a_killed_writers_leftover(tmp_path):
    final = tmp_path / "step-00000004"
    first = staging_dir(final, shared=True)
    (first / "model.safetensors").write_text("half")
    again = staging_dir(final, shared=True)
    assert again == first and list(again.iterdir()) == []


def test_remove_stale_temps(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "x.json") as tmp:
            os.link(tmp, tmp_path / tmp.name.replace(".tmp", ".tmpcopy"))  # an unrelated dotfile survives
            raise RuntimeError
    stale = [tmp_path / ".records.jsonl.ab12cd34.tmp", tmp_path / ".x.nii.gz.0badf00d.tmp.nii.gz"]
    for path in stale:
        path.write_text("half")
    (tmp_path / ".step-00000002.tmpdir").mkdir()
    (tmp_path / "records.jsonl").write_text("kept")
    assert remove_stale_temps(tmp_path) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["records.jsonl", next(p.name for p in tmp_path.iterdir() if "tmpcopy" in p.name)])


# ------------------------------------------------------------------------------------------------- manifests


def test_manifest_round_trip_and_verify(tmp_path):
    root = _folder(tmp_path / "a", **{"x.txt": "x"})
    _folder(root / "sub", **{"y.bin": "y"})
    written = Manifest.of_folder(root, kind="test", step=3)
    written.write(root / "manifest.json")
    assert set(written.files) == {"x.txt", "sub/y.bin"}
    assert written.meta["code_version"] == code_version() and written.meta["created"]
    read = Manifest.read(root / "manifest.json")
    assert read == written
    assert read.problems(root, exhaustive=True) == [] and artifact_problems(root, exhaustive=True) == []
    assert verify_artifact(root).meta["step"] == 3


def test_manifest_detects_tampering_missing_and_unlisted_files(tmp_path):
    root = _folder(tmp_path / "a", **{"x.txt": "x", "y.txt": "y"})
    Manifest.of_folder(root).write(root / "manifest.json")
    (root / "x.txt").write_text("X")
    (root / "y.txt").unlink()
    (root / "extra.txt").write_text("e")
    assert artifact_problems(root) == [f"{root / 'x.txt'}: sha256 differs from the manifest",
                                       f"{root / 'y.txt'}: listed in the manifest but missing"]
    assert artifact_problems(root, exhaustive=True)[-1] == f"{root / 'extra.txt'}: not listed in the manifest"
    with pytest.raises(ManifestError, match="x.txt: sha256 differs.*resume from an earlier one"):
        verify_artifact(root, hint="resume from an earlier one")


def test_manifest_without_stamp_is_deterministic(tmp_path):
    root = _folder(tmp_path / "a", **{"x.txt": "x"})
    Manifest.of_files(root, ["x.txt"], stamp=False, version=1).write(tmp_path / "m1.json")
    Manifest.of_files(root, ["x.txt"], stamp=False, version=1).write(tmp_path / "m2.json")
    assert (tmp_path / "m1.json").read_bytes() == (tmp_path / "m2.json").read_bytes()
    assert set(json.loads((tmp_path / "m1.json").read_text())) == {"files", "version"}


def test_missing_or_broken_manifest_is_reported_clearly(tmp_path):
    root = _folder(tmp_path / "a", **{"x.txt": "x"})
    assert artifact_problems(root) == [f"{root / 'manifest.json'}: missing; the artifact was never finished — "
                                       "write it again"]
    (root / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="manifest.json: unreadable"):
        verify_artifact(root)
    (root / "manifest.json").write_text('{"files": []}')
    with pytest.raises(ManifestError, match="not a manifest"):
        verify_artifact(root)


def test_code_version_is_one_string():
    from breastgpt import __version__

    version = code_version()
    assert isinstance(version, str) and (version == __version__ or version.startswith(f"{__version__}+g"))


# ------------------------------------------------------------------------------------------------ one error


def test_every_artifact_error_derives_from_artifact_error():
    from breastgpt.model import init_checkpoint
    from breastgpt.pathology.features import FeatureWriteError
    from breastgpt.train import checkpoint

    assert init_checkpoint.CheckpointError is checkpoint.CheckpointError is CheckpointError
    for error in (CheckpointError, ManifestError, FeatureWriteError):
        assert issubclass(error, ArtifactError)


def test_feature_write_error_names_the_file(tmp_path):
    import numpy as np

    from breastgpt.pathology.features import FeatureWriteError, write_features

    with pytest.raises(FeatureWriteError, match="s1.h5: features .* do not match coords"):
        write_features(tmp_path / "s1.h5", np.zeros((3, 2)), np.zeros((2, 4)), {})
    assert list(tmp_path.iterdir()) == []


def test_training_checkpoint_written_with_a_dict_code_version_still_verifies(tmp_path):
    """Checkpoints saved before `code_version` became a string carry a dict there; nothing reads the field,
    so they load, and a damaged one fails with the checkpoint error."""
    from breastgpt.train import checkpoint

    folder = _folder(tmp_path / "step-00000002", **{"trainer_state.json": "{}"})
    Manifest.of_folder(folder, stamp=False, format_version=1, step=2,
                       code_version={"breastgpt": "0.1.0", "torch": "2.5", "git_commit": None}).write(
        folder / "manifest.json", indent=1)
    assert checkpoint.verify_checkpoint(folder)["code_version"]["breastgpt"] == "0.1.0"
    (folder / "trainer_state.json").write_text("[]")
    with pytest.raises(CheckpointError, match="trainer_state.json: sha256 differs.*earlier checkpoint"):
        checkpoint.verify_checkpoint(folder)
