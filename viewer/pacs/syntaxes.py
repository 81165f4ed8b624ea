"""Transfer syntaxes and SOP classes we propose when a server sends us instances."""

from __future__ import annotations

from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import StoragePresentationContexts

# Everything the imaging core decodes (pydicom, pylibjpeg, GDCM): a server may send what it
# stores without transcoding.  Uncompressed first.
RECEIVE_SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian,
                    ExplicitVRBigEndian, JPEGLosslessSV1, JPEGLossless, JPEGLSLossless, JPEGLSNearLossless,
                    JPEG2000Lossless, JPEG2000, RLELossless, JPEGBaseline8Bit, JPEGExtended12Bit]

# The storage SOP classes pynetdicom lists as the common ones (120): proposed for C-GET when the
# server did not say which classes a series holds.
COMMON_STORAGE = [cx.abstract_syntax for cx in StoragePresentationContexts]


def get_contexts(classes: list[str], limit: int = 127) -> list[tuple[str, list[str]]]:
    """Storage contexts for C-GET: one per (class, syntax) when they fit, so the server can pick the
    syntax it stores each instance in; else one per class offering every syntax."""
    if len(classes) * len(RECEIVE_SYNTAXES) <= limit:
        return [(c, [ts]) for c in classes for ts in RECEIVE_SYNTAXES]
    return [(c, RECEIVE_SYNTAXES) for c in classes[:limit]]
