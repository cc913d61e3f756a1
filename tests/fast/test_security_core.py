"""The Prefect-free pieces under the API's security: path confinement, exclusive writes, job ids,
the YAML loader and the follower caps, on a real temporary file system."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from core.layout import DataRoot, InvalidJobId, OutsideDataRoot, canonical_job_id
from core.limits import FollowerLimiter, TooManyFollowers
from core.safe_yaml import YamlRefused, load_yaml


@pytest.fixture
def root(tmp_path: Path) -> DataRoot:
    storage = DataRoot(tmp_path / "data")
    storage.ensure_layout()
    (tmp_path / "outside.txt").write_text("secret")
    return storage


def test_open_inside_refuses_links_out_fifos_and_folders_but_not_links_within(root: DataRoot, tmp_path: Path):
    (root.configs_dir / "out.yaml").symlink_to(tmp_path / "outside.txt")
    (root.configs_dir / "real.yaml").write_text("a: 1\n")
    (root.configs_dir / "within.yaml").symlink_to(root.configs_dir / "real.yaml")
    os.mkfifo(root.configs_dir / "fifo.yaml")
    (root.configs_dir / "loop.yaml").symlink_to(root.configs_dir / "loop.yaml")
    with pytest.raises(OutsideDataRoot):
        root.open_inside(root.configs_dir / "out.yaml")
    for name in ("fifo.yaml", "loop.yaml"):  # a FIFO would block a plain open(); a loop would raise ELOOP
        with pytest.raises((OutsideDataRoot, OSError)):
            root.open_inside(root.configs_dir / name)
    with pytest.raises(OutsideDataRoot):
        root.open_inside(root.configs_dir)
    assert root.read_text_inside(root.configs_dir / "within.yaml") == "a: 1\n"
    with pytest.raises(OutsideDataRoot):
        root.resolve("configs/out.yaml")


def test_remove_inside_removes_links_not_targets(root: DataRoot, tmp_path: Path):
    (tmp_path / "outdir").mkdir()
    (tmp_path / "outdir" / "keep.csv").write_text("x")
    link = root.datasets_dir / "linked"
    link.symlink_to(tmp_path / "outdir")
    root.remove_inside(link)
    assert not link.is_symlink() and (tmp_path / "outdir" / "keep.csv").read_text() == "x"
    ds = root.datasets_dir / "real"
    (ds / "sub").mkdir(parents=True)
    (ds / "sub" / "l.csv").symlink_to(tmp_path / "outside.txt")
    root.remove_inside(ds)
    assert not ds.exists() and (tmp_path / "outside.txt").read_text() == "secret"


def test_iter_files_skips_links(root: DataRoot, tmp_path: Path):
    ds = root.datasets_dir / "mixed"
    ds.mkdir()
    (ds / "a.csv").write_text("a")
    (ds / "b.csv").symlink_to(tmp_path / "outside.txt")
    (ds / "dir").symlink_to(tmp_path)
    assert [name for name, _ in root.iter_files(ds)] == ["a.csv"]


def test_create_exclusive_has_one_winner_and_whole_content(root: DataRoot):
    target = root.configs_dir / "x.yaml"
    results: list[str] = []
    barrier = threading.Barrier(16)

    def create(i: int) -> None:
        barrier.wait()
        try:
            root.create_exclusive(target, f"writer: {i}\n" + "#" * 100_000)
            results.append(f"won {i}")
        except FileExistsError:
            results.append("lost")

    threads = [threading.Thread(target=create, args=(i,)) for i in range(16)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    winners = [r for r in results if r.startswith("won")]
    assert len(winners) == 1 and results.count("lost") == 15
    assert target.read_text().startswith(f"writer: {winners[0].split()[1]}\n")
    assert sorted(p.name for p in root.configs_dir.iterdir()) == ["x.yaml"]


def test_job_ids_are_canonical():
    upper = "A3F9C2D4-1111-2222-3333-444455556666"
    assert canonical_job_id(upper) == upper.lower()
    assert DataRoot("/d").job(upper).dir == Path("/d/jobs") / upper.lower()
    for bad in ("../etc", "x" * 100, "a3f9c2d4-1111-2222-3333-444455556666\n", ""):
        with pytest.raises(InvalidJobId):
            canonical_job_id(bad)


@pytest.mark.parametrize("text, words", [
    ("n: 123456789012345678901234567890\n", None),
    ("f: 1.0e+400\n", "infinite"),
    ("d: 2024-02-30\n", "date"),
    ("d: 2024-02-29\n", None),
    ("k: !!str 12\n", None),
    ("? [a, b]\n: 1\n", "line 1"),
    ("a: *secretname\n", "line 1"),
])
def test_yaml_numbers_dates_and_errors(text, words):
    if words is None:
        load_yaml(text)
        return
    with pytest.raises(YamlRefused) as err:
        load_yaml(text)
    assert words in str(err.value) and "secretname" not in str(err.value)


def test_followers_capped_per_job_and_in_all():
    limiter = FollowerLimiter(per_job=2, total=3)
    held = [limiter.acquire("a"), limiter.acquire("a")]
    with pytest.raises(TooManyFollowers):
        limiter.acquire("a")
    held.append(limiter.acquire("b"))
    with pytest.raises(TooManyFollowers):
        limiter.acquire("c")
    held.pop().release()
    del held[0]  # dropped without release (a stream cancelled before it ran): the slot comes back
    assert limiter.open_count() == 1
