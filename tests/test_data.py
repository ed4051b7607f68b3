import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scaling_search.data import DataError, infer_format, load_dataset
from scaling_search.data.synthetic import synthetic_dataset
from scaling_search.network import EFFICIENTNET_B0
from scaling_search.network.scaling import scale


def _npz(path, n=40, layout="nhwc", classes=4, **extra):
    rng = np.random.default_rng(0)
    shape = (n, 8, 8, 3) if layout == "nhwc" else (n, 3, 8, 8)
    arrays = dict(x_train=rng.integers(0, 255, shape, dtype=np.uint8), y_train=np.arange(n) % classes,
                  x_test=rng.integers(0, 255, (12,) + shape[1:], dtype=np.uint8), y_test=np.arange(12) % classes)
    arrays.update(extra)
    np.savez(path, **arrays)
    return path


def _folder(root, classes=("cat", "dog"), per_class=6, size=10, split=None):
    base = root / split if split else root
    for name in classes:
        (base / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            colour = (i * 20, 100 if name == "cat" else 200, 50)
            Image.new("RGB", (size, size + 2), colour).save(base / name / f"{i}.png")
    return root


def test_synthetic_is_deterministic_and_balanced():
    a = synthetic_dataset(3, 2, seed=5)
    b = synthetic_dataset(3, 2, seed=5)
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.val_labels, b.val_labels)
    assert not torch.equal(a.train_images, synthetic_dataset(3, 2, seed=6).train_images)
    assert a.num_classes == 10 and a.native_resolution == 96
    assert torch.bincount(a.train_labels).tolist() == [3] * 10


def test_synthetic_texture_vanishes_at_low_resolution():
    """Stripes and checker differ only in fine texture: the difference shrinks as the input resolution drops."""
    import torch.nn.functional as F

    from scaling_search.data.synthetic import _render

    labels = torch.arange(10).repeat(4)
    # Same seed, texture bit flipped: every random draw is the same, only the texture differs.
    stripes_or_checker = _render(labels, 96, torch.Generator().manual_seed(1)).float()
    flipped = _render(labels ^ 1, 96, torch.Generator().manual_seed(1)).float()

    def difference(resolution):
        def down(x):
            return F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True)

        return float((down(stripes_or_checker) - down(flipped)).pow(2).mean().sqrt())

    differences = [difference(r) for r in (16, 24, 32, 48, 64)]
    assert differences == sorted(differences)
    assert differences[-1] > 4 * differences[0]


def test_split_is_resized_once_normalised_and_cached():
    data = synthetic_dataset(4, 2)
    first = data.split("train", 24)
    assert first.images.shape == (40, 3, 24, 24)
    assert first is data.split("train", 24)
    assert abs(float(data.split("train", 96).images.mean())) < 1e-3


def test_resized_splits_are_bounded_least_recently_used_first():
    data = synthetic_dataset(8, 4)  # 80 train / 40 val images
    one_resolution = (80 + 40) * 3 * 32 * 32 * 4  # bytes of train + val at 32 px
    data.cache.max_bytes = one_resolution  # room for one resolution's two splits
    first = data.split("train", 32)
    data.split("val", 32)
    assert data.split("train", 32) is first and data.cache.resized == 2  # a hit
    data.split("train", 24)
    data.split("val", 24)
    assert set(data.cache.entries) == {("train", 24), ("val", 24)}  # 32 px evicted, 24 px's own pair kept
    assert data.cache.nbytes <= one_resolution
    again = data.split("train", 32)
    assert data.cache.resized == 5 and torch.equal(again.images, first.images)  # recomputed, the same numbers
    data.cache.max_bytes = 0
    data.split("val", 32)
    assert set(data.cache.entries) == {("train", 32), ("val", 32)}  # the resolution in use always stays


def test_npz_nhwc_and_nchw_agree(tmp_path):
    nhwc = load_dataset(str(_npz(tmp_path / "a.npz")))
    x = np.load(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", x_train=x["x_train"].transpose(0, 3, 1, 2), y_train=x["y_train"],
             x_test=x["x_test"].transpose(0, 3, 1, 2), y_test=x["y_test"])
    nchw = load_dataset(str(tmp_path / "b.npz"))
    assert torch.equal(nhwc.train_images, nchw.train_images)
    assert nhwc.train_images.shape == (40, 3, 8, 8) and nhwc.num_classes == 4


