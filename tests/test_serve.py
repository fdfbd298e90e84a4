"""`edgemnist serve`: a real server on 127.0.0.1 answering real images with a real model, as the Python API would."""
from __future__ import annotations

import base64
import http.client
import io
import json
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _helpers import cli_command, free_port, run_cli, sigint_default
from _images import digit_photo, jpeg_bytes

import edgemnist
from edgemnist import serve
from edgemnist.runtime.accelerator import RuntimeSettings
from edgemnist.runtime.models import SHIPPED_DIR

SHIPPED_INT8 = SHIPPED_DIR / "mnist_int8.tflite"
CAP = 200_000  # the test server's body cap: the images here are a few KB


@pytest.fixture(scope="module")
def model_path(tflite_variants):
    """The shipped int8 model once the package holds it, else the session's int8 export."""
    return SHIPPED_INT8 if SHIPPED_INT8.is_file() else tflite_variants["int8"]


@pytest.fixture(scope="module")
def reference(model_path):
    """What a script gets: edgemnist.load(model) with the server's default options."""
    return edgemnist.load(str(model_path))


@pytest.fixture(scope="module")
def server(model_path):
    """A server in a thread of this process: 2 Models, a small body cap, a short silence timeout."""
    config = serve.ServeConfig(host="127.0.0.1", port=0, workers=2, max_bytes=CAP, timeout=3.0, quiet=True)
    srv = serve.make_server(str(model_path), config)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(10)


def _connect(server) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=60)


def _ask(conn, method: str, path: str, body: bytes = None, headers: dict = None) -> tuple:
    """(status, headers, parsed JSON or raw bytes) of one request on a kept-alive connection."""
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    if response.getheader("Content-Type", "").startswith("application/json"):
        data = json.loads(data)
    return response.status, response, data


def ask(server, method: str, path: str, body: bytes = None, headers: dict = None) -> tuple:
    conn = _connect(server)
    try:
        return _ask(conn, method, path, body, headers)
    finally:
        conn.close()


