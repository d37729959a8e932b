"""Imaging: formats, phases, masks, geometry checks and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import make_blob_mask, make_volume
from IMNRiskLib.inputs import imaging
from IMNRiskLib.core.errors import InputError


def write_dicom_series(image: sitk.Image, folder, phases=None, temporal_tag="0020|0100"):
    """Write a (multi-phase) DICOM series with SimpleITK: one file per slice and phase."""
    folder.mkdir(parents=True, exist_ok=True)
    phases = phases or [image]
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series_uid = "1.2.826.0.1.3680043.2.1125.1.%d" % 4242
    direction = phases[0].GetDirection()
    for t, volume in enumerate(phases):
        volume = sitk.Cast(sitk.RescaleIntensity(volume, 0, 4000) if False else volume, sitk.sitkInt16)
        for z in range(volume.GetDepth()):
            slice_ = volume[:, :, z]
            position = volume.TransformIndexToPhysicalPoint((0, 0, z))
            tags = {
                "0008|0060": "MR", "0010|0010": "SYNTHETIC^PHANTOM", "0010|0020": "PHANTOM",
                "0020|000d": "1.2.826.0.1.3680043.2.1125.1.1", "0020|000e": series_uid,
                "0008|0018": f"1.2.826.0.1.3680043.2.1125.1.{1000 + t}.{z + 1}",
                "0020|0032": "\\".join(f"{p:.6f}" for p in position),
                "0020|0037": "\\".join(f"{d:.6f}" for d in (direction[0], direction[3], direction[6],
                                                              direction[1], direction[4], direction[7])),
                "0020|0013": str(z + 1), "0028|0030": "\\".join(f"{s:.6f}" for s in volume.GetSpacing()[:2]),
                "0018|0050": f"{volume.GetSpacing()[2]:.6f}",
            }
            if temporal_tag:
                tags[temporal_tag] = str(t + 1) if temporal_tag == "0020|0100" else f"{t * 60.0:.1f}"
            for key, value in tags.items():
                slice_.SetMetaData(key, value)
            # write in shuffled order: the reader must sort phases and slices itself
            writer.SetFileName(str(folder / f"IM_{(z * 7919 + t * 104729) % 100000:05d}_{t}_{z}.dcm"))
            writer.Execute(slice_)
    return folder


def phases_4d(n=4, seed=0):
    base = make_volume(seed=seed)
    vols = []
    for t in range(n):
        v = sitk.Cast(base * (1.0 + 0.5 * t), sitk.sitkFloat32)
        v.CopyInformation(base)
        vols.append(sitk.Cast(sitk.Round(v), sitk.sitkInt16))
    return vols


def test_nrrd_nifti_mha_and_dicom_load_the_same_voxels(tmp_path):
    image = sitk.Cast(make_volume(), sitk.sitkInt16)
    for name in ("a.nrrd", "a.nii.gz", "a.mha"):
        sitk.WriteImage(image, str(tmp_path / name))
    write_dicom_series(image, tmp_path / "dicom", temporal_tag=None)
    ref = sitk.GetArrayFromImage(image).astype(np.float32)
    for source in ("a.nrrd", "a.nii.gz", "a.mha", "dicom"):
        loaded, phase, n = imaging.load_phase(tmp_path / source)
        assert (phase, n) == (0, 1)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(loaded), ref, err_msg=source)
        np.testing.assert_allclose(loaded.GetSpacing(), image.GetSpacing(), atol=1e-5)
        np.testing.assert_allclose(loaded.GetOrigin(), image.GetOrigin(), atol=1e-4)


@pytest.mark.parametrize("form", ["4d", "vector", "folder", "dicom", "dicom-trigger"])
def test_multiphase_default_is_second_phase_and_phase_is_selectable(tmp_path, form):
    vols = phases_4d()
    if form == "4d":
        path = tmp_path / "dce.nrrd"
        sitk.WriteImage(sitk.JoinSeries(vols), str(path))
    elif form == "vector":  # Slicer's MultiVolume/Sequence NRRD ("list" kind)
        path = tmp_path / "dce.nrrd"
        sitk.WriteImage(sitk.Compose(vols), str(path))
    elif form == "folder":
        path = tmp_path / "phases"
        path.mkdir()
        for t, v in enumerate(vols):  # names sort wrongly as text: phase_10 < phase_2
            sitk.WriteImage(v, str(path / f"phase_{t * 5}.nii.gz"))
    else:
        tag = "0020|0100" if form == "dicom" else "0018|1060"
        path = write_dicom_series(vols[0], tmp_path / "dicom", phases=vols, temporal_tag=tag)
    image, phase, n = imaging.load_phase(path)
    assert (phase, n) == (1, 4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(vols[1]))
    image3, phase3, _ = imaging.load_phase(path, phase=3)
    assert phase3 == 3
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image3), sitk.GetArrayFromImage(vols[3]))
    with pytest.raises(InputError, match=r"phase 7 requested but the series has 4 phase\(s\)"):
        imaging.load_phase(path, phase=7)


def test_seg_nrrd_segment_chosen_by_name(tmp_path):
    image = make_volume()
    mask = make_blob_mask(image, radius=5, label=1)
    other = make_blob_mask(image, center=(5, 10, 10), radius=3, label=2)
    labels = sitk.Cast(mask + other, sitk.sitkUInt8)
    for key, value in {"Segment0_ID": "Segment_1", "Segment0_Name": "tumour", "Segment0_LabelValue": "1",
                       "Segment0_Layer": "0", "Segment1_ID": "Segment_2", "Segment1_Name": "node",
                       "Segment1_LabelValue": "2", "Segment1_Layer": "0"}.items():
        labels.SetMetaData(key, value)
    sitk.WriteImage(labels, str(tmp_path / "t.seg.nrrd"))
    warnings = []
    tumour = imaging.load_mask(tmp_path / "t.seg.nrrd", "tumour", image, warnings)
    node = imaging.load_mask(tmp_path / "t.seg.nrrd", "node", image, warnings, min_voxels=10)
    assert imaging.binary_count(tumour) == int(sitk.GetArrayViewFromImage(mask).sum())
    assert imaging.binary_count(node) == int((sitk.GetArrayViewFromImage(other) == 2).sum())
    with pytest.raises(InputError, match="segment 'liver' not found; segments: tumour, node"):
        imaging.load_mask(tmp_path / "t.seg.nrrd", "liver", image, warnings)


def test_mask_on_other_overlapping_grid_is_resampled_with_warning():
    image = make_volume()
    fine = sitk.Image([80, 80, 40], sitk.sitkUInt8)
    fine.SetSpacing((0.4, 0.4, 1.0))
    fine = make_blob_mask(fine, radius=10)
    warnings = []
    aligned = imaging.align_mask(fine, image, "m.nrrd", warnings)
    assert imaging.same_grid(aligned, image)
    assert warnings and "resampled nearest-neighbour" in warnings[0]
    assert imaging.binary_count(aligned) > 0


def test_identical_grid_passes_without_warning():
    image = make_volume()
    warnings = []
    imaging.align_mask(make_blob_mask(image), image, "m.nrrd", warnings)
    assert warnings == []


def test_crop_then_smooth_equals_smoothing_the_whole_volume_inside_the_tumour():
    image = make_volume(shape=(40, 100, 100))
    mask = make_blob_mask(image, radius=8)
    case = imaging.LoadedCase(image=image, mask=mask, phase=0, n_phases=1)
    cropped, cmask = imaging.prepare(case, sigma_mm=1.0, normalize=None, pad_voxels=5)
    whole = imaging.smooth(image, 1.0)
    assert cropped.GetNumberOfPixels() < image.GetNumberOfPixels() / 4
    resampled = sitk.Resample(whole, cropped, sitk.Transform(), sitk.sitkNearestNeighbor)
    inside = sitk.GetArrayViewFromImage(cmask) > 0
    np.testing.assert_allclose(sitk.GetArrayViewFromImage(cropped)[inside],
                               sitk.GetArrayViewFromImage(resampled)[inside], rtol=1e-5)
    # smoothing does something
    assert np.std(sitk.GetArrayViewFromImage(cropped)[inside]) < 0.8 * np.std(sitk.GetArrayViewFromImage(image))


# --------------------------------------------------------------------------- bad input

def _write(image, path):
    sitk.WriteImage(image, str(path))
    return path


def test_bad_inputs_name_the_problem(tmp_path):
    image = make_volume()
    img = _write(image, tmp_path / "img.nrrd")
    good = _write(make_blob_mask(image), tmp_path / "mask.nrrd")
    cases = {
        "missing": (tmp_path / "nope.nrrd", good, {}, "image file not found"),
        "corrupt": (_write_bytes(tmp_path / "bad.nrrd", b"NRRD0004\ngarbage\n"), good, {}, "cannot read image"),
        "empty mask": (img, _write(make_blob_mask(image, label=0), tmp_path / "empty.nrrd"), {},
                       "mask is empty"),
        "label absent": (img, good, {"label": 3}, r"label 3 not present in mask \(labels found: 1\)"),
        "too small": (img, _write(make_blob_mask(image, radius=1), tmp_path / "small.nrrd"), {},
                      r"tumour too small for texture features: .* the minimum is 64 voxels"),
        "2-D": (_write(make_volume()[:, :, 3], tmp_path / "flat.nrrd"), good, {}, "image is 2-D"),
        "phase": (img, good, {"phase": 2}, r"phase 2 requested but the series has 1 phase"),
    }
    outside = make_blob_mask(image)
    outside.SetOrigin((500.0, 500.0, 500.0))
    cases["outside"] = (img, _write(outside, tmp_path / "outside.nrrd"), {}, "mask lies outside the image")
    nan_image = sitk.GetArrayFromImage(image)
    nan_image[3, 4, 5] = np.nan
    nan_image[3, 4, 6] = np.inf
    nan = sitk.GetImageFromArray(nan_image)
    nan.CopyInformation(image)
    cases["nan"] = (_write(nan, tmp_path / "nan.nrrd"), good, {}, r"image has 2 NaN/Inf voxel\(s\)")
    for what, (image_path, mask_path, kwargs, message) in cases.items():
        with pytest.raises(InputError, match=message) as info:
            imaging.load_case(image_path, mask_path, **kwargs)
        assert info.value.file, what  # every error names its file


def _write_bytes(path, data):
    path.write_bytes(data)
    return path
