"""Tests for edgemnist/data/download.py: digest checks of a data folder, verified downloads from a local server."""
from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import shutil
import threading

import pytest

from edgemnist import data
from edgemnist.data import download


def test_shipped_mnist_verifies(tmp_path):
    report = download.verify_data_dir(sheet=tmp_path / "sheet.png")
    assert report == {"data_dir": str(data.packaged_data_dir()), "layout": data.IDX_FILES, "train": 60000,
                      "test": 10000, "prepared": False, "no_digit": [], "bad_files": [],
                      "cache": {"hits": 0, "misses": 0}, "contact_sheet": str(tmp_path / "sheet.png"),
                      "digests": "verified"}
    assert (tmp_path / "sheet.png").is_file()


def test_digest_mismatch_is_reported(tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(data.packaged_data_dir(), folder)
    sums = folder / "SHA256SUMS.uncompressed"
    sums.write_text(sums.read_text().replace("0fa7898d", "00000000"))
    with pytest.raises(data.DataError, match="t10k-images-idx3-ubyte.gz: sha256 of the decompressed file"):
        download.verify_data_dir(folder)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def local_server(tmp_path):
    """Serves tmp_path/www on 127.0.0.1 for the duration of a test."""
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_download_verifies_and_caches(tmp_path, local_server):
    root, url = local_server
    for path in data.packaged_data_dir().glob("*.gz"):
        shutil.copy(path, root / path.name)
    lines = []
    folder = download.download_dataset("mnist", url=url, cache_dir=tmp_path / "cache", progress=lines.append)
    assert folder == tmp_path / "cache" / "mnist" and len(lines) == 4
    assert len(data.load_split("test", folder)) == 10000
    expected = download.remote_datasets()["mnist"].sha256_uncompressed["t10k-labels-idx1-ubyte"]
    assert hashlib.sha256(gzip.decompress((folder / "t10k-labels-idx1-ubyte.gz").read_bytes())).hexdigest() == expected
    # a second call finds valid files and fetches nothing
    lines.clear()
    download.download_dataset("mnist", url=url, cache_dir=tmp_path / "cache", progress=lines.append)
    assert lines == []


def test_download_rejects_bad_digest_and_keeps_cache_clean(tmp_path, local_server):
    root, url = local_server
    for path in data.packaged_data_dir().glob("*.gz"):
        shutil.copy(path, root / path.name)
    # a well-formed IDX file, but not the one the digest names
    shutil.copy(root / "train-labels-idx1-ubyte.gz", root / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(data.DataError, match="t10k-labels-idx1-ubyte.gz: sha256 of the decompressed file"):
        download.download_dataset("mnist", url=url, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "mnist" / "t10k-labels-idx1-ubyte.gz").exists()
    assert not list((tmp_path / "cache" / "mnist").glob(".*"))


def test_download_failure_is_one_clear_error(tmp_path, local_server):
    _, url = local_server  # serves an empty folder: every file is a 404
    with pytest.raises(data.DataError, match="download failed"):
        download.download_dataset("mnist", url=url, cache_dir=tmp_path / "cache", timeout=5)
    with pytest.raises(ValueError, match="unknown data set"):
        download.download_dataset("cifar")
