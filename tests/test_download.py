"""Tests for pskinlib.download, against a small HTTP server on 127.0.0.1 (no internet needed)."""

from __future__ import annotations

import hashlib
import http.server
import io
import re
import stat
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest
from conftest import zip_bytes as _zip_bytes

from pskinlib.data.download import (
    DownloadError,
    UnsafeArchiveError,
    download_file,
    download_ham10000,
    safe_extract,
    safe_extract_tar,
    safe_extract_zip,
)
from pskinlib.info import HAM10000_SOURCES as DOWNLOAD_SOURCES
from pskinlib.info import ISIC2018_GROUND_TRUTH, ISIC2018_LESION_GROUPINGS, LAYOUT_FOLDERS

PAYLOAD = bytes(range(256)) * 40  # 10240 bytes, every byte value, so an offset error changes the content


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files``; honours ``Range: bytes=N-`` unless ``server.ignore_range`` is set, and cuts the
    connection after ``server.cut_after[path]`` body bytes (once) to simulate a broken download."""

    def do_GET(self) -> None:
        server = self.server
        range_header = self.headers.get("Range")
        server.requests.append((self.path, range_header))
        data = server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
        if match and not server.ignore_range:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        cut = server.cut_after.pop(self.path, None)
        if cut is not None:
            body = body[:cut]
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output quiet
        pass


@pytest.fixture
def server():
    """A threaded HTTP server on a free port of 127.0.0.1; ``server.url(path)`` gives a file's address."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    srv.files = {}
    srv.cut_after = {}
    srv.ignore_range = False
    srv.requests = []
    srv.url = lambda path: f"http://127.0.0.1:{srv.server_address[1]}{path}"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()




# ------------------------------------------------------------------------------------------ download_file


