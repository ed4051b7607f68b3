"""Dataset sources read from disk: Keras-style ``.npz``, an ImageFolder tree, the CIFAR python format.

Each reader decodes once into uint8 NCHW tensors and reports bad data as a one-line :class:`DataError` that
names the file and the problem.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch

from scaling_search.data.base import DataError, ImageData, holdout_split

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


#: Channel counts an image array may have (grey, RGB, RGBA; an alpha channel is dropped).
_CHANNELS = (1, 3, 4)
#: The smallest native image side read: below it an image carries too little to train on, and a square image of
#: 4 px or less with as many channels as pixels per side reads the same as NHWC or NCHW.
MIN_IMAGE_PX = 8


def _to_nchw(array: np.ndarray, where: str) -> torch.Tensor:
    """``array`` as uint8 NCHW. The layout is the one under which the images are square with 1, 3 or 4 channels;
    a shape that fits both layouts (images of as many pixels per side as channels) or neither is refused."""
    if array.ndim == 3:  # (N, H, W) grayscale
        array = array[:, None]
    if array.ndim != 4:
        raise DataError(f"{where}: images must have 3 or 4 dimensions (N, H, W[, C]), got shape {array.shape}")
    _, a, b, c = array.shape
    nchw, nhwc = a in _CHANNELS and b == c, c in _CHANNELS and a == b
    if nchw and nhwc:
        raise DataError(f"{where}: shape {array.shape} reads as {a}x{a}-px images of {a} channels both as NHWC and "
                        f"as NCHW; images must be at least {MIN_IMAGE_PX} px on a side")
    if nhwc:
        array = array.transpose(0, 3, 1, 2)  # NHWC -> NCHW
    elif not nchw:
        if c in _CHANNELS or a in _CHANNELS:
            height, width = (a, b) if c in _CHANNELS else (b, c)
            raise DataError(f"{where}: images must be square, got {height}x{width} (shape {array.shape}); crop or "
                            "resize them to a square first")
        raise DataError(f"{where}: cannot find the channel axis in shape {array.shape} (expected NHWC or NCHW with "
                        "1, 3 or 4 channels)")
    if array.shape[2] < MIN_IMAGE_PX:
        raise DataError(f"{where}: images are {array.shape[2]}x{array.shape[3]} px; they must be at least "
                        f"{MIN_IMAGE_PX} px on a side")
    if array.shape[0] == 0 or array.size == 0:
        raise DataError(f"{where}: holds no images (shape {array.shape})")
    if array.dtype != np.uint8:
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise DataError(f"{where}: images must be numbers (uint8 0..255 or floats 0..1), got {array.dtype}")
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            raise DataError(f"{where}: holds NaN or infinite pixel values; clean the data first")
        low, high = float(array.min()), float(array.max())
        if low < 0 or high > 255:
            raise DataError(f"{where}: pixel values must lie in 0..255 (or 0..1 for floats), found {low:g}..{high:g}")
        if np.issubdtype(array.dtype, np.floating) and high <= 1.0:
            array = array * 255.0
        array = np.round(array).astype(np.uint8)
    return torch.from_numpy(np.ascontiguousarray(array[:, :3]))


def _labels(array: np.ndarray, where: str) -> torch.Tensor:
    array = np.asarray(array).reshape(-1) if np.asarray(array).ndim == 2 and min(np.asarray(array).shape) == 1 \
        else np.asarray(array)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"{where}: labels must be a 1-D integer array, got {array.dtype} {array.shape}")
    if array.size == 0:
        raise DataError(f"{where}: holds no labels")
    if array.min() < 0:
        raise DataError(f"{where}: labels must be class indices 0..K-1, found {int(array.min())}")
    if int(array.max()) >= max(2 * array.size, 100_000):  # checked before anything is sized by the label
        raise DataError(f"{where}: label {int(array.max())} is not a class index for {array.size} images; "
                        "labels must be 0..K-1")
    return torch.from_numpy(array.astype(np.int64))


def load_npz(path: Path, val_fraction: float, seed: int) -> ImageData:
    """Keras-style arrays ``x_train, y_train[, x_test, y_test][, classes]`` (uint8 NHWC or NCHW)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        # numpy's own message advises allow_pickle=True, which would run code from the file: never repeat it.
        raise DataError(f"{path}: not a .npz archive of arrays (save one with numpy.savez(path, x_train=..., "
                        "y_train=..., x_test=..., y_test=...))") from None
    missing = [key for key in ("x_train", "y_train") if key not in arrays]
    if missing:
        raise DataError(f"{path}: missing array(s) {', '.join(missing)} (expected x_train, y_train, x_test, y_test)")
    x_train = _to_nchw(arrays["x_train"], f"{path}:x_train")
    y_train = _labels(arrays["y_train"], f"{path}:y_train")
    if len(x_train) != len(y_train):
        raise DataError(f"{path}: x_train has {len(x_train)} images but y_train has {len(y_train)} labels")
    used, largest = len(np.unique(y_train.numpy())), int(y_train.max())
    if "classes" not in arrays and 2 * used < largest + 1:  # class indices, not names: mostly gaps is a stray label
        raise DataError(f"{path}: y_train uses {used} distinct labels but its largest is {largest}, which would make "
                        f"a {largest + 1}-class network, most of its classes never seen; number the classes 0.."
                        f"{used - 1} (or add a 'classes' array naming every class)")
    if ("x_test" in arrays) != ("y_test" in arrays):
        given, lacking = ("x_test", "y_test") if "x_test" in arrays else ("y_test", "x_test")
        raise DataError(f"{path}: has {given} but no {lacking}; give both (a validation split) or neither (one is "
                        "held out of the training images)")
    if "x_test" in arrays:
        x_val = _to_nchw(arrays["x_test"], f"{path}:x_test")
        y_val = _labels(arrays["y_test"], f"{path}:y_test")
        if len(x_val) != len(y_val):
            raise DataError(f"{path}: x_test has {len(x_val)} images but y_test has {len(y_val)} labels")
    else:
        num = int(y_train.max()) + 1
        train_idx, val_idx = holdout_split(y_train, val_fraction, num, seed)
        if len(val_idx) == 0:
            raise DataError(f"{path}: {len(y_train)} training image(s) leave none to hold out for validation (a class "
                            "needs at least 2 images); add images or give x_test and y_test")
        x_train, y_train, x_val, y_val = x_train[train_idx], y_train[train_idx], x_train[val_idx], y_train[val_idx]
    num_classes = int(max(y_train.max(), y_val.max())) + 1
    if "classes" in arrays:
        if len(arrays["classes"]) < num_classes:
            raise DataError(f"{path}: 'classes' names {len(arrays['classes'])} classes but the labels go up to "
                            f"{num_classes - 1}; give a name for every class")
        classes = tuple(str(name) for name in arrays["classes"])
    else:
        classes = tuple(str(i) for i in range(num_classes))
    return ImageData(path.name, classes, x_train, y_train, x_val, y_val)


