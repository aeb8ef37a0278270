"""DICOM discovery, the scan index, and conversion to NIfTI with QC.

Modules: ``tree`` (file walk, fingerprint), ``headers`` (header table with cache), ``series``
(grouping files into series by tags), ``index`` (one series per scan, manifests), ``geometry``
(slice order, tilt and spacing checks), ``convert`` (series to NIfTI + JSON sidecar).
"""
