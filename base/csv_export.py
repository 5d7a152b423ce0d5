"""CSV exports (orders, customers, the commission report, payouts): UTF-8 with a BOM, so that Excel opens
Chinese names as they are, and every cell safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence

from starlette.responses import Response

#: Excel reads a CSV without it as the local code page, and garbles every Chinese name.
BOM = "\ufeff"


def csv_safe(value: object) -> str:
    """Text as a spreadsheet should show it: a leading = + - @ would otherwise run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_response(filename: str, columns: Sequence[str], rows: Iterable[Mapping[str, object]]) -> Response:
    """A CSV download of ``rows`` (each a mapping by column name), the columns in this order."""
    out = io.StringIO()
    out.write(BOM)
    writer = csv.writer(out)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_safe(row.get(c)) for c in columns])
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
