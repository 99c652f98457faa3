"""Fetch a dataset's official files, resumably, check them, and unpack them without trusting the archive.

* :func:`download_file` fetches one URL. Bytes go to ``<dest>.part``; a broken download resumes from there with an
  HTTP ``Range`` request (from zero when the server ignores ranges); the size (expected, else the server's) and the
  md5 (when known) are checked; only then is the file renamed to ``dest``. A file that fails its check becomes
  ``<dest>.bad``, so nothing reads it as good data. torchvision's and pooch's downloaders neither resume nor keep a
  partial file apart, and the ISIC archives are gigabytes.
* :func:`safe_extract` unpacks a zip or tar archive only if *every* entry stays inside the target folder. Tar members
  go through Python's own ``data`` extraction filter (PEP 706: no absolute paths, no ``..``, no links out, no device
  files), checked for all members before the first is written; zip names get the same checks here, as ``zipfile``
  silently rewrites them instead of refusing.
* :func:`download_dataset` puts them together for one entry of :data:`pskinlib.info.DOWNLOAD_SOURCES`: it fetches
  its files into ``<target>/downloads/``, unpacks them into ``<target>``, skips what an earlier run finished (a
  marker per unpacked archive), and verifies what arrived. The ISIC archive publishes no checksums for its files,
  so pskin verifies their content instead: every labelled image present, each label valid, and from the official
  source the counts the dataset documents (:data:`pskinlib.info.HAM10000`).
"""

from __future__ import annotations

import hashlib
import http.client
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

from .. import __version__
from ..errors import DownloadError, ParameterError, UnsafeArchiveError
from ..info import DOWNLOAD_SOURCES
from ..io import read_json, write_json

logger = logging.getLogger(__name__)

USER_AGENT = f"pskinlib/{__version__} (+https://doi.org/10.7910/DVN/DBW86T)"
DOWNLOADS_FOLDER = "downloads"
MARKER_SUFFIX = ".extracted"
_MD5_PATTERN = re.compile(r"[0-9a-fA-F]{32}")
_CONTENT_RANGE_PATTERN = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)")
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")

__all__ = ["DownloadError", "UnsafeArchiveError", "download_dataset", "download_file", "download_ham10000",
           "safe_extract", "safe_extract_tar", "safe_extract_zip"]


# --------------------------------------------------------------------------------------------- downloading


