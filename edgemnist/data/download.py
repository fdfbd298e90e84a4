"""Verified data: download a data set's IDX files into a cache, check a data folder's digests.

Usage: edgemnist data download fashion-mnist      edgemnist data check [--data-dir DIR] [--sheet sheet.png]

Digests are of the decompressed IDX files (SHA256SUMS.uncompressed beside them), so a
recompressed copy verifies and a corrupt one is refused with the file named. `data check`
on class folders of real images prepares them as predict does (`edgemnist.data.folders`),
counts the images with no digit found, lists every unreadable file at once, and writes a
contact sheet of what the model will see.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from edgemnist.artifacts import cache_dir as artifacts_cache_dir
from edgemnist.data import (
    CLASS_FOLDERS,
    IDX_FILES,
    SPLITS,
    DataError,
    Split,
    find_idx,
    folders,
    layout,
    load_split,
    packaged_data_dir,
    read_decompressed,
    resolve_data_dir,
    split_class_folder,
)
from edgemnist.output import Output

REQUEST_TIMEOUT_S = 60.0  # seconds per HTTP request: download_dataset's and `data download --timeout`'s default
SHEET_PER_CLASS = 12  # images per class (one row each) on `data check`'s contact sheet
SHEET_ZOOM = 2  # each 28x28 image is drawn this many times larger


@dataclass(frozen=True)
class RemoteDataset:
    """A data set edgemnist can download: where from and the digests of its decompressed files."""

    name: str
    base_url: str
    sha256_uncompressed: dict  # basename -> hex digest of the decompressed IDX file


def _read_sums(path: Path) -> dict:
    sums = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, name = line.split()
            sums[name.lstrip("*")] = digest
    return sums


def remote_datasets() -> dict[str, RemoteDataset]:
    """The data sets `edgemnist data download` knows, by name."""
    return {
        "mnist": RemoteDataset(
            name="mnist",
            base_url="https://ossci-datasets.s3.amazonaws.com/mnist/",
            sha256_uncompressed=_read_sums(packaged_data_dir() / "SHA256SUMS.uncompressed"),
        ),
        "fashion-mnist": RemoteDataset(
            name="fashion-mnist",
            base_url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            sha256_uncompressed={
                "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            },
        ),
    }


def download_dataset(
    name: str,
    url: Optional[str] = None,
    cache_dir: str | os.PathLike | None = None,
    timeout: float = REQUEST_TIMEOUT_S,
    progress: Optional[Callable[[str], None]] = None,
) -> Path:
    """Downloads a data set's four IDX .gz files into the cache and verifies them.

    Each file is fetched to a temporary name, its decompressed sha256 is checked against the
    known digest, and only then renamed into place, so the cache never holds a bad file.
    Files already present and valid are not fetched again.

    Args:
        name: a key of `remote_datasets()`.
        url: base URL overriding the data set's default (e.g. a mirror or a local server).
        cache_dir: where data sets live; default `artifacts.cache_dir()`.
        timeout: seconds per request.
        progress: called with one line per file.

    Returns:
        The folder holding the verified files, usable as `--data-dir`.

    Raises:
        ValueError: unknown name. DataError: a download failed or a digest did not match.
    """
    datasets = remote_datasets()
    if name not in datasets:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(sorted(datasets))}")
    spec = datasets[name]
    base = (url or spec.base_url).rstrip("/") + "/"
    dest = Path(cache_dir or artifacts_cache_dir()) / name
    dest.mkdir(parents=True, exist_ok=True)
    for basename, digest in sorted(spec.sha256_uncompressed.items()):
        target = dest / f"{basename}.gz"
        if target.is_file() and _uncompressed_sha256(target) == digest:
            continue
        source = base + f"{basename}.gz"
        if progress:
            progress(f"downloading {source}")
        fd, tmp_name = tempfile.mkstemp(prefix=f".{basename}.", suffix=".part", dir=dest)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(source, timeout=timeout) as resp:
                shutil.copyfileobj(resp, out)
            got = _uncompressed_sha256(tmp, shown_as=source)
            if got != digest:
                raise DataError(f"{source}: sha256 of the decompressed file is {got}, expected {digest}")
            os.replace(tmp, target)
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise DataError(f"{source}: download failed ({reason})") from None
        finally:
            tmp.unlink(missing_ok=True)
    return dest


def _uncompressed_sha256(path: Path, shown_as: Optional[str] = None) -> str:
    data = read_decompressed(path) if shown_as is None else _decompress_named(path, shown_as)
    return hashlib.sha256(data).hexdigest()


def _decompress_named(path: Path, shown_as: str) -> bytes:
    try:
        return read_decompressed(path)
    except DataError as exc:
        raise DataError(str(exc).replace(str(path), shown_as)) from None


def verify_data_dir(data_dir: str | os.PathLike | None = None, prepare: Optional[bool] = None,
                    sheet: str | os.PathLike | None = None) -> dict:
    """Loads both splits, checks IDX files against a SHA256SUMS.uncompressed beside them, writes a contact sheet.

    Class folders are read as training reads them (prepared when they hold real images:
    `edgemnist.data.folders`), but an unreadable file does not stop the check: every one is
    listed under "bad_files".

    Args:
        data_dir: the data folder (None: $EDGEMNIST_DATA or the shipped MNIST).
        prepare: for class folders: None (auto), True or False (see `edgemnist.data.load_split`).
        sheet: where the contact sheet PNG goes (None: `contact_sheet_path(folder)` in the cache).

    Returns:
        {"data_dir", "layout", "train", "test", "prepared", "no_digit", "bad_files", "cache",
        "contact_sheet", "digests": "verified"|"no SHA256SUMS.uncompressed"} (docs/outputs.md).

    Raises:
        FileNotFoundError: no such folder, or a listed IDX file missing. DataError: malformed IDX
            files or a digest that does not match, with the file named.
    """
    folder = resolve_data_dir(data_dir)
    kind = layout(folder)
    report = {"data_dir": str(folder), "layout": kind}
    splits, no_digit, bad, hits, misses, prepared = {}, {}, {}, 0, 0, False
    if kind == IDX_FILES:
        splits = {split: load_split(split, folder) for split in SPLITS}
    else:
        from edgemnist.data.folders import read_class_folder

        sources = {None: folder} if kind == CLASS_FOLDERS else {split: folder / split for split in SPLITS}
        for split, source in sources.items():
            try:
                found = read_class_folder(source, prepare)
            except ValueError as exc:
                raise DataError(str(exc)) from None
            hits, misses, prepared = hits + found.cache_hits, misses + found.cache_misses, prepared or found.prepared
            no_digit.update(found.no_digit)
            bad.update(found.errors)
            read = Split(found.images, found.labels, str(source), found.files, found.no_digit, found.prepared)
            for name in SPLITS if split is None else (split,):
                splits[name] = split_class_folder(read, name) if split is None else read
    report.update({split: len(splits[split]) for split in SPLITS})
    report["prepared"] = prepared
    report["no_digit"] = [{"file": f, "reason": r} for f, r in sorted(no_digit.items())]
    report["bad_files"] = [{"file": f, "error": e} for f, e in sorted(bad.items())]
    report["cache"] = {"hits": hits, "misses": misses}
    sheet_path = Path(sheet) if sheet else contact_sheet_path(folder)
    write_contact_sheet(splits["train"] if len(splits["train"]) else splits["test"], sheet_path)
    report["contact_sheet"] = str(sheet_path)
    sums_file = folder / "SHA256SUMS.uncompressed"
    if sums_file.is_file():
        for basename, digest in _read_sums(sums_file).items():
            found = find_idx(folder, basename)
            if found is None:
                raise FileNotFoundError(f"{folder}: {basename} is listed in {sums_file.name} but missing")
            got = _uncompressed_sha256(found)
            if got != digest:
                raise DataError(f"{found}: sha256 of the decompressed file is {got}, expected {digest}")
        report["digests"] = "verified"
    else:
        report["digests"] = "no SHA256SUMS.uncompressed"
    return report


def contact_sheet_path(folder: Path) -> Path:
    """The default place of a data folder's contact sheet: the cache, named after the folder and its full path."""
    tag = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:8]
    return Path(artifacts_cache_dir()) / "contact_sheets" / f"{folder.resolve().name or 'data'}-{tag}.png"


