"""Readers and writers of files, one module per format: DICOM SEG (seg_dicom), label-map
files (labelmap_files), DICOM SR (sr), key images, reports, tables, de-identification."""
