"""Named link profiles: ``profiles/links/NAME.toml``, shipped as package data.

A profile is a ``[link]`` table whose keys are the fields of the ``--link`` grammar (see
:mod:`drivers.links.spec`), directions as dotted keys or sub-tables (``up.rate = "375kbit"`` or
``[link.up]``), plus ``name`` and ``description``. Every figure carries a comment saying where
it comes from, or that it is an assumption: a profile is a claim about a network, and a claim
needs its source.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from drivers.links.spec import LinkSpec, LinkSpecError, parse_fields

PROFILE_DIR = Path(__file__).resolve().parents[2] / "profiles" / "links"


@dataclass(frozen=True)
class LinkProfile:
    """A shipped profile: its file stem (what ``--link`` takes), display name and spec."""

    key: str
    name: str
    description: str
    spec: LinkSpec


def _flatten(table: dict[str, object], prefix: str = "") -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    for key, value in table.items():
        if isinstance(value, dict):
            items += _flatten(value, f"{prefix}{key}.")
        else:
            items.append((f"{prefix}{key}", str(value)))
    return items


def _read(path: Path) -> LinkProfile:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise LinkSpecError(
            f"link profile {path.name} cannot be read ({exc})",
            "fix the TOML file or remove it from profiles/links",
        ) from exc
    link = data.get("link")
    if not isinstance(link, dict):
        raise LinkSpecError(
            f"link profile {path.name} has no [link] table",
            'add [link] with fields such as rtt = "100ms"',
        )
    spec = parse_fields(_flatten(link), LinkSpec(), source=path.stem)
    return LinkProfile(
        key=path.stem,
        name=str(data.get("name", path.stem)),
        description=str(data.get("description", "")),
        spec=spec,
    )


def list_profiles(directory: Path = PROFILE_DIR) -> list[LinkProfile]:
    """Every shipped profile, sorted by key."""
    return [_read(path) for path in sorted(directory.glob("*.toml"))]


def load_profile(name: str, directory: Path = PROFILE_DIR) -> LinkSpec:
    """The spec of profile ``name`` (case-insensitive file stem); a clear error if unknown."""
    wanted = name.strip().lower()
    for path in sorted(directory.glob("*.toml")):
        if path.stem.lower() == wanted:
            return _read(path).spec
    known = ", ".join(path.stem for path in sorted(directory.glob("*.toml")))
    raise LinkSpecError(
        f"no link profile named {name!r}",
        f"use one of {known} or fields such as rtt=100ms,loss=1%",
    )