def write_contact_sheet(split: Split, path: Path, per_class: int = SHEET_PER_CLASS, zoom: int = SHEET_ZOOM) -> Path:
    """A PNG of the first `per_class` images of each class, one row per class (0 at the top), as the model sees them.

    Each row starts with its digit; a class with fewer images leaves its row's end black.
    Written atomically.
    """
    from PIL import Image, ImageDraw

    from edgemnist.artifacts import atomic_write_with

    cell, gap, margin = 28 * zoom, 2, 24
    sheet = Image.new("L", (margin + per_class * (cell + gap), 10 * (cell + gap)), 40)
    draw = ImageDraw.Draw(sheet)
    for label in range(10):
        top = label * (cell + gap)
        draw.text((6, top + cell // 2 - 6), str(label), fill=255)
        for column, index in enumerate(np.flatnonzero(split.labels == label)[:per_class]):
            image = Image.fromarray(split.images[index]).resize((cell, cell), Image.Resampling.NEAREST)
            sheet.paste(image, (margin + column * (cell + gap), top))
    return atomic_write_with(path, lambda tmp: sheet.save(tmp, "PNG"), ".png")


# --------------------------------------------------------------------------- CLI


def add_commands(subparsers) -> None:
    """Registers `edgemnist data check` and `edgemnist data download`."""
    p = subparsers.add_parser("data", help="check a data folder or download a data set into the cache")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    check = sub.add_parser(
        "check",
        help="load both splits and verify digests",
        description="Load the train and test splits of a data folder (IDX files, or class folders 0/..9/ of "
        "28x28 images or of real photos, which are prepared as predict does), check IDX files against a "
        "SHA256SUMS.uncompressed beside them, list the images with no digit and every unreadable file, and "
        "write a contact sheet (PNG) of what the model will see.",
    )
    check.add_argument("--data-dir", help="data folder (default: $EDGEMNIST_DATA or the shipped MNIST)")
    folders.add_prepare_arguments(check)
    check.add_argument("--sheet", metavar="PNG", help="where to write the contact sheet (default: in the cache; "
                       "the path is printed)")
    check.set_defaults(func=_run_check)
    dl = sub.add_parser(
        "download",
        help="download a data set into the cache, verifying digests",
        description="Download a data set's IDX files into the cache ($EDGEMNIST_CACHE, else "
        "$XDG_CACHE_HOME/edgemnist, else ~/.cache/edgemnist) and verify the sha256 of each decompressed file. Prints the folder "
        "to pass as --data-dir.",
    )
    dl.add_argument("name", choices=sorted(remote_datasets()), help="which data set")
    dl.add_argument("--url", help="base URL to fetch the .gz files from (a mirror or a local server)")
    dl.add_argument("--cache-dir", help="cache folder (default: $EDGEMNIST_CACHE, else $XDG_CACHE_HOME/edgemnist, "
                    "else ~/.cache/edgemnist)")
    dl.add_argument("--timeout", type=float, default=REQUEST_TIMEOUT_S, help="seconds per request (default %(default)s)")
    dl.set_defaults(func=_run_download)


def _run_check(args):
    report = verify_data_dir(args.data_dir, args.prepare, args.sheet)
    lines = [f"{report['data_dir']} ({report['layout']}): {report['train']} train, {report['test']} test images"
             + (f" prepared as predict does ({report['cache']['misses']} now, {report['cache']['hits']} from the cache)"
                if report["prepared"] else "") + f"; digests: {report['digests']}"]
    if report["no_digit"]:
        lines.append(f"{len(report['no_digit'])} image(s) with no digit found, left out:")
        lines += [f"  {item['file']}: {item['reason']}" for item in report["no_digit"]]
    lines.append(f"contact sheet: {report['contact_sheet']}")
    if report["bad_files"]:
        lines.append(f"{len(report['bad_files'])} unreadable file(s); training refuses the folder until they are "
                     "removed or fixed:")
        lines += [f"  {item['error']}" for item in report["bad_files"]]
    return Output(report, "\n".join(lines), status=2 if report["bad_files"] else 0)


def _run_download(args):
    folder = download_dataset(args.name, args.url, args.cache_dir, args.timeout,
                              progress=lambda line: print(line, file=sys.stderr))
    return Output({"name": args.name, "data_dir": str(folder)}, str(folder))