def multipart(files: list, fields: dict = None) -> tuple:
    """(body, content type) of a multipart/form-data upload, built by hand as a browser's FormData is."""
    boundary = "----edgemnist-test-boundary-7MA4YWxkTrZu0gW"
    parts = []
    for name, value in (fields or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for field, filename, data, content_type in files:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
                     f"Content-Type: {content_type}\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def expected(reference, data: bytes, name: str = serve.UPLOAD, top: int = 2, digits: bool = False) -> dict:
    result = reference.predict_number(data) if digits else reference.predict(data)
    return {"path": name, "label": None, **result.to_json(top), "right": None, "prepared": None}


def test_raw_body_gives_the_python_apis_answer_with_predict_jsons_keys(server, reference, model_path, tmp_path):
    data = jpeg_bytes(digit_photo("7"))
    status, response, record = ask(server, "POST", "/predict", data, {"Content-Type": "image/jpeg"})
    assert status == 200 and response.getheader("Content-Type") == "application/json"
    assert record == expected(reference, data)
    assert record["digit"] == reference.predict(data).digit and len(record["probabilities"]) == 10
    # the keys of one record of `edgemnist predict --json`, the same image as a file
    photo = tmp_path / "seven.jpg"
    photo.write_bytes(data)
    run = run_cli("predict", model_path, photo, "--json")
    assert run.returncode == 0, run.stderr
    (cli_record,) = json.loads(run.stdout)["predictions"]
    assert sorted(record) == sorted(cli_record)
    assert {k: v for k, v in record.items() if k != "path"} == {k: v for k, v in cli_record.items() if k != "path"}


def test_multipart_upload_is_read_as_the_same_bytes_and_named_by_its_file(server, reference):
    data = png_bytes(digit_photo("3", noise=4.0))
    body, content_type = multipart([("image", "three.png", data, "image/png")], {"note": "ignored"})
    status, _, record = ask(server, "POST", "/predict?top=3", body, {"Content-Type": content_type})
    assert status == 200 and record == expected(reference, data, "three.png", top=3)
    assert len(record["top"]) == 3
    # no field named image: the first file is the upload
    body, content_type = multipart([("photo", "other.png", data, "application/octet-stream")])
    status, _, record = ask(server, "POST", "/predict", body, {"Content-Type": content_type})
    assert status == 200 and record == expected(reference, data, "other.png")


def test_digits_reads_a_number(server, reference):
    data = jpeg_bytes(digit_photo("4072", size=(420, 160), height=100), quality=90)
    status, _, record = ask(server, "POST", "/predict?digits=1", data)
    assert status == 200 and record == expected(reference, data, digits=True)
    assert len(record["digits"]) == 4 and "digit" not in record


def test_prepared_gives_the_28x28_image_the_model_saw_as_a_png_data_url(server, reference):
    data = jpeg_bytes(digit_photo("5", centre=(0.4, 0.6), light=40.0))
    status, _, record = ask(server, "POST", "/predict?prepared=1&top=3", data)
    assert status == 200
    (url,) = record["prepared"]
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    image = Image.open(io.BytesIO(base64.b64decode(url[len(prefix):])))
    assert image.format == "PNG" and image.size == (28, 28) and image.mode == "L"
    np.testing.assert_array_equal(np.asarray(image), reference.predict(data).image)
    assert {k: v for k, v in record.items() if k != "prepared"} == \
        {k: v for k, v in expected(reference, data, top=3).items() if k != "prepared"}
    # a number: one image per digit
    data = jpeg_bytes(digit_photo("81", size=(300, 160)), quality=90)
    status, _, record = ask(server, "POST", "/predict?digits=1&prepared=1", data)
    assert status == 200 and len(record["prepared"]) == len(record["digits"]) == 2


@pytest.mark.parametrize("body, needle", [
    (b"this is not an image at all", "not an image"),
    (b"", "empty body"),
    (jpeg_bytes(digit_photo("1"))[:300], "cannot"),  # a truncated JPEG
])
def test_bad_image_is_a_400_with_one_line_naming_the_upload(server, body, needle):
    status, response, answer = ask(server, "POST", "/predict", body)
    assert status == 400 and response.getheader("Content-Type") == "application/json"
    assert list(answer) == ["error"] and "\n" not in answer["error"]
    assert answer["error"].startswith(serve.UPLOAD + ": ") and needle in answer["error"]


def test_bad_multipart_upload_names_its_file(server):
    body, content_type = multipart([("image", "holiday.jpg", b"\x00\x01garbage", "image/jpeg")])
    status, _, answer = ask(server, "POST", "/predict", body, {"Content-Type": content_type})
    assert status == 400 and answer["error"].startswith("holiday.jpg: ")
    body, content_type = multipart([], {"image": "text, not a file"})  # a field, but not a file
    status, _, answer = ask(server, "POST", "/predict", body, {"Content-Type": "multipart/form-data"})
    assert status == 400 and "multipart" in answer["error"]


def test_bad_query_is_a_400(server):
    data = jpeg_bytes(digit_photo("2"))
    for query, needle in (("top=0", "?top=0"), ("top=x", "?top=x"), ("digits=maybe", "?digits=maybe"),
                          ("colour=red", "'colour'")):
        status, _, answer = ask(server, "POST", f"/predict?{query}", data)
        assert status == 400 and needle in answer["error"], (query, answer)


def test_body_over_the_cap_is_a_413_and_the_connection_closes(server):
    status, response, answer = ask(server, "POST", "/predict", b"\xff" * (CAP + 1))
    assert status == 413 and str(CAP) in answer["error"] and response.getheader("Connection") == "close"
    status, _, _ = ask(server, "POST", "/predict", jpeg_bytes(digit_photo("6")))
    assert status == 200


def test_unknown_path_is_404_and_wrong_method_405(server):
    status, _, answer = ask(server, "GET", "/predictions")
    assert status == 404 and answer["error"].startswith("/predictions: no such path")
    status, response, answer = ask(server, "GET", "/predict")
    assert status == 405 and response.getheader("Allow") == "POST" and "GET /predict" in answer["error"]
    status, response, _ = ask(server, "DELETE", "/health")
    assert status == 405 and response.getheader("Allow") == "GET"
    status, _, answer = ask(server, "BREW", "/health")  # no such method at all: http.server's 501, same shape
    assert status == 501 and list(answer) == ["error"]


def test_health_and_model(server, model_path):
    status, _, health = ask(server, "GET", "/health")
    assert status == 200 and health["status"] == "ok" and health["model"] == str(model_path)
    assert health["workers"] == 2 and health["max_bytes"] == CAP and health["gate"]["threshold"] > 0
    status, _, manifest = ask(server, "GET", "/model")
    beside = Path(str(model_path) + ".json")
    assert status == 200 and manifest == json.loads(beside.read_text())


def test_the_page_is_served_at_the_root(server):
    status, response, body = ask(server, "GET", "/")
    if serve.PAGE.is_file():
        assert status == 200 and response.getheader("Content-Type") == "text/html; charset=utf-8"
        assert body == serve.PAGE.read_bytes() and b'id="pad"' in body
    else:  # before the page exists: a clear error, not a crash
        assert status == 404 and "index.html" in body["error"]


def test_keep_alive_one_connection_carries_requests_good_and_bad(server, reference):
    conn = _connect(server)
    try:
        good = jpeg_bytes(digit_photo("9"))
        assert _ask(conn, "POST", "/predict", good)[0] == 200
        sock = conn.sock
        for method, path, body, want in (("POST", "/predict", b"nonsense", 400), ("GET", "/nowhere", None, 404),
                                         ("POST", "/health", b"a body it never reads", 405),
                                         ("POST", "/predict?top=99", good, 400), ("GET", "/health", None, 200)):
            assert _ask(conn, method, path, body)[0] == want, (method, path)
        status, _, record = _ask(conn, "POST", "/predict", good)
        assert status == 200 and record == expected(reference, good)
        assert conn.sock is sock  # never reconnected: every answer kept the connection open
    finally:
        conn.close()


def test_service_survives_broken_requests(server):
    port = server.server_address[1]
    broken = [
        b"GARBAGE\r\n\r\n",  # not a request line
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nonly a little",  # truncated, then closed
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: lots\r\n\r\n",
        b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"POST /predict HTTP/1.1\r\nHost: x\r\n\r\n",  # no length
    ]
    for raw in broken:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(raw)
            s.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
        status_line, _, rest = answer.partition(b"\r\n")  # each is refused with a 4xx and the error shape
        assert status_line.startswith(b"HTTP/1.1 4") and b'{"error": ' in rest, (raw, answer)
        assert ask(server, "GET", "/health")[0] == 200, raw


def test_stalled_body_times_out_with_408_and_frees_the_thread(server):
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=30) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\nsome bytes, then nothing")
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408 ") and b"stalled" in answer
    assert time.monotonic() - started < 25  # the 3 s timeout, not the client's patience, ended it
    assert ask(server, "GET", "/health")[0] == 200


