"""Fetch a dataset's official files, resumably, check them, and unpack them without trusting the archive.

Downloads resume with HTTP ``Range`` requests from ``<dest>.part`` and are renamed only once checked (torchvision's
and pooch's downloaders do not resume, and the ISIC archives are gigabytes); archives are unpacked only if every
entry stays inside the target folder (tar: Python's ``data`` filter, PEP 706; zip: the same checks here, as
``zipfile`` silently rewrites bad names); the ISIC archive publishes no checksums, so content is verified instead.
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

from .. import __version__
from ..errors import DownloadError, ParameterError, UnsafeArchiveError, check_int
from ..info import DOWNLOAD_SOURCES, HAM10000, ISIC2017
from ..io import make_folder, read_json, write_json
from .ham10000 import find_image_files, read_isic2018_labels
from .labelled_folders import isic2017_from_archives

logger = logging.getLogger(__name__)

USER_AGENT = f"pskinlib/{__version__} (+https://doi.org/10.7910/DVN/DBW86T)"
DOWNLOADS_FOLDER = "downloads"
MARKER_SUFFIX = ".extracted"
_MD5_PATTERN = re.compile(r"[0-9a-fA-F]{32}")
_CONTENT_RANGE_PATTERN = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)")
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_RESUME_HINT = "is kept: run the download again to resume it"

__all__ = ["DownloadError", "UnsafeArchiveError", "download_dataset", "download_file", "download_ham10000",
           "download_isic2017", "safe_extract", "safe_extract_tar", "safe_extract_zip"]


# --------------------------------------------------------------------------------------------- downloading
def _require(ok: object, message: str, error: type[Exception] = ParameterError) -> None:
    """Raise ``error(message)`` unless ``ok`` (messages here have no side effects, so they may be built eagerly)."""
    if not ok:
        raise error(message)


def md5sum(path: Path | str) -> str:
    """The md5 hex digest of a file, read in chunks so multi-GB archives do not fill the memory."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()


def download_file(url: str, dest: Path | str, *, size: int | None = None, md5: str | None = None,
                  progress: bool = True, chunk_size: int = 1 << 20, timeout: float = 60) -> Path:
    """Download ``url`` to ``dest``, checked against ``size`` (None: the server's) and ``md5``, and return ``dest``;
    a good existing ``dest`` is returned offline, a bad one set aside. ``timeout``: seconds per network operation."""
    _check_url(url, "url")
    dest = Path(dest)
    if size is not None:
        check_int("size", size, 0)  # bytes
    check_int("chunk_size", chunk_size, 1)  # bytes
    _require(md5 is None or (isinstance(md5, str) and _MD5_PATTERN.fullmatch(md5) is not None),
             f"md5 must be None or 32 hexadecimal digits, got {md5!r}")
    _require(not isinstance(timeout, bool) and isinstance(timeout, (int, float)) and timeout > 0,
             f"timeout must be a number of seconds > 0, got {timeout!r}")
    md5 = md5.lower() if md5 else None
    _require(not dest.is_dir(), f"cannot download {url} to {dest}: that path is a folder", DownloadError)
    part, bad = dest.with_name(dest.name + ".part"), dest.with_name(dest.name + ".bad")  # bad: fails its check
    if dest.exists():
        if (problem := _file_problem(dest, size, md5)) is None:
            return dest
        os.replace(dest, bad)
        logger.warning("%s (%s); moved it to %s and downloading again", dest, problem, bad)

    make_folder(dest.parent, "dest")
    offset = part.stat().st_size if part.exists() else 0
    offset = 0 if size is not None and offset > size else offset  # larger than the whole file: start again
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
            from tqdm.auto import tqdm
            bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                       desc=part.name.removesuffix(".part"), disable=not progress)
            with bar, response, open(part, "ab" if offset else "wb") as out:  # append to resume, else start empty
                try:
                    for chunk in iter(lambda: response.read(chunk_size), b""):
                        out.write(chunk)
                        bar.update(len(chunk))
                except (OSError, http.client.HTTPException) as exc:
                    # A reset or timed-out connection leaves a valid prefix in `part` that the next run resumes.
                    raise DownloadError(f"the download of {url} broke off after {out.tell()} bytes ({exc!r}); the "
                                        f"partial file {part} {_RESUME_HINT}") from None
        total = size if size is not None else total
    actual = part.stat().st_size
    _require(total is None or actual >= total, f"the download of {url} stopped after {actual} of {total} bytes; "
             f"the partial file {part} {_RESUME_HINT}", DownloadError)
    problem = f"expected {total} bytes, got {actual}" if total is not None and actual > total else None
    if problem is None and md5 is not None and (got := md5sum(part)) != md5:
        problem = f"expected md5 {md5}, got {got}"
    if problem:
        os.replace(part, bad)
        raise DownloadError(f"{dest.name} from {url} fails its check ({problem}); the file was moved to {bad}: "
                            "delete it and download again")
    os.replace(part, dest)  # atomic: dest appears only once it is complete and checked
    return dest


