"""The top line of every screen: the lab's jobs with their keys, the current one marked.

It replaces Textual's Header so that, at 80×24, the way to every job stays visible (the
footer then has room for the screen's own keys). The current job is bracketed as well as
highlighted, so it reads the same under NO_COLOR.
"""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget


class JobBar(Widget):
    """``SAFE Lab  1 Tokens  2 Sign  [3 Results]  4 Triage`` for the lab's registered jobs."""

    DEFAULT_CSS = """
    JobBar { height: 1; width: 1fr; background: $panel; color: $foreground; }
    """

    def __init__(self, jobs: tuple[tuple[str, str], ...], current: str) -> None:
        super().__init__()
        self.jobs = jobs
        self.current = current

    HELP_HINT = "? help "
    SHORT = 4
    """Characters of the other jobs' titles when nothing else fits (``7 What``)."""

    def render(self) -> Text:
        text = self._line(2)
        # more jobs than the width holds: tighter, then without the brand, then the other
        # jobs' titles cut to SHORT characters, then one space between jobs -- every key stays
        # visible, the current job whole
        steps = ((1, True, None), (1, False, None), (1, False, self.SHORT), (0, False, self.SHORT))
        for pad, brand, short in steps:
            if not text.cell_len > self.size.width > 0:
                break
            text = self._line(pad, brand=brand, short=short)
        room = self.size.width - text.cell_len
        if room >= len(self.HELP_HINT) + 2:  # the help key, right-aligned, when it fits
            text.append(" " * (room - len(self.HELP_HINT)))
            text.append(self.HELP_HINT, style="dim")
        return text

    def _line(self, pad: int, *, brand: bool = True, short: int | None = None) -> Text:
        text = Text(" SAFE Lab " if brand else "", style="bold", no_wrap=True, overflow="ellipsis")
        outer = " " * pad
        inner = " " * (pad - 1)
        for number, (name, title) in enumerate(self.jobs, start=1):
            key = str(number) if number <= 9 else ""
            if not pad:  # the tightest: one space between jobs
                text.append(" ")
                style = "bold reverse" if name == self.current else ""
                shown = title[:short].rstrip("-") if short and not style else title
                text.append(f"[{key} {title}]" if style else f"{key} {shown}", style=style)
            elif name == self.current:
                text.append(f"{inner}[{key} {title}]{inner}", style="bold reverse")
            else:
                shown = title[:short].rstrip("-") if short else title
                text.append(f"{outer}{key} {shown}{outer}")
        return text
