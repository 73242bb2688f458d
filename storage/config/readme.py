"""The README's configuration tables, generated from the variables' table.

``python -m storage.config.readme README.md`` rewrites them (a test checks that the
README matches).
"""

from __future__ import annotations

from pathlib import Path

from storage.config.variables import VARIABLES


def markdown_table(table: str) -> str:
    """The README's table of one group of variables, generated from :data:`VARIABLES`."""
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


def with_tables(readme: str) -> str:
    """``readme`` with each ``<!-- config:NAME -->`` block replaced by its generated table."""
    for name in ("settings", "limits"):
        start, end = f"<!-- config:{name} -->", f"<!-- /config:{name} -->"
        before, found, rest = readme.partition(start)
        _, found_end, after = rest.partition(end)
        if not (found and found_end):
            raise ValueError(f"README has no {start} ... {end} block")
        readme = f"{before}{start}\n{markdown_table(name)}\n{end}{after}"
    return readme


if __name__ == "__main__":  # python -m storage.config.readme README.md: rewrite its tables
    import sys

    for path in sys.argv[1:]:
        text = Path(path).read_text()
        Path(path).write_text(with_tables(text))