def _check_url(url: object, parameter: str) -> None:
    parts = urllib.parse.urlsplit(url) if isinstance(url, str) else None
    _require(parts is not None and parts.scheme in ("http", "https") and bool(parts.netloc),
             f"{parameter} must be an http:// or https:// address with a host name, got {url!r}")


def _file_problem(path: Path, size: int | None, md5: str | None) -> str | None:
    """What is wrong with an existing file, or None if it matches the expected size and md5."""
    if size is not None and (actual := path.stat().st_size) != size:
        return f"size is {actual} bytes, expected {size}"
    if md5 is not None and (actual_md5 := md5sum(path)) != md5:
        return f"md5 is {actual_md5}, expected {md5}"
    return None


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) from ``Content-Range: bytes 100-199/1000``; None where unknown."""
    match = _CONTENT_RANGE_PATTERN.fullmatch(value.strip()) if value else None
    start, total = match.group(1, 3) if match else (None, "*")
    return (int(start) if start else None), (int(total) if total != "*" else None)


def _open_download(url: str, offset: int, timeout: float) -> tuple[http.client.HTTPResponse | None, int, int | None]:
    """(response or None if ``offset`` is the end, offset used, total size or None); read from 0 if the range fails."""
    headers = {"User-Agent": USER_AGENT, **({"Range": f"bytes={offset}-"} if offset else {})}
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        _, total = _parse_content_range(exc.headers.get("Content-Range") if exc.headers else None)
        exc.close()
        if exc.code == 416 and offset:
            return (None, offset, total) if total == offset else _open_download(url, 0, timeout)
        raise DownloadError(f"{url} answered HTTP {exc.code} ({exc.reason}); check the address") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"could not reach {url}: {getattr(exc, 'reason', exc)}; check the network "
                            "connection (or proxy) and try again") from None
    if response.status == 206:
        start, total = _parse_content_range(response.headers.get("Content-Range"))
        if start == offset:
            return response, offset, total
        response.close()
        _require(offset, f"{url} sent part of the file although the whole file was asked for", DownloadError)
        return _open_download(url, 0, timeout)
    length = response.headers.get("Content-Length")
    return response, 0, int(length) if length and length.strip().isdigit() else None


# --------------------------------------------------------------------------------------------- extracting
def _entry_path(name: str, archive: Path) -> PurePosixPath | None:
    """An entry's path inside the target (None: the target itself); refused, not rewritten, if it could leave it.
    Backslashes count as separators: a zip made on Windows may use them."""
    normal = name.replace("\\", "/")
    relative = posixpath.normpath(normal)
    problem = ("an absolute path" if normal.startswith("/") else "a drive letter" if re.match(r"[A-Za-z]:", normal)
               else "a path that leaves the target folder" if relative == ".." or relative.startswith("../")
               else None)
    _require(not problem, f"{archive} has an entry with {problem}: {name!r}; nothing was extracted", UnsafeArchiveError)
    return None if relative == "." else PurePosixPath(relative)


def safe_extract_zip(archive: Path | str, target: Path | str) -> list[Path]:
    """Extract a zip archive into ``target``, return the files written; nothing if any entry is a link, absolute,
    has a drive letter or leaves ``target`` (by ``..`` or through a link already there)."""
    archive, target = Path(archive), Path(target)
    _require(zipfile.is_zipfile(archive), f"{archive} is not a zip archive, or is missing (damaged download?): "
             "delete it and download again", DownloadError)
    with zipfile.ZipFile(archive) as zf:
        plan = []
        for info in zf.infolist():
            _require(not stat.S_ISLNK(info.external_attr >> 16), f"{archive} has a symbolic link entry: "
                     f"{info.filename!r}; nothing was extracted", UnsafeArchiveError)
            if (relative := _entry_path(info.filename, archive)) is None:
                continue
            _require((target / relative).resolve().is_relative_to(target.resolve()), f"{archive} entry "
                     f"{info.filename!r} would be written outside {target} (through a link there); nothing was "
                     "extracted", UnsafeArchiveError)
            plan.append((info, target / relative))
        for info, path in plan:
            (path if info.is_dir() else path.parent).mkdir(parents=True, exist_ok=True)
            if not info.is_dir():
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
    """Extract a tar archive (``.tar``, ``.tgz``, ...) into ``target``, return the files written; nothing if any
    member fails Python's ``data`` filter (absolute or ``..`` path, link out of ``target``, device file)."""
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
                problem = _TAR_PROBLEMS.get(type(exc), "a refused member {name!r}").format(
                    kind="symbolic link" if member.issym() else "hard link", name=member.name, link=member.linkname)
                raise UnsafeArchiveError(f"{archive} has {problem}; nothing was extracted") from None
        tf.extractall(target, members=members, filter="data")
    return [target / m.name for m in members if not m.isdir()]