def _read_image(path: Path, size: int | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if size is not None and image.size != (size, size):
                # Centre-crop to a square, then resize to the tree's common native size.
                side = min(image.size)
                left, top = (image.width - side) // 2, (image.height - side) // 2
                image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise DataError(f"{path}: cannot decode image ({error.__class__.__name__}); remove or replace the file") \
            from None


def _read_class_tree(root: Path, classes: tuple[str, ...] | None, size: int | None
                     ) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, int]:
    if not root.is_dir():
        raise DataError(f"{root}: not a directory")
    found = tuple(sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")))
    if classes is None:
        classes = found
    elif set(found) - set(classes):
        raise DataError(f"{root}: class folder(s) {sorted(set(found) - set(classes))} are not in the train split")
    files: list[tuple[Path, int]] = []
    for label, name in enumerate(classes):
        folder = root / name
        members = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
        if not members and folder.is_dir():
            raise DataError(f"{folder}: class folder holds no .png/.jpg/.jpeg images")
        files.extend((p, label) for p in members)
    if not files:
        raise DataError(f"{root}: no class folders with images (expected {root}/<class>/*.png)")
    if size is None:
        size = min(min(_image_size(p)) for p, _ in files[:64])
    images = np.stack([_read_image(p, size) for p, _ in files])
    labels = np.array([label for _, label in files], dtype=np.int64)
    return classes, images, labels, size


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise DataError(f"{path}: cannot decode image ({error.__class__.__name__}); remove or replace the file") \
            from None


def load_folder(root: Path, val_fraction: float, seed: int) -> ImageData:
    """An ImageFolder tree ``root/train/<class>/*`` (+ ``root/val/<class>/*``), or ``root/<class>/*``.

    Without a ``val`` split, ``val_fraction`` of each class of ``train`` is held out (seeded). Images are
    decoded with Pillow, centre-cropped to squares and resized to one common native size.
    """
    train_root = root / "train" if (root / "train").is_dir() else root
    classes, images, labels, size = _read_class_tree(train_root, None, None)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(labels)
    val_root = next((root / n for n in ("val", "validation", "test") if (root / n).is_dir()), None)
    if val_root is not None and train_root != root:
        _, val_images, val_labels, _ = _read_class_tree(val_root, classes, size)
        x_val = torch.from_numpy(val_images).permute(0, 3, 1, 2).contiguous()
        y_val = torch.from_numpy(val_labels)
    else:
        train_idx, val_idx = holdout_split(y, val_fraction, len(classes), seed)
        x, y, x_val, y_val = x[train_idx], y[train_idx], x[val_idx], y[val_idx]
    return ImageData(root.name, classes, x, y, x_val, y_val)


def _unpickle(path: Path) -> dict:
    try:
        with path.open("rb") as handle:
            return pickle.load(handle, encoding="bytes")
    except FileNotFoundError:
        raise DataError(f"{path}: missing (expected the CIFAR python-format files)") from None
    except (pickle.UnpicklingError, EOFError, OSError, ValueError) as error:
        raise DataError(f"{path}: not a readable CIFAR batch ({error})") from None


def _cifar_arrays(batch: dict, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    data = batch.get(b"data")
    labels = batch.get(b"labels", batch.get(b"fine_labels"))
    if data is None or labels is None:
        raise DataError(f"{path}: a CIFAR batch needs 'data' and 'labels' (or 'fine_labels')")
    data = np.asarray(data, dtype=np.uint8)
    if len(data) != len(labels):
        raise DataError(f"{path}: {len(data)} images but {len(labels)} labels")
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.tensor(list(labels), dtype=torch.int64)


def load_cifar(root: Path) -> ImageData:
    """The CIFAR-10 (``data_batch_1..5``, ``test_batch``) or CIFAR-100 (``train``, ``test``) python format."""
    if (root / "data_batch_1").exists():
        train_files = sorted(root.glob("data_batch_*"))
        test_file, meta_file, meta_key = root / "test_batch", root / "batches.meta", b"label_names"
    elif (root / "train").is_file():
        train_files = [root / "train"]
        test_file, meta_file, meta_key = root / "test", root / "meta", b"fine_label_names"
    else:
        raise DataError(f"{root}: not a CIFAR python directory (expected data_batch_1.. or train/test files)")
    parts = [_cifar_arrays(_unpickle(p), p) for p in train_files]
    x, y = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    x_val, y_val = _cifar_arrays(_unpickle(test_file), test_file)
    num_classes = int(max(y.max(), y_val.max())) + 1
    classes = tuple(str(i) for i in range(num_classes))
    if meta_file.exists():
        names = _unpickle(meta_file).get(meta_key)
        if names and len(names) >= num_classes:
            classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    return ImageData(root.name, classes, x, y, x_val, y_val)
