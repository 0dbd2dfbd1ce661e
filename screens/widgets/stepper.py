"""The packet stepper's panes as small widgets: the screen sets attributes, the widget redraws.

Each widget owns one piece of the SSDTF screen and is a :class:`~textual.widgets.Static`
driven by reactive attributes, so the screen says *what* to show (``details.row = row``)
instead of building text and calling ``query_one(...).update`` in many places; the text itself
comes from :mod:`screens.widgets.packets` (no I/O, testable alone).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.text import Text
from textual.events import Resize
from textual.reactive import reactive
from textual.widgets import Static

from screens.widgets.packets import PacketRow, detail_text, hex_width, keys_text, legend_text

if TYPE_CHECKING:
    from drivers.ssdtf.trace import KeyView


class InfoLine(Static):
    """What the shown trace is and where it stands; wraps to a second line at 80 columns
    (an attack's verdict is read here, whole)."""

    text: reactive[Text] = reactive(Text, layout=True)

    def watch_text(self, text: Text) -> None:
        self.update(text)


class PacketDetails(Static):
    """The selected packet: lesson step, verdicts, what it means, fields, a hex dump laid
    out for the pane's width (16, 8 or 4 bytes a line)."""

    row: reactive[PacketRow | None] = reactive(None, layout=True)
    model: reactive[int] = reactive(1)
    highlight_reason: reactive[str] = reactive("")
    lesson: reactive[Text | None] = reactive(None, layout=True)

    def on_mount(self) -> None:
        self._redraw()

    def on_resize(self, event: Resize) -> None:
        self._redraw()

    def watch_row(self) -> None:
        self._redraw()

    def watch_model(self) -> None:
        self._redraw()

    def watch_highlight_reason(self) -> None:
        self._redraw()

    def watch_lesson(self) -> None:
        self._redraw()

    def _redraw(self) -> None:
        width = self.content_size.width or self.size.width or 80
        self.update(
            detail_text(self.row, self.highlight_reason, self.model, hex_width(width), self.lesson)
        )


@dataclass(frozen=True)
class KeysView:
    """What the keys pane shows: keys after a packet, keys before it, the lanes."""

    keys: Mapping[str, Sequence[KeyView]] = field(default_factory=dict)
    before: Mapping[str, Sequence[KeyView]] | None = None
    at: int | None = None
    lanes: tuple[str, ...] = ()


class KeysPanel(Static):
    """Keys per role after the selected packet, what changed there on top, then the legend."""

    view: reactive[KeysView] = reactive(KeysView, layout=True)

    def watch_view(self, view: KeysView) -> None:
        self.update(keys_text(view.keys, view.before, view.at, view.lanes))


class LegendPanel(Static):
    """Lanes and role abbreviations (``B``, ``ds``, ``ms``…), under the keys; wraps."""

    lanes: reactive[tuple[str, ...]] = reactive(tuple, layout=True)

    def on_mount(self) -> None:
        self.update(legend_text(self.lanes))

    def watch_lanes(self, lanes: tuple[str, ...]) -> None:
        self.update(legend_text(lanes))
