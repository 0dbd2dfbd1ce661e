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

    def render(self) -> Text:
        text = self._line(2)
        for pad, brand in ((1, True), (1, False), (0, False)):
            if text.cell_len <= self.size.width or self.size.width <= 0:
                break
            # six or more jobs at 80 columns: tighter, then without the brand, but every key
            # shows (seven jobs need 83 columns at pad 1)
            text = self._line(pad, brand)
        room = self.size.width - text.cell_len
        if room >= len(self.HELP_HINT) + 2:  # the help key, right-aligned, when it fits
            text.append(" " * (room - len(self.HELP_HINT)))
            text.append(self.HELP_HINT, style="dim")
        return text

    def _line(self, pad: int, brand: bool = True) -> Text:
        text = Text(" SAFE Lab " if brand else "", style="bold", no_wrap=True, overflow="ellipsis")
        outer = " " * pad
        inner = " " * (pad - 1)
        for number, (name, title) in enumerate(self.jobs, start=1):
            key = str(number) if number <= 9 else ""
            if not pad:  # the tightest: one space between jobs
                text.append(" ")
                style = "bold reverse" if name == self.current else ""
                text.append(f"[{key} {title}]" if style else f"{key} {title}", style=style)
            elif name == self.current:
                text.append(f"{inner}[{key} {title}]{inner}", style="bold reverse")
            else:
                text.append(f"{outer}{key} {title}{outer}")
        return text
