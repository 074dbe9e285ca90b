"""Stage adapters: the shared build folder's copy of a run's generated sources."""
from __future__ import annotations

import os

from pipeline.stages.build import sync_tree


def test_sync_tree_writes_only_changed_files_and_removes_stale_ones(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "sub").mkdir(parents=True)
    (src / "model_data.cc").write_bytes(b"model A")
    (src / "op_resolver.h").write_bytes(b"resolver")
    (src / "sub" / "x.h").write_bytes(b"x")
    assert sorted(sync_tree(src, dst)) == ["model_data.cc", "op_resolver.h", os.path.join("sub", "x.h")]
    (dst / "stale.cc").write_bytes(b"from another run")
    before = (dst / "op_resolver.h").stat().st_mtime_ns

    (src / "model_data.cc").write_bytes(b"model B")
    (src / "op_resolver.h").write_bytes(b"resolver")  # rewritten, same bytes
    assert sync_tree(src, dst) == ["model_data.cc"]
    assert (dst / "model_data.cc").read_bytes() == b"model B"
    assert (dst / "op_resolver.h").stat().st_mtime_ns == before  # Ninja sees no change
    assert not (dst / "stale.cc").exists()
    assert sync_tree(src, dst) == []
