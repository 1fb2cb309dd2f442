"""Downloading PhysioNet databases with wfdb, from PhysioNet or any server laid out like it (a mirror, a local copy)."""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
import re
from pathlib import Path

import wfdb
from wfdb.io import _url as wfdb_url
from wfdb.io import download as wfdb_download

from .records import path_inside


logger = logging.getLogger(__name__)


# PhysioNet slug -> files beside the WFDB records that the loaders need. Any other slug downloads its records only.
DATABASES = {
    "ptb-xl": ["ptbxl_database.csv", "scp_statements.csv"],
    "challenge-2021": [],
}
# Small real samples: name -> (PhysioNet slug, record names). The records are looked up by name in the database's
# RECORDS lists, wherever its folders put them. physionet2021-sample: 40 records of the 2021 challenge's training set
# (CC BY 4.0), 15 Georgia, 10 PTB-XL and 15 Ningbo, the records of torch_ecg's sample data.
SAMPLES = {
    "physionet2021-sample": (
        "challenge-2021",
        [f"E{n:05d}" for n in range(7500, 7515)]
        + [f"HR{n:05d}" for n in range(6000, 6010)]
        + [f"JS{n:05d}" for n in range(20000, 20015)],
    ),
}


@contextlib.contextmanager
def physionet_index(index_url: str | None):
    """
    Points wfdb at another PhysioNet-like server for the duration. wfdb reads files through its configurable index
    URL, but `dl_database` looks up the latest version and checks access at its module-level content URL, so both
    are pointed there: the server answers `<slug>/` with a page holding `Version: X` (as PhysioNet's content pages
    do) and serves the files under `<slug>/<version>/`.
    """
    if index_url is None:
        yield
        return
    index_url = index_url.rstrip("/") + "/"
    previous_index, previous_content = wfdb_download.config.db_index_url, wfdb_download.PN_CONTENT_URL
    wfdb.set_db_index_url(index_url)
    wfdb_download.PN_CONTENT_URL = index_url
    try:
        yield
    finally:
        wfdb.set_db_index_url(previous_index)
        wfdb_download.PN_CONTENT_URL = previous_content


def find_records_by_name(versioned: str, names: list[str]) -> list[str]:
    """
    The paths of `names` in the RECORDS list of `versioned` (`<slug>/<version>`), descending into the folders it
    lists (lines ending with `/`, as in databases split into sub-folders). Raises if any name is not found.
    """
    wanted, found = set(names), {}
    folders = [""]
    while folders and len(found) < len(wanted):
        folder = folders.pop(0)
        for line in wfdb.get_record_list(posixpath.join(versioned, folder).rstrip("/")):
            path = posixpath.join(folder, line.strip())
            if path.endswith("/"):
                folders.append(path)
            elif posixpath.basename(path) in wanted:
                found[posixpath.basename(path)] = path
    missing = sorted(wanted - set(found))
    if missing:
        raise ValueError(f"{versioned}: records {missing} are not in its RECORDS lists.")
    return [found[name] for name in names]


def flatten_records(output_dir: Path, records: list[str]) -> None:
    """Moves downloaded records (`<folder>/<name>.*`) up into `output_dir`: a sample is one folder of records."""
    for record in records:
        folder, name = posixpath.split(record)
        if not folder:
            continue
        for path in (output_dir / folder).glob(f"{name}.*"):
            path.replace(output_dir / path.name)
    for folder in sorted({posixpath.split(record)[0] for record in records if "/" in record}, reverse=True):
        for parent in [output_dir / folder, *(output_dir / folder).parents]:
            if parent == output_dir or any(parent.iterdir()):
                break
            parent.rmdir()


@contextlib.contextmanager
def files_kept_inside(output_dir: Path, database: str):
    """
    Refuses, before anything is written, any file that the server's `RECORDS` list or a record's header would place
    outside `output_dir` (`../../x/rec`, absolute paths). wfdb creates the folders of every file of the download in
    one call before fetching them; that call is checked here.
    """
    create_folders = wfdb_download.make_local_dirs

    def checked(dl_dir, dl_inputs, keep_subdirs):
        for base_name, subdir, *_ in dl_inputs:
            path_inside(output_dir, posixpath.join(subdir, base_name), f"{database}: a file listed by the server")
        return create_folders(dl_dir, dl_inputs, keep_subdirs)

    wfdb_download.make_local_dirs = checked
    try:
        yield
    finally:
        wfdb_download.make_local_dirs = create_folders


class ServerUnreachableError(ConnectionError):
    """The download server could not be reached (no network, a wrong host or port, a refused connection)."""


