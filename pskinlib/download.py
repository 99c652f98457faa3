"""Download the official HAM10000 data (ISIC 2018 Task 3 training set) and unpack it safely.

Three pieces, each usable on its own:

* ``download_file`` fetches one URL to a file. It writes to ``<dest>.part`` first, resumes a broken download
  with an HTTP ``Range`` request, checks the size and (when known) the md5, and only then renames the file to
  ``dest``. A file that fails the check is renamed to ``<dest>.bad`` so that nothing uses it by mistake.
* ``safe_extract_zip`` / ``safe_extract_tar`` unpack an archive only if *every* entry stays inside the target
  folder: a malicious archive (``../../x``, absolute paths, links pointing outside) extracts nothing at all.
* ``download_ham10000`` puts it together: it downloads ``info.DOWNLOAD_SOURCES`` into ``<target>/downloads/``,
  unpacks the archives into ``<target>`` (the ISIC 2018 Task 3 layout) and skips whatever an earlier run finished.

Only the standard library is needed; ``tqdm`` draws a progress bar when it is installed.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import posixpath
import re
import shutil
import stat
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from pskinlib import __version__
from pskinlib.info import DOWNLOAD_SOURCES, ISIC2018_GROUND_TRUTH, ISIC2018_LESION_GROUPINGS, LAYOUT_FOLDERS

logger = logging.getLogger(__name__)

USER_AGENT = f"pskinlib/{__version__} (+https://doi.org/10.7910/DVN/DBW86T)"
DOWNLOADS_FOLDER = "downloads"
MARKER_SUFFIX = ".extracted"

_IMAGES_FOLDER = LAYOUT_FOLDERS["isic2018"][0]
_GROUND_TRUTH_FOLDER = Path(ISIC2018_GROUND_TRUTH).stem
# What each official source must leave in the target folder; checked before an archive is marked as done,
# so a changed upstream layout is reported at download time instead of confusing the loader later.
EXPECTED_PATHS: dict[str, PurePosixPath] = {
    f"{_IMAGES_FOLDER}.zip": PurePosixPath(_IMAGES_FOLDER),
    f"{_GROUND_TRUTH_FOLDER}.zip": PurePosixPath(_GROUND_TRUTH_FOLDER, ISIC2018_GROUND_TRUTH),
    ISIC2018_LESION_GROUPINGS: PurePosixPath(ISIC2018_LESION_GROUPINGS),
}

_MD5_PATTERN = re.compile(r"[0-9a-fA-F]{32}")
_DRIVE_PATTERN = re.compile(r"[A-Za-z]:")
_CONTENT_RANGE_PATTERN = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)")
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


class DownloadError(RuntimeError):
    """A download or an archive could not be used; the message names the file and what to do."""


class UnsafeArchiveError(DownloadError):
    """An archive entry would be written outside the target folder (or is a link or device file)."""


# --------------------------------------------------------------------------------------------- downloading


def md5sum(path: Path | str, chunk_size: int = 1 << 20) -> str:
    """The md5 hex digest of a file, read in chunks so multi-GB archives do not fill the memory."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(
    url: str,
    dest: Path | str,
    *,
    size: int | None = None,
    md5: str | None = None,
    progress: bool = True,
    chunk_size: int = 1 << 20,
    timeout: float = 60,
) -> Path:
    """Download ``url`` to ``dest`` and return ``dest``.

    The bytes go to ``<dest>.part`` first; if that file is already there (an earlier download broke off), the
    download resumes from its end with an HTTP ``Range`` request, and starts again from zero if the server does
    not support ranges. When all bytes are in, the size is checked against ``size`` (or, if that is None, the
    size the server announced) and the md5 against ``md5`` if given. A file that fails the check is renamed to
    ``<dest>.bad`` and ``DownloadError`` is raised; a good file is renamed to ``dest`` in one atomic step, so
    ``dest`` never holds a partial or corrupt download.

    If ``dest`` already exists and passes the size/md5 check, it is returned without any network access.

    Args:
        url: ``http://`` or ``https://`` address of the file.
        dest: where the file should end up; its folder is created if needed.
        size: expected size in bytes, or None to trust the server's Content-Length.
        md5: expected md5 hex digest (32 hex digits), or None to skip the md5 check.
        progress: draw a tqdm progress bar (if tqdm is installed).
        chunk_size: bytes read from the network per step.
        timeout: seconds to wait for the server before giving up (per network operation, not in total).
    """
    _check_url(url, "url")
    dest = Path(dest)
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise ValueError(f"size must be None or a whole number of bytes >= 0, got {size!r}")
    if md5 is not None and (not isinstance(md5, str) or not _MD5_PATTERN.fullmatch(md5)):
        raise ValueError(f"md5 must be None or 32 hexadecimal digits, got {md5!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0:
        raise ValueError(f"chunk_size must be a whole number of bytes > 0, got {chunk_size!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    md5 = md5.lower() if md5 is not None else None

    if dest.is_dir():
        raise DownloadError(f"cannot download {url} to {dest}: that path is a folder")
    if dest.exists():
        problem = _file_problem(dest, size, md5)
        if problem is None:
            logger.info("%s is already downloaded", dest)
            return dest
        # Keep the old file for inspection instead of deleting it, and fetch a fresh copy.
        bad = _set_aside(dest)
        logger.warning("%s (%s); moved it to %s and downloading again", dest, problem, bad)

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:
        logger.warning(
            "%s is larger than the expected %d bytes; downloading %s from the start", part, size, url
        )
        offset = 0

    if size is not None and offset == size and offset > 0:
        total: int | None = size  # the earlier run got every byte but stopped before the check
    else:
        response, offset, total = _open_download(url, offset, timeout)
        if size is not None and total is not None and total != size:
            if response is not None:
                response.close()
            raise DownloadError(
                f"{url} is {total} bytes on the server but {size} bytes were expected for {dest.name}: the file "
                "on the server has changed, or the expected size (pskinlib.info.DOWNLOAD_SOURCES) is out of date"
            )
        if response is not None:
            _stream_to_file(response, part, offset, total, url, progress=progress, chunk_size=chunk_size)

    expected_size = size if size is not None else total
    actual_size = part.stat().st_size
    if expected_size is not None and actual_size < expected_size:
        raise DownloadError(
            f"the download of {url} stopped after {actual_size} of {expected_size} bytes; the partial file "
            f"{part} is kept: run the download again to resume it"
        )
    if expected_size is not None and actual_size > expected_size:
        bad = _set_aside(part, dest)
        raise DownloadError(
            f"{dest.name} from {url} has the wrong size: expected {expected_size} bytes, got {actual_size}; "
            f"the file was moved to {bad}: delete it and download again"
        )
    if md5 is not None:
        actual_md5 = md5sum(part)
        if actual_md5 != md5:
            bad = _set_aside(part, dest)
            raise DownloadError(
                f"{dest.name} from {url} has the wrong md5: expected {md5}, got {actual_md5}; the file was "
                f"moved to {bad}: delete it and download again"
            )
    os.replace(part, dest)  # atomic: dest appears only once it is complete and checked
    return dest


def _check_url(url: object, parameter: str) -> None:
    if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"{parameter} must be an http:// or https:// address, got {url!r}")
    if not urllib.parse.urlsplit(url).netloc:
        raise ValueError(f"{parameter} has no host name: {url!r}")


def _file_problem(path: Path, size: int | None, md5: str | None) -> str | None:
    """What is wrong with an existing file, or None if it matches the expected size and md5."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        return f"size is {actual_size} bytes, expected {size}"
    if md5 is not None:
        actual_md5 = md5sum(path)
        if actual_md5 != md5:
            return f"md5 is {actual_md5}, expected {md5}"
    return None


def _set_aside(path: Path, dest: Path | None = None) -> Path:
    """Rename a file that failed its check to ``<dest name>.bad`` so nothing reads it as good data."""
    dest = path if dest is None else dest
    bad = dest.with_name(dest.name + ".bad")
    os.replace(path, bad)
    return bad


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) from a ``Content-Range: bytes 100-199/1000`` header; None where unknown."""
    match = _CONTENT_RANGE_PATTERN.fullmatch(value.strip()) if value else None
    if match is None:
        return None, None
    start = int(match.group(1)) if match.group(1) is not None else None
    total = int(match.group(3)) if match.group(3) != "*" else None
    return start, total


def _open_download(url: str, offset: int, timeout: float) -> tuple[Any, int, int | None]:
    """Open ``url`` to read from byte ``offset``; return (response, offset really used, total size or None).

    The response is None when the server answers 416 and says the partial file already has every byte.
    If the server does not honour the range, the offset falls back to 0 and the whole file is read again.
    """
    while True:
        headers = {"User-Agent": USER_AGENT}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        request = urllib.request.Request(url, headers=headers)
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            _, total = _parse_content_range(exc.headers.get("Content-Range") if exc.headers else None)
            exc.close()
            if exc.code == 416 and offset:
                if total == offset:
                    return None, offset, total
                logger.info("server refused to resume %s at byte %d; downloading from the start", url, offset)
                offset = 0
                continue
            raise DownloadError(f"{url} answered HTTP {exc.code} ({exc.reason}); check the address") from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DownloadError(
                f"could not reach {url}: {reason}; check the network connection (or proxy) and try again"
            ) from exc

        if response.status == 206:
            start, total = _parse_content_range(response.headers.get("Content-Range"))
            if start == offset:
                return response, offset, total
            response.close()
            if not offset:
                raise DownloadError(f"{url} sent part of the file although the whole file was asked for")
            logger.info("server sent another range than asked for %s; downloading from the start", url)
            offset = 0
            continue
        if offset:
            logger.info("server ignored the range request for %s; downloading from the start", url)
        length = response.headers.get("Content-Length")
        return response, 0, int(length) if length and length.strip().isdigit() else None


def _stream_to_file(
    response: Any, part: Path, offset: int, total: int | None, url: str, *, progress: bool, chunk_size: int
) -> None:
    """Copy the response body to ``part``: appended at ``offset`` (resume) or into an emptied file."""
    bar = _progress_bar(progress, total=total, initial=offset, desc=part.name.removesuffix(".part"))
    try:
        with response, open(part, "ab" if offset else "wb") as out:
            try:
                for chunk in iter(lambda: response.read(chunk_size), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as exc:
                # A reset or timed-out connection leaves a valid prefix in `part` that the next run resumes.
                raise DownloadError(
                    f"the download of {url} broke off after {out.tell()} bytes ({exc!r}); the partial file "
                    f"{part} is kept: run the download again to resume it"
                ) from exc
    finally:
        bar.close()


def _progress_bar(enabled: bool, *, total: int | None, initial: int, desc: str) -> Any:
    from tqdm.auto import tqdm  # imported here: only needed when a download runs

    # A disabled tqdm is a no-op bar, so the download loop needs no special case.
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                disable=not enabled)


# --------------------------------------------------------------------------------------------- extracting


def _safe_relative_name(name: str, archive: Path) -> PurePosixPath | None:
    """The entry name as a path relative to the target folder, or raise if it could land outside it.

    Backslashes count as separators too: a zip made on Windows may use them, and on Windows they are ones.
    Returns None for an entry that names the target folder itself (such as ``./``).
    """
    normal = name.replace("\\", "/")
    if normal.startswith("/"):
        raise UnsafeArchiveError(
            f"{archive} has an entry with an absolute path: {name!r}; nothing was extracted"
        )
    if _DRIVE_PATTERN.match(normal):
        raise UnsafeArchiveError(
            f"{archive} has an entry with a drive letter: {name!r}; nothing was extracted"
        )
    relative = posixpath.normpath(normal)
    if relative == ".." or relative.startswith("../"):
        raise UnsafeArchiveError(
            f"{archive} has an entry that leaves the target folder: {name!r}; nothing was extracted"
        )
    return None if relative == "." else PurePosixPath(relative)


def _check_inside(target: Path, relative: PurePosixPath, name: str, archive: Path) -> None:
    # Catches a path that goes through a symlink already present in the target folder.
    resolved_target = target.resolve()
    if not (target / relative).resolve().is_relative_to(resolved_target):
        raise UnsafeArchiveError(
            f"{archive} entry {name!r} would be written outside {target} (through a link there); "
            "nothing was extracted"
        )


def safe_extract_zip(archive: Path | str, target: Path | str) -> list[Path]:
    """Extract a zip archive into ``target`` and return the paths of the files written.

    Every entry is checked before anything is written; ``UnsafeArchiveError`` (naming the entry) is raised,
    and nothing extracted, if any entry has an absolute path or drive letter, uses ``..`` to leave ``target``,
    or is a symbolic link.
    """
    archive, target = Path(archive), Path(target)
    if not archive.is_file():
        raise DownloadError(f"archive {archive} does not exist")
    if not zipfile.is_zipfile(archive):
        raise DownloadError(
            f"{archive} is not a zip archive (damaged download?): delete it and download again"
        )
    with zipfile.ZipFile(archive) as zf:
        plan: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
        for info in zf.infolist():
            if stat.S_ISLNK(info.external_attr >> 16):
                raise UnsafeArchiveError(
                    f"{archive} has a symbolic link entry: {info.filename!r}; nothing was extracted"
                )
            relative = _safe_relative_name(info.filename, archive)
            if relative is None:
                continue
            _check_inside(target, relative, info.filename, archive)
            plan.append((info, relative))

        written: list[Path] = []
        for info, relative in plan:
            path = target / relative
            if info.is_dir():
                path.mkdir(parents=True, exist_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(path, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            written.append(path)
    return written


def safe_extract_tar(archive: Path | str, target: Path | str) -> list[Path]:
    """Extract a tar archive (``.tar``, ``.tar.gz``, ``.tgz``, ...) into ``target``; return the paths written.

    Every member is checked before anything is written; ``UnsafeArchiveError`` (naming the member) is raised,
    and nothing extracted, if a member has an absolute path or drive letter, uses ``..`` to leave ``target``,
    is a symbolic or hard link pointing outside ``target``, or is a device file or FIFO.
    """
    archive, target = Path(archive), Path(target)
    if not archive.is_file():
        raise DownloadError(f"archive {archive} does not exist")
    with _open_tar(archive) as tf:
        members = tf.getmembers()
        written: list[Path] = []
        for member in members:
            relative = _safe_relative_name(member.name, archive)
            if member.isdev():
                raise UnsafeArchiveError(
                    f"{archive} has a device file or FIFO: {member.name!r}; nothing was extracted"
                )
            if member.issym() or member.islnk():
                _check_link(member, relative, archive)
            if relative is not None:
                _check_inside(target, relative, member.name, archive)
                if not member.isdir():
                    written.append(target / relative)
        target.mkdir(parents=True, exist_ok=True)
        try:
            if hasattr(tarfile, "data_filter"):
                # Python's own "data" filter re-checks links against the files really on disk while
                # extracting (it catches link chains the name checks above cannot see).
                tf.extractall(target, members=members, filter="data")
            else:  # Python without PEP 706 (before 3.10.12 / 3.11.4): the checks above are all we have
                tf.extractall(target, members=members)
        except tarfile.TarError as exc:
            raise UnsafeArchiveError(f"{archive} could not be extracted safely into {target}: {exc}") from exc
    return written


def _open_tar(archive: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(archive, "r:*")  # "r:*" detects gzip, bzip2 and xz compression
    except tarfile.TarError as exc:
        raise DownloadError(
            f"{archive} is not a readable tar archive ({exc}): delete it and download again"
        ) from exc


def _check_link(member: tarfile.TarInfo, relative: PurePosixPath | None, archive: Path) -> None:
    link = member.linkname.replace("\\", "/")
    kind = "symbolic link" if member.issym() else "hard link"
    if link.startswith("/") or _DRIVE_PATTERN.match(link):
        raise UnsafeArchiveError(
            f"{archive} has a {kind} {member.name!r} to an absolute path {member.linkname!r}; nothing was extracted"
        )
    # A symlink is relative to its own folder; a hard link names another member, relative to the archive root.
    base = posixpath.dirname(str(relative)) if member.issym() and relative is not None else ""
    resolved = posixpath.normpath(posixpath.join(base, link))
    if resolved == ".." or resolved.startswith("../"):
        raise UnsafeArchiveError(
            f"{archive} has a {kind} {member.name!r} pointing outside the target folder ({member.linkname!r}); "
            "nothing was extracted"
        )


def safe_extract(archive: Path | str, target: Path | str) -> list[Path]:
    """Extract a ``.zip`` or tar archive with ``safe_extract_zip`` / ``safe_extract_tar``, chosen by its name."""
    archive = Path(archive)
    name = archive.name.lower()
    if name.endswith(".zip"):
        return safe_extract_zip(archive, target)
    if name.endswith(_TAR_SUFFIXES):
        return safe_extract_tar(archive, target)
    raise DownloadError(f"cannot extract {archive}: expected a .zip or {', '.join(_TAR_SUFFIXES)} file")


# --------------------------------------------------------------------------------------------- HAM10000


def download_ham10000(
    target_dir: Path | str,
    *,
    sources: tuple[dict, ...] | list[dict] = DOWNLOAD_SOURCES,
    progress: bool = True,
    base_url: str | None = None,
) -> Path:
    """Download HAM10000 (the ISIC 2018 Task 3 training data) into ``target_dir`` and return ``target_dir``.

    Each source in ``sources`` (default: ``pskinlib.info.DOWNLOAD_SOURCES``) is downloaded into
    ``target_dir/downloads/``. Archives marked ``extract: True`` are unpacked into ``target_dir``, the other
    files are copied there, which gives the layout the loader reads::

        target_dir/ISIC2018_Task3_Training_Input/ISIC_*.jpg
        target_dir/ISIC2018_Task3_Training_GroundTruth/ISIC2018_Task3_Training_GroundTruth.csv
        target_dir/ISIC2018_Task3_Training_LesionGroupings.csv

    Work already done is skipped: an unpacked archive leaves a marker ``downloads/<archive>.extracted``, and a
    broken download resumes where it stopped. To free disk space you may delete the archives in ``downloads/``
    afterwards, but keep the ``.extracted`` markers.

    Args:
        target_dir: the data folder (what ``PSKIN_DATA`` should point to); created if needed.
        sources: dicts with ``name`` (file name), ``url``, ``extract`` (bool), and optional ``size``/``md5``.
        progress: draw progress bars while downloading.
        base_url: if given, replaces the scheme, host and folder of every source URL (``<base_url>/<file>``),
            for a mirror or a local test server.
    """
    target = Path(target_dir)
    if base_url is not None:
        _check_url(base_url, "base_url")
    checked = [_checked_source(source, i) for i, source in enumerate(sources)]
    if target.exists() and not target.is_dir():
        raise DownloadError(f"target_dir {target} exists but is not a folder")
    downloads = target / DOWNLOADS_FOLDER
    downloads.mkdir(parents=True, exist_ok=True)

    for source in checked:
        name = source["name"]
        url = _rebase(source["url"], base_url) if base_url is not None else source["url"]
        archive = downloads / name
        if source["extract"]:
            marker = downloads / (name + MARKER_SUFFIX)
            if _marker_is_valid(marker, target):
                logger.info("%s is already downloaded and extracted into %s", name, target)
                continue
            download_file(url, archive, size=source["size"], md5=source["md5"], progress=progress)
            logger.info("extracting %s into %s", name, target)
            files = safe_extract(archive, target)
            _check_expected(name, target)
            _write_marker(marker, name, files, target)
        else:
            final = target / name
            if final.is_file() and _file_problem(final, source["size"], source["md5"]) is None:
                logger.info("%s is already in %s", name, target)
                continue
            download_file(url, archive, size=source["size"], md5=source["md5"], progress=progress)
            tmp = final.with_name(final.name + ".tmp")
            shutil.copyfile(archive, tmp)
            os.replace(tmp, final)
            _check_expected(name, target)
    return target


def _checked_source(source: object, index: int) -> dict:
    """One entry of ``sources`` with its defaults filled in; a ValueError/TypeError names what is wrong."""
    if not isinstance(source, dict):
        raise TypeError(f"sources[{index}] must be a dict with name, url and extract, got {source!r}")
    missing = [key for key in ("name", "url", "extract") if key not in source]
    if missing:
        raise ValueError(f"sources[{index}] is missing {', '.join(missing)}: {source!r}")
    name = source["name"]
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name:
        raise ValueError(f"sources[{index}]['name'] must be a plain file name, got {name!r}")
    _check_url(source["url"], f"sources[{index}]['url']")
    if not isinstance(source["extract"], bool):
        raise TypeError(f"sources[{index}]['extract'] must be True or False, got {source['extract']!r}")
    return {**source, "size": source.get("size"), "md5": source.get("md5")}


def _rebase(url: str, base_url: str) -> str:
    """``url`` with its scheme, host and folder replaced by ``base_url`` (keeps the file name)."""
    file_name = urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1]
    return base_url.rstrip("/") + "/" + file_name


def _marker_is_valid(marker: Path, target: Path) -> bool:
    """True if ``marker`` records a finished extraction whose top-level files and folders are still there."""
    if not marker.is_file():
        return False
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
        top_level = list(record["top_level"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("ignoring unreadable marker %s (%s); extracting again", marker, exc)
        return False
    missing = [entry for entry in top_level if not (target / entry).exists()]
    if missing:
        logger.warning("%s lists %s, which are gone from %s; extracting again", marker.name, missing, target)
        return False
    return True


def _write_marker(marker: Path, archive_name: str, files: list[Path], target: Path) -> None:
    top_level = sorted({path.relative_to(target).parts[0] for path in files})
    record = {"archive": archive_name, "files": len(files), "top_level": top_level}
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, marker)  # a marker exists only for a complete extraction


def _check_expected(source_name: str, target: Path) -> None:
    """Raise if an official source did not produce the path the loader expects (layout changed upstream)."""
    expected = EXPECTED_PATHS.get(source_name)
    if expected is None:
        return
    path = target / expected
    if path.suffix:
        found = path.is_file()
    else:  # the images folder: it must hold at least one image
        found = path.is_dir() and next(path.glob("ISIC_*.jpg"), None) is not None
    if not found:
        raise DownloadError(
            f"{source_name} did not produce {path} (expected by the ISIC 2018 Task 3 layout); the archive on "
            "the server may have changed: please report this, with a listing of the archive's contents"
        )
