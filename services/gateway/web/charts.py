"""Bar charts drawn on the server as SVG (services/gateway/web/templates/chart.html):
the geometry is computed here from the report's decimal figures, so a page needs no
charting script; the page shows the same figures in a table beside the chart."""

from dataclasses import dataclass
from decimal import Decimal

WIDTH = 640
LABEL_WIDTH = 200
BAR_HEIGHT = 16
ROW_GAP = 12
TOP = 8
# Room right of the longest bar for its figure.
FIGURE_WIDTH = 120
# What fits left of the bars at 12px; the table beside the chart has the whole label.
LABEL_CHARS = 30


@dataclass(frozen=True)
class Series:
    name: str
    css_class: str  # its colour, from the stylesheet


@dataclass(frozen=True)
class Bar:
    series: Series
    value: str
    x: float
    y: float
    width: float


@dataclass(frozen=True)
class Row:
    label: str
    y: float  # of the row's label baseline
    bars: list[Bar]

    @property
    def short_label(self) -> str:
        if len(self.label) <= LABEL_CHARS:
            return self.label
        return self.label[: LABEL_CHARS - 1].rstrip() + "…"


@dataclass(frozen=True)
class BarChart:
    id: str
    title: str
    description: str
    row_heading: str  # what the rows are, heading the table's first column
    series: list[Series]
    rows: list[Row]
    width: int
    height: float


def bar_chart(
    chart_id: str,
    title: str,
    description: str,
    row_heading: str,
    series: list[Series],
    rows: list[tuple[str, list[str]]],
) -> BarChart:
    """Horizontal bars, one group per row (`(label, [figure per series])`), each bar as
    long as its figure against the largest (negative figures draw no bar)."""
    largest = max((Decimal(value) for _, values in rows for value in values), default=Decimal(0))
    scale = (WIDTH - LABEL_WIDTH - FIGURE_WIDTH) / float(largest) if largest > 0 else 0.0
    group_height = len(series) * BAR_HEIGHT + ROW_GAP
    placed = []
    for index, (row_label, values) in enumerate(rows):
        top = TOP + index * group_height
        bars = [
            Bar(
                series=one,
                value=value,
                x=LABEL_WIDTH,
                y=top + position * BAR_HEIGHT,
                width=max(0.0, float(Decimal(value)) * scale),
            )
            for position, (one, value) in enumerate(zip(series, values, strict=True))
        ]
        placed.append(Row(row_label, top + len(series) * BAR_HEIGHT / 2 + 4, bars))
    return BarChart(
        id=chart_id,
        title=title,
        description=description,
        row_heading=row_heading,
        series=series,
        rows=placed,
        width=WIDTH,
        height=TOP * 2 + max(1, len(rows)) * group_height,
    )
