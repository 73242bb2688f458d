"""The documentation's configuration tables (docs/configuration.md), generated from the
variables' table.

``python -m storage.config.readme`` rewrites them (a test checks that the page matches).
"""

from __future__ import annotations

from pathlib import Path

from storage.config.variables import VARIABLES


def markdown_table(table: str) -> str:
    """The table of one group of variables, generated from :data:`VARIABLES`."""
    header = (
        "| variable | default | meaning |\n|---|---|---|"
        if table == "settings"
        else "| variable | default | what it bounds |\n|---|---|---|"
    )
    rows = []
    for variable in VARIABLES:
        if variable.table != table:
            continue
        default = variable.shown_default or f"`{variable.default}`"
        rows.append(f"| `{variable.name}` | {default} | {variable.meaning} |")
    return "\n".join([header, *rows])


PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def with_tables(readme: str) -> str:
    """``readme`` (a page's text) with each ``<!-- config:NAME -->`` block replaced by its
    generated table."""
    for name in ("settings", "limits"):
        start, end = f"<!-- config:{name} -->", f"<!-- /config:{name} -->"
        before, found, rest = readme.partition(start)
        _, found_end, after = rest.partition(end)
        if not (found and found_end):
            raise ValueError(f"no {start} ... {end} block: the tables are in docs/configuration.md")
        readme = f"{before}{start}\n{markdown_table(name)}\n{end}{after}"
    return readme


if __name__ == "__main__":  # python -m storage.config.readme: rewrite docs/configuration.md
    import sys

    for path in [Path(p) for p in sys.argv[1:]] or [PAGE]:
        text = path.read_text()
        path.write_text(with_tables(text))