def test_download_file_fetches_whole_file_and_checks_size_and_md5(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    dest = tmp_path / "sub" / "data.bin"

    result = download_file(
        server.url("/data.bin"), dest, size=len(PAYLOAD), md5=_md5(PAYLOAD), progress=False
    )

    assert result == dest
    assert dest.read_bytes() == PAYLOAD
    assert not dest.with_name("data.bin.part").exists()
    assert server.requests == [("/data.bin", None)]


def test_download_file_without_expected_size_checks_content_length(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    server.cut_after["/data.bin"] = 100
    dest = tmp_path / "data.bin"

    with pytest.raises(DownloadError, match="stopped after 100 of 10240 bytes"):
        download_file(server.url("/data.bin"), dest, progress=False)
    assert not dest.exists()


def test_download_file_resumes_a_broken_download_with_a_range_request(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    server.cut_after["/data.bin"] = 3000
    dest = tmp_path / "data.bin"
    part = tmp_path / "data.bin.part"

    with pytest.raises(DownloadError, match="run the download again to resume"):
        download_file(server.url("/data.bin"), dest, size=len(PAYLOAD), progress=False, chunk_size=512)
    assert not dest.exists()
    assert part.read_bytes() == PAYLOAD[:3000]

    download_file(server.url("/data.bin"), dest, size=len(PAYLOAD), md5=_md5(PAYLOAD), progress=False)

    assert server.requests[-1] == ("/data.bin", "bytes=3000-")
    assert dest.read_bytes() == PAYLOAD
    assert not part.exists()


def test_download_file_restarts_from_zero_when_server_ignores_range(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    server.ignore_range = True
    dest = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(b"x" * 500)  # a stale partial file that must not be kept

    download_file(server.url("/data.bin"), dest, md5=_md5(PAYLOAD), progress=False)

    assert server.requests == [("/data.bin", "bytes=500-")]
    assert dest.read_bytes() == PAYLOAD


def test_download_file_finishes_a_complete_part_file_the_server_refuses_to_extend(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    dest = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(
        PAYLOAD
    )  # an earlier run got all bytes but stopped before renaming

    download_file(server.url("/data.bin"), dest, md5=_md5(PAYLOAD), progress=False)

    assert dest.read_bytes() == PAYLOAD


def test_download_file_md5_mismatch_raises_and_moves_file_to_bad(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    dest = tmp_path / "data.bin"
    wrong = "0" * 32

    with pytest.raises(DownloadError) as excinfo:
        download_file(server.url("/data.bin"), dest, md5=wrong, progress=False)

    message = str(excinfo.value)
    assert "data.bin" in message and wrong in message and _md5(PAYLOAD) in message
    assert not dest.exists()
    assert not (tmp_path / "data.bin.part").exists()
    assert (tmp_path / "data.bin.bad").read_bytes() == PAYLOAD


def test_download_file_refuses_when_server_size_differs_from_expected(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    dest = tmp_path / "data.bin"

    with pytest.raises(DownloadError, match="10240 bytes on the server but 99 bytes were expected"):
        download_file(server.url("/data.bin"), dest, size=99, progress=False)
    assert not dest.exists()


def test_download_file_returns_existing_good_file_without_contacting_server(server, tmp_path):
    dest = tmp_path / "data.bin"
    dest.write_bytes(PAYLOAD)

    result = download_file(
        server.url("/data.bin"), dest, size=len(PAYLOAD), md5=_md5(PAYLOAD), progress=False
    )

    assert result == dest
    assert server.requests == []


def test_download_file_replaces_existing_file_that_fails_its_check(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    dest = tmp_path / "data.bin"
    dest.write_bytes(b"corrupt")

    download_file(server.url("/data.bin"), dest, md5=_md5(PAYLOAD), progress=False)

    assert dest.read_bytes() == PAYLOAD
    assert (tmp_path / "data.bin.bad").read_bytes() == b"corrupt"


def test_download_file_reports_http_errors_with_the_url(server, tmp_path):
    with pytest.raises(DownloadError, match=r"missing\.bin answered HTTP 404"):
        download_file(server.url("/missing.bin"), tmp_path / "missing.bin", progress=False)


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"md5": "not-an-md5"}, "md5"),
        ({"size": -1}, "size"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_download_file_rejects_invalid_parameters_before_any_request(server, tmp_path, kwargs, parameter):
    with pytest.raises(ValueError, match=parameter):
        download_file(server.url("/data.bin"), tmp_path / "data.bin", progress=False, **kwargs)
    assert server.requests == []


def test_download_file_rejects_non_http_url(tmp_path):
    with pytest.raises(ValueError, match="url must be an http"):
        download_file("ftp://example.org/data.bin", tmp_path / "data.bin", progress=False)


# ------------------------------------------------------------------------------------------ archives


def test_safe_extract_zip_extracts_a_good_archive(tmp_path):
    archive = tmp_path / "good.zip"
    archive.write_bytes(_zip_bytes({"top/a.txt": b"a", "top/sub/b.txt": b"b", "top/x/../c.txt": b"c"}))
    target = tmp_path / "out"

    written = safe_extract_zip(archive, target)

    assert sorted(p.relative_to(target).as_posix() for p in written) == [
        "top/a.txt",
        "top/c.txt",
        "top/sub/b.txt",
    ]
    assert (target / "top" / "sub" / "b.txt").read_bytes() == b"b"
    assert (target / "top" / "c.txt").read_bytes() == b"c"


@pytest.mark.parametrize(
    "bad_name",
    ["../../x", "good/../../x", "/tmp/pskin_abs_x", "C:/windows/x", "..\\..\\x"],
    ids=["dotdot", "dotdot-inside", "absolute", "drive-letter", "backslash-dotdot"],
)
def test_safe_extract_zip_refuses_entries_leaving_target_and_extracts_nothing(tmp_path, bad_name):
    archive = tmp_path / "bad.zip"
    # The harmless entry comes first: it must not be written either.
    archive.write_bytes(_zip_bytes({"ok.txt": b"fine", bad_name: b"evil"}))
    target = tmp_path / "deep" / "out"
    target.mkdir(parents=True)

    with pytest.raises(UnsafeArchiveError, match=re.escape(repr(bad_name))):
        safe_extract_zip(archive, target)

    assert list(target.iterdir()) == []
    assert not (tmp_path / "x").exists()


def test_safe_extract_zip_refuses_symlink_entries_and_extracts_nothing(tmp_path):
    archive = tmp_path / "link.zip"
    link = zipfile.ZipInfo("innocent_link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.txt", b"fine")
        zf.writestr(link, "/etc/passwd")
    target = tmp_path / "out"
    target.mkdir()

    with pytest.raises(UnsafeArchiveError, match="symbolic link entry: 'innocent_link'"):
        safe_extract_zip(archive, target)
    assert list(target.iterdir()) == []


def test_safe_extract_zip_reports_a_damaged_archive(tmp_path):
    archive = tmp_path / "broken.zip"
    archive.write_bytes(b"this is not a zip file")

    with pytest.raises(DownloadError, match="broken.zip is not a zip archive"):
        safe_extract_zip(archive, tmp_path / "out")


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _tar_link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def test_safe_extract_tar_extracts_a_good_archive_with_an_inside_link(tmp_path):
    archive = _tar(
        tmp_path / "good.tar.gz",
        [
            (tarfile.TarInfo("top/a.txt"), b"a"),
            (_tar_link("top/link_to_a", "a.txt", tarfile.SYMTYPE), None),
        ],
    )
    target = tmp_path / "out"

    written = safe_extract(archive, target)

    assert sorted(p.relative_to(target).as_posix() for p in written) == ["top/a.txt", "top/link_to_a"]
    assert (target / "top" / "link_to_a").read_bytes() == b"a"


@pytest.mark.parametrize(
    ("bad_member", "message"),
    [
        (_tar_link("top/escape", "../../outside.txt", tarfile.SYMTYPE), "symbolic link 'top/escape'"),
        (_tar_link("top/abs", "/etc/passwd", tarfile.SYMTYPE), "symbolic link 'top/abs' to an absolute path"),
        (_tar_link("top/hard", "../outside.txt", tarfile.LNKTYPE), "hard link 'top/hard'"),
        (_tar_link("top/dev", "", tarfile.CHRTYPE), "device file or FIFO: 'top/dev'"),
    ],
    ids=["symlink-dotdot", "symlink-absolute", "hardlink-dotdot", "device"],
)
def test_safe_extract_tar_refuses_links_outside_and_devices_and_extracts_nothing(
    tmp_path, bad_member, message
):
    archive = _tar(tmp_path / "bad.tar.gz", [(tarfile.TarInfo("top/ok.txt"), b"fine"), (bad_member, None)])
    target = tmp_path / "deep" / "out"
    target.mkdir(parents=True)

    with pytest.raises(UnsafeArchiveError, match=re.escape(message)):
        safe_extract_tar(archive, target)
    assert list(target.iterdir()) == []


@pytest.mark.parametrize("bad_name", ["../x.txt", "/tmp/pskin_abs_x.txt"], ids=["dotdot", "absolute"])
def test_safe_extract_tar_refuses_member_paths_leaving_target(tmp_path, bad_name):
    archive = _tar(
        tmp_path / "bad.tar", [(tarfile.TarInfo("ok.txt"), b"fine"), (tarfile.TarInfo(bad_name), b"evil")]
    )
    target = tmp_path / "out"
    target.mkdir()

    with pytest.raises(UnsafeArchiveError, match=re.escape(repr(bad_name))):
        safe_extract_tar(archive, target)
    assert list(target.iterdir()) == []


# ------------------------------------------------------------------------------------------ download_ham10000

IMAGES = LAYOUT_FOLDERS["isic2018"][0]
GROUND_TRUTH_FOLDER = Path(ISIC2018_GROUND_TRUTH).stem
IMAGE_IDS = ["ISIC_0024306", "ISIC_0024307", "ISIC_0024308"]
GROUND_TRUTH_CSV = (
    b"image,MEL,NV,BCC,AKIEC,BKL,DF,VASC\n"
    b"ISIC_0024306,0.0,1.0,0.0,0.0,0.0,0.0,0.0\n"
    b"ISIC_0024307,1.0,0.0,0.0,0.0,0.0,0.0,0.0\n"
    b"ISIC_0024308,0.0,0.0,0.0,0.0,1.0,0.0,0.0\n"
)
GROUPINGS_CSV = (
    b"image,lesion_id,diagnosis_confirm_type\n"
    b"ISIC_0024306,HAM_0000118,histopathology\n"
    b"ISIC_0024307,HAM_0000118,histopathology\n"
    b"ISIC_0024308,HAM_0002730,follow_up\n"
)


def _serve_fake_isic2018(server, images_zip: bytes | None = None) -> str:
    """Put tiny stand-ins for the three official files on the server; return the base URL to use."""
    fake_jpeg = b"\xff\xd8\xff\xe0 not really a jpeg \xff\xd9"
    if images_zip is None:
        images = {f"{IMAGES}/{image_id}.jpg": fake_jpeg + image_id.encode() for image_id in IMAGE_IDS}
        images[f"{IMAGES}/ATTRIBUTION.txt"] = b"attribution"
        images_zip = _zip_bytes(images)
    server.files[f"/mirror/2018/{IMAGES}.zip"] = images_zip
    server.files[f"/mirror/2018/{GROUND_TRUTH_FOLDER}.zip"] = _zip_bytes(
        {
            f"{GROUND_TRUTH_FOLDER}/{ISIC2018_GROUND_TRUTH}": GROUND_TRUTH_CSV,
            f"{GROUND_TRUTH_FOLDER}/LICENSE.txt": b"l",
        }
    )
    server.files[f"/mirror/2018/{ISIC2018_LESION_GROUPINGS}"] = GROUPINGS_CSV
    return server.url("/mirror/2018")


def test_download_ham10000_builds_isic2018_layout_and_second_call_downloads_nothing(server, tmp_path):
    base_url = _serve_fake_isic2018(server)
    target = tmp_path / "ham10000"

    result = download_ham10000(target, progress=False, base_url=base_url)

    assert result == target
    assert sorted(p.name for p in (target / IMAGES).glob("ISIC_*.jpg")) == [f"{i}.jpg" for i in IMAGE_IDS]
    assert (target / GROUND_TRUTH_FOLDER / ISIC2018_GROUND_TRUTH).read_bytes() == GROUND_TRUTH_CSV
    assert (target / ISIC2018_LESION_GROUPINGS).read_bytes() == GROUPINGS_CSV
    assert {path for path, _ in server.requests} == {f"/mirror/2018/{s['name']}" for s in DOWNLOAD_SOURCES}
    hits = len(server.requests)

    download_ham10000(target, progress=False, base_url=base_url)

    assert len(server.requests) == hits


def test_download_ham10000_extracts_again_when_extracted_folder_was_deleted(server, tmp_path):
    base_url = _serve_fake_isic2018(server)
    target = tmp_path / "ham10000"
    download_ham10000(target, progress=False, base_url=base_url)
    hits = len(server.requests)

    for image in (target / IMAGES).iterdir():
        image.unlink()
    (target / IMAGES).rmdir()
    download_ham10000(target, progress=False, base_url=base_url)

    assert len(list((target / IMAGES).glob("ISIC_*.jpg"))) == 3
    assert len(server.requests) == hits  # the archive in downloads/ was reused, not fetched again


def test_download_ham10000_refuses_unsafe_archive_and_marks_nothing_done(server, tmp_path):
    evil = _zip_bytes({f"{IMAGES}/ISIC_0024306.jpg": b"jpg", "../../evil.txt": b"evil"})
    base_url = _serve_fake_isic2018(server, images_zip=evil)
    target = tmp_path / "ham10000"

    with pytest.raises(UnsafeArchiveError, match="evil.txt"):
        download_ham10000(target, progress=False, base_url=base_url)

    assert not (target / IMAGES).exists()
    assert not list((target / "downloads").glob("*.extracted"))
    assert not (tmp_path / "evil.txt").exists()


def test_download_ham10000_reports_archive_without_expected_folder(server, tmp_path):
    base_url = _serve_fake_isic2018(
        server, images_zip=_zip_bytes({"some_other_folder/ISIC_0024306.jpg": b"j"})
    )

    with pytest.raises(DownloadError, match=f"did not produce .*{IMAGES}"):
        download_ham10000(tmp_path / "ham10000", progress=False, base_url=base_url)


def test_download_ham10000_rejects_a_source_without_url(tmp_path):
    with pytest.raises(ValueError, match=r"sources\[0\] is missing url"):
        download_ham10000(tmp_path, sources=({"name": "x.zip", "extract": True},), progress=False)
