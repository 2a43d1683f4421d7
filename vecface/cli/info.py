"""``vecface backends``: which backends can be used here, and why not."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .common import DataDir, Dsn, Url, handle_errors


@handle_errors
def backends_cmd(dsn: Dsn = None, url: Url = None, data_dir: DataDir = None) -> None:
    """List each backend, whether it is available here, and why not if not."""
    from ..registry import check_backends

    statuses = check_backends(pgvector={"dsn": dsn, "data_dir": data_dir},
                              weaviate={"url": url, "data_dir": data_dir})
    table = Table(title="vecface backends")
    table.add_column("backend")
    table.add_column("available")
    table.add_column("details")
    for st in statuses:
        table.add_row(st.name, "[green]yes[/]" if st.available else "[red]no[/]", escape(st.detail))
    Console().print(table)
