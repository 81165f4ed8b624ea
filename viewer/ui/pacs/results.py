"""Query results as a Qt table model (columns from ``viewer.pacs.query.COLUMNS``), sortable
through a ``QSortFilterProxyModel``: numbers numerically, text without case, blanks last."""

from __future__ import annotations

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt

from viewer.ui.annotations import dicom_date, person_name

SORT_ROLE = Qt.ItemDataRole.UserRole
RESULT_ROLE = Qt.ItemDataRole.UserRole + 1
_RIGHT = {"num_series", "num_instances", "series_number"}


def display(column: str, value) -> str:
    if value is None or value == "":
        return ""
    if column == "patient_name":
        return person_name(str(value))
    if column in ("study_date", "patient_birth_date"):
        return dicom_date(str(value))
    return str(value)


class ResultsModel(QAbstractTableModel):
    def __init__(self, columns: list[tuple[str, str]], parent=None):
        super().__init__(parent)
        self.columns = list(columns)
        self.results: list = []

    def set_results(self, results: list) -> None:
        self.beginResetModel()
        self.results = list(results)
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()):  # noqa: N802, B008
        return 0 if parent.isValid() else len(self.results)

    def columnCount(self, parent=QModelIndex()):  # noqa: N802, B008
        return 0 if parent.isValid() else len(self.columns)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.columns[section][1]
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        result = self.results[index.row()]
        column = self.columns[index.column()][0]
        value = getattr(result, column)
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            return display(column, value)
        if role == SORT_ROLE:  # (blank?, number, text): a tuple Qt cannot compare, so flatten to text/number
            if value is None or value == "":
                return None
            return value if isinstance(value, (int, float)) else str(value).casefold()
        if role == RESULT_ROLE:
            return result
        if role == Qt.ItemDataRole.TextAlignmentRole and column in _RIGHT:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


class ResultsProxy(QSortFilterProxyModel):
    """Sorts on ``SORT_ROLE``; blank cells stay at the end in both directions."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setSortRole(SORT_ROLE)

    def lessThan(self, left, right):  # noqa: N802
        a, b = left.data(SORT_ROLE), right.data(SORT_ROLE)
        if a is None or b is None:
            if a is None and b is None:
                return False
            descending = self.sortOrder() == Qt.SortOrder.DescendingOrder
            return (a is None) == descending  # blanks last whichever way it sorts
        if isinstance(a, (int, float)) != isinstance(b, (int, float)):
            return str(a) < str(b)
        return a < b

    def result_at(self, row: int):
        return self.index(row, 0).data(RESULT_ROLE)
