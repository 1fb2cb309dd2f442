"""The conftest guard that fails the suite when a test wrote into the repository tree."""

import os

from conftest import REPO_ROOT, snapshot_tree, written_since


def test_the_guard_sees_new_changed_and_removed_files_but_not_caches(tmp_path):
    (tmp_path / "outputs" / "cli-probed").mkdir(parents=True)
    kept, changed, removed = (tmp_path / name for name in ("kept.txt", "outputs/cli-probed/config.json", "gone.txt"))
    for path in (kept, changed, removed):
        path.write_text("before")
    before = snapshot_tree(tmp_path)
    assert written_since(before, tmp_path) == []

    changed.write_text("after, longer")
    os.utime(changed, ns=(before["kept.txt"][0] + 10**9, before["kept.txt"][0] + 10**9))
    removed.unlink()
    (tmp_path / "outputs" / "my-model").mkdir()
    (tmp_path / "outputs" / "my-model" / "model.safetensors").write_bytes(b"x")
    for cache in ("__pycache__", ".pytest_cache", ".venv-min"):
        (tmp_path / cache).mkdir()
        (tmp_path / cache / "file").write_text("cache")
    assert written_since(before, tmp_path) == [
        "gone.txt",
        "outputs/cli-probed/config.json",
        "outputs/my-model/model.safetensors",
    ]


def test_the_guard_watches_this_repository():
    tree = snapshot_tree(REPO_ROOT)
    assert "tests/conftest.py" in tree and "pyproject.toml" in tree
    assert not [path for path in tree if "__pycache__" in path]
