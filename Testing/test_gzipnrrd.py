"""The one-pass gzip NRRD reader (`inputs.gzipnrrd`) gives SimpleITK's image, and leaves every other
file, and every damaged one, to the usual reading (which names the fault)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import make_blob_mask, make_volume, pyradiomics_data
from IMNRiskLib.core.errors import InputError
from IMNRiskLib.inputs import imaging
from IMNRiskLib.inputs.gzipnrrd import read_gzip_nrrd


def assert_same_image(ours: sitk.Image, theirs: sitk.Image) -> None:
    assert ours.GetPixelID() == theirs.GetPixelID()
    assert ours.GetSize() == theirs.GetSize()
    assert ours.GetOrigin() == theirs.GetOrigin()
    assert ours.GetSpacing() == theirs.GetSpacing()
    assert ours.GetDirection() == theirs.GetDirection()
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(ours), sitk.GetArrayViewFromImage(theirs))
    # ITK_original_direction/spacing are ITK arrays that SimpleITK can neither print nor set (nothing reads them)
    assert {k: ours.GetMetaData(k) for k in ours.GetMetaDataKeys()} == \
        {k: theirs.GetMetaData(k) for k in theirs.GetMetaDataKeys() if not k.startswith("ITK_original_")}


def oblique(image: sitk.Image) -> sitk.Image:
    """The image on an oblique, shifted grid (direction and origin that a wrong reading would lose)."""
    image.SetOrigin((-12.5, 40.25, 3.0))
    angle = np.deg2rad(20)
    image.SetDirection((np.cos(angle), -np.sin(angle), 0, np.sin(angle), np.cos(angle), 0, 0, 0, -1))
    return image


@pytest.mark.parametrize("name", ["breast1_image.nrrd", "breast1_label.nrrd"])
def test_the_real_breast_mri_reads_as_simpleitk_reads_it(name):
    path = pyradiomics_data() / name
    ours = read_gzip_nrrd(path)
    assert ours is not None  # Slicer's gzip NRRD: the one-pass path is taken
    assert_same_image(ours, sitk.ReadImage(str(path)))


@pytest.mark.parametrize("pixel", [sitk.sitkInt16, sitk.sitkUInt8, sitk.sitkFloat32, sitk.sitkFloat64,
                                   sitk.sitkUInt16, sitk.sitkInt32])
def test_pixel_types_and_oblique_geometry(tmp_path, pixel):
    image = oblique(sitk.Cast(make_volume(seed=5) * 3.7, pixel))
    path = tmp_path / "a.nrrd"
    sitk.WriteImage(image, str(path), useCompression=True)
    assert_same_image(read_gzip_nrrd(path), sitk.ReadImage(str(path)))


def test_seg_nrrd_keeps_its_segment_names(tmp_path):
    labels = sitk.Cast(make_blob_mask(make_volume(), radius=5), sitk.sitkUInt8)
    for key, value in {"Segment0_ID": "Segment_1", "Segment0_Name": "tumour", "Segment0_LabelValue": "1"}.items():
        labels.SetMetaData(key, value)
    path = tmp_path / "t.seg.nrrd"
    sitk.WriteImage(labels, str(path), useCompression=True)
    ours = read_gzip_nrrd(path)
    assert ours.GetMetaData("Segment0_Name") == "tumour"
    assert_same_image(ours, sitk.ReadImage(str(path)))


def test_big_endian_data(tmp_path):
    image = sitk.Cast(make_volume(seed=2), sitk.sitkInt16)
    values = sitk.GetArrayFromImage(image)
    path = tmp_path / "big.nrrd"
    sitk.WriteImage(image, str(path), useCompression=True)
    raw = path.read_bytes()
    end = raw.index(b"\n\n") + 2
    header = raw[:end].replace(b"endian: little", b"endian: big")
    path.write_bytes(header + gzip.compress(values.astype(">i2").tobytes()))
    ours = read_gzip_nrrd(path)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(ours), values)
    assert_same_image(ours, sitk.ReadImage(str(path)))


def test_other_files_are_left_to_simpleitk(tmp_path):
    image = sitk.Cast(make_volume(), sitk.sitkInt16)
    sitk.WriteImage(image, str(tmp_path / "raw.nrrd"), useCompression=False)
    sitk.WriteImage(image, str(tmp_path / "a.nii.gz"), useCompression=True)
    sitk.WriteImage(image, str(tmp_path / "detached.nhdr"), useCompression=True)
    sitk.WriteImage(sitk.JoinSeries([image, image]), str(tmp_path / "dce.nrrd"), useCompression=True)
    for name in ("raw.nrrd", "a.nii.gz", "detached.nhdr", "dce.nrrd"):
        assert read_gzip_nrrd(tmp_path / name) is None, name


def test_damaged_streams_go_to_the_usual_reading_which_names_them(tmp_path):
    image = sitk.Cast(make_volume(), sitk.sitkInt16)
    path = tmp_path / "a.nrrd"
    sitk.WriteImage(image, str(path), useCompression=True)
    whole = path.read_bytes()
    mask = tmp_path / "mask.nrrd"
    sitk.WriteImage(make_blob_mask(image), str(mask))
    for damaged in (whole[:len(whole) - 40], whole[:-8] + b"\x00" * 8):  # cut; CRC and length zeroed
        path.write_bytes(damaged)
        assert read_gzip_nrrd(path) is None
        with pytest.raises(InputError, match="truncated or corrupt"):
            imaging.load_case(path, mask)


def test_without_isal_zlib_reads_the_same(monkeypatch):
    """Slicer's Python may lack python-isal: the reading falls back to zlib, with the same image."""
    import sys
    path = pyradiomics_data() / "breast1_image.nrrd"
    with_isal = read_gzip_nrrd(path)
    monkeypatch.setitem(sys.modules, "isal", None)
    without = read_gzip_nrrd(path)
    assert without is not None
    assert_same_image(without, with_isal)
