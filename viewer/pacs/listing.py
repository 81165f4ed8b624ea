"""What a study holds on the server: its series and their instances (the retrieve plan)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class InstanceRef:
    sop_uid: str
    sop_class: str = ""  # empty when the server did not say


@dataclass
class SeriesListing:
    """One series to retrieve.  ``instances`` is filled only when needed (to resume a series that is
    partly here); ``count`` is the server's NumberOfSeriesRelatedInstances (None: not given)."""

    study_uid: str
    series_uid: str
    modality: str = ""
    number: int | None = None
    description: str = ""
    count: int | None = None
    instances: list[InstanceRef] = field(default_factory=list)
    sop_classes: list[str] = field(default_factory=list)  # storage classes to negotiate (C-GET)

    @property
    def sop_uids(self) -> list[str]:
        return [i.sop_uid for i in self.instances]

    @property
    def expected(self) -> int | None:
        return len(self.instances) if self.instances else self.count

    def set_instances(self, instances: list[InstanceRef]) -> None:
        self.instances = list({i.sop_uid: i for i in instances}.values())  # the server may repeat one
        classes = sorted({i.sop_class for i in self.instances if i.sop_class})
        if classes:
            self.sop_classes = classes

    @classmethod
    def from_dataset(cls, study_uid: str, ds, sop_classes: list[str] | None = None) -> SeriesListing:
        def number(kw):
            try:
                return int(ds.get(kw)) if ds.get(kw) not in (None, "") else None
            except (TypeError, ValueError):
                return None

        return cls(study_uid, str(ds.SeriesInstanceUID), str(ds.get("Modality", "") or ""), number("SeriesNumber"),
                   str(ds.get("SeriesDescription", "") or ""), number("NumberOfSeriesRelatedInstances"),
                   sop_classes=list(sop_classes or []))

    def label(self) -> str:
        """'series 3 (CT, Thorax 2 mm)' — what progress messages call it (no patient data)."""
        bits = ", ".join(b for b in (self.modality, self.description) if b)
        return f"series {self.number if self.number is not None else '?'}" + (f" ({bits})" if bits else "")