def server_error(requested: str, url: str, error: Exception) -> OSError:
    """
    What went wrong talking to the server, for a user who asked for `requested` (their name for it, a sample's name
    rather than the database slug behind it): the server cannot be reached (no network, a wrong host or port), it has
    no such database (HTTP 404), or it answered with another error.
    """
    if isinstance(error, wfdb_url.NetFileNotFoundError):
        return FileNotFoundError(f"{requested}: no such database at {url} (the server answered 404 Not Found).")
    if isinstance(error, wfdb_url.NetFileError):
        return OSError(f"{requested}: the server at {url} answered HTTP {error.status_code}: {error}")
    # requests wraps the socket's error in two layers of pool messages; its errno text says what happened
    reason = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(error))
    return ServerUnreachableError(
        f"{requested}: cannot reach the server {url} (no network, or a wrong --index-url?): "
        + (reason[1].strip() if reason else _first_line(str(error)) or type(error).__name__)
    )


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


@contextlib.contextmanager
def created_paths_removed_on_failure(output_dir: Path):
    """
    Creates `output_dir` (and its missing parents). If the body fails before any file arrived, every folder it
    created goes; once files arrived (a long download cut off), they are kept, since the same call resumes from
    them, and only the empty folders go. Nothing that was there before is touched.
    """
    missing = [folder for folder in [output_dir, *output_dir.parents] if not folder.exists()]
    before = set(output_dir.rglob("*")) if output_dir.exists() else set()
    output_dir.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        created = sorted(set(output_dir.rglob("*")) - before, key=lambda path: len(path.parts), reverse=True)
        received = [path for path in created if path.is_file()]
        if received:
            logger.warning(
                "%d files received before the failure are kept in %s; the same command resumes.",
                len(received),
                output_dir,
            )
        for folder in [path for path in created if path.is_dir()] + missing:
            if not any(folder.iterdir()):
                folder.rmdir()
        raise


def download_database(
    database: str,
    output_dir: str | os.PathLike,
    index_url: str | None = None,
    records: list[str] | str = "all",
    subset: str | None = None,
    overwrite: bool = False,
) -> Path:
    """
    Downloads the latest version of a PhysioNet database's WFDB records (and, for PTB-XL, its metadata tables) into
    `output_dir`, with `wfdb.dl_database`. A failed download leaves no file or folder it created behind (files that
    were in `output_dir` before stay; the same call with `overwrite=False` skips them).

    Args:
        database: a PhysioNet slug: `ptb-xl`, `challenge-2021`, or any other database with a `RECORDS` file; or a
            named sample of `SAMPLES` (`physionet2021-sample`: 40 real challenge records, about 5 MB, written into
            `output_dir` itself).
        index_url: the server's file index (default PhysioNet's, `https://physionet.org/files/`).
        records: record names from the database's `RECORDS` file, or `"all"`.
        subset: keep only records whose name starts with this prefix (e.g. `records100` for PTB-XL at 100 Hz).
    Returns the folder holding the database, ready for the loaders.
    Raises:
        ConnectionError: the server cannot be reached; FileNotFoundError: it has no such database (both name
        `database` as given and the server's address).
    """
    requested = database
    sample = SAMPLES.get(database)
    if sample is not None:
        database, names = sample
    if not database or "/" in database:
        raise ValueError(f"Give a PhysioNet database slug such as {sorted(DATABASES)}, not {database!r}.")
    output_dir = Path(output_dir)
    with physionet_index(index_url), created_paths_removed_on_failure(output_dir):
        server = wfdb_download.PN_CONTENT_URL
        try:
            version = wfdb_download.get_version(database)
        except (OSError, IndexError) as error:  # IndexError: a page without `Version:`
            if isinstance(error, IndexError):
                raise ValueError(f"{requested}: {server}{database}/ names no version (no 'Version:' line).") from error
            raise server_error(requested, server, error) from error
        versioned = posixpath.join(database, version)
        try:
            if sample is not None:
                records = find_records_by_name(versioned, names)
            if subset is not None:
                names = wfdb.get_record_list(versioned) if records == "all" else records
                records = [name for name in names if name.startswith(subset)]
                if not records:
                    raise ValueError(f"{requested}: no record name starts with {subset!r}.")
            with files_kept_inside(output_dir, database):
                wfdb.dl_database(database, str(output_dir), records=records, annotators=None, overwrite=overwrite)
            if sample is not None:
                flatten_records(output_dir, records)
            for name in DATABASES.get(database, []):
                target = output_dir / name
                if overwrite or not target.exists():
                    url = posixpath.join(wfdb_download.config.db_index_url, versioned, name)
                    wfdb_download.dl_full_file(url, str(target))
        except OSError as error:
            if isinstance(error, (wfdb_url.NetFileError, ConnectionError)) or "requests" in type(error).__module__:
                raise server_error(requested, server, error) from error
            raise
    return output_dir