def md5sum(path: Path | str) -> str:
    """The md5 hex digest of a file, read in chunks so multi-GB archives do not fill the memory."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()


def download_file(url: str, dest: Path | str, *, size: int | None = None, md5: str | None = None,
                  progress: bool = True, chunk_size: int = 1 << 20, timeout: float = 60) -> Path:
    """Download ``url`` to ``dest`` (its folder is created) and return ``dest``.

    ``size``: expected bytes, or None to trust the server's Content-Length; ``md5``: expected hex digest, or None;
    ``timeout``: seconds per network operation. A ``dest`` that exists and passes the checks is returned without
    any network access; one that fails them is set aside as ``<dest>.bad`` and fetched again.
    """
    _check_url(url, "url")
    dest = Path(dest)
    for name, value, low in (("size", size, 0), ("chunk_size", chunk_size, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise ParameterError(f"{name} must be {'None or ' if name == 'size' else ''}a whole number of bytes "
                                 f">= {low}, got {value!r}")
    if md5 is not None and (not isinstance(md5, str) or not _MD5_PATTERN.fullmatch(md5)):
        raise ParameterError(f"md5 must be None or 32 hexadecimal digits, got {md5!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ParameterError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    md5 = md5.lower() if md5 else None
    if dest.is_dir():
        raise DownloadError(f"cannot download {url} to {dest}: that path is a folder")
    if dest.exists():
        problem = _file_problem(dest, size, md5)
        if problem is None:
            return dest
        logger.warning("%s (%s); moved it to %s and downloading again", dest, problem, _set_aside(dest))

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:
        offset = 0  # larger than the whole file: start again
    total: int | None = size
    if not (size is not None and offset == size > 0):  # else an earlier run got every byte but stopped
        response, offset, total = _open_download(url, offset, timeout)
        if size is not None and total is not None and total != size:
            if response is not None:
                response.close()
            raise DownloadError(f"{url} is {total} bytes on the server but {size} bytes were expected for "
                                f"{dest.name}: the file on the server has changed, or the expected size "
                                "(pskinlib.info.DOWNLOAD_SOURCES) is out of date")
        if response is not None:
            _stream_to_file(response, part, offset, total, url, progress=progress, chunk_size=chunk_size)
        total = size if size is not None else total

    actual = part.stat().st_size
    if total is not None and actual < total:
        raise DownloadError(f"the download of {url} stopped after {actual} of {total} bytes; the partial file "
                            f"{part} is kept: run the download again to resume it")
    problem = f"expected {total} bytes, got {actual}" if total is not None and actual > total else None
    if problem is None and md5 is not None and (got := md5sum(part)) != md5:
        problem = f"expected md5 {md5}, got {got}"
    if problem:
        raise DownloadError(f"{dest.name} from {url} fails its check ({problem}); the file was moved to "
                            f"{_set_aside(part, dest)}: delete it and download again")
    os.replace(part, dest)  # atomic: dest appears only once it is complete and checked
    return dest


def _check_url(url: object, parameter: str) -> None:
    parts = urllib.parse.urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ParameterError(f"{parameter} must be an http:// or https:// address with a host name, got {url!r}")


def _file_problem(path: Path, size: int | None, md5: str | None) -> str | None:
    """What is wrong with an existing file, or None if it matches the expected size and md5."""
    if size is not None and (actual := path.stat().st_size) != size:
        return f"size is {actual} bytes, expected {size}"
    if md5 is not None and (actual_md5 := md5sum(path)) != md5:
        return f"md5 is {actual_md5}, expected {md5}"
    return None


def _set_aside(path: Path, dest: Path | None = None) -> Path:
    bad = (dest or path).with_name((dest or path).name + ".bad")
    os.replace(path, bad)
    return bad


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) from ``Content-Range: bytes 100-199/1000``; None where unknown."""
    match = _CONTENT_RANGE_PATTERN.fullmatch(value.strip()) if value else None
    if match is None:
        return None, None
    return (int(match.group(1)) if match.group(1) else None), (int(match.group(3)) if match.group(3) != "*" else None)


def _open_download(url: str, offset: int, timeout: float) -> tuple[Any, int, int | None]:
    """Open ``url`` from byte ``offset``; return (response or None when the partial file is already complete,
    the offset really used, the total size or None). A server that ignores the range is read from byte 0."""
    while True:
        headers = {"User-Agent": USER_AGENT, **({"Range": f"bytes={offset}-"} if offset else {})}
        try:
            response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
        except urllib.error.HTTPError as exc:
            _, total = _parse_content_range(exc.headers.get("Content-Range") if exc.headers else None)
            exc.close()
            if exc.code == 416 and offset:
                if total == offset:
                    return None, offset, total
                offset = 0
                continue
            raise DownloadError(f"{url} answered HTTP {exc.code} ({exc.reason}); check the address") from None
        except (urllib.error.URLError, OSError) as exc:
            raise DownloadError(f"could not reach {url}: {getattr(exc, 'reason', exc)}; check the network "
                                "connection (or proxy) and try again") from None
        if response.status == 206:
            start, total = _parse_content_range(response.headers.get("Content-Range"))
            if start == offset:
                return response, offset, total
            response.close()
            if not offset:
                raise DownloadError(f"{url} sent part of the file although the whole file was asked for")
            offset = 0
            continue
        length = response.headers.get("Content-Length")
        return response, 0, int(length) if length and length.strip().isdigit() else None