def test_npz_classes_and_holdout(tmp_path):
    path = tmp_path / "c.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 255, (50, 8, 8, 3), dtype=np.uint8), y_train=np.arange(50) % 5,
             classes=np.array(list("abcde")))
    data = load_dataset(str(path), val_fraction=0.2)
    assert data.classes == tuple("abcde")
    assert len(data.val_labels) == 10 and len(data.train_labels) == 40


def test_subset_is_class_balanced(tmp_path):
    data = load_dataset(str(_npz(tmp_path / "a.npz", n=80)), subset=20)
    assert torch.bincount(data.train_labels).tolist() == [5, 5, 5, 5]


def test_folder_with_and_without_val(tmp_path):
    _folder(tmp_path / "tree", split="train")
    _folder(tmp_path / "tree", split="val", per_class=2)
    data = load_dataset(str(tmp_path / "tree"))
    assert data.classes == ("cat", "dog") and len(data.val_labels) == 4 and len(data.train_labels) == 12
    assert data.native_resolution == 10
    flat = load_dataset(str(_folder(tmp_path / "flat", per_class=10)), val_fraction=0.2)
    assert len(flat.val_labels) == 4 and len(flat.train_labels) == 16


def test_cifar_python_format(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name, n in [("data_batch_1", 20), ("data_batch_2", 20), ("test_batch", 10)]:
        batch = {b"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8), b"labels": [i % 10 for i in range(n)]}
        (root / name).write_bytes(pickle.dumps(batch))
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]}))
    assert infer_format(str(root)) == "cifar"
    data = load_dataset(str(root))
    assert data.train_images.shape == (40, 3, 32, 32) and data.classes[3] == "c3"


# --- every data error names the problem (and the file) -------------------------------------------------------

def test_missing_path(tmp_path):
    with pytest.raises(DataError, match=r"nope: no such file or directory"):
        load_dataset(str(tmp_path / "nope"))


def test_empty_class_folder(tmp_path):
    _folder(tmp_path / "t")
    (tmp_path / "t" / "bird").mkdir()
    with pytest.raises(DataError, match=r"bird: class folder holds no .png/.jpg/.jpeg images"):
        load_dataset(str(tmp_path / "t"))


def test_corrupt_image(tmp_path):
    _folder(tmp_path / "t")
    (tmp_path / "t" / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"broken.png: cannot decode image"):
        load_dataset(str(tmp_path / "t"))


def test_mismatched_label_count(tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, x_train=np.zeros((10, 8, 8, 3), np.uint8), y_train=np.arange(9) % 2)
    with pytest.raises(DataError, match=r"m.npz: x_train has 10 images but y_train has 9 labels"):
        load_dataset(str(path))


def test_one_class_only(tmp_path):
    _folder(tmp_path / "t", classes=("cat",))
    with pytest.raises(DataError, match=r"found only one class"):
        load_dataset(str(tmp_path / "t"))
    path = tmp_path / "one.npz"
    np.savez(path, x_train=np.zeros((10, 8, 8, 3), np.uint8), y_train=np.zeros(10, np.int64))
    with pytest.raises(DataError, match=r"one.npz: found only one class"):
        load_dataset(str(path))


