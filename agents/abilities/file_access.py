"""``file_access``: list and read text files under the workspace's files folder.

The folder (``root``) has ``shared/`` -- readable in conversations whose role has
``files: use`` -- and ``members/<member id>/`` -- each member's own files, readable in that
member's conversations, and another member's only with ``files: admin``. A path is
relative to the root; an absolute path, ``..``, a NUL, a symlink that leads outside the
root or into a folder the conversation may not read, and anything that is not a regular
UTF-8 text file under ``max_bytes`` is refused.
"""

from __future__ import annotations

import asyncio
from pathlib import Path, PurePosixPath
from typing import ClassVar, Literal, cast

from pydantic import BaseModel, ConfigDict, Field

from agents.abilities import AbilityContext, AbilityResult
from people.roles import Need, allows

MAX_LISTED = 100


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    root: str = Field(default="./files", description="The workspace files folder.")
    max_bytes: int = Field(default=64 * 1024, ge=1, le=10 * 1024 * 1024)


class Arguments(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["list", "read"]
    path: str = Field(default="", max_length=1000, description="e.g. shared/prices.txt")


class FileAccess:
    name: ClassVar[str] = "file_access"
    description: ClassVar[str] = (
        "Files. action=list with a folder path ('' for the top) lists what you may read; "
        "action=read with a file path returns its text. 'shared/...' holds workspace files, "
        "'members/<id>/...' a member's own."
    )
    settings_model: ClassVar[type[BaseModel]] = Settings
    arguments: ClassVar[type[BaseModel]] = Arguments
    need: ClassVar[Need] = Need()  # a member's own files; shared and others' check more

    async def run(self, context: AbilityContext, arguments: BaseModel) -> AbilityResult:
        settings = Settings.model_validate(context.abilities.get(self.name, {}))
        return await asyncio.to_thread(_run, context, cast(Arguments, arguments), settings)


def _run(context: AbilityContext, args: Arguments, settings: Settings) -> AbilityResult:
    """The whole call, file system work included, off the event loop."""
    root = Path(settings.root).resolve()
    target = _inside(root, args.path)
    if target is None:
        return AbilityResult(f"'{args.path}' is not a path I may open.", refused=True)
    if not _may_read(context, root, target):
        return AbilityResult(f"This conversation may not read '{args.path}'.", refused=True)
    if args.action == "list":
        return _list(context, root, target)
    return _read(target, args.path, settings.max_bytes)


def _inside(root: Path, raw: str) -> Path | None:
    """``raw`` under ``root``, symlinks followed; None if it is not, or is not a clean path."""
    if "\x00" in raw or "\\" in raw:
        return None
    pure = PurePosixPath(raw.strip())
    if pure.is_absolute() or ".." in pure.parts:
        return None
    resolved = (root / pure).resolve()
    return resolved if resolved == root or resolved.is_relative_to(root) else None


def _may_read(context: AbilityContext, root: Path, target: Path) -> bool:
    parts = target.relative_to(root).parts
    if not parts:
        return True  # the top: listing shows only what may be read
    if parts[0] == "shared":
        return allows(context.role, Need(feature="files", level="use"))
    if parts[0] == "members" and len(parts) >= 2:
        mine = context.member is not None and parts[1] == str(context.member.id)
        return mine or allows(context.role, Need(feature="files", level="admin"))
    if parts[0] == "members":
        return allows(context.role, Need(feature="files", level="admin"))
    return False


def _list(context: AbilityContext, root: Path, folder: Path) -> AbilityResult:
    if not folder.is_dir():
        return AbilityResult("There is no such folder.", refused=True)
    names = []
    for entry in sorted(folder.iterdir()):
        resolved = entry.resolve()
        if not resolved.is_relative_to(root) or not _may_read(context, root, resolved):
            continue
        names.append(entry.name + ("/" if resolved.is_dir() else ""))
        if len(names) >= MAX_LISTED:
            break
    if folder == root and context.member is not None:
        own = root / "members" / str(context.member.id)
        if own.is_dir() and "members/" not in names:
            names.append(f"members/{context.member.id}/")
    return AbilityResult(", ".join(names) if names else "(nothing here you may read)")


def _read(target: Path, shown: str, max_bytes: int) -> AbilityResult:
    if not target.is_file():
        return AbilityResult(f"There is no file '{shown}'.", refused=True)
    if target.stat().st_size > max_bytes:
        return AbilityResult(f"'{shown}' is larger than {max_bytes} bytes.", refused=True)
    try:
        return AbilityResult(target.read_text("utf-8"))
    except UnicodeDecodeError:
        return AbilityResult(f"'{shown}' is not a text file.", refused=True)


ABILITY = FileAccess()
