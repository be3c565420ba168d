"""Where post files come from: a local folder, or a git repository fetched with the git
CLI (shallow and incremental) into OKK_DATA_DIR/git/<source id>.git.

A `Snapshot` is one version of a source: its commit, the files under its subfolder, and
a way to read them. Git snapshots are read straight from the object store (`ls-tree`,
`cat-file --batch`): nothing is checked out, so a symlink in a repository is only ever
a path we resolve ourselves, and it may not leave the repository. Paths that do, or are
absolute, are refused."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import posixpath
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from src.content.loader import MAX_FILE_BYTES, SETTINGS_FILE, YAML_SUFFIXES

GIT_TIMEOUT_S = 300
SYMLINK_HOPS = 8
BRANCH_PATTERN = re.compile(r"(?!-)(?!.*\.\.)(?!.*//)[A-Za-z0-9._/-]{1,200}(?<![./])")
ALLOWED_PROTOCOLS = "https:file"
LINK, FILE, DIR = "link", "file", "dir"
OBJECT_ID = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")  # sha1 or sha256


class SourceError(Exception):
    """The source cannot be read (fetch failed, folder missing, bad settings)."""


@dataclass(frozen=True)
class Entry:
    path: str  # relative to the repository (or folder) root, '/'-separated
    blob: str  # content id: git's blob id, or the sha1 of a local file's bytes
    size: int
    link: bool = False


# -- paths --------------------------------------------------------------------------------
def clean_subpath(value: str) -> str:
    """A subfolder inside the repository ('' for its root), or ValueError."""
    value = (value or "").strip().strip("/")
    if not value:
        return ""
    if "\\" in value or value.startswith("~"):
        raise ValueError("the subfolder must be a relative path inside the repository")
    normal = posixpath.normpath(value)
    if normal == ".":
        return ""
    if normal.startswith("../") or normal == ".." or posixpath.isabs(normal):
        raise ValueError("the subfolder must be a relative path inside the repository")
    return normal


def check_branch(branch: str) -> str:
    branch = (branch or "").strip()
    if not BRANCH_PATTERN.fullmatch(branch) or branch.endswith(".lock") or "@{" in branch:
        raise ValueError(f"{branch!r} is not a branch name")
    return branch


def clean_git_url(url: str) -> str:
    """https://… (credentials go in the token field, never in the URL), file://… or an
    absolute local path (turned into file://)."""
    url = (url or "").strip()
    if url.startswith("/"):
        return Path(url).resolve().as_uri()
    parts = urlsplit(url)
    if parts.scheme == "file" and parts.path.startswith("/"):
        return url
    if parts.scheme == "https" and parts.hostname:
        if parts.username or parts.password:
            raise ValueError("put the access token in the token field, not in the URL")
        return url
    raise ValueError("use an https:// URL or an absolute path to a local repository")


def is_post_file(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    if not name.endswith(YAML_SUFFIXES) or name.startswith((".", "_")):
        return False
    return not any(part.startswith(".") for part in path.split("/")[:-1])


def _joined(base: str, name: str) -> str:
    return f"{base}/{name}" if base else name


class Snapshot:
    """One version of a source. Subclasses provide the listing and the reading."""

    commit: str
    base: str  # the subfolder holding the posts ('' for the root)

    def __init__(self) -> None:
        self._dirs: set[str] | None = None

    # what subclasses provide
    def entries(self) -> dict[str, Entry]:
        raise NotImplementedError

    async def read_many(self, paths: list[str]) -> dict[str, bytes]:
        raise NotImplementedError

    async def read_link(self, path: str) -> str:
        raise NotImplementedError

    async def copy_out(self, path: str, target: Path) -> None:
        """Write the file's bytes to `target` (media: possibly large, streamed)."""
        raise NotImplementedError

    # shared
    def post_files(self) -> list[Entry]:
        prefix = f"{self.base}/" if self.base else ""
        return sorted(
            (
                e
                for path, e in self.entries().items()
                if path.startswith(prefix) and is_post_file(path[len(prefix) :])
            ),
            key=lambda e: e.path,
        )

    def settings_entry(self) -> Entry | None:
        return self.entries().get(_joined(self.base, SETTINGS_FILE))

    def relative(self, path: str) -> str:
        """The path as people see it in the source (relative to its subfolder)."""
        prefix = f"{self.base}/" if self.base else ""
        return path[len(prefix) :] if path.startswith(prefix) else path

    def _kind(self, path: str) -> str | None:
        entry = self.entries().get(path)
        if entry is not None:
            return LINK if entry.link else FILE
        if self._dirs is None:
            dirs: set[str] = set()
            for name in self.entries():
                parent = name.rpartition("/")[0]
                while parent and parent not in dirs:
                    dirs.add(parent)
                    parent = parent.rpartition("/")[0]
            self._dirs = dirs
        return DIR if path in self._dirs else None

    def _entry(self, path: str) -> Entry:
        return self.entries()[path]

    async def prepare(self) -> None:
        """Make every entry known (a changes-only git snapshot lists the rest lazily)."""

    async def follow(self, entry: Entry) -> Entry | str:
        """A post file that is a symlink: the file it names, if inside the repository."""
        if not entry.link:
            return entry
        await self.prepare()
        name = entry.path.rsplit("/", 1)[-1]
        return await self.resolve(entry.path, name, noun="post file")

    async def resolve(self, from_file: str, written: str, noun: str = "media") -> Entry | str:
        """The file a path written in `from_file` names (relative to that file's folder,
        symlinks followed while they stay inside the repository), or why not."""
        await self.prepare()
        raw = written.strip()
        if raw.startswith(("/", "~")) or re.match(r"^[A-Za-z]:", raw) or "\\" in raw:
            return f"{noun} path '{written}' is absolute: write it relative to this file"
        if "\x00" in raw or not raw:
            return f"{noun} path {written!r} is not a path"
        path = posixpath.normpath(posixpath.join(posixpath.dirname(from_file), raw))
        outside = f"{noun} path '{written}' leaves the repository"
        for _ in range(SYMLINK_HOPS):
            if path in ("..", ".") or path.startswith("../"):
                return outside
            parts = path.split("/")
            for index in range(1, len(parts) + 1):
                prefix = "/".join(parts[:index])
                kind = self._kind(prefix)
                if kind is None or (kind == FILE and index < len(parts)):
                    return f"{noun} file '{written}' does not exist"
                if kind == DIR and index == len(parts):
                    return f"{noun} path '{written}' is a folder, not a file"
                if kind == LINK:
                    target = (await self.read_link(prefix)).strip()
                    if target.startswith("/") or "\\" in target or not target:
                        return f"{noun} path '{written}' is a symlink out of the repository"
                    joined = posixpath.join(posixpath.dirname(prefix), target, *parts[index:])
                    path = posixpath.normpath(joined)
                    if path in ("..", ".") or path.startswith("../"):
                        return f"{noun} path '{written}' is a symlink out of the repository"
                    break
            else:
                return self._entry(path)
        return f"{noun} path '{written}' has too many symlinks"


# -- a local folder -----------------------------------------------------------------------
def _sha1(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


class LocalSnapshot(Snapshot):
    """A folder on this machine (the repository's content/ by default). Its "commit" is a
    digest of every file's path and content (post files) or size and modification time
    (media, hashed only when a post names them), so an unchanged folder syncs as
    unchanged and a replaced picture does not."""

    def __init__(self, root: Path, subpath: str = "") -> None:
        super().__init__()
        self.root = root.resolve()
        self.base = clean_subpath(subpath)
        if not self.root.is_dir():
            raise SourceError(f"the folder {root} does not exist")
        self._entries: dict[str, Entry] = {}
        self._content: dict[str, bytes] = {}
        self._scan()
        digest = hashlib.sha1(usedforsecurity=False)
        for path in sorted(self._entries):
            digest.update(f"{path}\0{self._entries[path].blob}\0".encode())
        self.commit = "local-" + digest.hexdigest()[:12]

    def _scan(self) -> None:
        start = self.root / self.base if self.base else self.root
        if not start.is_dir():
            raise SourceError(f"the folder {start} does not exist")
        for folder, dirs, files in os.walk(start, followlinks=False):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            rel_dir = Path(folder).relative_to(self.root).as_posix()
            rel_dir = "" if rel_dir == "." else rel_dir
            for name in files:
                self._add(_joined(rel_dir, name), name)
            for name in dirs:
                if os.path.islink(os.path.join(folder, name)):
                    path = _joined(rel_dir, name)
                    self._entries[path] = Entry(path, "", 0, link=True)

    def _add(self, path: str, name: str) -> None:
        full = self.root / path
        try:
            info = full.lstat()
        except OSError:
            return
        if stat.S_ISLNK(info.st_mode):
            self._entries[path] = Entry(path, "", 0, link=True)
            return
        if not stat.S_ISREG(info.st_mode):
            return
        wanted = is_post_file(self.relative(path)) or name == SETTINGS_FILE
        if wanted and info.st_size <= MAX_FILE_BYTES:
            data = full.read_bytes()
            self._content[path] = data
            self._entries[path] = Entry(path, _sha1(data), len(data))
        else:  # media and oversized files: hashed only when a post names them
            self._entries[path] = Entry(
                path, f"stat-{info.st_size}-{info.st_mtime_ns}", info.st_size
            )

    def entries(self) -> dict[str, Entry]:
        return self._entries

    def _kind(self, path: str) -> str | None:
        full = self.root / path
        try:
            info = full.lstat()
        except OSError:
            return None
        if stat.S_ISLNK(info.st_mode):
            return LINK
        if stat.S_ISDIR(info.st_mode):
            return DIR
        return FILE if stat.S_ISREG(info.st_mode) else None

    def _entry(self, path: str) -> Entry:
        entry = self._entries.get(path)
        if entry is None or entry.blob.startswith("stat-"):  # media: hashed when named
            full = self.root / path
            entry = Entry(path, _file_sha1(full), full.stat().st_size)
            self._entries[path] = entry
        return entry

    async def read_many(self, paths: list[str]) -> dict[str, bytes]:
        out = {}
        for path in paths:
            if path in self._content:
                out[path] = self._content[path]
            else:
                out[path] = await asyncio.to_thread((self.root / path).read_bytes)
        return out

    async def read_link(self, path: str) -> str:
        return os.readlink(self.root / path)

    async def copy_out(self, path: str, target: Path) -> None:
        await asyncio.to_thread(shutil.copyfile, self.root / path, target)


def _file_sha1(path: Path) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


# -- git ----------------------------------------------------------------------------------
def git_env(token: str | None = None) -> dict[str, str]:
    """A git that never prompts, ignores system and user configuration, speaks only
    https and local paths, and sends the token as a header (never in argv or a URL)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/nonexistent"),
        "LC_ALL": "C",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_ALLOW_PROTOCOL": ALLOWED_PROTOCOLS,
        "GIT_LFS_SKIP_SMUDGE": "1",
    }
    if token:
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        env |= {
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "http.extraHeader",
            "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
        }
    return env


async def git(
    *args: str,
    cwd: Path | None = None,
    token: str | None = None,
    limit_s: float = GIT_TIMEOUT_S,
    stdin: bytes | None = None,
) -> bytes:
    process = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=cwd,
        env=git_env(token),
        stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(stdin), limit_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise SourceError(f"git {args[0]} took longer than {limit_s:.0f} s") from None
    if process.returncode != 0:
        message = err.decode(errors="replace").strip().splitlines()
        shown = "; ".join(line for line in message if line.strip())[:500] or "failed"
        if token:
            shown = shown.replace(token, "***")
        raise SourceError(f"git {args[0]}: {shown}")
    return out


class GitRepo:
    """The local bare copy of one source's repository."""

    def __init__(self, path: Path, url: str, branch: str, token: str | None = None) -> None:
        self.path, self.url, self.branch, self.token = path, url, check_branch(branch), token
        self.ref = "refs/okk/head"

    async def remote_head(self) -> str | None:
        """The branch's commit on the remote (cheap: no objects move), or None."""
        out = await git("ls-remote", "--", self.url, f"refs/heads/{self.branch}", token=self.token)
        line = out.decode().split("\n", 1)[0]
        return line.split("\t", 1)[0] if line else None

    async def local_head(self) -> str | None:
        if not (self.path / "HEAD").exists():
            return None
        with contextlib.suppress(OSError):  # the loose ref fetch wrote: no process needed
            loose = (self.path / self.ref).read_text().strip()
            if OBJECT_ID.fullmatch(loose):
                return loose
        try:  # (packed, or another ref store)
            out = await git(
                "rev-parse", "--verify", "--quiet", f"{self.ref}^{{commit}}", cwd=self.path
            )
        except SourceError:
            return None
        return out.decode().strip() or None

    async def fetch(self) -> str:
        """Fetch the branch tip (depth 1; later fetches bring only what is new; a
        force-push simply moves the tip) and return its commit."""
        if not (self.path / "HEAD").exists():
            self.path.mkdir(parents=True, exist_ok=True)
            await git("init", "--bare", "--quiet", str(self.path))
        await git(
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            "--depth=1",
            "--",
            self.url,
            f"+refs/heads/{self.branch}:{self.ref}",
            cwd=self.path,
            token=self.token,
        )
        head = await self.local_head()
        if head is None:
            raise SourceError(f"the branch {self.branch} has no commit")
        return head

    async def _tree(self, commit: str, paths: list[str] | None = None) -> dict[str, Entry]:
        args = ["ls-tree", "-r", "-l", "-z", "--full-tree", commit]
        out = await git(*args, *(["--", *paths] if paths else []), cwd=self.path)
        entries: dict[str, Entry] = {}
        for record in out.split(b"\0"):
            if not record:
                continue
            meta, _, name = record.partition(b"\t")
            mode, kind, blob, size = meta.split()
            if kind != b"blob":
                continue  # submodules
            path = name.decode("utf-8", "surrogateescape")
            entries[path] = Entry(
                path, blob.decode(), int(size) if size != b"-" else 0, link=mode == b"120000"
            )
        return entries

    async def snapshot(self, commit: str, subpath: str = "") -> GitSnapshot:
        return GitSnapshot(self, commit, await self._tree(commit), clean_subpath(subpath))

    async def changes(
        self, old: str, new: str, subpath: str = ""
    ) -> tuple[GitSnapshot, list[str], list[str]] | None:
        """When `new` differs from `old` only in post files under the subfolder: a
        snapshot that lists just those (and the settings file), the changed or added
        post files, and the deleted ones. None otherwise (or when `old` is gone)."""
        base = clean_subpath(subpath)
        prefix = f"{base}/" if base else ""
        try:
            out = await git(
                "diff-tree", "-r", "-z", "--no-renames", "--name-status", old, new, cwd=self.path
            )
        except SourceError:
            return None
        fields = out.split(b"\0")
        changed, deleted = [], []
        for status, name in zip(fields[0::2], fields[1::2], strict=False):
            path = name.decode("utf-8", "surrogateescape")
            relative = path[len(prefix) :] if path.startswith(prefix) else None
            if relative is None or not is_post_file(relative):
                return None  # media, settings or anything else: read the whole tree
            (deleted if status == b"D" else changed).append(path)
        entries = await self._tree(new, [*changed, _joined(base, SETTINGS_FILE)])
        snapshot = GitSnapshot(self, new, entries, base, partial=True)
        return snapshot, [p for p in changed if p in entries], deleted


class GitSnapshot(Snapshot):
    def __init__(
        self,
        repo: GitRepo,
        commit: str,
        entries: dict[str, Entry],
        base: str,
        partial: bool = False,
    ) -> None:
        super().__init__()
        self.repo, self.commit, self._entries, self.base = repo, commit, entries, base
        self.partial = partial

    def entries(self) -> dict[str, Entry]:
        return self._entries

    async def prepare(self) -> None:
        if self.partial:
            self._entries = await self.repo._tree(self.commit)
            self._dirs = None
            self.partial = False

    async def read_many(self, paths: list[str]) -> dict[str, bytes]:
        """Blobs through one `git cat-file --batch`, however many there are, its output
        read whole (post files are at most MAX_FILE_BYTES each) and cut up here."""
        if not paths:
            return {}
        blobs = "".join(f"{self._entries[p].blob}\n" for p in paths).encode()
        out = await git("cat-file", "--batch", "--buffer", cwd=self.repo.path, stdin=blobs)
        found: dict[str, bytes] = {}
        at = 0
        for path in paths:  # "<blob> blob <size>\n<content>\n" each, in the order asked
            end = out.find(b"\n", at)
            header = out[at:end].split()
            if len(header) != 3:
                raise SourceError(f"git cat-file: cannot read {path}")
            at = end + 1 + int(header[2])
            found[path] = out[end + 1 : at]
            at += 1
        return found

    async def read_link(self, path: str) -> str:
        data = await git("cat-file", "blob", self._entries[path].blob, cwd=self.repo.path)
        return data.decode("utf-8", "replace")

    async def copy_out(self, path: str, target: Path) -> None:
        blob = self._entries[path].blob
        with target.open("wb") as handle:
            process = await asyncio.create_subprocess_exec(
                "git",
                "cat-file",
                "blob",
                blob,
                cwd=self.repo.path,
                env=git_env(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=handle,
                stderr=asyncio.subprocess.DEVNULL,
            )
            if await process.wait() != 0:
                raise SourceError(f"git cat-file: cannot read {path}")


def git_dir(data_dir: Path, source_id: int) -> Path:
    return data_dir / "git" / f"{source_id}.git"
