"""`safelab paper`: the paper's measurements under the paper's own conditions, judged.

- :mod:`.figures`: one measured figure beside the paper's, its tolerance and verdict;
- :mod:`.result`: what a paper run produced (figures, runs, provenance);
- :mod:`.report`: the HTML/Markdown report with plots.
"""
