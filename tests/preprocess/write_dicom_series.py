"""Writes a raw int16 volume as a CT DICOM series (one file per slice) with pydicom, for the
`medseg prepare` test of DICOM input.

Usage: write_dicom_series.py RAW D H W SPACING_X SPACING_Y SPACING_Z OUT_DIR
RAW is little-endian int16 [D, H, W]; slice k lies at z = k * SPACING_Z, axes along x and y.
"""
import os
import sys

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid


def main():
    raw, d, h, w = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    sx, sy, sz = (float(v) for v in sys.argv[5:8])
    out = sys.argv[8]
    os.makedirs(out, exist_ok=True)
    volume = np.fromfile(raw, dtype="<i2").reshape(d, h, w)
    series = generate_uid()
    for k in range(d):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = os.path.join(out, "slice_%03d.dcm" % k)
        ds = FileDataset(path, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "CT"
        ds.SeriesInstanceUID = series
        ds.InstanceNumber = k + 1
        ds.Rows, ds.Columns = h, w
        ds.PixelSpacing = [sy, sx]  # between rows, between columns
        ds.SliceThickness = sz
        ds.ImagePositionPatient = [0.0, 0.0, k * sz]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, 0
        ds.PixelData = np.ascontiguousarray(volume[k]).astype("<i2").tobytes()
        ds.save_as(path, write_like_original=False)


if __name__ == "__main__":
    main()