def test_concurrent_requests_from_8_threads_are_all_answered_right(server, reference):
    images = [jpeg_bytes(digit_photo(str(d), centre=(0.3 + 0.04 * d, 0.5), noise=3.0, seed=d)) for d in range(10)]
    want = [expected(reference, data, top=3) for data in images]
    results, errors = {}, []

    def client(worker: int):
        conn = _connect(server)
        try:
            for i in range(6):
                k = (worker + 3 * i) % len(images)
                status, _, record = _ask(conn, "POST", "/predict?top=3", images[k])
                results[(worker, i)] = (k, status, record)
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(repr(exc))
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors and len(results) == 48
    for k, status, record in results.values():
        assert status == 200 and record == want[k]


def test_serve_config_checks_its_values():
    for bad in ({"port": 70000}, {"max_bytes": 0}, {"workers": 0}, {"processes": 0}, {"timeout": 0}, {"busy_timeout": -1}, {"linger": 0},
                {"top": 11}, {"min_probability": 2.0}, {"temperature": -1.0}):
        with pytest.raises(ValueError):
            serve.ServeConfig(**bad)
    assert serve.ServeConfig().max_bytes == 10_000_000 and serve.ServeConfig().host == "0.0.0.0"
    # the runtime settings (checked where they are made) reach the Models as predict takes them
    runtime = RuntimeSettings(threads=2, backend="ai_edge_litert")
    assert serve.ServeConfig(workers=1, runtime=runtime).predict_config().runtime == runtime


def test_cli_start_up_line_port_taken_and_ctrl_c(model_path):
    port = free_port()
    child = subprocess.Popen(cli_command("serve", model_path, "--host", "127.0.0.1", "--port", port),
                             stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, preexec_fn=sigint_default)
    try:
        line = child.stderr.readline().strip()
        assert line == f"serving {model_path} on http://127.0.0.1:{port}/ (Ctrl-C stops)"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", "/predict", body=jpeg_bytes(digit_photo("4")))
        assert conn.getresponse().status == 200
        conn.close()
        taken = run_cli("serve", model_path, "--host", "127.0.0.1", "--port", port, timeout=120)
        assert taken.returncode == 2
        assert taken.stderr.strip().splitlines() == [
            f"edgemnist: error: port {port} on 127.0.0.1 is taken (another server runs there?): pick another "
            "with --port"]
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=60)
        assert child.returncode == 130
        assert "POST /predict 200 " in err  # the request's log line
        assert err.strip().splitlines()[-1] == "edgemnist: error: interrupted"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_cli_bad_model_is_one_line_exit_2(tmp_path):
    missing = tmp_path / "missing.tflite"
    run = run_cli("serve", missing, "--host", "127.0.0.1", "--port", free_port(), timeout=120)
    assert run.returncode == 2 and run.stderr.strip().splitlines() == [f"edgemnist: error: {missing}: no such file"]
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"not a flatbuffer at all, " * 8)
    for processes in ("1", "2"):  # a server process reports its load error to the parent, which exits alike
        run = run_cli("serve", garbage, "--host", "127.0.0.1", "--port", free_port(), "--processes", processes,
                      timeout=120)
        lines = run.stderr.strip().splitlines()
        assert run.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"edgemnist: error: {garbage}: ")