def _stream_to_file(response: Any, part: Path, offset: int, total: int | None, url: str, *, progress: bool,
                    chunk_size: int) -> None:
    """Copy the response body to ``part``: appended at ``offset`` (resume) or into an emptied file."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
               desc=part.name.removesuffix(".part"), disable=not progress)
    with bar, response, open(part, "ab" if offset else "wb") as out:
        try:
            for chunk in iter(lambda: response.read(chunk_size), b""):
                out.write(chunk)
                bar.update(len(chunk))
        except (OSError, http.client.HTTPException) as exc:
            # A reset or timed-out connection leaves a valid prefix in `part` that the next run resumes.
            raise DownloadError(f"the download of {url} broke off after {out.tell()} bytes ({exc!r}); the partial "
                                f"file {part} is kept: run the download again to resume it") from None


# --------------------------------------------------------------------------------------------- extracting


def _entry_path(name: str, archive: Path) -> PurePosixPath | None:
    """An archive entry's path inside the target folder, or an :class:`UnsafeArchiveError` if it could leave it
    (backslashes count as separators: a zip made on Windows may use them). Refused, not rewritten: an archive
    that names absolute paths is not the one we asked for."""
    normal = name.replace("\\", "/")
    relative = posixpath.normpath(normal)
    problem = ("an absolute path" if normal.startswith("/") else "a drive letter" if re.match(r"[A-Za-z]:", normal)
               else "a path that leaves the target folder" if relative == ".." or relative.startswith("../")
               else None)
    if problem:
        raise UnsafeArchiveError(f"{archive} has an entry with {problem}: {name!r}; nothing was extracted")
    return None if relative == "." else PurePosixPath(relative)


def safe_extract_zip(archive: Path | str, target: Path | str) -> list[Path]:
    """Extract a zip archive into ``target``; return the files written. Nothing is written if any entry has an
    absolute path or drive letter, leaves ``target`` (``..``, or through a link already there), or is a link."""
    archive, target = Path(archive), Path(target)
    if not zipfile.is_zipfile(archive):
        raise DownloadError(f"{archive} is not a zip archive, or is missing (damaged download?): delete it and "
                            "download again")
    with zipfile.ZipFile(archive) as zf:
        plan = []
        for info in zf.infolist():
            if stat.S_ISLNK(info.external_attr >> 16):
                raise UnsafeArchiveError(f"{archive} has a symbolic link entry: {info.filename!r}; nothing was "
                                         "extracted")
            relative = _entry_path(info.filename, archive)
            if relative is None:
                continue
            if not (target / relative).resolve().is_relative_to(target.resolve()):
                raise UnsafeArchiveError(f"{archive} entry {info.filename!r} would be written outside {target} "
                                         "(through a link there); nothing was extracted")
            plan.append((info, target / relative))
        for info, path in plan:
            if info.is_dir():
                path.mkdir(parents=True, exist_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(path, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    return [path for info, path in plan if not info.is_dir()]


_TAR_PROBLEMS = {
    tarfile.AbsolutePathError: "an entry with an absolute path: {name!r}",
    tarfile.OutsideDestinationError: "an entry that leaves the target folder: {name!r}",
    tarfile.SpecialFileError: "a device file or FIFO: {name!r}",
    tarfile.AbsoluteLinkError: "a {kind} {name!r} to an absolute path {link!r}",
    tarfile.LinkOutsideDestinationError: "a {kind} {name!r} pointing outside the target folder ({link!r})",
}


def safe_extract_tar(archive: Path | str, target: Path | str) -> list[Path]:
    """Extract a tar archive (``.tar``, ``.tar.gz``, ``.tgz``, ...) into ``target``; return the files written.

    Every member goes through Python's ``data`` filter first; if any is refused (an absolute path or ``..``, a
    link pointing outside ``target``, a device file or FIFO), :class:`UnsafeArchiveError` names it and nothing is
    written.
    """
    archive, target = Path(archive), Path(target)
    try:
        tf = tarfile.open(archive, "r:*")  # detects gzip, bzip2 and xz
    except (tarfile.TarError, OSError) as exc:
        raise DownloadError(f"{archive} is not a readable tar archive ({exc}): delete it and download again") from None
    with tf:
        members = tf.getmembers()
        target.mkdir(parents=True, exist_ok=True)
        for member in members:
            _entry_path(member.name, archive)  # the data filter would strip a leading "/" and extract it
            try:
                tarfile.data_filter(member, str(target))
            except tarfile.FilterError as exc:
                kind = "symbolic link" if member.issym() else "hard link"
                problem = _TAR_PROBLEMS.get(type(exc), "a refused member {name!r}")
                raise UnsafeArchiveError(f"{archive} has " + problem.format(kind=kind, name=member.name,
                                                                            link=member.linkname)
                                         + "; nothing was extracted") from None
        tf.extractall(target, members=members, filter="data")
    return [target / m.name for m in members if not m.isdir()]


def safe_extract(archive: Path | str, target: Path | str) -> list[Path]:
    """Extract a ``.zip`` or tar archive with :func:`safe_extract_zip` / :func:`safe_extract_tar`, by its name."""
    name = Path(archive).name.lower()
    if name.endswith(".zip"):
        return safe_extract_zip(archive, target)
    if name.endswith(_TAR_SUFFIXES):
        return safe_extract_tar(archive, target)
    raise DownloadError(f"cannot extract {archive}: expected a .zip or {', '.join(_TAR_SUFFIXES)} file")


# --------------------------------------------------------------------------------------------- datasets


def download_dataset(name: str, target_dir: Path | str, *, sources: tuple[dict, ...] | list[dict] | None = None,
                     progress: bool = True, base_url: str | None = None) -> Path:
    """Download the dataset ``name`` (a key of :data:`pskinlib.info.DOWNLOAD_SOURCES`) into ``target_dir``.

    Each source (``name``, ``url``, ``extract``; optional ``size``, ``md5`` and ``produces``, the path it must
    leave in the target) is fetched into ``target_dir/downloads/``; archives are unpacked into ``target_dir``,
    other files copied there. An unpacked archive leaves a marker ``downloads/<archive>.extracted``, so a second
    call skips it (delete the archives to free space, but keep the markers). ``base_url`` replaces every URL's
    scheme, host and folder (a mirror, or a test server). Returns ``target_dir``.
    """
    if name not in DOWNLOAD_SOURCES:
        raise ParameterError(f"dataset: expected one of {list(DOWNLOAD_SOURCES)}, got {name!r}.")
    if base_url is not None:
        _check_url(base_url, "base_url")
    checked = [_checked_source(s, i) for i, s in enumerate(sources or DOWNLOAD_SOURCES[name])]
    target = Path(target_dir)
    if target.exists() and not target.is_dir():
        raise DownloadError(f"target_dir {target} exists but is not a folder")
    downloads = target / DOWNLOADS_FOLDER
    downloads.mkdir(parents=True, exist_ok=True)
    for source in checked:
        url = source["url"] if base_url is None else base_url.rstrip("/") + "/" + source["url"].rsplit("/", 1)[-1]
        archive, marker, final = downloads / source["name"], downloads / (source["name"] + MARKER_SUFFIX), \
            target / source["name"]
        if source["extract"] and _marker_is_valid(marker, target):
            continue
        if not source["extract"] and final.is_file() and _file_problem(final, source["size"], source["md5"]) is None:
            continue
        download_file(url, archive, size=source["size"], md5=source["md5"], progress=progress)
        if source["extract"]:
            files = safe_extract(archive, target)
        else:
            shutil.copyfile(archive, final.with_name(final.name + ".tmp"))
            os.replace(final.with_name(final.name + ".tmp"), final)
        _check_produced(source, target)
        if source["extract"]:  # a marker exists only for a complete, checked extraction
            write_json(marker, {"archive": source["name"], "files": len(files),
                                "top_level": sorted({p.relative_to(target).parts[0] for p in files})})
    return target


def download_ham10000(target_dir: Path | str, *, sources: tuple[dict, ...] | list[dict] | None = None,
                      progress: bool = True, base_url: str | None = None) -> Path:
    """HAM10000 as the ISIC 2018 Task 3 training data (:func:`download_dataset` ``"ham10000"``), its content
    verified by loading it (:func:`verify_ham10000`)."""
    target = download_dataset("ham10000", target_dir, sources=sources, progress=progress, base_url=base_url)
    if sources is None:
        verify_ham10000(target, official=base_url is None)
    return target


def verify_ham10000(root: Path | str, *, official: bool = True) -> None:
    """Check a downloaded ISIC 2018 Task 3 folder: its labels and lesion groups read cleanly, every labelled image
    is there with its lesion, and (``official``) it holds the images, lesions and classes that
    :data:`pskinlib.info.HAM10000` documents. Raises :class:`DownloadError` saying what differs."""
    from ..info import HAM10000
    from .ham10000 import find_image_files, read_isic2018_labels

    root = Path(root)
    try:
        table = read_isic2018_labels(root)
    except ValueError as exc:  # a DataError: the labels are not what the layout documents
        raise DownloadError(f"the download into {root} could not be verified: {exc}") from None
    files = find_image_files(root, "isic2018")
    missing = sorted(set(table["image_id"]) - set(files))
    no_lesion = table.loc[table["lesion_id"] == "", "image_id"].tolist()
    found = (len(table), table["lesion_id"].nunique(), table["dx"].value_counts().to_dict())
    expected = (HAM10000["images"], HAM10000["lesions"], HAM10000["images_per_class"])
    problem = (f"{len(missing)} labelled image(s) are missing, e.g. {missing[:5]}" if missing
               else f"{len(no_lesion)} image(s) have no lesion_id, e.g. {no_lesion[:5]}" if no_lesion
               else f"it holds {found[0]} images of {found[1]} lesions ({found[2]}), HAM10000 documents "
                    f"{expected[0]} of {expected[1]} ({expected[2]})" if official and found != expected else None)
    if problem:
        raise DownloadError(f"the download into {root} could not be verified: {problem}. Delete it and download "
                            "again.")


def _checked_source(source: object, index: int) -> dict:
    """One entry of ``sources`` with its defaults filled in; a :class:`ParameterError` names what is wrong."""
    if not isinstance(source, dict):
        raise ParameterError(f"sources[{index}] must be a dict with name, url and extract, got {source!r}")
    missing = [key for key in ("name", "url", "extract") if key not in source]
    if missing:
        raise ParameterError(f"sources[{index}] is missing {', '.join(missing)}: {source!r}")
    name = source["name"]
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name:
        raise ParameterError(f"sources[{index}]['name'] must be a plain file name, got {name!r}")
    _check_url(source["url"], f"sources[{index}]['url']")
    if not isinstance(source["extract"], bool):
        raise ParameterError(f"sources[{index}]['extract'] must be True or False, got {source['extract']!r}")
    return {"size": None, "md5": None, "produces": None, **source}


def _marker_is_valid(marker: Path, target: Path) -> bool:
    """True if ``marker`` records a finished extraction whose top-level files and folders are still there."""
    try:
        return all((target / entry).exists() for entry in read_json(marker)["top_level"])
    except (ValueError, KeyError, TypeError):  # no marker, or an unreadable one: extract again
        return False


def _check_produced(source: dict, target: Path) -> None:
    """Raise if a source did not leave the path the loader expects (the layout changed upstream)."""
    if source["produces"] is None:
        return
    path = target / source["produces"]
    found = path.is_file() if path.suffix else (path.is_dir() and any(path.glob("*.jpg")))
    if not found:
        raise DownloadError(f"{source['name']} did not produce {path} (expected by the dataset's layout); the "
                            "archive on the server may have changed: please report this, with a listing of the "
                            "archive's contents")