def safe_extract(archive: Path | str, target: Path | str) -> list[Path]:
    """Extract a ``.zip`` or tar archive with :func:`safe_extract_zip` / :func:`safe_extract_tar`, by its name."""
    name = Path(archive).name.lower()
    if name.endswith((".zip", *_TAR_SUFFIXES)):
        return (safe_extract_zip if name.endswith(".zip") else safe_extract_tar)(archive, target)
    raise DownloadError(f"cannot extract {archive}: expected a .zip or {', '.join(_TAR_SUFFIXES)} file")


# --------------------------------------------------------------------------------------------- datasets
def download_dataset(name: str, target_dir: Path | str, *, sources: tuple[dict, ...] | list[dict] | None = None,
                     progress: bool = True, base_url: str | None = None) -> Path:
    """Download the dataset ``name`` (a key of :data:`pskinlib.info.DOWNLOAD_SOURCES`) into ``target_dir``: each
    source is fetched into ``downloads/``, then unpacked (a marker ``downloads/<archive>.extracted`` lets later calls
    skip it) or copied. ``base_url`` replaces every URL's scheme, host and folder (a mirror, or a test server)."""
    _require(name in DOWNLOAD_SOURCES, f"dataset: expected one of {list(DOWNLOAD_SOURCES)}, got {name!r}.")
    if base_url is not None:
        _check_url(base_url, "base_url")
    checked = [_checked_source(s, i) for i, s in enumerate(sources or DOWNLOAD_SOURCES[name])]
    target = Path(target_dir)
    _require(target.is_dir() or not target.exists(), f"target_dir {target} exists but is not a folder", DownloadError)
    downloads = make_folder(target / DOWNLOADS_FOLDER, "target_dir")
    for source in checked:
        url = source["url"] if base_url is None else base_url.rstrip("/") + "/" + source["url"].rsplit("/", 1)[-1]
        archive, marker = downloads / source["name"], downloads / (source["name"] + MARKER_SUFFIX)
        final, temporary = target / source["name"], target / (source["name"] + ".tmp")
        if (_marker_is_valid(marker, target) if source["extract"]
                else final.is_file() and _file_problem(final, source["size"], source["md5"]) is None):
            continue
        download_file(url, archive, size=source["size"], md5=source["md5"], progress=progress)
        files = safe_extract(archive, target) if source["extract"] else None
        if files is None:
            shutil.copyfile(archive, temporary)
            os.replace(temporary, final)
        # The path the loader expects must be there, else the layout changed upstream.
        path = target / source["produces"] if source["produces"] is not None else None
        _require(path is None or (path.is_file() if path.suffix else path.is_dir() and any(path.glob("*.jpg"))),
                 f"{source['name']} did not produce {path} (expected by the dataset's layout); the archive on the "
                 "server may have changed: please report this, with a listing of the archive's contents", DownloadError)
        if files is not None:  # a marker exists only for a complete, checked extraction
            write_json(marker, {"archive": source["name"], "files": len(files),
                                "top_level": sorted({p.relative_to(target).parts[0] for p in files})})
    return target


