"""``web_search``: search, and answer from the results' text (never from fetched pages).

Providers: ``searxng`` -- a SearxNG instance's JSON API (``{url}/search?q=...&format=json``),
fetched under the address rules of ``agents.abilities._http`` (allow-list the instance's
host when it is on a private network); and ``files`` -- offline, a search over the text and
Markdown files in a folder (the workspace's knowledge files), by the same similarity the
embedded model uses. Results are titles, snippets and URLs; the pages themselves are not
fetched into the prompt.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import ClassVar, Literal, cast
from urllib.parse import urlencode

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, model_validator

from agents.abilities import AbilityContext, AbilityResult
from agents.abilities._http import AddressRefused, check_url, fetch
from people.roles import Need
from people.similarity import SimilarityIndex

MAX_SNIPPET = 300


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: Literal["searxng", "files"] = "files"
    url: str | None = Field(default=None, description="The SearxNG instance (searxng).")
    folder: str = Field(default="./files/shared", description="Knowledge files (files).")
    allow_hosts: list[str] = Field(default_factory=list, description="Private hosts allowed.")
    max_results: int = Field(default=5, ge=1, le=20)
    timeout_seconds: float = Field(default=8.0, gt=0, le=60)

    @model_validator(mode="after")
    def _provider(self) -> Settings:
        if self.provider == "searxng":
            if not self.url:
                raise ValueError("searxng needs url")
            try:
                check_url(self.url, frozenset(h.lower() for h in self.allow_hosts))
            except AddressRefused as exc:
                raise ValueError(f"url: {exc} (allow-list the host to use it)") from None
        return self


class Arguments(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=300)


class WebSearch:
    name: ClassVar[str] = "web_search"
    description: ClassVar[str] = "Search for information; returns titles, snippets and links."
    settings_model: ClassVar[type[BaseModel]] = Settings
    arguments: ClassVar[type[BaseModel]] = Arguments
    need: ClassVar[Need] = Need()  # public information

    async def run(self, context: AbilityContext, arguments: BaseModel) -> AbilityResult:
        query = cast(Arguments, arguments).query
        settings = Settings.model_validate(context.abilities.get(self.name, {}))
        if settings.provider == "files":
            lines = await asyncio.to_thread(_search_files, Path(settings.folder), query,
                                            settings.max_results)  # fmt: skip
        else:
            try:
                lines = await _searxng(settings, query)
            except AddressRefused as exc:
                return AbilityResult(f"Search is not reachable: {exc}.", refused=True)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                return AbilityResult(f"Search failed ({type(exc).__name__}).", refused=True)
        return AbilityResult("\n".join(lines) if lines else f"No results for '{query}'.")


async def _searxng(settings: Settings, query: str) -> list[str]:
    url = f"{(settings.url or '').rstrip('/')}/search?{urlencode({'q': query, 'format': 'json'})}"
    allowed = frozenset(h.lower() for h in settings.allow_hosts)
    fetched = await fetch("GET", url, allow_hosts=allowed, timeout_seconds=settings.timeout_seconds)
    if fetched.status != 200:
        raise ValueError(f"status {fetched.status}")
    results = json.loads(fetched.text).get("results", [])
    out = []
    for result in results[: settings.max_results]:
        title = str(result.get("title", "")).strip()
        snippet = str(result.get("content", "")).strip()[:MAX_SNIPPET]
        out.append(f"{title}: {snippet} ({result.get('url', '')})")
    return out


def _search_files(folder: Path, query: str, limit: int) -> list[str]:
    passages: list[tuple[str, str]] = []
    root = folder.resolve()
    for path in sorted(root.rglob("*")) if root.is_dir() else []:
        if path.suffix.lower() not in (".txt", ".md") or not path.resolve().is_relative_to(root):
            continue
        text = path.read_text("utf-8", errors="replace")
        passages += [(path.name, p.strip()) for p in text.split("\n\n") if p.strip()]
    if not passages:
        return []
    index = SimilarityIndex([p for _, p in passages])
    ranked = index.ranked(query)[:limit]
    return [f"{passages[i][0]}: {passages[i][1][:MAX_SNIPPET]}" for i, score in ranked if score > 0]


ABILITY = WebSearch()
