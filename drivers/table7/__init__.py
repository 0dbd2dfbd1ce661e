"""The paper's Table 7, computed: each pattern before and after its remedies, judged ○/△/×.

- :mod:`.verdicts` -- the rules (thresholds written down) and the paper's own verdicts;
- :mod:`.remedies` -- which toggles stand for "before" and for the paper's remedies per row;
- :mod:`.cells` -- one cell's figures, verdict, source (measured / predicted / not measured);
- :mod:`.predict` -- the hook into the what-if engine (``drivers.whatif``) for cells that
  cannot be measured.

Runs go through :class:`drivers.runs.table7.Table7Run` (``safelab table7``, ``safelab paper
--table7``).
"""

from drivers.table7.cells import Cell, Table7Result
from drivers.table7.verdicts import PAPER_VERDICTS, judge

__all__ = ["PAPER_VERDICTS", "Cell", "Table7Result", "judge"]
