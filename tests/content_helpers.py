"""Real git repositories for content tests: a bare remote and a work tree in a temporary
folder, changed with the git CLI and pushed with real commits."""

from __future__ import annotations

import os
import secrets
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "Content Test",
    "GIT_AUTHOR_EMAIL": "content@example.com",
    "GIT_COMMITTER_NAME": "Content Test",
    "GIT_COMMITTER_EMAIL": "content@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


def run_git(*args: str, cwd: Path) -> str:
    result = subprocess.run(
        ["git", *args], cwd=cwd, env=GIT_ENV, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
    return result.stdout.strip()


class Repo:
    """A work tree whose pushes go to a bare remote (the source's URL)."""

    def __init__(self, root: Path, branch: str = "main") -> None:
        self.remote = root / "remote.git"
        self.work = root / "work"
        self.branch = branch
        root.mkdir(parents=True, exist_ok=True)
        run_git(
            "init", "--quiet", "--bare", f"--initial-branch={branch}", str(self.remote), cwd=root
        )
        run_git("init", "--quiet", f"--initial-branch={branch}", str(self.work), cwd=root)
        run_git("remote", "add", "origin", str(self.remote), cwd=self.work)

    @property
    def url(self) -> str:
        return str(self.remote)

    def write(self, path: str, text: str | bytes) -> Path:
        target = self.work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            target.write_bytes(text)
        else:
            target.write_text(text)
        return target

    def remove(self, path: str) -> None:
        run_git("rm", "--quiet", "-r", path, cwd=self.work)

    def move(self, old: str, new: str) -> None:
        (self.work / new).parent.mkdir(parents=True, exist_ok=True)
        run_git("mv", old, new, cwd=self.work)

    def symlink(self, path: str, target: str) -> None:
        link = self.work / path
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)

    def commit(self, message: str = "change", push: bool = True) -> str:
        run_git("add", "--all", cwd=self.work)
        run_git("commit", "--quiet", "--allow-empty", "-m", message, cwd=self.work)
        if push:
            run_git("push", "--quiet", "origin", f"{self.branch}:{self.branch}", cwd=self.work)
        return self.head()

    def amend(self, message: str = "rewritten") -> str:
        """Rewrite the last commit and force-push it (history rewritten)."""
        run_git("add", "--all", cwd=self.work)
        run_git("commit", "--quiet", "--amend", "-m", message, cwd=self.work)
        run_git(
            "push", "--quiet", "--force", "origin", f"{self.branch}:{self.branch}", cwd=self.work
        )
        return self.head()

    def reset_hard(self, ref: str) -> None:
        run_git("reset", "--quiet", "--hard", ref, cwd=self.work)

    def head(self) -> str:
        return run_git("rev-parse", "HEAD", cwd=self.work)


def future(minutes: int = 60 * 24 * 30) -> str:
    """An ISO time with an offset, comfortably in the future."""
    moment = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=minutes)
    return moment.isoformat()


def post_yaml(
    item_id: str,
    *,
    text: str = "Hello",
    when: str | None = None,
    accounts: str = "[x:@xavier_x]",
    extra: str = "",
) -> str:
    when = when or future()
    return f"id: {item_id}\npublish_at: {when}\naccounts: {accounts}\ntext: {text}\n{extra}"


def unique(prefix: str = "p") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"