def download_ham10000(target_dir: Path | str, *, sources: tuple[dict, ...] | list[dict] | None = None,
                      progress: bool = True, base_url: str | None = None) -> Path:
    """HAM10000 as the ISIC 2018 Task 3 training data, verified by :func:`verify_ham10000`."""
    target = download_dataset("ham10000", target_dir, sources=sources, progress=progress, base_url=base_url)
    if sources is None:
        verify_ham10000(target, official=base_url is None)
    return target


def download_isic2017(target_dir: Path | str, *, progress: bool = True, base_url: str | None = None,
                      overwrite: bool = False) -> Path:
    """ISIC 2017 Part 3's validation and test sets as a labelled folder (``labels.csv``, ``images/``; official files
    in ``official/``), verified against the published counts (from the official source; a mirror for consistency)."""
    target = Path(target_dir)
    official = download_dataset("isic2017", target / "official", progress=progress, base_url=base_url)
    counts = isic2017_from_archives(official, target, overwrite=overwrite)
    expected = {(part, dx): n for part, row in ISIC2017["official_counts"].items() for dx, n in row.items()}
    _require(base_url is not None or counts == expected, f"the download into {target} could not be verified: it "
             f"holds {counts}, the challenge published {expected}. Delete {target} and download again.", DownloadError)
    return target


def verify_ham10000(root: Path | str, *, official: bool = True) -> None:
    """Check an ISIC 2018 Task 3 folder: labels and lesion groups read, every labelled image there with its lesion,
    and (``official``) the counts :data:`pskinlib.info.HAM10000` documents; else :class:`DownloadError`."""
    root = Path(root)
    try:
        table = read_isic2018_labels(root)
    except ValueError as exc:  # a DataError: the labels are not what the layout documents
        raise DownloadError(f"the download into {root} could not be verified: {exc}") from None
    missing = sorted(set(table["image_id"]) - set(find_image_files(root, "isic2018")))
    no_lesion = table.loc[table["lesion_id"] == "", "image_id"].tolist()
    found = (len(table), table["lesion_id"].nunique(), table["dx"].value_counts().to_dict())
    expected = (HAM10000["images"], HAM10000["lesions"], HAM10000["images_per_class"])
    problem = (f"{len(missing)} labelled image(s) are missing, e.g. {missing[:5]}" if missing
               else f"{len(no_lesion)} image(s) have no lesion_id, e.g. {no_lesion[:5]}" if no_lesion
               else f"it holds {found[0]} images of {found[1]} lesions ({found[2]}), HAM10000 documents "
                    f"{expected[0]} of {expected[1]} ({expected[2]})" if official and found != expected else None)
    _require(not problem, f"the download into {root} could not be verified: {problem}. Delete it and download again.",
             DownloadError)


def _checked_source(source: object, index: int) -> dict:
    """One entry of ``sources`` with its defaults filled in; a :class:`ParameterError` names what is wrong."""
    where = f"sources[{index}]"
    _require(isinstance(source, dict), f"{where} must be a dict with name, url and extract, got {source!r}")
    missing = [key for key in ("name", "url", "extract") if key not in source]
    _require(not missing, f"{where} is missing {', '.join(missing)}: {source!r}")
    name = source["name"]
    _require(isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name,
             f"{where}['name'] must be a plain file name, got {name!r}")
    _check_url(source["url"], f"{where}['url']")
    _require(isinstance(source["extract"], bool),
             f"{where}['extract'] must be True or False, got {source['extract']!r}")
    return {"size": None, "md5": None, "produces": None, **source}


def _marker_is_valid(marker: Path, target: Path) -> bool:
    """True if ``marker`` records a finished extraction whose top-level files and folders are still there."""
    try:
        return all((target / entry).exists() for entry in read_json(marker)["top_level"])
    except (ValueError, KeyError, TypeError):  # no marker, or an unreadable one: extract again
        return False