def test_multipart_parts_come_back_byte_for_byte():
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, 300_000, dtype=np.uint8).tobytes() + b"\r\n--\r\n\r\r\n\n"  # line ends, dashes
    body, content_type = multipart([("other", "first.png", b"not this one", "image/png"),
                                    ("image", "photo  2.jpg", data, "image/jpeg")], {"image_note": "x"})
    assert serve.multipart_upload(body, content_type) == (data, "photo 2.jpg")
    with pytest.raises(serve.RequestError, match="without a boundary"):
        serve.multipart_upload(body, "multipart/form-data")
    with pytest.raises(serve.RequestError, match="without parts"):
        serve.multipart_upload(body, "multipart/form-data; boundary=something-else")


def test_cli_processes_share_the_port_and_stop_together(model_path, reference):
    port = free_port()
    child = subprocess.Popen(cli_command("serve", model_path, "--host", "127.0.0.1", "--port", port, "--processes",
                                         "2", "--workers", "1", "--quiet"),
                             stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, preexec_fn=sigint_default)
    try:
        assert child.stderr.readline().startswith(f"serving {model_path} on http://127.0.0.1:{port}/")
        data = jpeg_bytes(digit_photo("8"))
        pids = set()
        for _ in range(40):  # each new connection goes to one of the two processes
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("GET", "/health")
            health = json.loads(conn.getresponse().read())
            conn.request("POST", "/predict", body=data)
            response = conn.getresponse()
            assert response.status == 200 and json.loads(response.read()) == expected(reference, data)
            conn.close()
            assert health["processes"] == 2 and health["pid"] != child.pid
            pids.add(health["pid"])
            if len(pids) == 2:
                break
        assert len(pids) == 2
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=60)
        assert child.returncode == 130 and err.strip().splitlines()[-1] == "edgemnist: error: interrupted"
        for pid in pids:  # the server processes went with it
            assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_unexpected_failure_is_a_500_and_the_service_goes_on(server, reference, monkeypatch):
    def broken(image):  # a bug in the server's own code, after the model has read the image
        raise RuntimeError("encoder exploded\nsecond line")

    monkeypatch.setattr(serve, "data_url", broken)
    data = jpeg_bytes(digit_photo("2"))
    status, _, answer = ask(server, "POST", "/predict?prepared=1", data)
    assert status == 500 and answer == {"error": "internal error: RuntimeError: encoder exploded"}
    status, _, record = ask(server, "POST", "/predict", data)  # the Model went back to the pool
    assert status == 200 and record == expected(reference, data)
    monkeypatch.undo()
    assert all(ask(server, "POST", "/predict", data)[0] == 200 for _ in range(3))  # both Models still there


def test_no_free_model_is_a_503_and_a_model_without_manifest_describes_itself(model_path, tmp_path):
    import shutil

    bare = shutil.copy(model_path, tmp_path / "bare.tflite")  # no manifest beside it
    config = serve.ServeConfig(host="127.0.0.1", port=0, workers=1, busy_timeout=0.2, quiet=True)
    srv = serve.make_server(str(bare), config)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        status, _, info = ask(srv, "GET", "/model")
        assert status == 200 and info["inputs"][0]["shape"][1:3] == [28, 28]  # what `edgemnist info --json` gives
        data = jpeg_bytes(digit_photo("0"))
        with srv.service.pool.checkout(1.0):  # the only Model is taken
            status, _, answer = ask(srv, "POST", "/predict", data)
        assert status == 503 and answer["error"].startswith("busy: no model free within 0.2 s")
        assert ask(srv, "POST", "/predict", data)[0] == 200
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(10)
