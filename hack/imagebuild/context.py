"""The files a build context sends, by .dockerignore rules, and a digest of them (the cache key's input)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path


def _regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex on '/'-separated relative paths (`**` spans directories)."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def read_rules(ignorefile: Path) -> list[tuple[bool, re.Pattern[str], str]]:
    """(excluding, regex, pattern) per line, in order; the last rule that matches decides."""
    rules = []
    for line in ignorefile.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        rules.append((not negate, _regex(pattern), pattern))
    return rules


def _excluded(rel: str, rules: list[tuple[bool, re.Pattern[str], str]]) -> bool:
    parts = rel.split("/")
    # A rule that names a directory covers everything under it.
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for excluding, rx, _ in rules:
        if any(rx.fullmatch(p) for p in prefixes):
            excluded = excluding
    return excluded


def context_files(context: Path, ignorefile: Path) -> list[str]:
    """The relative paths of the regular files the build can COPY, sorted."""
    rules = read_rules(ignorefile)
    includes = [pattern for excluding, _, pattern in rules if not excluding]
    files: list[str] = []
    for dirpath, dirnames, filenames in os.walk(context):
        reldir = Path(dirpath).relative_to(context).as_posix()
        reldir = "" if reldir == "." else reldir + "/"
        # Skip excluded directories that no '!' rule reaches into (the repo root holds venvs).
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not _excluded(reldir + d, rules) or any(p.startswith(reldir + d + "/") for p in includes)
        )
        for name in filenames:
            rel = reldir + name
            if not _excluded(rel, rules) and os.path.isfile(os.path.join(dirpath, name)):
                files.append(rel)
    return sorted(files)


def context_digest(context: Path, ignorefile: Path) -> str:
    """sha256 over the context's files' paths, modes and contents."""
    h = hashlib.sha256()
    for rel in context_files(context, ignorefile):
        path = context / rel
        h.update(rel.encode() + b"\0" + oct(path.stat().st_mode & 0o777).encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def copy_context(context: Path, ignorefile: Path, dest: Path) -> Path:
    """A copy of the files the build can COPY, for builds that edit code (tests, the benchmark)."""
    for rel in context_files(context, ignorefile):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(context / rel, dest / rel)
    return dest