def test_not_an_npz_and_missing_arrays(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"junk")
    with pytest.raises(DataError, match=r"x.npz: not a .npz archive of arrays"):
        load_dataset(str(tmp_path / "x.npz"))
    np.savez(tmp_path / "y.npz", images=np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(DataError, match=r"y.npz: missing array\(s\) x_train, y_train"):
        load_dataset(str(tmp_path / "y.npz"))


def test_broken_cifar_batch(tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    (root / "data_batch_1").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"data_batch_1: not a readable CIFAR batch"):
        load_dataset(str(root))


def test_unknown_file_type(tmp_path):
    (tmp_path / "data.csv").write_text("a,b")
    with pytest.raises(DataError, match=r"data.csv: cannot tell the data format"):
        load_dataset(str(tmp_path / "data.csv"))


def _mapped_from_file(tensor, folder) -> bool:
    """Whether ``tensor``'s memory is a mapping of a file under ``folder`` (Linux: /proc/self/maps)."""
    maps = Path("/proc/self/maps")
    if not maps.exists():
        pytest.skip("no /proc/self/maps on this system")
    address = tensor.data_ptr()
    for line in maps.read_text().splitlines():
        fields = line.split(maxsplit=5)
        low, high = (int(x, 16) for x in fields[0].split("-"))
        if low <= address < high:
            return len(fields) == 6 and fields[5].startswith(str(folder))
    return False


def test_a_dataset_is_decoded_once_per_machine_and_every_process_maps_that_copy(tmp_path, monkeypatch):
    from scaling_search.data import decoded, files

    monkeypatch.setenv("SCALING_SEARCH_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "tree"
    _folder(root, per_class=8)
    decodes = []
    real = files.load_folder
    monkeypatch.setattr(files, "load_folder", lambda *a: decodes.append(a) or real(*a))
    first = load_dataset(str(root), val_fraction=0.25)
    second = load_dataset(str(root), val_fraction=0.25)  # what the next worker process does
    assert len(decodes) == 1
    # the second load reads the machine's copy through a memory map; the numbers are those of a decode in memory
    assert _mapped_from_file(second.train_images, tmp_path / "cache")
    in_memory = real(root, 0.25, 0)
    for name in ("train_images", "train_labels", "val_images", "val_labels"):
        assert torch.equal(getattr(first, name), getattr(in_memory, name))
        assert torch.equal(getattr(second, name), getattr(in_memory, name))
    assert second.classes == in_memory.classes and second.name == in_memory.name
    # a resized split is written once too, and read back by the next process without resizing anything
    expected = in_memory.split("train", 24).images
    assert torch.equal(first.split("train", 24).images, expected)
    monkeypatch.setattr(type(first), "_resized", lambda *a: pytest.fail("resized again"))
    third = load_dataset(str(root), val_fraction=0.25)
    assert torch.equal(third.split("train", 24).images, expected)
    assert _mapped_from_file(third.split("train", 24).images, tmp_path / "cache")
    monkeypatch.undo()
    monkeypatch.setenv("SCALING_SEARCH_CACHE", str(tmp_path / "cache"))
    # other hold-out settings, or a changed file, make a new entry; an unchanged source never decodes again
    monkeypatch.setattr(files, "load_folder", lambda *a: decodes.append(a) or real(*a))
    load_dataset(str(root), val_fraction=0.5)
    assert len(decodes) == 2
    Image.new("RGB", (10, 12), (1, 2, 3)).save(root / "cat" / "0.png")
    changed = load_dataset(str(root), val_fraction=0.25)
    assert len(decodes) == 3
    assert not (torch.equal(changed.train_images, first.train_images) and torch.equal(changed.val_images,
                                                                                      first.val_images))
    assert len([p for p in decoded.datasets_root().iterdir() if p.is_dir()]) == 3


def test_a_mapped_split_is_written_in_chunks_and_only_the_resolution_in_use_stays_mapped(tmp_path, monkeypatch):
    """Splits from the disk cache: written a chunk at a time (never the whole float array in memory) with the
    numbers an in-memory resize gives, and unmapped once another resolution is in use (a kept mapping holds every
    page training touched; mapping the file again costs nothing)."""
    from scaling_search.data import base

    monkeypatch.setenv("SCALING_SEARCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(base, "_RESIZE_CHUNK", 7)  # several chunks, the last one short
    mapped = load_dataset(str(_npz(tmp_path / "a.npz", n=80)))
    assert mapped.cache.disk is not None and mapped.cache.max_bytes > 0
    first = mapped.split("train", 20).images
    assert _mapped_from_file(first, tmp_path / "cache")
    in_memory = base.ImageData(mapped.name, mapped.classes, mapped.train_images.clone(), mapped.train_labels,
                          mapped.val_images.clone(), mapped.val_labels)
    assert torch.equal(first, in_memory.split("train", 20).images)
    mapped.split("val", 20)
    mapped.split("train", 28)
    assert set(mapped.cache.entries) == {("train", 28)}  # 20 px unmapped, though well within max_bytes
    assert torch.equal(mapped.split("train", 20).images, first) and mapped.cache.resized == 4
    in_memory.split("train", 28)
    assert set(in_memory.cache.entries) == {("train", 20), ("train", 28)}  # in memory: kept within max_bytes


def test_a_subset_shares_its_resized_splits_and_an_unwritable_cache_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALING_SEARCH_CACHE", str(tmp_path / "cache"))
    path = _npz(tmp_path / "a.npz", n=80)
    subset = load_dataset(str(path), subset=20)
    images = subset.split("val", 12).images
    [written] = (tmp_path / "cache").rglob("subset20-seed0/val-12px-v*.npy")
    assert torch.equal(torch.from_numpy(np.load(written)), images)
    # a cache that cannot be written (here: its folder is a file) leaves the data in memory, same numbers
    blocked = tmp_path / "blocked"
    blocked.write_text("not a folder")
    monkeypatch.setenv("SCALING_SEARCH_CACHE", str(blocked))
    again = load_dataset(str(path), subset=20)
    assert torch.equal(again.split("val", 12).images, images) and again.cache.disk is None


def _file_resident_kb() -> int:
    """This process's resident pages mapped from files, in kB (Linux: /proc/self/status)."""
    status = Path("/proc/self/status")
    if not status.exists():
        pytest.skip("no /proc/self/status on this system")
    return int(next(line for line in status.read_text().splitlines() if line.startswith("RssFile:")).split()[1])


def test_read_pages_of_a_mapped_split_leave_the_process_and_read_back_the_same(tmp_path):
    """release_pages drops the pages a process read of a mapped array from its resident memory (the bytes stay
    the file's), and does nothing to a tensor in memory."""
    from scaling_search.data.arrays import map_array, release_pages

    values = np.random.default_rng(0).standard_normal((64, 3, 128, 128), dtype=np.float32)  # 12 MB
    np.save(tmp_path / "split.npy", values)
    mapped = map_array(tmp_path / "split.npy")
    before = _file_resident_kb()
    assert float(mapped.sum()) == pytest.approx(float(values.sum()), rel=1e-4)  # every page read
    read = _file_resident_kb()
    assert read - before > 10_000
    release_pages(mapped)
    assert read - _file_resident_kb() > 10_000
    assert torch.equal(mapped, torch.from_numpy(values))  # read again from the file: the same bytes
    in_memory = torch.from_numpy(values.copy())
    release_pages(in_memory)
    assert torch.equal(in_memory, torch.from_numpy(values))


def test_a_training_from_mapped_splits_gives_the_same_numbers_whether_or_not_it_hands_pages_back(tmp_path, monkeypatch):
    from scaling_search.data import arrays
    from scaling_search.settings.train import TrainSettings
    from scaling_search.training import train_proxy

    monkeypatch.setenv("SCALING_SEARCH_CACHE", str(tmp_path / "cache"))
    path = _npz(tmp_path / "a.npz", n=80)
    spec = replace(scale(EFFICIENTNET_B0, width=0.25, depth=0.34), resolution=32, num_classes=4)
    settings = TrainSettings(epochs=2, batch_size=16, threads=1, precise_bn_batches=2)
    kept = train_proxy(spec, load_dataset(str(path)), settings)
    releases = []
    real = arrays.release_pages
    monkeypatch.setattr(arrays, "release_pages", lambda tensor: releases.append(1) or real(tensor))
    monkeypatch.setattr(arrays, "RELEASE_BYTES", 1)  # hand the pages back after every batch
    handed_back = train_proxy(spec, load_dataset(str(path)), settings)
    assert len(releases) > 8
    assert (handed_back.val_top1, handed_back.train_loss) == (kept.val_top1, kept.train_loss)
    assert [h.val_top1 for h in handed_back.history] == [h.val_top1 for h in kept.history]


def test_the_synthetic_set_is_rendered_once_per_machine_with_the_same_bytes(tmp_path, monkeypatch):
    from scaling_search.data import loading

    monkeypatch.setenv("SCALING_SEARCH_CACHE", str(tmp_path / "cache"))
    renders = []
    monkeypatch.setattr(loading, "synthetic_dataset", lambda *a, **k: renders.append(a) or synthetic_dataset(*a, **k))
    options = dict(synthetic_train_per_class=3, synthetic_val_per_class=2, seed=5)
    load_dataset("synthetic", **options)
    second = load_dataset("synthetic", **options)  # what the next worker process does
    assert len(renders) == 1 and _mapped_from_file(second.train_images, tmp_path / "cache")
    rendered = synthetic_dataset(3, 2, seed=5)
    for name in ("train_images", "train_labels", "val_images", "val_labels"):
        assert torch.equal(getattr(second, name), getattr(rendered, name))
    assert (second.name, second.classes) == (rendered.name, rendered.classes)
    load_dataset("synthetic", **{**options, "seed": 6})  # other settings: rendered for themselves
    assert len(renders) == 2
